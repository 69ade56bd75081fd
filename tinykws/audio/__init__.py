"""Audio: reading clips and feature front ends."""
from .frontend import DEFAULT_PRESET, MFCC, PRESETS, FrontendConfig, RawFrontend, build_frontend, get_preset
from .io import AudioError, AudioWarning, fix_length, load_audio, save_audio

__all__ = [
    "FrontendConfig", "MFCC", "RawFrontend", "build_frontend", "get_preset", "PRESETS", "DEFAULT_PRESET",
    "load_audio", "fix_length", "AudioError", "AudioWarning", "save_audio",
]

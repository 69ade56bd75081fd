"""Always-on detection in Python: streams read in chunks, sliding analysis, RecognizeCommands-style
detection, synthetic test streams with known words, false alarms per hour, threshold tuning."""
from .detector import Detector, DetectorConfig, Event, detect
from .listen import FloatScorer, IntScorer, ListenConfig, ListenResult, Listener, StreamError, WindowFeatures, listen, make_scorer
from .metrics import MatchConfig, match
from .source import AudioSource, array_chunks, mic_chunks
from .synth_stream import StreamConfig, SynthStream, build_stream

__all__ = ["Detector", "DetectorConfig", "Event", "detect", "FloatScorer", "IntScorer", "ListenConfig",
           "ListenResult", "Listener", "StreamError", "WindowFeatures", "listen", "make_scorer", "MatchConfig",
           "match", "AudioSource", "array_chunks", "mic_chunks", "StreamConfig", "SynthStream", "build_stream"]

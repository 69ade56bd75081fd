"""Speech Commands data: layout and tasks, decoded clips, augmentation, features, download, synthetic speech."""
from .augment import AugmentConfig, WaveAugment, spec_augment
from .clips import ClipSet, load_clips, read_clip
from .speech_commands import KEYWORDS_10, SILENCE, UNKNOWN, WORDS_35, DatasetError, SpeechCommands, Task, hash_split, make_task

__all__ = ["AugmentConfig", "WaveAugment", "spec_augment", "ClipSet", "load_clips", "read_clip", "KEYWORDS_10",
           "SILENCE", "UNKNOWN", "WORDS_35", "DatasetError", "SpeechCommands", "Task", "hash_split", "make_task"]

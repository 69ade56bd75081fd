"""The Google Speech Commands layout: word folders, background noise, split lists, tasks.

Reads v0.01 / v0.02 folders (and tinykws's synthetic sets, which use the same layout) and the
official test-set layout (`speech_commands_test_set_v0.02`: one folder per class, including
`_silence_` and `_unknown_`).
"""
from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SILENCE = "_silence_"
UNKNOWN = "_unknown_"
BACKGROUND = "_background_noise_"
KEYWORDS_10 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
WORDS_35 = KEYWORDS_10 + (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual",
)
AUDIO_SUFFIXES = (".wav", ".flac")
SPLITS = ("training", "validation", "testing")
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # the data set's own constant for the hash split


class DatasetError(ValueError):
    """A data set folder that cannot be used; the message names the path and the problem."""


class DatasetWarning(UserWarning):
    """Something in a data set folder that is left out (list entries naming missing files, ...)."""


@dataclass(frozen=True)
class Task:
    """Which words are classes. `labels` is the output order of a model trained on the task."""

    keywords: tuple[str, ...]
    silence: bool = True
    unknown: bool = True

    @property
    def labels(self) -> list[str]:
        return list(self.keywords) + ([SILENCE] if self.silence else []) + ([UNKNOWN] if self.unknown else [])

    @property
    def name(self) -> str:
        if self == make_task("12"):
            return "12"
        if self == make_task("35"):
            return "35"
        return ",".join(self.keywords)


def make_task(spec: str | Task) -> Task:
    """'12' (10 keywords + silence + unknown), '35' (all words), or a word list 'marvin,sheila'."""
    if isinstance(spec, Task):
        return spec
    spec = spec.strip()
    if spec in ("12", "std12", "12class"):
        return Task(KEYWORDS_10)
    if spec in ("35", "all35", "all"):
        return Task(WORDS_35, silence=False, unknown=False)
    if spec.isdigit():
        raise DatasetError(f"--task {spec}: use 12 (10 keywords + silence + unknown) or 35 (every word), "
                           f"or name your words with --keywords a,b,c")
    words = tuple(w.strip() for w in spec.split(",") if w.strip())
    if not words:
        raise DatasetError(f"empty keyword list {spec!r}: use '12', '35' or words like 'marvin,sheila'")
    if len(set(words)) != len(words):
        raise DatasetError(f"keyword list {spec!r} names a word twice")
    bad = [w for w in words if w.startswith("_")]
    if bad:
        raise DatasetError(f"keyword list {spec!r}: {bad} are not words")
    return Task(words)


def hash_split(path: str | Path, val_pct: float = 10.0, test_pct: float = 10.0) -> str:
    """The data set's own rule: a stable split from sha1 of the speaker id (file name before `_nohash_`)."""
    base = re.sub(r"_nohash_.*$", "", Path(path).name)
    h = int(hashlib.sha1(base.encode()).hexdigest(), 16)
    pct = (h % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if pct < val_pct:
        return "validation"
    if pct < val_pct + test_pct:
        return "testing"
    return "training"


def speaker_of(path: str | Path) -> str:
    return re.sub(r"_nohash_.*$", "", Path(path).stem)


@dataclass(frozen=True)
class Entry:
    """One example: a clip file, or (path None) a silence clip cut from background noise."""

    path: str | None
    label: int
    word: str


@dataclass
class SpeechCommands:
    """An index of one data set folder. Paths are relative to `root`, with '/' separators."""

    root: Path
    words: dict[str, list[str]] = field(default_factory=dict)  # word -> clip paths
    background: list[str] = field(default_factory=list)
    split_of: dict[str, str] = field(default_factory=dict)
    test_set_layout: bool = False
    empty_folders: list[str] = field(default_factory=list)  # word folders without .wav/.flac clips
    missing_listed: dict[str, list[str]] = field(default_factory=dict)  # split -> listed files not on disk

    @classmethod
    def open(cls, root: str | Path) -> "SpeechCommands":
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: data set folder not found")
        ds = cls(root=root)
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            files = sorted(f"{d.name}/{f.name}" for f in d.iterdir() if f.suffix.lower() in AUDIO_SUFFIXES)
            if d.name == BACKGROUND:
                ds.background = files
            elif not d.name.startswith(".") and files:
                ds.words[d.name] = files
            elif not d.name.startswith("."):
                ds.empty_folders.append(d.name)
        if not ds.words:
            found = f" (folders {ds.empty_folders[:5]} are empty)" if ds.empty_folders else ""
            raise DatasetError(f"{root}: no word folders with .wav/.flac clips{found} "
                               f"(is this a Speech Commands folder?)")
        ds.test_set_layout = SILENCE in ds.words and UNKNOWN in ds.words
        if ds.test_set_layout:
            ds.split_of = {p: "testing" for files in ds.words.values() for p in files}
            return ds
        lists = {s: root / f"{s}_list.txt" for s in ("validation", "testing")}
        if any(p.exists() for p in lists.values()):
            for split, p in lists.items():
                if not p.exists():
                    raise DatasetError(f"{p}: missing ({split} list), while the other list exists")
            known = {f for files in ds.words.values() for f in files}
            for split, p in lists.items():
                for line in p.read_text().split():
                    if line in known:
                        ds.split_of[line] = split
                    else:
                        ds.missing_listed.setdefault(split, []).append(line)
            for split, gone in ds.missing_listed.items():
                warnings.warn(f"{lists[split]}: {len(gone)} listed file(s) not found in {root}, left out "
                              f"(e.g. {gone[0]})", DatasetWarning, stacklevel=2)
            for f in known:
                ds.split_of.setdefault(f, "training")
        else:
            ds.split_of = {f: hash_split(f) for files in ds.words.values() for f in files}
        return ds

    def files(self, split: str) -> list[str]:
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}: use one of {SPLITS}")
        return [f for files in self.words.values() for f in files if self.split_of[f] == split]

    def entries(
        self,
        split: str,
        task: Task | str = "12",
        silence_frac: float = 0.1,
        unknown_frac: float | None = 0.1,
        seed: int = 0,
    ) -> list[Entry]:
        """Examples of one split for a task.

        Silence and unknown are each `frac` x the number of keyword clips (unknown drawn evenly
        from all non-keyword words; `unknown_frac=None` keeps every unknown clip). In the official
        test-set layout the folders are the classes and nothing is drawn.
        """
        task = make_task(task)
        labels = task.labels
        rng = np.random.default_rng(seed)
        if self.test_set_layout:
            empty = [w for w in labels if w in self.empty_folders]
            if empty:
                raise DatasetError(f"{self.root}: test-set layout: class folder(s) {empty} are empty")
            missing = [w for w in labels if w not in self.words]
            if missing:
                raise DatasetError(f"{self.root}: test-set layout lacks class folders {missing}")
            return [Entry(f, labels.index(w), w) for w in labels for f in self.words[w]]
        files = self.files(split)
        empty = [w for w in task.keywords if w in self.empty_folders]
        if empty:
            raise DatasetError(f"{self.root}: the folder(s) for keyword(s) {empty} are empty (no .wav/.flac clips)")
        missing = [w for w in task.keywords if w not in self.words]
        if missing:
            raise DatasetError(f"{self.root}: no folder for keyword(s) {missing}")
        out = [Entry(f, labels.index(f.split("/")[0]), f.split("/")[0]) for f in files if f.split("/")[0] in task.keywords]
        empty = [w for w in task.keywords if not any(e.word == w for e in out)]
        if empty:
            raise DatasetError(f"{self.root}: class(es) {empty} have no clips in the {split} split")
        n_kw = len(out)
        if task.unknown:
            others = [f for f in files if f.split("/")[0] not in task.keywords]
            if unknown_frac is not None:
                others = _draw_evenly(others, int(round(unknown_frac * n_kw)), rng)
            out += [Entry(f, labels.index(UNKNOWN), UNKNOWN) for f in others]
        if task.silence:
            if not self.background:
                raise DatasetError(f"{self.root}: no {BACKGROUND}/ clips to cut silence from")
            out += [Entry(None, labels.index(SILENCE), SILENCE)] * int(round(silence_frac * n_kw))
        return out


def _draw_evenly(files: list[str], n: int, rng: np.random.Generator) -> list[str]:
    """Draw n files spread across words as evenly as their counts allow (round-robin over shuffled words)."""
    by_word: dict[str, list[str]] = {}
    for f in files:
        by_word.setdefault(f.split("/")[0], []).append(f)
    pools = [list(rng.permutation(v)) for _, v in sorted(by_word.items())]
    out: list[str] = []
    while len(out) < n and any(pools):
        for pool in rng.permutation(len(pools)):
            if pools[pool] and len(out) < n:
                out.append(str(pools[pool].pop()))
    return out

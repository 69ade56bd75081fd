"""Sliding analysis of a stream: 1 s windows every `hop_ms`, features, the network (float model or
the integer model `IntModel`), RecognizeCommands-style detection.

Efficiency: the spectra and mel energies of a chunk are computed once per 20 ms frame, and each
window takes its frames by slicing; the network runs on batches of windows.

Level: the clip front end's per-clip peak normalization (`input_norm="peak"`, x / max(x)) has no
clip on a stream. With `peak_norm="window"` (the default) every 1 s window is divided by its own
signed peak, exactly as if that second were a clip: the mel energies scale linearly with the
input (magnitude spectrum; squared for power), so the stream divides each window's mel energies
by its peak before the log, and the features equal those of the clip computed directly.
`peak_norm="none"` feeds unnormalized audio to a model trained on normalized clips (measured in
docs/streaming.md). Front ends with `input_norm="none"` need neither.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from ..audio.frontend import MFCC, FrontendConfig
from ..checks import ConfigError, setting, validate
from ..quant import kernels as K
from ..quant.integer import IntModel
from .detector import Detector, DetectorConfig, Event
from .source import as_chunks


class StreamError(ValueError):
    """A model or setting the streaming path cannot use; the message says why."""


@dataclass
class ListenConfig:
    hop_ms: int = setting(40, lo=20, hi=100, help="run the network every this many ms (a multiple of the "
                                                  "front end's frame hop, 20 ms)")
    peak_norm: str = setting("window", choices=("window", "none"),
                             help="for models trained on peak-normalized clips: normalize each 1 s window by "
                                  "its peak (window) or not at all (none)")
    batch: int = setting(512, lo=1, help="windows per network batch")

    def __post_init__(self):
        validate(self)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------- features of windows

class WindowFeatures:
    """Features of every 1 s window of a stream, `hop_ms` apart, from chunks of any size.

    Window k covers samples [k * hop, k * hop + clip_samples) and is reported at its end time.
    A stream shorter than one window is zero-padded to one window at `finish()` (as clips are).
    """

    def __init__(self, fe: FrontendConfig, hop_ms: int, peak_norm: str = "window"):
        if fe.kind != "mfcc":
            raise StreamError(f"streaming needs an MFCC front end; this model's front end is {fe.kind!r}")
        if fe.center:
            raise StreamError("streaming needs a front end without centre padding (center=False): centred "
                              "frames at a window's edges differ from a stream's")
        hop = hop_ms * fe.sample_rate / 1000
        if hop != int(hop) or int(hop) % fe.hop_length:
            step_ms = 1000 * fe.hop_length / fe.sample_rate
            raise ConfigError(f"--hop-ms {hop_ms}: must be a multiple of the front end's frame hop ({step_ms:g} ms)")
        self.fe, self.hop = fe, int(hop)
        self.step = self.hop // fe.hop_length  # frames per hop
        self.peak = fe.input_norm == "peak" and peak_norm == "window"
        self.block = math.gcd(self.hop, fe.clip_samples)  # peak of a window = max over its blocks
        self.mfcc = MFCC(fe)
        self.buf = np.zeros(0, np.float32)
        self.buf_start = 0  # absolute sample index of buf[0] (= the next window's start)
        self.windows = 0  # windows emitted
        self.samples = 0  # samples pushed

    def window_end_ms(self, k: np.ndarray) -> np.ndarray:
        return (np.asarray(k, np.int64) * self.hop + self.fe.clip_samples) * 1000 // self.fe.sample_rate

    def push(self, x: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """New samples -> (end times in ms, features (N, n_frames, n_mfcc)) of the windows they complete."""
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        self.samples += len(x)
        self.buf = np.concatenate([self.buf, x]) if len(self.buf) else x
        n = 0 if len(self.buf) < self.fe.clip_samples else 1 + (len(self.buf) - self.fe.clip_samples) // self.hop
        return self._emit(n)

    def finish(self) -> tuple[np.ndarray, torch.Tensor]:
        """The end of the stream: a stream shorter than one window gives one zero-padded window."""
        if self.windows == 0 and self.samples > 0:
            self.buf = np.pad(self.buf, (0, self.fe.clip_samples - len(self.buf)))
            return self._emit(1)
        return self._emit(0)

    def _emit(self, n: int) -> tuple[np.ndarray, torch.Tensor]:
        fe = self.fe
        if n == 0:
            return np.zeros(0, np.int64), torch.zeros((0, *fe.feature_shape))
        seg = self.buf[: (n - 1) * self.hop + fe.clip_samples]
        feats = self.features(seg, n)
        times = self.window_end_ms(np.arange(self.windows, self.windows + n))
        self.windows += n
        self.buf = self.buf[n * self.hop :]
        self.buf_start += n * self.hop
        return times, feats

    @torch.no_grad()
    def features(self, seg: np.ndarray, n: int) -> torch.Tensor:
        """Features of the n windows of `seg` (window k starts at sample k * hop)."""
        fe, m = self.fe, self.mfcc
        x = torch.from_numpy(np.ascontiguousarray(seg))
        frames = x.unfold(0, fe.win_length, fe.hop_length) * m.window
        spec = torch.fft.rfft(frames, n=fe.n_fft)
        power = spec.real.square() + spec.imag.square()
        mel = (power if fe.spectrum == "power" else power.sqrt()) @ m.mel  # (frames, n_mels)
        idx = torch.arange(n)[:, None] * self.step + torch.arange(fe.n_frames)[None, :]
        if not self.peak:  # log and DCT act per frame: once per frame, then windows by slicing
            return (torch.log(mel + fe.log_offset) @ m.dct)[idx]
        scale = torch.from_numpy(self._window_peaks(seg, n))  # the divisor differs per window
        win = mel[idx] / (scale if fe.spectrum == "magnitude" else scale.square())[:, None, None]
        return torch.log(win + fe.log_offset) @ m.dct

    def _window_peaks(self, seg: np.ndarray, n: int) -> np.ndarray:
        """frontend.peak_normalize's divisor for each window: the signed max, else max |x|, else 1."""
        b = self.block
        blocks = seg[: len(seg) // b * b].reshape(-1, b)
        per = self.fe.clip_samples // b
        view = np.lib.stride_tricks.sliding_window_view
        hi = view(blocks.max(1), per)[:: self.hop // b][:n].max(1)
        ab = view(np.abs(blocks).max(1), per)[:: self.hop // b][:n].max(1)
        peak = np.where(hi > 0, hi, ab)
        return np.where(peak > 0, peak, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------- scorers (0-255 scores)

class FloatScorer:
    """A float torch model: scores = min(255, 256 x softmax probability), floats."""

    integer = False

    def __init__(self, model: torch.nn.Module, labels: list[str], frontend: FrontendConfig, name: str = ""):
        self.model, self.labels, self.frontend, self.name = model.eval(), list(labels), frontend, name

    @torch.no_grad()
    def __call__(self, feats: torch.Tensor) -> np.ndarray:
        return torch.clamp(torch.softmax(self.model(feats), dim=1) * 256.0, max=255.0).numpy().astype(np.float64)


ENGINES = ("ref", "tflite", "tflite-fast")


class IntScorer:
    """The integer model: int8 outputs through TFLite Micro's int8 softmax (unless the model ends in
    one) plus 128: integer scores 0-255.

    `engine`: "ref" runs the numpy integer reference (`IntModel.run`, bit-exact with TFLite Micro);
    "tflite" the model's .tflite export in the TFLite interpreter (ai-edge-litert) with its reference
    kernels: the same outputs (tested), faster; "tflite-fast" its default optimized kernels (XNNPACK),
    much faster but their rounding differs from TFLite Micro's: int8 outputs off by a few steps."""

    integer = True

    def __init__(self, im: IntModel, name: str = "", engine: str = "ref"):
        meta = im.meta or {}
        if not meta.get("labels") or meta.get("frontend") is None:
            raise StreamError(f"{name or 'integer model'}: no labels / front end in its metadata; streaming needs both")
        if engine not in ENGINES:
            raise ConfigError(f"--engine must be one of {', '.join(ENGINES)} (got {engine!r})")
        self.im, self.labels, self.name = im, list(meta["labels"]), name or meta.get("name", "")
        self.frontend = FrontendConfig.from_dict(meta["frontend"])
        self.softmax = None if im.ops[-1].kind == "softmax" else K.softmax_params(im.tensors[im.output].scale[0])
        self.engine = engine
        self._interp, self._tail, self._batch = None, None, 0
        if engine != "ref":
            # TFLite's FULLY_CONNECTED rounds its per-channel multipliers unlike TFLite Micro (one step off in
            # rare windows): the interpreter runs the layers up to the classifier, the reference the cheap rest
            cut = len(im.ops) if engine == "tflite-fast" else next(
                (i for i in range(len(im.ops), 0, -1) if im.ops[i - 1].kind not in ("fc", "reshape", "softmax")), 0)
            if cut == 0:
                raise StreamError(f"{self.name or 'integer model'}: --engine tflite needs a network with layers "
                                  "before its classifier")
            head = replace(im, ops=im.ops[:cut], output=im.ops[cut - 1].output)
            self._tail = replace(im, ops=im.ops[cut:], input=head.output) if cut < len(im.ops) else None
            self._interp = _tflite_interpreter(head, engine == "tflite")

    def _run(self, q: np.ndarray) -> np.ndarray:
        if self._interp is None:
            return self.im.run(q)
        y = self._invoke(q)
        return self._tail.run(y) if self._tail is not None else y

    def _invoke(self, q: np.ndarray) -> np.ndarray:
        it = self._interp
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        if len(q) != self._batch:  # the interpreter's batch follows the windows given
            it.resize_tensor_input(inp["index"], [len(q), *inp["shape"][1:]])
            it.allocate_tensors()
            self._batch = len(q)
        it.set_tensor(inp["index"], q.reshape(len(q), *it.get_input_details()[0]["shape"][1:]))
        it.invoke()
        return it.get_tensor(out["index"]).copy()

    def __call__(self, feats: torch.Tensor) -> np.ndarray:
        q = self._run(self.im.quantize_input(feats.numpy()))
        q = q.reshape(len(q), -1)
        if self.softmax is not None:
            q = K.softmax(q, self.softmax)
        return q.astype(np.int64) + 128


def _tflite_interpreter(im: IntModel, reference_kernels: bool):
    """The TFLite interpreter (ai-edge-litert) on the model's .tflite export, one thread."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from ..quant.tflite import to_tflite_bytes

    kind = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
    return Interpreter(model_content=to_tflite_bytes(im), experimental_op_resolver_type=kind, num_threads=1)


def make_scorer(model=None, name: str = ""):
    """A scorer from an IntModel, a (torch model, bundle) pair, or a model file / shipped name (float)."""
    if isinstance(model, (FloatScorer, IntScorer)):
        return model
    if isinstance(model, IntModel):
        return IntScorer(model, name)
    if isinstance(model, tuple):
        net, bundle = model
        return FloatScorer(net, bundle.labels, bundle.frontend, name or bundle.name)
    from ..train import load_model

    net, bundle = load_model(model)
    return FloatScorer(net, bundle.labels, bundle.frontend, name or str(model or "dscnn-kws"))


# ---------------------------------------------------------------------------- the loop

@dataclass
class ListenResult:
    events: list[Event]
    audio_seconds: float
    compute_seconds: float
    windows: int
    times_ms: np.ndarray | None = None  # every window's end time (keep_scores=True)
    scores: np.ndarray | None = None  # every window's scores (N, C)
    notes: list[str] = field(default_factory=list)

    @property
    def real_time_factor(self) -> float:
        """Processing time (features, network, detection) per second of audio; < 1 keeps up."""
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def summary(self) -> dict:
        return {"events": len(self.events), "audio_seconds": round(self.audio_seconds, 3),
                "compute_seconds": round(self.compute_seconds, 3), "windows": self.windows,
                "real_time_factor": round(self.real_time_factor, 5)}


class Listener:
    """Push chunks, get events as they fire (also for a microphone)."""

    def __init__(self, scorer, cfg: ListenConfig | None = None, detector: DetectorConfig | None = None,
                 keep_scores: bool = False):
        self.scorer = make_scorer(scorer)
        self.cfg = cfg or ListenConfig()
        self.features = WindowFeatures(self.scorer.frontend, self.cfg.hop_ms, self.cfg.peak_norm)
        self.detector = Detector(self.scorer.labels, detector or DetectorConfig(), self.scorer.integer)
        self.keep = keep_scores
        self._times, self._scores = [], []
        self.compute_seconds = 0.0

    @property
    def sample_rate(self) -> int:
        return self.scorer.frontend.sample_rate

    def _run(self, times, feats) -> list[Event]:
        events = []
        for i in range(0, len(times), self.cfg.batch):
            t, s = times[i : i + self.cfg.batch], self.scorer(feats[i : i + self.cfg.batch])
            if self.keep:
                self._times.append(t)
                self._scores.append(s)
            events += self.detector.feed(t, s)
        return events

    def push(self, chunk: np.ndarray) -> list[Event]:
        t0 = time.perf_counter()
        out = self._run(*self.features.push(chunk))
        self.compute_seconds += time.perf_counter() - t0
        return out

    def finish(self) -> list[Event]:
        t0 = time.perf_counter()
        out = self._run(*self.features.finish())
        self.compute_seconds += time.perf_counter() - t0
        return out

    def result(self, events: list[Event]) -> ListenResult:
        keep = self.keep and self._times
        return ListenResult(events, self.features.samples / self.sample_rate, self.compute_seconds,
                            self.features.windows,
                            np.concatenate(self._times) if keep else None,
                            np.concatenate(self._scores) if keep else None)


def listen(source, scorer=None, cfg: ListenConfig | None = None, detector: DetectorConfig | None = None,
           on_event=None, keep_scores: bool = False, progress=None) -> ListenResult:
    """Run the streaming detector over a file path, an AudioSource, an array or an iterable of chunks.
    `on_event(event)` is called as each one fires; `progress(seconds_done)` after every chunk."""
    lis = Listener(scorer, cfg, detector, keep_scores)
    events: list[Event] = []
    src = as_chunks(source, lis.sample_rate)
    for chunk in src:
        new = lis.push(chunk)
        events += new
        for e in new if on_event else ():
            on_event(e)
        if progress:
            progress(lis.features.samples / lis.sample_rate)
    new = lis.finish()
    events += new
    for e in new if on_event else ():
        on_event(e)
    res = lis.result(events)
    res.notes = list(getattr(src, "notes", []))
    return res

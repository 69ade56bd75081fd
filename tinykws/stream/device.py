"""The streaming path of the device in Python: the device's fixed-point MFCC (DeviceMFCC, the same
C through ctypes) pushed hop by hop through its ring buffer, the int8 model (IntModel) on a
sliding window of the last n_frames frames every `hop_ms`, and the integer RecognizeCommands
detector. The C loop of `tinykws deploy --stream` computes exactly this (tests/test_stream_c.py).

Frame j ends at the last sample of the hop that completed it; a network result is reported at the
stream time (ms) of the newest sample of its window.
"""
from __future__ import annotations

import numpy as np

from ..deploy.frontend import DeviceMFCC, check_device_frontend
from ..quant.integer import IntModel
from .detector import Detector, DetectorConfig, Event
from .listen import IntScorer


def device_results(im: IntModel, audio, hop_ms: int = 40, cmsis_dsp=None, batch: int = 256):
    """(times in ms (N,), integer scores 0-255 (N, C)) of every network run on the stream."""
    sc = IntScorer(im)
    fe = sc.frontend
    check_device_frontend(fe)
    dev = DeviceMFCC(fe, cmsis_dsp)
    tin = im.tensors[im.input]
    x8 = dev.to_int8(dev.stream_q16(audio), float(tin.scale[0]), int(tin.zp))  # (frames, n_mfcc)
    hop = hop_ms * fe.sample_rate // 1000
    step = hop // fe.hop_length
    n_win = -(-fe.win_length // fe.hop_length)  # hops before the ring holds the first frame
    starts = np.arange(0, len(x8) - fe.n_frames + 1, step)
    times = (starts + fe.n_frames - 1 + n_win) * fe.hop_length * 1000 // fe.sample_rate
    scores = []
    for i in range(0, len(starts), batch):
        idx = starts[i : i + batch, None] + np.arange(fe.n_frames)[None, :]
        q = im.run(x8[idx].reshape(len(idx), *tin.shape[1:])).reshape(len(idx), -1)
        if sc.softmax is not None:
            from ..quant import kernels as K

            q = K.softmax(q, sc.softmax)
        scores.append(q.astype(np.int64) + 128)
    s = np.concatenate(scores) if scores else np.zeros((0, len(sc.labels)), np.int64)
    return times.astype(np.int64), s


def device_listen(im: IntModel, audio, hop_ms: int = 40, detector: DetectorConfig | None = None,
                  cmsis_dsp=None) -> list[Event]:
    """The keyword events of the device's streaming path on `audio` (int16, or float in [-1, 1])."""
    t, s = device_results(im, audio, hop_ms, cmsis_dsp)
    return Detector(list(im.meta["labels"]), detector or DetectorConfig(), integer=True).feed(t, s)

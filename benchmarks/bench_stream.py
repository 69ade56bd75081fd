"""Speed of the streaming path: a synthetic stream of the mini set's testing clips through the
sliding analysis (features once per frame, windows sliced, network batched); prints one JSON object.

    python benchmarks/bench_stream.py [--minutes 10] [--hop-ms 40] [--model dscnn-kws] [--int8 [--engine ref|tflite|tflite-fast]] [--threads 2]

Reports seconds of processing (features, network, detection; the stream's generation is not
counted), the real-time factor, and how the time splits between features and network.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tinykws.stream import ListenConfig, StreamConfig, WindowFeatures, build_stream, listen, make_scorer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--hop-ms", type=int, default=40)
    ap.add_argument("--model", default="dscnn-kws")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--engine", default="ref", help="with --int8: ref, tflite or tflite-fast (tinykws.stream.listen.IntScorer)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    shared = Path(os.environ.get("TINYKWS_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    data = shared / "data" / "speech_commands_mini"
    if a.int8:
        from tinykws.recipes.quantize import load_int_model

        from tinykws.stream.listen import IntScorer

        scorer = IntScorer(load_int_model(a.model, data, 400), name=a.model, engine=a.engine)
    else:
        scorer = make_scorer(a.model)
    s = build_stream(data, StreamConfig(minutes=a.minutes))
    chunks = list(s.chunks())  # generated up front: only the streaming path is timed
    t0 = time.perf_counter()
    wf = WindowFeatures(scorer.frontend, a.hop_ms)
    feats = [wf.push(c)[1] for c in chunks]
    t_feat = time.perf_counter() - t0
    res = listen(chunks, scorer, ListenConfig(hop_ms=a.hop_ms))
    print(json.dumps({"model": a.model, "integer": scorer.integer, "engine": a.engine if a.int8 else None, "minutes": a.minutes, "hop_ms": a.hop_ms,
                      "threads": a.threads, "windows": res.windows, "seconds": round(res.compute_seconds, 2),
                      "real_time_factor": round(res.real_time_factor, 5),
                      "feature_seconds": round(t_feat, 2), "windows_per_second": round(res.windows / res.compute_seconds, 1),
                      "n_feature_windows": sum(len(f) for f in feats)}))


if __name__ == "__main__":
    main()

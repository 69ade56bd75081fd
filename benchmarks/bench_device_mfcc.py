"""The device front end: fixed-point C MFCC (CMSIS-DSP q31) against the float training front end.

Measures, and prints as one JSON object (last line):
  - the feature gap and the int8 model's top-1 agreement on the testing list (float features vs
    the device's fixed-point features of the same clips; the model's own int8 input conversion on
    each side), with both int8 accuracies and the float model's accuracy;
  - speed of the host mirror (the same C through ctypes) against the torch front end;
  - the Cortex-M7 cost (arm-none-eabi-gcc -O2 / -Os, emulated): instructions per new hop (one new
    frame), flash, RAM, bit-exactness of the M7 build against the host mirror.

    python benchmarks/bench_device_mfcc.py --data ../shared/data/speech_commands_mini
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinykws.audio import build_frontend, get_preset  # noqa: E402
from tinykws.deploy.frontend import DeviceMFCC, agreement, bench_m7, split_audio  # noqa: E402
from tinykws.recipes import load_int_model  # noqa: E402
from tinykws.train import load_model  # noqa: E402
from tinykws.train.evaluate import predict_logits  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="dscnn-kws-device")
    ap.add_argument("--split", default="testing")
    ap.add_argument("--calib-clips", type=int, default=400)
    ap.add_argument("--cmsis-dsp", default=None)
    ap.add_argument("--no-m7", action="store_true")
    args = ap.parse_args()

    net, bundle = load_model(args.model)
    cfg = bundle.frontend
    audio, y = split_audio(args.data, args.split, bundle.labels)
    with torch.no_grad():
        feats = build_frontend(cfg)(torch.from_numpy(audio.astype(np.float32) / 32768.0))
    float_acc = float((predict_logits(net, feats).argmax(1).numpy() == y).mean())
    im = load_int_model(args.model, args.data, calib_clips=args.calib_clips)
    agree = agreement(im, audio, y, cmsis_dsp=args.cmsis_dsp)

    dev = DeviceMFCC(cfg, args.cmsis_dsp)
    t = time.perf_counter()
    dev.clip_q16(audio)
    t_dev = time.perf_counter() - t
    fe = build_frontend(cfg)
    torch.set_num_threads(1)
    t = time.perf_counter()
    with torch.no_grad():
        fe(torch.from_numpy(audio.astype(np.float32) / 32768.0))
    t_torch = time.perf_counter() - t
    speed = {"clips": len(audio), "host_fixed_point_clips_per_s": round(len(audio) / t_dev, 1),
             "torch_float_clips_per_s_1_thread": round(len(audio) / t_torch, 1)}

    m7 = {}
    if not args.no_m7:
        one_s = audio[0]  # one real clip, pushed hop by hop
        for opt in ("O2", "Os"):
            r = bench_m7(cfg, audio=one_s, scale=float(im.tensors[im.input].scale[0]),
                         zero_point=int(im.tensors[im.input].zp), opt=opt, cmsis_dsp=args.cmsis_dsp,
                         stages=True)
            m7[opt] = {k: r[k] for k in ("bit_exact", "hops", "frames", "instructions_per_hop",
                                         "instructions_per_hop_min", "instructions_per_hop_max",
                                         "instructions_hop_without_frame", "est_ms_per_hop", "duty_cycle",
                                         "flash_bytes", "state_bytes", "stack_bytes", "ram_bytes", "stages")}
        m7["counting"] = r["counting"]
        m7["est_note"] = r["est_note"]
    print(json.dumps({"model": args.model, "frontend": cfg.to_dict(), "split": args.split,
                      "float_acc": float_acc, **agree, "speed": speed, "m7": m7}))


if __name__ == "__main__":
    main()

"""Dense fast kernels at channel counts that are not multiples of 4, on the emulated Cortex-M7.

A channel-pruned DS-CNN without rounding has 42 to 44 channels a layer. For each of 42, 43 and 44
channels: one 25x5xC -> C pointwise layer and one 3x3 SAME depthwise layer on 25x5xC, each the
variant kernels.select() gives with the default options (fast, input order, wide pointwise), built
as per-layer instances with constant shapes (as the generator emits them), -O2 with the DSP
extension, and checked bit-exact against the integer reference. Prints one JSON object (last
line): instructions, MACs and instructions per MAC of every layer, and the variant that ran.

    python benchmarks/bench_channel_tails.py [--markdown]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sparse_kernels import project  # noqa: E402

from tinykws.deploy import kernels as KL  # noqa: E402
from tinykws.deploy.mcu import build_m7, run_m7  # noqa: E402
from tinykws.quant import kernels as K  # noqa: E402

CHANNELS = (42, 43, 44)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="also print the table of docs/sparse_kernels.md")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    in_zp, out_zp = -128, -128
    rows, exact = [], True
    for c in CHANNELS:
        x = rng.integers(-128, 128, (1, 25, 5, c)).astype(np.int8)
        base = dict(in_h=25, in_w=5, in_c=c, out_h=25, out_w=5, out_c=c, stride_h=1, stride_w=1,
                    depth_multiplier=1, in_offset=-in_zp, out_offset=out_zp, act_min=-128, act_max=127)
        calls, want, meta = [], [], []
        for kind in ("pointwise", "depthwise"):
            dw = kind == "depthwise"
            w = rng.integers(-127, 128, (1, 3, 3, c) if dw else (c, 1, 1, c)).astype(np.int8)
            bias = rng.integers(-5000, 5000, c).astype(np.int32)
            mult, shift = (np.array(a, np.int32) for a in zip(*[K.quantize_multiplier(float(10 ** rng.uniform(-3.5, -2.5)))
                                                                  for _ in range(c)]))
            pad = (1, 1, 1, 1) if dw else (0, 0, 0, 0)
            p = {**base, "k_h": 3 if dw else 1, "k_w": 3 if dw else 1, "pad_top": pad[0], "pad_left": pad[2]}
            args_ = (x, in_zp, w, bias, (1, 1), pad, mult, shift, out_zp, -128, 127)
            y = K.depthwise_conv2d(*args_) if dw else K.conv2d(*args_)
            v = KL.select(kind if dw else "conv", p, kernels="fast")
            calls.append((v, p, w, bias, mult, shift, y.size))
            want.append(y.reshape(-1))
            macs = 25 * 5 * c * (9 if dw else c)
            meta.append({"layer": f"{kind} 25x5x{c} -> {c}" + (" (3x3 SAME)" if dw else ""), "channels": c,
                         "kind": kind, "kernel": v.name, "macs": macs,
                         "weight_bytes": int(v.pack_weights(w, p)[0].nbytes)})
        with tempfile.TemporaryDirectory() as tmp:
            proj = Path(tmp) / "proj"
            project(proj, calls, x, specialize=True)
            r = run_m7(build_m7(proj, opt="O2", dsp=True), x.reshape(1, -1))
        got, at = r.outputs.reshape(-1), 0
        for m, yv, n in zip(meta, want, r.layer_instructions):
            ok = bool(np.array_equal(got[at: at + yv.size], yv))
            exact &= ok
            at += yv.size
            rows.append({**m, "instructions": n, "instructions_per_mac": round(n / m["macs"], 3), "bit_exact": ok})
    if args.markdown:
        print("| layer | kernel | instructions | instructions / MAC |\n|---|---|---|---|")
        for r_ in rows:
            print(f"| {r_['layer']} | `{r_['kernel']}` | {r_['instructions']:,} | {r_['instructions_per_mac']:.2f} |")
    print(json.dumps({"target": "emulated Cortex-M7, -O2, DSP, per-layer instances (constant shapes)",
                      "bit_exact": exact, "layers": rows}))
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())

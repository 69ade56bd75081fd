"""Sparse pointwise kernels against the dense fast ones on the emulated Cortex-M7.

One 25x5x64 -> 64 pointwise layer (the DS-CNN's), weights at each sparsity: elementwise zeros for
the dense and zero-skip kernels, whole 1x4 blocks along the input channels for the block-sparse
one (and the zero-skip kernel on those same weights). Every call is a per-layer instance of the
kernel's inline body with a constant params struct, as the generator emits it (--generic: the
library's functions), built -O2 with the DSP extension, and checked bit-exact against the integer
reference. Prints one JSON object (last line): instructions per call, weight bytes, the measured
break-even sparsities against the dense SIMD kernel (linear interpolation between grid points),
and the 1x4 block-sparse speed-up at 75%.

    python benchmarks/bench_sparse_kernels.py [--markdown]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinykws.deploy import kernels as KL  # noqa: E402
from tinykws.deploy.mcu import build_m7, run_m7  # noqa: E402
from tinykws.quant import kernels as K  # noqa: E402

GRID = (0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
REPORT = (0.0, 0.5, 0.75, 0.9)
FIELDS = ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h", "stride_w", "pad_top",
          "pad_left", "depth_multiplier", "in_offset", "out_offset", "act_min", "act_max", "requant")
RQ = {0: "TKWS_RQ_EXACT", 1: "TKWS_RQ_FAST", 2: "TKWS_RQ_FULL"}
# (label, variant, weight kind)
KERNELS = [("dense_simd", "tkws_pw_s8_fast_wide", "element"), ("dense_simd_int8", "tkws_pw_s8_fast", "element"),
           ("zero_skip", "tkws_pw_s8_sparse", "element"), ("zero_skip_wo", "tkws_pw_s8_sparse_wo", "element"),
           ("block4", "tkws_pw_s8_block4", "block"), ("zero_skip_on_blocks", "tkws_pw_s8_sparse", "block")]


def weights(rng, s: float, kind: str) -> np.ndarray:
    w = rng.integers(-127, 128, (64, 1, 1, 64)).astype(np.int8)
    w[w == 0] = 1
    if kind == "block":
        keep = np.zeros(64 * 16, bool)
        keep[rng.permutation(keep.size)[: round(keep.size * (1 - s))]] = True
        return w * np.repeat(keep.reshape(64, 16), 4, axis=1).reshape(w.shape).astype(np.int8)
    keep = np.zeros(w.size, bool)
    keep[rng.permutation(w.size)[: round(w.size * (1 - s))]] = True
    return w * keep.reshape(w.shape).astype(np.int8)


def _arr(name, a):
    a = np.asarray(a).reshape(-1)
    ct = {1: "int8_t", 2: "int16_t", 4: "int32_t"}[a.dtype.itemsize]
    return f"static const {ct} {name}[{max(len(a), 1)}] __attribute__((aligned(4))) = {{{', '.join(map(str, a.tolist())) or '0'}}};\n"


def project(folder: Path, calls, x, specialize: bool) -> None:
    """A project the harness of tinykws.deploy.mcu runs: call i between tkws_layer_mark(i) and (i + 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    for src in KL.sources():
        shutil.copy2(src, folder / src.name)
    consts, fns, body, at, scratch, headers = [], [], [], 0, 4, set()
    for i, (v, p, w, bias, mult, shift, n_out) in enumerate(calls):
        packed, ctype = v.pack_weights(w, p)
        packed = np.asarray(packed, {"int8_t": np.int8, "int16_t": np.int16, "int32_t": np.int32}[ctype])
        b = v.fold_bias(bias, w, p["in_offset"])
        m, s, mode = v.pack_requant(mult, shift, p, w, bias)
        p = {**p, "requant": mode}
        consts += [_arr(f"w{i}", packed), _arr(f"b{i}", b), _arr(f"m{i}", m), _arr(f"s{i}", s),
                   f"static const tkws_conv_params p{i} = {{{', '.join(str(int(p.get(f, 0))) for f in FIELDS)}}};\n"]
        if specialize:
            headers.add(v.body_header)
            fns.append(f"static __attribute__((noinline)) void run{i}(const int8_t *in, int8_t *out, void *scratch)\n"
                       f"{{\n    {v.body}(&p{i}, in, w{i}, b{i}, m{i}, s{i}, out, scratch, {RQ[mode]});\n}}\n")
            body.append(f"    tkws_layer_mark({i});\n    run{i}(input, output + {at}, scratch);\n")
        else:
            body.append(f"    tkws_layer_mark({i});\n    {v.name}(&p{i}, input, w{i}, b{i}, m{i}, s{i}, output + {at}, scratch);\n")
        at += n_out
        scratch = max(scratch, v.scratch_bytes(p))
    (folder / "model.h").write_text(
        f"#ifndef TKWS_MODEL_H\n#define TKWS_MODEL_H\n#include <stdint.h>\n#define TKWS_INPUT_SIZE {x.size}\n"
        f"#define TKWS_OUTPUT_SIZE {at}\nint tkws_invoke(const int8_t *input, int8_t *output);\n"
        "void tkws_layer_mark(int i);\n#endif\n")
    (folder / "model.c").write_text(
        '#include "model.h"\n#include "tkws_nn.h"\n' + "".join(f'#include "{h}"\n' for h in sorted(headers))
        + "".join(consts) + f"static int8_t scratch[{scratch}] __attribute__((aligned(8)));\n"
        + "__attribute__((noinline, weak)) void tkws_layer_mark(int i) { (void)i; }\n" + "".join(fns)
        + "int tkws_invoke(const int8_t *input, int8_t *output)\n{\n" + "".join(body)
        + f"    tkws_layer_mark({len(calls)});\n    return 0;\n}}\n")


def break_even(grid, sparse, dense):
    """The lowest sparsity from which the sparse kernel needs no more instructions than the dense one."""
    for i, s in enumerate(grid):
        if sparse[i] <= dense[i]:
            if i == 0:
                return s
            d0, d1 = sparse[i - 1] - dense[i - 1], sparse[i] - dense[i]
            return round(grid[i - 1] + (grid[i] - grid[i - 1]) * d0 / (d0 - d1), 3)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generic", action="store_true", help="call the library's functions, not per-layer instances")
    ap.add_argument("--markdown", action="store_true", help="also print the table of docs/sparse_kernels.md")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    x = rng.integers(-128, 128, (1, 25, 5, 64)).astype(np.int8)
    in_zp, out_zp = -128, -128
    p0 = dict(in_h=25, in_w=5, in_c=64, out_h=25, out_w=5, out_c=64, k_h=1, k_w=1, stride_h=1, stride_w=1, pad_top=0,
              pad_left=0, depth_multiplier=1, in_offset=-in_zp, out_offset=out_zp, act_min=-128, act_max=127)
    ins, wbytes, exact = {}, {}, True
    for s in GRID:  # one firmware per sparsity (the outputs of every call fit the SRAM)
        ws = {kind: weights(rng, s, kind) for kind in ("element", "block")}
        bias = rng.integers(-5000, 5000, 64).astype(np.int32)
        mult, shift = (np.array(a, np.int32) for a in zip(*[K.quantize_multiplier(float(10 ** rng.uniform(-3.5, -2.5)))
                                                              for _ in range(64)]))
        calls, want = [], []
        for label, name, kind in KERNELS:
            w = ws[kind]
            y = K.conv2d(x, in_zp, w, bias, (1, 1), (0, 0, 0, 0), mult, shift, out_zp, -128, 127)
            v = KL.VARIANTS[name]
            calls.append((v, p0, w, bias, mult, shift, y.size))
            want.append(y.reshape(-1))
            wbytes[(s, label)] = int(v.pack_weights(w, p0)[0].nbytes)
        with tempfile.TemporaryDirectory() as tmp:
            proj = Path(tmp) / "proj"
            project(proj, calls, x, specialize=not args.generic)
            r = run_m7(build_m7(proj, opt="O2", dsp=True), x.reshape(1, -1))
        got, at = r.outputs.reshape(-1), 0
        for yv in want:
            exact &= bool(np.array_equal(got[at: at + yv.size], yv))
            at += yv.size
        for (label, _, _), n in zip(KERNELS, r.layer_instructions):
            ins[(s, label)] = n
    table = {f"{s:g}": {label: {"instructions": ins[(s, label)], "weight_bytes": wbytes[(s, label)]}
                        for label, _, _ in KERNELS} for s in GRID}
    col = {label: [ins[(s, label)] for s in GRID] for label, _, _ in KERNELS}
    dense = col["dense_simd"]
    b75 = ins[(0.75, "dense_simd")] / ins[(0.75, "block4")]
    out = {
        "layer": "pointwise 25x5x64 -> 64 (512000 MACs dense)", "target": "emulated Cortex-M7, -O2, DSP",
        "instances": "generic library functions" if args.generic else "per-layer instances (constant shapes)",
        "bit_exact": exact, "sparsities": list(GRID), "table": table,
        "break_even_vs_dense_simd": {"zero_skip": break_even(GRID, col["zero_skip"], dense),
                                     "zero_skip_wo": break_even(GRID, col["zero_skip_wo"], dense),
                                     "block4": break_even(GRID, col["block4"], dense),
                                     "zero_skip_vs_dense_int8": break_even(GRID, col["zero_skip"],
                                                                           col["dense_simd_int8"])},
        "block4_75_speedup_vs_dense_simd": round(b75, 3), "block4_75_reaches_1.5x": b75 >= 1.5,
    }
    if args.markdown:
        print("| sparsity | " + " | ".join(l for l, _, _ in KERNELS) + " |\n|---|" + "---|" * len(KERNELS))
        for s in REPORT:
            print(f"| {s:.0%} | " + " | ".join(f"{ins[(s, l)]:,} ({ins[(0.0, 'dense_simd')] / ins[(s, l)]:.2f}x)"
                                               for l, _, _ in KERNELS) + " |")
    print(json.dumps(out))
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())

"""Sub-byte weights on the emulated Cortex-M7: each model generated with int8 weights
(pack_weights="off") and with its 4- or 2-bit layers packed (pack_weights="auto"), built with
arm-none-eabi-gcc (-mcpu=cortex-m7 ... -O2, DSP on) and run on the unicorn Cortex-M7 model; every
run is checked bit-exact against IntModel.run. Prints one JSON object (last line); --markdown also
prints the table of docs/sparse_kernels.md ("Sub-byte weights").

    tinykws quantize --model dscnn-kws --method qat4 --epochs 3 --data $DATA --out runs/sb/qat4.pt
    tinykws quantize --model dscnn-kws --method qat2 --epochs 3 --data $DATA --out runs/sb/qat2.pt
    tinykws quantize --model dscnn-kws --method learned --epochs 3 --data $DATA --out runs/sb/learned.pt
    python benchmarks/bench_subbyte.py --models dscnn-kws runs/sb/qat4.pt runs/sb/qat2.pt runs/sb/learned.pt \\
        --data $DATA --markdown
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinykws.deploy import kernels as KL  # noqa: E402
from tinykws.deploy.mcu import bench_m7, clip_inputs, default_inputs  # noqa: E402
from tinykws.recipes import load_int_model  # noqa: E402

PACKED = ("_s4_", "_s2_")


def weight_stats(im) -> dict:
    """Weights of the conv/depthwise/fc layers: count, and how many of them fit 4 or 2 bits."""
    n = {2: 0, 4: 0, 8: 0}
    for op in im.ops:
        if op.kind in ("conv", "depthwise", "fc"):
            w = im.tensors[op.inputs[1]].data
            n[KL.weight_bits(w)] += int(np.asarray(w).size)
    return {"weights": sum(n.values()), "weights_2bit": n[2], "weights_4bit": n[4], "weights_8bit": n[8]}


def markdown(rows: list[dict]) -> str:
    out = ["| model | weights | kernels | instructions | per MAC | flash model B | flash kernels B | flash total B | "
           "RAM B | packed layers | bit-exact |", "|" + "---|" * 11]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['model']} | {r['pack_weights']} | {r['kernels']} | {r['error']} |" + " |" * 7)
            continue
        what = "packed (auto)" if r["pack_weights"] == "auto" else "int8 (off)"
        out.append(f"| {r['model']} | {what} | {r['kernels']} | {r['instructions']:,} | {r['instructions_per_mac']:.2f} | "
                   f"{r['flash']['model']:,} | {r['flash']['kernels']:,} | {r['flash_bytes']:,} | {r['ram_bytes']:,} | "
                   f"{r['packed_layers']} of {r['weight_layers']} | {'yes' if r['bit_exact'] else 'NO'} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", required=True, help="model files or shipped names (quantized at 4/2 bits)")
    ap.add_argument("--data", help="Speech Commands folder: calibration of float models and the clips to run")
    ap.add_argument("--clips", type=int, default=2, help="clips per run with --data (else zero + random inputs)")
    ap.add_argument("--kernels", nargs="*", default=["fast"], help="ref and/or fast")
    ap.add_argument("--opt", default="O2")
    ap.add_argument("--calib-clips", type=int, default=400)
    ap.add_argument("--markdown", action="store_true", help="also print the markdown table (stderr)")
    a = ap.parse_args(argv)

    rows, t0 = [], time.time()
    for src in a.models:
        im = load_int_model(src, a.data, calib_clips=a.calib_clips)
        x = clip_inputs(im, a.data, a.clips) if a.data else default_inputs(im, n_random=1)
        name = Path(src).stem if Path(src).suffix else src
        stats = weight_stats(im)
        for kernels in a.kernels:
            for pack in ("off", "auto"):
                t = time.time()
                try:
                    d = bench_m7(im, kernels, "input", a.opt, inputs=x, model=name, pack_weights=pack)
                except Exception as exc:  # one failing variant must not hide the others
                    d = {"model": name, "kernels": kernels, "error": f"{type(exc).__name__}: {exc}"}
                d.update(stats, pack_weights=pack, seconds=round(time.time() - t, 1))
                if "layers" in d:
                    wl = [l for l in d["layers"] if l["op"] in ("conv", "depthwise", "fc")]
                    d["weight_layers"] = len(wl)
                    d["packed_layers"] = sum(any(s in (l["kernel"] or "") for s in PACKED) for l in wl)
                rows.append(d)
                print(f"{name} {kernels} pack={pack}: " + (d.get("error") or f"{d['instructions']:,} instructions, "
                      f"flash {d['flash_bytes']:,} B, bit-exact {d['bit_exact']}"), file=sys.stderr, flush=True)
    for r in rows:  # packed against the same model's int8 weights
        base = next((b for b in rows if b["model"] == r["model"] and b["kernels"] == r["kernels"]
                     and b["pack_weights"] == "off" and "error" not in b), None)
        if base and "error" not in r:
            r["flash_vs_int8"] = round(r["flash_bytes"] / base["flash_bytes"], 3)
            r["instructions_vs_int8"] = round(r["instructions"] / base["instructions"], 3)
    if a.markdown:
        print(markdown(rows), file=sys.stderr)
    print(json.dumps({"benchmark": "subbyte", "opt": a.opt, "machine": platform.machine(),
                      "seconds": round(time.time() - t0, 1),
                      "rows": [{k: v for k, v in r.items() if k not in ("instructions_each",)} for r in rows]}))
    return 0 if all(r.get("bit_exact") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

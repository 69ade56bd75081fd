"""Side by side on the emulated Cortex-M7: tinykws ref / fast (both loop orders) and CMSIS-NN.

Each model is built with the same arm-none-eabi-gcc flags (-mcpu=cortex-m7 -mfpu=fpv5-d16
-mfloat-abi=hard -mthumb, DSP extension on, -O2 and -Os) and run on the same unicorn Cortex-M7
model; instructions count every instruction of each executed block. Every run is checked
bit-exact against IntModel.run. Prints one JSON object (last line); --markdown also prints the
table of docs/deploy.md.

    python benchmarks/bench_mcu.py --cmsis-nn ../shared/peers/cmsis-nn \\
        --mlperf ../shared/peers/mlperf_tiny_kws/kws_ref_model.tflite \\
        --data ../shared/data/speech_commands_mini --markdown
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinykws.recipes import load_int_model  # noqa: E402
from tinykws.deploy.mcu import bench_m7, clip_inputs, default_inputs  # noqa: E402

VARIANTS = [("ref", "input"), ("fast", "input"), ("fast", "weight"), ("cmsis-nn", None)]


def _label(kernels, loop_order):
    return "CMSIS-NN" if kernels == "cmsis-nn" else f"tinykws {kernels} ({loop_order})"


def markdown(rows: list[dict]) -> str:
    head = ("| model | kernels | opt | instructions | vs CMSIS-NN | per MAC | flash model B | flash kernels B | "
            "flash total B | arena B | stack B | RAM B | bit-exact |\n|" + "---|" * 13)
    out = [head]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['model']} | {_label(r['kernels'], r['loop_order'])} | -{r['opt']} | {r['error']} |"
                       + " |" * 9)
            continue
        ratio = f"{r['vs_cmsis_nn']:.2f}x" if r.get("vs_cmsis_nn") else "-"
        out.append(f"| {r['model']} | {_label(r['kernels'], r['loop_order'])} | -{r['opt']} | {r['instructions']:,} | "
                   f"{ratio} | {r['instructions_per_mac']:.2f} | {r['flash']['model']:,} | {r['flash']['kernels']:,} | "
                   f"{r['flash_bytes']:,} | {r['arena_bytes']:,} | {r['stack_bytes']:,} | {r['ram_bytes']:,} | "
                   f"{'yes' if r['bit_exact'] else 'NO'} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cmsis-nn", required=True, help="CMSIS-NN source folder")
    ap.add_argument("--mlperf", help="the MLPerf Tiny DS-CNN int8 .tflite")
    ap.add_argument("--models", nargs="*", default=["dscnn-kws", "nas-kws"], help="shipped models (PTQ int8)")
    ap.add_argument("--data", help="Speech Commands folder: calibration of the shipped models and the clips to run")
    ap.add_argument("--clips", type=int, default=2, help="clips per run with --data (else zero + random inputs)")
    ap.add_argument("--opts", nargs="*", default=["O2", "Os"])
    ap.add_argument("--variants", nargs="*", default=[f"{k}:{l}" if l else k for k, l in VARIANTS],
                    help="kernels[:loop order], e.g. fast:input cmsis-nn")
    ap.add_argument("--calib-clips", type=int, default=400)
    ap.add_argument("--markdown", action="store_true", help="also print the markdown table (stderr)")
    a = ap.parse_args(argv)

    models = ([("mlperf-dscnn", a.mlperf)] if a.mlperf else []) + [(m, m) for m in a.models]
    variants = [(v.split(":")[0], v.split(":")[1] if ":" in v else "input") for v in a.variants]
    rows, t0 = [], time.time()
    for name, src in models:
        im = load_int_model(src, a.data, calib_clips=a.calib_clips)
        x = clip_inputs(im, a.data, a.clips) if a.data else default_inputs(im, n_random=1)
        for opt in a.opts:
            group = []
            for kernels, loop_order in variants:
                t = time.time()
                try:
                    d = bench_m7(im, kernels, loop_order, opt, inputs=x, cmsis_dir=a.cmsis_nn, model=name)
                except Exception as exc:  # one failing variant must not hide the others
                    d = {"model": name, "kernels": kernels, "loop_order": None if kernels == "cmsis-nn" else loop_order,
                         "opt": opt, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
                d["seconds"] = round(time.time() - t, 1)
                d.pop("instructions_each", None)
                print(json.dumps({k: d.get(k) for k in ("model", "kernels", "loop_order", "opt", "instructions",
                                                         "bit_exact", "error")}), file=sys.stderr, flush=True)
                group.append(d)
            base = next((g["instructions"] for g in group if g["kernels"] == "cmsis-nn" and "error" not in g), None)
            for g in group:
                if base and "error" not in g:
                    g["vs_cmsis_nn"] = round(g["instructions"] / base, 3)
            rows += group
    gcc = subprocess.run(["arm-none-eabi-gcc", "-dumpversion"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("arm-none-eabi-gcc") else None
    import unicorn

    if a.markdown:
        print(markdown(rows), file=sys.stderr)
    print(json.dumps({"benchmark": "mcu", "arm_none_eabi_gcc": gcc, "unicorn": unicorn.__version__,
                      "host": platform.machine(), "flags": "-mcpu=cortex-m7 -mfpu=fpv5-d16 -mfloat-abi=hard -mthumb",
                      "counting": "every instruction of each executed block (UC_HOOK_BLOCK), IT-skipped included",
                      "seconds": round(time.time() - t0, 1), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

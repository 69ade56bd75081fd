"""Build a generated C project with gcc on the host and run it over a batch of int8 inputs.

The project's `make host` links model.c, the kernels and the small harness `host_main.c` into
`build/host/tkws_run`, which reads raw int8 inputs from stdin (TKWS_INPUT_SIZE bytes each) and
writes the int8 outputs to stdout: a batch is one pipe, and the same binary can be built with
sanitizers (`make host CFLAGS_EXTRA=-fsanitize=address,undefined`).

    exe = build_host("out/kws")
    out = run_host("out/kws", x)          # x: (B, ...) int8 -> (B, TKWS_OUTPUT_SIZE) int8
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from . import DeployError

HOST_EXE = Path("build") / "host" / "tkws_run"


def model_defines(project_dir: str | Path) -> dict[str, int]:
    """The integer #defines of a generated model.h (TKWS_INPUT_SIZE, TKWS_OUTPUT_SIZE, ...)."""
    path = Path(project_dir) / "model.h"
    if not path.is_file():
        raise DeployError(f"{project_dir}: no model.h (not a generated project)")
    return {k: int(v) for k, v in re.findall(r"^#define\s+(TKWS_\w+)\s+\(?(-?\d+)\)?", path.read_text(), re.M)}


def build_host(project_dir: str | Path, opt: str = "-O2", cflags: str = "", cc: str = "gcc") -> Path:
    """`make host` in the project; returns the harness executable."""
    project_dir = Path(project_dir)
    if shutil.which("make") is None or shutil.which(cc) is None:
        raise DeployError(f"building on the host needs make and {cc} on PATH")
    cmd = ["make", "-s", "-C", str(project_dir), "host", f"OPT={opt}", f"CC={cc}"]
    if cflags:
        cmd.append(f"CFLAGS_EXTRA={cflags}")
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        first = next((l for l in (r.stderr or r.stdout).splitlines() if "error" in l), (r.stderr or r.stdout).strip()[:300])
        raise DeployError(f"{project_dir}: host build failed: {first}")
    return project_dir / HOST_EXE


def run_host(project_dir: str | Path, inputs: np.ndarray, exe: str | Path | None = None, timeout: float = 600) -> np.ndarray:
    """Run the host build (built first if missing) on int8 inputs (B, ...) -> int8 outputs (B, OUTPUT_SIZE)."""
    project_dir = Path(project_dir)
    d = model_defines(project_dir)
    x = np.ascontiguousarray(inputs, dtype=np.int8).reshape(len(inputs), -1)
    if x.shape[1] != d["TKWS_INPUT_SIZE"]:
        raise DeployError(f"{project_dir}: inputs of {x.shape[1]} bytes, the model takes {d['TKWS_INPUT_SIZE']}")
    exe = Path(exe) if exe else project_dir / HOST_EXE
    if not exe.is_file():
        exe = build_host(project_dir)
    r = subprocess.run([str(exe)], input=x.tobytes(), capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise DeployError(f"{exe}: exit code {r.returncode}: {r.stderr.decode(errors='replace').strip()[:300]}")
    n = d["TKWS_OUTPUT_SIZE"]
    if len(r.stdout) != n * len(x):
        raise DeployError(f"{exe}: {len(r.stdout)} output bytes for {len(x)} inputs of {n} bytes each")
    return np.frombuffer(r.stdout, np.int8).reshape(len(x), n)

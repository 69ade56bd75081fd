"""Output folders and files that tinykws writes, and the rules for replacing them (no tinykws
imports: every layer uses it).

Every folder tinykws creates holds a marker file (``.tinykws``). ``--overwrite`` only ever deletes
a folder with that marker, or a single file of a kind tinykws writes; it refuses the current folder,
its parents, the home folder and anything that contains or lies inside an input. All checks run
before anything is touched.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MARKER = ".tinykws"


def _is_json(head: bytes) -> bool:
    return head.lstrip()[:1] in (b"{", b"[")


# the single files tinykws writes, each recognised by its suffix and its first bytes
_FILE_KINDS = {".pt": lambda h: h[:4] == b"PK\x03\x04",  # torch.save's zip
               ".tflite": lambda h: h[4:8] == b"TFL3",
               ".onnx": lambda h: h[:1] == b"\x08",  # ModelProto starts with ir_version (field 1, varint)
               ".png": lambda h: h[:4] == b"\x89PNG",
               ".json": _is_json}


class OutputError(FileExistsError):
    """An output folder or file that may not be written or replaced."""


def _inside(a: Path, b: Path) -> bool:
    """a equals b or lies inside b (both resolved)."""
    return a == b or b in a.parents


def _check_not_special(p: Path, shown: Path, inputs) -> None:
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if p == cwd:
        raise OutputError(f"{shown}: is the current folder; tinykws will not write into or replace it, choose a new folder")
    if p in cwd.parents:
        raise OutputError(f"{shown}: contains the current folder; choose a new folder")
    if p == home or p == Path(p.anchor):
        raise OutputError(f"{shown}: is the home or root folder; choose a new folder")
    for inp in inputs:
        if inp in (None, ""):
            continue
        i = Path(inp).resolve()
        if _inside(p, i) or _inside(i, p):
            raise OutputError(f"{shown}: {'is or contains' if _inside(i, p) else 'lies inside'} the input {inp}; "
                              f"choose an output folder apart from the input data")


def check_output_dir(path: str | Path, overwrite: bool = False, inputs=(), resume: bool = False,
                     busy: str = "choose a new folder, or pass --overwrite to replace a folder tinykws wrote") -> None:
    """Raise OutputError unless `path` may become (or be replaced by) a tinykws output folder."""
    shown = Path(path)
    p = shown.resolve()
    _check_not_special(p, shown, inputs)
    if not p.exists():
        return
    if not p.is_dir():
        raise OutputError(f"{shown}: exists and is not a folder")
    if resume or not any(p.iterdir()):
        return
    if not overwrite:
        raise OutputError(f"{shown}: exists and is not empty; {busy}")
    if not (p / MARKER).is_file():
        raise OutputError(f"{shown}: not a folder tinykws wrote (no {MARKER} marker in it); --overwrite only "
                          f"replaces tinykws output, delete it yourself or choose another folder")


def open_report_dir(path: str | Path, inputs=()) -> Path:
    """A folder whose files tinykws rewrites on every run (sweep, pareto): new, empty, or one it wrote."""
    shown = Path(path)
    p = shown.resolve()
    _check_not_special(p, shown, inputs)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{shown}: exists and is not a folder")
    if p.exists() and any(p.iterdir()) and not (p / MARKER).is_file():
        raise OutputError(f"{shown}: not a folder tinykws wrote (no {MARKER} marker in it); choose a new folder")
    return mark(shown)


def mark(path: str | Path) -> Path:
    """Create the folder (if needed) and put the marker in it."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    (p / MARKER).write_text("written by tinykws; --overwrite may replace this folder\n")
    return p


def clear_dir(path: str | Path) -> None:
    """Delete a tinykws output folder (it must hold the marker; checked again here)."""
    p = Path(path)
    if not p.exists():
        return
    if not (p / MARKER).is_file():
        raise OutputError(f"{p}: not a folder tinykws wrote (no {MARKER} marker in it); not deleting it")
    shutil.rmtree(p)


def prepare_output_dir(path: str | Path, overwrite: bool = False, inputs=()) -> Path:
    """Check, delete an old tinykws folder when `overwrite`, then create the folder with its marker."""
    check_output_dir(path, overwrite, inputs)
    p = Path(path)
    if p.exists() and any(p.iterdir()):
        clear_dir(p)
    return mark(p)


def temp_sibling(path: str | Path) -> Path:
    """A new empty folder beside `path`, to fill and then `swap_in`."""
    p = Path(path)
    p.resolve().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.resolve().name}.", suffix=".tmp", dir=p.resolve().parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the output is not
    mark(tmp)
    return tmp


def swap_in(tmp: Path, path: str | Path, overwrite: bool, inputs=()) -> Path:
    """Replace `path` by the finished folder `tmp` (checks again: `path` may have appeared meanwhile)."""
    p = Path(path)
    check_output_dir(p, overwrite, inputs)
    if p.exists():
        if any(p.iterdir()):
            clear_dir(p)
        else:
            p.rmdir()
    tmp.rename(p)
    return p


def check_output_file(path: str | Path | None, overwrite: bool = False, inputs=()) -> None:
    """Raise OutputError unless `path` may be written: new, or with `overwrite` a file of a kind tinykws writes."""
    if path is None:
        return
    shown = Path(path)
    p = shown.resolve()
    for inp in inputs:
        if inp not in (None, "") and Path(inp).exists() and (p == Path(inp).resolve()):
            raise OutputError(f"{shown}: is the input {inp}; choose another output file")
    if not p.exists():
        if p.parent.exists() and not p.parent.is_dir():
            raise OutputError(f"{shown}: {p.parent} is not a folder")
        return
    if p.is_dir():
        raise OutputError(f"{shown}: is a folder; give a file name")
    if not overwrite:
        raise OutputError(f"{shown}: exists; pass --overwrite to replace it")
    kind = _FILE_KINDS.get(p.suffix.lower())
    if kind is None:
        raise OutputError(f"{shown}: not a kind of file tinykws writes ({', '.join(_FILE_KINDS)}); not replacing it")
    with open(p, "rb") as f:
        if not kind(f.read(64)):
            raise OutputError(f"{shown}: its content is not a {p.suffix} file tinykws writes; not replacing it")


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file through a temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

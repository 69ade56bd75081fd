"""Options shared by the commands, defined once; options of config fields take their default, help
and range from the config dataclass (`tinykws.checks.setting`), so the CLI and Python agree."""
from __future__ import annotations

import inspect
import json
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from typing_extensions import Annotated

from ..checks import describe
from ..outputs import check_output_dir, check_output_file


def config_option(cls, name: str, *decls: str, help: str | None = None, **kw):
    """A typer option for field `name` of config dataclass `cls`: its default, help and range."""
    f = {f.name: f for f in fields(cls)}[name]
    default = f.default if f.default is not MISSING else f.default_factory()
    text = help or f.metadata.get("help", "")
    rng = describe(f.metadata) if f.metadata else ""
    if rng:
        text = f"{text} ({rng})" if text else rng
    return typer.Option(default, *decls, help=text, **kw)


def default_of(func, name: str, *decls: str, **kw):
    """A typer option whose default is the default of parameter `name` of library function `func`."""
    return typer.Option(inspect.signature(func).parameters[name].default, *decls, **kw)


Json = Annotated[bool, typer.Option("--json", help="print one JSON object as the last line of stdout")]
Overwrite = Annotated[bool, typer.Option(
    "--overwrite", help="replace an output that tinykws wrote earlier (never a folder it did not write)")]
DataDir = Annotated[Path, typer.Option(
    "--data", help="a Speech Commands folder (word folders and lists), or an official test-set folder")]
OptionalDataDir = Annotated[Optional[Path], typer.Option(
    "--data", help="a Speech Commands folder (word folders and lists), or an official test-set folder")]
ModelRef = Annotated[Optional[str], typer.Option(
    "--model", help="model file or shipped model name (default: the shipped dscnn-kws)")]
Threads = Annotated[int, typer.Option("--threads", min=0, help="torch CPU threads (0: torch's default)")]

# ---------------------------------------------------------------------------- output of every command
err = Console(stderr=True, soft_wrap=True)


def emit_json(obj: dict) -> None:
    """The scripting contract: one JSON object as the last line of stdout."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def given_options(ctx: typer.Context) -> set[str]:
    """Names of the options the user gave on the command line (not defaults)."""
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return {name for name, src in sources.items() if src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")}


def check_new_output(path: Optional[Path], overwrite: bool, inputs=(), folder: bool = False) -> None:
    """Checks before any work: a new file/folder, or with --overwrite one that tinykws wrote."""
    if path is None:
        return
    inputs = [i for i in inputs if i is not None and Path(i).exists()]
    if folder:
        check_output_dir(path, overwrite, inputs)
    else:
        check_output_file(path, overwrite, inputs)


def calib_clips_option():
    """--calib-clips, shared by the commands that quantize a float model (default CALIB_CLIPS)."""
    from ..recipes.quantize import CALIB_CLIPS

    return typer.Option(CALIB_CLIPS, help="training clips to calibrate activation ranges on (>= 1)")

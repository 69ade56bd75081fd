"""Options shared by the commands, defined once; options of config fields take their default, help
and range from the config dataclass (`tinykws.checks.setting`), so the CLI and Python agree."""
from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from ..checks import describe


def config_option(cls, name: str, *decls: str, help: str | None = None, **kw):
    """A typer option for field `name` of config dataclass `cls`: its default, help and range."""
    f = {f.name: f for f in fields(cls)}[name]
    default = f.default if f.default is not MISSING else f.default_factory()
    text = help or f.metadata.get("help", "")
    rng = describe(f.metadata) if f.metadata else ""
    if rng:
        text = f"{text} ({rng})" if text else rng
    return typer.Option(default, *decls, help=text, **kw)


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

"""Models shipped inside the package, by name."""
from __future__ import annotations

import difflib
from pathlib import Path

HERE = Path(__file__).resolve().parent
PRETRAINED = {
    "dscnn-kws": "dscnn_kws.pt",  # DS-CNN (MLPerf layout) trained on speech_commands_mini, 12 classes
    "nas-kws": "nas_kws.pt",  # searched MBConv model (tinykws search, 10 MFCCs) trained on speech_commands_mini
}
DEFAULT = "dscnn-kws"


def resolve(name_or_path: str | Path | None) -> Path:
    """A shipped model's file for its name, or the given path if it is a file."""
    from ..train.checkpoint import ModelFileError

    if name_or_path is None:
        name_or_path = DEFAULT
    if str(name_or_path) in PRETRAINED:
        path = HERE / PRETRAINED[str(name_or_path)]
        if not path.is_file():
            raise ModelFileError(f"shipped model {name_or_path!r} is missing from the installation ({path})")
        return path
    path = Path(name_or_path)
    if path.is_file():
        return path
    hint = difflib.get_close_matches(str(name_or_path), PRETRAINED, n=1)
    raise ModelFileError(f"{name_or_path}: no such model file, and not a shipped model "
                         f"({', '.join(PRETRAINED)}){f'; did you mean {hint[0]!r}?' if hint else ''}")

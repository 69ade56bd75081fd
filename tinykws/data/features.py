"""Front-end features of a whole clip set, cached on disk by (clips, front-end settings)."""
from __future__ import annotations

import os

import torch

from .clips import ClipSet, cache_root


@torch.no_grad()
def compute_features(clips: ClipSet, frontend: torch.nn.Module, batch_size: int = 512) -> torch.Tensor:
    out = [frontend(torch.from_numpy(clips.waves(slice(i, i + batch_size))))
           for i in range(0, len(clips), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def cached_features(clips: ClipSet, frontend: torch.nn.Module, frontend_key: str) -> torch.Tensor:
    """Features of un-augmented clips; recomputed only when the clips or the settings change."""
    if not clips.key:
        return compute_features(clips, frontend)
    path = cache_root() / "features" / f"{clips.key}-{frontend_key}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # damaged cache: rebuild
            path.unlink(missing_ok=True)
    feats = compute_features(clips, frontend)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(feats, tmp)
    os.replace(tmp, path)
    return feats

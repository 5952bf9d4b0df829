"""Atomic checkpoint files (write to a temporary name, then rename)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from mmbalance.errors import DataError


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (it holds RNG states, hence full unpickling)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError) as exc:
        raise DataError(f"{path}: unreadable checkpoint ({exc}); delete it to restart the run") from exc

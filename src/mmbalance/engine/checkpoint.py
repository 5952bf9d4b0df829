"""Checkpoint files of a run (written to a temporary name, then renamed) and where they live.

A run keeps in its checkpoint directory (:func:`checkpoint_path`; the workflow's is
``checkpoints/<dataset>/<method>/<run id>/seed<k>/``, :func:`mmbalance.paths.checkpoint_dir`, a tree of
its own so that the results a user pulls stay small; ``<run dir>/ckpt/`` when none is given):

- ``last`` — everything needed to resume (model, optimiser, schedule, method state, RNG states,
  history), rewritten after every epoch;
- ``selected`` — the model and method state of the val-selected epoch (the fused head's, the
  headline protocol) with the test features of that epoch, rewritten whenever the validation
  accuracy improves; what the analyses evaluate "the trained model" on (missing modality);
- ``epoch<k>`` — the model and method state after epoch ``k``, for the epochs of the run's
  ``train.keep_epochs`` only (Grad-CAM at chosen epochs).

Every checkpoint holds the resolved run config, from which the model is rebuilt
(:func:`mmbalance.analysis._runs.load_model`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmbalance.errors import DataError

CHECKPOINT_DIR = "ckpt"


def checkpoint_path(checkpoint_dir: Path, name: str = "last") -> Path:
    """The checkpoint ``name`` (``last``, ``selected``, ``epoch<k>``) in a run's checkpoint directory."""
    return Path(checkpoint_dir) / f"{name}.pt"


def epoch_checkpoint_name(epoch: int) -> str:
    """The name of the model checkpoint kept after ``epoch`` (0-based, as ``history.csv``)."""
    return f"epoch{int(epoch)}"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (it holds RNG states, hence full unpickling)."""
    if not Path(path).is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError) as exc:
        raise DataError(f"{path}: unreadable checkpoint ({exc}); delete it to restart the run") from exc


def model_state(
    config: dict[str, Any],
    epoch: int,
    model: nn.Module,
    method: Any,
    features: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """What a model checkpoint (``selected``, ``epoch<k>``) holds: enough to rebuild the model as it was
    evaluated after ``epoch``, and optionally that epoch's test features per modality."""
    state = {
        "config": config,
        "epoch": int(epoch),
        "model": model.state_dict(),
        "method": method.state_dict(),
    }
    if features is not None:
        state["test_features"] = {m: np.asarray(x) for m, x in features.items()}
    return state

"""Trained runs as the analyses need them: models rebuilt from checkpoints, evaluation data, histories."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmbalance import paths
from mmbalance.data.store import FeatureStore, open_store
from mmbalance.engine.acceleration import prepare_model
from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.checkpoint import checkpoint_path, load_checkpoint
from mmbalance.engine.loop import build_method, eval_batches
from mmbalance.engine.settings import EngineSettings
from mmbalance.errors import DataError
from mmbalance.methods._base import Method
from mmbalance.models.model import ModelOutput, MultimodalModel
from mmbalance.report.aggregate import mean_std


def feature_store(params: Mapping[str, Any], dataset: str) -> FeatureStore:
    return open_store(paths.feature_dir(params, dataset))


def load_model(
    checkpoint_dir: Path, name: str, store: FeatureStore, device: torch.device | str = "cpu"
) -> tuple[Method, nn.Module, dict[str, Any]]:
    """``(method, model, state)`` from the checkpoint ``name`` (``last``, ``selected``, ``epoch<k>``) in a
    run's ``checkpoint_dir``:
    the method's state first, then the model it builds (AUG's grown classifiers come back), then the
    weights; the model in eval mode and in the run's memory layout (``channels_last``), so that its
    features and outputs are bit-identical to the engine's evaluation (a ``compile`` setting is not
    applied: compiling would only add time to an analysis). A missing checkpoint is a
    :class:`DataError` saying how to get it."""
    path = checkpoint_path(checkpoint_dir, name)
    if not path.is_file():
        raise DataError(
            f"{path}: no '{name}' checkpoint; the run predates it or does not keep it "
            "(docs/tables.md, Analyses): delete the run directory and train it again"
        )
    state = load_checkpoint(path)
    method = build_method(state["config"], store.modalities, store.num_classes)
    method.load_state_dict(state["method"])
    model = method.build().to(device)
    layout = EngineSettings(channels_last=EngineSettings.of(state["config"]["train"]).channels_last)
    prepare_model(model, layout)
    model.load_state_dict(state["model"])
    model.eval()
    return method, model, state


def batches(
    store: FeatureStore,
    state: Mapping[str, Any],
    split: str,
    rows: list[int] | None = None,
    device: torch.device | str = "cpu",
) -> SplitBatches:
    """Evaluation batches of ``split`` as the run's engine made them (its eval batch size, clip sampling),
    of the samples at ``rows`` only when given."""
    return eval_batches(store, dict(state["config"]), split, torch.device(device), rows)


def standard_forward(model: nn.Module) -> bool:
    """True when the model's forward is ``fusion(encode(inputs))`` (the base :class:`MultimodalModel`), so
    its outputs can be recomputed from encoder features; MMTM and AGM's Shapley model act otherwise."""
    return isinstance(model, MultimodalModel) and type(model).forward is MultimodalModel.forward


def fuse(model: MultimodalModel, features: Mapping[str, torch.Tensor]) -> ModelOutput:
    """The model's output for given encoder features (valid for :func:`standard_forward` models)."""
    return ModelOutput(dict(features), model.fusion(dict(features)))


@torch.no_grad()
def encode_split(model: nn.Module, data: SplitBatches) -> dict[str, np.ndarray]:
    """Every modality's encoder features (``ModelOutput.features``) over a split, float32, in split order."""
    parts: dict[str, list[np.ndarray]] = {}
    for batch in data.epoch():
        for m, z in model(batch.inputs).features.items():
            parts.setdefault(m, []).append(z.float().cpu().numpy())
    return {m: np.concatenate(p) for m, p in parts.items()}


def history_column(rows: Sequence[Mapping[str, str]], column: str, path: Path) -> np.ndarray:
    """One column of a history as floats (empty cells NaN); a missing column is a :class:`DataError`."""
    if column not in rows[0]:
        raise DataError(f"{path}: no '{column}' column")
    return np.array([float(r[column]) if r[column] not in ("", None) else math.nan for r in rows])


def seed_mean_std(values: Sequence[Sequence[float]], ddof: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over seeds (rows) of per-epoch values (columns; runs of unequal length padded NaN,
    each epoch over the seeds that reached it)."""
    length = max(len(v) for v in values)
    stats = [
        mean_std([float(v[i]) for v in values if i < len(v) and not math.isnan(float(v[i]))], ddof)
        for i in range(length)
    ]
    return np.array([m for m, _ in stats]), np.array([s for _, s in stats])

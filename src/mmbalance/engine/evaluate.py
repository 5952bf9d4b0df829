"""Evaluation of every head of a model on one split."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.metrics import classification_metrics

if TYPE_CHECKING:  # the engine knows no method: it finds their classes in the registry
    from mmbalance.methods._base import Method


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    method: Method,
    batches: SplitBatches,
    features: dict[str, np.ndarray] | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Metrics per head (``{head: {loss, acc, macro_f1, map}}``) and the heads' probabilities; the
    forward passes run under ``autocast()`` (the run's precision, :mod:`mmbalance.engine.precision`).

    When ``features`` is given it is filled with each modality's encoder features (``ModelOutput.features``,
    float32, in split order) from the same pass, for the modality gap and the selected checkpoint.
    """
    was_training = model.training
    model.eval()
    collected: dict[str, list[np.ndarray]] = {}
    encoded: dict[str, list[np.ndarray]] = {}
    for batch in batches.epoch():
        with autocast():
            outputs = model(batch.inputs)
            predicted = method.predict(outputs)
        for head, probs in predicted.items():
            collected.setdefault(head, []).append(probs.float().cpu().numpy())
        if features is not None:
            for m, z in outputs.features.items():
                encoded.setdefault(m, []).append(z.float().cpu().numpy())
    model.train(was_training)
    if features is not None:
        features.update({m: np.concatenate(parts) for m, parts in encoded.items()})
    probs = {head: np.concatenate(parts) for head, parts in collected.items()}
    return {head: classification_metrics(batches.labels, p) for head, p in probs.items()}, probs

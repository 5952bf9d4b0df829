"""Evaluation of every head of a model on one split."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.metrics import classification_metrics
from mmbalance.methods.base import Method


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    method: Method,
    batches: SplitBatches,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Metrics per head (``{head: {loss, acc, macro_f1, map}}``) and the heads' probabilities; the
    forward passes run under ``autocast()`` (the run's precision, :mod:`mmbalance.engine.precision`)."""
    was_training = model.training
    model.eval()
    collected: dict[str, list[np.ndarray]] = {}
    for batch in batches.epoch():
        with autocast():
            predicted = method.predict(model(batch.inputs))
        for head, probs in predicted.items():
            collected.setdefault(head, []).append(probs.float().cpu().numpy())
    model.train(was_training)
    probs = {head: np.concatenate(parts) for head, parts in collected.items()}
    return {head: classification_metrics(batches.labels, p) for head, p in probs.items()}, probs

"""The engine's own types, which the loop hands to a method (:class:`mmbalance.methods._base.Method`):
a mini-batch, what a method builds its model from, and where training stands.

They live in the engine, so that methods depend on the engine and the engine on no method: the loop
finds a method's class through the registry (:data:`mmbalance.registry.METHODS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mmbalance.engine.precision import Precision


@dataclass
class Batch:
    """One mini-batch: inputs per modality, integer labels and the samples' row indices."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    index: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class ModelSpec:
    """What ``build`` needs: modality kinds, encoder configs and the number of classes; ``init`` is the
    protocol's initialisation of the heads (:mod:`mmbalance.models.init`), which the loop applies to
    the built model and a method to the layers it adds later."""

    modalities: dict[str, str]
    encoders: dict[str, dict]
    num_classes: int
    init: str = "pytorch"


@dataclass
class Context:
    """What the loop hands to a method: the model, its optimiser and where training stands."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int
    num_epochs: int
    step: int
    device: torch.device
    modalities: list[str]
    num_classes: int
    data: dict[str, Any] | None = None
    """Mini-batch iterators of the splits (``SplitBatches`` for ``train``, ``val``, ``test``), for
    methods that need extra passes over data (prototypes, covariance statistics, held-out batches)."""
    schedule: Any = None
    """The learning-rate ``Schedule`` (``engine.optim``), for methods that restart it (MIE's stages)."""
    precision: Precision = field(default_factory=Precision)
    """Autocast, backward passes, gradients and optimiser steps of the run's precision (fp32 by default)."""

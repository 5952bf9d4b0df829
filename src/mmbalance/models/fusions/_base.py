"""The fusion interface: modality features in, fused logits and per-modality logits out.

Every fusion reports per-modality logits so per-modality metrics always exist
(methods.md §B2). Where the fusion has natural unimodal outputs (Sum, Weight, the
split Concat head) they are used; where it has none (FiLM, gated) the fusion owns
*probe* heads — linear classifiers on detached features, trained with their own
CE so they measure each encoder without changing what the method trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mmbalance.errors import ConfigError


@dataclass
class FusionOutput:
    """``fused`` may be ``None`` for models without a joint head (unimodal training)."""

    fused: torch.Tensor | None
    modality: dict[str, torch.Tensor]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


class Fusion(nn.Module):
    """Base class; subclasses set ``uses_probes`` when ``modality`` logits come from probe heads."""

    uses_probes = False

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__()
        self.modalities = list(dims)
        self.dims = dict(dims)
        self.num_classes = num_classes

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        raise NotImplementedError


class ProbedFusion(Fusion):
    """A fusion without unimodal outputs; linear probes on detached features supply them."""

    uses_probes = True

    def __init__(self, dims: dict[str, int], num_classes: int) -> None:
        super().__init__(dims, num_classes)
        self.probes = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in dims.items()})

    def probe_logits(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.probes[m](features[m].detach()) for m in self.modalities}


def require_at_least_two(dims: dict[str, int], name: str) -> list[str]:
    """The modalities of a fusion in which one modality acts on the others (FiLM, gated)."""
    if len(dims) < 2:
        raise ConfigError(f"fusion '{name}' needs at least 2 modalities, got {len(dims)}: {list(dims)}")
    return list(dims)

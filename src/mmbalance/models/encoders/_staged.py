"""The shape every trunk shares: a ``stem`` then ``stages`` run in order, returning the last map.

Models that act between stages (MMTM, :mod:`mmbalance.models.mmtm`) run ``stem`` and each of
``stages`` themselves; ``stage_channels[i]`` is stage ``i + 1``'s output width and ``out_channels``
the trunk's.
"""

from __future__ import annotations

import torch
from torch import nn


class StagedTrunk(nn.Module):
    """Base class of the ResNet, ResNet50, I3D and 3-D CNN trunks (subclasses set the attributes)."""

    stem: nn.Module
    stages: nn.ModuleList
    stage_channels: list[int]
    out_channels: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

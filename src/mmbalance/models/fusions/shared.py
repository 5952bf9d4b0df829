"""One classification head shared by every modality (MLA §B17, ReconBoost §B18 of methods.md).

``o_m = H(P_m z_m)`` for every modality ``m``: the same weights read each encoder's features. With
encoders of one feature size ``P_m`` is the identity (the codes' ``H(z_m)``); with different sizes
(ResNet50 2048-d and BERT 768-d on the image–text paper presets) ``P_m`` is a learned bias-free
projection to the narrowest width (:mod:`mmbalance.models.projections`; the papers do not say).
MLA's ``H`` is one ``Linear(D→C)`` (its ``fc_out``); ReconBoost's is ``Linear(D→256) → ReLU →
Linear(256→C)`` (the code's ``Head``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmbalance.models.fusions._base import Fusion, FusionOutput
from mmbalance.models.fusions.mlp_heads import mlp_head
from mmbalance.models.projections import shared_width, width_projections
from mmbalance.registry import register_fusion


@register_fusion("shared_head")
class SharedHead(Fusion):
    """``o_m = H(P_m z_m)`` with one head ``H``; ``fused`` is ``None`` (the method combines the ``o_m``)."""

    def __init__(self, dims: dict[str, int], num_classes: int, hidden: Sequence[int] = ()) -> None:
        super().__init__(dims, num_classes)
        self.projections = width_projections(dims)
        self.head = mlp_head(shared_width(dims), hidden, num_classes)

    def head_input(self, modality: str, feature: torch.Tensor) -> torch.Tensor:
        """``P_m z_m``: what the shared head reads of ``modality``."""
        return self.projections[modality](feature)

    def logits(self, modality: str, feature: torch.Tensor) -> torch.Tensor:
        """``H(P_m z_m)``."""
        return self.head(self.head_input(modality, feature))

    def modality_logits(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.logits(m, features[m]) for m in self.modalities}

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        return FusionOutput(None, self.modality_logits(features))


@register_fusion("boosted_ensemble")
class BoostedEnsemble(SharedHead):
    """ReconBoost's ensemble ``F = β Σ_m g_m`` with ``g_m = H(z_m)`` and a learnable ``β``.

    ``β`` starts at ``boost_rate`` (the code's ``--boost_rate`` 1.0) and is returned in
    ``extras["boost_rate"]`` so a method can form the ensemble over a subset of modalities.
    """

    def __init__(
        self,
        dims: dict[str, int],
        num_classes: int,
        hidden: Sequence[int] = (256,),
        boost_rate: float = 1.0,
    ) -> None:
        super().__init__(dims, num_classes, hidden)
        self.boost_rate = nn.Parameter(torch.tensor(float(boost_rate)))

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        modality = self.modality_logits(features)
        fused = self.boost_rate * torch.stack(list(modality.values())).sum(0)
        return FusionOutput(fused, modality, {"boost_rate": self.boost_rate})

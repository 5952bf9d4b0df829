"""One classification head shared by every modality (MLA §B17, ReconBoost §B18 of methods.md).

``o_m = H(z_m)`` for every modality ``m``: the same weights read each encoder's features, so the
encoders must produce features of one size. MLA's ``H`` is one ``Linear(D→C)`` (its ``fc_out``);
ReconBoost's is ``Linear(D→256) → ReLU → Linear(256→C)`` (the code's ``Head``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmbalance.errors import ConfigError
from mmbalance.models.fusions.base import Fusion, FusionOutput
from mmbalance.models.fusions.mlp_heads import mlp_head
from mmbalance.registry import register_fusion


def common_dim(dims: dict[str, int]) -> int:
    """The one feature size of every modality; a shared head cannot read features of different sizes."""
    sizes = set(dims.values())
    if len(sizes) != 1:
        raise ConfigError(
            "a head shared between modalities (MLA, ReconBoost) needs encoders with one feature size; "
            f"got {dims}"
        )
    return sizes.pop()


@register_fusion("shared_head")
class SharedHead(Fusion):
    """``o_m = H(z_m)`` with one head ``H``; ``fused`` is ``None`` (the method combines the ``o_m``)."""

    def __init__(self, dims: dict[str, int], num_classes: int, hidden: Sequence[int] = ()) -> None:
        super().__init__(dims, num_classes)
        self.head = mlp_head(common_dim(dims), hidden, num_classes)

    def modality_logits(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.head(features[m]) for m in self.modalities}

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

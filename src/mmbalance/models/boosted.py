"""AUG's growing classifiers: per modality a list of private ``Layer1`` and one shared ``Layer2``.

Jiang, Huang & Yang, "Rethinking Multimodal Learning from the Perspective of Mitigating
Classification Ability Disproportion", NeurIPS 2025, Sec. 3.2 (methods.md §A3.1/A3.2): classifier
``j`` of modality ``o`` is ``f_{o,j}(u) = Layer2(ReLU(Layer1_{o,j}(u)))`` where ``Layer2`` is one
``Linear(hidden, K)`` shared by every classifier of every modality. The modality's output is the
logit sum ``F_o = Σ_j f_{o,j}`` (code ``AVGBShareClassifier.classfier``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmbalance.models.fusions._base import Fusion, FusionOutput


class BoostedClassifiers(Fusion):
    """Growing per-modality classifier lists over one shared head.

    ``modality[o]`` is ``F_o``; ``fused`` is ``Σ_o w_o F_o`` (the code's ``merge_alpha`` weighting);
    ``extras[o]`` stacks the classifiers' logits as ``(n_o, B, K)`` for the boosting losses.
    Every layer starts with PyTorch's initialisation; the protocol's ``init`` (``xavier_heads``: the
    code's Xavier-normal weights and zero biases, also of ``add_layer``) is applied by the loop and,
    for the classifiers added during training, by AUG (:mod:`mmbalance.models.init`).
    """

    def __init__(
        self,
        dims: dict[str, int],
        num_classes: int,
        counts: dict[str, int],
        merge_weights: Sequence[float],
        hidden: int = 256,
    ) -> None:
        super().__init__(dims, num_classes)
        self.hidden = hidden
        self.merge_weights = dict(zip(self.modalities, merge_weights, strict=True))
        self.shared = nn.Linear(hidden, num_classes)
        self.layers = nn.ModuleDict({m: nn.ModuleList([nn.Linear(d, hidden)]) for m, d in dims.items()})
        for modality in self.modalities:
            for _ in range(counts[modality] - 1):
                self.add_classifier(modality)

    def add_classifier(self, modality: str) -> nn.Linear:
        """Append a new private ``Layer1`` to ``modality`` and return it."""
        layer = nn.Linear(self.dims[modality], self.hidden)
        self.layers[modality].append(layer.to(self.shared.weight.device))
        return layer

    def counts(self) -> dict[str, int]:
        return {m: len(self.layers[m]) for m in self.modalities}

    def classifier_logits(self, modality: str, feature: torch.Tensor) -> torch.Tensor:
        """``(n_o, B, K)``: every classifier's logits ``f_{o,j}`` for one modality."""
        return torch.stack([self.shared(torch.relu(layer(feature))) for layer in self.layers[modality]])

    def forward(self, features: dict[str, torch.Tensor]) -> FusionOutput:
        parts = {m: self.classifier_logits(m, features[m]) for m in self.modalities}
        modality = {m: p.sum(0) for m, p in parts.items()}
        fused = sum(self.merge_weights[m] * modality[m] for m in self.modalities)
        return FusionOutput(fused, modality, extras=parts)

"""Channel: MMTM channel-wise fusion (LFM's "Channel" row; methods.md §B4, the MMTM reading).

Joze et al., "MMTM: Multimodal Transfer Module for CNN Fusion", CVPR 2020 (LFM ref. [22]). The
encoders exchange information through an MMTM after ResNet stages 1–4 (Sec. 3:
``A_m ← 2σ(E_m) ⊙ A_m``, :mod:`mmbalance.models.mmtm`), then a Concat head
``o = W [z_1; …; z_M] + b`` whose column blocks give the per-modality logits (OGM-GE convention,
§B2); trained with CE on the fused logits. Any number ≥ 2 of modalities (all squeezes are
concatenated). The gated reading of "Channel" (OGM-GE ``GatedFusion``) is the method ``gated``.

Options: ``stages`` (1-based stages followed by an MMTM; the Greedy code uses ``[2, 3, 4]``),
``ratio`` (bottleneck ``int(2·Σ_m C_m / ratio)``, 4 as in the Greedy code), ``gate``
(``2sigmoid``: the paper's ``2σ(E)``; ``sigmoid``: ``σ(E)`` as the Greedy code).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from mmbalance.methods._base import Method
from mmbalance.models.mmtm import build_mmtm_model
from mmbalance.registry import register_method

GATE_SCALES = {"2sigmoid": 2.0, "sigmoid": 1.0}


@register_method("channel")
class Channel(Method):
    """Encoders coupled by MMTMs, Concat head, CE on the fused logits."""

    fusion = "concat"

    @dataclass
    class Options:
        stages: tuple[int, ...] = (1, 2, 3, 4)
        ratio: int = 4
        gate: str = field(default="2sigmoid", metadata={"choices": tuple(GATE_SCALES)})

    def head_fusion(self) -> str:
        """The fusion on top of the coupled encoders."""
        return self.fusion

    def build(self) -> nn.Module:
        opts = self.options
        return build_mmtm_model(
            self.spec.modalities,
            self.spec.encoders,
            self.head_fusion(),
            self.spec.num_classes,
            stages=list(opts.stages),
            ratio=opts.ratio,
            gate_scale=GATE_SCALES[opts.gate],
        )

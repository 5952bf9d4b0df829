"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement.

Peng et al., "Balanced Multimodal Learning via On-the-fly Gradient Modulation", CVPR 2022
(official code ``GeWu-Lab/OGM-GE_CVPR2022`` at 343dc1d; methods.md §B11).

Per batch, with unimodal logits ``o_m`` from the split fusion head (Eq. 6 of the paper):
``s_m = Σ_i softmax(o_m)_i[y_i]``; the discrepancy ratio of the stronger modality
``ρ = s_strong / s_weak > 1`` gives its coefficient ``k = 1 − tanh(α·ρ)`` (Eq. 9) and the
other modality keeps ``k = 1``. After backward, each convolution weight gradient of a modality's
encoder becomes ``k·g`` (OGM) or ``k·g + N(0, std(g) + 1e-8)`` (OGM-GE, Eq. 11), for
``start_epoch ≤ epoch ≤ end_epoch``. The code selects them as the 4-D gradients (2-D convolutions);
the 5-D ones of 3-D convolutions (I3D on NVGesture) are convolution weights too and are included.
With more than two modalities each modality's ratio is taken against the weakest one
(BalanceBenchmark's generalisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from mmbalance.engine.types import Batch, Context
from mmbalance.methods._base import Logs, Method
from mmbalance.models.model import ModelOutput
from mmbalance.registry import register_method

CONV_WEIGHT_DIMS = (4, 5)
"""Gradients of 2-D (4-D tensors, the code's test) and 3-D convolution weights (5-D)."""


def modulation_coefficients(scores: dict[str, float], alpha: float) -> dict[str, float]:
    """``k_m = 1 − tanh(α · s_m / min_j s_j)`` for modalities above the weakest, else 1 (Eq. 9)."""
    weakest = min(scores.values())
    coefficients = {}
    for modality, score in scores.items():
        ratio = score / weakest if weakest > 0 else math.inf
        coefficients[modality] = 1.0 - math.tanh(alpha * ratio) if ratio > 1.0 else 1.0
    return coefficients


@register_method("ogm_ge")
class OGMGE(Method):
    """Concat (or Sum) fusion trained with CE, encoder gradients modulated after backward."""

    @dataclass
    class Options:
        alpha: float = 0.8
        modulation: str = field(default="OGM_GE", metadata={"choices": ("OGM_GE", "OGM")})
        start_epoch: int = 0
        end_epoch: int = 50
        fusion: str = field(default="concat", metadata={"choices": ("concat", "sum")})

    def after_backward(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> Logs:
        opts = self.options
        y = batch.labels
        scores = {
            m: float(outputs.modality[m].detach().softmax(dim=1).gather(1, y[:, None]).sum())
            for m in self.modalities
        }
        coefficients = modulation_coefficients(scores, opts.alpha)
        active = opts.start_epoch <= ctx.epoch <= opts.end_epoch
        if active:
            for modality, k in coefficients.items():
                for param in ctx.model.encoders[modality].parameters():
                    if param.grad is None or param.grad.dim() not in CONV_WEIGHT_DIMS:
                        continue
                    noise_std = float(param.grad.std()) + 1e-8  # of the unmodulated gradient, as in the code
                    param.grad.mul_(k)
                    if opts.modulation == "OGM_GE":
                        param.grad.add_(torch.randn_like(param.grad) * noise_std)
        applied = coefficients if active else dict.fromkeys(coefficients, 1.0)
        return {f"coef_{m}": k for m, k in applied.items()}

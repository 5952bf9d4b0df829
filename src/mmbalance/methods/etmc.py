"""ETMC: enhanced trusted multi-view classification (Han et al., TPAMI 2023; methods.md §B8).

Official code ``hanmenghan/TMC``, folder "ETMC TPAMI" (``models/TMC.py``: ``KL``, ``ce_loss``,
``DS_Combin_two``, ``ETMC.forward``; ``train_ETMC_nyud2.py``: the loss and its annealing).
Equation numbers of the paper are not cited: the paper text was not available, the spec (§B8) and
the code are the sources.

Each modality ``m`` gets a linear classifier ``o_m``, a pseudo view gets a linear classifier on the
concatenated features (the code's default ``--hidden []``: no hidden layer, so no dropout either).
Evidence ``e = softplus(o)``, Dirichlet ``α = e + 1``, subjective opinion ``b = e/S``,
``u = C/S`` with ``S = Σ_k α_k``. The opinions are combined with the reduced Dempster–Shafer rule,
first over the modalities (left fold: ``DS(DS(α_1, α_2), α_3)`` for three), then with the pseudo
view. Loss: for each of {every modality, the pseudo view, the combination}, the evidential CE
``Σ_k y_k (ψ(S) − ψ(α_k))`` plus ``min(1, epoch/annealing_epoch) · KL(Dir(α̃) ‖ Dir(1))`` with the
target's evidence removed, ``α̃ = y + (1 − y) ⊙ α``; batch means, summed over the four terms.
Prediction: the expected class probabilities ``α/S`` of the combination (fused head) and of each
modality (its head); the code's argmax of ``α`` is the same decision.

The code's optimiser (Adam lr 1e-4, weight decay 1e-5, ReduceLROnPlateau factor 0.3 / patience 10
on accuracy, batch 32 with 3 accumulation steps) is a training protocol, not part of the method:
the shared ``train`` block of ``params.yaml`` applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmbalance.engine.types import Batch, Context
from mmbalance.methods._base import Logs, Method
from mmbalance.models.model import ModelOutput
from mmbalance.registry import register_method


def dirichlet(logits: torch.Tensor) -> torch.Tensor:
    """``α = softplus(o) + 1``: Dirichlet parameters from non-negative evidence (``ETMC.forward``)."""
    return F.softplus(logits) + 1.0


def opinion(alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Subjective opinion of a Dirichlet: beliefs ``b = (α − 1)/S`` (B, C), uncertainty ``u = C/S`` (B, 1)."""
    strength = alpha.sum(dim=1, keepdim=True)
    return (alpha - 1.0) / strength, alpha.shape[1] / strength


def ds_combine(alpha_1: torch.Tensor, alpha_2: torch.Tensor) -> torch.Tensor:
    """Reduced Dempster–Shafer combination of two Dirichlet opinions (``DS_Combin_two``).

    Conflict ``K = Σ_{i≠j} b¹_i b²_j``; ``b = (b¹ ⊙ b² + b¹ u² + b² u¹)/(1 − K)``,
    ``u = u¹u²/(1 − K)``; back to a Dirichlet with ``S = C/u``, ``α = b S + 1``.
    """
    b_1, u_1 = opinion(alpha_1)
    b_2, u_2 = opinion(alpha_2)
    conflict = b_1.sum(1, keepdim=True) * b_2.sum(1, keepdim=True) - (b_1 * b_2).sum(1, keepdim=True)
    scale = 1.0 / (1.0 - conflict)
    belief = (b_1 * b_2 + b_1 * u_2 + b_2 * u_1) * scale
    uncertainty = u_1 * u_2 * scale
    return belief * (alpha_1.shape[1] / uncertainty) + 1.0


def combine_views(alphas: list[torch.Tensor]) -> torch.Tensor:
    """Left fold of :func:`ds_combine` over the views in order."""
    combined = alphas[0]
    for alpha in alphas[1:]:
        combined = ds_combine(combined, alpha)
    return combined


def kl_to_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """``KL(Dir(α) ‖ Dir(1))`` per sample (the code's ``KL``).

    ``ln Γ(S) − Σ_k ln Γ(α_k) − ln Γ(C) + Σ_k (α_k − 1)(ψ(α_k) − ψ(S))``.
    """
    strength = alpha.sum(dim=1)
    num_classes = torch.tensor(float(alpha.shape[1]), dtype=alpha.dtype, device=alpha.device)
    log_norm = torch.lgamma(strength) - torch.lgamma(alpha).sum(dim=1) - torch.lgamma(num_classes)
    return log_norm + ((alpha - 1.0) * (torch.digamma(alpha) - torch.digamma(strength)[:, None])).sum(dim=1)


def annealing_coefficient(epoch: int, annealing_epoch: int) -> float:
    """``min(1, epoch / annealing_epoch)``, ``epoch`` counted from 0 as the code's ``i_epoch``."""
    return min(1.0, epoch / annealing_epoch)


def evidential_loss(alpha: torch.Tensor, labels: torch.Tensor, annealing: float) -> torch.Tensor:
    """Per-sample ``Σ_k y_k (ψ(S) − ψ(α_k)) + annealing · KL(Dir(α̃) ‖ Dir(1))`` (the code's ``ce_loss``)."""
    onehot = F.one_hot(labels, alpha.shape[1]).to(alpha.dtype)
    strength = alpha.sum(dim=1, keepdim=True)
    expected_ce = (onehot * (torch.digamma(strength) - torch.digamma(alpha))).sum(dim=1)
    misleading = onehot + (1.0 - onehot) * alpha
    return expected_ce + annealing * kl_to_uniform(misleading)


@register_method("etmc")
class ETMC(Method):
    """Evidential heads per modality and a pseudo view, fused by Dempster–Shafer combination."""

    fusion = "unimodal_and_joint"

    @dataclass
    class Options:
        annealing_epoch: int = 10

    def opinions(self, outputs: ModelOutput) -> dict[str, torch.Tensor]:
        """Dirichlet parameters of each modality, the pseudo view and their combination."""
        alphas = {m: dirichlet(outputs.modality[m]) for m in self.modalities}
        pseudo = dirichlet(outputs.fused)
        combined = ds_combine(combine_views([alphas[m] for m in self.modalities]), pseudo)
        return {**alphas, "pseudo": pseudo, "combined": combined}

    def loss(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> tuple[torch.Tensor, Logs]:
        annealing = annealing_coefficient(ctx.epoch, self.options.annealing_epoch)
        alphas = self.opinions(outputs)
        terms = {name: evidential_loss(a, batch.labels, annealing).mean() for name, a in alphas.items()}
        logs = {f"evidential_{name}": float(term.detach()) for name, term in terms.items()}
        logs["annealing"] = annealing
        logs["uncertainty_combined"] = float(opinion(alphas["combined"].detach())[1].mean())
        return sum(terms.values()), logs

    def predict(self, outputs: ModelOutput) -> dict[str, torch.Tensor]:
        """Expected probabilities ``α/S``: the combined opinion for ``fused``, each modality's own."""
        alphas = self.opinions(outputs)
        probs = {name: alpha / alpha.sum(dim=1, keepdim=True) for name, alpha in alphas.items()}
        return {"fused": probs["combined"], **{m: probs[m] for m in self.modalities}}

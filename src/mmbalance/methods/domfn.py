"""DOMFN: divergence-orientated multimodal fusion (Yang et al., ACM MM 2022; methods.md §B13).

Official code ``njustkmg/MM22_DOMFN`` (PaddlePaddle; the spec read ``77743c2``, the MOSI version; the
resume-assessment version ``8acca5e`` was also read: ``models/encoder.py``, ``engines/resume_trainer.py``).
Equation numbers of the paper are not cited: the paper text was not available.

Model: per modality a linear head with a sigmoid, ``s_m = σ(W_m z_m + b_m)``; fused network
``s_mm = σ(MLP([z_1; …; z_M]))`` with ``MLP = Linear → ReLU → Linear(64 → C)``. As in the code the
sigmoid outputs are the logits of every cross-entropy, ``CE_m = CE(s_m, y)``, and the predicted
probabilities are ``softmax(s)``.

Divergence penalty ``π_m = max_k (s_m − r)²_k`` per sample, against the reference ``r``:
``reference="mean"`` (spec, ``77743c2``): the mean of the modality outputs; ``"fused"`` (``8acca5e``):
the fused output ``s_mm``. Note: with two modalities and ``"mean"``, ``π_m = max_k ((s_a − s_v)/2)²_k``
is at most ¼ (sigmoid outputs lie in (0, 1)), so ``π/τ ≤ ½ < γ = 0.8``: the divergent branch below
can never be taken with the default τ, γ; with ``"fused"`` it can (``π ≤ 1``).

Update (after ``pretrain_epochs`` epochs of ``Σ_m CE_m`` alone, the code's ``pre_train``): if every
``π_m/τ < γ`` (consistent) the whole model takes a step on ``Σ_m(½CE_m² − ηπ_m) + (Σ_m CE_m + CE_mm)``;
otherwise (divergent) each unimodal branch takes a step on its own ``CE_m`` and the fused network
takes no step at all (its optimiser is not stepped in the code; here it gets no gradient, so neither
momentum nor weight decay moves it). ``decision="batch"``: one decision per step on the batch means
of ``π_m`` (and ``CE_m``); ``decision="sample"``: the decision of the code's batch-size-1 training made
for every sample, each sample's loss taken accordingly, averaged over the batch.

Prediction, per sample as in the code's ``evaluate``: consistent → ``softmax(s_mm)``; divergent →
``softmax(s_m*)`` of the most confident modality ``m* = argmax_m max_k s_m[k]`` (``fused`` head);
each modality's head is ``softmax(s_m)``.

Not reproduced: the code's separate optimisers with their own learning rates (pre-training 1e-3;
fine-tuning text 5e-5, image 1e-5, fused 1e-4, weight decay 1e-3; the shared protocol's one optimiser
applies, since ``param_groups`` cannot express multiples of a learning rate it does not know) and
the MOSI-specific "instance-specific" phase with batch size 1. In ``8acca5e`` the divergent branch
steps each branch on ``½CE_m² − ηπ_m`` rather than ``CE_m``; the spec's ``CE_m`` is implemented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from mmbalance.engine.types import Batch, Context
from mmbalance.methods._base import Logs, Method
from mmbalance.models.model import ModelOutput
from mmbalance.registry import register_method

FUSED_HIDDEN = (64,)
"""Hidden layer of the fused network, ``Linear(Σd → 64) → ReLU → Linear(64 → C)`` (``multi_encoder``)."""

Scores = dict[str, torch.Tensor]
"""Per-modality tensors (outputs, cross-entropies or penalties)."""


def divergence(scores: Scores, fused: torch.Tensor, reference: str) -> Scores:
    """Per-sample ``π_m = max_k (s_m − r)²_k`` against the mean of the modalities' or the fused outputs."""
    ref = torch.stack(list(scores.values())).mean(0) if reference == "mean" else fused
    return {m: (s - ref).pow(2).amax(dim=1) for m, s in scores.items()}


def consistent(penalties: Scores, tau: float, gamma: float) -> torch.Tensor:
    """``∀m: π_m/τ < γ`` elementwise: the outputs agree enough to fuse."""
    return torch.stack([p / tau < gamma for p in penalties.values()]).all(dim=0)


def joint_objective(ce: Scores, ce_fused: torch.Tensor, penalties: Scores, eta: float) -> torch.Tensor:
    """``Σ_m(½CE_m² − ηπ_m) + (Σ_m CE_m + CE_mm)``: modality losses plus the joint loss (any shape)."""
    modality = sum(0.5 * ce[m] ** 2 - eta * penalties[m] for m in ce)
    return modality + sum(ce.values()) + ce_fused


@register_method("domfn")
class DOMFN(Method):
    """Unimodal heads and a fused MLP; fuse only when the modality outputs do not diverge."""

    fusion = "unimodal_and_joint"
    dataset_settings: ClassVar[tuple[str, ...]] = ("pretrain_epochs",)

    @dataclass
    class Options:
        eta: float = 0.5
        tau: float = 0.5
        gamma: float = 0.8
        pretrain_epochs: int = 30
        reference: str = field(default="mean", metadata={"choices": ("mean", "fused")})
        decision: str = field(default="batch", metadata={"choices": ("batch", "sample")})

    def fusion_options(self) -> dict[str, Any]:
        return {"hidden": FUSED_HIDDEN}

    def on_epoch_start(self, ctx: Context) -> Logs:
        """The fused network is frozen during pre-training (the code's ``pre_train`` leaves it out)."""
        pretraining = ctx.epoch < self.options.pretrain_epochs
        ctx.model.fusion.joint.requires_grad_(not pretraining)
        return {"pretraining": float(pretraining)}

    def scores(self, outputs: ModelOutput) -> tuple[Scores, torch.Tensor]:
        """Sigmoid outputs of the modality heads and of the fused network."""
        return {m: torch.sigmoid(outputs.modality[m]) for m in self.modalities}, torch.sigmoid(outputs.fused)

    def loss(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> tuple[torch.Tensor, Logs]:
        """Pre-training ``Σ_m CE_m``; then the joint objective or ``Σ_m CE_m`` by the consistency test."""
        opts = self.options
        y = batch.labels
        scores, fused = self.scores(outputs)
        ce = {m: F.cross_entropy(s, y, reduction="none") for m, s in scores.items()}
        unimodal = sum(ce.values())
        logs: Logs = {f"ce_{m}": float(v.detach().mean()) for m, v in ce.items()}
        if ctx.epoch < opts.pretrain_epochs:
            return unimodal.mean(), {**logs, "joint": 0.0}
        ce_fused = F.cross_entropy(fused, y, reduction="none")
        penalties = divergence(scores, fused, opts.reference)
        logs.update({f"penalty_{m}": float(p.detach().mean()) for m, p in penalties.items()})
        logs["ce_fused"] = float(ce_fused.detach().mean())
        if opts.decision == "batch":
            means = {m: p.mean() for m, p in penalties.items()}
            if bool(consistent(means, opts.tau, opts.gamma)):
                ce_means = {m: v.mean() for m, v in ce.items()}
                return joint_objective(ce_means, ce_fused.mean(), means, opts.eta), {**logs, "joint": 1.0}
            return unimodal.mean(), {**logs, "joint": 0.0}
        mask = consistent(penalties, opts.tau, opts.gamma)
        logs["joint"] = float(mask.float().mean())
        if not bool(mask.any()):
            return unimodal.mean(), logs
        joint = joint_objective(ce, ce_fused, penalties, opts.eta)
        return torch.where(mask, joint, unimodal).mean(), logs

    def predict(self, outputs: ModelOutput) -> dict[str, torch.Tensor]:
        """Fused head: the fused output where consistent, else the most confident modality's."""
        opts = self.options
        scores, fused = self.scores(outputs)
        mask = consistent(divergence(scores, fused, opts.reference), opts.tau, opts.gamma)
        stacked = torch.stack(list(scores.values()))
        confident = stacked.amax(dim=2).argmax(dim=0)
        chosen = stacked[confident, torch.arange(stacked.shape[1], device=stacked.device)]
        selected = torch.where(mask[:, None], fused, chosen)
        return {"fused": selected.softmax(dim=1), **{m: s.softmax(dim=1) for m, s in scores.items()}}

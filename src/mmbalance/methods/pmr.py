"""PMR: prototypical modal rebalance (Fan et al., CVPR 2023; methods.md §B15).

Official code ``fanyunfeng-bit/Modal-Imbalance-PMR`` (``main_Prototype_grad.py``: ``calculate_prototype``,
``EU_dist``, ``train_epoch`` with ``--modulation Proto``); BalanceBenchmark's ``PMRTrainer`` for more
than two modalities. Equation numbers of the paper are not cited: the paper text was not available.

Prototypes ``c_m[k]``: the class means of modality ``m``'s encoder features over the first tenth of
the training batches (at least one batch), computed in eval mode without gradients, before the
first epoch and after every epoch (here: the first batches of the next epoch's training order). A
recomputation after epoch ``e > 0`` is smoothed, ``c ← (1 − μ) c_new + μ c_old`` (the code takes no
momentum after epoch 0). A class absent from the pass keeps its previous prototype (zero before
the first); the code would divide by zero. Prototype logits ``−‖z_m − c_m[k]‖₂`` give the prototypical
cross-entropy ``PCE_m`` and the score ``s_m = Σ_i softmax(−d_m)_i[y_i]``.

Two modalities ``(a, v)`` in dataset order: ``ρ = s_a / s_v``; loss
``CE(o_fused) + β PCE_a + λ PCE_v`` with ``(β, λ) = (0, α)`` if ``ρ > 1``, ``(α, 0)`` if ``ρ < 1``,
``(0, 0)`` if equal, for ``start_epoch ≤ epoch ≤ end_epoch`` (else ``CE`` alone).
More modalities (BalanceBenchmark's variant; the paper has none): ``CE`` alone, then every
multi-dimensional encoder weight gradient of modality ``m`` becomes ``k_m g + N(0, std(g) + 1e-8)``
with OGM-GE's ``k_m = 1 − tanh(η s_m / min_j s_j)`` for modalities above the weakest (1 otherwise).

Not implemented: the paper's prototypical entropy regulariser for early epochs. It is not in the
code's main script, and neither the spec nor a paper text available here defines it
(BalanceBenchmark's ``PMR_PER`` is a third-party reading).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import torch
import torch.nn.functional as F

from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.methods._base import Logs, Method
from mmbalance.methods.ogm_ge import modulation_coefficients
from mmbalance.models.model import ModelOutput, MultimodalModel
from mmbalance.registry import register_method

PROTOTYPE_SHARE = 10
"""Prototypes use the first ``len(loader) // PROTOTYPE_SHARE`` batches (at least one), as the code."""


@torch.no_grad()
def class_feature_means(
    model: MultimodalModel, batches: Iterable[Batch], num_classes: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-class mean encoder features of each modality over ``batches``, and the class counts.

    Runs in eval mode (the model's mode is restored). Classes without a sample get a zero mean.
    """
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    counts = None
    for batch in batches:
        features = model.encode(batch.inputs)
        if counts is None:
            counts = torch.zeros(num_classes, device=batch.labels.device)
            sums = {m: z.new_zeros(num_classes, z.shape[1]) for m, z in features.items()}
        counts.index_add_(0, batch.labels, torch.ones_like(batch.labels, dtype=counts.dtype))
        for m, z in features.items():
            sums[m].index_add_(0, batch.labels, z.float())
    model.train(was_training)
    means = {m: s / counts.clamp_min(1.0)[:, None] for m, s in sums.items()}
    return means, counts


def update_prototypes(
    new: dict[str, torch.Tensor],
    counts: torch.Tensor,
    old: dict[str, torch.Tensor] | None,
    momentum: float,
) -> dict[str, torch.Tensor]:
    """``(1 − μ) c_new + μ c_old`` (``c_new`` alone without ``old``); absent classes keep ``c_old``."""
    if old is None:
        return new
    present = (counts > 0)[:, None]
    return {m: torch.where(present, (1.0 - momentum) * c + momentum * old[m], old[m]) for m, c in new.items()}


def prototype_logits(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``−‖z_i − c_k‖₂`` for every sample ``i`` and class ``k`` (the code's ``−EU_dist``)."""
    return -(features[:, None, :] - prototypes[None, :, :]).pow(2).sum(dim=2).sqrt()


def rebalance_weights(ratio: float, alpha: float) -> tuple[float, float]:
    """``(β, λ)``: the PCE weights of the first and the second modality for ``ρ = s_first / s_second``."""
    if ratio > 1.0:
        return 0.0, alpha
    if ratio < 1.0:
        return alpha, 0.0
    return 0.0, 0.0


@register_method("pmr")
class PMR(Method):
    """Concat (or Sum) fusion trained with CE plus the weak modality's prototypical CE."""

    @dataclass
    class Options:
        alpha: float = 1.0
        momentum: float = 0.2
        """μ of the prototype update (code 0.2; BalanceBenchmark 0.5)."""
        start_epoch: int = 0
        end_epoch: int = 100
        eta: float = 0.01
        """OGM-style coefficient of the variant for more than two modalities (BalanceBenchmark)."""
        fusion: str = field(default="concat", metadata={"choices": ("concat", "sum")})

    def __init__(self, options: dict[str, Any], spec: ModelSpec) -> None:
        super().__init__(options, spec)
        self.prototypes: dict[str, torch.Tensor] | None = None
        self.coefficients: dict[str, float] = {}

    # --- prototypes ------------------------------------------------------------------------
    def compute_prototypes(self, ctx: Context, order_epoch: int, smooth: bool) -> None:
        """One pass over the first tenth of the training batches of ``order_epoch``'s order."""
        train = ctx.data["train"]
        batches = islice(train.epoch(order_epoch), max(1, len(train) // PROTOTYPE_SHARE))
        means, counts = class_feature_means(ctx.model, batches, ctx.num_classes)
        momentum = self.options.momentum if smooth else 0.0
        self.prototypes = update_prototypes(means, counts, self.prototypes, momentum)

    def on_epoch_start(self, ctx: Context) -> Logs:
        if self.prototypes is None and ctx.data is not None:
            self.compute_prototypes(ctx, ctx.epoch, smooth=False)
        return {}

    def on_epoch_end(self, ctx: Context, evaluation: dict[str, dict[str, dict[str, float]]]) -> Logs:
        if ctx.data is not None:
            self.compute_prototypes(ctx, ctx.epoch + 1, smooth=ctx.epoch > 0)
        return {}

    # --- training --------------------------------------------------------------------------
    def active(self, epoch: int) -> bool:
        return self.options.start_epoch <= epoch <= self.options.end_epoch

    def loss(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> tuple[torch.Tensor, Logs]:
        """``CE + β PCE_a + λ PCE_v`` (two modalities) or ``CE`` (more; modulated after backward).

        Without prototypes (no data pass has run yet, only outside the loop) the loss is ``CE``.
        """
        y = batch.labels
        ce = F.cross_entropy(outputs.fused, y)
        logs: Logs = {"ce_fused": float(ce.detach())}
        self.coefficients = {}
        if self.prototypes is None:
            return ce, logs
        logits = {m: prototype_logits(outputs.features[m], self.prototypes[m]) for m in self.modalities}
        pce = {m: F.cross_entropy(o, y) for m, o in logits.items()}
        scores = {m: float(o.detach().softmax(dim=1).gather(1, y[:, None]).sum()) for m, o in logits.items()}
        logs.update({f"pce_{m}": float(v.detach()) for m, v in pce.items()})
        if not self.active(ctx.epoch):
            return ce, logs
        if len(self.modalities) > 2:
            self.coefficients = modulation_coefficients(scores, self.options.eta)
            return ce, logs
        first, second = self.modalities
        ratio = scores[first] / scores[second] if scores[second] > 0 else float("inf")
        beta, lam = rebalance_weights(ratio, self.options.alpha)
        logs.update({"ratio": ratio, f"coef_{first}": beta, f"coef_{second}": lam})
        return ce + beta * pce[first] + lam * pce[second], logs

    def after_backward(self, outputs: ModelOutput, batch: Batch, ctx: Context) -> Logs:
        """More than two modalities: ``g ← k_m g + N(0, std(g) + 1e-8)`` on encoder weights (not biases)."""
        for modality, k in self.coefficients.items():
            for param in ctx.model.encoders[modality].parameters():
                if param.grad is None or param.grad.dim() == 1:
                    continue
                noise_std = float(param.grad.std()) + 1e-8
                param.grad.mul_(k).add_(torch.randn_like(param.grad) * noise_std)
        return {f"coef_{m}": k for m, k in self.coefficients.items()}

    # --- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        prototypes = None if self.prototypes is None else {m: c.clone() for m, c in self.prototypes.items()}
        return {"prototypes": prototypes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        prototypes = state["prototypes"]
        self.prototypes = None if prototypes is None else {m: c.clone() for m, c in prototypes.items()}

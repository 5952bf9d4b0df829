"""AGM: adaptive gradient modulation with Shapley-style unimodal outputs.

Li et al., "Boosting Multi-modal Model Performance with Adaptive Gradient Modulation", ICCV 2023
(official code ``Lingy12/AGM_ICCV2023`` at a24f2ce; methods.md §B16). Model:
:class:`mmbalance.models.shapley.ShapleyModel` (masked forward passes, Shapley outputs ``m_m``,
gradient-scaling identities).

Per training step (the repo's order):

1. forward: ``f(M)`` and the masked passes give ``m_m``; the training output is ``Σ_m m_m`` (= ``f(M)``);
2. scores ``s_m = mean_i −log max(softmax(m_m)_i[y_i], 1e-8)``;
3. ``r_m = exp(M/(M−1) · (mean_j s_j − s_m))`` from the step's scores and ``r̄_m`` the same from the
   running means ``s̄_m`` over all earlier iterations (0 before the first); for two modalities
   ``r_a = exp(s_v − s_a)``; coefficient ``k_m = exp(α · min(r̄_m − r_m, cap))``;
4. the ``k_m`` are set on the gradient-scaling identities (the repo's ``update_scale``), then
   ``CE(Σ_m m_m, y).backward()``;
5. the running means take the step's scores: ``s̄ ← s̄·(n−1)/n + s/n`` at iteration ``n``;
6. if an entry of the fusion head's weight gradient lies outside ``[−clip_threshold, clip_threshold]``,
   the whole model's gradient norm is clipped to ``clip_norm``; then the optimiser step.

Per-modality heads (metrics) are ``softmax(m_m)``; the fused head is ``softmax(f(M))``.

Choices and deviations (methods.md §B16):

* ``masked_gradients=False`` (repo): the masked passes run without autograd, so the gradient reaching
  ``f(M)`` is ``Σ_m k_m/M`` times the unmodulated one — with the masked passes constant, every
  parameter's gradient is scaled by the mean coefficient, not per modality. ``True`` (our variant)
  lets gradients flow through the masked passes, so ``k_m`` weighs modality ``m``'s marginal
  contributions, the modality-specific modulation the paper describes.
* The M-modality rule is the repo's own (its MOSEI script writes ``exp(2·(mean s − s_m))`` for two
  modalities); BalanceBenchmark's ``exp(M/(M−1)(s_m − mean s))`` has the opposite sign, and caps at 7
  and clips at norm 5 when a head-gradient entry exceeds ±5 (set ``cap``, ``clip_threshold``,
  ``clip_norm`` for those numbers; the sign is not offered).
* The repo's optional modulation window (``modulation_starts``/``ends``) is not reproduced: the
  coefficients act in every epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.methods._base import Logs, Method
from mmbalance.models.model import build_model
from mmbalance.models.shapley import ShapleyModel
from mmbalance.registry import register_method

SCORE_FLOOR = 1e-8
"""The repo replaces a probability below 1e-8 (or a ``−log`` of ``inf``) by 1e-8."""


def unimodal_score(logits: torch.Tensor, y: torch.Tensor) -> float:
    """``s_m = mean_i −log max(softmax(m_m)_i[y_i], 1e-8)`` (the repo's per-sample clamp)."""
    p = logits.detach().softmax(dim=1).gather(1, y[:, None]).squeeze(1)
    return float(-p.clamp_min(SCORE_FLOOR).log().mean())


def competition_ratios(scores: dict[str, float]) -> dict[str, float]:
    """``r_m = exp(M/(M−1) · (mean_j s_j − s_m))``; two modalities: ``r_a = exp(s_v − s_a)``."""
    n = len(scores)
    mean = sum(scores.values()) / n
    return {m: math.exp(n / (n - 1) * (mean - s)) for m, s in scores.items()}


def modulation_coefficients(
    scores: dict[str, float], running: dict[str, float], alpha: float, cap: float
) -> dict[str, float]:
    """``k_m = exp(α · min(r̄_m − r_m, cap))``: ``r`` from the step's scores, ``r̄`` from the running means."""
    ratio, target = competition_ratios(scores), competition_ratios(running)
    return {m: math.exp(alpha * min(target[m] - ratio[m], cap)) for m in scores}


def clip_if_head_gradient_exceeds(model: nn.Module, threshold: float, max_norm: float) -> bool:
    """Clip the whole gradient norm to ``max_norm`` if a fusion-head weight gradient entry leaves ``[−t, t]``.

    The fusion head's weights are the fusion module's parameters with two or more dimensions (the
    repo checks ``fc_out.weight``/``proj.weight``, the last linear layer).
    """
    weights = [p.grad for p in model.fusion.parameters() if p.dim() >= 2 and p.grad is not None]
    if not any(bool((g.abs() > threshold).any()) for g in weights):
        return False
    nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm)
    return True


@register_method("agm")
class AGM(Method):
    """Shapley unimodal outputs; per-step gradient coefficients from current vs running unimodal losses."""

    curves: ClassVar[dict[str, str]] = {"train_coef_{modality}": "AGM gradient coefficient k_m (epoch mean)"}

    @dataclass
    class Options:
        alpha: float = 1.0
        cap: float = 10.0
        """Upper bound of ``r̄_m − r_m`` in the exponent (repo 10; BalanceBenchmark 7)."""
        clip_threshold: float = 1.0
        clip_norm: float = 1.0
        masked_gradients: bool = False
        fusion: str = field(default="concat", metadata={"choices": ("concat", "sum")})

    def __init__(self, options: dict[str, Any], spec: ModelSpec) -> None:
        super().__init__(options, spec)
        self.score_means = dict.fromkeys(self.modalities, 0.0)
        self.iterations = 0

    def build(self) -> nn.Module:
        base = build_model(
            self.spec.modalities, self.spec.encoders, self.options.fusion, self.spec.num_classes
        )
        return ShapleyModel(dict(base.encoders), base.fusion, self.options.masked_gradients)

    def training_step(self, batch: Batch, ctx: Context) -> Logs:
        opts, y, precision = self.options, batch.labels, ctx.precision
        with precision.autocast():
            outputs = ctx.model(batch.inputs)
            scores = {m: unimodal_score(outputs.modality[m], y) for m in self.modalities}
            coefficients = modulation_coefficients(scores, self.score_means, opts.alpha, opts.cap)
            for m, k in coefficients.items():
                ctx.model.scales[m].scale = k
            loss = F.cross_entropy(torch.stack([outputs.modality[m] for m in self.modalities]).sum(0), y)
        ctx.optimizer.zero_grad(set_to_none=True)
        precision.backward(loss)
        self.update_running_means(scores)
        finite = precision.unscale(ctx.optimizer)
        clipped = finite and clip_if_head_gradient_exceeds(ctx.model, opts.clip_threshold, opts.clip_norm)
        precision.step(ctx.optimizer)
        logs = {"loss": float(loss.detach()), "clipped": float(clipped)}
        logs.update({f"coef_{m}": k for m, k in coefficients.items()})
        logs.update({f"score_{m}": s for m, s in scores.items()})
        return logs

    def update_running_means(self, scores: dict[str, float]) -> None:
        """``s̄_m ← s̄_m·(n−1)/n + s_m/n`` at iteration ``n`` (mean over every iteration so far)."""
        self.iterations += 1
        n = self.iterations
        self.score_means = {m: self.score_means[m] * (n - 1) / n + s / n for m, s in scores.items()}

    def on_epoch_end(self, ctx: Context, evaluation: dict[str, dict[str, dict[str, float]]]) -> Logs:
        return {f"score_mean_{m}": s for m, s in self.score_means.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"score_means": dict(self.score_means), "iterations": self.iterations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.score_means = {m: float(s) for m, s in state["score_means"].items()}
        self.iterations = int(state["iterations"])

"""MMPareto: Pareto integration of the multimodal and unimodal gradients of each encoder.

Wei & Hu, "MMPareto: Boosting Multimodal Learning with Innocent Unimodal Assistance", ICML 2024
(official code ``GeWu-Lab/MMPareto_ICML2024`` at ``a339db3``, ``code/MMPareto.py`` and
``code/min_norm_solvers.py``; methods.md §B19). Model: fusion ``concat_heads`` — a linear head on
the concatenated features (``L_mm``) and one linear head per modality (``L_m``), all CE.

Per batch and modality ``m``: ``g_mm`` and ``g_m`` are the gradients of ``L_mm`` and of ``L_m``
with respect to encoder ``m``'s parameters, each taken on its own (no accumulation between them).
With ``cos(g_mm, g_m) > 0`` (over the whole encoder) the weights are ``(½, ½)``; otherwise the
two-task MGDA min-norm weights (:func:`min_norm_weights`, the closed form the code's
``MinNormSolver`` uses for two tasks). Every parameter tensor of encoder ``m`` then gets
``g' = 2(w_mm g_mm + w_m g_m)``, multiplied by ``‖g_total‖/‖g'‖`` where that ratio exceeds 1 (norms
of that tensor; ``g_total`` is its gradient of ``L_mm + Σ_j L_j`` = ``g_mm + g_m``), then by
``γ`` = 1.5 (:func:`pareto_gradient`). The heads keep the gradient of ``L_mm + Σ_j L_j``.

Implementation: ``L_mm`` and each ``L_m`` are differentiated once each (``M + 1`` backward passes;
the code runs ``M + 2``, the last on the summed loss), and the summed-loss gradient is their sum.
BalanceBenchmark's bugs are not reproduced: its min-norm result goes to a loop variable (the weights
stay ``[0, 0]``, the new gradient is zero and the rescale divides by zero whenever ``cos ≤ 0``), and
its per-loss gradients are recorded without zeroing in between (cumulative). Generalises to any
number of modalities: each encoder sees exactly two tasks, ``L_mm`` and its own ``L_m``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmbalance.engine.precision import Precision
from mmbalance.engine.types import Batch, Context
from mmbalance.methods._base import Logs, Method
from mmbalance.registry import register_method

FP32 = Precision()


def gradients(
    loss: torch.Tensor, params: list[torch.Tensor], retain_graph: bool, precision: Precision = FP32
) -> list[torch.Tensor]:
    """``∂loss/∂p`` for each of ``params`` on its own (zeros where ``loss`` does not depend on ``p``);
    true gradients through ``precision`` (scaled differentiation under fp16)."""
    grads = precision.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def flat_dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """``⟨a, b⟩`` of two gradients given as lists of tensors (the concatenated vectors)."""
    return sum((x * y).sum() for x, y in zip(a, b, strict=True))


def min_norm_weights(g1: list[torch.Tensor], g2: list[torch.Tensor]) -> tuple[float, float]:
    """``(c, 1 − c)`` minimising ``‖c g1 + (1 − c) g2‖²`` over ``c ∈ [0, 1]`` (two-task MGDA).

    ``c = (⟨g2,g2⟩ − ⟨g1,g2⟩) / ‖g1 − g2‖²`` clipped to ``[0, 1]`` (``MinNormSolver._min_norm_element_from2``;
    the code's end cases return 0.999 / 0.001 instead of 1 / 0, and are unreachable when ``cos ≤ 0``
    unless a gradient is zero). Equal gradients give ``(½, ½)``.
    """
    v11, v12, v22 = (float(flat_dot(x, y)) for x, y in ((g1, g1), (g1, g2), (g2, g2)))
    distance = v11 + v22 - 2.0 * v12
    if distance <= 0.0:
        return 0.5, 0.5
    c = min(max((v22 - v12) / distance, 0.0), 1.0)
    return c, 1.0 - c


def cosine(g1: list[torch.Tensor], g2: list[torch.Tensor]) -> float:
    """Cosine of the angle between two gradients (0 when either is zero)."""
    norm = float(flat_dot(g1, g1).sqrt() * flat_dot(g2, g2).sqrt())
    return float(flat_dot(g1, g2)) / norm if norm > 0.0 else 0.0


def pareto_weights(g_mm: list[torch.Tensor], g_m: list[torch.Tensor]) -> tuple[float, float, float]:
    """``(cos, w_mm, w_m)``: ``(½, ½)`` when the two gradients agree (``cos > 0``), else MGDA's weights."""
    cos = cosine(g_mm, g_m)
    if cos > 0.0:
        return cos, 0.5, 0.5
    return cos, *min_norm_weights(g_mm, g_m)


def pareto_gradient(
    g_mm: torch.Tensor, g_m: torch.Tensor, w_mm: float, w_m: float, gamma: float
) -> torch.Tensor:
    """A parameter tensor's new gradient ``γ · max(1, ‖g_mm + g_m‖/‖g'‖) · g'``.

    ``g' = 2(w_mm g_mm + w_m g_m)``; the norms are those of this tensor, as in the code.
    """
    combined = 2.0 * (w_mm * g_mm + w_m * g_m)
    combined_norm = torch.linalg.vector_norm(combined)
    total_norm = torch.linalg.vector_norm(g_mm + g_m)
    if combined_norm > 0 and total_norm > combined_norm:
        combined = combined * (total_norm / combined_norm)
    return combined * gamma


@register_method("mmpareto")
class MMPareto(Method):
    """Multimodal + unimodal CE; each encoder's gradient integrated by the MMPareto rule."""

    fusion = "concat_heads"

    @dataclass
    class Options:
        gamma: float = 1.5

    def training_step(self, batch: Batch, ctx: Context) -> Logs:
        y = batch.labels
        model, precision = ctx.model, ctx.precision
        with precision.autocast():
            outputs = model(batch.inputs)
            loss_mm = F.cross_entropy(outputs.fused, y)
            unimodal = {m: F.cross_entropy(outputs.modality[m], y) for m in self.modalities}
        encoders = {
            m: [p for p in model.encoders[m].parameters() if p.requires_grad] for m in self.modalities
        }
        fused_head = list(model.fusion.fc.parameters())

        flat = [p for m in self.modalities for p in encoders[m]]
        from_mm = iter(gradients(loss_mm, [*flat, *fused_head], retain_graph=True, precision=precision))
        g_mm = {m: [next(from_mm) for _ in encoders[m]] for m in self.modalities}
        head_mm = list(from_mm)

        ctx.optimizer.zero_grad(set_to_none=True)
        logs: Logs = {"ce_fused": float(loss_mm.detach())}
        for i, m in enumerate(self.modalities):
            head = list(model.fusion.heads[m].parameters())
            last = i == len(self.modalities) - 1
            grads = gradients(unimodal[m], [*encoders[m], *head], retain_graph=not last, precision=precision)
            g_m, head_m = grads[: len(encoders[m])], grads[len(encoders[m]) :]
            cos, w_mm, w_m = pareto_weights(g_mm[m], g_m)
            combined = [
                pareto_gradient(a, b, w_mm, w_m, self.options.gamma)
                for a, b in zip(g_mm[m], g_m, strict=True)
            ]
            precision.assign(encoders[m], combined)
            precision.assign(head, head_m)
            logs.update({f"ce_{m}": float(unimodal[m].detach()), f"cos_{m}": cos})
            logs.update({f"weight_mm_{m}": w_mm, f"weight_uni_{m}": w_m})
        precision.assign(fused_head, head_mm)
        precision.step(ctx.optimizer)
        total = loss_mm + sum(unimodal.values())
        return {"loss": float(total.detach()), **logs}

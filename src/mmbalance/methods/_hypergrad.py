"""Implicit hyper-gradients of bilevel problems by conjugate gradient (reusable by any method).

For ``min_λ L_out(θ*(λ))`` with ``θ*(λ) ∈ argmin_θ L_in(θ, λ)`` the implicit function theorem gives
(Ghadimi & Wang's approximation, LFM paper Eq. 3)::

    dL_out/dλ = −∇²_{λθ} L_in · [∇²_{θθ} L_in]⁻¹ · ∇_θ L_out

The inverse-Hessian product ``v = H⁻¹ ∇_θ L_out`` is approximated with ``steps`` conjugate-gradient
iterations on Hessian-vector products (double backward), never forming ``H``. ``damping`` λ solves
``(H + λI) v = ∇_θ L_out`` instead: a network's inner loss is not convex, and CG stops at the first
direction of non-positive curvature of ``H``; a λ larger than the magnitude of ``H``'s most negative
eigenvalue makes the system positive definite, so CG runs its steps (Tikhonov damping, as in
truncated-Newton and iMAML solvers). Each solve reports how many steps ran and why it stopped
(:class:`CGInfo`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Vector = list[torch.Tensor]


def grads(
    outputs: Sequence[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    grad_outputs: Sequence[torch.Tensor] | None = None,
    create_graph: bool = False,
) -> Vector:
    """``Σ_k ⟨outputs_k, grad_outputs_k⟩`` differentiated w.r.t. ``inputs``; zeros where independent.

    Outputs that do not require grad (constants, e.g. the gradient of a loss linear in a parameter)
    contribute nothing and are skipped.
    """
    if grad_outputs is None:
        grad_outputs = [torch.ones_like(o) for o in outputs]
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs, strict=True) if o.requires_grad]
    if not pairs:
        return [torch.zeros_like(x) for x in inputs]
    found = torch.autograd.grad(
        [o for o, _ in pairs],
        list(inputs),
        grad_outputs=[g for _, g in pairs],
        retain_graph=True,
        create_graph=create_graph,
        allow_unused=True,
    )
    return [torch.zeros_like(x) if g is None else g for g, x in zip(found, inputs, strict=True)]


def dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b, strict=True))


STOP_REASONS = ("steps", "converged", "curvature")
"""Why CG stopped, by code (``cg_stop`` in ``history.csv``): 0 every step ran; 1 the residual fell
to the tolerance; 2 a direction of non-positive curvature of ``H + λI`` (the iterate so far is kept)."""


@dataclass(frozen=True)
class CGInfo:
    """One CG solve: ``steps`` iterations completed, ``stop`` an index into :data:`STOP_REASONS`,
    ``residual`` CG's relative residual ``‖r‖/‖b‖`` at the stop (1 when ``b`` itself is returned:
    nothing was solved)."""

    steps: int
    stop: int
    residual: float


def conjugate_gradient(
    hvp: Callable[[Vector], Vector], b: Vector, steps: int, damping: float = 0.0, tol: float = 1e-12
) -> tuple[Vector, CGInfo]:
    """Approximately solve ``(H + damping·I) x = b`` from ``x = 0`` with ``steps`` CG iterations.

    Truncated CG (Steihaug): on a direction of non-positive curvature (a non-convex inner loss)
    it stops with the current iterate, or returns ``b`` itself (``H ≈ I``) if that happens first.
    Stops early when ``‖r‖² ≤ tol``. Returns the solution and what happened (:class:`CGInfo`).
    """
    x = [torch.zeros_like(v) for v in b]
    r = [v.clone() for v in b]
    p = [v.clone() for v in b]
    rs = dot(r, r)
    norm_b = float(rs) ** 0.5

    def relative(rs: torch.Tensor) -> float:
        return float(rs) ** 0.5 / norm_b if norm_b > 0 else 0.0

    for step in range(steps):
        if rs <= tol:
            return x, CGInfo(step, 1, relative(rs))
        hp = [h + damping * v for h, v in zip(hvp(p), p, strict=True)]
        curvature = dot(p, hp)
        if curvature <= 0:
            if step == 0:
                return [v.clone() for v in b], CGInfo(0, 2, 1.0)
            return x, CGInfo(step, 2, relative(rs))
        a = rs / curvature
        x = [xi + a * pi for xi, pi in zip(x, p, strict=True)]
        r = [ri - a * hi for ri, hi in zip(r, hp, strict=True)]
        rs_new = dot(r, r)
        p = [ri + (rs_new / rs) * pi for ri, pi in zip(r, p, strict=True)]
        rs = rs_new
    return x, CGInfo(steps, 1 if rs <= tol else 0, relative(rs))


def hypergradient(
    inner_loss: torch.Tensor,
    outer_loss: torch.Tensor,
    params: Sequence[torch.Tensor],
    hyper: torch.Tensor,
    steps: int,
    damping: float = 0.0,
) -> tuple[torch.Tensor, CGInfo]:
    """``−∇²_{λθ} L_in · [∇²_{θθ} L_in + damping·I]⁻¹ · ∇_θ L_out`` (Eq. 3 of LFM), shaped like
    ``hyper``, and the CG solve's :class:`CGInfo`.

    ``inner_loss`` must be built from ``params`` and the leaf tensor ``hyper`` (requires grad);
    ``outer_loss`` from ``params`` only (its direct ``∂/∂λ`` is zero, as in LFM).
    """
    outer_grad = [g.detach() for g in grads([outer_loss], params)]
    inner_grad = grads([inner_loss], params, create_graph=True)
    v, info = conjugate_gradient(
        lambda p: [h.detach() for h in grads(inner_grad, params, p)], outer_grad, steps, damping
    )
    (mixed,) = grads(inner_grad, [hyper], v)
    return -mixed.detach(), info

"""Implicit hyper-gradients of bilevel problems by conjugate gradient (reusable by any method).

For ``min_λ L_out(θ*(λ))`` with ``θ*(λ) ∈ argmin_θ L_in(θ, λ)`` the implicit function theorem gives
(Ghadimi & Wang's approximation, LFM paper Eq. 3)::

    dL_out/dλ = −∇²_{λθ} L_in · [∇²_{θθ} L_in]⁻¹ · ∇_θ L_out

The inverse-Hessian product ``v = H⁻¹ ∇_θ L_out`` is approximated with ``steps`` conjugate-gradient
iterations on Hessian-vector products (double backward), never forming ``H``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


def conjugate_gradient(
    hvp: Callable[[Vector], Vector], b: Vector, steps: int, damping: float = 0.0, tol: float = 1e-12
) -> Vector:
    """Approximately solve ``(H + damping·I) x = b`` from ``x = 0`` with ``steps`` CG iterations.

    Truncated CG (Steihaug): on a direction of non-positive curvature (a non-convex inner loss)
    it stops with the current iterate, or returns ``b`` itself (``H ≈ I``) if that happens first.
    """
    x = [torch.zeros_like(v) for v in b]
    r = [v.clone() for v in b]
    p = [v.clone() for v in b]
    rs = dot(r, r)
    for step in range(steps):
        if rs <= tol:
            break
        hp = [h + damping * v for h, v in zip(hvp(p), p, strict=True)]
        curvature = dot(p, hp)
        if curvature <= 0:
            return [v.clone() for v in b] if step == 0 else x
        a = rs / curvature
        x = [xi + a * pi for xi, pi in zip(x, p, strict=True)]
        r = [ri - a * hi for ri, hi in zip(r, hp, strict=True)]
        rs_new = dot(r, r)
        p = [ri + (rs_new / rs) * pi for ri, pi in zip(r, p, strict=True)]
        rs = rs_new
    return x


def hypergradient(
    inner_loss: torch.Tensor,
    outer_loss: torch.Tensor,
    params: Sequence[torch.Tensor],
    hyper: torch.Tensor,
    steps: int,
    damping: float = 0.0,
) -> torch.Tensor:
    """``−∇²_{λθ} L_in · [∇²_{θθ} L_in]⁻¹ · ∇_θ L_out`` (Eq. 3 of LFM), shaped like ``hyper``.

    ``inner_loss`` must be built from ``params`` and the leaf tensor ``hyper`` (requires grad);
    ``outer_loss`` from ``params`` only (its direct ``∂/∂λ`` is zero, as in LFM).
    """
    outer_grad = [g.detach() for g in grads([outer_loss], params)]
    inner_grad = grads([inner_loss], params, create_graph=True)
    v = conjugate_gradient(
        lambda p: [h.detach() for h in grads(inner_grad, params, p)], outer_grad, steps, damping
    )
    (mixed,) = grads(inner_grad, [hyper], v)
    return -mixed.detach()

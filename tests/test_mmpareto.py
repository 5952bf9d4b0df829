"""MMPareto: min-norm weights, Pareto-integrated gradient, rescale and γ, heads' gradients (§B19)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmbalance.config import typed_options
from mmbalance.engine.optim import build_optimizer
from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.methods.mmpareto import MMPareto, min_norm_weights, pareto_gradient, pareto_weights
from tests.conftest import make_batch


def as_list(v: np.ndarray) -> list[torch.Tensor]:
    """A gradient split into two "parameter tensors", as the solver receives it."""
    t = torch.tensor(v, dtype=torch.float64)
    return [t[:3].reshape(3, 1), t[3:]]


def random_pairs(conflicting: bool, count: int = 50, dim: int = 7):
    rng = np.random.default_rng(0)
    pairs = []
    while len(pairs) < count:
        g1, g2 = rng.normal(size=dim) * rng.uniform(0.1, 10), rng.normal(size=dim) * rng.uniform(0.1, 10)
        if (g1 @ g2 <= 0) == conflicting:
            pairs.append((g1, g2))
    return pairs


# --- weights -------------------------------------------------------------------------------------
def test_min_norm_weights_match_a_brute_force_search() -> None:
    grid = np.linspace(0.0, 1.0, 100001)
    for g1, g2 in [*random_pairs(True, 20), *random_pairs(False, 20)]:
        c, rest = min_norm_weights(as_list(g1), as_list(g2))
        assert c + rest == pytest.approx(1.0)
        norms = np.linalg.norm(np.outer(grid, g1) + np.outer(1 - grid, g2), axis=1)
        best = grid[norms.argmin()]
        assert c == pytest.approx(best, abs=2e-5)
        assert np.linalg.norm(c * g1 + rest * g2) <= norms.min() + 1e-9


def test_min_norm_weights_closed_form_and_end_cases() -> None:
    # g1 = [2, 0], g2 = [−1, 1]: c = (⟨g2,g2⟩ − ⟨g1,g2⟩)/‖g1 − g2‖² = (2 + 2)/10
    c, rest = min_norm_weights([torch.tensor([2.0, 0.0])], [torch.tensor([-1.0, 1.0])])
    assert (c, rest) == pytest.approx((0.4, 0.6))
    # g2 inside the half-space of g1 with a smaller norm: the minimum is g2 itself
    assert min_norm_weights([torch.tensor([3.0, 0.0])], [torch.tensor([1.0, 0.1])]) == pytest.approx(
        (0.0, 1.0)
    )
    assert min_norm_weights([torch.tensor([1.0, 1.0])], [torch.tensor([1.0, 1.0])]) == (0.5, 0.5)


def test_agreeing_gradients_get_equal_weights() -> None:
    for g1, g2 in random_pairs(False, 20):
        cos, w_mm, w_m = pareto_weights(as_list(g1), as_list(g2))
        assert cos == pytest.approx(g1 @ g2 / np.linalg.norm(g1) / np.linalg.norm(g2))
        assert (w_mm, w_m) == (0.5, 0.5)


@pytest.mark.parametrize("conflicting", [True, False])
def test_integrated_gradient_never_opposes_either_task(conflicting: bool) -> None:
    """``2(w_mm g_mm + w_m g_m)`` has ⟨·, g_mm⟩ ≥ 0 and ⟨·, g_m⟩ ≥ 0, conflicting or not."""
    for g1, g2 in random_pairs(conflicting):
        _, w_mm, w_m = pareto_weights(as_list(g1), as_list(g2))
        combined = 2 * (w_mm * g1 + w_m * g2)
        scale = np.linalg.norm(combined) * max(np.linalg.norm(g1), np.linalg.norm(g2))
        assert combined @ g1 >= -1e-9 * scale and combined @ g2 >= -1e-9 * scale
        if conflicting:  # the plain sum would oppose one of them in some of these cases
            assert w_mm != 0.5 or w_m != 0.5


def test_constructed_conflict_where_the_sum_opposes_a_task() -> None:
    g_mm, g_m = np.array([1.0, 0.0]), np.array([-3.0, 0.5])
    assert (g_mm + g_m) @ g_mm < 0  # summing the losses would move against the multimodal loss
    cos, w_mm, w_m = pareto_weights(as_list(np.r_[g_mm, 0, 0]), as_list(np.r_[g_m, 0, 0]))
    assert cos < 0
    combined = w_mm * g_mm + w_m * g_m
    assert combined @ g_mm >= -1e-12 and combined @ g_m >= -1e-12


# --- rescale and γ -------------------------------------------------------------------------------
def test_pareto_gradient_rescale_and_gamma_by_hand() -> None:
    g_mm, g_m = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])
    # weights (0.4, 0.6): g' = 2(0.4 g_mm + 0.6 g_m) = [0.4, 1.2], ‖g'‖ = √1.6 < ‖g_mm + g_m‖ = √2
    got = pareto_gradient(g_mm, g_m, 0.4, 0.6, gamma=1.5)
    assert torch.allclose(got, 1.5 * math.sqrt(2 / 1.6) * torch.tensor([0.4, 1.2]))
    # agreeing, (½, ½): g' = g_mm + g_m, ratio 1, no rescale
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert torch.allclose(pareto_gradient(a, b, 0.5, 0.5, gamma=1.5), 1.5 * (a + b))
    # ‖g'‖ above ‖g_total‖: kept as it is (only ever scaled up)
    assert torch.allclose(pareto_gradient(a, -a, 1.0, 0.0, gamma=2.0), 2.0 * 2 * a)
    # exactly opposite, equal weights: g' = 0 stays 0 (no division by zero)
    assert torch.equal(pareto_gradient(a, -a, 0.5, 0.5, gamma=1.5), torch.zeros(2))


# --- the step ------------------------------------------------------------------------------------
def setup(spec: ModelSpec, seed: int = 0):
    torch.manual_seed(seed)
    method = MMPareto(typed_options(MMPareto.Options(), {}, "methods.mmpareto"), spec)
    model = method.build()
    optimizer = build_optimizer(model.parameters(), {"name": "sgd", "lr": 0.01, "momentum": 0.9})
    ctx = Context(model, optimizer, 0, 3, 0, torch.device("cpu"), method.modalities, spec.num_classes)
    return method, model, ctx


def test_step_gradients_match_separate_backwards(tiny_spec: ModelSpec) -> None:
    """Reference the code's way: backward each loss with zeroed grads in between, then the summed loss."""
    method, model, ctx = setup(tiny_spec)
    reference = copy.deepcopy(model)
    batch = make_batch()
    logs = method.training_step(batch, ctx)

    out = reference(batch.inputs)
    y = batch.labels
    losses = {"mm": F.cross_entropy(out.fused, y)}
    losses.update({m: F.cross_entropy(out.modality[m], y) for m in ("audio", "video")})
    per_loss = {}
    for name, loss in losses.items():
        reference.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        per_loss[name] = {n: p.grad.clone() for n, p in reference.named_parameters() if p.grad is not None}
    reference.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    summed = {n: p.grad.clone() for n, p in reference.named_parameters()}

    got = dict(model.named_parameters())
    for name in summed:
        if name.startswith("fusion."):  # heads: the plain summed-loss gradient
            assert torch.allclose(got[name].grad, summed[name], atol=1e-6), name
    for m in ("audio", "video"):
        names = [n for n in summed if n.startswith(f"encoders.{m}.")]
        g_mm = [per_loss["mm"][n] for n in names]
        g_m = [per_loss[m][n] for n in names]
        flat_mm, flat_m = torch.cat([g.flatten() for g in g_mm]), torch.cat([g.flatten() for g in g_m])
        cos = float(F.cosine_similarity(flat_mm, flat_m, dim=0))
        assert logs[f"cos_{m}"] == pytest.approx(cos, abs=1e-5)
        w_mm, w_m = logs[f"weight_mm_{m}"], logs[f"weight_uni_{m}"]
        if cos > 0:
            assert (w_mm, w_m) == (0.5, 0.5)
        for n, a, b in zip(names, g_mm, g_m, strict=True):
            new = 2 * (w_mm * a + w_m * b)
            ratio = max(1.0, float(summed[n].norm() / new.norm())) if new.norm() > 0 else 1.0
            assert torch.allclose(summed[n], a + b, rtol=1e-4, atol=1e-5), (
                n
            )  # L_j (j ≠ m) do not reach encoder m
            assert torch.allclose(got[n].grad, 1.5 * ratio * new, rtol=1e-4, atol=1e-7), n
    assert logs["loss"] == pytest.approx(float(sum(losses.values()).detach()), rel=1e-6)


def test_three_modalities(tiny_spec: ModelSpec) -> None:
    spec = ModelSpec(
        modalities={**tiny_spec.modalities, "depth": "frames"},
        encoders={**tiny_spec.encoders, "depth": tiny_spec.encoders["video"]},
        num_classes=tiny_spec.num_classes,
    )
    method, model, ctx = setup(spec)
    base = make_batch()
    batch = Batch({**base.inputs, "depth": base.inputs["video"].flip(0)}, base.labels, base.index)
    logs = method.training_step(batch, ctx)
    assert {"cos_depth", "weight_mm_depth", "weight_uni_depth", "ce_depth"} <= set(logs)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.fusion.fc.in_features == 3 * model.encoders["depth"].out_dim

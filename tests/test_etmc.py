"""ETMC: Dempster–Shafer combination, the evidential loss and its annealing (methods.md §B8)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from mmbalance.config import typed_options
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.methods.etmc import (
    ETMC,
    annealing_coefficient,
    combine_views,
    ds_combine,
    evidential_loss,
    kl_to_uniform,
    opinion,
)
from tests.conftest import make_batch


def random_alpha(batch: int, classes: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 1.0 + 5.0 * torch.rand(batch, classes, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("views", [2, 3])
def test_combined_opinion_is_normalised(views: int) -> None:
    """Σ_k b_k + u = 1 for the combination, as for any Dirichlet opinion."""
    alphas = [random_alpha(64, 5, seed) for seed in range(views)]
    belief, uncertainty = opinion(combine_views(alphas))
    assert torch.allclose(belief.sum(1, keepdim=True) + uncertainty, torch.ones(64, 1, dtype=torch.float64))
    assert (belief >= 0).all() and (uncertainty > 0).all()


def test_two_view_combination_hand_computed() -> None:
    """C = 2. Disagreeing views α¹ = (3, 1), α² = (1, 3): b¹ = (½, 0), b² = (0, ½), u¹ = u² = ½,
    K = ¼, b = (¼, ¼)/¾ = (⅓, ⅓), u = ¼/¾ = ⅓, S = C/u = 6, α = b S + 1 = (3, 3).
    Agreeing views (3, 1), (3, 1): K = 0, b = (¼ + ¼ + ¼, 0) = (¾, 0), u = ¼, S = 8, α = (7, 1)."""
    alpha = ds_combine(torch.tensor([[3.0, 1.0], [3.0, 1.0]]), torch.tensor([[1.0, 3.0], [3.0, 1.0]]))
    assert torch.allclose(alpha, torch.tensor([[3.0, 3.0], [7.0, 1.0]]))


def test_combination_with_a_vacuous_view_is_the_identity() -> None:
    """A view without evidence (α = 1, u = 1) changes nothing."""
    alpha = random_alpha(8, 4, 0)
    assert torch.allclose(ds_combine(alpha, torch.ones_like(alpha)), alpha)


def test_kl_matches_torch_dirichlet() -> None:
    alpha = random_alpha(16, 6, 1)
    expected = kl_divergence(Dirichlet(alpha), Dirichlet(torch.ones_like(alpha)))
    assert torch.allclose(kl_to_uniform(alpha), expected)


def test_evidential_ce_is_the_expected_cross_entropy() -> None:
    """Without the KL term the loss is E_{p~Dir(α)}[−log p_y] (Monte Carlo check)."""
    alpha = torch.tensor([[4.0, 2.0, 1.5], [1.2, 1.0, 6.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    torch.manual_seed(0)
    samples = Dirichlet(alpha).sample((200_000,))
    monte_carlo = -samples[:, torch.arange(2), labels].log().mean(0)
    assert torch.allclose(evidential_loss(alpha, labels, annealing=0.0), monte_carlo, rtol=5e-3)


def test_kl_term_removes_the_target_evidence() -> None:
    alpha = random_alpha(4, 3, 2)
    labels = torch.tensor([0, 1, 2, 0])
    tilde = alpha.clone()
    tilde[torch.arange(4), labels] = 1.0
    difference = evidential_loss(alpha, labels, 0.7) - evidential_loss(alpha, labels, 0.0)
    assert torch.allclose(difference, 0.7 * kl_to_uniform(tilde))


@pytest.mark.parametrize(("epoch", "expected"), [(0, 0.0), (3, 0.3), (9, 0.9), (10, 1.0), (15, 1.0)])
def test_annealing_coefficient(epoch: int, expected: float) -> None:
    assert annealing_coefficient(epoch, 10) == pytest.approx(expected)


def test_loss_sums_modalities_pseudo_view_and_combination(tiny_spec: ModelSpec) -> None:
    torch.manual_seed(0)
    method = ETMC(typed_options(ETMC.Options(), {}, "etmc"), tiny_spec)
    model = method.build()
    batch = make_batch()
    ctx = Context(model, torch.optim.SGD(model.parameters(), lr=0.0), 4, 16, 0, torch.device("cpu"), [], 3)
    outputs = model(batch.inputs)
    loss, logs = method.loss(outputs, batch, ctx)

    def alpha(logits: torch.Tensor) -> torch.Tensor:
        return torch.log1p(logits.exp()) + 1

    a, v, p = (alpha(o) for o in (outputs.modality["audio"], outputs.modality["video"], outputs.fused))
    combined = ds_combine(ds_combine(a, v), p)
    expected = sum(evidential_loss(x, batch.labels, 0.4).mean() for x in (a, v, p, combined))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert logs["annealing"] == pytest.approx(0.4)
    probs = method.predict(outputs)
    assert torch.allclose(probs["fused"], combined / combined.sum(1, keepdim=True))
    assert torch.allclose(probs["video"], v / v.sum(1, keepdim=True))


def test_three_modalities_fold_then_pseudo_view() -> None:
    spec = ModelSpec(
        modalities={"audio": "spectrogram", "video": "frames", "flow": "frames"},
        encoders={m: {"name": "resnet10", "width": 4} for m in ("audio", "video", "flow")},
        num_classes=3,
    )
    torch.manual_seed(0)
    method = ETMC({}, spec)
    model = method.build()
    batch = make_batch()
    batch.inputs["flow"] = batch.inputs["video"].flip(0)
    outputs = model(batch.inputs)
    alphas = {m: F.softplus(outputs.modality[m]) + 1 for m in spec.modalities}
    pseudo = F.softplus(outputs.fused) + 1
    expected = ds_combine(ds_combine(ds_combine(alphas["audio"], alphas["video"]), alphas["flow"]), pseudo)
    assert torch.allclose(method.opinions(outputs)["combined"], expected)
    assert model.fusion.joint[0].in_features == sum(model.fusion.dims.values())

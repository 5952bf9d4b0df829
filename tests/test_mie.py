"""MIE: SAM step, gradient-modification matrices, stage schedule and covariance pass (methods.md §A2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.config import typed_options
from mmbalance.engine.optim import build_optimizer
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.errors import TrainingError
from mmbalance.methods._gradient_modification import (
    cumulative_input_covariance,
    linear_layers,
    modification_matrix,
    modify_gradients,
    scope_layers,
)
from mmbalance.methods._sam import code_sam_loss, faithful_sam_gradients
from mmbalance.methods.mie import MIE, Stage, stage_at
from mmbalance.models.fusions._base import FusionOutput
from mmbalance.models.fusions.mlp_heads import mlp_head
from mmbalance.models.model import ModelOutput
from tests.conftest import make_batch

TAU = 0.4


def make_method(spec: ModelSpec, **options) -> MIE:
    return MIE(typed_options(MIE.Options(), options, "methods.mie"), spec)


def make_context(method: MIE, model: nn.Module, epoch: int, data: dict | None = None) -> Context:
    optimizer = build_optimizer(method.param_groups(model), {"name": "sgd", "lr": 0.01, "momentum": 0.9})
    return Context(model, optimizer, epoch, 6, 0, torch.device("cpu"), method.modalities, 3, data)


# --- SAM ---------------------------------------------------------------------------------------
def test_faithful_sam_uses_gradient_at_perturbed_point_and_restores_weights() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    rho = 0.5
    before = [p.detach().clone() for p in model.parameters()]

    def objective() -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    faithful_sam_gradients(list(model.parameters()), objective, rho)

    w, b = (t.clone().requires_grad_() for t in before)
    g_w, g_b = torch.autograd.grad(F.cross_entropy(F.linear(x, w, b), y), (w, b))
    norm = torch.sqrt((g_w**2).sum() + (g_b**2).sum())
    w2 = (w + rho * g_w / norm).detach().requires_grad_()
    b2 = (b + rho * g_b / norm).detach().requires_grad_()
    expected = torch.autograd.grad(F.cross_entropy(F.linear(x, w2, b2), y), (w2, b2))
    for p, e, g0 in zip(model.parameters(), expected, (g_w, g_b), strict=True):
        assert torch.allclose(p.grad, e, atol=1e-6)
        assert not torch.allclose(p.grad, g0, atol=1e-4)  # the unperturbed gradient would fail
    for p, saved in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), saved)


def test_mie_step_sees_restored_weights_at_the_optimiser_step(tiny_spec: ModelSpec) -> None:
    torch.manual_seed(0)
    method = make_method(tiny_spec, rho=[0.5])
    model = method.build()
    ctx = make_context(method, model, epoch=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    seen = {}
    step = ctx.optimizer.step

    def spy(*args, **kwargs):
        seen.update({n: p.detach().clone() for n, p in model.named_parameters()})
        return step(*args, **kwargs)

    ctx.optimizer.step = spy
    method.training_step(make_batch(), ctx)
    assert seen and all(torch.equal(seen[n], before[n]) for n in before)


def test_code_sam_moves_each_tensor_permanently_by_rho() -> None:
    torch.manual_seed(0)
    head = nn.Linear(4, 3)
    z, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    before = [p.detach().clone() for p in head.parameters()]
    loss = F.cross_entropy(head(z), y)
    total, perturbed = code_sam_loss(list(head.parameters()), loss, head, z, y, rho=0.1, flat_ratio=0.3)
    for p, saved in zip(head.parameters(), before, strict=True):
        assert math.isclose(float((p.detach() - saved).norm()), 0.1, rel_tol=1e-4)
    assert torch.allclose(total, 0.7 * loss + 0.3 * perturbed)


# --- gradient modification -----------------------------------------------------------------------
def random_covariance(dim: int = 6, rank: int = 4, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(rank, dim, generator=gen, dtype=torch.float64)
    return z.T @ z


def test_modification_matrix_is_symmetric_with_spectrum_in_range() -> None:
    covariance = random_covariance()
    t, singular = modification_matrix(covariance, TAU)
    assert torch.equal(t, t.T)
    eigenvalues = torch.linalg.eigvalsh(t.double())
    assert eigenvalues.min() >= math.exp(-TAU) - 1e-5 and eigenvalues.max() <= 1 + 1e-5
    top = torch.linalg.svd(covariance).Vh[0].float()
    assert torch.allclose(t @ top, math.exp(-TAU) * top, atol=1e-5)
    assert torch.allclose(singular, torch.linalg.svdvals(covariance).float())


@pytest.mark.parametrize("covariance", [3.0 * torch.eye(5, dtype=torch.float64), torch.zeros(5, 5)])
def test_flat_spectrum_leaves_gradient_unchanged(covariance: torch.Tensor) -> None:
    t, _ = modification_matrix(covariance.double(), TAU)
    assert torch.equal(t, torch.eye(5))
    layer = nn.Linear(5, 2)
    layer.weight.grad = torch.randn(2, 5)
    grad = layer.weight.grad.clone()
    modify_gradients({"0": layer}, {"0": t})
    assert torch.equal(layer.weight.grad, grad)


def test_modification_multiplies_exactly_the_head_linear_weight_gradients(tiny_spec: ModelSpec) -> None:
    torch.manual_seed(0)
    method = make_method(tiny_spec)
    model = method.build()
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    layers = linear_layers(model.fusion.heads["audio"])
    method.matrices["audio"] = {
        n: modification_matrix(random_covariance(layer.in_features, 3, i), TAU)[0]
        for i, (n, layer) in enumerate(layers.items())
    }
    modified = method.modify(model, Stage(1, "video", 1, 2))
    assert modified == ["0", "2", "3"]
    changed = {f"fusion.heads.video.{n}.weight": method.matrices["audio"][n] for n in modified}
    for name, p in model.named_parameters():
        if name in changed:
            assert torch.allclose(p.grad, before[name] @ changed[name])
        else:
            assert torch.equal(p.grad, before[name]), name


def test_covariance_pass_matches_numpy() -> None:
    torch.manual_seed(0)
    head = mlp_head(5, (4, 3), 2)
    batches = [torch.randn(n, 5) for n in (3, 4, 2)]
    covariances = cumulative_input_covariance(linear_layers(head), batches, head)
    w0, b0 = (t.detach().double().numpy() for t in (head[0].weight, head[0].bias))
    w2, b2 = (t.detach().double().numpy() for t in (head[2].weight, head[2].bias))
    expected = {"0": 0, "2": 0, "3": 0}
    for z in batches:
        x0 = z.double().numpy()
        x2 = np.maximum(x0 @ w0.T + b0, 0)
        x3 = x2 @ w2.T + b2
        for name, x in (("0", x0), ("2", x2), ("3", x3)):
            expected[name] = expected[name] + np.outer(x.mean(0), x.mean(0))
    for name, value in expected.items():
        np.testing.assert_allclose(covariances[name].numpy(), value, rtol=1e-6, atol=1e-9)


def test_convolution_covariance_sums_the_outer_products_of_all_patches() -> None:
    """Eq. 5 for a Conv2d as the IGM code's ``Conv2d`` branch: per batch, every kh×kw patch of the
    batch-mean input adds its outer product (``patchesᵀ·patches``), the patches sliced here by hand
    from the zero-padded input, one position at a time."""
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False)
    batches = [torch.randn(n, 2, 5, 4) for n in (2, 3)]
    covariances = cumulative_input_covariance({"c": conv}, batches, conv)
    expected = torch.zeros(18, 18, dtype=torch.float64)
    positions = 0
    for x in batches:
        padded = F.pad(x.double(), (1, 1, 1, 1))
        for i in range(0, padded.shape[2] - 2, 2):
            for j in range(0, padded.shape[3] - 2, 2):
                patch = padded[:, :, i : i + 3, j : j + 3].reshape(len(x), -1).mean(0)
                expected += torch.outer(patch, patch)
                positions += 1
    assert positions == 2 * 3 * 2
    torch.testing.assert_close(covariances["c"], expected)
    assert torch.linalg.matrix_rank(covariances["c"]) > len(batches)  # not one batch-mean patch per batch


def test_convolution_gradient_is_multiplied_as_a_flattened_weight() -> None:
    conv = nn.Conv2d(2, 3, 3, bias=False)
    conv.weight.grad = torch.randn_like(conv.weight)
    before = conv.weight.grad.clone()
    t = modification_matrix(random_covariance(18, 4), TAU)[0]
    assert modify_gradients({"c": conv}, {"c": t, "other": torch.eye(2)}) == ["c"]
    torch.testing.assert_close(conv.weight.grad, (before.reshape(3, 18) @ t).reshape(before.shape))
    assert modify_gradients({"c": conv}, {"c": torch.eye(9)}) == []  # input size mismatch: untouched


def test_scope_takes_layers_from_the_output_down_to_the_parameter_share(tiny_spec: ModelSpec) -> None:
    model = make_method(tiny_spec).build()
    head, encoder = model.fusion.heads["audio"], model.encoders["audio"]
    assert list(scope_layers(head, encoder, None)) == ["0", "2", "3"]
    total = sum(p.numel() for p in (*head.parameters(), *encoder.parameters()))
    everything = scope_layers(head, encoder, 1.0)
    convs = [n for n, m in encoder.named_modules() if isinstance(m, nn.Conv2d)]
    assert list(everything) == ["3", "2", "0", *[f"encoder.{n}" for n in reversed(convs)]]
    for fraction in (0.05, 0.3, 0.6):
        chosen = scope_layers(head, encoder, fraction)
        sizes = [sum(p.numel() for p in layer.parameters()) for layer in chosen.values()]
        assert sum(sizes[:-1]) < fraction * total <= sum(sizes) or len(chosen) == len(everything)
        assert list(chosen) == list(everything)[: len(chosen)]


def test_fraction_scope_modifies_encoder_convolutions_after_a_stage(tiny_spec: ModelSpec) -> None:
    torch.manual_seed(0)
    method = make_method(tiny_spec, gm_scope="fraction", gm_fraction=1.0, stage_epochs=[1])
    model = method.build()
    batches = [make_batch(seed=i) for i in range(2)]
    method.build_matrices(model, "audio", batches)
    assert any(name.startswith("encoder.") for name in method.matrices["audio"])
    ctx = make_context(method, model, epoch=1)
    method.on_epoch_start(ctx)
    logs = method.training_step(make_batch(seed=5), ctx)
    shared = [n for n in method.matrices["audio"] if n.startswith("encoder.") and "stem" not in n]
    assert logs["gm_layers"] == 3 + len(shared)


def test_non_finite_covariance_stops_with_one_line_naming_the_layer(tiny_spec: ModelSpec) -> None:
    """Diverged features (a NaN weight) give a NaN covariance; its SVD would fail with LAPACK's error."""
    torch.manual_seed(0)
    method = make_method(tiny_spec, stage_epochs=[1])
    model = method.build()
    with torch.no_grad():
        next(model.encoders["audio"].parameters()).fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"audio's layer '\S+' is not finite.*diverged"):
        method.build_matrices(model, "audio", [make_batch(seed=0)])


# --- stages --------------------------------------------------------------------------------------
def test_stage_schedule_cycles_lengths_and_modalities() -> None:
    order = [stage_at(e, [1, 2], ["audio", "video"]).modality for e in range(7)]
    assert order == ["audio", "video", "video", "audio", "video", "video", "audio"]
    three = [stage_at(e, [2], ["a", "b", "c"]) for e in range(7)]
    assert [s.modality for s in three] == ["a", "a", "b", "b", "c", "c", "a"]
    assert (three[5].index, three[5].first, three[5].last) == (2, 4, 5)


def test_one_step_trains_only_the_stage_modality(tiny_spec: ModelSpec) -> None:
    torch.manual_seed(0)
    method = make_method(tiny_spec, stage_epochs=[1])
    model = method.build()
    received: set[str] = set()
    for epoch, trained in ((0, "audio"), (1, "video")):
        ctx = make_context(method, model, epoch)
        method.on_epoch_start(ctx)
        method.training_step(make_batch(), ctx)
        for name, p in model.named_parameters():
            is_trained = name.startswith((f"encoders.{trained}.", f"fusion.heads.{trained}."))
            assert p.requires_grad == is_trained and (p.grad is not None) == is_trained, name
            if p.grad is not None:
                received.add(name)
    assert received == {n for n, _ in model.named_parameters()}


class ListBatches:
    def __init__(self, batches: list) -> None:
        self.batches = batches

    def epoch(self, epoch: int = 0) -> list:
        return self.batches


def test_stage_end_builds_matrices_used_in_the_next_stage(tiny_spec: ModelSpec) -> None:
    torch.manual_seed(0)
    method = make_method(tiny_spec, stage_epochs=[1])
    model = method.build()
    data = {"train": ListBatches([make_batch(4, seed=s) for s in range(3)])}
    ctx = make_context(method, model, 0, data)
    method.on_epoch_start(ctx)
    method.training_step(make_batch(), ctx)
    logs = method.on_epoch_end(ctx, {})
    assert set(method.matrices) == {"audio"} and set(method.matrices["audio"]) == {"0", "2", "3"}
    assert {"sv_audio_0_max", "sv_audio_2_mean", "sv_audio_3_max"} <= set(logs)
    fresh = make_method(tiny_spec, stage_epochs=[1])
    fresh.load_state_dict(method.state_dict())
    assert all(torch.equal(fresh.matrices["audio"][n], t) for n, t in method.matrices["audio"].items())
    ctx = make_context(method, model, 1, data)
    method.on_epoch_start(ctx)
    assert method.training_step(make_batch(), ctx)["gm_layers"] == 3.0


def test_weight_fusion_favours_the_confident_modality(tiny_spec: ModelSpec) -> None:
    method = make_method(tiny_spec, fusion_rule="weight")
    confident, flat = torch.tensor([[8.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.1, 0.0]])
    fused = method.predict(ModelOutput({}, FusionOutput(None, {"audio": confident, "video": flat})))["fused"]
    average = (confident.softmax(1) + flat.softmax(1)) / 2
    assert torch.allclose(fused.sum(1), torch.ones(1)) and fused[0, 0] > average[0, 0]


# --- the code's stage restarts: schedule and best-checkpoint reload --------------------------------
def test_schedule_restart_returns_to_the_initial_rate_and_counts_afresh() -> None:
    from mmbalance.engine.optim import Schedule

    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    schedule = Schedule(optimizer, {"name": "step", "step_size": 2, "gamma": 0.1})
    for _ in range(3):
        optimizer.step()
        schedule.step(0.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    schedule.restart()
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(2):
        optimizer.step()
        schedule.step(0.0)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.1, 0.1, 0.01])


def evaluation_with(f1_val: float, f1_test: float) -> dict:
    return {"val": {"fused": {"macro_f1": f1_val}}, "test": {"fused": {"macro_f1": f1_test}}}


@pytest.mark.parametrize("split", ["val", "test"])
def test_stage_start_reloads_the_best_epoch_on_the_chosen_split(tiny_spec: ModelSpec, split: str) -> None:
    torch.manual_seed(0)
    method = make_method(tiny_spec, stage_epochs=[2], reload_best=split, gm_scope="off")
    model = method.build()
    ctx = make_context(method, model, epoch=0)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    method.on_epoch_end(ctx, evaluation_with(0.6, 0.2) if split == "val" else evaluation_with(0.2, 0.6))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ctx.epoch = 1
    method.on_epoch_end(ctx, evaluation_with(0.5, 0.5))  # worse on the chosen split: not kept
    ctx.epoch = 2  # first epoch of stage 1
    logs = method.on_epoch_start(ctx)
    assert logs["reloaded"] == 1.0
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best.items())
    fresh = make_method(tiny_spec, stage_epochs=[2], reload_best=split, gm_scope="off")
    fresh.load_state_dict(method.state_dict())
    assert fresh.best_f1 == 0.6
    assert all(torch.equal(fresh.best_weights[k], v) for k, v in best.items())


def test_reload_off_and_schedule_restart_at_stage_start(tiny_spec: ModelSpec) -> None:
    from mmbalance.engine.optim import Schedule

    method = make_method(tiny_spec, stage_epochs=[2], restart_schedule=True)
    model = method.build()
    ctx = make_context(method, model, epoch=0)
    ctx.schedule = Schedule(ctx.optimizer, {"name": "step", "step_size": 1, "gamma": 0.5})
    method.on_epoch_end(ctx, evaluation_with(0.9, 0.9))
    assert method.best_weights is None
    ctx.optimizer.step()
    ctx.schedule.step(0.0)
    ctx.epoch = 1
    assert "reloaded" not in method.on_epoch_start(ctx)
    assert ctx.optimizer.param_groups[0]["lr"] == pytest.approx(0.005)  # inside stage 0: no restart
    ctx.optimizer.step()
    ctx.schedule.step(0.0)
    ctx.epoch = 2
    method.on_epoch_start(ctx)
    assert ctx.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)

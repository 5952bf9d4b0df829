"""LFM (methods.md §A1): losses against independent references, every α schedule, the CG
hyper-gradient against finite differences of a closed-form bilevel problem, the released α rule,
and α in history.csv and across a resume."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance import config, paths
from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.checkpoint import save_checkpoint
from mmbalance.engine.loop import CHECKPOINT, Trainer
from mmbalance.engine.optim import build_optimizer
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.methods import _lfm_schedules as schedules
from mmbalance.methods._hypergrad import STOP_REASONS, conjugate_gradient, hypergradient
from mmbalance.methods._lfm_losses import info_nce, js_code, pairwise_mean
from mmbalance.methods.lfm import code_hvp_mean
from mmbalance.registry import METHODS
from tests.conftest import make_batch


# --- losses -----------------------------------------------------------------------------------
def info_nce_reference(z_j: torch.Tensor, z_l: torch.Tensor, tau: float) -> float:
    """The paper's L_MM written as its double sum, one scalar at a time."""
    n = z_j.shape[0]

    def s(r: int, k: int) -> float:
        a, b = z_j[r].tolist(), z_l[k].tolist()
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
            sum(x * x for x in a) * sum(y * y for y in b)
        )

    total = 0.0
    for r in range(n):
        row = math.log(math.exp(s(r, r) / tau) / sum(math.exp(s(r, k) / tau) for k in range(n)))
        col = math.log(math.exp(s(r, r) / tau) / sum(math.exp(s(k, r) / tau) for k in range(n)))
        total += row + col
    return -total / (2 * n)


def test_info_nce_matches_reference_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    z_a, z_v = (
        torch.randn(5, 4, generator=gen, dtype=torch.float64),
        torch.randn(5, 4, generator=gen).double(),
    )
    for tau in (0.1, 0.5):
        assert float(info_nce(z_a, z_v, tau)) == pytest.approx(info_nce_reference(z_a, z_v, tau), rel=1e-9)


def test_info_nce_is_symmetric_and_rewards_alignment() -> None:
    gen = torch.Generator().manual_seed(1)
    z_a = torch.randn(8, 6, generator=gen)
    z_v = z_a + 0.1 * torch.randn(8, 6, generator=gen)
    assert float(info_nce(z_a, z_v, 0.1)) == pytest.approx(float(info_nce(z_v, z_a, 0.1)), rel=1e-6)
    shuffled = z_v[torch.randperm(8, generator=gen)]
    assert float(info_nce(z_a, z_v, 0.1)) < float(info_nce(z_a, shuffled, 0.1))


def softmax_np(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def kl_np(p: np.ndarray, q: np.ndarray) -> float:
    """Batch mean of KL(p‖q) row by row."""
    return float(np.mean(np.sum(p * np.log(p / q), axis=1)))


def test_js_code_matches_its_formula() -> None:
    rng = np.random.default_rng(0)
    o_a, o_v = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    p_a, p_v = softmax_np(o_a), softmax_np(o_v)
    m = 0.5 * (p_a + p_v)
    expected = 0.5 * kl_np(m, p_a) + 0.5 * kl_np(m, p_v)
    assert float(js_code(torch.from_numpy(o_a), torch.from_numpy(o_v))) == pytest.approx(expected, rel=1e-9)
    assert float(js_code(torch.from_numpy(o_a), torch.from_numpy(o_a))) == pytest.approx(0.0, abs=1e-12)


def test_js_code_is_not_the_textbook_js() -> None:
    """Crafted distributions (one near one-hot) where KL(m‖p) and KL(p‖m) differ clearly."""
    o_a = np.array([[8.0, 0.0, 0.0]])
    o_v = np.array([[0.0, 0.0, 0.0]])
    p_a, p_v = softmax_np(o_a), softmax_np(o_v)
    m = 0.5 * (p_a + p_v)
    textbook = 0.5 * kl_np(p_a, m) + 0.5 * kl_np(p_v, m)
    code = float(js_code(torch.from_numpy(o_a), torch.from_numpy(o_v)))
    assert code == pytest.approx(0.5 * kl_np(m, p_a) + 0.5 * kl_np(m, p_v), rel=1e-9)
    assert abs(code - textbook) > 0.1


def test_pairwise_mean_over_three_modalities() -> None:
    x = {"a": torch.tensor(1.0), "b": torch.tensor(2.0), "c": torch.tensor(4.0)}
    mean = pairwise_mean(x, lambda u, v: (u - v).abs())
    assert float(mean) == pytest.approx((1 + 3 + 2) / 3)


# --- schedules ---------------------------------------------------------------------------------
def test_heuristic_schedule() -> None:
    values = [schedules.heuristic(e) for e in (0, 1, 4, 9, 49)]
    assert values == pytest.approx([0.632, 0.393, 0.181, 0.0952, 0.0198], abs=5e-4)


def test_code_poly5_schedule() -> None:
    expected = {0: 0.795, 10: 0.752, 20: 0.699, 50: 0.563, 80: 0.500, 100: 0.461, 140: 0.258, 160: 0.099}
    for epoch, value in expected.items():
        assert schedules.code_poly5(epoch) == pytest.approx(value, abs=1e-3), epoch
    negative = [e for e in range(200) if schedules.code_poly5(e) < 0]
    assert negative == list(range(177, 189))
    assert min(schedules.code_poly5(e) for e in range(200)) == pytest.approx(-0.0105, abs=5e-4)
    assert schedules.code_poly5(183) == min(schedules.code_poly5(e) for e in range(200))


def test_cubic_schedule_on_normalised_axis() -> None:
    """31 epochs with horizon 30: t' = epoch; ω̂(0) = 1, ω̂(10) = 0.82, ω̂(20) = 0.24, clipped above 1."""
    assert schedules.cubic(0, 31, 30.0) == 1.0
    assert schedules.cubic(1, 31, 30.0) == 1.0  # ω̂(1) = 1.0257, clipped
    assert schedules.cubic(10, 31, 30.0) == pytest.approx(0.82)
    assert schedules.cubic(20, 31, 30.0) == pytest.approx(0.24)
    assert schedules.cubic(30, 31, 30.0) == pytest.approx(4.05 - 5.85 + 0.96 + 1)
    assert schedules.cubic(5, 11, 30.0) == pytest.approx(schedules.cubic(15, 31, 30.0))
    assert all(0.0 <= schedules.cubic(e, 200, 50.0) <= 1.0 for e in range(200))


def test_stepwise_schedule() -> None:
    assert [schedules.stepwise(e, 4, 0.05) for e in range(4)] == pytest.approx([0.05, 0.05, 0.95, 0.95])
    assert [schedules.stepwise(e, 5, 1.0) for e in range(5)] == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_code_alpha_lr_halves_every_20_epochs() -> None:
    assert [schedules.code_alpha_lr(1e-4, e) for e in (0, 19, 20, 39, 40, 60)] == pytest.approx(
        [1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 1.25e-5]
    )


def method(name: str, spec: ModelSpec, **options):
    cls = METHODS.get(name)
    return cls(config.typed_options(cls.Options(), options, f"methods.{name}"), spec)


def context(m, epoch: int, num_epochs: int = 10, data=None) -> Context:
    model = m.build()
    optimizer = build_optimizer(model.parameters(), {"name": "sgd", "lr": 0.01})
    return Context(model, optimizer, epoch, num_epochs, 0, torch.device("cpu"), m.modalities, 3, data)


@pytest.mark.parametrize(
    ("options", "epoch", "expected"),
    [
        ({"schedule": "heuristic"}, 1, 1 - math.exp(-0.5)),
        ({"schedule": "constant", "p": 0.3}, 7, 0.3),
        ({"schedule": "stepwise", "p": 0.2}, 5, 0.8),
        ({"schedule": "code_poly5"}, 50, 0.563),
        ({"schedule": "cubic", "cubic_horizon": 9.0}, 9, 0.10935 - 0.5265 + 0.288 + 1),
    ],
)
def test_method_records_scheduled_alpha(
    tiny_spec: ModelSpec, options: dict, epoch: int, expected: float
) -> None:
    m = method("lfm", tiny_spec, **options)
    logs = m.on_epoch_start(context(m, epoch))
    assert logs == {"alpha": pytest.approx(expected, abs=1e-3)}
    assert m.state_dict() == {"alpha": logs["alpha"]}


def test_presets_differ_only_in_defaults(tiny_spec: ModelSpec) -> None:
    assert method("lfm_h", tiny_spec).options.schedule == "heuristic"
    assert method("lfm_lb", tiny_spec).options.schedule == "learned"
    code = method("lfm_code", tiny_spec).options
    assert (code.align_loss, code.fusion, code.loss_scale, code.schedule) == (
        "js_code",
        "logit_avg",
        2.0,
        "code_poly5",
    )


def test_logit_avg_loss_and_prediction(tiny_spec: ModelSpec) -> None:
    m = method("lfm_code", tiny_spec)
    ctx = context(m, 0)
    m.on_epoch_start(ctx)
    batch = make_batch()
    outputs = ctx.model(batch.inputs)
    o_a, o_v = outputs.modality["audio"], outputs.modality["video"]
    loss, logs = m.loss(outputs, batch, ctx)
    ce = torch.nn.functional.cross_entropy(0.5 * o_a + 0.5 * o_v, batch.labels)
    expected = 2 * ((1 - m.alpha) * ce + m.alpha * js_code(o_a, o_v))
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert logs["ce"] == pytest.approx(float(ce.detach()), rel=1e-6)
    assert torch.allclose(m.predict(outputs)["fused"], (0.5 * o_a + 0.5 * o_v).softmax(1))


# --- hyper-gradient ----------------------------------------------------------------------------
def test_conjugate_gradient_solves_spd_system_and_guards_negative_curvature() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    h = a @ a.t() + torch.eye(4, dtype=torch.float64)
    b = torch.randn(4, generator=gen, dtype=torch.float64)
    (x,), info = conjugate_gradient(lambda p: [h @ p[0]], [b], steps=4)
    assert torch.allclose(x, torch.linalg.solve(h, b))
    assert info.steps == 4 and STOP_REASONS[info.stop] in ("steps", "converged") and info.residual < 1e-6
    (damped,), _ = conjugate_gradient(lambda p: [h @ p[0]], [b], steps=4, damping=0.5)
    assert torch.allclose(damped, torch.linalg.solve(h + 0.5 * torch.eye(4, dtype=torch.float64), b))
    (fallback,), info = conjugate_gradient(lambda p: [-p[0]], [b], steps=4)
    assert torch.equal(fallback, b) and (info.steps, STOP_REASONS[info.stop], info.residual) == (
        0,
        "curvature",
        1.0,
    )
    _, info = conjugate_gradient(lambda p: [h @ p[0]], [b], steps=2)
    assert (info.steps, STOP_REASONS[info.stop]) == (2, "steps") and 0 < info.residual < 1
    (zero,), info = conjugate_gradient(lambda p: [h @ p[0]], [torch.zeros(4, dtype=torch.float64)], steps=4)
    assert torch.count_nonzero(zero) == 0 and (info.steps, STOP_REASONS[info.stop]) == (0, "converged")


def nonconvex_toy() -> tuple[torch.Tensor, torch.Tensor]:
    """An indefinite Hessian (eigenvalues 3, 2, 1 and −0.5, as a non-convex inner loss early in
    training) in a random orthonormal basis, and the right-hand side's direction."""
    gen = torch.Generator().manual_seed(3)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    h = q @ torch.diag(torch.tensor([3.0, 2.0, 1.0, -0.5], dtype=torch.float64)) @ q.t()
    return h, torch.randn(4, generator=gen, dtype=torch.float64)


def test_damping_makes_the_solve_on_a_nonconvex_toy_stable() -> None:
    """Undamped CG on an indefinite H stops at the negative curvature, and its truncated iterate jumps
    when the right-hand side turns a little (the α-gradient jumping between epochs); with λ = 1 above
    |λ_min| = 0.5 every solve runs to (H + λI)⁻¹b, and nearby right-hand sides give nearby solutions
    (Lipschitz with ‖(H + λI)⁻¹‖ = 2)."""
    h, b = nonconvex_toy()
    eye = torch.eye(4, dtype=torch.float64)
    turns = [b + 0.01 * k * torch.roll(b, 1) for k in range(101)]
    undamped = [conjugate_gradient(lambda p: [h @ p[0]], [v], steps=4) for v in turns]
    damped = [conjugate_gradient(lambda p: [h @ p[0]], [v], steps=4, damping=1.0) for v in turns]
    assert any(STOP_REASONS[info.stop] == "curvature" for _, info in undamped)
    for ((x,), info), v in zip(damped, turns, strict=True):
        assert STOP_REASONS[info.stop] != "curvature" and info.steps >= 3
        torch.testing.assert_close(x, torch.linalg.solve(h + eye, v))

    def largest_jump(solves: list) -> float:
        """The largest change of the solution per unit change of the right-hand side between neighbours."""
        return max(
            float((x1 - x0).norm() / (v1 - v0).norm())
            for ((x0,), _), ((x1,), _), v0, v1 in zip(solves, solves[1:], turns, turns[1:], strict=False)
        )

    assert largest_jump(damped) <= 2.0 + 1e-9
    assert largest_jump(undamped) > 20 * largest_jump(damped)


def test_hypergradient_matches_finite_differences() -> None:
    """Quadratic L_CLS, L_MM, L_val: θ*(α) solves a linear system, so dL_val(θ*(α))/dα is checkable."""
    gen = torch.Generator().manual_seed(0)
    n = 5

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    a, y, b, c, v, d = rand(8, n), rand(8), rand(6, n), rand(6), rand(7, n), rand(7)
    ridge = 0.1

    def l_cls(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((a @ t - y) ** 2).sum() + 0.5 * ridge * (t**2).sum()

    def l_mm(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((b @ t - c) ** 2).sum()

    def l_val(t: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((v @ t - d) ** 2).sum()

    def theta_star(alpha: float) -> torch.Tensor:
        eye = torch.eye(n, dtype=torch.float64)
        h = (1 - alpha) * (a.t() @ a + ridge * eye) + alpha * b.t() @ b
        return torch.linalg.solve(h, (1 - alpha) * a.t() @ y + alpha * b.t() @ c)

    alpha0, step = 0.3, 1e-5
    theta = theta_star(alpha0).clone().requires_grad_(True)
    alpha = torch.tensor(alpha0, dtype=torch.float64, requires_grad=True)
    inner = (1 - alpha) * l_cls(theta) + alpha * l_mm(theta)
    grad, info = hypergradient(inner, l_val(theta), [theta], alpha, steps=n)
    assert info.steps <= n and STOP_REASONS[info.stop] != "curvature"
    numeric = (float(l_val(theta_star(alpha0 + step))) - float(l_val(theta_star(alpha0 - step)))) / (2 * step)
    assert float(grad) == pytest.approx(numeric, rel=1e-6)
    assert abs(numeric) > 1e-3


def test_code_hvp_mean_on_crafted_quadratic() -> None:
    """L_cls = ½a‖w‖², L_mm = ½b‖w‖²: H·∇L_cls = ((1−α)a + αb)·a·w on w; the second tensor is ignored."""
    w = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64, requires_grad=True)
    u = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    a_coef, b_coef, alpha = 2.0, 5.0, 0.25
    cls = 0.5 * a_coef * (w**2).sum() + 10 * (u**2).sum()
    mm = 0.5 * b_coef * (w**2).sum() + 7 * (u**4).sum()
    expected = ((1 - alpha) * a_coef + alpha * b_coef) * a_coef * w.detach().mean()
    assert code_hvp_mean(cls, mm, [w, u], alpha) == pytest.approx(float(expected), rel=1e-12)


def tiny_splits(spec_batch_size: int = 4) -> dict[str, SplitBatches]:
    batch = make_batch(batch_size=10, seed=2)
    arrays = {m: x.numpy() for m, x in batch.inputs.items()}
    labels = batch.labels.numpy()
    return {
        "train": SplitBatches(arrays, labels, spec_batch_size, torch.device("cpu"), shuffle=True, seed=0),
        "val": SplitBatches(arrays, labels, spec_batch_size, torch.device("cpu")),
    }


def model_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_learned_code_rule_moves_alpha_by_lr_times_hvp_mean(tiny_spec: ModelSpec) -> None:
    torch.manual_seed(0)
    m = method(
        "lfm", tiny_spec, schedule="learned_code", align_loss="js_code", fusion="logit_avg", alpha_lr=1e-3
    )
    ctx = context(m, 20, data=tiny_splits())
    ctx.model.train()
    before = model_snapshot(ctx.model)
    logs = m.on_epoch_start(ctx)
    expected = min(max(0.95 - 5e-4 * logs["alpha_grad"], 0.05), 0.95)  # lr halved at epoch 20
    assert logs["alpha"] == pytest.approx(expected, rel=1e-12)
    assert logs["alpha_grad"] != 0.0
    assert all(mod.training for mod in ctx.model.modules())
    assert all(torch.equal(v, before[k]) for k, v in ctx.model.state_dict().items())  # BN stats untouched
    assert all(p.grad is None for p in ctx.model.parameters())
    big = method("lfm", tiny_spec, schedule="learned_code", alpha_lr=1e6)
    big.alpha = 0.5
    clipped = big.on_epoch_start(ctx)["alpha"]
    assert clipped in (0.05, 0.95)


def test_learned_alpha_follows_algorithm_1(tiny_spec: ModelSpec) -> None:
    torch.manual_seed(0)
    m = method("lfm_lb", tiny_spec, alpha_lr=0.5, alpha_init=0.6)
    ctx = context(m, 0, data=tiny_splits())
    assert m.on_epoch_start(ctx) == {"alpha": 0.6}  # no update before the first inner loop
    ctx.epoch = 1
    logs = m.on_epoch_start(ctx)
    assert math.isfinite(logs["alpha_grad"]) and logs["alpha_grad"] != 0.0
    assert logs["alpha"] == pytest.approx(min(max(0.6 - 0.5 * logs["alpha_grad"], 0.0), 1.0))
    assert set(logs) == {"alpha", "alpha_grad", "cg_steps", "cg_stop", "cg_residual"}
    assert 0 <= logs["cg_steps"] <= m.options.cg_steps and STOP_REASONS[int(logs["cg_stop"])]
    again = method("lfm_lb", tiny_spec, alpha_lr=0.5, alpha_init=0.6)
    assert again.on_epoch_start(ctx) == logs  # deterministic: fixed batches, eval-mode passes


def batch_norm_modes_during(m, ctx: Context) -> tuple[set[bool], bool]:
    """The BatchNorm modes seen by the held-out passes of ``on_epoch_start`` and whether their running
    statistics moved; the modules' modes afterwards must be those before."""
    seen: set[bool] = set()
    norms = [mod for mod in ctx.model.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    handles = [bn.register_forward_pre_hook(lambda mod, _: seen.add(mod.training)) for bn in norms]
    before = model_snapshot(ctx.model)
    modes = [mod.training for mod in ctx.model.modules()]
    m.on_epoch_start(ctx)
    for handle in handles:
        handle.remove()
    assert [mod.training for mod in ctx.model.modules()] == modes
    moved = any(not torch.equal(v, before[k]) for k, v in ctx.model.state_dict().items() if "running" in k)
    return seen, moved


@pytest.mark.parametrize(
    ("mode", "epoch", "training"),
    [
        ("eval", 0, False),
        ("eval", 3, False),
        ("code", 0, True),
        ("code", 1, False),
        ("code", 7, False),
        ("train", 0, True),
        ("train", 5, True),
    ],
)
def test_held_out_mode(tiny_spec: ModelSpec, mode: str, epoch: int, training: bool) -> None:
    """``code`` = Crema_epoch_learnable.py: train mode at epoch 0 (the fresh model, BatchNorm running
    statistics updated by the 8 samples), eval mode from epoch 1 (the mode validation left);
    ``train`` = BalanceBenchmark; ``eval`` (default) never updates the statistics."""
    torch.manual_seed(0)
    for schedule in ("learned_code", "learned"):
        if schedule == "learned" and epoch == 0:
            continue  # Algorithm 1: no α step before the first inner loop
        m = method("lfm", tiny_spec, schedule=schedule, held_out_mode=mode)
        ctx = context(m, epoch, data=tiny_splits())
        ctx.model.eval()  # the loop's state after an epoch's evaluation: the mode must not depend on it
        seen, moved = batch_norm_modes_during(m, ctx)
        assert seen == {training} and moved == training, schedule
        ctx.model.train()
        assert batch_norm_modes_during(m, ctx)[0] == {training}, schedule


# --- features of different widths ---------------------------------------------------------------
def unequal_spec(tiny_spec: ModelSpec) -> ModelSpec:
    """Audio 32-d (resnet10 width 4), video 64-d (width 8), as ResNet50's 2048-d next to BERT's 768-d."""
    encoders = {**tiny_spec.encoders, "video": {"name": "resnet10", "width": 8}}
    return ModelSpec(tiny_spec.modalities, encoders, tiny_spec.num_classes)


def test_infonce_projects_the_wider_features_to_the_narrowest_width(tiny_spec: ModelSpec) -> None:
    torch.manual_seed(0)
    m = method("lfm_h", unequal_spec(tiny_spec))
    ctx = context(m, 1)
    projection = ctx.model.matching_projections["video"]
    assert isinstance(ctx.model.matching_projections["audio"], torch.nn.Identity)
    assert isinstance(projection, torch.nn.Linear) and projection.bias is None
    assert tuple(projection.weight.shape) == (32, 64)
    m.on_epoch_start(ctx)
    batch = make_batch()
    outputs = ctx.model(batch.inputs)
    z_a, z_v = outputs.features["audio"], outputs.features["video"]
    loss, logs = m.loss(outputs, batch, ctx)
    expected = info_nce(z_a, z_v @ projection.weight.t(), 0.1)
    assert logs["mm"] == pytest.approx(float(expected.detach()), rel=1e-6)
    loss.backward()
    assert projection.weight.grad is not None and torch.count_nonzero(projection.weight.grad) > 0
    assert ctx.model.fusion.dims == {"audio": 32, "video": 64}  # the classifier reads the raw features
    # the paper's hyper-gradient runs with the projection among the parameters
    lb = method("lfm_lb", unequal_spec(tiny_spec), alpha_lr=0.1)
    lb_ctx = context(lb, 1, data=tiny_splits())
    assert math.isfinite(lb.on_epoch_start(lb_ctx)["alpha_grad"])


def test_equal_widths_and_the_code_loss_add_no_projection(tiny_spec: ModelSpec) -> None:
    for name, spec in (("lfm_h", tiny_spec), ("lfm_code", unequal_spec(tiny_spec))):
        model = method(name, spec).build()
        assert not hasattr(model, "matching_projections"), name
        assert not any("projection" in key for key in model.state_dict()), name


# --- α in history and across a resume ----------------------------------------------------------
def history(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def test_alpha_in_history_and_kept_by_resume(tiny_workspace: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    params = config.load_params(tiny_workspace)
    params["train"]["embedded"]["synthav"]["methods"]["lfm_lb"] = {"alpha_lr": 0.5, "alpha_init": 0.5}
    resolved = paths.resolve_run(params, "synthav", "lfm_lb", 0)
    features = paths.feature_dir(params, "synthav")
    Trainer(resolved, features, tmp_path / "full", device="cpu").fit(progress=False)
    full = history(tmp_path / "full" / "history.csv")
    alphas = [float(row["alpha"]) for row in full]
    assert alphas[0] == 0.5 and len(set(alphas)) == 3
    assert full[0]["alpha_grad"] == "" and float(full[1]["alpha_grad"]) != 0.0

    partial = Trainer(resolved, features, tmp_path / "resumed", device="cpu")
    for epoch in range(2):
        partial.history.append(partial.run_epoch(epoch))
        save_checkpoint(tmp_path / "resumed" / CHECKPOINT, partial.state(epoch))
    resumed = Trainer(resolved, features, tmp_path / "resumed", device="cpu")
    resumed.fit(progress=False)
    assert resumed.method.alpha == pytest.approx(alphas[-1], abs=0)
    assert history(tmp_path / "resumed" / "history.csv") == full

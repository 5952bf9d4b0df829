"""ReconBoost: reconcilement loss, GA term, stage/phase schedule, per-phase parameters, resume (§B18)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance.config import typed_options
from mmbalance.engine.optim import build_optimizer
from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.errors import ConfigError
from mmbalance.methods.reconboost import ReconBoost, consolidation_loss, phase_at, reconcilement_loss
from tests.conftest import make_batch
from tests.resume_check import train_killed_and_resumed


def make_method(spec: ModelSpec, **options) -> ReconBoost:
    return ReconBoost(typed_options(ReconBoost.Options(), options, "methods.reconboost"), spec)


def setup(spec: ModelSpec, epoch: int, seed: int = 0, **options):
    torch.manual_seed(seed)
    method = make_method(spec, **options)
    model = method.build()
    optimizer = build_optimizer(method.param_groups(model), {"name": "sgd", "lr": 0.05, "momentum": 0.9})
    ctx = Context(model, optimizer, epoch, 16, 0, torch.device("cpu"), method.modalities, spec.num_classes)
    method.on_epoch_start(ctx)
    return method, model, ctx


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# --- losses --------------------------------------------------------------------------------------
def test_reconcilement_loss_by_hand() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 1.0]])
    rest = np.array([[1.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    y = np.array([0, 2])
    p, q = softmax(logits), softmax(rest)
    w1, w2, classes = 5.0, 1.0, 3
    rows = [(-w1 * np.log(p[i, y[i]]) + w2 * q[i, y[i]] * np.log(p[i, y[i]])) / classes for i in range(2)]
    got = reconcilement_loss(torch.tensor(logits), torch.tensor(rest), torch.tensor(y), w1, w2)
    assert float(got) == pytest.approx(np.mean(rows))
    # empty ensemble: the code's scalar c0 has softmax 1, so the loss is −(w1 − w2)·mean_k y log p
    empty = reconcilement_loss(torch.tensor(logits), None, torch.tensor(y), w1, w2)
    assert float(empty) == pytest.approx(
        np.mean([-(w1 - w2) * np.log(p[i, y[i]]) / classes for i in range(2)])
    )


def test_reconcilement_gradient_ignores_the_rest_of_the_ensemble() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    rest = torch.randn(4, 3, requires_grad=True)
    reconcilement_loss(logits, rest, torch.tensor([0, 1, 2, 0]), 5.0, 1.0).backward()
    assert rest.grad is None and logits.grad is not None


def test_consolidation_gradient_by_hand() -> None:
    """``on``: ∂MSE(softmax(g), softmax(g'))/∂g = J_softmax(g)ᵀ · 2(p − p')/(B·C); ``off``: no graph."""
    torch.manual_seed(0)
    logits = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    previous = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    consolidation_loss(logits, previous, "on").backward()
    p, t = softmax(logits.detach().numpy()), softmax(previous.detach().numpy())
    for i in range(2):
        jacobian = np.diag(p[i]) - np.outer(p[i], p[i])
        assert np.allclose(logits.grad[i].numpy(), jacobian.T @ (2 * (p[i] - t[i]) / 6))
    assert previous.grad is None
    off = consolidation_loss(logits, previous, "off")
    assert not off.requires_grad and float(off) == pytest.approx(float(((p - t) ** 2).mean()))


# --- schedule ------------------------------------------------------------------------------------
def test_phase_schedule() -> None:
    modalities = ["audio", "video"]
    phases = [phase_at(e, 4, 4, modalities) for e in range(16)]
    assert [p.stage for p in phases] == [0] * 8 + [1] * 8
    assert [p.modality for p in phases] == ["audio"] * 8 + ["video"] * 8
    assert [p.kind for p in phases] == (["boost"] * 4 + ["correct"] * 4) * 2
    assert [p.first for p in phases] == [0] * 4 + [4] * 4 + [8] * 4 + [12] * 4
    short = [phase_at(e, 1, 1, ["rgb", "depth", "flow"]) for e in range(8)]
    assert [(p.stage, p.modality, p.kind) for p in short] == [
        (0, "rgb", "boost"),
        (0, "rgb", "correct"),
        (1, "depth", "boost"),
        (1, "depth", "correct"),
        (2, "flow", "boost"),
        (2, "flow", "correct"),
        (3, "rgb", "boost"),
        (3, "rgb", "correct"),
    ]
    assert [phase_at(e, 2, 0, modalities).modality for e in range(5)] == ["audio"] * 2 + ["video"] * 2 + [
        "audio"
    ]


# --- exact parameters per phase ------------------------------------------------------------------
def changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


@pytest.mark.parametrize(
    ("epoch", "trained"),
    [
        (0, {"encoders.audio", "fusion.head"}),  # stage 0 boosting: audio
        (
            4,
            {"encoders.audio", "fusion.head", "fusion.boost_rate"},
        ),  # stage 0 rectification: video not in yet
        (8, {"encoders.video", "fusion.head"}),  # stage 1 boosting: video
        (12, {"encoders.audio", "encoders.video", "fusion.head", "fusion.boost_rate"}),
    ],
)
def test_each_phase_updates_exactly_its_parameters(
    tiny_spec: ModelSpec, epoch: int, trained: set[str]
) -> None:
    method, model, ctx = setup(tiny_spec, epoch)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    method.training_step(make_batch(), ctx)

    def group(name: str) -> str:
        return next(
            g
            for g in ("encoders.audio", "encoders.video", "fusion.head", "fusion.boost_rate")
            if name.startswith(g)
        )

    with_grad = {group(n) for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == trained
    assert {group(n) for n in changed(before, model)} == trained
    untouched = [n for n, p in model.named_parameters() if group(n) not in trained]
    assert all(torch.equal(before[n], dict(model.named_parameters())[n].detach()) for n in untouched)


@pytest.mark.parametrize(
    ("epoch", "trained"),
    [
        (0, {"encoders.audio", "fusion.head"}),
        (8, {"encoders.video", "fusion.projections.video", "fusion.head"}),
        (
            12,
            {
                "encoders.audio",
                "encoders.video",
                "fusion.projections.video",
                "fusion.head",
                "fusion.boost_rate",
            },
        ),
    ],
)
def test_a_wider_modality_trains_its_projection_with_its_encoder(
    tiny_spec: ModelSpec, epoch: int, trained: set[str]
) -> None:
    """Video 64-d next to audio 32-d: the shared head reads video through a learned 64 → 32 projection,
    trained in the phases that train the video encoder."""
    spec = ModelSpec(
        tiny_spec.modalities, {**tiny_spec.encoders, "video": {"name": "resnet10", "width": 8}}, 3
    )
    method, model, ctx = setup(spec, epoch)
    assert tuple(model.fusion.projections["video"].weight.shape) == (32, 64)
    method.training_step(make_batch(), ctx)
    groups = (
        "encoders.audio",
        "encoders.video",
        "fusion.projections.video",
        "fusion.head",
        "fusion.boost_rate",
    )
    with_grad = {
        next(g for g in groups if n.startswith(g)) for n, p in model.named_parameters() if p.grad is not None
    }
    assert with_grad == trained


def test_boosting_loss_uses_the_rest_of_the_ensemble(tiny_spec: ModelSpec) -> None:
    """Stage 1 (video): the logged reconcilement loss is the hand formula with ``F_{−v} = β g_a``."""
    method, model, ctx = setup(tiny_spec, epoch=8, alpha=0.0)
    with torch.no_grad():
        model.fusion.boost_rate.fill_(1.7)
    batch = make_batch()
    reference = copy.deepcopy(model)
    with torch.no_grad():
        features = reference.encode(batch.inputs)
        g_v = reference.fusion.head(features["video"]).double().numpy()
        g_a = reference.fusion.head(features["audio"]).double().numpy()
    logs = method.training_step(batch, ctx)
    y = batch.labels.numpy()
    p, q = softmax(g_v), softmax(1.7 * g_a)
    rows = [(-5.0 * np.log(p[i, y[i]]) + q[i, y[i]] * np.log(p[i, y[i]])) / 3 for i in range(len(y))]
    assert logs["reconcile"] == pytest.approx(np.mean(rows), rel=1e-5)
    assert logs["loss"] == pytest.approx(logs["reconcile"])


def test_ga_off_gives_the_gradients_of_no_ga_term(tiny_spec: ModelSpec) -> None:
    batch = make_batch()
    runs = {}
    for name, options in {"off": {"ga": "off"}, "zero": {"alpha": 0.0}, "on": {"ga": "on"}}.items():
        method, model, ctx = setup(tiny_spec, epoch=8, **options)
        logs = method.training_step(batch, ctx)
        runs[name] = (logs, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert runs["off"][0]["consolidation"] > 0  # the term is there, but without gradient
    assert runs["off"][1].keys() == runs["zero"][1].keys()
    assert all(torch.equal(runs["off"][1][n], runs["zero"][1][n]) for n in runs["off"][1])
    assert any(not torch.equal(runs["on"][1][n], runs["zero"][1][n]) for n in runs["on"][1])


def test_fused_prediction_is_the_current_ensemble(tiny_spec: ModelSpec) -> None:
    batch = make_batch()
    for epoch, members in ((0, ["audio"]), (5, ["audio"]), (8, ["audio", "video"])):
        method, model, _ = setup(tiny_spec, epoch)
        model.eval()
        with torch.no_grad():
            outputs = model(batch.inputs)
            probs = method.predict(outputs)
        beta = model.fusion.boost_rate
        expected = (beta * sum(outputs.modality[m] for m in members)).softmax(1)
        assert torch.allclose(probs["fused"], expected)
        assert torch.allclose(probs["video"], outputs.modality["video"].softmax(1))


def test_optimizer_state_is_cleared_at_each_phase_start(tiny_spec: ModelSpec) -> None:
    method, _, ctx = setup(tiny_spec, epoch=0)
    method.training_step(make_batch(), ctx)
    assert ctx.optimizer.state
    for epoch, cleared in ((1, False), (4, True)):
        method.training_step(make_batch(), ctx)
        ctx.epoch = epoch
        method.on_epoch_start(ctx)
        assert (not ctx.optimizer.state) == cleared


def test_three_modalities_cycle_with_the_previous_stage_as_memory(tiny_spec: ModelSpec) -> None:
    """Stage 2 boosts the third modality against ``β(g_a + g_v)``; its GA target is ``g_v`` (stage 1)."""
    spec = ModelSpec(
        modalities={**tiny_spec.modalities, "depth": "frames"},
        encoders={**tiny_spec.encoders, "depth": tiny_spec.encoders["video"]},
        num_classes=tiny_spec.num_classes,
    )
    method, model, ctx = setup(spec, epoch=4, epochs_per_stage=1, correct_epochs=1)
    base = make_batch()
    batch = Batch({**base.inputs, "depth": base.inputs["video"].flip(0)}, base.labels, base.index)
    reference = copy.deepcopy(model)
    with torch.no_grad():
        g = {m: reference.fusion.head(z).double().numpy() for m, z in reference.encode(batch.inputs).items()}
    logs = method.training_step(batch, ctx)
    y = batch.labels.numpy()
    p, q = softmax(g["depth"]), softmax(g["audio"] + g["video"])  # β = 1
    rows = [(-5.0 * np.log(p[i, y[i]]) + q[i, y[i]] * np.log(p[i, y[i]])) / 3 for i in range(len(y))]
    assert logs["reconcile"] == pytest.approx(np.mean(rows), rel=1e-5)
    assert logs["consolidation"] == pytest.approx(((p - softmax(g["video"])) ** 2).mean(), rel=1e-5)
    with_grad = {name.split(".")[1] for name, w in model.named_parameters() if w.grad is not None}
    assert with_grad == {"depth", "head"}


def test_invalid_options(tiny_spec: ModelSpec) -> None:
    with pytest.raises(ConfigError, match="epochs_per_stage"):
        make_method(tiny_spec, epochs_per_stage=0)


# --- resume --------------------------------------------------------------------------------------
def test_training_resumes_mid_stage_bit_identical(
    tiny_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three epochs = stage 0 boosting (2 epochs, audio) then rectification; killed inside the boosting."""
    options = {"epochs_per_stage": 2, "correct_epochs": 1}
    rows = train_killed_and_resumed(
        tiny_workspace, tmp_path, monkeypatch, "reconboost", options, kill_after=0
    )
    assert [r["rectification"] for r in rows] == ["0.0", "0.0", "1.0"]
    assert rows[2]["train_ensemble_ce"] and not rows[0]["train_ensemble_ce"]

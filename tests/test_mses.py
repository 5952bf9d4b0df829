"""MSES: smoothing, the patience rule, frozen branches and the rollback (methods.md §B9)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmbalance.config import typed_options
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.methods.mses import MSES, smoothed_loss
from tests.conftest import make_batch
from tests.resume_check import train_killed_and_resumed


def setup(spec: ModelSpec, **options) -> tuple[MSES, torch.nn.Module, Context]:
    torch.manual_seed(0)
    method = MSES(typed_options(MSES.Options(), options, "mses"), spec)
    model = method.build()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    ctx = Context(model, optimizer, 0, 16, 0, torch.device("cpu"), method.modalities, spec.num_classes)
    return method, model, ctx


def evaluation(audio: float, video: float) -> dict:
    return {"val": {"audio": {"loss": audio}, "video": {"loss": video}}}


def test_smoothing_uses_the_previous_raw_loss(tiny_spec: ModelSpec) -> None:
    assert smoothed_loss(None, 2.0, 0.6) == 2.0
    assert smoothed_loss(1.5, 1.0, 0.6) == pytest.approx(0.6 * 1.5 + 0.4 * 1.0)
    method, _, ctx = setup(tiny_spec)
    raw = [1.0, 0.5, 0.9, 0.2]
    logged = []
    for epoch, loss in enumerate(raw):
        ctx.epoch = epoch
        logged.append(method.on_epoch_end(ctx, evaluation(loss, 1.0))["smoothed_val_loss_audio"])
    # L̃_3 = 0.6·L_2 + 0.4·L_3 = 0.62 (with the previous smoothed value it would be 0.6·0.66 + 0.4·0.2)
    assert logged == pytest.approx([1.0, 0.6 * 1.0 + 0.4 * 0.5, 0.6 * 0.5 + 0.4 * 0.9, 0.6 * 0.9 + 0.4 * 0.2])


def test_branch_stops_exactly_after_its_patience(tiny_spec: ModelSpec) -> None:
    """Raw audio losses 1.0, 0.8, 0.5, 0.7, 0.7, … smooth to 1.0, 0.92, 0.68, 0.58, 0.70, 0.70, 0.70:
    the minimum is at epoch 3 (not 2, the raw minimum), so with patience 3 audio stops at epoch 6 and
    trains no more from epoch 7. Video keeps improving and never stops."""
    method, _, ctx = setup(tiny_spec, patience=3)
    audio = [1.0, 0.8, 0.5, 0.7, 0.7, 0.7, 0.7, 0.7]
    stops, multipliers = [], []
    for epoch, loss in enumerate(audio):
        ctx.epoch = epoch
        multipliers.append(method.on_epoch_start(ctx)["multiplier_audio"])
        logs = method.on_epoch_end(ctx, evaluation(loss, 1.0 / (epoch + 1)))
        stops.append(logs["stopped_audio"])
        assert logs["stopped_video"] == 0.0
    assert logs["best_epoch_audio"] == 3.0
    assert stops == [0, 0, 0, 0, 0, 0, 1, 0]
    assert multipliers == [1, 1, 1, 1, 1, 1, 1, 0]
    assert "smoothed_val_loss_audio" not in logs  # a stopped modality is no longer tracked


def test_rollback_restores_the_best_epoch_snapshot_exactly(tiny_spec: ModelSpec) -> None:
    """Audio's best is epoch 0; it stops at epoch 1 and the whole model returns to epoch 0's weights."""
    method, model, ctx = setup(tiny_spec, patience=1)
    method.on_epoch_end(ctx, evaluation(1.0, 1.0))
    epoch_zero = {k: v.clone() for k, v in model.state_dict().items()}
    method.training_step(make_batch(seed=1), ctx)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    assert any(not torch.equal(trained[k], v) for k, v in epoch_zero.items())
    ctx.epoch = 1
    logs = method.on_epoch_end(ctx, evaluation(2.0, 0.5))
    assert logs["stopped_audio"] == 1.0 and logs["best_epoch_video"] == 1.0
    assert all(torch.equal(v, epoch_zero[k]) for k, v in model.state_dict().items())
    assert "audio" not in method.snapshots
    assert all(torch.equal(v, trained[k]) for k, v in method.snapshots["video"].items())


def test_stopped_branch_no_longer_changes(tiny_spec: ModelSpec) -> None:
    """SGD with momentum and weight decay: a merely zeroed gradient would still move the weights."""
    method, model, ctx = setup(tiny_spec, patience=1)
    method.training_step(make_batch(seed=5), ctx)  # momentum buffers for every parameter
    method.on_epoch_end(ctx, evaluation(1.0, 1.0))
    ctx.epoch = 1
    method.on_epoch_end(ctx, evaluation(2.0, 0.5))
    assert method.multipliers() == {"audio": 0.0, "video": 1.0}
    model.train()
    frozen = {k: v.clone() for k, v in model.state_dict().items() if ".audio." in k}
    video = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("encoders.video")}
    for seed in (6, 7):
        method.training_step(make_batch(seed=seed), ctx)
    state = model.state_dict()
    assert frozen and all(torch.equal(state[k], v) for k, v in frozen.items())  # incl. BatchNorm statistics
    assert any(not torch.equal(state[k], v) for k, v in video.items())


def test_all_stopped_steps_do_nothing(tiny_spec: ModelSpec) -> None:
    method, model, ctx = setup(tiny_spec, patience=1)
    method.on_epoch_end(ctx, evaluation(1.0, 1.0))
    ctx.epoch = 1
    method.on_epoch_end(ctx, evaluation(2.0, 2.0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logs = method.training_step(make_batch(), ctx)
    assert logs["loss"] > 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_training_stops_rolls_back_and_resumes_bit_identical(
    tiny_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Patience 1 on the tiny run: a branch stops at its first epoch without improvement. Killed after
    epoch 0, the resumed run must stop a branch and roll it back with the snapshot it loaded from the
    checkpoint (the histories, metrics and final states of both runs are compared by the helper)."""
    rows = train_killed_and_resumed(
        tiny_workspace,
        tmp_path,
        monkeypatch,
        "mses",
        {"patience": 1},
        kill_after=0,
        overrides=["train.embedded.synthav.epochs=4"],
    )
    stops = [(r["stopped_audio"], r["stopped_video"]) for r in rows]
    assert any(stop != ("0.0", "0.0") for stop in stops[1:]), (
        f"no branch stops after the kill, the snapshot is not exercised: {stops}"
    )

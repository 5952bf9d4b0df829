"""G-Blend (methods.md §B10): OGR weights, the blended loss, mean-loss estimates, isolation, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmbalance.config import typed_options
from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.copies import train_copy
from mmbalance.engine.seeding import configure_determinism
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.methods import gblend
from mmbalance.methods.gblend import GBlend, OGRLosses, blend_weights, mean_loss
from mmbalance.registry import FUSIONS
from tests.conftest import make_batch
from tests.resume_check import train_killed_and_resumed


def setup(spec: ModelSpec, data: dict | None = None, **options):
    configure_determinism(torch.device("cpu"))
    torch.manual_seed(0)
    method = GBlend(typed_options(GBlend.Options(), options, "methods.gblend"), spec)
    model = method.build()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ctx = Context(model, optimizer, 0, 3, 0, torch.device("cpu"), method.modalities, spec.num_classes, data)
    return method, model, ctx


def split(size: int, batch_size: int, seed: int, shuffle: bool = False) -> SplitBatches:
    batch = make_batch(size, seed=seed)
    arrays = {m: x.numpy() for m, x in batch.inputs.items()}
    return SplitBatches(
        arrays, batch.labels.numpy(), batch_size, torch.device("cpu"), shuffle=shuffle, seed=seed
    )


def data(val_batch_size: int = 4) -> dict[str, SplitBatches]:
    return {"train": split(12, 4, seed=1, shuffle=True), "val": split(9, val_batch_size, seed=2)}


def test_weights_follow_the_ogr_on_hand_set_losses() -> None:
    losses = {
        "audio": OGRLosses(train_start=1.0, val_start=1.2, train_end=0.2, val_end=0.9),  # ΔG .3, ΔO .5
        "video": OGRLosses(train_start=1.0, val_start=1.1, train_end=0.5, val_end=0.8),  # ΔG .3, ΔO .2
        "fused": OGRLosses(train_start=1.0, val_start=1.0, train_end=0.1, val_end=1.2),  # ΔG −.2, ΔO 1.1
    }
    assert losses["fused"].generalisation == pytest.approx(-0.2)
    assert losses["fused"].overfitting == pytest.approx(1.1)
    raw = {"audio": 0.3 / 0.5**2, "video": 0.3 / 0.2**2, "fused": 0.2 / 1.1**2}
    weights = blend_weights(losses)
    for k, r in raw.items():
        assert weights[k] == pytest.approx(r / sum(raw.values()))
    flat = OGRLosses(1.0, 1.0, 0.5, 1.0)
    assert blend_weights({"audio": flat, "fused": flat}) == {"audio": 0.5, "fused": 0.5}


def test_loss_is_the_weighted_sum_of_unimodal_and_fused_ce(tiny_spec: ModelSpec) -> None:
    method, model, ctx = setup(tiny_spec)
    method.weights = {"audio": 0.2, "video": 0.5, "fused": 0.3}
    batch = make_batch()
    outputs = model(batch.inputs)
    loss, logs = method.loss(outputs, batch, ctx)
    y = batch.labels
    expected = (
        0.2 * F.cross_entropy(outputs.modality["audio"], y)
        + 0.5 * F.cross_entropy(outputs.modality["video"], y)
        + 0.3 * F.cross_entropy(outputs.fused, y)
    )
    assert torch.allclose(loss, expected)
    assert logs["ce_fused"] == pytest.approx(float(F.cross_entropy(outputs.fused, y).detach()))


def test_unimodal_heads_are_independent_of_the_fused_head() -> None:
    fusion = FUSIONS.get("concat_heads")({"audio": 5, "video": 4}, 3)
    z = {"audio": torch.randn(6, 5, requires_grad=True), "video": torch.randn(6, 4, requires_grad=True)}
    out = fusion(z)
    assert torch.allclose(out.fused, fusion.fc(torch.cat([z["audio"], z["video"]], 1)))
    out.modality["audio"].sum().backward()
    assert (
        z["video"].grad is None
        and fusion.fc.weight.grad is None
        and fusion.heads["video"].weight.grad is None
    )


def test_mean_losses_do_not_depend_on_the_batch_size(tiny_spec: ModelSpec) -> None:
    _, model, _ = setup(tiny_spec)
    batch = make_batch(9, seed=2)
    model.eval()
    with torch.no_grad():
        whole = float(F.cross_entropy(model(batch.inputs).fused, batch.labels))
    for size in (2, 4, 9):
        assert mean_loss(model, "fused", split(9, size, seed=2).epoch()) == pytest.approx(whole, rel=1e-5)


def test_estimate_is_invariant_to_the_validation_batch_size(tiny_spec: ModelSpec) -> None:
    weights = []
    for size in (2, 9):
        method, _, ctx = setup(tiny_spec, data(val_batch_size=size), super_epoch=2)
        logs = method.on_epoch_start(ctx)
        weights.append(method.weights)
        assert {"ogr_gain_audio", "ogr_overfit_fused", "blend_weight_video"} <= set(logs)
    for k in weights[0]:
        assert weights[0][k] == pytest.approx(weights[1][k], rel=1e-4)
    assert sum(weights[0].values()) == pytest.approx(1.0)


def test_copies_train_one_output_and_leave_the_run_untouched(
    tiny_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audio copy moves only the audio branch; the model, its optimiser and the RNG stay as they were."""
    method, model, ctx = setup(tiny_spec, data(), super_epoch=1)
    copies = []

    def keep_copy(*args):
        copies.append(train_copy(*args))
        return copies[-1]

    monkeypatch.setattr(gblend, "train_copy", keep_copy)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    method.on_epoch_start(ctx)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng) and not ctx.optimizer.state
    audio_copy = dict(copies[0].named_parameters())
    for name, p in model.named_parameters():
        moved = not torch.equal(p, audio_copy[name])
        assert moved == name.startswith(("encoders.audio.", "fusion.heads.audio.")), name


def test_offline_estimates_once_online_every_super_epoch(tiny_spec: ModelSpec) -> None:
    offline, _, _ = setup(tiny_spec)
    online, _, _ = setup(tiny_spec, schedule="online", super_epoch=3)
    assert [e for e in range(8) if offline.estimate_due(e)] == [0]
    assert [e for e in range(8) if online.estimate_due(e)] == [0, 3, 6]


def test_online_training_records_weights_and_resumes_bit_identical(
    tiny_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"schedule": "online", "super_epoch": 1}
    rows = train_killed_and_resumed(tiny_workspace, tmp_path, monkeypatch, "gblend", options)
    for row in rows:
        weights = [float(row[f"blend_weight_{k}"]) for k in ("audio", "video", "fused")]
        assert sum(weights) == pytest.approx(1.0) and all(w >= 0 for w in weights)
        assert row["ogr_gain_fused"] != ""
    assert len({row["blend_weight_audio"] for row in rows}) > 1
    assert np.isfinite(float(rows[-1]["val_fused_loss"]))

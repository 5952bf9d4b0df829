"""Greedy (methods.md §B12): learning speeds and BDR, curation windows, running averages, resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmbalance.config import typed_options
from mmbalance.engine.optim import build_optimizer
from mmbalance.engine.seeding import configure_determinism
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.methods.greedy import Greedy, bdr_difference
from tests.conftest import NUM_CLASSES, make_batch
from tests.resume_check import train_killed_and_resumed


def setup(spec: ModelSpec, **options):
    configure_determinism(torch.device("cpu"))
    torch.manual_seed(0)
    method = Greedy(typed_options(Greedy.Options(), options, "methods.greedy"), spec)
    model = method.build()
    optimizer = build_optimizer(method.param_groups(model), {"name": "sgd", "lr": 0.01, "momentum": 0.9})
    return method, model, optimizer


def context(method: Greedy, model, optimizer, epoch: int = 1) -> Context:
    return Context(model, optimizer, epoch, 3, 0, torch.device("cpu"), method.modalities, NUM_CLASSES)


# Hand-set (weight, gradient) per parameter group: each element contributes g² and w².
HAND_SET = {
    "encoder_audio": (2.0, 0.2),
    "encoder_video": (1.0, 0.3),
    "squeeze": (1.0, 0.5),
    "excite_audio": (1.0, 0.1),
    "excite_video": (1.0, 0.2),
    "head_audio": (1.0, 0.4),
    "head_video": (3.0, 0.3),
    "shared_head": (5.0, 5.0),
}


def group_of(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "encoders":
        return f"encoder_{parts[1]}"
    if parts[0] == "mmtm":
        return "squeeze" if parts[2] == "squeeze" else f"excite_{parts[3]}"
    return f"head_{parts[2]}" if parts[1] == "heads" else "shared_head"


@pytest.mark.parametrize("head", ["concat", "branch_average"])
def test_speeds_and_bdr_from_hand_set_gradients(tiny_spec: ModelSpec, head: str) -> None:
    method, model, _ = setup(tiny_spec, head=head)
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        weight, grad = HAND_SET[group_of(name)]
        with torch.no_grad():
            p.fill_(weight)
        p.grad = torch.full_like(p, grad)
        counts[group_of(name)] = counts.get(group_of(name), 0) + p.numel()

    def ratio(*groups: str) -> float:
        g2 = sum(counts.get(k, 0) * HAND_SET[k][1] ** 2 for k in groups)
        w2 = sum(counts.get(k, 0) * HAND_SET[k][0] ** 2 for k in groups)
        return g2 / w2

    extra = ("head_{}",) if head == "branch_average" else ()
    main = {m: ratio(f"encoder_{m}", *(e.format(m) for e in extra)) for m in ("audio", "video")}
    bypass = {m: ratio("squeeze", f"excite_{m}") for m in ("audio", "video")}
    if head == "concat":
        assert main["audio"] == pytest.approx(0.2**2 / 2.0**2)
    d = method.accumulate(model)
    d = method.accumulate(model)  # accumulated: both speeds double, the ratios stay
    for m in ("audio", "video"):
        assert method.speeds["main"][m] == pytest.approx(2 * main[m])
        assert method.speeds["bypass"][m] == pytest.approx(2 * bypass[m])
    bdr = {m: math.log10(bypass[m] / main[m]) for m in ("audio", "video")}
    assert d == pytest.approx(bdr["audio"] - bdr["video"])
    logs = method.on_epoch_end(context(method, model, None), {})
    assert logs["bdr_audio"] == pytest.approx(bdr["audio"]) and logs["d_bdr"] == pytest.approx(d)


def test_window_opens_for_the_right_modality_exactly_when_d_exceeds_epsilon(tiny_spec: ModelSpec) -> None:
    method, model, optimizer = setup(tiny_spec, epsilon=0.25, window=3, start_epoch=1)
    method.averages = {"1": {m: torch.full((4,), 1.5) for m in method.modalities}}
    scripted = iter([1.0, 0.25, -0.25, 0.3, -0.3, 0.0])
    measured: list[int] = []
    seen: list[str | None] = []
    for step in range(12):
        method.accumulate = lambda _model, step=step: measured.append(step) or next(scripted)
        replace = method.curation(torch.device("cpu"))
        seen.append(None if replace is None else next(iter(replace)))
        epoch = 0 if step == 0 else 1  # d = 1.0 at epoch 0 is before start_epoch
        method.after_backward(None, None, context(method, model, optimizer, epoch))
    assert seen == [None, None, None, None, "audio", "audio", "audio", None, "video", "video", "video", None]
    assert measured == [0, 1, 2, 3, 7, 11]  # speeds are measured only outside windows


def run_step(method: Greedy, model, optimizer, captured: list) -> None:
    forward = model.forward

    def capture(inputs, replace=None):
        out = forward(inputs, replace=replace)
        captured.append((replace, out))
        return out

    model.forward = capture
    method.training_step(make_batch(), context(method, model, optimizer))
    model.forward = forward


def test_curated_modality_gets_the_detached_running_average(tiny_spec: ModelSpec) -> None:
    method, model, optimizer = setup(tiny_spec, epsilon=1e9, window=2)
    captured: list = []
    for _ in range(2):
        run_step(method, model, optimizer, captured)
    stages = list(model.mmtm)
    for s in stages:
        for m in method.modalities:
            means = [out.fusion.extras[f"excitation_{s}_{m}"].detach().mean(0) for _, out in captured]
            assert torch.allclose(method.averages[s][m], (means[0] + means[1]) / 2, atol=1e-7)
    assert all(replace is None for replace, _ in captured)

    method.curated, method.window_left = "video", 2
    captured.clear()
    for _ in range(3):
        run_step(method, model, optimizer, captured)
    assert [r is not None for r, _ in captured] == [True, True, False]
    replace, out = captured[0]
    assert set(replace) == {"video"}
    for s in stages:
        gate_v, gate_a = out.fusion.extras[f"gate_{s}_video"], out.fusion.extras[f"gate_{s}_audio"]
        assert torch.equal(gate_v, replace["video"][s].expand_as(gate_v))
        assert not gate_v.requires_grad
        assert torch.equal(gate_a, out.fusion.extras[f"excitation_{s}_audio"]) and gate_a.requires_grad
        assert not torch.allclose(gate_a[0], gate_a[1])

    model.zero_grad(set_to_none=True)
    out = model(make_batch().inputs, replace=replace)
    F.cross_entropy(out.fused, make_batch().labels).backward()
    for block in model.mmtm.values():
        assert all(p.grad is None for p in block.excite["video"].parameters())
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.excite["audio"].parameters())


def test_code_quirk_updates_the_second_average_with_the_first_gate(tiny_spec: ModelSpec) -> None:
    method, model, optimizer = setup(tiny_spec, epsilon=1e9, running_average="code_quirk")
    captured: list = []
    run_step(method, model, optimizer, captured)
    extras = captured[0][1].fusion.extras
    for s, averages in method.averages.items():
        first = extras[f"excitation_{s}_audio"].detach().mean(0)
        assert torch.equal(averages["audio"], first) and torch.equal(averages["video"], first)


def test_branch_average_head_loss_and_prediction(tiny_spec: ModelSpec) -> None:
    method, model, optimizer = setup(tiny_spec, head="branch_average")
    batch = make_batch()
    out = model(batch.inputs)
    loss, _ = method.loss(out, batch, context(method, model, optimizer))
    o_a, o_v = out.modality["audio"], out.modality["video"]
    assert torch.allclose(loss, F.cross_entropy(o_a, batch.labels) + F.cross_entropy(o_v, batch.labels))
    assert torch.allclose(method.predict(out)["fused"], ((o_a + o_v) / 2).softmax(1))


def test_three_modalities_curate_the_largest_bdr_when_the_spread_exceeds_epsilon(
    tiny_spec: ModelSpec,
) -> None:
    """Our generalisation: ``d = max BDR − min BDR``; a window opens on ``argmax BDR`` when ``d > ε``."""
    encoders = {**tiny_spec.encoders, "depth": {"name": "resnet10", "width": 4}}
    spec = ModelSpec({**tiny_spec.modalities, "depth": "frames"}, encoders, NUM_CLASSES)
    method = Greedy(typed_options(Greedy.Options(), {"epsilon": 1.5, "window": 2}, "methods.greedy"), spec)
    method.speeds = {
        "main": {"audio": 1.0, "video": 2.0, "depth": 1.0},
        "bypass": {"audio": 10.0, "video": 200.0, "depth": 1.0},
    }
    bdr, d = bdr_difference(method.speeds, method.modalities)
    assert bdr == {"audio": pytest.approx(1.0), "video": pytest.approx(2.0), "depth": pytest.approx(0.0)}
    assert d == pytest.approx(2.0)
    method.advance(d, epoch=1)
    assert method.curated == "video" and method.window_left == 2
    method.curated, method.window_left = None, 0
    method.options.epsilon = 2.5
    method.advance(d, epoch=1)
    assert method.curated is None and method.window_left == 0
    method.speeds["main"]["depth"] = 0.0  # an undefined BDR: no decision
    assert math.isnan(bdr_difference(method.speeds, method.modalities)[1])


def test_training_curates_and_resumes_bit_identical(
    tiny_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ε = 0 and start 0 open a window after every measured step, so the state changes all along."""
    options = {"epsilon": 0.0, "start_epoch": 0, "window": 2}
    rows = train_killed_and_resumed(tiny_workspace, tmp_path, monkeypatch, "greedy", options)
    assert sum(float(r["train_curated_audio"]) + float(r["train_curated_video"]) for r in rows) > 0
    assert {"bdr_audio", "bdr_video", "d_bdr"} <= set(rows[0])

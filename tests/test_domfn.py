"""DOMFN: the divergence penalty, the branch it selects and what each branch updates (methods.md §B13)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmbalance.config import typed_options
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.methods.domfn import DOMFN, consistent, divergence
from mmbalance.models.fusions._base import FusionOutput
from mmbalance.models.model import ModelOutput
from tests.conftest import make_batch


def test_penalty_hand_computed() -> None:
    """s_a = (.9, .1, .5), s_v = (.1, .3, .5), s_f = (.2, .8, .2): mean (.4, .4, .4);
    mean reference: (s_a − mean)² = (.25, .09, .01) → π_a = .25, (s_v − mean)² = (.09, .01, .01) → .09,
    (s_f − mean)² = (.04, .16, .04) → .16. Fused reference s_mm = (.5, .5, .5): π_a = .16, π_v = .16."""
    scores = {
        "a": torch.tensor([[0.9, 0.1, 0.5]]),
        "v": torch.tensor([[0.1, 0.3, 0.5]]),
        "f": torch.tensor([[0.2, 0.8, 0.2]]),
    }
    fused = torch.full((1, 3), 0.5)
    penalties = divergence(scores, fused, "mean")
    assert {m: round(float(p), 6) for m, p in penalties.items()} == {"a": 0.25, "v": 0.09, "f": 0.16}
    two = {m: scores[m] for m in ("a", "v")}
    against_fused = divergence(two, fused, "fused")
    assert {m: round(float(p), 6) for m, p in against_fused.items()} == {"a": 0.16, "v": 0.16}


def test_consistency_threshold_is_strict() -> None:
    """π/τ < γ with τ = 0.5, γ = 0.8: π = 0.39 fuses, π = 0.4 does not; every modality must pass."""
    penalties = {"a": torch.tensor([0.39, 0.40, 0.1]), "v": torch.tensor([0.1, 0.1, 0.41])}
    assert consistent(penalties, 0.5, 0.8).tolist() == [True, False, False]


def crafted(audio: list[float], video: list[float], fused: list[float]) -> ModelOutput:
    """Model outputs with the given pre-sigmoid logits (one sample), leaves that require gradients."""
    leaves = {n: torch.tensor([v], requires_grad=True) for n, v in (("a", audio), ("v", video), ("f", fused))}
    return ModelOutput({}, FusionOutput(leaves["f"], {"audio": leaves["a"], "video": leaves["v"]}))


def method(spec: ModelSpec, **options) -> DOMFN:
    return DOMFN(typed_options(DOMFN.Options(), {"pretrain_epochs": 0, **options}, "domfn"), spec)


def context(model: torch.nn.Module | None = None, epoch: int = 0) -> Context:
    model = model if model is not None else torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    return Context(model, optimizer, epoch, 16, 0, torch.device("cpu"), ["audio", "video"], 3)


def hand_losses(outputs: ModelOutput, y: int, eta: float, reference: str) -> tuple[float, float]:
    """The joint and the unimodal objective written out from the formulas, one sample."""
    s = {m: torch.sigmoid(o.detach())[0] for m, o in outputs.modality.items()}
    s_f = torch.sigmoid(outputs.fused.detach())[0]
    ce = {m: -math.log(float(v.softmax(0)[y])) for m, v in s.items()}
    ce_f = -math.log(float(s_f.softmax(0)[y]))
    r = (s["audio"] + s["video"]) / 2 if reference == "mean" else s_f
    pi = {m: float(((v - r) ** 2).max()) for m, v in s.items()}
    joint = sum(0.5 * ce[m] ** 2 - eta * pi[m] for m in s) + sum(ce.values()) + ce_f
    return joint, sum(ce.values())


def test_joint_branch_on_agreeing_outputs(tiny_spec: ModelSpec) -> None:
    outputs = crafted([2.0, -1.0, 0.0], [1.5, -0.5, 0.2], [1.0, 0.0, -1.0])
    loss, logs = method(tiny_spec).loss(outputs, make_batch(1), context())
    joint, _ = hand_losses(outputs, 0, 0.5, "mean")
    assert logs["joint"] == 1.0
    assert loss.item() == pytest.approx(joint, rel=1e-6)
    loss.backward()
    assert outputs.fused.grad is not None and outputs.fused.grad.abs().sum() > 0


def test_unimodal_branch_on_diverging_outputs(tiny_spec: ModelSpec) -> None:
    """Fused reference: σ(6) − σ(−6) ≈ 0.995 → π ≈ 0.99, π/τ ≈ 1.98 ≥ 0.8."""
    outputs = crafted([6.0, -6.0, 0.0], [-6.0, 6.0, 0.0], [-6.0, 6.0, 0.0])
    loss, logs = method(tiny_spec, reference="fused").loss(outputs, make_batch(1), context())
    _, unimodal = hand_losses(outputs, 0, 0.5, "fused")
    assert logs["joint"] == 0.0
    assert loss.item() == pytest.approx(unimodal, rel=1e-6)
    loss.backward()
    assert outputs.fused.grad is None


def test_two_modalities_with_mean_reference_never_diverge(tiny_spec: ModelSpec) -> None:
    """(s_a − (s_a + s_v)/2)² ≤ ¼ for sigmoid outputs, so π/τ ≤ ½ < γ = 0.8 always."""
    outputs = crafted([30.0, -30.0, 30.0], [-30.0, 30.0, -30.0], [0.0, 0.0, 0.0])
    _, logs = method(tiny_spec).loss(outputs, make_batch(1), context())
    assert logs["joint"] == 1.0
    assert max(logs["penalty_audio"], logs["penalty_video"]) <= 0.25


def test_sample_decision_mixes_the_two_objectives(tiny_spec: ModelSpec) -> None:
    agree = crafted([2.0, -1.0, 0.0], [1.5, -0.5, 0.2], [1.0, 0.0, -1.0])
    differ = crafted([6.0, -6.0, 0.0], [-6.0, 6.0, 0.0], [-6.0, 6.0, 0.0])
    both = ModelOutput(
        {},
        FusionOutput(
            torch.cat([agree.fused, differ.fused]),
            {m: torch.cat([agree.modality[m], differ.modality[m]]) for m in ("audio", "video")},
        ),
    )
    batch = make_batch(2)
    batch.labels = torch.tensor([0, 0])
    loss, logs = method(tiny_spec, reference="fused", decision="sample").loss(both, batch, context())
    joint, _ = hand_losses(agree, 0, 0.5, "fused")
    _, unimodal = hand_losses(differ, 0, 0.5, "fused")
    assert logs["joint"] == 0.5
    assert loss.item() == pytest.approx((joint + unimodal) / 2, rel=1e-6)


def test_unimodal_step_keeps_branches_apart_and_fused_network_still(tiny_spec: ModelSpec) -> None:
    """γ = 0: no penalty passes π/τ < γ, so a real model takes the divergent branch."""
    torch.manual_seed(0)
    domfn = method(tiny_spec, gamma=0.0)
    model = domfn.build()
    batch = make_batch()
    outputs = model(batch.inputs)
    scores = {m: torch.sigmoid(o) for m, o in outputs.modality.items()}
    audio_loss = F.cross_entropy(scores["audio"], batch.labels)
    video_params = [*model.encoders["video"].parameters(), *model.fusion.heads["video"].parameters()]
    grads = torch.autograd.grad(audio_loss, video_params, allow_unused=True)
    assert all(g is None for g in grads)

    ctx = context(model)
    domfn.on_epoch_start(ctx)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    logs = domfn.training_step(batch, ctx)
    assert logs["joint"] == 0.0
    for name, p in model.named_parameters():
        if name.startswith("fusion.joint."):
            assert p.grad is None and torch.equal(p, before[name]), name
    assert not torch.equal(model.fusion.heads["audio"].weight, before["fusion.heads.audio.weight"])


def test_pretraining_trains_the_unimodal_branches_only(tiny_spec: ModelSpec) -> None:
    torch.manual_seed(0)
    domfn = DOMFN(typed_options(DOMFN.Options(), {}, "domfn"), tiny_spec)
    model = domfn.build()
    ctx = context(model, epoch=29)
    assert domfn.on_epoch_start(ctx) == {"pretraining": 1.0}
    batch = make_batch()
    logs = domfn.training_step(batch, ctx)
    assert all(p.grad is None for p in model.fusion.joint.parameters())
    assert all(p.grad is not None for p in model.encoders.parameters())
    assert "penalty_audio" not in logs
    assert domfn.on_epoch_start(context(model, epoch=30)) == {"pretraining": 0.0}
    assert all(p.requires_grad for p in model.fusion.joint.parameters())


def test_prediction_falls_back_to_the_most_confident_modality(tiny_spec: ModelSpec) -> None:
    """Sample 0 agrees → fused output; sample 1 diverges → video (max σ = σ(6) > audio's σ(3))."""
    logits = {
        "audio": torch.tensor([[1.0, 0.0, 0.0], [3.0, -6.0, -6.0]]),
        "video": torch.tensor([[1.0, 0.0, 0.0], [-6.0, 6.0, -6.0]]),
    }
    fused = torch.tensor([[0.5, 0.0, 0.2], [-6.0, -6.0, 6.0]])
    probs = method(tiny_spec, reference="fused").predict(ModelOutput({}, FusionOutput(fused, logits)))
    expected = torch.stack([torch.sigmoid(fused[0]), torch.sigmoid(logits["video"][1])]).softmax(1)
    assert torch.allclose(probs["fused"], expected)
    assert torch.allclose(probs["audio"], torch.sigmoid(logits["audio"]).softmax(1))

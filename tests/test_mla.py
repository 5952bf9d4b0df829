"""MLA: OWM projector update, head-gradient modification, alternating steps, inference fusion (§B17)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmbalance.config import typed_options
from mmbalance.engine import loop
from mmbalance.engine.optim import build_optimizer
from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.errors import ConfigError
from mmbalance.methods.mla import MLA, entropy_weights, modify_gradient, owm_alpha, owm_update
from mmbalance.models.fusions._base import FusionOutput
from mmbalance.models.model import ModelOutput
from tests.conftest import make_batch
from tests.resume_check import train_killed_and_resumed

OPTIMIZER = {"name": "sgd", "lr": 0.05, "momentum": 0.9}


def make_method(spec: ModelSpec, **options) -> MLA:
    return MLA(typed_options(MLA.Options(), options, "methods.mla"), spec)


def setup(spec: ModelSpec, seed: int = 0, **options):
    torch.manual_seed(seed)
    method = make_method(spec, **options)
    model = method.build()
    optimizer = build_optimizer(method.param_groups(model), OPTIMIZER)
    ctx = Context(model, optimizer, 0, 3, 0, torch.device("cpu"), method.modalities, spec.num_classes)
    return method, model, ctx


# --- OWM projector -------------------------------------------------------------------------------
def test_owm_alpha_decays_over_the_epoch() -> None:
    assert owm_alpha(0, 10) == pytest.approx(0.1)
    assert owm_alpha(5, 10) == pytest.approx(0.1**1.5)
    assert owm_alpha(9, 10) == pytest.approx(0.1**1.9)


def test_owm_update_by_hand() -> None:
    """P = I₂, r = mean([[2, 2], [0, 0]]) = [1, 1], k = [1, 1], α = 0.1."""
    features = torch.tensor([[2.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)
    # scalar: r k = 2 → P = I − [[1, 1], [1, 1]] / 2.1
    a, b = 1 - 1 / 2.1, -1 / 2.1
    scalar = torch.tensor([[a, b], [b, a]], dtype=torch.float64) / math.sqrt(2 * a * a + 2 * b * b)
    assert torch.allclose(owm_update(eye, features, 0.1, "scalar"), scalar)
    # elementwise (code): k r = [[1, 1], [1, 1]] → every entry of k kᵀ divided by 1.1
    a, b = 1 - 1 / 1.1, -1 / 1.1
    elementwise = torch.tensor([[a, b], [b, a]], dtype=torch.float64) / math.sqrt(2 * a * a + 2 * b * b)
    assert torch.allclose(owm_update(eye, features, 0.1, "elementwise"), elementwise)


def test_projection_protects_the_input_directions_already_seen() -> None:
    """After P has absorbed r₁ then r₂, a projected step leaves the head's response to both unchanged."""
    torch.manual_seed(0)
    dim, classes, alpha = 8, 4, 1e-3
    r1, r2 = torch.rand(3, dim, dtype=torch.float64), torch.rand(3, dim, dtype=torch.float64)
    projector = torch.eye(dim, dtype=torch.float64)
    projector = owm_update(projector, r1, alpha, "scalar")
    projector = owm_update(projector, r2, alpha, "scalar")
    weight = torch.randn(classes, dim, dtype=torch.float64)
    grad = torch.randn(classes, dim, dtype=torch.float64)
    step = modify_gradient(grad, projector, "replace")
    for r in (r1.mean(0), r2.mean(0)):
        unprojected_change = (grad @ r).norm()
        change = ((weight - step) @ r - weight @ r).norm()
        assert change < 1e-2 * unprojected_change * step.norm() / grad.norm()
    # a direction orthogonal to both is still learnt
    free = torch.linalg.svd(torch.stack([r1.mean(0), r2.mean(0)]))[2][-1]
    assert (step @ free).norm() > 0.1 * (grad @ free).norm() * step.norm() / grad.norm()


@pytest.mark.parametrize("gm", ["off", "replace", "add"])
def test_gradient_modification_variants(tiny_spec: ModelSpec, gm: str) -> None:
    """One batch: audio (the first update, never modified) then video, whose head gradient is modified.

    Reference: ``gm = off`` from the same init gives the raw video gradient g (the audio steps are
    identical); ``P`` from one scalar OWM update of I with the batch's video features, by hand.
    """
    batch = make_batch()
    reference, ref_model, ref_ctx = setup(tiny_spec, gm="off")
    method, model, ctx = setup(tiny_spec, gm=gm)
    with torch.no_grad():
        video = copy.deepcopy(model).encoders["video"](batch.inputs["video"]).double()
    ref_logs = reference.training_step(batch, ref_ctx)
    logs = method.training_step(batch, ctx)
    raw = ref_model.fusion.head[-1].weight.grad.double()
    got = model.fusion.head[-1].weight.grad.double()

    r = video.mean(0, keepdim=True)
    k = r.t()  # P = I
    unnormalised = torch.eye(r.shape[1], dtype=torch.float64) - k @ k.t() / (0.1 + float(r @ k))
    projector = unnormalised / unnormalised.norm()
    expected = {"off": raw, "replace": raw @ projector.t(), "add": raw + raw @ projector.t()}[gm]
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert logs["modified_audio"] == 0.0 and logs["modified_video"] == float(gm != "off")
    assert logs["loss_audio"] == ref_logs["loss_audio"]
    assert method.updates == 2
    if gm == "off":  # the released HEAD: P is never built nor updated
        assert method.projector is None
        assert torch.equal(got, raw.float())
    else:
        assert torch.allclose(method.projector.double(), projector, atol=1e-6)
    if gm == "replace":  # the head's response to the features just seen shrinks by α/(α + ‖r‖²)
        shrink = 0.1 / (0.1 + float(r @ r.t())) / float(unnormalised.norm())
        assert torch.allclose(got.double() @ r.t(), shrink * (raw @ r.t()), rtol=1e-3, atol=1e-8)
        assert float(r @ r.t()) > 1.0  # so the shrink is substantial


def test_off_is_alternating_unimodal_steps_on_a_shared_head(tiny_spec: ModelSpec) -> None:
    """``gm = off`` equals a hand-written loop: one forward, then per modality CE → backward → step."""
    method, model, ctx = setup(tiny_spec, gm="off")
    manual = copy.deepcopy(model)
    optimizer = build_optimizer(manual.parameters(), OPTIMIZER)
    for seed in range(2):
        batch = make_batch(seed=seed)
        method.training_step(batch, ctx)
        features = manual.encode(batch.inputs)
        for m in ("audio", "video"):
            loss = F.cross_entropy(manual.fusion.head(features[m]), batch.labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    for (name, a), b in zip(model.state_dict().items(), manual.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_first_modified_update_skips_only_the_very_first(tiny_spec: ModelSpec) -> None:
    method, _, ctx = setup(tiny_spec)
    first = method.training_step(make_batch(), ctx)
    second = method.training_step(make_batch(seed=1), ctx)
    assert (first["modified_audio"], first["modified_video"]) == (0.0, 1.0)
    assert (second["modified_audio"], second["modified_video"]) == (1.0, 1.0)
    assert method.updates == 4
    assert torch.linalg.matrix_norm(method.projector) == pytest.approx(1.0)


# --- inference fusion --------------------------------------------------------------------------
def outputs_of(logits: dict[str, torch.Tensor]) -> ModelOutput:
    return ModelOutput({}, FusionOutput(None, logits))


def test_sample_entropy_fusion_by_hand(tiny_spec: ModelSpec) -> None:
    """Per sample, ``w_m = exp(H_max − H_m)/Σ``: a confident modality outweighs an uncertain one."""
    audio = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.1, 0.0]])
    video = torch.tensor([[0.0, 0.2, 0.0], [0.0, 0.0, 5.0]])
    method = make_method(tiny_spec)
    fused = method.predict(outputs_of({"audio": audio, "video": video}))["fused"]
    for i in range(2):
        entropies = []
        for o in (audio[i].numpy(), video[i].numpy()):
            p = np.exp(o) / np.exp(o).sum()
            entropies.append(-(p * np.log(p)).sum())
        w = np.exp(max(entropies) - np.array(entropies))
        w /= w.sum()
        mix = w[0] * audio[i].numpy() + w[1] * video[i].numpy()
        assert np.allclose(fused[i].numpy(), np.exp(mix) / np.exp(mix).sum(), atol=1e-6)
    assert fused[0].argmax() == 0 and fused[1].argmax() == 2


def test_batch_entropy_fusion_is_the_codes_and_depends_on_the_batch(tiny_spec: ModelSpec) -> None:
    torch.manual_seed(0)
    logits = {"audio": torch.randn(5, 3) * 3, "video": torch.randn(5, 3)}
    method = make_method(tiny_spec, entropy_scope="batch")
    fused = method.predict(outputs_of(logits))["fused"]
    entropies = []
    for o in logits.values():  # the code's calculate_entropy: softmax over dim 0, summed
        p = np.exp(o.numpy()) / np.exp(o.numpy()).sum(0, keepdims=True)
        entropies.append(-(p * np.log(p)).sum())
    w = np.exp(max(entropies) - np.array(entropies))
    w /= w.sum()
    mix = w[0] * logits["audio"].numpy() + w[1] * logits["video"].numpy()
    assert np.allclose(fused.numpy(), np.exp(mix) / np.exp(mix).sum(1, keepdims=True), atol=1e-6)
    assert torch.allclose(entropy_weights(logits, "batch").flatten(), torch.tensor(w, dtype=torch.float32))
    head = {m: o[:2] for m, o in logits.items()}
    assert not torch.allclose(method.predict(outputs_of(head))["fused"], fused[:2])
    per_sample = make_method(tiny_spec)
    assert torch.allclose(
        per_sample.predict(outputs_of(head))["fused"], per_sample.predict(outputs_of(logits))["fused"][:2]
    )


def test_fixed_fusion_weights(tiny_spec: ModelSpec) -> None:
    torch.manual_seed(0)
    logits = {"audio": torch.randn(4, 3), "video": torch.randn(4, 3)}
    probs = make_method(tiny_spec, inference="fixed").predict(outputs_of(logits))
    assert torch.allclose(probs["fused"], (0.55 * logits["audio"] + 0.45 * logits["video"]).softmax(1))
    assert torch.allclose(probs["video"], logits["video"].softmax(1))
    custom = make_method(tiny_spec, inference="fixed", fixed_weights=[0.2, 0.8]).predict(outputs_of(logits))
    assert torch.allclose(custom["fused"], (0.2 * logits["audio"] + 0.8 * logits["video"]).softmax(1))
    with pytest.raises(ConfigError, match="fixed_weights"):
        make_method(tiny_spec, inference="fixed", fixed_weights=[1.0])


# --- three modalities and the shared head ------------------------------------------------------
def three_modality_spec(spec: ModelSpec) -> ModelSpec:
    return ModelSpec(
        modalities={**spec.modalities, "depth": "frames"},
        encoders={**spec.encoders, "depth": spec.encoders["video"]},
        num_classes=spec.num_classes,
    )


def test_three_modalities_step_in_order_with_code_weights(tiny_spec: ModelSpec) -> None:
    spec = three_modality_spec(tiny_spec)
    method, _, ctx = setup(spec, inference="fixed")
    assert method.fixed_weights == [0.35, 0.25, 0.4]
    base = make_batch()
    batch = Batch({**base.inputs, "depth": base.inputs["video"].flip(0)}, base.labels, base.index)
    steps = []
    step = ctx.optimizer.step
    ctx.optimizer.step = lambda *a, **k: (steps.append(1), step(*a, **k))[1]
    logs = method.training_step(batch, ctx)
    assert len(steps) == 3 and {"loss_depth", "modified_depth"} <= set(logs)
    with pytest.raises(ConfigError, match="fixed_weights"):
        four = three_modality_spec(spec)
        four.modalities["flow"] = "frames"
        four.encoders["flow"] = spec.encoders["video"]
        make_method(four, inference="fixed")


def test_shared_head_reads_features_of_different_widths_through_a_projection(tiny_spec: ModelSpec) -> None:
    """Video 64-d next to audio 32-d (as ResNet50's 2048-d next to BERT's 768-d): the shared head reads
    ``W z_v`` with a learned bias-free ``W`` (64 → 32), audio as it is; OWM's ``P`` lives in 32-d."""
    spec = ModelSpec(
        modalities=tiny_spec.modalities,
        encoders={**tiny_spec.encoders, "video": {"name": "resnet10", "width": 8}},
        num_classes=3,
    )
    method, model, ctx = setup(spec)
    projection = model.fusion.projections["video"]
    assert isinstance(model.fusion.projections["audio"], torch.nn.Identity)
    assert tuple(projection.weight.shape) == (32, 64) and projection.bias is None
    batch = make_batch()
    with torch.no_grad():
        outputs = model(batch.inputs)
        z_v = outputs.features["video"]
        torch.testing.assert_close(outputs.modality["video"], model.fusion.head(z_v @ projection.weight.t()))
    before = projection.weight.detach().clone()
    for _ in range(2):
        method.training_step(batch, ctx)
    assert method.projector is not None and tuple(method.projector.shape) == (32, 32)
    assert projection.weight.grad is not None and not torch.equal(projection.weight, before)


# --- resume --------------------------------------------------------------------------------------
def test_training_resumes_bit_identical_with_the_projector(
    tiny_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = train_killed_and_resumed(tiny_workspace, tmp_path, monkeypatch, "mla", kill_after=0)
    assert {"train_loss_audio", "train_loss_video", "train_owm_alpha"} <= set(rows[0])
    a = torch.load(tmp_path / "reference" / loop.CHECKPOINT, weights_only=False)
    b = torch.load(tmp_path / "resumed" / loop.CHECKPOINT, weights_only=False)
    assert a["method"]["updates"] == b["method"]["updates"] > 2
    assert torch.equal(a["method"]["projector"], b["method"]["projector"])

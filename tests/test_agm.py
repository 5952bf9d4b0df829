"""AGM (methods.md §B16): Shapley outputs, the gradient-scaling hooks, the coefficients, clipping, resume."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmbalance.config import typed_options
from mmbalance.engine.seeding import configure_determinism
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.methods.agm import (
    AGM,
    clip_if_head_gradient_exceeds,
    competition_ratios,
    modulation_coefficients,
    unimodal_score,
)
from mmbalance.models.encoders.adapters import IMAGENET_MEAN, IMAGENET_STD, build_encoder
from mmbalance.models.shapley import masked_input, shapley_outputs
from tests.conftest import make_batch
from tests.resume_check import train_killed_and_resumed


def setup(spec: ModelSpec, **options):
    configure_determinism(torch.device("cpu"))
    torch.manual_seed(0)
    method = AGM(typed_options(AGM.Options(), options, "methods.agm"), spec)
    model = method.build()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    ctx = Context(model, optimizer, 0, 3, 0, torch.device("cpu"), method.modalities, spec.num_classes)
    return method, model, ctx


def with_input(batch, modality: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**batch.inputs, modality: value}


@pytest.mark.parametrize("training", [True, False])
def test_two_modality_outputs_match_the_repo_formula_and_sum_to_f(
    tiny_spec: ModelSpec, training: bool
) -> None:
    """``m_a = ½(f(a,v) − f(0,v) + f(a,0))`` with the masked passes as separate eval-mode forwards."""
    _, model, _ = setup(tiny_spec)
    batch = make_batch()
    model.train(training)
    with torch.no_grad():
        out = model(batch.inputs)
        assert model.training == training  # the masked passes restore the caller's mode
        model.eval()
        no_audio = model.fusion(
            model.encode(
                with_input(batch, "audio", masked_input(model.encoders["audio"], batch.inputs["audio"]))
            )
        )
        no_video = model.fusion(
            model.encode(
                with_input(batch, "video", masked_input(model.encoders["video"], batch.inputs["video"]))
            )
        )
    f = out.fused
    assert torch.allclose(out.modality["audio"], 0.5 * (f - no_audio.fused + no_video.fused), atol=1e-5)
    assert torch.allclose(out.modality["video"], 0.5 * (f - no_video.fused + no_audio.fused), atol=1e-5)
    assert torch.allclose(out.modality["audio"] + out.modality["video"], f, atol=1e-5)


def test_masked_frames_are_zero_after_normalisation() -> None:
    frames = build_encoder("frames", {"name": "resnet18", "width": 4})
    clip = torch.randint(0, 256, (2, 3, 3, 4, 4), dtype=torch.uint8)
    masked = masked_input(frames, clip)
    assert masked.shape == clip.shape
    mean, std = (
        torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1),
        torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1),
    )
    assert torch.allclose((masked / 255.0 - mean) / std, torch.zeros(()), atol=1e-6)
    spectrogram = build_encoder("spectrogram", {"name": "resnet18", "width": 4})
    assert torch.equal(masked_input(spectrogram, torch.ones(2, 3)), torch.zeros(2, 3))


def test_three_modality_shapley_outputs_match_balancebenchmark_weights() -> None:
    """BB ``GradMod``: ``m_a = ⅓(AVT − VT) + ⅙(AV − V + AT − T) + ⅓A``; the outputs sum to ``f(AVT)``."""
    names = ["a", "v", "t"]
    values = {"a": 1.0, "v": 2.0, "t": 4.0, "av": 7.5, "at": 3.0, "vt": 9.0, "avt": 20.0}
    outputs = {frozenset(k): torch.tensor([x]) for k, x in values.items()}
    m = shapley_outputs(outputs, names)
    f = values
    assert float(m["a"]) == pytest.approx(
        (f["avt"] - f["vt"]) / 3 + (f["av"] - f["v"] + f["at"] - f["t"]) / 6 + f["a"] / 3
    )
    assert float(m["v"]) == pytest.approx(
        (f["avt"] - f["at"]) / 3 + (f["av"] - f["a"] + f["vt"] - f["t"]) / 6 + f["v"] / 3
    )
    assert float(m["a"] + m["v"] + m["t"]) == pytest.approx(f["avt"])


def test_three_modalities_train_with_outputs_summing_to_f(tiny_spec: ModelSpec) -> None:
    spec = ModelSpec(
        {**tiny_spec.modalities, "flow": "frames"},
        {**tiny_spec.encoders, "flow": {"name": "resnet10", "width": 4}},
        3,
    )
    method, model, ctx = setup(spec)
    batch = make_batch()
    batch.inputs["flow"] = batch.inputs["video"].flip(0)
    logs = method.training_step(batch, ctx)
    assert {"coef_audio", "coef_video", "coef_flow"} <= set(logs)
    model.eval()
    with torch.no_grad():
        out = model(batch.inputs)
    assert torch.allclose(sum(out.modality.values()), out.fused, atol=1e-5)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to rounding relative to the tensor's scale (entrywise rtol fails near zero)."""
    return float((a - b).abs().max()) <= 1e-5 * float(b.abs().max()) + 1e-12


def branch_input_gradients(model, batch, scales: dict[str, float]) -> tuple[dict, dict]:
    """Gradients at the input and output of each modality's scaling identity for ``CE(Σ_m m_m)``."""
    model = copy.deepcopy(model)  # the same BatchNorm statistics for every call
    captured: dict[str, torch.Tensor] = {}

    def keep_input(name):
        def hook(module, args):  # before the backward hook wraps the input
            args[0].register_hook(lambda g: captured.__setitem__(f"in_{name}", g))

        return hook

    def keep_output(name):
        def hook(module, args, output):
            output.register_hook(lambda g: captured.__setitem__(f"out_{name}", g))

        return hook

    for m, k in scales.items():
        model.scales[m].scale = k
        model.scales[m].register_forward_pre_hook(keep_input(m))
        model.scales[m].register_forward_hook(keep_output(m))
    out = model(batch.inputs)
    F.cross_entropy(out.modality["audio"] + out.modality["video"], batch.labels).backward()
    return captured, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("masked_gradients", [False, True])
def test_the_hook_scales_exactly_the_gradient_of_its_branch(
    tiny_spec: ModelSpec, masked_gradients: bool
) -> None:
    _, model, _ = setup(tiny_spec, masked_gradients=masked_gradients)
    batch = make_batch()
    k = {"audio": 0.5, "video": 3.0}
    hooked, grads = branch_input_gradients(model, batch, k)
    plain, plain_grads = branch_input_gradients(model, batch, {"audio": 1.0, "video": 1.0})
    for m in k:
        assert torch.allclose(hooked[f"out_{m}"], plain[f"out_{m}"])
        assert torch.allclose(hooked[f"in_{m}"], k[m] * plain[f"in_{m}"])
    # Independent check of what reaches the parameters: Σ_m k_m · (gradient through m_m alone).
    reference = copy.deepcopy(model)
    out = reference(batch.inputs)
    params = list(reference.parameters())
    total = out.modality["audio"] + out.modality["video"]
    upstream = torch.autograd.grad(F.cross_entropy(total, batch.labels), total, retain_graph=True)[0]
    expected = [torch.zeros_like(p) for p in params]
    for m, coefficient in k.items():
        parts = torch.autograd.grad(out.modality[m], params, upstream, retain_graph=True, allow_unused=True)
        expected = [
            e + coefficient * (g if g is not None else 0) for e, g in zip(expected, parts, strict=True)
        ]
    for (name, grad), e in zip(grads.items(), expected, strict=True):
        assert close(grad, e), name
    if not masked_gradients:  # the repo: constant masked passes, so every gradient is scaled by mean(k)
        mean_k = sum(k.values()) / len(k)
        for name, grad in grads.items():
            assert close(grad, mean_k * plain_grads[name]), name
    else:
        audio_conv = next(n for n in grads if n.startswith("encoders.audio") and grads[n].dim() == 4)
        assert not close(grads[audio_conv], 1.75 * plain_grads[audio_conv])


def test_scores_ratios_and_coefficients_on_crafted_values() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [-60.0, 60.0]])
    y = torch.tensor([1, 0])  # p = 3/4, then p ≈ e^-120 < 1e-8 → clamped
    assert unimodal_score(logits, y) == pytest.approx((-math.log(0.75) - math.log(1e-8)) / 2, rel=1e-6)
    scores, running = {"audio": 0.5, "video": 1.5}, {"audio": 1.0, "video": 1.2}
    k = modulation_coefficients(scores, running, alpha=0.7, cap=10.0)
    assert k["audio"] == pytest.approx(math.exp(0.7 * (math.exp(0.2) - math.exp(1.0))))
    assert k["video"] == pytest.approx(math.exp(0.7 * (math.exp(-0.2) - math.exp(-1.0))))
    capped = modulation_coefficients(scores, {"audio": 0.0, "video": 5.0}, alpha=1.0, cap=10.0)
    assert capped["audio"] == pytest.approx(math.exp(10.0))
    three = competition_ratios({"a": 1.0, "v": 2.0, "t": 6.0})
    assert three["a"] == pytest.approx(math.exp(1.5 * (3.0 - 1.0)))
    assert three["t"] == pytest.approx(math.exp(1.5 * (3.0 - 6.0)))


def test_steps_use_running_means_of_earlier_iterations(tiny_spec: ModelSpec) -> None:
    method, _, ctx = setup(tiny_spec)
    first = method.training_step(make_batch(seed=1), ctx)
    assert first["coef_audio"] == pytest.approx(
        modulation_coefficients(
            {m: first[f"score_{m}"] for m in ("audio", "video")}, {"audio": 0.0, "video": 0.0}, 1.0, 10.0
        )["audio"]
    )
    second = method.training_step(make_batch(seed=2), ctx)
    scores = {m: second[f"score_{m}"] for m in ("audio", "video")}
    after_first = {m: first[f"score_{m}"] for m in ("audio", "video")}
    assert second["coef_video"] == pytest.approx(
        modulation_coefficients(scores, after_first, 1.0, 10.0)["video"]
    )
    assert method.score_means["audio"] == pytest.approx((first["score_audio"] + second["score_audio"]) / 2)
    assert method.iterations == 2


def test_clipping_only_when_a_head_weight_gradient_leaves_the_band(tiny_spec: ModelSpec) -> None:
    _, model, _ = setup(tiny_spec)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert not clip_if_head_gradient_exceeds(model, threshold=1.0, max_norm=1.0)  # large norm, small entries
    assert all(torch.equal(p.grad, before[n]) for n, p in model.named_parameters())
    model.encoders["audio"].trunk.stem[0].weight.grad.fill_(5.0)  # outside the band, but not in the head
    assert not clip_if_head_gradient_exceeds(model, threshold=1.0, max_norm=1.0)
    model.fusion.fc.weight.grad[0, 0] = -1.5
    assert clip_if_head_gradient_exceeds(model, threshold=1.0, max_norm=1.0)
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()])
    )
    assert float(norm) == pytest.approx(1.0, rel=1e-5)


def test_training_records_coefficients_and_resumes_bit_identical(
    tiny_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = train_killed_and_resumed(tiny_workspace, tmp_path, monkeypatch, "agm", {})
    assert {"train_coef_audio", "train_coef_video", "score_mean_audio", "train_clipped"} <= set(rows[0])
    assert float(rows[0]["val_fused_acc"]) >= 0.0

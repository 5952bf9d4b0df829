"""OGM-GE: coefficients (Eq. 9) and exactly which gradients they scale (Eq. 10-11)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmbalance.engine.types import Context, ModelSpec
from mmbalance.methods.ogm_ge import OGMGE, modulation_coefficients
from tests.conftest import make_batch


def test_coefficients_hand_computed() -> None:
    k = modulation_coefficients({"audio": 6.0, "video": 2.0}, alpha=0.5)
    assert k["video"] == 1.0
    assert k["audio"] == pytest.approx(1 - math.tanh(0.5 * 3.0))
    k = modulation_coefficients({"audio": 1.0, "video": 4.0}, alpha=0.1)
    assert k == {"audio": 1.0, "video": pytest.approx(1 - math.tanh(0.4))}


def run(spec: ModelSpec, modulation: str, epoch: int = 0):
    torch.manual_seed(0)
    method = OGMGE({"alpha": 0.8, "modulation": modulation, "start_epoch": 0, "end_epoch": 5}, spec)
    model = method.build()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    ctx = Context(model, optimizer, epoch, 10, 0, torch.device("cpu"), method.modalities, spec.num_classes)
    batch = make_batch()
    outputs = model(batch.inputs)
    F.cross_entropy(outputs.fused, batch.labels).backward()
    raw = {n: p.grad.clone() for n, p in model.named_parameters()}
    logs = method.after_backward(outputs, batch, ctx)
    y = batch.labels[:, None]
    scores = {m: float(outputs.modality[m].detach().softmax(1).gather(1, y).sum()) for m in method.modalities}
    return model, raw, logs, modulation_coefficients(scores, 0.8)


def test_ogm_scales_exactly_the_encoder_conv_gradients(tiny_spec: ModelSpec) -> None:
    model, raw, logs, expected = run(tiny_spec, "OGM")
    for m, k in expected.items():
        assert logs[f"coef_{m}"] == pytest.approx(k)
    assert min(expected.values()) < 1.0
    for name, p in model.named_parameters():
        modality = name.split(".")[1] if name.startswith("encoders.") else None
        if modality is not None and p.dim() == 4:
            assert torch.allclose(p.grad, raw[name] * expected[modality]), name
        else:
            assert torch.equal(p.grad, raw[name]), name


def test_ge_adds_noise_with_the_gradient_std(tiny_spec: ModelSpec) -> None:
    model, raw, _, expected = run(tiny_spec, "OGM_GE")
    big = max(
        (n for n, p in model.named_parameters() if n.startswith("encoders.audio") and p.dim() == 4),
        key=lambda n: raw[n].numel(),
    )
    noise = model.get_parameter(big).grad - raw[big] * expected["audio"]
    assert noise.std().item() == pytest.approx(raw[big].std().item(), rel=0.15)


def test_outside_the_epoch_window_nothing_changes(tiny_spec: ModelSpec) -> None:
    model, raw, logs, _ = run(tiny_spec, "OGM_GE", epoch=6)
    assert all(torch.equal(p.grad, raw[n]) for n, p in model.named_parameters())
    assert logs == {"coef_audio": 1.0, "coef_video": 1.0}

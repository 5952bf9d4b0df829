"""MSLR (methods.md §B14): which gradients the coefficients scale, the dynamic rule, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmbalance.config import typed_options
from mmbalance.engine.seeding import configure_determinism
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.errors import ConfigError
from mmbalance.methods.mslr import MSLR, dynamic_coefficients
from mmbalance.registry import METHODS
from tests.conftest import make_batch
from tests.resume_check import train_killed_and_resumed


def make(name: str, spec: ModelSpec, **options):
    configure_determinism(torch.device("cpu"))
    torch.manual_seed(0)
    cls = METHODS.get(name)
    method = cls(typed_options(cls.Options(), options, f"methods.{name}"), spec)
    model = method.build()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, weight_decay=1e-4)
    ctx = Context(model, optimizer, 0, 3, 0, torch.device("cpu"), method.modalities, spec.num_classes)
    return method, model, ctx


def evaluation(acc: dict[str, float]) -> dict:
    return {"val": {m: {"acc": a} for m, a in acc.items()}}


def test_gradients_are_c_m_times_the_plain_late_fusion_gradients(tiny_spec: ModelSpec) -> None:
    """Against ``sum`` (same fusion and seed, no modulation): exactly the branch parameters are scaled."""
    coefficients = {"audio": 0.5, "video": 2.0}
    method, model, ctx = make("mslr", tiny_spec, variant="static", coefficients=list(coefficients.values()))
    plain, plain_model, plain_ctx = make("sum", tiny_spec)
    batch = make_batch()
    method.training_step(batch, ctx)
    plain.training_step(batch, plain_ctx)
    plain_grads = dict(plain_model.named_parameters())
    scaled = set()
    for name, p in model.named_parameters():
        parts = name.split(".")
        branch = (
            parts[1] if parts[0] == "encoders" else parts[2] if parts[:2] == ["fusion", "heads"] else None
        )
        expected = plain_grads[name].grad * (coefficients[branch] if branch else 1.0)
        assert torch.allclose(p.grad, expected, rtol=1e-5, atol=1e-8), name
        if branch:
            scaled.add(name)
    branch_names = {n for n, _ in model.named_parameters() if n.startswith(("encoders.", "fusion.heads."))}
    assert scaled == branch_names and len(branch_names) == len(list(model.parameters()))


def test_dynamic_rule_on_a_crafted_history() -> None:
    initial = {"audio": 0.9, "video": 1.1}
    five = {"audio": [0.5] * 5, "video": [0.4, 0.5, 0.6, 0.7, 0.8]}
    assert dynamic_coefficients(initial, five, window=5) == initial  # no earlier window yet
    history = {"audio": [0.1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6], "video": [0.9, 0.4, 0.5, 0.6, 0.7, 0.8, 0.3]}
    c = dynamic_coefficients(initial, history, window=5)
    assert c["audio"] == pytest.approx(0.9 * 0.6 / 0.5)  # the first epoch (0.1) is outside the window
    assert c["video"] == pytest.approx(1.1 * 0.3 / 0.6)
    assert dynamic_coefficients(initial, {"audio": [0.0, 0.7], "video": [0.5, 0.5]}, window=1)["audio"] == 0.9


def test_epoch_end_uses_the_validation_accuracies(tiny_spec: ModelSpec) -> None:
    method, _, ctx = make("mslr", tiny_spec, window=2)
    assert method.on_epoch_start(ctx) == {"lr_scale_audio": 0.9, "lr_scale_video": 1.1}
    for acc_a, acc_v in [(0.2, 0.4), (0.4, 0.4), (0.6, 0.2)]:
        method.on_epoch_end(ctx, evaluation({"audio": acc_a, "video": acc_v}))
    logs = method.on_epoch_start(ctx)
    assert logs["lr_scale_audio"] == pytest.approx(0.9 * 0.6 / 0.3)
    assert logs["lr_scale_video"] == pytest.approx(1.1 * 0.2 / 0.4)
    static, _, ctx = make("mslr", tiny_spec, variant="static", coefficients=[2.0, 3.0])
    static.on_epoch_end(ctx, evaluation({"audio": 0.9, "video": 0.1}))
    assert static.on_epoch_start(ctx) == {"lr_scale_audio": 2.0, "lr_scale_video": 3.0}


def test_coefficients_need_one_positive_value_per_modality(tiny_spec: ModelSpec) -> None:
    three = ModelSpec({**tiny_spec.modalities, "flow": "frames"}, tiny_spec.encoders, 3)
    with pytest.raises(ConfigError, match="one positive multiplier per modality"):
        MSLR(typed_options(MSLR.Options(), {}, "methods.mslr"), three)
    MSLR(typed_options(MSLR.Options(), {"coefficients": [1.0, 0.9, 1.1]}, "methods.mslr"), three)
    with pytest.raises(ConfigError, match="one positive"):
        MSLR(typed_options(MSLR.Options(), {"coefficients": [1.0, 0.0]}, "methods.mslr"), tiny_spec)


def test_dynamic_training_records_and_resumes_bit_identical(
    tiny_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """window = 1: from epoch 2, ``c_m = c_init · acc_m(t−1) / acc_m(t−2)`` from the history's own columns."""
    rows = train_killed_and_resumed(tiny_workspace, tmp_path, monkeypatch, "mslr", {"window": 1})
    for m, init in (("audio", 0.9), ("video", 1.1)):
        acc = [float(r[f"val_{m}_acc"]) for r in rows]
        scale = [float(r[f"lr_scale_{m}"]) for r in rows]
        assert scale[:2] == [init, init]
        expected = init * acc[1] / acc[0] if acc[0] > 0 else init
        assert scale[2] == pytest.approx(expected)

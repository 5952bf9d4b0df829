"""Every registered method, enrolled automatically: one training step on tiny data.

Checks a finite loss, a gradient on every trainable parameter, and that the same seed
gives the same loss and parameters (timm-style registry-parametrised tests).
"""

from __future__ import annotations

import math

import pytest
import torch

from mmbalance.config import typed_options
from mmbalance.engine.optim import build_optimizer
from mmbalance.engine.seeding import configure_determinism
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.registry import METHODS
from tests.conftest import make_batch


def one_step(name: str, spec: ModelSpec, seed: int = 0, epoch: int = 0):
    configure_determinism(torch.device("cpu"))
    torch.manual_seed(seed)
    cls = METHODS.get(name)
    method = cls(typed_options(cls.Options(), {}, f"methods.{name}"), spec)
    model = method.build()
    optimizer = build_optimizer(method.param_groups(model), {"name": "sgd", "lr": 0.01, "momentum": 0.9})
    ctx = Context(model, optimizer, epoch, 3, 0, torch.device("cpu"), method.modalities, spec.num_classes)
    batch = make_batch()
    method.on_epoch_start(ctx)
    logs = method.training_step(batch, ctx)
    return method, model, logs, batch


@pytest.mark.parametrize("name", METHODS.names())
def test_one_step_finite_loss_and_gradients(name: str, tiny_spec: ModelSpec) -> None:
    method, model, logs, batch = one_step(name, tiny_spec)
    assert math.isfinite(logs["loss"])
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient for {missing}"
    for n, p in model.named_parameters():
        if p.requires_grad:  # parameters a method freezes for this step (stage-wise training) have none
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {n}"
    model.eval()
    with torch.no_grad():
        probs = method.predict(model(batch.inputs))
    assert set(probs) == set(method.heads())
    for head, p in probs.items():
        assert p.shape == (len(batch), tiny_spec.num_classes), head
        assert torch.allclose(p.sum(1), torch.ones(len(batch)), atol=1e-5), head


@pytest.mark.parametrize("name", METHODS.names())
def test_same_seed_same_step(name: str, tiny_spec: ModelSpec) -> None:
    _, model_a, logs_a, _ = one_step(name, tiny_spec, seed=3)
    _, model_b, logs_b, _ = one_step(name, tiny_spec, seed=3)
    assert logs_a == logs_b
    for (n, a), (_, b) in zip(model_a.state_dict().items(), model_b.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


@pytest.mark.parametrize("name", METHODS.names())
def test_method_state_round_trips(name: str, tiny_spec: ModelSpec) -> None:
    method, *_ = one_step(name, tiny_spec)
    state = method.state_dict()
    fresh = METHODS.get(name)(vars(method.options), tiny_spec)
    fresh.load_state_dict(state)
    assert repr(fresh.state_dict()) == repr(state)

"""engine.copies: a copy trained with the engine's conventions, checked against plain numpy SGD with
momentum on a linear softmax classifier (the gradient of mean CE written out by hand)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.copies import fresh_optimizer, train_copy

N, D, C, SEED = 7, 4, 3, 5
LR, MOMENTUM, DECAY = 0.05, 0.9, 0.01


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reference(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, epochs: range):
    """SGD with momentum and weight decay (PyTorch's form: the buffer starts as the first gradient),
    batches of 3 in ``default_rng([SEED, e])`` order, the single last sample joined to the batch before."""
    buffers = None
    for epoch in epochs:
        order = np.random.default_rng([SEED, epoch]).permutation(N)
        for index in (np.sort(order[:3]), np.sort(order[3:])):
            p = softmax(x[index] @ w.T + b)
            g = (p - np.eye(C)[y[index]]) / len(index)
            grads = [g.T @ x[index] + DECAY * w, g.sum(0) + DECAY * b]
            buffers = (
                grads if buffers is None else [MOMENTUM * m + d for m, d in zip(buffers, grads, strict=True)]
            )
            w, b = w - LR * buffers[0], b - LR * buffers[1]
    return w, b


def test_copy_trains_like_sgd_from_a_fresh_state_and_leaves_the_run_alone() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    y = rng.integers(0, C, N)
    batches = SplitBatches({"x": x}, y, 3, torch.device("cpu"), shuffle=True, seed=SEED)
    torch.manual_seed(0)
    model = nn.Linear(D, C)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=MOMENTUM, weight_decay=DECAY)
    F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    optimizer.step()  # the run's optimiser has momentum buffers now
    optimizer.param_groups[0]["lr"] = LR  # as a schedule would have set it
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    buffers = [optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]

    def loss(net: nn.Module, batch) -> torch.Tensor:
        return F.cross_entropy(net(batch.inputs["x"]), batch.labels)

    trained = train_copy(model, optimizer, batches, 2, 2, loss)

    w, b = reference(
        before["weight"].double().numpy(),
        before["bias"].double().numpy(),
        x.astype(np.float64),
        y,
        range(2, 4),
    )
    np.testing.assert_allclose(trained.weight.detach().numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(trained.bias.detach().numpy(), b, rtol=1e-5, atol=1e-6)
    assert trained is not model and trained.training and not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    now = [optimizer.state[p]["momentum_buffer"] for p in model.parameters()]
    assert all(torch.equal(a, c) for a, c in zip(buffers, now, strict=True))


def test_fresh_optimizer_takes_the_current_hyper_parameters_and_no_state() -> None:
    model = nn.Linear(2, 2)
    run = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.8, 0.9), weight_decay=0.1)
    model(torch.ones(1, 2)).sum().backward()
    run.step()
    run.param_groups[0]["lr"] = 2e-4
    copy = nn.Linear(2, 2)
    fresh = fresh_optimizer(run, copy.parameters())
    assert type(fresh) is torch.optim.Adam and not fresh.state
    group = fresh.param_groups[0]
    assert group["lr"] == 2e-4 and group["betas"] == (0.8, 0.9) and group["weight_decay"] == 0.1
    assert group["params"] == list(copy.parameters())

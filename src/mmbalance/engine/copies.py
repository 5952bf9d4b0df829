"""Training a throw-away copy of the run's model beside the run (G-Blend's OGR estimate, methods.md §B10).

A method that needs "what would this model become after N more epochs of some loss" (G-Blend trains one
copy per output for ``super_epoch`` epochs, Wang et al. CVPR 2020 §3.3) gets it from
:func:`train_copy` with the engine's conventions instead of a loop of its own:

* the copy is a deep copy of the model, trained in train mode; the model, its optimiser and their
  state are not touched;
* its optimiser is :func:`fresh_optimizer`: the run's optimiser class with the hyper-parameters its
  first group has now (the scheduled learning rate included) and no state (no momentum buffers);
* the batches are the run's training order (:class:`~mmbalance.engine.batches.SplitBatches`) of
  epochs ``first_epoch … first_epoch + epochs − 1``;
* per batch: ``zero_grad(set_to_none=True)``, the caller's loss, backward, step — the order of
  :meth:`mmbalance.methods._base.Method.training_step`, in the run's precision (the loss under its
  autocast; under fp16 with a gradient scaler of the copy's own, :meth:`Precision.fresh`).

Random draws inside the loss (dropout) come from the global generators, so a caller that must leave
the run's random stream as it was forks it (``torch.random.fork_rng``) around the call.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import nn

from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.precision import Precision
from mmbalance.engine.types import Batch

CopyLoss = Callable[[nn.Module, Batch], torch.Tensor]
"""The loss of one batch for the copy being trained: ``loss(copy, batch)``."""


def fresh_optimizer(
    optimizer: torch.optim.Optimizer, params: Iterable[nn.Parameter]
) -> torch.optim.Optimizer:
    """A new optimiser of ``optimizer``'s class over ``params``, with the current values of the
    hyper-parameters of its first group (every key of its ``defaults``) and no state."""
    group = optimizer.param_groups[0]
    return type(optimizer)(params, **{key: group[key] for key in optimizer.defaults})


def train_copy(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: SplitBatches,
    first_epoch: int,
    epochs: int,
    loss: CopyLoss,
    precision: Precision | None = None,
) -> nn.Module:
    """A deep copy of ``model`` trained on ``loss`` for ``epochs`` epochs of ``batches`` from
    ``first_epoch`` on, with :func:`fresh_optimizer` (module docstring), in ``precision`` (fp32 when
    None); returned in train mode."""
    trained = copy.deepcopy(model)
    step = fresh_optimizer(optimizer, trained.parameters())
    own = Precision() if precision is None else precision.fresh()
    trained.train()
    for epoch in range(first_epoch, first_epoch + epochs):
        for batch in batches.epoch(epoch):
            with own.autocast():
                value = loss(trained, batch)
            step.zero_grad(set_to_none=True)
            own.backward(value)
            own.step(step)
    return trained

"""Mixed precision for the one loop and every method's own passes (``train.<profile>.<dataset>.precision``).

One :class:`Precision` per run, handed to methods as ``ctx.precision``. Every backward pass, every
``torch.autograd.grad`` of a training loss and every optimiser step of a method goes through it, so the
gradient scaler and autocast apply the same way to the default step and to the methods' extra passes
(MIE's SAM, MMPareto's per-loss gradients, MLA's and AUG's per-modality steps, AGM's clipping, G-Blend's
copies):

- ``fp32`` (default): nothing changes — :meth:`autocast` is a no-op, :meth:`backward`, :meth:`grad`,
  :meth:`assign` and :meth:`step` are the plain torch calls, :meth:`unscale` does nothing.
- ``bf16``: the forward passes and losses run under ``torch.autocast(dtype=bfloat16)``; gradients and
  optimiser state stay fp32 (bf16 has fp32's exponent range, so no scaling). A step whose gradients are
  not finite is skipped, as fp16's scaler skips an overflowed one: on the CPU, oneDNN's bf16
  convolution backward returns NaN weight gradients now and then for finite inputs and weights (a
  stride-2 convolution over a 1×1 map; ``benchmarks/results/precision_accuracy_embedded_cpu.md``), and
  one such step would otherwise make every weight NaN.
- ``fp16``: autocast to float16 and a ``torch.amp.GradScaler``: losses are multiplied by the scale
  ``s`` (a power of two) before differentiation. ``p.grad`` holds scaled gradients until
  :meth:`unscale` divides them in place, which the method calls before it reads or changes them
  (gradient surgery always sees true gradients); :meth:`grad` returns true gradients and
  :meth:`assign` stores a true gradient as a scaled one (exact: ``s`` is a power of two). A step whose
  gradients are not finite is skipped by :meth:`step` and the scale halves (the scaler's rule); the
  methods also skip their gradient surgery for it (:meth:`unscale` returns False), so no state of
  theirs sees an overflowed gradient.

Under both reduced precisions :attr:`Precision.skipped` counts the skipped steps (kept in
:meth:`state_dict`, so a resumed run counts on); the loop writes it per epoch to ``history.csv``.

Gradient surgery, statistics and the once-per-epoch passes of the methods' hooks (LFM-LB's
hyper-gradient, MIE's covariance matrices, PMR's prototypes) run outside autocast, in fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast, gradient scaling and the optimiser step of one run (module docstring)."""

    def __init__(self, name: str = "fp32", device: torch.device | str = "cpu") -> None:
        if name not in DTYPES:
            raise ValueError(f"precision must be one of {list(DTYPES)}, got {name!r}")
        self.name = name
        self.device = torch.device(device)
        self.dtype = DTYPES[name]
        self.scaler = torch.amp.GradScaler(self.device.type) if name == "fp16" else None
        self.finite: dict[int, bool] = {}
        """Per optimiser ``id``, whether its gradients of the current step are finite: checked (and under
        fp16 unscaled) once, at the step's first :meth:`unscale`, and forgotten at its :meth:`step`."""
        self.skipped = 0
        """Optimiser steps skipped because their gradients were not finite (bf16 and fp16)."""

    def fresh(self) -> Precision:
        """The same precision with a scaler of its own (for a model copy trained beside the run)."""
        return Precision(self.name, self.device)

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward passes and losses of a training step (or of evaluation)."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.dtype):
            yield

    def scale(self) -> float:
        """The current loss scale (1 without a scaler)."""
        return 1.0 if self.scaler is None else float(self.scaler.get_scale())

    # --- gradients ---------------------------------------------------------------------------
    def backward(self, loss: torch.Tensor, retain_graph: bool | None = None) -> None:
        """``loss.backward()``, of the scaled loss under fp16 (``p.grad`` then holds scaled gradients)."""
        scaled = loss if self.scaler is None else self.scaler.scale(loss)
        scaled.backward(retain_graph=retain_graph)

    def grad(
        self,
        loss: torch.Tensor,
        inputs: Sequence[torch.Tensor],
        retain_graph: bool | None = None,
        allow_unused: bool = False,
    ) -> tuple[torch.Tensor | None, ...]:
        """``torch.autograd.grad(loss, inputs)``: true (unscaled) gradients in every precision."""
        if self.scaler is None:
            return torch.autograd.grad(
                loss, list(inputs), retain_graph=retain_graph, allow_unused=allow_unused
            )
        scaled = self.scaler.scale(loss)
        found = torch.autograd.grad(
            scaled, list(inputs), retain_graph=retain_graph, allow_unused=allow_unused
        )
        scale = self.scale()
        return tuple(None if g is None else g / scale for g in found)

    def assign(self, params: Sequence[nn.Parameter], grads: Sequence[torch.Tensor]) -> None:
        """Set ``p.grad`` to the true gradient ``g`` (stored scaled under fp16, for :meth:`step`)."""
        scale = self.scale()
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad if self.scaler is None else grad * scale

    def unscale(self, optimizer: torch.optim.Optimizer) -> bool:
        """Make ``optimizer``'s ``p.grad`` true gradients (once per step); False when one is not finite
        (fp16 overflow or a bf16 NaN: the coming :meth:`step` is skipped). Always True in fp32."""
        if self.dtype is None:
            return True
        key = id(optimizer)
        if key not in self.finite:
            if self.scaler is not None:
                self.scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            grads = [p.grad for p in params if p.grad is not None]
            self.finite[key] = not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
        return self.finite[key]

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``, skipped (and counted) under bf16 and fp16 when a gradient is not finite;
        under fp16 through the scaler, then its update."""
        if self.dtype is None:
            optimizer.step()
            return
        finite = self.unscale(optimizer)
        del self.finite[id(optimizer)]
        self.skipped += int(not finite)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        elif finite:
            optimizer.step()

    # --- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The skipped-step count and the scaler's state (empty in fp32), for bit-identical resumption."""
        if self.dtype is None:
            return {}
        scaler = {} if self.scaler is None else self.scaler.state_dict()
        return {**scaler, "skipped_steps": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        scaler = {key: value for key, value in state.items() if key != "skipped_steps"}
        self.skipped = state.get("skipped_steps", 0)
        if self.scaler is not None and scaler:
            self.scaler.load_state_dict(scaler)

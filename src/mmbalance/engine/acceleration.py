"""``channels_last`` and ``compile`` (:mod:`mmbalance.engine.settings`) applied to a built model."""

from __future__ import annotations

import torch
from torch import nn

from mmbalance.engine.settings import EngineSettings


def is_planar(module: nn.Module) -> bool:
    """True for a module with 4-D (2-D convolution) weights and none of higher rank: the encoders
    ``channels_last`` applies to (3-D CNNs such as I3D keep their layout)."""
    ranks = {p.dim() for p in module.parameters()}
    return 4 in ranks and max(ranks) == 4


def prepare_model(model: nn.Module, settings: EngineSettings) -> nn.Module:
    """Apply ``channels_last`` and ``compile`` to the encoders of ``model`` (in place; returned).

    ``channels_last`` converts the 4-D weights of every 2-D encoder, whose convolutions then run in
    NHWC (cuDNN chooses the layout of a convolution from its weight as well as its input).
    ``compile`` compiles each encoder's forward in place (``nn.Module.compile``): parameter names,
    checkpoints and the methods' direct calls of ``model.encoders[m]`` are unchanged.
    """
    encoders = getattr(model, "encoders", {})
    for encoder in encoders.values():
        if settings.channels_last and is_planar(encoder):
            encoder.to(memory_format=torch.channels_last)
        if settings.compile:
            encoder.compile()
    return model

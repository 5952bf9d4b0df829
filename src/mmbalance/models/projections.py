"""Learned linear maps of modality features to one shared width.

A loss or a head that compares or shares features across modalities (LFM's InfoNCE, paper §3.2; the
shared heads of MLA and ReconBoost, methods.md §B17–B18) needs one feature size, but the paper
presets of the image–text datasets give ResNet50's 2048-d image feature and BERT's 768-d text
feature. None of the papers says how they bridge the widths; mmbalance's choice (docs/methods.md,
"Features of different widths"): every modality wider than the narrowest gets a learned, bias-free
``Linear(d → w)`` to the narrowest width ``w`` (as CLIP's projections, without bias), trained with the
rest of the model; a modality already at ``w`` is used as it is, so with equal widths (every
audio–video and CLIP preset) nothing is added and the paper's definition holds unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


def shared_width(dims: dict[str, int]) -> int:
    """The width every modality is mapped to: the narrowest feature size."""
    return min(dims.values())


def width_projections(dims: dict[str, int]) -> nn.ModuleDict:
    """Per modality ``Linear(d → w, bias=False)`` when ``d > w``, else ``Identity`` (no parameters)."""
    width = shared_width(dims)
    return nn.ModuleDict(
        {m: nn.Linear(d, width, bias=False) if d != width else nn.Identity() for m, d in dims.items()}
    )


def project(projections: nn.ModuleDict, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each modality's features at the shared width."""
    return {m: projections[m](z) for m, z in features.items()}

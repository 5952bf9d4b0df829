"""The multimodal model: one encoder per modality and a fusion."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from mmbalance.errors import ConfigError
from mmbalance.models.encoders.adapters import build_encoder
from mmbalance.models.fusions._base import Fusion, FusionOutput
from mmbalance.registry import FUSIONS


@dataclass
class ModelOutput:
    """Everything a forward pass produces; methods read what they need."""

    features: dict[str, torch.Tensor]
    fusion: FusionOutput

    @property
    def fused(self) -> torch.Tensor | None:
        return self.fusion.fused

    @property
    def modality(self) -> dict[str, torch.Tensor]:
        return self.fusion.modality


class MultimodalModel(nn.Module):
    """``encoders[m](x_m) → z_m``; ``fusion({z_m}) → logits``."""

    def __init__(self, encoders: dict[str, nn.Module], fusion: Fusion) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.modalities = list(encoders)

    def encode(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.encoders[m](inputs[m]) for m in self.modalities}

    def forward(self, inputs: dict[str, torch.Tensor]) -> ModelOutput:
        features = self.encode(inputs)
        return ModelOutput(features, self.fusion(features))


def build_encoders(modalities: dict[str, str], encoder_cfgs: dict[str, dict]) -> dict[str, nn.Module]:
    """One encoder per modality, by its kind and configuration."""
    missing = [m for m in modalities if m not in encoder_cfgs]
    if missing:
        raise ConfigError(f"train.<profile>.<dataset>.encoders: no encoder configured for {missing}")
    return {m: build_encoder(kind, encoder_cfgs[m]) for m, kind in modalities.items()}


def build_model(
    modalities: dict[str, str], encoder_cfgs: dict[str, dict], fusion: str, num_classes: int, **fusion_kwargs
) -> MultimodalModel:
    """Encoders per modality (by kind) and the named fusion over their feature sizes."""
    encoders = build_encoders(modalities, encoder_cfgs)
    dims = {m: enc.out_dim for m, enc in encoders.items()}
    return MultimodalModel(encoders, FUSIONS.get(fusion)(dims, num_classes, **fusion_kwargs))


@contextlib.contextmanager
def in_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Every module of ``model`` in training (``True``) or eval mode for the block; each module's own
    mode restored afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for module, was_training in modes:
            module.training = was_training

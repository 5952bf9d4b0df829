"""Shared fixtures: tiny models and batches built in memory (random init, no downloads)."""

from __future__ import annotations

import pytest
import torch

from mmbalance.methods.base import Batch, ModelSpec

TINY_MODALITIES = {"audio": "spectrogram", "video": "frames"}
TINY_ENCODERS = {"audio": {"name": "resnet10", "width": 4}, "video": {"name": "resnet10", "width": 4}}
NUM_CLASSES = 3


@pytest.fixture
def tiny_spec() -> ModelSpec:
    return ModelSpec(modalities=dict(TINY_MODALITIES), encoders=dict(TINY_ENCODERS), num_classes=NUM_CLASSES)


def make_batch(batch_size: int = 6, seed: int = 0) -> Batch:
    """A batch shaped like the feature store's: audio (B, F, T) float16, video (B, T, 3, H, W) uint8."""
    gen = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch_size, 24, 30, generator=gen).half()
    video = torch.randint(0, 256, (batch_size, 2, 3, 16, 16), generator=gen, dtype=torch.uint8)
    labels = torch.arange(batch_size) % NUM_CLASSES
    return Batch(inputs={"audio": audio, "video": video}, labels=labels, index=torch.arange(batch_size))


@pytest.fixture
def tiny_batch() -> Batch:
    return make_batch()

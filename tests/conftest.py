"""Shared fixtures: tiny models and batches built in memory (random init, no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmbalance.engine.types import Batch, ModelSpec

REPO = Path(__file__).resolve().parents[1]
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


TINY_OVERRIDES = {
    "data.synthav.clips_per_class": {"train": 4, "val": 2, "test": 3},
    "data.synthav.duration": 1.0,
    "data.synthav.video.fps": 4,
    "data.synthav.video.size": 32,
    "features.embedded.synthav.audio.seconds": 1.0,
    "features.embedded.synthav.video": {"frames": 2, "rate": 2.0, "size": 16},
    "train.embedded.synthav.epochs": 3,
    "train.embedded.synthav.batch_size": 8,
    "train.embedded.synthav.encoders": {
        "audio": {"name": "resnet10", "width": 4, "input_size": [32, 32]},
        "video": {"name": "resnet10", "width": 4},
    },
    "experiment.seeds": [0, 1],
}


def tiny_params(root, **extra) -> dict:
    """The repository's params.yaml shrunk to a seconds-long run, with paths under ``root``."""
    import yaml

    from mmbalance.config import apply_overrides, validate

    repo_params = yaml.safe_load((REPO / "params.yaml").read_text())
    overrides = {**TINY_OVERRIDES, **extra}
    overrides.update({"paths.data": str(root / "data"), "paths.results": str(root / "results")})
    overrides["paths.tables"] = str(root / "paper_tables")
    overrides["paths.checkpoints"] = str(root / "checkpoints")
    params = apply_overrides(repo_params, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    validate(params)
    return params


def write_params(path, params: dict):
    import yaml

    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory):
    """A tiny synthav dataset generated and extracted once per test session; returns its params file."""
    from mmbalance.config import data_config, feature_config
    from mmbalance.data.extract import extract
    from mmbalance.data.generate import generate
    from mmbalance.paths import feature_dir, raw_dir

    root = tmp_path_factory.mktemp("workspace")
    params = tiny_params(root)
    generate("synthav", data_config(params, "synthav"), raw_dir(params, "synthav"), workers=1, progress=False)
    extract(
        "synthav",
        raw_dir(params, "synthav"),
        feature_config(params, "synthav"),
        feature_dir(params, "synthav"),
        workers=1,
        progress=False,
    )
    return write_params(root / "params.yaml", params)

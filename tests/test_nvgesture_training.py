"""NVGesture from its release layout to trained models: prepare → extract → train with the three clip
encoders, for the methods whose three-modality behaviour differs most, and every method built from the
repository's NVGesture presets (the per-modality option lists must have three entries)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmbalance import config, paths
from mmbalance.data.datasets import nvgesture
from mmbalance.data.extract import extract
from mmbalance.data.generate import generate
from mmbalance.engine.loop import build_method, train
from mmbalance.registry import DATASETS
from tests.conftest import REPO
from tests.nvgesture_fixtures import EXPECTED, data_config, make_release

TRAINED = ["concat", "affine", "ogm_ge", "mslr", "lfm_h", "mie", "aug", "greedy"]
"""Concat as the plain case; the others each handle three modalities in their own way (docs/methods.md)."""


def nvgesture_params(root: Path, release: Path) -> dict:
    """The repository's params with NVGesture only, its data at ``release`` and a seconds-long preset."""
    import yaml

    from mmbalance.config import apply_overrides, validate

    encoders = {
        m: {"name": "cnn3d", "in_channels": c, "normalization": n, "width": 4, "pretrained": None}
        for m, c, n in (("rgb", 3, "imagenet"), ("depth", 1, "unit"), ("flow", 2, "flow"))
    }
    overrides = {
        "experiment.datasets": ["nvgesture"],
        "experiment.seeds": [0],
        "data.nvgesture": data_config(release),
        "features.embedded.nvgesture": {
            "rgb": {"content": "rgb", "frames": 8, "size": 16},
            "depth": {"content": "depth", "frames": 8, "size": 16},
            "flow": {"content": "flow", "frames": 8, "size": 16, "bound": 10.0},
        },
        "train.embedded.nvgesture.clip_sampling": {"train_frames": 6, "crop": 12},
        "train.embedded.nvgesture.epochs": 1,
        "train.embedded.nvgesture.batch_size": 8,
        "train.embedded.nvgesture.encoders": encoders,
        "paths.data": str(root / "data"),
        "paths.results": str(root / "results"),
        "paths.tables": str(root / "paper_tables"),
        "paths.checkpoints": str(root / "checkpoints"),
    }
    repo = yaml.safe_load((REPO / "params.yaml").read_text())
    params = apply_overrides(repo, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    validate(params)
    return params


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("nvgesture")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nvgesture.NVGesture, "expected_lines", EXPECTED)
        params = nvgesture_params(root, make_release(root / "release"))
        raw = paths.raw_dir(params, "nvgesture")
        generate("nvgesture", config.data_config(params, "nvgesture"), raw, progress=False)
    store = paths.feature_dir(params, "nvgesture")
    extract("nvgesture", raw, config.feature_config(params, "nvgesture"), store, progress=False)
    return params, store


@pytest.mark.parametrize("method", TRAINED)
def test_one_training_epoch_on_three_modalities(extracted, method: str, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    params, store = extracted
    resolved = paths.resolve_run(params, "nvgesture", method, 0)
    metrics = train(resolved, store, tmp_path / "run", device="cpu", progress=False)
    assert {"rgb", "depth", "flow"} <= set(metrics["heads"])
    for head in metrics["heads"]:
        assert 0.0 <= metrics["protocols"]["last"]["test"][head]["acc"] <= 1.0
    again = train(resolved, store, tmp_path / "again", device="cpu", progress=False)
    assert again["protocols"] == metrics["protocols"]  # same seed, same crops, same numbers


@pytest.mark.parametrize("profile", ["embedded", "paper"])
def test_every_method_builds_from_the_repository_presets(profile: str) -> None:
    params = config.load_params(
        REPO / "params.yaml", ["experiment.datasets=[nvgesture]", f"profile={profile}"]
    )
    plugin = DATASETS.get("nvgesture")()
    methods = [m for m in config.experiment_methods(params) if config.applies(params, m, "nvgesture")]
    assert "concat_resnet34" not in methods  # ResNet34 audio/video encoders: not for three clip modalities
    for method in methods:
        resolved = paths.resolve_run(params, "nvgesture", method, 0)
        build_method(resolved, dict(plugin.modalities), 25)

"""Every registered plugin, tested the same way (as timm tests every model; methods: tests/test_methods.py).

- datasets: prepare → extract → one training step on the dataset's fixture (tests/dataset_fixtures.py);
- encoders (trunks) and the adapters of the modality kinds: a tiny one maps a batch to ``(batch, out_dim)``
  finite features, and gradients reach its weights;
- fusions: logits for the fused head (or none) and every modality, gradients to the features;
- modality kinds: the array of one raw file has the declared shape and dtype;
- audio front-ends: the spectrogram of a WAV has the shape the spectrogram kind declares for it.

A plugin added without its case here fails with a message saying what to add (CONTRIBUTING.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmbalance import config, paths
from mmbalance.data.extract import extract
from mmbalance.data.generate import generate
from mmbalance.data.store import open_store
from mmbalance.engine.loop import Trainer
from mmbalance.models.encoders.adapters import build_encoder
from mmbalance.registry import ADAPTERS, DATASETS, ENCODERS, FRONTENDS, FUSIONS, KINDS
from tests.dataset_fixtures import FIXTURES

BATCH = 3
CLASSES = 4


# --- datasets ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_prepares_extracts_and_trains_a_step(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if name not in FIXTURES:
        pytest.fail(
            f"dataset '{name}' has no test fixture: add a builder to tests/dataset_fixtures.py "
            "(CONTRIBUTING.md, 'Add a dataset')"
        )
    torch.set_num_threads(1)
    params = FIXTURES[name](tmp_path, monkeypatch)
    assert params["experiment"]["datasets"] == [name]
    raw = paths.raw_dir(params, name)
    generate(name, config.data_config(params, name), raw, workers=1, progress=False)
    features = paths.feature_dir(params, name)
    extract(name, raw, config.feature_config(params, name), features, workers=1, progress=False)
    store = open_store(features, verify=True)
    assert store.modalities == dict(DATASETS.get(name).modalities)
    assert all(len(store.split(split)) > 0 for split in ("train", "val", "test"))
    trainer = Trainer(paths.resolve_run(params, name, "concat", 0), features, tmp_path / "run", device="cpu")
    batch = next(iter(trainer.batches["train"].epoch(0)))
    logs = trainer.method.training_step(batch, trainer.context(0))
    assert math.isfinite(logs["loss"])


# --- encoders and the kinds' adapters ---------------------------------------------------------------
def kind_input(kind: str) -> torch.Tensor:
    """A tiny batch of a modality kind as the feature store holds it."""
    gen = torch.Generator().manual_seed(0)
    if kind == "spectrogram":
        return torch.randn(BATCH, 24, 30, generator=gen).half()
    if kind == "frames":
        return torch.randint(0, 256, (BATCH, 2, 3, 16, 16), generator=gen, dtype=torch.uint8)
    if kind == "image":
        return torch.randint(0, 256, (BATCH, 3, 16, 16), generator=gen, dtype=torch.uint8)
    if kind == "text":
        ids = torch.randint(1, 100, (BATCH, 1, 8), generator=gen, dtype=torch.int32)
        return torch.cat([ids, torch.ones_like(ids), torch.zeros_like(ids)], dim=1)
    if kind == "clip":
        return torch.randint(0, 256, (BATCH, 3, 8, 32, 32), generator=gen, dtype=torch.uint8)
    raise AssertionError(f"no tiny input for modality kind '{kind}': add one to kind_input")


ENCODER_CASES = {
    "resnet10": ("spectrogram", {"name": "resnet10", "width": 4}),
    "resnet18": ("frames", {"name": "resnet18", "width": 4}),
    "resnet34": ("image", {"name": "resnet34", "width": 4}),
    "cnn3d": ("clip", {"name": "cnn3d", "in_channels": 3, "normalization": "imagenet", "width": 4}),
    "i3d": ("clip", {"name": "i3d", "in_channels": 3, "normalization": "imagenet"}),
}
"""A registered encoder (trunk) → a modality kind it serves and a tiny configuration of it."""
ADAPTER_CASES = {
    "spectrogram": {"name": "resnet10", "width": 4, "input_size": [16, 16]},
    "frames": {"name": "resnet10", "width": 4, "input_size": [16, 16]},
    "image": {"name": "resnet10", "width": 4},
    "text": {"name": "bert_tiny"},
    "clip": {"name": "cnn3d", "in_channels": 3, "normalization": "imagenet", "width": 4},
}
"""A modality kind's adapter → a tiny encoder configuration of it."""


def check_encoder(kind: str, cfg: dict) -> None:
    torch.manual_seed(0)
    encoder = build_encoder(kind, cfg)
    features = encoder(kind_input(kind))
    assert features.shape == (BATCH, encoder.out_dim) and torch.isfinite(features).all()
    features.square().mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


@pytest.mark.parametrize("name", ENCODERS.names())
def test_every_encoder_builds_and_gives_features(name: str) -> None:
    if name not in ENCODER_CASES:
        pytest.fail(f"encoder '{name}' has no case: add a kind and a tiny configuration to ENCODER_CASES")
    check_encoder(*ENCODER_CASES[name])


@pytest.mark.parametrize("kind", ADAPTERS.names())
def test_every_modality_kind_has_an_adapter_that_gives_features(kind: str) -> None:
    if kind not in ADAPTER_CASES:
        pytest.fail(f"adapter of kind '{kind}' has no case: add a tiny configuration to ADAPTER_CASES")
    assert kind in KINDS  # an adapter encodes what a registered kind stores
    check_encoder(kind, ADAPTER_CASES[kind])


# --- fusions ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FUSIONS.names())
def test_every_fusion_gives_logits_per_head(name: str) -> None:
    torch.manual_seed(0)
    dims = {"audio": 6, "video": 4}  # unequal widths, two modalities (what every fusion takes)
    fusion = FUSIONS.get(name)(dims, CLASSES)
    features = {m: torch.randn(BATCH, d, requires_grad=True) for m, d in dims.items()}
    out = fusion(features)
    assert set(out.modality) == set(dims)
    heads = [out.modality[m] for m in dims] + ([] if out.fused is None else [out.fused])
    assert all(h.shape == (BATCH, CLASSES) and torch.isfinite(h).all() for h in heads)
    sum(h.sum() for h in heads).backward()
    assert any(f.grad is not None and f.grad.abs().sum() > 0 for f in features.values())


# --- modality kinds and audio front-ends ------------------------------------------------------------
def wav_file(folder: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    path = folder / "clip.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


def raw_file(kind: str, folder: Path) -> tuple[Path, dict]:
    """One raw file of a modality kind and its feature settings."""
    if kind == "spectrogram":
        return wav_file(folder), {"frontend": "pmr", "seconds": 1.0}
    if kind == "frames":
        from tests.clip_fixtures import write_clip

        return write_clip(folder / "clip.mp4", seconds=1.0), {"frames": 2, "rate": 2.0, "size": 16}
    if kind == "image":
        from tests.imagetext_fixtures import jpeg_bytes

        (folder / "image.jpg").write_bytes(jpeg_bytes(0))
        return folder / "image.jpg", {"size": 16, "resize": "stretch"}
    if kind == "text":
        (folder / "text.txt").write_text("a tiny post\n", encoding="utf-8")
        return folder / "text.txt", {"max_length": 8}
    if kind == "clip":
        from tests.nvgesture_fixtures import color_frames, write_avi

        write_avi(folder / "clip.avi", color_frames(0, 6))
        return folder / "clip.avi", {"content": "rgb", "frames": 4, "size": 16}
    raise AssertionError(f"no raw file for modality kind '{kind}': add one to raw_file")


@pytest.mark.parametrize("kind", KINDS.names())
def test_every_modality_kind_computes_its_declared_array(kind: str, tmp_path: Path) -> None:
    plugin = KINDS.get(kind)()
    path, cfg = raw_file(kind, tmp_path)
    cfg = plugin.check("m", cfg)
    array = plugin.compute(path, cfg)
    assert array.shape == plugin.shape(cfg) and array.dtype == plugin.dtype


@pytest.mark.parametrize("name", FRONTENDS.names())
def test_every_audio_frontend_gives_the_shape_the_kind_declares(name: str, tmp_path: Path) -> None:
    kind = KINDS.get("spectrogram")()
    cfg = kind.check("audio", {"frontend": name, "seconds": 1.0})
    spectrogram = kind.compute(wav_file(tmp_path, seconds=0.7), cfg)
    assert spectrogram.shape == kind.shape(cfg) and np.isfinite(spectrogram.astype(np.float32)).all()

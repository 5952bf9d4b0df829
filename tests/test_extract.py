"""Feature extraction into the packed store: shapes, values, parallelism, bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmbalance.data.datasets._base import sha256_file
from mmbalance.data.extract import extract
from mmbalance.data.generate import generate
from mmbalance.data.store import open_store
from mmbalance.data.video import read_frames
from mmbalance.errors import ConfigError, DataError
from mmbalance.registry import FRONTENDS
from tests.test_synthav import tiny_config

FEATURES = {"audio": {"frontend": "pmr", "seconds": 3.0}, "video": {"frames": 3, "rate": 2.0, "size": 16}}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    generate("synthav", tiny_config(duration=1.0), out, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def store_dir(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("features")
    extract("synthav", raw, FEATURES, out, workers=1, progress=False)
    return out


def test_documented_layout_and_shapes(store_dir: Path) -> None:
    manifest = json.loads((store_dir / "manifest.json").read_text())
    assert manifest["modalities"] == {"audio": "spectrogram", "video": "frames"}
    assert manifest["class_names"] == ["c0", "c1", "c2"]
    assert manifest["features"] == FEATURES
    assert sorted(p.name for p in store_dir.iterdir()) == ["manifest.json", "test", "train", "val"]
    for split, count in {"train": 6, "val": 3, "test": 3}.items():
        info = manifest["splits"][split]
        assert info["count"] == count
        files = info["files"]
        assert files["audio.npy"]["shape"] == [count, 257, 299] and files["audio.npy"]["dtype"] == "float16"
        assert files["video.npy"]["shape"] == [count, 3, 3, 16, 16] and files["video.npy"]["dtype"] == "uint8"
        assert files["labels.npy"]["shape"] == [count] and files["labels.npy"]["dtype"] == "int64"
        assert set(files) == {"audio.npy", "video.npy", "labels.npy", "index.csv"}
        for name, entry in files.items():
            assert sha256_file(store_dir / split / name) == entry["sha256"]


def test_values_equal_the_frontend_and_decoder(raw: Path, store_dir: Path) -> None:
    split = open_store(store_dir).split("val")
    wav = raw / "AudioWAV" / f"{split.ids[1]}.wav"
    mp4 = raw / "VideoMP4" / f"{split.ids[1]}.mp4"
    expected_audio = FRONTENDS.get("pmr")(3.0)(wav).astype(np.float16)
    np.testing.assert_array_equal(split.arrays["audio"][1], expected_audio)
    np.testing.assert_array_equal(split.arrays["video"][1], read_frames(mp4, 3, 2.0, 16))


def test_open_store_memory_maps(store_dir: Path) -> None:
    store = open_store(store_dir, verify=True)
    assert list(store.modalities) == ["audio", "video"]
    assert store.num_classes == 3 and store.class_names == ["c0", "c1", "c2"]
    train = store.split("train")
    assert len(train) == 6
    assert train.labels.dtype == np.int64 and train.labels.tolist() == [0, 1, 2, 0, 1, 2]
    assert train.ids[:2] == ["train_00000_c0", "train_00001_c1"]
    for array in train.arrays.values():
        assert isinstance(array, np.memmap) and array.mode == "r"
    with pytest.raises(KeyError):
        store.split("dev")


def test_two_workers_give_the_same_arrays(raw: Path, store_dir: Path, tmp_path: Path) -> None:
    extract("synthav", raw, FEATURES, tmp_path, workers=2, progress=False)
    one = json.loads((store_dir / "manifest.json").read_text())["splits"]
    two = json.loads((tmp_path / "manifest.json").read_text())["splits"]
    assert one == two


def test_reextraction_replaces_a_store_cleanly(raw: Path, tmp_path: Path) -> None:
    other = {"audio": {"frontend": "ogm_ge", "seconds": 3.0}, "video": {"frames": 1, "rate": 1.0, "size": 8}}
    extract("synthav", raw, FEATURES, tmp_path, progress=False)
    extract("synthav", raw, other, tmp_path, progress=False)
    store = open_store(tmp_path, verify=True)
    assert store.split("test").arrays["audio"].shape == (3, 257, 188)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "test", "train", "val"]


def corrupt_copy(raw: Path, tmp_path: Path, update_manifest: bool) -> tuple[Path, Path]:
    """A copy of ``raw`` with one WAV cut in half (optionally with its manifest hash updated)."""
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    victim = copy / "AudioWAV" / "val_00001_c1.wav"
    victim.write_bytes(victim.read_bytes()[:2000])
    if update_manifest:
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["files"]["AudioWAV/val_00001_c1.wav"] = sha256_file(victim)
        (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy, victim


@pytest.mark.parametrize(("update_manifest", "reason"), [(False, "sha256"), (True, "truncated")])
@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_input_stops_extraction_naming_the_file(
    raw: Path, tmp_path: Path, update_manifest: bool, reason: str, workers: int
) -> None:
    copy, victim = corrupt_copy(raw, tmp_path, update_manifest)
    out = tmp_path / "features"
    with pytest.raises(DataError, match=reason) as info:
        extract("synthav", copy, FEATURES, out, workers=workers, progress=False)
    assert str(victim) in str(info.value)
    assert list(out.iterdir()) == []  # no manifest, no partial arrays
    with pytest.raises(DataError, match="not a complete feature store"):
        open_store(out)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_an_edited_split_file_stops_extraction_naming_it(raw: Path, tmp_path: Path, split: str) -> None:
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    split_file = copy / "splits" / f"{split}.csv"
    header, first, *rest = split_file.read_text().splitlines(keepends=True)
    label = first.split(",")[1]
    edited = first.replace(f",{label},", f",{(int(label) + 1) % 2},", 1)
    split_file.write_text("".join([header, edited, *rest]))
    with pytest.raises(DataError, match="sha256 does not match the raw manifest") as info:
        extract("synthav", copy, FEATURES, tmp_path / "features", progress=False)
    assert str(split_file) in str(info.value)
    split_file.unlink()
    with pytest.raises(DataError, match=f"{split_file}: file not found"):
        extract("synthav", copy, FEATURES, tmp_path / "features", progress=False)


def test_missing_input_file(raw: Path, tmp_path: Path) -> None:
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    (copy / "VideoMP4" / "test_00002_c2.mp4").unlink()
    with pytest.raises(DataError, match=r"test_00002_c2\.mp4"):
        extract("synthav", copy, FEATURES, tmp_path / "features", progress=False)


def test_missing_raw_manifest(raw: Path, tmp_path: Path) -> None:
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(DataError, match=str(copy / "manifest.json")):
        extract("synthav", copy, FEATURES, tmp_path / "features", progress=False)


def test_feature_config_is_checked(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"video\.rate"):
        extract("synthav", raw, {"audio": FEATURES["audio"], "video": {"frames": 3, "size": 16}}, tmp_path)
    with pytest.raises(ConfigError, match="nope"):
        extract("synthav", raw, {**FEATURES, "audio": {"frontend": "nope", "seconds": 3.0}}, tmp_path)


@pytest.mark.parametrize("size", [(32, 32), (7, 40), (257, 1), (256, 299)])
def test_pooled_spectrogram_equals_torch_adaptive_pooling(size: tuple[int, int]) -> None:
    """``pool`` is the encoder's ``input_size`` done once: torch's adaptive average pooling, block edges
    included (uneven blocks overlap by one bin where the sizes do not divide)."""
    import torch
    import torch.nn.functional as F

    from mmbalance.data.kinds.spectrogram import adaptive_average

    x = np.random.default_rng(0).normal(size=(257, 299))
    expected = F.adaptive_avg_pool2d(torch.from_numpy(x)[None, None], size)[0, 0].numpy()
    np.testing.assert_allclose(adaptive_average(x, size), expected, rtol=1e-12, atol=1e-12)


def test_pooled_store_holds_the_pooled_frontend_output(raw: Path, tmp_path: Path) -> None:
    from mmbalance.data.kinds.spectrogram import adaptive_average

    features = {**FEATURES, "audio": {**FEATURES["audio"], "pool": [32, 24]}}
    extract("synthav", raw, features, tmp_path, workers=1, progress=False)
    split = open_store(tmp_path).split("val")
    assert split.arrays["audio"].shape == (3, 32, 24)
    full = FRONTENDS.get("pmr")(3.0)(raw / "AudioWAV" / f"{split.ids[0]}.wav")
    np.testing.assert_array_equal(
        split.arrays["audio"][0], adaptive_average(full, (32, 24)).astype(np.float16)
    )


@pytest.mark.parametrize("pool", [[0, 10], [300, 10], [10]])
def test_pool_outside_the_spectrogram_is_a_config_error(raw: Path, tmp_path: Path, pool: list[int]) -> None:
    features = {**FEATURES, "audio": {**FEATURES["audio"], "pool": pool}}
    with pytest.raises(ConfigError, match=r"audio\.pool"):
        extract("synthav", raw, features, tmp_path, workers=1, progress=False)

"""Opening a feature store: completeness, shape checks and optional re-hashing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmbalance.data.extract import extract
from mmbalance.data.generate import generate
from mmbalance.data.store import open_store
from mmbalance.errors import DataError
from tests.test_synthav import tiny_config

FEATURES = {"audio": {"frontend": "ogm_ge", "seconds": 1.0}, "video": {"frames": 2, "rate": 4.0, "size": 8}}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    generate("synthav", tiny_config(), raw, progress=False)
    out = tmp_path_factory.mktemp("features")
    extract("synthav", raw, FEATURES, out, progress=False)
    return out


@pytest.fixture
def store_dir(pristine: Path, tmp_path: Path) -> Path:
    """A private copy each test may damage."""
    return Path(shutil.copytree(pristine, tmp_path / "store"))


def test_opens_and_loads_lazily(store_dir: Path) -> None:
    store = open_store(store_dir, verify=True)
    split = store.split("test")
    assert split is store.split("test")
    assert split.arrays["audio"].shape == (3, 257, 63) and split.arrays["audio"].dtype == np.float16
    assert split.arrays["video"].shape == (3, 2, 3, 8, 8)
    assert store.manifest["dataset"] == "synthav"


def test_incomplete_store_is_refused(store_dir: Path) -> None:
    (store_dir / "manifest.json").unlink()
    with pytest.raises(DataError, match=f"{store_dir}: not a complete feature store"):
        open_store(store_dir)


def test_missing_array_is_refused(store_dir: Path) -> None:
    (store_dir / "val" / "video.npy").unlink()
    with pytest.raises(DataError, match=r"video\.npy"):
        open_store(store_dir)


def test_shape_mismatch_is_refused(store_dir: Path) -> None:
    np.save(store_dir / "train" / "audio.npy", np.zeros((5, 257, 63), dtype=np.float16))
    with pytest.raises(DataError, match=r"audio\.npy.*does not match the manifest"):
        open_store(store_dir)


def test_verify_detects_changed_bytes(store_dir: Path) -> None:
    path = store_dir / "train" / "video.npy"
    array = np.load(path)
    array[0, 0, 0, 0, 0] ^= 1
    np.save(path, array)
    open_store(store_dir)  # shapes still match
    with pytest.raises(DataError, match=r"video\.npy: sha256"):
        open_store(store_dir, verify=True)


def test_foreign_manifest_is_refused(store_dir: Path) -> None:
    (store_dir / "manifest.json").write_text(json.dumps({"dataset": "synthav", "files": {}}))
    with pytest.raises(DataError, match="not a feature store manifest"):
        open_store(store_dir)

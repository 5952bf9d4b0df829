"""The packed feature store: one memory-mapped array per split and modality (architecture.md, data flow).

Layout of a store folder (written by :func:`mmbalance.data.extract.extract`)::

    <split>/<modality>.npy   audio (N, 257, T) float16, video (N, frames, 3, size, size) uint8,
                             clip (N, C, frames, size, size) uint8
    <split>/labels.npy       int64 (N,)
    <split>/index.csv        row,clip_id,label,<modality>_file... (source files relative to the raw folder)
    manifest.json            written last: dataset, feature settings, modalities and kinds, class
                             names, per split the count and, for every file, its sha256 (and the
                             shape and dtype of arrays); ``clips``: per split the listed, found and
                             missing clips, where the raw data reports them

A folder without ``manifest.json`` is not a store: extraction writes the manifest last, after
every array is complete under its final name.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.data.datasets._base import MANIFEST, SPLITS, sha256_file
from mmbalance.errors import DataError

FORMAT_VERSION = 1


@dataclass
class Split:
    """One split of a store: memory-mapped arrays per modality, labels and clip ids (row order)."""

    name: str
    arrays: dict[str, np.ndarray]
    labels: np.ndarray
    ids: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class FeatureStore:
    """A complete feature store opened read-only (see :func:`open_store`)."""

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.modalities: dict[str, str] = dict(manifest["modalities"])
        self.class_names: list[str] = list(manifest["class_names"])
        self.num_classes = len(self.class_names)
        self._splits: dict[str, Split] = {}

    def split(self, name: str) -> Split:
        """The split ``name`` (``train``, ``val`` or ``test``), arrays memory-mapped read-only."""
        if name not in self.manifest["splits"]:
            raise KeyError(f"{self.root}: no split '{name}' (have {', '.join(self.manifest['splits'])})")
        if name not in self._splits:
            folder = self.root / name
            arrays = {m: _load(folder / f"{m}.npy", self.manifest, name) for m in self.modalities}
            labels = np.asarray(_load(folder / "labels.npy", self.manifest, name))
            with open(folder / "index.csv", newline="") as handle:
                ids = [row["clip_id"] for row in csv.DictReader(handle)]
            if len(ids) != labels.shape[0]:
                raise DataError(f"{folder / 'index.csv'}: {len(ids)} rows for {labels.shape[0]} labels")
            self._splits[name] = Split(name=name, arrays=arrays, labels=labels, ids=ids)
        return self._splits[name]


def _load(path: Path, manifest: dict[str, Any], split: str) -> np.ndarray:
    """``np.load(mmap_mode="r")`` with the shape and dtype checked against the manifest."""
    entry = manifest["splits"][split]["files"][path.name]
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read array ({exc})") from exc
    if list(array.shape) != entry["shape"] or str(array.dtype) != entry["dtype"]:
        raise DataError(
            f"{path}: shape {list(array.shape)} {array.dtype} does not match the manifest "
            f"({entry['shape']} {entry['dtype']}); extract again"
        )
    return array


def array_entry(path: Path) -> dict[str, Any]:
    """The manifest entry of an ``.npy`` file: shape, dtype and sha256."""
    array = np.load(path, mmap_mode="r")
    return {"shape": list(array.shape), "dtype": str(array.dtype), "sha256": sha256_file(path)}


def open_store(feature_dir: Path, verify: bool = False) -> FeatureStore:
    """Open the store in ``feature_dir``; check every array's shape and dtype (and sha256 if ``verify``).

    A folder without ``manifest.json`` raises :class:`DataError` ("not a complete feature store").
    """
    root = Path(feature_dir)
    path = root / MANIFEST
    if not path.is_file():
        raise DataError(f"{root}: not a complete feature store (no {MANIFEST}); run extract")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc})") from exc
    if manifest.get("format") != FORMAT_VERSION or set(manifest.get("splits", {})) != set(SPLITS):
        raise DataError(f"{path}: not a feature store manifest of format {FORMAT_VERSION}; run extract")
    store = FeatureStore(root, manifest)
    for split, info in manifest["splits"].items():
        for name, entry in info["files"].items():
            file = root / split / name
            if not file.is_file():
                raise DataError(f"{file}: missing from the feature store; run extract")
            if name.endswith(".npy"):
                _load(file, manifest, split)
            if verify and sha256_file(file) != entry["sha256"]:
                raise DataError(f"{file}: sha256 does not match {path}; the store is corrupt, run extract")
    return store

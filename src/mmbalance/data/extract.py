"""``mmbalance extract``: raw files → packed, memory-mapped feature store (see :mod:`mmbalance.data.store`).

Per modality kind: ``spectrogram`` runs the audio front-end named in ``features.<profile>.<dataset>
.<modality>.frontend`` with its ``seconds`` (datasets.md §1) and stores float16; ``frames`` decodes
``frames`` frames at ``rate`` fps resized to ``size`` (datasets.md §2, :mod:`mmbalance.data.video`)
and stores uint8; ``clip`` stores a video segment as uint8 ``(C, frames, size, size)`` (NVGesture's
RGB, depth and optical flow, :mod:`mmbalance.data.kinds.clip`); images and text see their kinds.

A clip's own settings of a modality (:attr:`~mmbalance.data.datasets._base.Item.settings`, e.g.
NVGesture's gesture segment) are merged over the modality's feature settings for that clip.

The raw manifest's per-split clip counts (listed, found, missing; :func:`~mmbalance.data.datasets.
base.clip_availability`), where the dataset reports them, are copied into the store's manifest as
``clips``, checked against the number of clips extracted; training copies them into ``metrics.json``.

Every file extraction reads is first checked against the sha256 in the raw manifest: the split
files (``splits/<split>.csv``, all a dataset's ``items`` reads, so an edited label is refused)
before they are parsed, every media file (a file cut short can still decode) before it is
decoded in ``workers`` processes (numpy, librosa, PyAV and OpenCV; never torch). The
arrays are filled in a hidden staging folder inside ``out_dir``; only when every split is
complete are they moved into place and ``manifest.json`` written, last and atomically. Any
missing, altered, truncated or undecodable input stops extraction with a :class:`DataError`
naming the file and leaves no manifest behind (a previous complete store in ``out_dir`` stays
intact until the new one is ready to replace it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import av
import librosa
import numpy as np

from mmbalance import __version__
from mmbalance.data.datasets._base import (
    MANIFEST,
    SPLIT_DIR,
    SPLITS,
    Item,
    clip_availability,
    parallel_map,
    sha256_file,
)
from mmbalance.data.store import FORMAT_VERSION, array_entry
from mmbalance.errors import ConfigError, DataError
from mmbalance.io import write_csv, write_json
from mmbalance.registry import DATASETS, KINDS


def _modality_config(modalities: Mapping[str, str], feature_cfg: Mapping[str, Any]) -> dict[str, dict]:
    """Check ``feature_cfg`` has what each modality's kind needs; return it per modality."""
    out = {}
    for modality, kind in modalities.items():
        if kind not in KINDS:
            raise ConfigError(f"modality '{modality}': no feature extractor for kind '{kind}'")
        out[modality] = KINDS.get(kind)().check(modality, feature_cfg.get(modality))
    return out


def feature_shape(kind: str, cfg: Mapping[str, Any]) -> tuple[int, ...]:
    """The per-clip array shape of a modality of ``kind`` with settings ``cfg``."""
    return KINDS.get(kind)().shape(cfg)


def _features(
    specs: Mapping[str, tuple[str, dict]], task: tuple[dict[str, str], dict[str, str], dict[str, dict]]
) -> dict[str, np.ndarray]:
    """Worker: check the files of one clip against their sha256 and compute each modality's features
    (with the clip's own settings of the modality merged over the modality's)."""
    paths, expected, settings = task
    out = {}
    for modality, (kind, cfg) in specs.items():
        path = Path(paths[modality])
        _verify(path, expected[modality])
        out[modality] = KINDS.get(kind)().compute(path, {**cfg, **settings.get(modality, {})})
    return out


def _verify(path: Path, sha256: str) -> None:
    """A :class:`DataError` naming ``path`` unless the file exists with the raw manifest's ``sha256``."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if sha256_file(path) != sha256:
        raise DataError(f"{path}: sha256 does not match the raw manifest (altered or truncated file)")


def _expected(path: Path, raw_dir: Path, hashes: Mapping[str, str], raw_manifest: Path) -> str:
    """The sha256 the raw manifest holds for ``path`` (a file inside ``raw_dir``)."""
    rel = Path(path).relative_to(raw_dir).as_posix()
    if rel not in hashes:
        raise DataError(f"{path}: not listed in {raw_manifest}")
    return hashes[rel]


def _tasks(items: list[Item], raw_dir: Path, hashes: Mapping[str, str], raw_manifest: Path) -> list[tuple]:
    tasks = []
    for item in items:
        expected = {m: _expected(p, raw_dir, hashes, raw_manifest) for m, p in item.paths.items()}
        tasks.append(({m: str(p) for m, p in item.paths.items()}, expected, item.settings))
    return tasks


def _extract_split(
    split: str,
    items: list[Item],
    tasks: list[tuple],
    specs: Mapping[str, tuple[str, dict]],
    raw_dir: Path,
    folder: Path,
    workers: int,
    progress: bool,
) -> dict[str, Any]:
    """Fill ``folder`` with the split's arrays, labels and index; return its manifest entry."""
    folder.mkdir()
    arrays = {
        modality: np.lib.format.open_memmap(
            folder / f"{modality}.npy",
            mode="w+",
            dtype=KINDS.get(kind).dtype,
            shape=(len(items), *feature_shape(kind, cfg)),
        )
        for modality, (kind, cfg) in specs.items()
    }
    compute = partial(_features, dict(specs))
    for row, features in enumerate(parallel_map(compute, tasks, workers, progress, desc=f"extract {split}")):
        for modality, array in features.items():
            arrays[modality][row] = array
    for array in arrays.values():
        array.flush()
    del arrays
    np.save(folder / "labels.npy", np.array([item.label for item in items], dtype=np.int64))
    fields = ["row", "clip_id", "label", *(f"{m}_file" for m in specs)]
    rows = [
        {
            "row": row,
            "clip_id": item.clip_id,
            "label": item.label,
            **{f"{m}_file": Path(item.paths[m]).relative_to(raw_dir).as_posix() for m in specs},
        }
        for row, item in enumerate(items)
    ]
    write_csv(folder / "index.csv", rows, fields)
    files: dict[str, Any] = {f"{m}.npy": array_entry(folder / f"{m}.npy") for m in specs}
    files["labels.npy"] = array_entry(folder / "labels.npy")
    files["index.csv"] = {"sha256": sha256_file(folder / "index.csv")}
    return {"count": len(items), "files": files}


def _publish(staging: Path, out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Swap the staged splits into ``out_dir`` and write the manifest last."""
    path = out_dir / MANIFEST
    path.unlink(missing_ok=True)
    for split in SPLITS:
        target = out_dir / split
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging / split, target)
    write_json(path, manifest)
    return path


def extract(
    dataset: str,
    raw_dir: Path,
    feature_cfg: Mapping[str, Any],
    out_dir: Path,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Extract the features of every split of a prepared ``raw_dir`` into the store ``out_dir``.

    ``feature_cfg`` is ``features.<profile>.<dataset>`` of ``params.yaml``. Returns the path of
    the store's manifest. The arrays do not depend on ``workers``.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    raw_manifest_path = raw_dir / MANIFEST
    if not raw_manifest_path.is_file():
        raise DataError(
            f"{raw_manifest_path}: raw manifest not found (the raw data is incomplete); run generate"
        )
    try:
        raw_manifest = json.loads(raw_manifest_path.read_text())
        hashes, data_cfg = raw_manifest["files"], raw_manifest["config"]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{raw_manifest_path}: unreadable raw manifest ({exc!r})") from exc
    plugin = DATASETS.get(dataset)()
    cfg = _modality_config(plugin.modalities, feature_cfg)
    specs = {modality: (kind, cfg[modality]) for modality, kind in plugin.modalities.items()}
    class_names = plugin.class_names(data_cfg)
    for split in SPLITS:  # what items() reads: the split files, checked like every media file
        split_file = raw_dir / SPLIT_DIR / f"{split}.csv"
        _verify(split_file, _expected(split_file, raw_dir, hashes, raw_manifest_path))
    splits = {split: plugin.items(raw_dir, split) for split in SPLITS}
    for split, items in splits.items():
        if not items:
            raise DataError(f"{raw_dir}: split '{split}' has no clips")
        bad = [item.clip_id for item in items if not 0 <= item.label < len(class_names)]
        if bad:
            raise DataError(
                f"{raw_dir}: split '{split}', clip {bad[0]}: label outside 0..{len(class_names) - 1}"
            )
    clips = clip_availability(raw_manifest, raw_manifest_path)
    for split, items in splits.items():
        if clips is not None and clips[split]["found"] != len(items):
            raise DataError(
                f"{raw_manifest_path}: counts {clips[split]['found']} clips in split '{split}', its split "
                f"file lists {len(items)}; run generate again"
            )
    tasks = {split: _tasks(items, raw_dir, hashes, raw_manifest_path) for split, items in splits.items()}

    for kind, modality_cfg in specs.values():
        KINDS.get(kind)().preload(modality_cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=out_dir))
    try:
        entries = {
            split: _extract_split(
                split, items, tasks[split], specs, raw_dir, staging / split, workers, progress
            )
            for split, items in splits.items()
        }
        manifest = {
            "format": FORMAT_VERSION,
            "dataset": dataset,
            "features": dict(feature_cfg),
            "modalities": dict(plugin.modalities),
            "class_names": class_names,
            "raw": {"dir": str(raw_dir), "manifest_sha256": sha256_file(raw_manifest_path)},
            **({"clips": clips} if clips is not None else {}),
            "software": {
                "mmbalance": __version__,
                "numpy": np.__version__,
                "librosa": librosa.__version__,
                "av": av.__version__,
            },
            "splits": entries,
        }
        return _publish(staging, out_dir, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

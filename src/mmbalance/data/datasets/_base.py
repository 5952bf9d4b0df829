"""The dataset contract every dataset plugin implements, and helpers shared by the data stage.

A dataset turns its settings (``params.yaml``, ``data.<dataset>``) into raw files in one folder
(``prepare``: synthav generates them, real datasets download and verify them) and lists the
clips of each split (``items``). ``prepare`` ends by writing ``manifest.json`` with
:func:`write_raw_manifest`; that file is written last and atomically, so a folder with a manifest
is complete. Its keys are ``dataset``, ``config`` (the data settings, from which
:meth:`Dataset.class_names` is answered at extraction time), ``counts`` (clips per split) and
``files`` (the sha256 of every file, relative POSIX path → hex digest), which extraction checks
before it decodes anything. A real dataset whose lists name clips that may be unobtainable also
reports per split ``listed`` (the clips its lists name) or ``missing`` (those not obtained);
:func:`clip_availability` reads either form, and extraction copies the result into the feature
store, from where training copies it into every run's ``metrics.json`` (docs/tables.md, footnotes).

An :class:`Item` may carry per-clip ``settings`` for a modality (NVGesture's gesture segment, the
``start``/``end`` frames of its split lists); extraction merges them over the modality's feature
settings for that clip only. Datasets without them give every clip the same settings.
"""

from __future__ import annotations

import abc
import csv
import hashlib
import multiprocessing
import sys
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
from tqdm import tqdm

from mmbalance.errors import DataError
from mmbalance.io import write_json

SPLITS: tuple[str, ...] = ("train", "val", "test")
MANIFEST = "manifest.json"
SPLIT_DIR = "splits"
"""Where a prepared raw folder lists each split, one ``<split>.csv`` per split."""
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class Item:
    """One clip: its id, its label, one file per modality and, per modality, settings of this clip
    that extraction merges over the modality's feature settings (module docstring)."""

    clip_id: str
    label: int
    paths: dict[str, Path]
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)


class Listed(Protocol):
    """What :func:`draw_validation` reads of a listed clip."""

    @property
    def clip_id(self) -> str: ...

    @property
    def label(self) -> int: ...


_L = TypeVar("_L", bound=Listed)


class Dataset(abc.ABC):
    """A dataset plugin (register the subclass with ``@register_dataset(name)``)."""

    name: ClassVar[str]
    modalities: ClassVar[dict[str, str]]
    """Modality name → kind (``spectrogram`` or ``frames``), in the model's modality order."""
    unit: ClassVar[str] = "clips"
    """What one item is called in the tables' missing-clip footnotes (``clips``, ``posts``)."""
    missing_reason: ClassVar[str] = "missing at the source"
    """Why listed items can be missing, as the footnotes say it."""
    raw_from: ClassVar[str | None] = None
    """The registered dataset whose raw data this one reads (its ``data`` block, data id and raw
    folder; ``mmbalance generate`` prepares that dataset), or None. A dataset that differs from
    another only in its features and training presets (``sarcasm_clip``) sets it, so the raw files
    are downloaded, checked and stored once."""
    Config: ClassVar[type | None] = None
    """A dataclass of the ``data.<dataset>`` settings with their defaults (``metadata={"choices": …}``
    restricts a field), checked by ``config.validate`` like method options; ``None`` when the schema
    checks the block (synthav)."""

    @abc.abstractmethod
    def class_names(self, data_cfg: Mapping[str, Any]) -> list[str]:
        """The class names, indexed by label."""

    @abc.abstractmethod
    def prepare(self, data_cfg: Mapping[str, Any], out_dir: Path, workers: int, progress: bool) -> Path:
        """Produce the raw files in ``out_dir`` and return the path of ``out_dir/manifest.json``."""

    @abc.abstractmethod
    def items(self, raw_dir: Path, split: str) -> list[Item]:
        """The clips of ``split`` (one of :data:`SPLITS`) in a prepared ``raw_dir``, in file order, read
        from ``splits/<split>.csv`` alone (extraction checks that file against the raw manifest first)."""


def read_split_rows(raw_dir: Path, split: str, columns: Sequence[str] = ("clip_id", "label")) -> list[dict]:
    """The rows of ``<raw_dir>/splits/<split>.csv`` (UTF-8), with ``label`` as an int.

    A missing file, a missing column in ``columns`` or a non-integer label raises
    :class:`DataError` naming the file (and the line).
    """
    path = Path(raw_dir) / SPLIT_DIR / f"{split}.csv"
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
            raise DataError(f"{path}: expected columns {', '.join(columns)}")
        rows = list(reader)
    for number, row in enumerate(rows, start=2):
        try:
            row["label"] = int(row["label"])
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}: line {number} is malformed ({row})") from exc
    return rows


def draw_validation(
    clips: Sequence[_L], fraction: float, seed: int, group: Callable[[_L], Hashable] | None = None
) -> tuple[list[_L], list[_L]]:
    """Split a training list into (train, val), both in list order, with ``numpy.random.default_rng(seed)``.

    Stratified (``group`` None): for each label in ascending order, the label's clip ids sorted, permuted,
    and the first ``floor(fraction · n + 0.5)`` taken. Group-disjoint: the groups (``group(clip)``:
    CREMA-D's actor, NVGesture's subject) sorted, permuted, and whole groups taken in that order until
    their clips reach ``floor(fraction · N + 0.5)``, so no group is in both train and val.
    """
    rng = np.random.default_rng(seed)
    if group is not None:
        per_group = Counter(group(clip) for clip in clips)
        groups = sorted(per_group)
        target, taken, chosen = int(np.floor(fraction * len(clips) + 0.5)), 0, set()
        for index in rng.permutation(len(groups)):
            if taken >= target:
                break
            chosen.add(groups[index])
            taken += per_group[groups[index]]
        val_ids = {clip.clip_id for clip in clips if group(clip) in chosen}
    else:
        val_ids = set()
        for label in sorted({clip.label for clip in clips}):
            members = sorted(clip.clip_id for clip in clips if clip.label == label)
            count = int(np.floor(fraction * len(members) + 0.5))
            val_ids.update(members[i] for i in rng.permutation(len(members))[:count])
    return [c for c in clips if c.clip_id not in val_ids], [c for c in clips if c.clip_id in val_ids]


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file: ``md5``, ``sha256`` or ``git-blob`` (``git hash-object``: sha1 of
    ``"blob <size>\\0"`` + content, how a file in a git repository is pinned)."""
    if algorithm == "git-blob":
        digest = hashlib.sha1(f"blob {Path(path).stat().st_size}\0".encode())
    else:
        digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return file_digest(path, "sha256")


def write_raw_manifest(
    out_dir: Path,
    dataset: str,
    data_cfg: Mapping[str, Any],
    counts: Mapping[str, int],
    files: Mapping[str, str],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/manifest.json`` atomically (temporary name, then rename); return its path."""
    path = Path(out_dir) / MANIFEST
    manifest = {
        "dataset": dataset,
        "config": dict(data_cfg),
        "counts": dict(counts),
        **dict(extra or {}),
        "files": dict(sorted(files.items())),
    }
    write_json(path, manifest)
    return path


def clip_availability(manifest: Mapping[str, Any], path: Path) -> dict[str, dict[str, int]] | None:
    """Per split ``{"listed": n, "found": f, "missing": n - f}`` from a raw manifest (module docstring).

    ``found`` is the manifest's ``counts``; ``listed`` comes from its ``listed`` per split or, where it
    reports only ``missing`` (CREMA-D), is ``found + missing``. None when the manifest reports
    neither (a generated dataset lists exactly what it made). Counts that are not non-negative
    integers or contradict each other raise :class:`DataError` naming ``path``.
    """
    listed, missing = manifest.get("listed"), manifest.get("missing")
    if listed is None and missing is None:
        return None
    out = {}
    for split in SPLITS:
        try:
            found = _count(manifest["counts"][split])
            total = _count(listed[split]) if listed is not None else found + _count(missing[split])
            gone = _count(total - found)
            if missing is not None and _count(missing[split]) != gone:
                raise ValueError(f"missing {missing[split]} is not listed {total} - found {found}")
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: clip counts of split '{split}' are unusable ({exc!r})") from exc
        out[split] = {"listed": total, "found": found, "missing": gone}
    return out


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return value


def parallel_map(
    fn: Callable[[_T], _R], tasks: Sequence[_T], workers: int, progress: bool, desc: str
) -> Iterator[_R]:
    """Yield ``fn(task)`` for every task, in task order, using ``workers`` processes.

    ``workers <= 1`` runs in this process. Otherwise a ``ProcessPoolExecutor`` is used, its workers
    started with ``fork`` where the platform has it (``spawn`` elsewhere): they start at once with
    the already imported numpy/librosa/PyAV and need no ``if __name__ == "__main__"`` guard in the
    calling script. They run numpy, soundfile, librosa, PyAV, PIL and OpenCV (one thread, set by the
    ``clip`` kind before the fork) only, never torch or an OpenMP pool, so a forked copy of a training
    process is harmless. ``fn`` must be picklable (a
    module-level function or a ``functools.partial`` of one). An exception raised by ``fn`` in a
    worker is re-raised here after the pending tasks are cancelled and the workers have exited
    (``multiprocessing.Pool.terminate`` can deadlock at that point when its task queue is full). A
    tqdm bar goes to stderr when ``progress`` is true.
    """
    if workers <= 1 or len(tasks) <= 1:
        with _bar(len(tasks), desc, progress) as bar:
            for task in tasks:
                yield fn(task)
                bar.update()
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    chunksize = max(1, min(16, len(tasks) // (4 * workers)))
    executor = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=multiprocessing.get_context(method))
    try:
        # every task is submitted (and the workers forked) before the bar's monitor thread exists
        results = executor.map(fn, tasks, chunksize=chunksize)
        with _bar(len(tasks), desc, progress) as bar:
            for result in results:
                yield result
                bar.update()
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _bar(total: int, desc: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="clip", file=sys.stderr, disable=not progress, leave=False)

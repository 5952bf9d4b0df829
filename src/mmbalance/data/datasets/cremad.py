"""CREMA-D: 7,442 acted clips of 91 actors, 6 emotions, audio (WAV) + video (FLV) (datasets.md §3.1).

**Media.** ``AudioWAV/<clip>.wav`` and ``VideoFlash/<clip>.flv`` of CheyneyComputerScience/CREMA-D,
stored there with Git LFS. ``data.cremad.source`` picks where they come from:

- ``gitlab`` (default; the CREMA-D README suggests its GitLab copy first, and GitHub's LFS bandwidth
  quota runs out): ``https://gitlab.com/cs-cooper-lab/crema-d-mirror/-/raw/main/<path>``;
- ``github``: the LFS media URLs
  ``https://media.githubusercontent.com/media/CheyneyComputerScience/CREMA-D/master/<path>``;
- ``url``: any URL template with ``{path}`` (another mirror; ``file://`` in the tests);
- ``root``: a folder with the repository's layout, typically a ``git lfs`` clone; files are
  linked into the raw folder (``link``: ``symlink`` by default, ``hardlink`` or ``copy``), so the
  3 GB are not copied.

Every media file is checked against the size and sha256 of its Git LFS pointer at commit 1658cd3
(``cremad_files/lfs_manifest.tsv``: the AudioWAV and VideoFlash rows of the spec's 22,326-row
manifest; provenance in ``cremad_files/README.md``). Downloads resume and are verified
(:mod:`mmbalance.data.download`); a wrong file stops ``prepare`` with its path and what differs.

**Splits.** OGM-GE's ``data/CREMAD/train.csv`` and ``test.csv`` (GeWu-Lab/OGM-GE_CVPR2022 at
343dc1d; 6,698 / 744 rows ``clip,EMO``, CRLF, read as UTF-8 with an optional BOM like the
loaders' ``encoding='UTF-8-sig'``), shipped in ``cremad_files/`` and checked by md5 before use.
Labels follow every reference loader: NEU 0, HAP 1, SAD 2, FEA 3, DIS 4, ANG 5; each row's label
must equal the emotion field of its clip name. No validation split is published (OGM-GE's readme
suggests carving one from train), so ``val_fraction`` of the training list becomes validation,
drawn with ``numpy.random.default_rng(val_seed)``:

- default (stratified): for each label in label order, the label's training clips sorted by name,
  permuted, and the first ``floor(val_fraction · n + 0.5)`` taken (0.1 → 670 clips);
- ``actor_disjoint: true``: the training list's actors sorted, permuted, and whole actors taken in
  that order until their clips reach ``floor(val_fraction · N + 0.5)``, so no actor is in both train
  and val. The OGM-GE test set shares all 91 actors with its training list (AGM#2); that is the
  papers' test set and is kept.

Validation is carved from the full list before missing clips are removed, so it does not depend on
which files a mirror lacks.

**Missing clips.** A clip whose WAV or FLV is absent at the source (HTTP 404, no such file under
``root``) is missing. Up to ``max_missing`` (default 0) missing clips are dropped and reported
(counts and ids per split in the raw manifest, and a warning); more stop ``prepare`` with the
counts and the first paths. Corrupt files are never dropped: they stop ``prepare``.

**Raw layout** (``<paths.data>/raw/cremad/<data id>/``)::

    AudioWAV/<clip>.wav, VideoFlash/<clip>.flv   verified media (links when source is root)
    annotations/train.csv, annotations/test.csv  the OGM-GE split files, byte for byte (the
                                                 LFM/AUG/AMSS ``annotations/`` layout)
    splits/<split>.csv                           clip_id,label,label_name,actor (train/val/test)
    classes.txt                                  NEU HAP SAD FEA DIS ANG, one per line
    manifest.json                                written last: settings, counts, missing clips,
                                                 reference checksums, sha256 of every file
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from mmbalance import __version__
from mmbalance.config import typed_options
from mmbalance.data.datasets._base import (
    MANIFEST,
    SPLIT_DIR,
    SPLITS,
    Dataset,
    Item,
    draw_validation,
    parallel_map,
    read_split_rows,
    sha256_file,
    write_raw_manifest,
)
from mmbalance.data.download import LINK_MODES, MissingSource, fetch, md5_file, place
from mmbalance.errors import ConfigError, DataError
from mmbalance.io import atomic_open, write_csv
from mmbalance.registry import register_dataset

log = logging.getLogger("mmbalance.data")

LABELS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
MEDIA = {"audio": ("AudioWAV", ".wav"), "video": ("VideoFlash", ".flv")}
SOURCE_URLS = {
    "gitlab": "https://gitlab.com/cs-cooper-lab/crema-d-mirror/-/raw/main/{path}",
    "github": "https://media.githubusercontent.com/media/CheyneyComputerScience/CREMA-D/master/{path}",
}
LFS_COMMIT = "1658cd3"
CLIP_NAME = re.compile(r"(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})")
ANNOTATION_DIR = "annotations"
CSV_FIELDS = ("clip_id", "label", "label_name", "actor")
SHOWN_MISSING = 5


@dataclass(frozen=True)
class Reference:
    """The reference files ``prepare`` trusts: split CSVs and the LFS manifest, each with its md5."""

    folder: Path
    splits: Mapping[str, tuple[str, str]]
    """``train``/``test`` → (file name, md5)."""
    manifest: tuple[str, str]
    """(file name, md5) of the ``path<TAB>sha256<TAB>size`` table with a header line."""


PACKAGED = Reference(
    folder=Path(__file__).with_name("cremad_files"),
    splits={
        "train": ("ogm_ge_train.csv", "2ff470de458f00282c54c892414e1c67"),
        "test": ("ogm_ge_test.csv", "bd41213f2b8842fd429290660125f1ac"),
    },
    manifest=("lfs_manifest.tsv", "73988c9dfa906ad236ad35a18de2eaaa"),
)


@dataclass
class Config:
    """``data.cremad`` (module docstring)."""

    source: str = field(default="gitlab", metadata={"choices": ("gitlab", "github", "url", "root")})
    root: str = ""
    """source root: the folder holding ``AudioWAV/`` and ``VideoFlash/`` (a git lfs clone)."""
    url: str = ""
    """source url: a URL template with ``{path}`` (a path relative to the repository root)."""
    link: str = field(default="symlink", metadata={"choices": LINK_MODES})
    val_fraction: float = 0.1
    val_seed: int = 0
    actor_disjoint: bool = False
    max_missing: int = 0


@dataclass(frozen=True)
class Clip:
    """One clip of a split list."""

    clip_id: str
    label: int
    actor: str


def read_split_csv(path: Path) -> list[Clip]:
    """The clips of an OGM-GE split file (``clip,EMO``); a malformed row raises :class:`DataError`."""
    clips: list[Clip] = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            if len(row) != 2:
                raise DataError(f"{path}: line {number}: expected 'clip,EMOTION', got {row}")
            clip_id, emotion = (value.strip() for value in row)
            match = CLIP_NAME.fullmatch(clip_id)
            if match is None:
                raise DataError(f"{path}: line {number}: {clip_id!r} is not a CREMA-D clip name")
            if emotion not in LABELS:
                raise DataError(f"{path}: line {number}: unknown emotion {emotion!r} (known: {LABELS})")
            if match["emotion"] != emotion:
                raise DataError(f"{path}: line {number}: label {emotion} differs from the name {clip_id}")
            clips.append(Clip(clip_id, LABELS.index(emotion), match["actor"]))
    return clips


def read_lfs_manifest(path: Path) -> dict[str, tuple[str, int]]:
    """``path<TAB>sha256<TAB>size`` rows (after a header line) → {path: (sha256, size)}."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    if not rows or rows[0] != ["path", "sha256", "size"]:
        raise DataError(f"{path}: expected the header 'path<TAB>sha256<TAB>size'")
    entries = {}
    for number, row in enumerate(rows[1:], start=2):
        try:
            rel, digest, size = row
            entries[rel] = (digest, int(size))
        except ValueError as exc:
            raise DataError(f"{path}: line {number} is malformed ({row})") from exc
    return entries


def load_reference(ref: Reference) -> tuple[dict[str, list[Clip]], dict[str, tuple[str, int]]]:
    """Check every reference file's md5, then parse the splits (disjoint) and the manifest."""
    for name, md5 in (*ref.splits.values(), ref.manifest):
        path = ref.folder / name
        if not path.is_file():
            raise DataError(f"{path}: reference file not found (reinstall mmbalance)")
        if md5_file(path) != md5:
            raise DataError(f"{path}: md5 {md5_file(path)}, expected {md5} (altered reference file)")
    lists = {split: read_split_csv(ref.folder / name) for split, (name, _) in ref.splits.items()}
    seen: dict[str, str] = {}
    for split, clips in lists.items():
        for clip in clips:
            if clip.clip_id in seen:
                raise DataError(
                    f"{ref.folder}: clip {clip.clip_id} is listed twice ({seen[clip.clip_id]}, {split})"
                )
            seen[clip.clip_id] = split
    return lists, read_lfs_manifest(ref.folder / ref.manifest[0])


def carve_validation(
    clips: list[Clip], fraction: float, seed: int, actor_disjoint: bool
) -> tuple[list[Clip], list[Clip]]:
    """Split a training list into (train, val), both in list order, by the rule of the module docstring
    (:func:`~mmbalance.data.datasets._base.draw_validation`, actors as the groups)."""
    return draw_validation(clips, fraction, seed, (lambda clip: clip.actor) if actor_disjoint else None)


def media_path(clip_id: str, modality: str) -> str:
    """The repository-relative path of a clip's file of ``modality`` (``AudioWAV/<clip>.wav``...)."""
    folder, suffix = MEDIA[modality]
    return f"{folder}/{clip_id}{suffix}"


def source_location(cfg: Mapping[str, Any]) -> str:
    """The URL template (with ``{path}``) or the local folder the media come from; checks the settings."""
    source = cfg["source"]
    if source == "root":
        root = Path(cfg["root"]).expanduser()
        if not cfg["root"] or not root.is_dir():
            raise DataError(
                f"data.cremad.root: {cfg['root']!r} is not a folder. Clone CREMA-D with its LFS media "
                "(GIT_LFS_SKIP_SMUDGE=1 git clone https://gitlab.com/cs-cooper-lab/crema-d-mirror.git, "
                "then git lfs pull --include 'AudioWAV/*,VideoFlash/*' inside it) and set root to that folder"
            )
        absent = [folder for folder, _ in MEDIA.values() if not (root / folder).is_dir()]
        if absent:
            raise DataError(
                f"{root / absent[0]}: not found; data.cremad.root must hold AudioWAV/ and VideoFlash/"
            )
        return str(root.resolve())
    if source == "url":
        if "{path}" not in cfg["url"]:
            raise ConfigError(f"data.cremad.url: {cfg['url']!r} must contain '{{path}}' (source: url)")
        return cfg["url"]
    return SOURCE_URLS[source]


def _check_config(cfg: Mapping[str, Any]) -> None:
    if not 0.0 < cfg["val_fraction"] < 1.0:
        raise ConfigError(f"data.cremad.val_fraction: {cfg['val_fraction']} is not in (0, 1)")
    if cfg["max_missing"] < 0:
        raise ConfigError(f"data.cremad.max_missing: {cfg['max_missing']} is negative")


def _obtain(
    source: str, location: str, link: str, out_dir: str, task: tuple[str, list[tuple[str, str, int]]]
) -> dict[str, Any]:
    """Worker: fetch or place the files of one clip; report the missing ones and how many changed."""
    clip_id, files = task
    missing, changed = [], 0
    for rel, digest, size in files:
        dest = Path(out_dir) / rel
        try:
            if source == "root":
                changed += place(Path(location) / rel, dest, digest, size, link)
            else:
                changed += fetch(location.format(path=rel), dest, digest, size)
        except MissingSource:
            missing.append(rel)
    return {"clip_id": clip_id, "missing": missing, "changed": changed}


@register_dataset("cremad")
class CremaD(Dataset):
    """CREMA-D from GitLab, GitHub LFS, a mirror or a local clone (module docstring)."""

    name = "cremad"
    modalities: ClassVar[dict[str, str]] = {"audio": "spectrogram", "video": "frames"}
    missing_reason = "WAV or FLV file missing at the source, dropped under max_missing"
    Config = Config
    reference: ClassVar[Reference] = PACKAGED

    def class_names(self, data_cfg: Mapping[str, Any]) -> list[str]:
        return list(LABELS)

    def prepare(self, data_cfg: Mapping[str, Any], out_dir: Path, workers: int, progress: bool) -> Path:
        """Check the reference files, obtain and verify every clip's media, write splits and manifest."""
        cfg = typed_options(Config(), data_cfg, where=f"data.{self.name}")
        _check_config(cfg)
        location = source_location(cfg)
        lists, lfs = load_reference(self.reference)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / MANIFEST).unlink(missing_ok=True)

        train, val = carve_validation(
            lists["train"], cfg["val_fraction"], cfg["val_seed"], cfg["actor_disjoint"]
        )
        splits = {"train": train, "val": val, "test": lists["test"]}
        tasks = []
        for clips in splits.values():
            for clip in clips:
                rels = [media_path(clip.clip_id, modality) for modality in MEDIA]
                unknown = [rel for rel in rels if rel not in lfs]
                if unknown:
                    raise DataError(
                        f"{self.reference.folder}: {unknown[0]} is in a split but not in the LFS manifest"
                    )
                tasks.append((clip.clip_id, [(rel, *lfs[rel]) for rel in rels]))
        obtain = partial(_obtain, cfg["source"], location, cfg["link"], str(out_dir))
        first = obtain(tasks[0])  # a wrong source fails here, not after 14,884 requests
        if first["missing"] and cfg["max_missing"] == 0:
            raise DataError(
                f"cremad: {first['missing'][0]} not found at {location}; check data.cremad.source "
                "(and url or root)"
            )
        results = {first["clip_id"]: first}
        for result in parallel_map(obtain, tasks[1:], workers, progress, desc="cremad"):
            results[result["clip_id"]] = result

        missing = {
            split: [c.clip_id for c in clips if results[c.clip_id]["missing"]]
            for split, clips in splits.items()
        }
        total_missing = sum(len(ids) for ids in missing.values())
        if total_missing > cfg["max_missing"]:
            files = [rel for result in results.values() for rel in result["missing"]][:SHOWN_MISSING]
            counts = ", ".join(f"{split} {len(ids)}" for split, ids in missing.items())
            raise DataError(
                f"cremad: {total_missing} clips missing at {location} ({counts}; first: {', '.join(files)}); "
                f"data.cremad.max_missing allows {cfg['max_missing']}; use another source or raise it"
            )
        if total_missing:
            log.warning("cremad: dropped %d missing clips: %s", total_missing, missing)
        changed = sum(result["changed"] for result in results.values())
        log.info("cremad: %d files fetched or placed, %d already present", changed, 2 * len(tasks) - changed)

        media = dict(tasks)
        files: dict[str, str] = {}
        counts: dict[str, int] = {}
        for split, clips in splits.items():
            kept = [c for c in clips if not results[c.clip_id]["missing"]]
            for clip in kept:
                files.update({rel: digest for rel, digest, _ in media[clip.clip_id]})
            rows = [
                {"clip_id": c.clip_id, "label": c.label, "label_name": LABELS[c.label], "actor": c.actor}
                for c in kept
            ]
            write_csv(out_dir / SPLIT_DIR / f"{split}.csv", rows, CSV_FIELDS)
            counts[split] = len(kept)
        for split, (name, _) in self.reference.splits.items():
            with atomic_open(out_dir / ANNOTATION_DIR / f"{split}.csv", "wb") as handle:
                handle.write((self.reference.folder / name).read_bytes())
        with atomic_open(out_dir / "classes.txt") as handle:
            handle.write("".join(f"{label}\n" for label in LABELS))
        written = [f"{SPLIT_DIR}/{s}.csv" for s in SPLITS]
        written += [f"{ANNOTATION_DIR}/{s}.csv" for s in self.reference.splits] + ["classes.txt"]
        files.update({rel: sha256_file(out_dir / rel) for rel in written})
        extra = {
            "source": {"kind": cfg["source"], "location": location, "lfs_commit": LFS_COMMIT},
            "reference": {
                name: md5 for name, md5 in (*self.reference.splits.values(), self.reference.manifest)
            },
            "label_map": {label: index for index, label in enumerate(LABELS)},
            "missing": {split: len(ids) for split, ids in missing.items()},
            "missing_clips": missing,
            "generator": f"mmbalance {__version__}",
        }
        return write_raw_manifest(out_dir, self.name, cfg, counts, files, extra)

    def items(self, raw_dir: Path, split: str) -> list[Item]:
        """Read ``splits/<split>.csv``; a missing or malformed file raises :class:`DataError` naming it."""
        return [
            Item(
                clip_id=row["clip_id"],
                label=row["label"],
                paths={m: Path(raw_dir) / media_path(row["clip_id"], m) for m in MEDIA},
            )
            for row in read_split_rows(raw_dir, split)
        ]

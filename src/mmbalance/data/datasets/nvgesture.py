"""NVGesture: NVIDIA Dynamic Hand Gesture (Molchanov et al., CVPR 2016), 1,532 gestures of 25
classes by 20 subjects; modalities RGB, depth and optical flow (datasets.md §3.6, methods.md §C4).

**Access is gated.** NVIDIA grants access on request (the publication page, :data:`REQUEST_PAGE`);
the approval points to a Google-Drive folder ``nvgesture_arch`` with a multi-part 7-Zip archive
``nvGesture_v1.7z.001``, ``.002``, … whose extraction (``7z x nvGesture_v1.7z.001``) gives
``Video_data/``. Nothing here downloads it. ``data.nvgesture.root`` names the folder where the person
puts what they received; ``prepare`` accepts:

- ``<root>/Video_data/class_XX/subjectYY_rZ/{sk_color,sk_depth}.avi`` (already extracted), or
- ``<root>/nvGesture_v1.7z.001`` (with its other parts): extracted into ``<root>`` with the ``7z``
  program (``7z``, ``7za`` or ``7zz`` on ``PATH``; into a hidden folder first, then moved into
  place). Without one, ``prepare`` stops with the command to run.

and, next to ``Video_data/``, the split lists. Anything else stops with what to request, where it is
downloaded and what to put where (:func:`instructions`).

**Split lists.** ``nvgesture_{train,test}_correct_cvpr2016_v2.lst`` (the release's names) or
``nvgesture_{train,test}_correct_v2.lst`` (the names AMSS ``AMSS_rod`` reads), the first found in that
order. One gesture per line, e.g. ``path:./Video_data/class_01/subject13_r0 depth:sk_depth:146:226
color:sk_color:146:226 duo_left:duo_left:170:263 label:1``: the sample folder, per sensor
``<video name>:<start frame>:<end frame>`` (the segment ``[start, end)`` AMSS reads, 80 frames), and
the label 1..25, stored as 0..24 (AMSS: ``int(label) - 1``). A malformed line stops with the file and
line number. The lists must hold 1,050 and 482 gestures (datasets.md §3.6). **No checksum of them is
published**, so they are not pinned: their md5 and line counts are recorded in the raw manifest.

**Validation split.** None is published (the papers select on test; none of the released loaders has a
validation split). ``val_fraction`` (0.1) of the training list becomes validation by CREMA-D's rule
(:func:`~mmbalance.data.datasets._base.draw_validation`, ``numpy.random.default_rng(val_seed)``):
stratified by class by default (105 gestures), or whole subjects with ``subject_disjoint: true`` (the
subject is the ``subjectYY`` of the folder name). The official train and test lists have disjoint
subjects. Validation is carved from the full list before missing samples are looked for.

**Missing samples.** A listed gesture whose folder, ``sk_color.avi`` or ``sk_depth.avi`` is absent is
missing: counted per split in the raw manifest (``missing``, ids in ``missing_clips``) and listed with
the absent file in ``missing.csv``. More than ``max_missing`` (default 0: the release is complete)
stops ``prepare`` with the counts and the first paths. A video that OpenCV cannot open or decode stops
``prepare`` naming it (replace it, or delete it to have it counted as missing); it is never skipped.

**Raw layout** (``<paths.data>/raw/nvgesture/<data id>/``)::

    Video_data/class_XX/subjectYY_rZ/sk_{color,depth}.avi   links to the files under root (``link``:
                                                             symlink, hardlink or copy)
    lists/<list file names>       the split lists used, byte for byte
    splits/<split>.csv            clip_id,label,subject,color,color_start,color_end,depth,depth_start,
                                  depth_end (sensor video and segment)
    missing.csv                   split,clip_id,file,reason of every missing gesture
    classes.txt                   class_01 … class_25 (the release's folder names; label k-1 is class_k)
    manifest.json                 written last: settings, counts, listed, missing, lists, sha256 of every file

**Modalities** (all of kind ``clip``, :mod:`mmbalance.data.kinds.clip`): ``rgb`` from ``sk_color.avi``,
``depth`` from ``sk_depth.avi``, ``flow`` computed from ``sk_color.avi``'s frames, each read over its
sensor's segment. The papers' tables order them RGB, OF, Depth (``report/datasets.yaml``).
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
import tempfile
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
from mmbalance.data.download import LINK_MODES, md5_file, place
from mmbalance.data.segment import first_frame_decodes
from mmbalance.errors import ConfigError, DataError
from mmbalance.io import atomic_open, atomic_path, write_csv
from mmbalance.registry import register_dataset

log = logging.getLogger("mmbalance.data")

REQUEST_PAGE = (
    "https://research.nvidia.com/publication/"
    "2016-06_online-detection-and-classification-dynamic-hand-gestures-recurrent-3d"
)
FIRST_PART = "nvGesture_v1.7z.001"
SEVEN_ZIP = ("7z", "7za", "7zz")
VIDEO_DIR = "Video_data"
LIST_DIR = "lists"
LIST_NAMES = {
    "train": ("nvgesture_train_correct_cvpr2016_v2.lst", "nvgesture_train_correct_v2.lst"),
    "test": ("nvgesture_test_correct_cvpr2016_v2.lst", "nvgesture_test_correct_v2.lst"),
}
EXPECTED_LINES = {"train": 1050, "test": 482}
NUM_CLASSES = 25
CLASSES = tuple(f"class_{k:02d}" for k in range(1, NUM_CLASSES + 1))
SENSORS = ("color", "depth")
MODALITY_SENSOR = {"rgb": "color", "depth": "depth", "flow": "color"}
SAMPLE_PATH = re.compile(r"\./Video_data/((?:[\w.-]+/)*[\w.-]+)")
NAME = re.compile(r"[\w.-]+")
SUBJECT = re.compile(r"subject(\d+)")
SPLIT_FIELDS = (
    "clip_id", "label", "subject", "color", "color_start", "color_end", "depth", "depth_start", "depth_end"
)  # fmt: skip
MISSING = "missing.csv"
MISSING_FIELDS = ("split", "clip_id", "file", "reason")
SHOWN_MISSING = 5


@dataclass
class Config:
    """``data.nvgesture`` (module docstring)."""

    root: str = "data/downloads/nvgesture"
    """The folder holding ``Video_data/`` and the split lists, or the ``nvGesture_v1.7z.*`` parts."""
    link: str = field(default="symlink", metadata={"choices": LINK_MODES})
    val_fraction: float = 0.1
    val_seed: int = 0
    subject_disjoint: bool = False
    max_missing: int = 0


@dataclass(frozen=True)
class Segment:
    """One sensor of a gesture: its video (relative to the raw folder) and the frames ``[start, end)``."""

    file: str
    start: int
    end: int


@dataclass(frozen=True)
class Sample:
    """One line of a split list."""

    clip_id: str
    label: int
    subject: str
    color: Segment
    depth: Segment


def instructions(root: Path) -> str:
    """What a person must do to give ``prepare`` the data (module docstring)."""
    lists = " and ".join(names[0] for names in LIST_NAMES.values())
    return (
        f"nvgesture: {root} holds neither {VIDEO_DIR}/ nor the archive {FIRST_PART}. NVGesture is gated: "
        f"request access from NVIDIA ({REQUEST_PAGE}, the dataset request form); the approval gives a "
        f"Google-Drive folder nvgesture_arch with the parts nvGesture_v1.7z.001, .002, ... Download every "
        f"part into {root} (data.nvgesture.root) and run generate again: it extracts them with 7z "
        f"(apt-get install p7zip-full), or extract them yourself (cd {shlex.quote(str(root))} && 7z x "
        f"{FIRST_PART}) so that {root / VIDEO_DIR}/class_01/... exists. The split lists {lists} must be "
        f"next to {VIDEO_DIR}/ in {root} (docs/datasets.md, nvgesture)"
    )


def extract_archive(first: Path, root: Path) -> None:
    """Extract the multi-part archive starting at ``first`` into ``root`` with the 7z program."""
    command = f"cd {shlex.quote(str(root))} && 7z x {first.name}"
    program = next((found for name in SEVEN_ZIP if (found := shutil.which(name))), None)
    if program is None:
        raise DataError(
            f"{first}: the NVGesture archive is there but no 7z program ({', '.join(SEVEN_ZIP)}) is on PATH "
            f"to extract it. Run: {command} (7z is in the package p7zip-full), then run generate again"
        )
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        log.info("nvgesture: extracting %s with %s (minutes)", first, program)
        result = subprocess.run(
            [program, "x", "-y", f"-o{staging}", str(first)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            tail = " ".join((result.stderr or result.stdout).split()[-40:])
            raise DataError(
                f"{first}: {Path(program).name} failed (exit {result.returncode}): {tail}. Check that every "
                f"part {first.name}, .002, ... is completely downloaded into {root}, or run: {command}"
            )
        entries = sorted(p.name for p in staging.iterdir())
        if VIDEO_DIR not in entries:
            raise DataError(
                f"{first}: the archive has no {VIDEO_DIR}/ at its top level (it holds {entries}); "
                f"arrange its content so that {root / VIDEO_DIR} exists"
            )
        for name in entries:
            if (root / name).exists():
                log.info("nvgesture: keeping the existing %s (the archive's copy is not used)", root / name)
                continue
            (staging / name).replace(root / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _segment(value: str, where: str) -> Segment:
    """``<video name>:<start>:<end>`` of a list line (the file is filled in by the caller)."""
    parts = value.split(":")
    if len(parts) != 3 or not NAME.fullmatch(parts[0]):
        raise DataError(f"{where}: expected '<video>:<start>:<end>', got {value!r}")
    try:
        start, end = int(parts[1]), int(parts[2])
    except ValueError as exc:
        raise DataError(f"{where}: start and end must be integers, got {value!r}") from exc
    if not 0 <= start < end:
        raise DataError(f"{where}: expected 0 <= start < end, got {start}:{end}")
    return Segment(parts[0] + ".avi", start, end)


def parse_list(path: Path) -> list[Sample]:
    """The gestures of a split list (module docstring); a malformed line raises :class:`DataError`
    naming the file and the line."""
    samples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            fields: dict[str, str] = {}
            for token in line.split():
                key, sep, value = token.partition(":")
                if not sep or not key or key in fields:
                    problem = "repeated key" if key in fields else "not key:value"
                    raise DataError(f"{where}: {problem} in {token!r}")
                fields[key] = value
            absent = [key for key in ("path", *SENSORS, "label") if key not in fields]
            if absent:
                raise DataError(f"{where}: no '{absent[0]}:' field")
            match = SAMPLE_PATH.fullmatch(fields["path"])
            if match is None or ".." in match[1].split("/"):
                raise DataError(f"{where}: path {fields['path']!r} is not ./{VIDEO_DIR}/<class>/<sample>")
            try:
                label = int(fields["label"])
            except ValueError as exc:
                raise DataError(f"{where}: label {fields['label']!r} is not an integer") from exc
            if not 1 <= label <= NUM_CLASSES:
                raise DataError(f"{where}: label {label} outside 1..{NUM_CLASSES}")
            folder = f"{VIDEO_DIR}/{match[1]}"
            sensors = {}
            for sensor in SENSORS:
                segment = _segment(fields[sensor], f"{where}, {sensor}")
                sensors[sensor] = Segment(f"{folder}/{segment.file}", segment.start, segment.end)
            subject = SUBJECT.search(match[1].rsplit("/", 1)[-1])
            samples.append(
                Sample(
                    clip_id=match[1].replace("/", "_"),
                    label=label - 1,
                    subject=subject[1] if subject else "",
                    color=sensors["color"],
                    depth=sensors["depth"],
                )
            )
    return samples


def find_lists(root: Path) -> dict[str, Path]:
    """The split list of each of ``train`` and ``test`` in ``root``: the release's name, else AMSS's."""
    found = {}
    for split, names in LIST_NAMES.items():
        path = next((root / name for name in names if (root / name).is_file()), None)
        if path is None:
            raise DataError(
                f"nvgesture: no {split} split list in {root} ({' or '.join(names)}); put the release's list "
                f"files next to {VIDEO_DIR}/ (docs/datasets.md, nvgesture)"
            )
        found[split] = path
    return found


def split_row(sample: Sample) -> dict[str, Any]:
    """The row of a gesture in ``splits/<split>.csv``."""
    row: dict[str, Any] = {"clip_id": sample.clip_id, "label": sample.label, "subject": sample.subject}
    for sensor in SENSORS:
        segment: Segment = getattr(sample, sensor)
        row.update({sensor: segment.file, f"{sensor}_start": segment.start, f"{sensor}_end": segment.end})
    return row


def _check_config(cfg: Mapping[str, Any]) -> None:
    if not cfg["root"]:
        raise ConfigError("data.nvgesture.root: not set; set it to the folder with the NVGesture release")
    if not 0.0 < cfg["val_fraction"] < 1.0:
        raise ConfigError(f"data.nvgesture.val_fraction: {cfg['val_fraction']} is not in (0, 1)")
    if cfg["max_missing"] < 0:
        raise ConfigError(f"data.nvgesture.max_missing: {cfg['max_missing']} is negative")


def carve(train: list[Sample], cfg: Mapping[str, Any], where: Path) -> tuple[list[Sample], list[Sample]]:
    """(train, val) by the rule of the module docstring."""
    if not cfg["subject_disjoint"]:
        return draw_validation(train, cfg["val_fraction"], cfg["val_seed"])
    unknown = [s.clip_id for s in train if not s.subject]
    if unknown:
        raise DataError(
            f"{where}: sample {unknown[0]} has no 'subject<number>' in its folder name, so "
            "data.nvgesture.subject_disjoint cannot group it; set subject_disjoint: false"
        )
    return draw_validation(train, cfg["val_fraction"], cfg["val_seed"], lambda sample: sample.subject)


def _place_sample(root: str, out_dir: str, link: str, task: tuple[str, list[str]]) -> dict[str, Any]:
    """Worker: check that each video of a gesture decodes, hash it and link it into the raw folder."""
    clip_id, rels = task
    files = {}
    for rel in rels:
        source = Path(root) / rel
        if not first_frame_decodes(source):
            return {"clip_id": clip_id, "unreadable": str(source)}
        digest = sha256_file(source)
        place(source, Path(out_dir) / rel, digest, source.stat().st_size, link)
        files[rel] = digest
    return {"clip_id": clip_id, "files": files}


@register_dataset("nvgesture")
class NVGesture(Dataset):
    """NVGesture from the release a person obtained from NVIDIA (module docstring)."""

    name = "nvgesture"
    modalities: ClassVar[dict[str, str]] = {"rgb": "clip", "depth": "clip", "flow": "clip"}
    Config = Config
    expected_lines: ClassVar[Mapping[str, int]] = EXPECTED_LINES

    def class_names(self, data_cfg: Mapping[str, Any]) -> list[str]:
        return list(CLASSES)

    def prepare(self, data_cfg: Mapping[str, Any], out_dir: Path, workers: int, progress: bool) -> Path:
        """Find (or extract) the release, parse and check the lists, link the videos, write the manifest."""
        cfg = typed_options(Config(), data_cfg, where=f"data.{self.name}")
        _check_config(cfg)
        root = Path(cfg["root"]).expanduser().resolve()
        if not root.is_dir():
            raise DataError(instructions(root))
        if not (root / VIDEO_DIR).is_dir():
            if not (root / FIRST_PART).is_file():
                raise DataError(instructions(root))
            extract_archive(root / FIRST_PART, root)
        list_paths = find_lists(root)
        listed = {split: parse_list(path) for split, path in list_paths.items()}
        seen: dict[str, str] = {}
        for split, samples in listed.items():
            if len(samples) != self.expected_lines[split]:
                raise DataError(
                    f"{list_paths[split]}: {len(samples)} gestures, expected {self.expected_lines[split]} "
                    "(the NVGesture release's list); use the release's unmodified list files"
                )
            for sample in samples:
                if sample.clip_id in seen:
                    raise DataError(
                        f"{list_paths[split]}: {sample.clip_id} is listed twice "
                        f"({seen[sample.clip_id]}, {split})"
                    )
                seen[sample.clip_id] = split
        train, val = carve(listed["train"], cfg, list_paths["train"])
        splits = {"train": train, "val": val, "test": listed["test"]}

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / MANIFEST).unlink(missing_ok=True)
        missing_rows = []
        for split, samples in splits.items():
            for sample in samples:
                absent = [s.file for s in (sample.color, sample.depth) if not (root / s.file).is_file()]
                if absent:
                    missing_rows.append(
                        {"split": split, "clip_id": sample.clip_id, "file": absent[0], "reason": "not found"}
                    )
        missing = {split: [r["clip_id"] for r in missing_rows if r["split"] == split] for split in SPLITS}
        if len(missing_rows) > cfg["max_missing"]:
            counts = ", ".join(f"{split} {len(ids)}" for split, ids in missing.items())
            first = ", ".join(str(root / r["file"]) for r in missing_rows[:SHOWN_MISSING])
            raise DataError(
                f"nvgesture: {len(missing_rows)} listed gestures have no video under {root} ({counts}; "
                f"first: {first}); data.nvgesture.max_missing allows {cfg['max_missing']}: complete the "
                "release (all archive parts extracted) or raise it"
            )
        if missing_rows:
            log.warning("nvgesture: %d gestures missing: %s", len(missing_rows), missing)

        absent_ids = {r["clip_id"] for r in missing_rows}
        tasks = [
            (s.clip_id, [s.color.file, s.depth.file])
            for samples in splits.values()
            for s in samples
            if s.clip_id not in absent_ids
        ]
        work = partial(_place_sample, str(root), str(out_dir), cfg["link"])
        files: dict[str, str] = {}
        for result in parallel_map(work, tasks, workers, progress, desc=self.name):
            if "unreadable" in result:
                raise DataError(
                    f"{result['unreadable']}: OpenCV cannot decode this video; replace it from the release, "
                    "or delete its gesture folder to have the gesture counted as missing (max_missing)"
                )
            files.update(result["files"])

        list_info = {}
        for split, path in list_paths.items():
            rel = f"{LIST_DIR}/{path.name}"
            with atomic_path(out_dir / rel) as tmp:
                shutil.copyfile(path, tmp)
            files[rel] = sha256_file(out_dir / rel)
            naming = "release" if path.name == LIST_NAMES[split][0] else "amss"
            list_info[split] = {
                "file": rel,
                "md5": md5_file(path),
                "gestures": len(listed[split]),
                "naming": naming,
            }
        counts = {}
        for split, samples in splits.items():
            rows = [split_row(s) for s in samples if s.clip_id not in absent_ids]
            write_csv(out_dir / SPLIT_DIR / f"{split}.csv", rows, SPLIT_FIELDS)
            counts[split] = len(rows)
        write_csv(out_dir / MISSING, missing_rows, MISSING_FIELDS)
        with atomic_open(out_dir / "classes.txt") as handle:
            handle.write("".join(f"{name}\n" for name in CLASSES))
        written = [f"{SPLIT_DIR}/{split}.csv" for split in SPLITS] + [MISSING, "classes.txt"]
        files.update({rel: sha256_file(out_dir / rel) for rel in written})
        extra = {
            "root": str(root),
            "lists": list_info,
            "lists_pinned": False,
            "label_map": "list label k -> k - 1 (class_k)",
            "listed": {split: len(samples) for split, samples in splits.items()},
            "missing": {split: len(ids) for split, ids in missing.items()},
            "missing_clips": missing,
            "generator": f"mmbalance {__version__}",
        }
        return write_raw_manifest(out_dir, self.name, cfg, counts, files, extra)

    def items(self, raw_dir: Path, split: str) -> list[Item]:
        """Read ``splits/<split>.csv``: the videos and, per modality, the segment to read."""
        raw_dir = Path(raw_dir)
        items = []
        for number, row in enumerate(read_split_rows(raw_dir, split, SPLIT_FIELDS), start=2):
            try:
                segments = {
                    sensor: {"start": int(row[f"{sensor}_start"]), "end": int(row[f"{sensor}_end"])}
                    for sensor in SENSORS
                }
            except ValueError as exc:
                path = raw_dir / SPLIT_DIR / f"{split}.csv"
                raise DataError(f"{path}: line {number}: start and end must be integers ({row})") from exc
            items.append(
                Item(
                    clip_id=row["clip_id"],
                    label=row["label"],
                    paths={m: raw_dir / row[sensor] for m, sensor in MODALITY_SENSOR.items()},
                    settings={m: dict(segments[sensor]) for m, sensor in MODALITY_SENSOR.items()},
                )
            )
        return items

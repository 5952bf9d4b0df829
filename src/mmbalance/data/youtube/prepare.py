"""The raw folder of a YouTube-clip dataset from its lists and a folder of clips, and its manifest
(:func:`prepare_clips`; the layout and the rules: :mod:`mmbalance.data.youtube`)."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import av
import soundfile as sf

from mmbalance import __version__
from mmbalance.data.datasets._base import (
    MANIFEST,
    SPLIT_DIR,
    SPLITS,
    Item,
    parallel_map,
    read_split_rows,
    sha256_file,
    write_raw_manifest,
)
from mmbalance.data.download import place
from mmbalance.data.youtube.clips import Clip
from mmbalance.data.youtube.fetch import download_clips
from mmbalance.data.youtube.folder import index_folder, locate
from mmbalance.data.youtube.transcode import video_seconds, write_wav
from mmbalance.errors import ConfigError, DataError
from mmbalance.io import atomic_open, write_csv

log = logging.getLogger("mmbalance.data")

VIDEO_DIR = "Video"
AUDIO_DIR = "AudioWAV"
MISSING_DIR = "missing"
SHORT = "short.tsv"
SPLIT_FIELDS = ("clip_id", "label", "youtube_id", "start", "audio", "video")


def read_split(raw_dir: Path, split: str) -> list[Item]:
    """The :class:`Item` list of ``splits/<split>.csv``; a missing or malformed file raises
    :class:`DataError` naming it."""
    return [
        Item(
            clip_id=row["clip_id"],
            label=row["label"],
            paths={"audio": Path(raw_dir) / row["audio"], "video": Path(raw_dir) / row["video"]},
        )
        for row in read_split_rows(raw_dir, split, ("clip_id", "label", "audio", "video"))
    ]


# --- materialising the raw folder -------------------------------------------------------------------


def _materialise(out_dir: str, mode: str, rate: int, task: tuple[str, str]) -> dict[str, Any]:
    """Worker: link the clip, write its WAV, hash both, measure both tracks; ``{"error": ...}`` if it
    cannot be opened or decoded."""
    clip_id, source = task
    src, root = Path(source), Path(out_dir)
    video_rel = f"{VIDEO_DIR}/{clip_id}{src.suffix.lower()}"
    wav_rel = f"{AUDIO_DIR}/{clip_id}.wav"
    wav = root / wav_rel
    try:
        if not (wav.is_file() and wav.stat().st_mtime >= src.stat().st_mtime):
            write_wav(src, wav, rate)
        seconds = {"audio": sf.info(wav).duration, "video": video_seconds(src)}
    except DataError as exc:
        return {"clip_id": clip_id, "error": str(exc)}
    place(src, root / video_rel, mode=mode)
    return {
        "clip_id": clip_id,
        "audio": wav_rel,
        "video": video_rel,
        "seconds": seconds,
        "files": {rel: sha256_file(root / rel) for rel in (wav_rel, video_rel)},
    }


def _check_missing(split: str, listed: int, missing: int, limit: float, where: Path) -> None:
    if listed and missing / listed > limit:
        raise DataError(
            f"split '{split}': {missing} of {listed} clips missing ({missing / listed:.1%}), above "
            f"max_missing_fraction {limit:g}; the ids and reasons are in {where}"
        )


def _report_short(
    dataset: str,
    cfg: Mapping[str, Any],
    short: Mapping[str, list[list[Any]]],
    counts: Mapping[str, int],
    out_dir: Path,
) -> None:
    """Write ``short.tsv`` and warn with the count of short clips per split, or stop (``on_short: error``)."""
    with atomic_open(out_dir / SHORT, newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["split", "clip_id", "audio_seconds", "video_seconds"])
        writer.writerows([split, *row] for split in SPLITS for row in short[split])
    total = sum(len(rows) for rows in short.values())
    if not total:
        return
    per_split = ", ".join(f"{split} {len(short[split])} of {counts[split]}" for split in SPLITS)
    message = (
        f"{dataset}: {total} clip(s) with audio or video shorter than short_seconds "
        f"{float(cfg['short_seconds']):g} s ({per_split}), tiled to the clip length at extraction; "
        f"the clips and durations are in {out_dir / SHORT}"
    )
    if cfg["on_short"] == "error":
        raise DataError(f"{message}. Replace them, or set data.{dataset}.on_short: warn to keep them")
    log.warning("%s", message)


def _remove_stale(folder: Path, keep: set[str]) -> None:
    for path in folder.iterdir():
        if path.name not in keep and (path.is_file() or path.is_symlink()):
            path.unlink()


def begin(out_dir: Path) -> Path:
    """Create ``out_dir`` and remove its manifest: the folder counts as incomplete until the end."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    return out_dir


def prepare_clips(
    dataset: str,
    cfg: Mapping[str, Any],
    lists: Mapping[str, Sequence[Clip]],
    class_names: Sequence[str],
    out_dir: Path,
    workers: int,
    progress: bool,
    extra: Mapping[str, Any],
) -> Path:
    """Build the raw folder from the split ``lists`` (module docstring) and write the manifest last.

    ``cfg`` is the dataset's complete :class:`ClipsConfig` (defaults merged); ``extra`` goes into the
    manifest (e.g. which list files were used and their checksums). Files the dataset module already
    wrote into ``out_dir`` (pinned lists) are hashed into the manifest too.
    """
    if not cfg["clips_dir"]:
        raise ConfigError(
            f"data.{dataset}.clips_dir: not set; set it to the folder holding (or, with source: yt-dlp, "
            "receiving) the clips (docs/datasets.md)"
        )
    clips_dir = Path(cfg["clips_dir"]).expanduser()
    if cfg["source"] == "folder" and not clips_dir.is_dir():
        raise DataError(f"{clips_dir}: clips folder not found (data.{dataset}.clips_dir)")
    clips_dir.mkdir(parents=True, exist_ok=True)
    all_clips = [clip for split in SPLITS for clip in lists[split]]
    failed = download_clips(all_clips, cfg, clips_dir, progress) if cfg["source"] == "yt-dlp" else {}

    by_stem, by_ytid = index_folder(clips_dir)
    per_ytid = Counter(c.youtube_id for c in all_clips)
    found: dict[str, Path] = {}
    missing: dict[str, dict[str, str]] = {split: {} for split in SPLITS}
    for split in SPLITS:
        for clip in lists[split]:
            path, reason = locate(clip, by_stem, by_ytid, per_ytid[clip.youtube_id] == 1)
            if path is None:
                missing[split][clip.clip_id] = failed.get(clip.clip_id, reason)
            else:
                found[clip.clip_id] = path
    limit = float(cfg["max_missing_fraction"])
    for split in SPLITS:
        _check_missing(split, len(lists[split]), len(missing[split]), limit, clips_dir)

    for sub in (VIDEO_DIR, AUDIO_DIR, SPLIT_DIR, MISSING_DIR):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    tasks = [(clip.clip_id, str(found[clip.clip_id])) for clip in all_clips if clip.clip_id in found]
    work = partial(_materialise, str(out_dir), cfg["link"], int(cfg["audio_rate"]))
    results = {r["clip_id"]: r for r in parallel_map(work, tasks, workers, progress, desc=dataset)}
    unreadable = {cid: r["error"] for cid, r in results.items() if "error" in r}
    if unreadable and cfg["on_unreadable"] == "error":
        first = next(iter(unreadable.values()))
        raise DataError(
            f"{len(unreadable)} clip(s) cannot be opened or decoded, first: {first}. Delete or replace them "
            f"(with source: yt-dlp a deleted clip is fetched again), or set data.{dataset}.on_unreadable: "
            "count to report them as missing"
        )
    _remove_stale(out_dir / VIDEO_DIR, {Path(r["video"]).name for r in results.values() if "video" in r})
    _remove_stale(out_dir / AUDIO_DIR, {Path(r["audio"]).name for r in results.values() if "audio" in r})

    files: dict[str, str] = {}
    counts: dict[str, int] = {}
    report: dict[str, dict[str, int]] = {"listed": {}, "missing": {}, "unreadable": {}, "short": {}}
    short: dict[str, list[list[Any]]] = {}
    for split in SPLITS:
        rows, gone, short[split] = [], dict(missing[split]), []
        for clip in lists[split]:
            result = results.get(clip.clip_id)
            if result is None:
                continue
            if "error" in result:
                gone[clip.clip_id] = f"unreadable: {result['error']}"
                continue
            files.update(result["files"])
            seconds = result["seconds"]
            if min(seconds.values()) < float(cfg["short_seconds"]):
                short[split].append([clip.clip_id, f"{seconds['audio']:.3f}", f"{seconds['video']:.3f}"])
            start = "" if clip.start is None else f"{clip.start:g}"
            rows.append(
                {
                    "clip_id": clip.clip_id,
                    "label": clip.label,
                    "youtube_id": clip.youtube_id,
                    "start": start,
                    "audio": result["audio"],
                    "video": result["video"],
                }
            )
        _check_missing(split, len(lists[split]), len(gone), limit, out_dir / MISSING_DIR / f"{split}.tsv")
        write_csv(out_dir / SPLIT_DIR / f"{split}.csv", rows, SPLIT_FIELDS)
        ytid = {c.clip_id: c.youtube_id for c in lists[split]}
        with atomic_open(out_dir / MISSING_DIR / f"{split}.tsv", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["clip_id", "youtube_id", "reason"])
            writer.writerows([cid, ytid[cid], reason] for cid, reason in gone.items())
        counts[split] = len(rows)
        report["listed"][split] = len(lists[split])
        report["missing"][split] = len(gone)
        report["unreadable"][split] = sum(reason.startswith("unreadable: ") for reason in gone.values())
        report["short"][split] = len(short[split])
        log_at = log.warning if gone else log.info
        log_at(
            "%s %s: %d listed, %d found, %d missing (ids and reasons in %s)",
            dataset,
            split,
            len(lists[split]),
            len(rows),
            len(gone),
            out_dir / MISSING_DIR / f"{split}.tsv",
        )
    _report_short(dataset, cfg, short, counts, out_dir)
    with atomic_open(out_dir / "classes.txt") as handle:
        handle.write("".join(f"{name}\n" for name in class_names))
    for path in sorted(out_dir.rglob("*")):
        rel = path.relative_to(out_dir).as_posix()
        if (
            path.is_file()
            and rel not in files
            and rel != MANIFEST
            and not rel.startswith((VIDEO_DIR, AUDIO_DIR))
        ):
            files[rel] = sha256_file(path)
    manifest_cfg = {**cfg, "class_names": list(class_names)}
    manifest_extra = {
        **report,
        **extra,
        "clips_dir": str(clips_dir.resolve()),
        "software": {"mmbalance": __version__, "av": av.__version__, "ffmpeg": av.ffmpeg_version_info},
    }
    return write_raw_manifest(out_dir, dataset, manifest_cfg, counts, files, manifest_extra)

"""Fetching the listed clips with yt-dlp (``source: yt-dlp``; :mod:`mmbalance.data.youtube`)."""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mmbalance.data.youtube.clips import Clip
from mmbalance.data.youtube.folder import VIDEO_SUFFIXES, index_folder, locate
from mmbalance.data.youtube.transcode import probe
from mmbalance.errors import DataError

log = logging.getLogger("mmbalance.data")

INCOMING = ".incoming"
UNAVAILABLE = "unavailable.tsv"
YTDLP_TIMEOUT_S = 600
# yt-dlp/YouTube messages of a video that is gone for good (recorded, not asked for again).
GONE = re.compile(
    r"Video unavailable|Private video|has been removed|account associated with this video has been "
    r"terminated|This video is not available|video has been removed|members-only|copyright claim",
    re.IGNORECASE,
)


def _tool(name: str, hint: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise DataError(f"{name}: not found (needed by source: yt-dlp); {hint}")
    return found


def read_unavailable(clips_dir: Path) -> dict[str, str]:
    """Clip id → reason of the videos YouTube reported as gone (``clips_dir/unavailable.tsv``)."""
    path = clips_dir / UNAVAILABLE
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        return {row[0]: row[1] for row in csv.reader(handle, delimiter="\t") if len(row) >= 2}


def _ytdlp_command(cfg: Mapping[str, Any], tools: tuple[str, str], clip: Clip, incoming: Path) -> list[str]:
    ytdlp, ffmpeg = tools
    return [
        ytdlp,
        "--quiet",
        "--no-warnings",
        "--no-progress",
        "--no-playlist",
        "--ffmpeg-location",
        ffmpeg,
        "-f",
        cfg["ytdlp_format"],
        "--merge-output-format",
        "mp4",
        "--download-sections",
        f"*{clip.start:g}-{clip.end:g}",
        "--force-keyframes-at-cuts",
        "-o",
        str(incoming / f"{clip.clip_id}.%(ext)s"),
        *[str(arg) for arg in cfg["ytdlp_args"]],
        f"https://www.youtube.com/watch?v={clip.youtube_id}",
    ]


def _download_one(cfg: Mapping[str, Any], tools: tuple[str, str], clip: Clip, clips_dir: Path) -> str:
    """Fetch one clip into ``clips_dir/<clip_id>.mp4``; return "" on success, else the error text."""
    incoming = clips_dir / INCOMING
    incoming.mkdir(exist_ok=True)
    for stale in incoming.glob(f"{clip.clip_id}.*"):
        stale.unlink()
    try:
        done = subprocess.run(
            _ytdlp_command(cfg, tools, clip, incoming),
            capture_output=True,
            text=True,
            timeout=YTDLP_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"yt-dlp timed out after {YTDLP_TIMEOUT_S} s"
    outputs = [p for p in incoming.glob(f"{clip.clip_id}.*") if p.suffix.lower() in VIDEO_SUFFIXES]
    if done.returncode != 0 or len(outputs) != 1:
        message = (
            done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}"
        ).splitlines()
        return message[-1] if message else f"exit status {done.returncode}"
    problem = probe(outputs[0])
    if problem:
        outputs[0].unlink()
        return problem
    os.replace(outputs[0], clips_dir / f"{clip.clip_id}{outputs[0].suffix.lower()}")
    return ""


def download_clips(
    clips: Sequence[Clip], cfg: Mapping[str, Any], clips_dir: Path, progress: bool
) -> dict[str, str]:
    """Fetch the clips not yet in ``clips_dir`` with yt-dlp (module docstring); return clip id → the
    reason it could not be fetched in this run (gone, or a failure to retry)."""
    by_stem, by_ytid = index_folder(clips_dir)
    counts = Counter(c.youtube_id for c in clips)
    todo = [c for c in clips if locate(c, by_stem, by_ytid, counts[c.youtube_id] == 1)[0] is None]
    unknown = [c.clip_id for c in todo if c.start is None or c.end is None]
    if unknown:
        raise DataError(
            f"{len(unknown)} clip(s) to download have no segment times in their list (e.g. {unknown[0]}); "
            "see the dataset's documentation (docs/datasets.md) for the file that gives them"
        )
    gone = read_unavailable(clips_dir) if not cfg["retry_unavailable"] else {}
    todo = [c for c in todo if c.clip_id not in gone]
    failed: dict[str, str] = {c: f"unavailable on YouTube: {r}" for c, r in gone.items()}
    if not todo:
        return failed
    tools = (
        _tool(cfg["ytdlp"], "install it with `pip install yt-dlp` or set ytdlp to its path"),
        _tool(cfg["ffmpeg"], "install it (`apt-get install ffmpeg`) or set ffmpeg to its path"),
    )
    log.info("yt-dlp: %d clip(s) to fetch into %s", len(todo), clips_dir)
    streak = 0
    with tqdm(todo, desc="yt-dlp", unit="clip", disable=not progress, leave=False) as bar:
        for number, clip in enumerate(bar):
            if number:
                time.sleep(float(cfg["request_sleep"]))
            error = _download_one(cfg, tools, clip, clips_dir)
            if not error:
                streak = 0
            elif GONE.search(error):
                streak = 0
                failed[clip.clip_id] = f"unavailable on YouTube: {error}"
                with open(clips_dir / UNAVAILABLE, "a", newline="") as handle:
                    csv.writer(handle, delimiter="\t").writerow([clip.clip_id, error])
            else:
                streak += 1
                failed[clip.clip_id] = f"download failed (retried on the next run): {error}"
                if streak >= int(cfg["max_consecutive_failures"]):
                    raise DataError(
                        f"yt-dlp failed {streak} times in a row (last, {clip.clip_id}: {error}). YouTube may "
                        "be throttling this address (HTTP 429, 'confirm you're not a bot'): wait, raise "
                        "request_sleep or pass cookies through ytdlp_args, and run again; clips already "
                        f"in {clips_dir} are kept"
                    )
    return failed

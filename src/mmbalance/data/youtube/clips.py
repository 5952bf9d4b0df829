"""The YouTube-clip datasets' settings and listed clips, pinned list files and the validation split."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmbalance.data.download import file_digest
from mmbalance.errors import ConfigError, DataError

MISSING_REASON = "deleted or private YouTube videos, or clips not obtained or not decodable"
"""Why a listed clip is missing, as the tables' footnotes say it (``Dataset.missing_reason``)."""


@dataclass
class ClipsConfig:
    """Settings shared by the YouTube-clip datasets (``data.<dataset>``); see the module docstring."""

    source: str = field(default="folder", metadata={"choices": ("folder", "yt-dlp")})
    clips_dir: str = ""
    link: str = field(default="symlink", metadata={"choices": ("symlink", "hardlink", "copy")})
    audio_rate: int = 16000
    val_fraction: float = 0.1
    val_seed: int = 0
    max_missing_fraction: float = 1.0
    on_unreadable: str = field(default="error", metadata={"choices": ("error", "count")})
    short_seconds: float = 9.5
    on_short: str = field(default="warn", metadata={"choices": ("warn", "error")})
    ytdlp: str = "yt-dlp"
    ffmpeg: str = "ffmpeg"
    ytdlp_format: str = "bv*[height<=360][ext=mp4]+ba[ext=m4a]/b[height<=360]/bv*+ba/b"
    ytdlp_args: list = field(default_factory=list)
    request_sleep: float = 2.0
    max_consecutive_failures: int = 20
    retry_unavailable: bool = False


@dataclass(frozen=True)
class Clip:
    """One listed clip: its id in the split list, YouTube id, segment (seconds; None = not known
    from the list), label and the file names (stems) accepted for it besides the YouTube-id rule."""

    clip_id: str
    youtube_id: str
    start: float | None
    end: float | None
    label: int
    names: tuple[str, ...] = ()


# --- pinned small files ---------------------------------------------------------------------------


def verify_file(path: Path, algorithm: str, expected: str) -> None:
    """Raise :class:`DataError` naming ``path`` when it is missing or its digest is not ``expected``."""
    if not Path(path).is_file():
        raise DataError(f"{path}: file not found")
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise DataError(f"{path}: {algorithm} {actual} does not match the pinned {expected}")


# --- splits -----------------------------------------------------------------------------------------


def carve_validation(clips: Sequence[Clip], fraction: float, seed: int) -> tuple[list[Clip], list[Clip]]:
    """Split a training list into (train, val): per class, the ``floor(fraction · n + 0.5)`` clips with the
    smallest ``sha256(f"{seed}:{clip_id}")`` go to val. Both keep the list order."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"val_fraction: {fraction} is not in [0, 1)")
    by_class: dict[int, list[str]] = defaultdict(list)
    for clip in clips:
        by_class[clip.label].append(clip.clip_id)
    chosen: set[str] = set()
    for ids in by_class.values():
        ranked = sorted(ids, key=lambda cid: hashlib.sha256(f"{seed}:{cid}".encode()).hexdigest())
        chosen.update(ranked[: int(fraction * len(ids) + 0.5)])
    return [c for c in clips if c.clip_id not in chosen], [c for c in clips if c.clip_id in chosen]

"""Finding a listed clip's file in a folder of clips (the names accepted: :mod:`mmbalance.data.youtube`)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from mmbalance.data.youtube.clips import Clip

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm")
YTID_LENGTH = 11


def index_folder(root: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Video files under ``root`` (recursive, hidden folders skipped, sorted): by stem, and by the
    YouTube id their name starts with (11 characters followed by ``_`` or the end)."""
    by_stem: dict[str, Path] = {}
    by_ytid: dict[str, list[Path]] = defaultdict(list)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() not in VIDEO_SUFFIXES or name.startswith("."):
                continue
            by_stem.setdefault(path.stem, path)
            if len(path.stem) == YTID_LENGTH or path.stem[YTID_LENGTH : YTID_LENGTH + 1] == "_":
                by_ytid[path.stem[:YTID_LENGTH]].append(path)
    return by_stem, by_ytid


def locate(
    clip: Clip, by_stem: Mapping[str, Path], by_ytid: Mapping[str, list[Path]], unique_ytid: bool
) -> tuple[Path | None, str]:
    """The file of ``clip`` (module docstring, "Names accepted"), or None and the reason."""
    for stem in (clip.clip_id, *clip.names):
        if stem in by_stem:
            return by_stem[stem], ""
    candidates = by_ytid.get(clip.youtube_id, [])
    if unique_ytid and len(candidates) == 1:
        return candidates[0], ""
    if candidates:
        names = ", ".join(p.name for p in candidates[:3])
        return (
            None,
            f"no file named {clip.clip_id}.* and {len(candidates)} file(s) of its YouTube id ({names})",
        )
    return None, "not found in clips_dir"

"""Decoding video frames with PyAV (datasets.md §2 and §5).

:func:`read_frames` reproduces the reference pipeline's two steps in one pass:

1. *Decode at ``rate`` frames per second* (OGM-GE's ``Image-01-FPS`` extraction is ``rate=1``):
   slot ``k`` takes the first decoded frame whose timestamp, counted from the first frame, is at
   or after ``k / rate``; slots after the last frame are dropped. A source slower than ``rate``
   fills consecutive slots with the same frame. Timestamps come from the stream (not from a
   frame counter and a nominal fps, which OpenCV truncates, §4).
2. *Sample ``frames`` frames uniformly* over the ``n`` decoded ones: frame ``i`` is the centre of
   segment ``i`` of ``n`` split into ``frames`` equal segments, index ``floor((i + 0.5) * n / frames)``
   (the papers' test-time segment sampling). When fewer than ``frames`` were decoded the same
   formula repeats uniformly spaced indices (``n=2, frames=3`` → ``0, 1, 1``).
   ``select="first"`` keeps the first ``frames`` instead (the last repeated when fewer were
   decoded): the NJUST Kinetics-Sounds loaders take the first 3 files of the 1-fps frame folder
   (methods.md §C2; their ``os.listdir`` order is the file system's, sorted here).

Each kept frame is converted to RGB and resized to ``size × size`` with PIL bilinear filtering.
The result is uint8 of shape ``(frames, 3, size, size)``. A missing or undecodable file, one
without a video stream, or one that yields no frame raises :class:`DataError` naming the file.
A file cut short with its index intact may decode to fewer frames without an error; extraction
catches that by checking the sha256 recorded in the raw manifest first.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

from mmbalance.errors import DataError

_TIME_TOLERANCE = 1e-3  # seconds; absorbs rounding of timestamps


def uniform_indices(available: int, wanted: int) -> np.ndarray:
    """Indices of ``wanted`` segment centres over ``available`` items (repeating when there are fewer)."""
    return np.floor((np.arange(wanted) + 0.5) * available / wanted).astype(np.int64)


def open_container(path: Path) -> av.container.InputContainer:
    """Open a media file with PyAV; a file whose container cannot be read at all (not a media file,
    cut before its index) raises :class:`DataError` saying "cannot open", so that "cannot decode"
    is kept for streams that open but fail to decode."""
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise DataError(f"{path}: cannot open: not a readable media container ({exc})") from exc


def _decode_at_rate(path: Path, rate: float, size: int) -> list[np.ndarray]:
    slots: list[np.ndarray] = []
    with open_container(path) as container:
        if not container.streams.video:
            raise DataError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        nominal = float(stream.average_rate or stream.guessed_rate or rate)
        start: float | None = None
        for index, frame in enumerate(container.decode(stream)):
            time = frame.time if frame.time is not None else index / nominal
            start = time if start is None else start
            due = int(np.floor((time - start + _TIME_TOLERANCE) * rate)) + 1
            if due > len(slots):
                image = frame.to_image().resize((size, size), Image.BILINEAR)
                pixels = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
                slots.extend([pixels] * (due - len(slots)))
    return slots


SELECTIONS = ("uniform", "first")


def read_frames(path: Path, frames: int, rate: float, size: int, select: str = "uniform") -> np.ndarray:
    """Decode ``path`` at ``rate`` fps, keep ``frames`` frames (``select``: uniformly spaced or the
    first ones), resize to ``size``²."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    try:
        decoded = _decode_at_rate(path, rate, size)
    except (av.FFmpegError, OSError) as exc:
        raise DataError(f"{path}: cannot decode video ({exc})") from exc
    if not decoded:
        raise DataError(f"{path}: no video frame could be decoded")
    if select == "first":
        indices = np.minimum(np.arange(frames), len(decoded) - 1)
    else:
        indices = uniform_indices(len(decoded), frames)
    return np.stack([decoded[i] for i in indices])

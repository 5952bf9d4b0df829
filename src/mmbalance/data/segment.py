"""A segment of a video read with OpenCV, as the NVGesture reference loader reads its sensors
(AMSS ``AMSS_rod/MyDataset.py``, ``load_data_from_file``; datasets.md §2, methods.md §C4).

The reference opens the sensor's ``.avi`` with ``cv2.VideoCapture``, goes to the gesture's start
frame, reads the frames ``start … end-1`` of the split list's segment into a container of 80 frames
(zeros where no frame could be read) and resizes each with ``cv2.resize`` (bilinear) to 256×256,
the aspect ratio not kept. :func:`read_segment` returns the frames of such a segment, in OpenCV's
BGR order, for any container length, size and frame step (every ``step``-th frame: a shorter
container that still spans the gesture); zero-padding to the container is the caller's.

Differences from the reference, both about robustness: the frames before ``start`` are decoded in
order and dropped (``grab``) instead of a ``CAP_PROP_POS_FRAMES`` seek, which can land on another
frame in a codec with inter frames; and a video that yields no frame at or after ``start`` is a
:class:`~mmbalance.errors.DataError` naming the file, where the reference silently keeps a clip of
zeros. A video that ends inside the segment gives fewer frames (the reference's zero padding).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from mmbalance.errors import DataError


def segment_length(start: int, end: int | None, count: int, step: int) -> int:
    """How many frames a segment ``[start, end)`` gives at ``step`` in a container of ``count``
    (``end`` None: as many as the container holds)."""
    if end is None:
        return count
    return max(0, min(count, math.ceil((end - start) / step)))


def read_segment(path: Path, start: int, end: int | None, count: int, step: int, size: int) -> np.ndarray:
    """Frames ``start, start + step, …`` (below ``end``, at most ``count``) of ``path``, resized to
    ``size × size``: uint8 ``(n, size, size, 3)`` in BGR order, ``1 <= n <= count``.

    A file OpenCV cannot open, or one without a frame at ``start``, raises :class:`DataError`.
    """
    wanted = segment_length(start, end, count, step)
    if wanted < 1:
        raise DataError(f"{path}: empty segment [{start}, {end}) of the split list")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DataError(f"{path}: OpenCV cannot open the video")
        for position in range(start):
            if not capture.grab():
                raise DataError(
                    f"{path}: the video ends after {position} frames, before its start frame {start}"
                )
        frames = []
        offset = 0
        while len(frames) < wanted:
            ok, frame = capture.read()
            if not ok:
                break
            if offset % step == 0:
                frames.append(cv2.resize(frame, (size, size), interpolation=cv2.INTER_LINEAR))
            offset += 1
    finally:
        capture.release()
    if not frames:
        raise DataError(f"{path}: no frame can be decoded at or after the start frame {start}")
    return np.stack(frames)


def first_frame_decodes(path: Path) -> bool:
    """Whether OpenCV opens ``path`` and decodes its first frame (a cheap check of a video file)."""
    capture = cv2.VideoCapture(str(path))
    try:
        return bool(capture.isOpened() and capture.read()[0])
    finally:
        capture.release()

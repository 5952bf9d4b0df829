"""A tiny NVGesture release in the real layout: ``Video_data/class_XX/subjectYY_rZ/sk_{color,depth}.avi``
(lossless FFV1 in AVI, written with OpenCV, so decoded pixels equal the written ones) and split lists in
the release's line format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

HEIGHT, WIDTH = 30, 40
FRAMES = 14
SHIFT = 1
"""Pixels the colour texture moves right per frame."""


@dataclass(frozen=True)
class Gesture:
    """One listed gesture of the fixture release."""

    label: int
    subject: int
    repetition: int
    start: int = 2
    end: int = 12

    @property
    def folder(self) -> str:
        return f"class_{self.label:02d}/subject{self.subject}_r{self.repetition}"

    @property
    def clip_id(self) -> str:
        return self.folder.replace("/", "_")

    @property
    def seed(self) -> int:
        return self.label * 1000 + self.subject * 10 + self.repetition


def write_avi(path: Path, frames: np.ndarray, fps: int = 30) -> None:
    """BGR uint8 ``(n, H, W, 3)`` frames → a lossless FFV1 AVI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), fps, (width, height))
    assert writer.isOpened(), path
    for frame in frames:
        writer.write(np.ascontiguousarray(frame))
    writer.release()


def texture(seed: int, height: int, width: int) -> np.ndarray:
    """A smooth random grey texture (Farnebäck needs structure at several scales), uint8."""
    rng = np.random.default_rng(seed)
    noise = (rng.random((height, width)) * 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX)


def color_frames(seed: int, n: int = FRAMES) -> np.ndarray:
    """BGR frames: a texture moving ``SHIFT`` px right per frame, the three channels different."""
    base = texture(seed, HEIGHT, WIDTH + n * SHIFT)
    frames = np.empty((n, HEIGHT, WIDTH, 3), dtype=np.uint8)
    for t in range(n):
        window = base[:, n * SHIFT - t * SHIFT : n * SHIFT - t * SHIFT + WIDTH]
        frames[t] = np.stack([window, 255 - window, window // 2 + t], axis=-1)
    return frames


def depth_frames(seed: int, n: int = FRAMES) -> np.ndarray:
    """BGR frames of a depth-like video: channel 0 carries the frame index, 1 and 2 differ from it."""
    frames = np.empty((n, HEIGHT, WIDTH, 3), dtype=np.uint8)
    base = texture(seed + 1, HEIGHT, WIDTH)
    for t in range(n):
        frames[t, ..., 0] = base // 2 + 10 * t
        frames[t, ..., 1] = 7
        frames[t, ..., 2] = 200
    return frames


def list_line(gesture: Gesture) -> str:
    """A split-list line in the release's format."""
    segment = f"{gesture.start}:{gesture.end}"
    return (
        f"path:./Video_data/{gesture.folder} depth:sk_depth:{segment} color:sk_color:{segment} "
        f"duo_left:duo_left:{gesture.start + 1}:{gesture.end + 1} label:{gesture.label}"
    )


LIST_FILES = {
    "release": ("nvgesture_train_correct_cvpr2016_v2.lst", "nvgesture_test_correct_cvpr2016_v2.lst"),
    "amss": ("nvgesture_train_correct_v2.lst", "nvgesture_test_correct_v2.lst"),
}

TRAIN = [Gesture(label, subject, 0) for label in (1, 2) for subject in (1, 2, 3, 4, 5)]
TEST = [Gesture(1, 6, 0), Gesture(2, 6, 1), Gesture(2, 7, 0, start=10, end=20)]
"""The last test gesture's segment runs past its video's 14 frames (4 frames, then padding)."""


def make_release(
    root: Path, train: list[Gesture] = TRAIN, test: list[Gesture] = TEST, naming: str = "release"
) -> Path:
    """Write the videos and the two lists under ``root``; return ``root``."""
    for gesture in [*train, *test]:
        folder = root / "Video_data" / gesture.folder
        write_avi(folder / "sk_color.avi", color_frames(gesture.seed))
        write_avi(folder / "sk_depth.avi", depth_frames(gesture.seed))
    for name, gestures in zip(LIST_FILES[naming], (train, test), strict=True):
        (root / name).write_text("".join(list_line(g) + "\n" for g in gestures))
    return root


def data_config(root: Path, **overrides) -> dict:
    """``data.nvgesture`` for the fixture release (validation: one gesture per class)."""
    return {"root": str(root), "val_fraction": 0.2, "val_seed": 0, **overrides}


EXPECTED = {"train": len(TRAIN), "test": len(TEST)}

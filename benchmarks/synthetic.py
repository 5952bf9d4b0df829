"""Synthetic CREMA-D-shaped inputs for the throughput benchmarks (random content, real formats).

- :func:`write_store`: a feature store (:mod:`mmbalance.data.store`) with ``audio`` spectrograms of a
  given shape (float16) and one uint8 frame per clip, which the training engine opens as it opens an
  extracted store;
- :func:`write_raw`: per clip a WAV (16 kHz mono, 2.5 s: CREMA-D's typical length) and a JPEG frame
  of CREMA-D's 480×360 (quality 95, as OGM-GE's frame extraction writes them), for the on-the-fly
  loader of the official kind.

Only throughput is measured on them; the labels are random.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

from mmbalance.data.datasets._base import MANIFEST, SPLITS
from mmbalance.data.store import FORMAT_VERSION, array_entry

NUM_CLASSES = 6
MODALITIES = {"audio": "spectrogram", "video": "frames"}
CLIP_SECONDS = 2.5
SAMPLE_RATE = 16000
FRAME_SIZE = (480, 360)


def write_store(root: Path, counts: dict[str, int], audio_shape: tuple[int, int], frame_size: int) -> Path:
    """A complete store in ``root`` with ``counts[split]`` clips per split; returns ``root``."""
    rng = np.random.default_rng(0)
    splits = {}
    for split in SPLITS:
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        count = counts[split]
        audio = np.lib.format.open_memmap(folder / "audio.npy", "w+", np.float16, (count, *audio_shape))
        video = np.lib.format.open_memmap(
            folder / "video.npy", "w+", np.uint8, (count, 1, 3, frame_size, frame_size)
        )
        for row in range(count):
            audio[row] = rng.standard_normal(audio_shape, dtype=np.float32)
            video[row] = rng.integers(0, 256, video.shape[1:], dtype=np.uint8)
        audio.flush()
        video.flush()
        del audio, video
        np.save(folder / "labels.npy", rng.integers(0, NUM_CLASSES, count).astype(np.int64))
        with open(folder / "index.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["row", "clip_id", "label"])
            writer.writerows([row, f"{split}_{row:05d}", 0] for row in range(count))
        files = {name: array_entry(folder / name) for name in ("audio.npy", "video.npy", "labels.npy")}
        splits[split] = {"count": count, "files": files}
    manifest = {
        "format": FORMAT_VERSION,
        "dataset": "synthetic_cremad",
        "modalities": MODALITIES,
        "class_names": [f"class_{k}" for k in range(NUM_CLASSES)],
        "splits": splits,
    }
    (root / MANIFEST).write_text(json.dumps(manifest))
    return root


def write_raw(root: Path, count: int) -> list[tuple[Path, Path, int]]:
    """``count`` clips as (WAV, JPEG, label) in ``root``."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for k in range(count):
        wav, jpg = root / f"{k:05d}.wav", root / f"{k:05d}.jpg"
        samples = 0.1 * rng.standard_normal(int(CLIP_SECONDS * SAMPLE_RATE)).astype(np.float32)
        soundfile.write(wav, samples, SAMPLE_RATE, subtype="PCM_16")
        pixels = rng.integers(0, 256, (FRAME_SIZE[1] // 8, FRAME_SIZE[0] // 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize(FRAME_SIZE, Image.BILINEAR).save(jpg, quality=95)
        items.append((wav, jpg, int(rng.integers(0, NUM_CLASSES))))
    return items

"""Frame decoding with PyAV (datasets.md §2): rate, uniform sampling, resizing, bad files."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from mmbalance.data.datasets.synthav import write_mp4
from mmbalance.data.video import read_frames, uniform_indices
from mmbalance.errors import DataError

STEP = 8  # frame k is a flat grey of level STEP * k


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s at 10 fps, 32×32: 30 flat grey frames whose level encodes the frame index."""
    levels = STEP * np.arange(30, dtype=np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (30, 32, 32, 3)).copy()
    path = tmp_path_factory.mktemp("video") / "ramp.mp4"
    write_mp4(path, frames, fps=10)
    return path


def frame_indices(frames: np.ndarray) -> list[int]:
    return [round(float(f.mean()) / STEP) for f in frames]


def test_shape_and_dtype(mp4: Path) -> None:
    frames = read_frames(mp4, frames=3, rate=1.0, size=16)
    assert frames.shape == (3, 3, 16, 16) and frames.dtype == np.uint8


def test_one_fps_keeps_the_first_frame_of_every_second(mp4: Path) -> None:
    assert frame_indices(read_frames(mp4, frames=3, rate=1.0, size=8)) == [0, 10, 20]


def test_uniform_sampling_takes_segment_centres(mp4: Path) -> None:
    assert frame_indices(read_frames(mp4, frames=3, rate=10.0, size=8)) == [5, 15, 25]
    assert frame_indices(read_frames(mp4, frames=2, rate=2.0, size=8)) == [5, 20]  # 6 decoded, keep 1 and 4


def test_fewer_decoded_than_requested_repeats_uniformly(mp4: Path) -> None:
    assert frame_indices(read_frames(mp4, frames=5, rate=1.0, size=8)) == [0, 0, 10, 20, 20]


def test_rate_above_the_source_repeats_frames(mp4: Path) -> None:
    # 20 slots per second over a 10 fps source: slot k shows frame ceil(k / 2)
    assert frame_indices(read_frames(mp4, frames=4, rate=20.0, size=8)) == [4, 11, 18, 26]


def test_uniform_indices() -> None:
    assert uniform_indices(10, 1).tolist() == [5]
    assert uniform_indices(3, 3).tolist() == [0, 1, 2]
    assert uniform_indices(2, 3).tolist() == [0, 1, 1]
    assert uniform_indices(1, 4).tolist() == [0, 0, 0, 0]


def test_resize_is_bilinear_of_the_decoded_frame(tmp_path: Path) -> None:
    frames = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    frames[:, :, 16:] = 255  # left half black, right half white
    path = tmp_path / "halves.mp4"
    write_mp4(path, frames, fps=1)
    small = read_frames(path, frames=1, rate=1.0, size=4)[0].mean(axis=0)
    assert (small[:, :2] < 40).all() and (small[:, 2:] > 215).all()


def bad_video(kind: str, good: Path, folder: Path) -> Path:
    path = folder / f"{kind}.mp4"
    data = good.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(b"not a video at all" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "no_frames":  # a valid container whose H.264 stream holds no frame
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=10)
            stream.width = stream.height = 32
            container.start_encoding()
    elif kind == "audio_only":
        sf.write(folder / "tone.wav", np.zeros(1600), 16000)
        (folder / "tone.wav").rename(path)
    return path


@pytest.mark.parametrize("kind", ["missing", "truncated", "garbage", "empty", "no_frames", "audio_only"])
def test_bad_video_raises_data_error_naming_the_file(kind: str, mp4: Path, tmp_path: Path) -> None:
    path = bad_video(kind, mp4, tmp_path)
    with pytest.raises(DataError, match=path.name):
        read_frames(path, frames=3, rate=1.0, size=8)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("garbage", "cannot open"),
        ("empty", "cannot open"),
        ("truncated", "cannot open"),
        ("mdat", "cannot decode"),
    ],
)
def test_unreadable_container_says_cannot_open_and_a_broken_stream_cannot_decode(
    kind: str, message: str, mp4: Path, tmp_path: Path
) -> None:
    if kind == "mdat":  # the container and its index intact, every coded byte of the stream overwritten
        data = bytearray(mp4.read_bytes())
        start, end = data.find(b"mdat") + 4, data.find(b"moov")
        assert 0 < start < end
        data[start:end] = b"\xff" * (end - start)
        path = tmp_path / "mdat.mp4"
        path.write_bytes(bytes(data))
    else:
        path = bad_video(kind, mp4, tmp_path)
    with pytest.raises(DataError, match=f"{path.name}: {message}"):
        read_frames(path, frames=3, rate=1.0, size=8)

"""The ``clip`` kind: segment reading, optical flow on a known translation, flow quantisation, the
stored (C, T, H, W) arrays, its settings checks, and NVGesture extracted end to end into the store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmbalance.data import flow
from mmbalance.data.datasets import nvgesture
from mmbalance.data.extract import extract
from mmbalance.data.segment import read_segment, segment_length
from mmbalance.data.store import open_store
from mmbalance.errors import ConfigError, DataError
from mmbalance.registry import DATASETS, KINDS
from tests.nvgesture_fixtures import EXPECTED, SHIFT, TEST, color_frames, depth_frames, texture, write_avi

KIND = KINDS.get("clip")()
FLOW = {
    "content": "flow",
    "frames": 8,
    "size": 40,
    "algorithm": "farneback",
    "bound": 20.0,
    "farneback": {"winsize": 9},
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray]]:
    folder = tmp_path_factory.mktemp("videos")
    made = {"color": color_frames(7), "depth": depth_frames(7)}
    for name, frames in made.items():
        write_avi(folder / f"sk_{name}.avi", frames)
    return {name: (folder / f"sk_{name}.avi", frames) for name, frames in made.items()}


def test_farneback_recovers_a_translation() -> None:
    base = texture(3, 96, 96)
    first, second = base[10:74, 10:74], base[9:73, 8:72]  # the content moves 2 px right, 1 px down
    estimate = flow.farneback(first, second, flow.FARNEBACK_DEFAULTS)
    assert estimate.shape == (64, 64, 2) and estimate.dtype == np.float32
    centre = estimate[16:48, 16:48]
    assert np.allclose(np.median(centre[..., 0]), 2.0, atol=0.1)
    assert np.allclose(np.median(centre[..., 1]), 1.0, atol=0.1)
    still = flow.farneback(first, first, {})
    assert np.abs(still).max() < 0.1  # identical frames: no motion (up to border effects)


def test_quantisation_round_trip() -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(-30.0, 30.0, size=(5, 7, 2)).astype(np.float32)
    stored = flow.quantise(values, 20.0)
    assert stored.dtype == np.uint8
    restored = flow.dequantise(stored, 20.0)
    assert np.abs(restored - np.clip(values, -20.0, 20.0)).max() <= 20.0 / 255 + 1e-5
    assert flow.quantise(np.array([-25.0, -20.0, 0.0, 20.0, 99.0]), 20.0).tolist() == [0, 0, 128, 255, 255]
    assert flow.ZERO_FLOW == 128 == int(flow.quantise(np.zeros(1), 3.0)[0])
    ramp = flow.quantise(np.linspace(-20, 20, 1000), 20.0).astype(int)
    assert np.all(np.diff(ramp) >= 0) and set(np.unique(np.diff(ramp))) <= {0, 1}


def test_segment_reads_every_step_th_frame_from_start(videos) -> None:
    path, frames = videos["color"]
    got = read_segment(path, 3, 12, 8, 2, 40)
    assert got.shape == (5, 40, 40, 3)  # frames 3, 5, 7, 9, 11
    expected = [cv2.resize(frames[t], (40, 40), interpolation=cv2.INTER_LINEAR) for t in (3, 5, 7, 9, 11)]
    assert np.array_equal(got, np.stack(expected))
    assert read_segment(path, 10, 30, 8, 1, 16).shape[0] == 4  # the video ends at frame 14
    assert read_segment(path, 0, None, 6, 1, 16).shape[0] == 6
    assert segment_length(146, 226, 80, 1) == 80 and segment_length(146, 226, 16, 5) == 16
    assert segment_length(0, 7, 80, 5) == 2


def test_segment_errors_name_the_file(videos, tmp_path: Path) -> None:
    path, _ = videos["color"]
    with pytest.raises(
        DataError, match=re.escape(f"{path}: the video ends after 14 frames, before its start")
    ):
        read_segment(path, 20, 30, 8, 1, 16)
    broken = tmp_path / "sk_color.avi"
    broken.write_bytes(b"x" * 100)
    with pytest.raises(DataError, match=re.escape(str(broken))):
        read_segment(broken, 0, 10, 8, 1, 16)


def test_rgb_and_depth_arrays(videos) -> None:
    color, frames = videos["color"]
    rgb = KIND.compute(color, {"content": "rgb", "frames": 8, "size": 20, "start": 2, "end": 7})
    assert rgb.shape == KIND.shape({"content": "rgb", "frames": 8, "size": 20}) == (3, 8, 20, 20)
    assert rgb.dtype == np.uint8
    for t in range(5):
        resized = cv2.resize(frames[2 + t], (20, 20), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(rgb[:, t], resized[..., ::-1].transpose(2, 0, 1))  # RGB order
    assert not rgb[:, 5:].any()  # zero padding after the 5 frames of the segment
    depth_path, depth = videos["depth"]
    stored = KIND.compute(depth_path, {"content": "depth", "frames": 4, "size": 16, "step": 3})
    assert stored.shape == (1, 4, 16, 16)
    for t in range(4):
        assert np.array_equal(stored[0, t], cv2.resize(depth[3 * t], (16, 16))[..., 0])


def test_flow_array_follows_the_motion(videos) -> None:
    color, _ = videos["color"]
    stored = KIND.compute(color, {**FLOW, "start": 0, "end": 6})
    assert stored.shape == (2, 8, 40, 40) and stored.dtype == np.uint8
    assert (stored[:, 5:] == flow.ZERO_FLOW).all()  # 6 frames give 5 flows, then padding
    pixels = flow.dequantise(stored[:, :5, 8:-8, 8:-8], 20.0)
    # the texture moves SHIFT px right per frame in the 40-px-wide source, resized to 40 x 40: same x scale
    assert np.allclose(np.median(pixels[0]), SHIFT, atol=0.15)
    assert np.allclose(np.median(pixels[1]), 0.0, atol=0.15)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"content": "rgb", "frames": 8}, "missing key 'm.size'"),
        ({"content": "ir", "frames": 8, "size": 16}, "'m.content': 'ir' is not one of"),
        ({"content": "rgb", "frames": 0, "size": 16}, "'m.frames': expected an integer >= 1"),
        ({"content": "rgb", "frames": 8, "size": 16, "step": 0}, "'m.step': expected an integer >= 1"),
        ({"content": "rgb", "frames": 8, "size": 16, "start": 3}, "unknown key 'm.start'"),
        ({"content": "rgb", "frames": 8, "size": 16, "bound": 20}, "'m.bound' applies to content: flow only"),
        ({**FLOW, "algorithm": "lucas"}, "'m.algorithm': 'lucas' is not one of"),
        ({**FLOW, "bound": -1}, "'m.bound': expected a positive number"),
        ({**FLOW, "farneback": {"levels": 2.5}}, "'m.farneback.levels': expected a positive integer"),
        ({**FLOW, "farneback": {"window": 3}}, "unknown key 'm.farneback.window'"),
        ({**FLOW, "farneback": {"pyr_scale": 1.5}}, "'m.farneback.pyr_scale': must be below 1"),
    ],
)
def test_settings_are_checked(settings: dict, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        KIND.check("m", settings)


def test_tvl1_needs_the_contrib_wheel() -> None:
    if flow.has_tvl1():
        assert KIND.check("m", {**FLOW, "algorithm": "tvl1"})["algorithm"] == "tvl1"
    else:
        with pytest.raises(ConfigError, match="pip install opencv-contrib-python-headless"):
            KIND.check("m", {**FLOW, "algorithm": "tvl1"})


FEATURES = {
    "rgb": {"content": "rgb", "frames": 8, "size": 16},
    "depth": {"content": "depth", "frames": 8, "size": 16},
    "flow": {"content": "flow", "frames": 8, "size": 16, "bound": 10.0},
}


def test_nvgesture_extracts_into_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.nvgesture_fixtures import data_config, make_release

    monkeypatch.setattr(nvgesture.NVGesture, "expected_lines", EXPECTED)
    root = make_release(tmp_path / "release")
    raw = tmp_path / "raw"
    DATASETS.get("nvgesture")().prepare(data_config(root), raw, 1, False)
    out = tmp_path / "features"
    extract("nvgesture", raw, FEATURES, out, workers=2, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["modalities"] == {"rgb": "clip", "depth": "clip", "flow": "clip"}
    store = open_store(out, verify=True)
    test = store.split("test")
    assert len(test) == 3 and test.ids == [g.clip_id for g in TEST]
    for modality, channels in (("rgb", 3), ("depth", 1), ("flow", 2)):
        assert test.arrays[modality].shape == (3, channels, 8, 16, 16)
        assert test.arrays[modality].dtype == np.uint8
    # each clip is read over its own segment: the last test gesture's [10, 20) has 4 frames
    color = root / "Video_data" / TEST[2].folder / "sk_color.avi"
    expected = KIND.compute(color, {**FEATURES["rgb"], "start": 10, "end": 20})
    assert np.array_equal(test.arrays["rgb"][2], expected) and not expected[:, 4:].any()
    flows = KIND.compute(color, {**FEATURES["flow"], "start": 10, "end": 20})
    assert np.array_equal(test.arrays["flow"][2], flows) and (flows[:, 3:] == 128).all()
    assert test.labels.tolist() == [0, 1, 1]

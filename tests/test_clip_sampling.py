"""Per-batch views of clip modalities: the training window and crop (shared offsets, both ends of the
range reachable, seeded by run seed and epoch only), the evaluation centre crop, and no change at all
for datasets without clips."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.clip_sampling import centre_offset, clip_sampling
from mmbalance.errors import ConfigError

KINDS = {"rgb": "clip", "depth": "clip", "flow": "clip", "audio": "spectrogram"}
N, T, H, W = 10, 6, 9, 11
CFG = {"train_frames": 4, "crop": 7}


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    """depth and flow are channel slices of rgb: equal views mean equal offsets."""
    rgb = np.random.default_rng(0).integers(0, 256, (N, 3, T, H, W), dtype=np.uint8)
    audio = np.arange(N * 5, dtype=np.float32).reshape(N, 5)
    return {"rgb": rgb, "depth": rgb[:, :1].copy(), "flow": rgb[:, 1:].copy(), "audio": audio}


def batches(arrays, train: bool, seed: int = 0, batch_size: int = 4) -> SplitBatches:
    sampling = clip_sampling(KINDS, arrays, CFG, train, "train.x.nv.clip_sampling")
    labels = np.arange(N) % 3
    return SplitBatches(arrays, labels, batch_size, torch.device("cpu"), train, seed, clips=sampling)


def locate(stored: np.ndarray, view: np.ndarray) -> list[tuple[int, int, int]]:
    """Every (t0, y0, x0) at which ``view`` is the window of ``stored`` (C, T, H, W)."""
    frames, size = view.shape[1], view.shape[2]
    return [
        (t, y, x)
        for t in range(stored.shape[1] - frames + 1)
        for y in range(stored.shape[2] - size + 1)
        for x in range(stored.shape[3] - size + 1)
        if np.array_equal(stored[:, t : t + frames, y : y + size, x : x + size], view)
    ]


def test_training_views_share_offsets_across_modalities(arrays) -> None:
    for batch in batches(arrays, train=True).epoch(2):
        rgb, depth, flow = (batch.inputs[m].numpy() for m in ("rgb", "depth", "flow"))
        assert rgb.shape == (len(batch), 3, 4, 7, 7) and rgb.dtype == np.uint8
        assert np.array_equal(depth, rgb[:, :1]) and np.array_equal(flow, rgb[:, 1:])
        for row, index in enumerate(batch.index.tolist()):
            assert len(locate(arrays["rgb"][index], rgb[row])) == 1
        assert np.array_equal(batch.inputs["audio"].numpy(), arrays["audio"][batch.index.numpy()])


def test_every_offset_of_the_inclusive_range_is_drawn(arrays) -> None:
    seen = set()
    for epoch in range(40):
        for batch in batches(arrays, train=True).epoch(epoch):
            for row, index in enumerate(batch.index.tolist()):
                seen.update(locate(arrays["rgb"][index], batch.inputs["rgb"][row].numpy()))
    assert {t for t, _, _ in seen} == set(range(T - 4 + 1))
    assert {y for _, y, _ in seen} == set(range(H - 7 + 1))
    assert {x for _, _, x in seen} == set(range(W - 7 + 1))


def test_views_depend_on_seed_and_epoch_only(arrays) -> None:
    def epoch(seed: int, e: int) -> list[np.ndarray]:
        return [b.inputs["rgb"].numpy() for b in batches(arrays, True, seed).epoch(e)]

    np.random.seed(123)
    torch.manual_seed(123)
    first = epoch(0, 5)
    state, torch_state = np.random.get_state(), torch.get_rng_state()
    # a fresh iterator (a resumed run) gives epoch 5 again without going through epochs 0-4
    assert all(np.array_equal(a, b) for a, b in zip(first, epoch(0, 5), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, epoch(0, 6), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, epoch(1, 5), strict=True))
    assert np.array_equal(np.random.get_state()[1], state[1])  # no global RNG is drawn from
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_evaluation_takes_every_frame_and_the_centre_crop(arrays) -> None:
    (batch, *rest) = list(batches(arrays, train=False, batch_size=N).epoch())
    assert not rest
    y0, x0 = centre_offset(H, 7), centre_offset(W, 7)
    assert (y0, x0) == (1, 2)
    assert np.array_equal(batch.inputs["rgb"].numpy(), arrays["rgb"][:, :, :, y0 : y0 + 7, x0 : x0 + 7])
    assert np.array_equal(batch.inputs["flow"].numpy(), arrays["flow"][:, :, :, y0 : y0 + 7, x0 : x0 + 7])
    assert centre_offset(256, 224) == 16 and centre_offset(64, 56) == 4


def test_datasets_without_clips_are_read_as_before(arrays) -> None:
    plain = {"audio": arrays["audio"], "video": arrays["rgb"]}
    kinds = {"audio": "spectrogram", "video": "frames"}
    assert clip_sampling(kinds, plain, None, True, "w") is None
    labels = np.arange(N) % 3
    for batch in SplitBatches(plain, labels, 4, torch.device("cpu"), True, 7).epoch(1):
        assert np.array_equal(batch.inputs["video"].numpy(), arrays["rgb"][batch.index.numpy()])
    with pytest.raises(ConfigError, match="w: the dataset has no clip modality"):
        clip_sampling(kinds, plain, CFG, True, "w")


@pytest.mark.parametrize(
    ("cfg", "problem"),
    [
        (None, "w: missing; the clip modalities ['rgb', 'depth', 'flow'] need train_frames and crop"),
        ({"crop": 7}, "missing key 'w.train_frames'"),
        ({**CFG, "flip": True}, "unknown key 'w.flip'"),
        ({**CFG, "train_frames": T + 1}, "'w.train_frames': expected an integer in 1..6"),
        ({**CFG, "crop": 10}, "'w.crop': expected an integer in 1..9"),
    ],
)
def test_sampling_settings_are_checked(arrays, cfg, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        clip_sampling(KINDS, arrays, cfg, True, "w")


def test_clip_modalities_must_share_their_stored_shape(arrays) -> None:
    uneven = {**arrays, "depth": arrays["depth"][:, :, :5]}
    with pytest.raises(ConfigError, match="must be stored with the same frames and size"):
        clip_sampling(KINDS, uneven, CFG, True, "w")

"""The input pipeline: frame augmentation on the device (mmbalance.engine.augment) and batches read
ahead by a background thread (mmbalance.engine.prefetch), which must leave every batch and every
random draw exactly as the synchronous path makes them."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
import torch

from mmbalance.engine.augment import FrameAugment, crop_box, frame_augment
from mmbalance.engine.batches import SplitBatches
from mmbalance.engine.clip_sampling import ClipSampling
from mmbalance.engine.prefetch import prefetch
from mmbalance.errors import ConfigError

CPU = torch.device("cpu")
KINDS = {"audio": "spectrogram", "video": "frames"}


def augment(train: bool = True, size: int = 8, **cfg) -> FrameAugment:
    return frame_augment(KINDS, {"size": size, **cfg}, train, "train.embedded.synthav.augment")


# --- the crop box: RandomResizedCrop.get_params ------------------------------------------------


def test_crop_box_whole_frame_when_scale_and_ratio_allow_only_that() -> None:
    rng = np.random.default_rng(0)
    assert crop_box(12, 12, (1.0, 1.0), (1.0, 1.0), rng) == (0, 0, 12, 12)


def test_crop_box_of_a_fixed_area_and_ratio_is_placed_uniformly() -> None:
    """Area 1/4 of 16x16 at ratio 1: an 8x8 box, top and left uniform over 0..8 (both ends included)."""
    rng = np.random.default_rng(1)
    boxes = [crop_box(16, 16, (0.25, 0.25), (1.0, 1.0), rng) for _ in range(2000)]
    assert {(h, w) for _, _, h, w in boxes} == {(8, 8)}
    assert {top for top, *_ in boxes} == set(range(9)) and {left for _, left, *_ in boxes} == set(range(9))


def test_crop_box_falls_back_to_the_centre_with_the_nearest_ratio() -> None:
    """Ratio 2 of a 4x4 frame at full area never fits (w = round(sqrt(32)) = 6 > 4): 10 attempts fail,
    then the whole width with h = round(4 / 2) = 2, centred: top (4 - 2) // 2 = 1."""
    assert crop_box(4, 4, (1.0, 1.0), (2.0, 2.0), np.random.default_rng(0)) == (1, 0, 2, 4)
    assert crop_box(4, 4, (1.0, 1.0), (0.5, 0.5), np.random.default_rng(0)) == (0, 1, 4, 2)


def test_crop_boxes_stay_inside_the_frame_with_areas_and_ratios_in_range() -> None:
    rng = np.random.default_rng(2)
    for _ in range(500):
        top, left, h, w = crop_box(20, 30, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        assert top >= 0 and top + h <= 20 and left >= 0 and left + w <= 30
        # rounding of h and w moves area and ratio a little off their drawn values
        assert 0.08 * 600 * 0.7 <= h * w <= 600
        assert 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25


# --- FrameAugment: draws, crops, flips, evaluation resize -----------------------------------------


def frames(count: int = 3, per_sample: int = 2, size: int = 12) -> torch.Tensor:
    gen = torch.Generator().manual_seed(4)
    return torch.randint(0, 256, (count, per_sample, 3, size, size), generator=gen, dtype=torch.uint8)


def test_same_seed_and_epoch_give_the_same_draws_and_crops() -> None:
    aug, x = augment(), frames()
    shapes = {"video": tuple(x.shape)}
    a = aug.draw(shapes, aug.generator(7, 3))
    b = aug.draw(shapes, aug.generator(7, 3))
    assert np.array_equal(a["video"], b["video"]) and a["video"].shape == (3, 2, 5)
    assert torch.equal(aug.apply({"video": x}, a)["video"], aug.apply({"video": x}, b)["video"])
    for seed, epoch in ((7, 4), (8, 3)):
        other = aug.draw(shapes, aug.generator(seed, epoch))
        assert not np.array_equal(a["video"], other["video"])


def test_flips_are_drawn_with_their_probability() -> None:
    aug = augment(flip=0.5)
    draws = aug.draw({"video": (500, 2, 3, 12, 12)}, aug.generator(0, 0))["video"]
    assert 0.4 < draws[..., 4].mean() < 0.6
    never = augment(flip=0.0)
    assert never.draw({"video": (50, 2, 3, 12, 12)}, never.generator(0, 0))["video"][..., 4].sum() == 0


def test_a_box_of_the_output_size_is_an_exact_slice_and_a_flip_reverses_the_columns() -> None:
    aug, x = augment(size=8), frames()
    draws = np.zeros((3, 2, 5), dtype=np.int64)
    draws[..., :4] = (2, 3, 8, 8)  # top 2, left 3, 8x8: no resizing
    draws[1, 0, 4] = 1  # sample 1, frame 0 flipped
    out = aug.apply({"video": x, "audio": torch.ones(3)}, {"video": draws})
    expected = x[..., 2:10, 3:11].clone()
    expected[1, 0] = expected[1, 0].flip(-1)
    assert out["video"].dtype == torch.uint8 and torch.equal(out["video"], expected)
    assert torch.equal(out["audio"], torch.ones(3))


def test_each_frame_of_a_sample_gets_its_own_box() -> None:
    """The loaders call the transform once per frame image."""
    aug = augment()
    draws = aug.draw({"video": (4, 3, 3, 12, 12)}, aug.generator(0, 1))["video"]
    assert len({tuple(row) for row in draws.reshape(-1, 5)}) > 4


def test_resized_crop_samples_the_box_at_the_output_pixel_centres() -> None:
    """On a linear ramp ``10 x + 5 y`` a symmetric resampling filter returns the ramp itself at each
    output pixel centre, ``x = left + (j + 0.5) w / size - 0.5`` (and likewise y), away from the box's
    edges: so the box is where it should be and is scaled by ``size / w`` and ``size / h``."""
    size, (top, left, h, w) = 4, (2, 1, 8, 10)
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    ramp = (10 * xs + 5 * ys).to(torch.uint8).expand(1, 1, 3, 12, 12)
    draws = np.array([[[top, left, h, w, 0]]])
    out = augment(size=size).apply({"video": ramp}, {"video": draws})["video"][0, 0, 0].float()
    centres = torch.arange(size) + 0.5
    expected = 10 * (left + centres * w / size - 0.5)[None, :] + 5 * (top + centres * h / size - 0.5)[:, None]
    assert torch.allclose(out[1:-1, 1:-1], expected[1:-1, 1:-1], atol=1.0)


def test_evaluation_resizes_every_frame_and_draws_nothing() -> None:
    aug, x = augment(train=False, size=6), frames()
    assert aug.generator(0, 0) is None and aug.draw({"video": tuple(x.shape)}, None) is None
    out = aug.apply({"video": x}, None)["video"]
    assert out.shape == (3, 2, 3, 6, 6) and out.dtype == torch.uint8
    same = augment(train=False, size=12).apply({"video": x}, None)["video"]
    assert torch.equal(same, x)


@pytest.mark.parametrize(
    ("kinds", "cfg", "message"),
    [
        ({"audio": "spectrogram"}, {"size": 8}, "no frames modality"),
        (KINDS, {"size": 8, "scale": [0.5, 0.2]}, "scale"),
        (KINDS, {"size": 8, "ratio": [2.0, 1.0]}, "ratio"),
    ],
)
def test_bad_augmentation_settings_are_named(kinds: dict, cfg: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        frame_augment(kinds, cfg, True, "train.embedded.synthav.augment")
    assert "train.embedded.synthav.augment" in str(error.value)


def test_without_the_key_nothing_is_augmented() -> None:
    assert frame_augment(KINDS, None, True, "x") is None


# --- prefetch ---------------------------------------------------------------------------------------


def store(size: int = 21) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "audio": rng.standard_normal((size, 4, 5)).astype(np.float16),
        "video": rng.integers(0, 256, (size, 2, 3, 12, 12), dtype=np.uint8),
        "clip": rng.integers(0, 256, (size, 1, 6, 10, 10), dtype=np.uint8),
    }
    return arrays, np.arange(size) % 3


def batches(prefetch_depth: int, train: bool = True) -> SplitBatches:
    arrays, labels = store()
    clips = ClipSampling(("clip",), (6, 10, 10), 4, 8, train)
    return SplitBatches(
        arrays,
        labels,
        4,
        CPU,
        shuffle=train,
        seed=5,
        clips=clips,
        augment=augment(train),
        prefetch=prefetch_depth,
    )


def as_lists(epoch) -> list[tuple]:
    return [(dict(b.inputs), b.labels, b.index) for b in epoch]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("depth", [1, 2])
def test_prefetched_batches_equal_the_synchronous_ones(depth: int, train: bool) -> None:
    """Same order, same clip windows, same crops and flips: the thread draws what the loop would."""
    for epoch in (0, 3):
        plain = as_lists(batches(0, train).epoch(epoch))
        ahead = as_lists(batches(depth, train).epoch(epoch))
        assert len(plain) == len(ahead) == math.ceil(21 / 4) - (1 if train else 0)
        for (inputs_a, labels_a, index_a), (inputs_b, labels_b, index_b) in zip(plain, ahead, strict=True):
            assert torch.equal(index_a, index_b) and torch.equal(labels_a, labels_b)
            assert inputs_a.keys() == inputs_b.keys()
            assert all(torch.equal(inputs_a[m], inputs_b[m]) for m in inputs_a)
    assert plain[0][0]["video"].shape[-1] == 8 and plain[0][0]["clip"].shape[-1] == 8


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mmbalance-prefetch"]


def test_leaving_early_stops_the_thread_and_closes_the_reader() -> None:
    closed = threading.Event()

    def items():
        try:
            yield from range(100)
        finally:
            closed.set()

    taken = []
    for item in prefetch(items(), 2, lambda x: x * 10, lambda x: [], CPU):
        taken.append(item)
        if len(taken) == 3:
            break
    assert taken == [0, 10, 20]
    assert closed.wait(5) and not prefetch_threads()


def test_an_error_while_reading_ahead_reaches_the_consumer() -> None:
    def items():
        yield 1
        raise OSError("store.npy: truncated")

    seen = []
    with pytest.raises(OSError, match="truncated"):
        for item in prefetch(items(), 2, lambda x: x, lambda x: [], CPU):
            seen.append(item)
    assert seen == [1] and not prefetch_threads()


def test_reading_runs_ahead_of_the_consumer_by_at_most_depth() -> None:
    read = []

    def items():
        for i in range(10):
            read.append(i)
            yield i

    stream = prefetch(items(), 2, lambda x: x, lambda x: [], CPU)
    assert next(stream) == 0
    time.sleep(0.3)  # let the thread fill the queue
    # one item handed out, two waiting in the queue, one read and blocked on the full queue
    assert len(read) <= 4
    assert list(stream) == list(range(1, 10))

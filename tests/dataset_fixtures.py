"""A tiny fixture of every registered dataset, for the registry-wide test (tests/test_registries.py):
``FIXTURES[name](root, monkeypatch)`` writes the dataset's source files under ``root`` (in their real
layout, from the helpers of the dataset's own test module), points the dataset's pinned checksums at
them, and returns the repository's ``params.yaml`` with that dataset alone, its ``data`` block reading
the fixture and a seconds-long preset (tiny encoders, one epoch).

A new dataset adds its builder here (CONTRIBUTING.md, "Add a dataset"): without one, the registry test
of the dataset fails saying so.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mmbalance import config
from tests.conftest import REPO, tiny_params

Builder = Callable[[Path, pytest.MonkeyPatch], dict]
FIXTURES: dict[str, Builder] = {}
TINY_AV = {
    "audio": {"name": "resnet10", "width": 4, "input_size": [32, 32]},
    "video": {"name": "resnet10", "width": 4, "input_size": [32, 32]},
}


def fixture_of(name: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        FIXTURES[name] = builder
        return builder

    return register


def with_params(root: Path, dataset: str, overrides: dict, profile: str = "embedded") -> dict:
    """The repository's params.yaml with ``dataset`` alone, one seed, ``overrides`` and the paths under
    ``root``."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    overrides = {
        "profile": profile,
        "experiment.datasets": [dataset],
        "experiment.seeds": [0],
        "experiment.sweeps": [],
        **{f"paths.{key}": str(root / key) for key in ("data", "results", "checkpoints", "tables")},
        **overrides,
    }
    params = config.apply_overrides(params, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    config.validate(params)
    return params


@fixture_of("synthav")
def synthav(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    return tiny_params(root)


@fixture_of("cremad")
def cremad(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    from mmbalance.data.datasets import cremad
    from tests.test_cremad import make_reference, make_repo

    repo = make_repo(root / "CREMA-D")
    monkeypatch.setattr(cremad.CremaD, "reference", make_reference(root / "reference", repo))
    data = {"source": "url", "url": repo.as_uri() + "/{path}", "val_fraction": 0.34}
    return with_params(
        root,
        "cremad",
        {
            **{f"data.cremad.{key}": value for key, value in data.items()},
            "features.embedded.cremad.audio.seconds": 1.0,
            "features.embedded.cremad.video.size": 32,
            "train.embedded.cremad.encoders": TINY_AV,
        },
    )


def youtube_clips(root: Path, clip_ids: list[str]) -> Path:
    """A folder holding one short fixture MP4 under each of ``clip_ids``."""
    from tests.clip_fixtures import write_clip

    clip = write_clip(root / "fixture.mp4")
    folder = root / "clips"
    folder.mkdir()
    for clip_id in clip_ids:
        os.link(clip, folder / f"{clip_id}.mp4")
    return folder


def youtube_preset(dataset: str) -> dict:
    return {
        f"features.embedded.{dataset}": {
            "audio": {"frontend": "pmr", "seconds": 2.0},
            "video": {"frames": 2, "rate": 1.0, "size": 32},
        },
        f"train.embedded.{dataset}.encoders": TINY_AV,
    }


@fixture_of("kinetics_sounds")
def kinetics_sounds(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    from mmbalance.data.datasets import kinetics_sounds as ks
    from mmbalance.data.youtube.clips import carve_validation

    lists = {split: ks.parse_list(ks.LISTS_DIR / name) for split, (name, _) in ks.LISTS.items()}
    kept, val = carve_validation(lists["train"], 0.1, 0)
    chosen = [*(c.clip_id for c in kept[:4]), val[0].clip_id, lists["test"][0].clip_id]
    clips = youtube_clips(root, chosen)
    return with_params(
        root,
        "kinetics_sounds",
        {"data.kinetics_sounds.clips_dir": str(clips), **youtube_preset("kinetics_sounds")},
    )


@fixture_of("vggsound")
def vggsound(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    from tests.test_vggsound import ROWS
    from tests.test_vggsound import config as vgg_config

    clips = youtube_clips(root, [f"{ytid}_{start:06d}" for ytid, start, _, _ in dict.fromkeys(ROWS)])
    data = {**vgg_config(root), "clips_dir": str(clips)}
    return with_params(root, "vggsound", {"data.vggsound": data, **youtube_preset("vggsound")})


def imagetext(root: Path, monkeypatch: pytest.MonkeyPatch, dataset: str, clip: bool) -> dict:
    """An image-text dataset's fixture (the repository and download folder of its test module), as
    itself or as its CLIP twin ``<dataset>_clip`` (CLIP tokens, the tiny CLIP towers)."""
    from mmbalance.data.datasets import sarcasm, twitter2015
    from tests.imagetext_fixtures import imagetext_params

    if dataset == "sarcasm":
        from tests.test_sarcasm import COUNTS, data_cfg, make_sources

        module = sarcasm
    else:
        from tests.test_twitter2015 import COUNTS, data_cfg, make_sources

        module = twitter2015
    url, downloads, checksums = make_sources(root / "sources")
    monkeypatch.setattr(module, "SPLIT_MD5", checksums)
    monkeypatch.setattr(module, "EXPECTED_COUNTS", COUNTS)
    params = imagetext_params(root, dataset, data_cfg(url, downloads))
    if not clip:
        return params
    name = f"{dataset}_clip"
    params["experiment"]["datasets"] = [name]
    params["features"]["embedded"][name] = {
        "image": {"size": 32, "resize": "stretch"},
        "text": {"max_length": 16, "tokenizer": "clip_bpe"},
    }
    preset = {**params["train"]["embedded"][dataset]}
    preset["encoders"] = {"image": {"name": "clip_tiny"}, "text": {"name": "clip_tiny"}}
    params["train"]["embedded"][name] = preset
    config.validate(params)
    return params


for _dataset in ("sarcasm", "twitter2015"):
    FIXTURES[_dataset] = functools.partial(imagetext, dataset=_dataset, clip=False)
    FIXTURES[f"{_dataset}_clip"] = functools.partial(imagetext, dataset=_dataset, clip=True)


@fixture_of("nvgesture")
def nvgesture(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    from mmbalance.data.datasets import nvgesture
    from tests.nvgesture_fixtures import EXPECTED, make_release
    from tests.test_nvgesture_training import nvgesture_params

    monkeypatch.setattr(nvgesture.NVGesture, "expected_lines", EXPECTED)
    return nvgesture_params(root, make_release(root / "release"))

"""``sarcasm_clip`` and ``twitter2015_clip``: registered, reading the raw data (block, data id, raw
folder) of sarcasm and twitter2015, their presets in the repository's params, the check that a text
encoder and its tokenizer belong together, and prepare → extract → one training epoch on the
Sarcasm fixture as ``sarcasm_clip`` with the tiny CLIP towers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance import config, paths
from mmbalance.data import clip_bpe
from mmbalance.data.datasets import sarcasm
from mmbalance.data.extract import extract
from mmbalance.data.generate import generate
from mmbalance.engine.loop import train
from mmbalance.errors import ConfigError
from mmbalance.registry import DATASETS
from tests.conftest import REPO
from tests.imagetext_fixtures import imagetext_params
from tests.test_sarcasm import COUNTS, data_cfg, make_sources

PAIRS = {"sarcasm_clip": "sarcasm", "twitter2015_clip": "twitter2015"}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, str]]:
    return make_sources(tmp_path_factory.mktemp("sarcasm_clip"))


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch, sources: tuple[str, Path, dict[str, str]]) -> tuple[str, Path]:
    """The fixtures' md5s and sizes stand in for the pinned ones of the real files (as test_sarcasm)."""
    monkeypatch.setattr(sarcasm, "SPLIT_MD5", sources[2])
    monkeypatch.setattr(sarcasm, "EXPECTED_COUNTS", COUNTS)
    return sources[0], sources[1]


def clip_params(root: Path, data: dict) -> dict:
    """The image-text test params of sarcasm (its data block) with ``sarcasm_clip`` the one dataset:
    32-pixel images, 16 CLIP tokens, the tiny CLIP towers, one epoch."""
    params = imagetext_params(root, "sarcasm", data)
    params["experiment"]["datasets"] = ["sarcasm_clip"]
    params["features"]["embedded"]["sarcasm_clip"] = {
        "image": {"size": 32, "resize": "stretch"},
        "text": {"max_length": 16, "tokenizer": "clip_bpe"},
    }
    preset = {**params["train"]["embedded"]["sarcasm"], "epochs": 1, "batch_size": 8}
    preset["encoders"] = {"image": {"name": "clip_tiny"}, "text": {"name": "clip_tiny"}}
    params["train"]["embedded"]["sarcasm_clip"] = preset
    config.validate(params)
    return params


def test_registered_with_the_raw_data_of_their_dataset() -> None:
    for name, source in PAIRS.items():
        plugin, original = DATASETS.get(name), DATASETS.get(source)
        assert plugin.raw_from == source and original.raw_from is None
        assert plugin.modalities == original.modalities == {"image": "image", "text": "text"}
        assert plugin().class_names({}) == original().class_names({})
        assert plugin.Config is original.Config


@pytest.mark.parametrize("profile", ["embedded", "paper"])
def test_repository_presets_share_raw_data_and_differ_in_encoders(profile: str) -> None:
    overrides = ["experiment.datasets=[sarcasm_clip, twitter2015_clip]", f"profile={profile}"]
    params = config.load_params(REPO / "params.yaml", overrides)
    for name, source in PAIRS.items():
        assert config.data_config(params, name) == config.data_config(params, source)
        assert paths.data_id(params, name) == paths.data_id(params, source)
        assert paths.raw_dir(params, name) == paths.raw_dir(params, source)
        assert paths.raw_dir(params, name).parts[-3:-1] == ("raw", source)
        assert paths.feature_id(params, name) != paths.feature_id(params, source)
        assert paths.feature_dir(params, name).parts[-2] == name
        features = config.feature_config(params, name)
        assert features["text"] == {"max_length": 77, "tokenizer": "clip_bpe"}
        resolved = paths.resolve_run(params, name, "mie", 0)
        encoders = resolved["train"]["encoders"]
        if profile == "paper":
            assert features["image"] == {"size": 224, "resize": "stretch"}
            assert (encoders["image"]["name"], encoders["text"]["name"]) == ("clip_vit_b32", "clip_b32")
            assert resolved["train"]["optimizer"] == {"name": "adam", "lr": 1.0e-4}
            stages = paths.resolve_run(params, source, "mie", 0)["method_options"]["stage_epochs"]
            assert resolved["method_options"]["stage_epochs"] == stages  # the dataset's MIE stages
            aug = paths.resolve_run(params, name, "aug", 0)["method_options"]["t_n"]
            assert aug == paths.resolve_run(params, source, "aug", 0)["method_options"]["t_n"]
        else:
            assert encoders == {"image": {"name": "clip_tiny"}, "text": {"name": "clip_tiny"}}
    assert "sarcasm_clip" not in params["data"] and "twitter2015_clip" not in params["data"]


def test_a_data_block_of_their_own_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"data\.sarcasm_clip: sarcasm_clip reads the raw data of sarcasm"):
        config.load_params(REPO / "params.yaml", ['data.sarcasm_clip={"label": "human"}'])


def test_text_encoder_and_tokenizer_must_belong_together() -> None:
    clip_with_wordpiece = ["features.embedded.sarcasm_clip.text.tokenizer=bert_wordpiece"]
    with pytest.raises(
        ConfigError,
        match=r"train\.embedded\.sarcasm_clip\.encoders\.text\.name: clip_tiny reads clip_bpe ids, but "
        r"features\.embedded\.sarcasm_clip\.text\.tokenizer is bert_wordpiece",
    ):
        config.load_params(REPO / "params.yaml", clip_with_wordpiece)
    bert_with_bpe = [
        "features.paper.twitter2015.text.tokenizer=clip_bpe",
        "features.paper.twitter2015.text.max_length=77",
    ]
    with pytest.raises(
        ConfigError,
        match=r"train\.paper\.twitter2015\.encoders\.text\.name: bert_base reads bert_wordpiece ids, but "
        r"features\.paper\.twitter2015\.text\.tokenizer is clip_bpe",
    ):
        config.load_params(
            REPO / "params.yaml", bert_with_bpe
        )  # checked in every profile, not just the active one
    both = [*bert_with_bpe, "train.paper.twitter2015.encoders.text={name: clip_b32}"]
    config.load_params(REPO / "params.yaml", both)


def test_prepare_extract_and_one_epoch_as_sarcasm_clip(pinned: tuple[str, Path], tmp_path: Path) -> None:
    torch.set_num_threads(1)
    url, downloads = pinned
    params = clip_params(tmp_path, data_cfg(url, downloads))
    raw = paths.raw_dir(params, "sarcasm_clip")
    assert raw == paths.raw_dir(params, "sarcasm")  # sarcasm's raw folder
    manifest = generate("sarcasm_clip", config.data_config(params, "sarcasm_clip"), raw, progress=False)
    assert json.loads(manifest.read_text())["dataset"] == "sarcasm"  # exactly what generating sarcasm writes
    store = paths.feature_dir(params, "sarcasm_clip")
    extract("sarcasm_clip", raw, config.feature_config(params, "sarcasm_clip"), store, progress=False)
    image = np.load(store / "train" / "image.npy")
    text = np.load(store / "train" / "text.npy")
    assert image.shape == (4, 3, 32, 32) and text.shape == (4, 3, 16) and text.dtype == np.int32
    np.testing.assert_array_equal(text[0], clip_bpe.tokenize("what a great day # fun", 16))
    assert (text[:, 0, 0] == clip_bpe.SOT_ID).all() and (
        (text[:, 0] == clip_bpe.EOT_ID).sum(axis=1) == 1
    ).all()
    assert json.loads((store / "manifest.json").read_text())["dataset"] == "sarcasm_clip"
    resolved = paths.resolve_run(params, "sarcasm_clip", "concat", 0)
    metrics = train(resolved, store, tmp_path / "run", device="cpu", progress=False)
    assert metrics["heads"] == ["fused", "image", "text"]
    assert 0.0 <= metrics["protocols"]["last"]["test"]["fused"]["acc"] <= 1.0

"""Every registered method builds and takes one training step on every dataset's paper preset.

The paper profile's encoders at their real sizes (two ResNet18s, ResNet50 + BERT-base, CLIP
ViT-B/32's towers, three I3Ds) with random weights — the preset's ``weights`` and ``pretrained``
files are a person's downloads, so they are dropped — on a batch of two tiny inputs of each
modality's kind (16-pixel frames, 64-pixel images — ResNet50's last BatchNorm needs more than one
position for a batch of two —, a 16×24 spectrogram, 8 tokens, 4-frame clips); the
method's options are those the paper profile resolves for the dataset. So no paper preset can be
unrunnable by a method again (LFM's InfoNCE and the shared heads of MLA and ReconBoost once stopped
on the image–text presets' 2048-d and 768-d features).

Cost (CI runs on 2 cores): each distinct encoder is built once and deep-copied into every model (its
initialisation dominates), SGD has no momentum, and datasets whose presets build the same model —
the same modality kinds, encoders (up to the downloaded weights and the normalisation constants)
and input shapes: Sarcasm and Twitter2015, their CLIP datasets, KS, VGGSound and synthav — are one
case, run with the first one's method options (the others differ in AUG's t_N and MIE's stage
lengths, which one step at epoch 0 does not reach). Measured: 2 min 12 s on one thread of the shared
2-core development machine.

The one expected refusal: ``channel`` and ``greedy`` (MMTM between CNN stages) on the image–text
presets, whose BERT and CLIP towers have no stages (LFM Table 1 leaves those cells empty; docs/methods.md).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator

import pytest
import torch
import yaml
from torch import nn

from mmbalance.config import method_options
from mmbalance.engine.optim import build_optimizer
from mmbalance.engine.seeding import configure_determinism
from mmbalance.engine.types import Batch, Context, ModelSpec
from mmbalance.errors import ConfigError
from mmbalance.models.encoders._clip_towers import EOT_ID, SOT_ID
from mmbalance.registry import ADAPTERS, DATASETS, METHODS
from tests.conftest import REPO

PARAMS = {**yaml.safe_load((REPO / "params.yaml").read_text()), "profile": "paper"}
NUM_CLASSES = 3
BATCH = 2
DOWNLOADS = ("weights", "pretrained")
NORMALISATION = ("mean", "std")
STAGELESS = {"channel", "greedy"}
"""MMTM methods: they need staged (CNN) encoders for every modality."""


def encoder_configs(dataset: str) -> dict[str, dict]:
    """The paper preset's encoder per modality, without the files a person downloads."""
    encoders = PARAMS["train"]["paper"][dataset]["encoders"]
    modalities = DATASETS.get(dataset).modalities
    return {m: {k: v for k, v in encoders[m].items() if k not in DOWNLOADS} for m in modalities}


def model_key(dataset: str) -> str:
    """What the model and the test's inputs depend on: kinds, encoders, input shapes."""
    modalities = DATASETS.get(dataset).modalities
    encoders = {
        m: {k: v for k, v in cfg.items() if k not in NORMALISATION}
        for m, cfg in encoder_configs(dataset).items()
    }
    features = PARAMS["features"]["paper"][dataset]
    shapes = {m: {k: features[m].get(k) for k in ("frames", "tokenizer")} for m in modalities}
    return json.dumps([modalities, encoders, shapes], sort_keys=True)


def preset_cases() -> list[list[str]]:
    """The paper presets, datasets with the same :func:`model_key` in one case."""
    cases: dict[str, list[str]] = {}
    for dataset in sorted(PARAMS["train"]["paper"]):
        cases.setdefault(model_key(dataset), []).append(dataset)
    return list(cases.values())


CASES = preset_cases()


def stageless(dataset: str) -> bool:
    """Image–text presets: BERT or CLIP towers, which have no stages for MMTM."""
    return "text" in DATASETS.get(dataset).modalities.values()


def tiny_input(kind: str, encoder: dict, features: dict, generator: torch.Generator) -> torch.Tensor:
    """A batch of ``BATCH`` inputs of ``kind`` as the feature store gives them, spatially tiny."""
    if kind == "spectrogram":
        return torch.randn(BATCH, 16, 24, generator=generator).half()
    if kind == "frames":
        return torch.randint(
            0, 256, (BATCH, features["frames"], 3, 16, 16), generator=generator, dtype=torch.uint8
        )
    if kind == "image":
        return torch.randint(0, 256, (BATCH, 3, 64, 64), generator=generator, dtype=torch.uint8)
    if kind == "clip":
        shape = (BATCH, encoder["in_channels"], 4, 16, 16)
        return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
    assert kind == "text", kind
    ids = torch.randint(1000, 2000, (BATCH, 8), generator=generator)
    clip = features.get("tokenizer") == "clip_bpe"
    ids[:, 0], ids[:, -1] = (SOT_ID, EOT_ID) if clip else (101, 102)  # [CLS] … [SEP] for WordPiece
    return torch.stack([ids, torch.ones_like(ids), torch.zeros_like(ids)], dim=1).int()


@pytest.fixture
def shared_encoders() -> Iterator[None]:
    """Route every adapter through a cache for one test: each distinct (kind, config) is built once,
    then copied."""
    built: dict[str, nn.Module] = {}
    originals = {kind: ADAPTERS.get(kind) for kind in ADAPTERS.names()}

    def caching(kind: str) -> Callable[[dict], nn.Module]:
        def build(cfg: dict) -> nn.Module:
            key = json.dumps([kind, cfg], sort_keys=True)
            if key not in built:
                built[key] = originals[kind](cfg)
            return copy.deepcopy(built[key])

        return build

    with pytest.MonkeyPatch.context() as patch:
        for kind in originals:
            patch.setitem(ADAPTERS._entries, kind, caching(kind))
        yield


def test_cases_cover_every_paper_preset() -> None:
    assert sorted(d for case in CASES for d in case) == sorted(PARAMS["train"]["paper"])
    assert ["sarcasm", "twitter2015"] in CASES and ["cremad"] in CASES and ["nvgesture"] in CASES


@pytest.mark.parametrize("datasets", CASES, ids=["+".join(case) for case in CASES])
def test_every_method_takes_a_step_on_the_paper_preset(datasets: list[str], shared_encoders: None) -> None:
    configure_determinism(torch.device("cpu"))
    dataset = datasets[0]
    features = PARAMS["features"]["paper"][dataset]
    modalities = DATASETS.get(dataset).modalities
    encoders = encoder_configs(dataset)
    spec = ModelSpec(dict(modalities), encoders, NUM_CLASSES)
    generator = torch.Generator().manual_seed(0)
    inputs = {m: tiny_input(kind, encoders[m], features[m], generator) for m, kind in modalities.items()}
    batch = Batch(inputs, torch.arange(BATCH) % NUM_CLASSES, torch.arange(BATCH))
    refused = set()
    for name in METHODS.names():
        torch.manual_seed(0)
        method = METHODS.get(name)(method_options(PARAMS, name, dataset=dataset), spec)
        try:
            model = method.build()
        except ConfigError as exc:
            assert name in STAGELESS and "staged" in str(exc), f"{dataset}/{name}: {exc}"
            refused.add(name)
            continue
        optimizer = build_optimizer(method.param_groups(model), {"name": "sgd", "lr": 0.01})
        ctx = Context(model, optimizer, 0, 3, 0, torch.device("cpu"), method.modalities, NUM_CLASSES)
        method.on_epoch_start(ctx)
        logs = method.training_step(batch, ctx)
        assert math.isfinite(logs["loss"]), f"{dataset}/{name}"
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        missing = [n for n, p in trainable if p.grad is None]
        assert not missing, f"{dataset}/{name}: no gradient for {missing[:5]}"
        assert all(torch.isfinite(p.grad).all() for _, p in trainable), f"{dataset}/{name}"
        with torch.no_grad():  # train mode: one step leaves BatchNorm's running statistics 10 % moved
            probs = method.predict(model(batch.inputs))
        for head, p in probs.items():
            assert p.shape == (BATCH, NUM_CLASSES), f"{dataset}/{name}/{head}"
            assert torch.allclose(p.sum(1), torch.ones(BATCH), atol=1e-5), f"{dataset}/{name}/{head}"
    assert refused == (STAGELESS if stageless(dataset) else set())

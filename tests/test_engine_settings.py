"""The speed settings of a training preset (mmbalance.engine.settings): validated by the schema, kept out
of the run id at their defaults, recorded in the run id and metrics.json otherwise; and whole runs
with them on the CPU — bf16/fp16 training, augmentation and prefetch resuming bit-identical."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance import config, paths
from mmbalance.engine.acceleration import is_planar, prepare_model
from mmbalance.engine.loop import train
from mmbalance.engine.seeding import configure_determinism
from mmbalance.engine.settings import DEFAULTS, EngineSettings
from mmbalance.errors import ConfigError
from mmbalance.models.model import build_model
from mmbalance.registry import METHODS
from tests.conftest import REPO
from tests.resume_check import cli_killed_and_resumed, history, train_killed_and_resumed

PRESET = "train.embedded.synthav"
AUGMENT = f'{PRESET}.augment={{"size": 32}}'
"""32-pixel crops of the tiny workspace's 16-pixel frames (see tests/test_precision.py for why not 16)."""


@pytest.fixture
def params() -> dict:
    """params.yaml with every speed setting of the synthav preset at its default (the embedded preset
    turns ``channels_last`` on)."""
    loaded = config.load_params(REPO / "params.yaml")
    for key in DEFAULTS:
        loaded["train"]["embedded"]["synthav"].pop(key, None)
    return loaded


def resolved(params: dict, *overrides: str) -> dict:
    return paths.resolve_run(config.apply_overrides(params, list(overrides)), "synthav", "concat", 0)


def test_settings_at_their_defaults_leave_the_run_id_and_config_alone(params: dict) -> None:
    plain = resolved(params)
    explicit = resolved(
        params,
        f"{PRESET}.precision=fp32",
        f"{PRESET}.deterministic=true",
        f"{PRESET}.channels_last=false",
        f"{PRESET}.compile=false",
        f"{PRESET}.prefetch=0",
    )
    assert explicit == plain
    assert EngineSettings.of(plain["train"]) == EngineSettings()


@pytest.mark.parametrize(
    ("override", "key", "value"),
    [
        ("precision=bf16", "precision", "bf16"),
        ("precision=fp16", "precision", "fp16"),
        ("deterministic=false", "deterministic", False),
        ("channels_last=true", "channels_last", True),
        ("compile=true", "compile", True),
        ('augment={"size": 224}', "augment", {"size": 224}),
    ],
)
def test_settings_that_change_the_computation_change_the_run_id(
    params: dict, override: str, key: str, value: object
) -> None:
    changed = resolved(params, f"{PRESET}.{override}")
    assert changed["run_id"] != resolved(params)["run_id"]
    assert changed["train"][key] == value  # and so metrics.json's config records it
    assert getattr(EngineSettings.of(changed["train"]), key) == value


def test_prefetch_is_recorded_but_keeps_the_run_id(params: dict) -> None:
    ahead = resolved(params, f"{PRESET}.prefetch=2")
    assert ahead["run_id"] == resolved(params)["run_id"] and ahead["train"]["prefetch"] == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("precision=fp8", f"{PRESET}.precision"),
        ("deterministic=maybe", f"{PRESET}.deterministic"),
        ("prefetch=-1", f"{PRESET}.prefetch"),
        ("prefetch=9", f"{PRESET}.prefetch"),
        ('augment={"scale": [0.5, 1.0]}', f"{PRESET}.augment"),
        ('augment={"size": 224, "crop": 1}', f"{PRESET}.augment.crop"),
        ('augment={"size": 224, "flip": 2}', f"{PRESET}.augment.flip"),
    ],
)
def test_bad_settings_are_named(params: dict, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        config.validate(config.apply_overrides(params, [f"{PRESET}.{override}"]))


def test_non_deterministic_mode_switches_the_flags_and_deterministic_restores_them() -> None:
    cpu = torch.device("cpu")
    try:
        configure_determinism(cpu, deterministic=False)
        assert not torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark  # benchmark mode only means something on CUDA
    finally:
        configure_determinism(cpu)
    assert torch.are_deterministic_algorithms_enabled()


# --- channels_last and compile -----------------------------------------------------------------------


def two_and_three_d_model() -> torch.nn.Module:
    modalities = {"audio": "spectrogram", "video": "frames", "depth": "clip"}
    encoders = {
        "audio": {"name": "resnet10", "width": 4},
        "video": {"name": "resnet10", "width": 4},
        "depth": {"name": "cnn3d", "in_channels": 1, "normalization": "unit", "width": 4, "pretrained": None},
    }
    torch.manual_seed(0)
    return build_model(modalities, encoders, "concat", 3)


def inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "audio": torch.randn(2, 32, 32, generator=gen),
        "video": torch.randint(0, 256, (2, 1, 3, 32, 32), generator=gen, dtype=torch.uint8),
        "depth": torch.randint(0, 256, (2, 1, 4, 16, 16), generator=gen, dtype=torch.uint8),
    }


def test_channels_last_converts_the_2d_encoders_only_and_computes_the_same() -> None:
    model = two_and_three_d_model()
    reference = model(inputs()).fused
    prepare_model(model, EngineSettings(channels_last=True))
    assert is_planar(model.encoders["audio"]) and not is_planar(model.encoders["depth"])
    for name in ("audio", "video"):
        convs = [p for p in model.encoders[name].parameters() if p.dim() == 4]
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        assert not all(p.is_contiguous() for p in convs)
    assert all(p.is_contiguous() for p in model.encoders["depth"].parameters())
    assert torch.allclose(model(inputs()).fused, reference, atol=1e-5)


def test_compiled_encoders_compute_the_same_and_keep_their_parameter_names() -> None:
    model = two_and_three_d_model()
    names = list(model.state_dict())
    reference = model(inputs()).fused
    prepare_model(model, EngineSettings(compile=True))
    assert list(model.state_dict()) == names
    assert torch.allclose(model(inputs()).fused, reference, atol=1e-5)


# --- whole runs ------------------------------------------------------------------------------------


def run(workspace: Path, out: Path, *overrides: str, method: str = "concat") -> dict:
    torch.set_num_threads(1)
    params = config.apply_overrides(config.load_params(workspace), list(overrides))
    config.validate(params)
    resolved_run = paths.resolve_run(params, "synthav", method, 0)
    return train(resolved_run, paths.feature_dir(params, "synthav"), out, device="cpu", progress=False)


def test_augmentation_changes_training_and_prefetch_changes_nothing(
    tiny_workspace: Path, tmp_path: Path
) -> None:
    plain = run(tiny_workspace, tmp_path / "plain")
    augmented = run(tiny_workspace, tmp_path / "augmented", AUGMENT)
    ahead = run(tiny_workspace, tmp_path / "ahead", AUGMENT, f"{PRESET}.prefetch=2")
    assert (
        augmented["run_id"]
        != plain["run_id"]
        == paths.resolve_run(config.load_params(tiny_workspace), "synthav", "concat", 0)["run_id"]
    )
    assert history(tmp_path / "augmented") != history(tmp_path / "plain")
    assert history(tmp_path / "ahead") == history(tmp_path / "augmented")
    assert ahead["run_id"] == augmented["run_id"]
    assert ahead["protocols"] == augmented["protocols"]
    a, b = (
        np.load(tmp_path / "ahead" / "predictions.npz"),
        np.load(tmp_path / "augmented" / "predictions.npz"),
    )
    assert all(np.array_equal(a[k], b[k]) for k in a.files)


def test_killed_run_with_prefetch_and_augmentation_resumes_bit_identical(
    tiny_workspace: Path, tmp_path: Path
) -> None:
    """A real process killed with SIGKILL after its first checkpoint, the reading thread running."""
    params = config.apply_overrides(config.load_params(tiny_workspace), [AUGMENT, f"{PRESET}.prefetch=2"])
    cli_killed_and_resumed(params, tmp_path, "concat")


@pytest.mark.parametrize(("method", "precision"), [("mie", "bf16"), ("mmpareto", "fp16"), ("concat", "fp16")])
def test_mixed_precision_runs_resume_bit_identical(
    method: str, precision: str, tiny_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bf16 autocast and fp16 with the gradient scaler (whose scale is checkpointed) on the CPU."""
    overrides = [f"{PRESET}.precision={precision}", AUGMENT, f"{PRESET}.prefetch=1"]
    rows = train_killed_and_resumed(
        tiny_workspace, tmp_path, monkeypatch, method, kill_after=0, overrides=overrides
    )
    assert all(np.isfinite(float(row["train_loss"])) for row in rows)
    metrics = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert metrics["config"]["train"]["precision"] == precision
    state = torch.load(tmp_path / "reference" / "ckpt" / "last.pt", weights_only=False)
    assert ("scale" in state["precision"]) == (precision == "fp16")
    assert state["precision"]["skipped_steps"] == metrics["skipped_steps"]
    assert metrics["skipped_steps"] == sum(int(row["skipped_steps"]) for row in rows)


def test_steps_skipped_for_non_finite_gradients_stay_out_of_the_epoch_means(
    tiny_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every other step's loss made NaN (as the CPU's bf16 convolution backward can make a gradient):
    under bf16 those steps are skipped and counted, the epoch's train_* means cover the applied steps
    only, and the run, whose weights stayed finite, is not marked diverged."""
    concat = METHODS.get("concat")
    original = concat.loss
    calls = itertools.count()

    def poisoned(self, outputs, batch, ctx):
        loss, logs = original(self, outputs, batch, ctx)
        return (loss * math.nan, logs) if next(calls) % 2 else (loss, logs)

    monkeypatch.setattr(concat, "loss", poisoned)
    # AUGMENT: 32-pixel frames, so that no step but the poisoned ones has a NaN gradient of oneDNN's own
    params = config.apply_overrides(config.load_params(tiny_workspace), [f"{PRESET}.precision=bf16", AUGMENT])
    resolved = paths.resolve_run(params, "synthav", "concat", 0)
    run_dir = tmp_path / "run"
    metrics = train(resolved, paths.feature_dir(params, "synthav"), run_dir, device="cpu", progress=False)
    rows = history(run_dir)
    skipped = [int(row["skipped_steps"]) for row in rows]
    assert all(count > 0 for count in skipped) and metrics["skipped_steps"] == sum(skipped)
    assert all(math.isfinite(float(row["train_loss"])) for row in rows)
    assert not metrics["convergence"]["diverged"]

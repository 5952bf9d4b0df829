"""The analysis stage end to end on a tiny trained matrix: what the engine keeps for it (the modality gap
per epoch, the val-selected model, the kept epochs), and `mmbalance analyse` for every analysis, with
numbers checked against the runs' own files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance import config, paths
from mmbalance.analysis import _runs as runs
from mmbalance.cli import main
from mmbalance.engine.metrics import modality_gap
from mmbalance.registry import ANALYSES
from tests.conftest import write_params

METHODS = ["concat", "concat_uniform_labels", "mla", "lfm_h", "mie"]
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def trained(tiny_workspace: Path, tmp_path_factory) -> Path:
    """The tiny workspace's data with METHODS x SEEDS trained (3 epochs); returns the params file."""
    params = config.load_params(tiny_workspace)
    params["experiment"]["methods"] = METHODS
    params["experiment"]["seeds"] = SEEDS
    params["paths"]["tables"] = str(tmp_path_factory.mktemp("tables"))
    path = write_params(tmp_path_factory.mktemp("analysis") / "params.yaml", params)
    torch.set_num_threads(1)
    for method in METHODS:
        for seed in SEEDS:
            args = [
                "train",
                "--params",
                str(path),
                "--dataset",
                "synthav",
                "--method",
                method,
                "--seed",
                str(seed),
            ]
            assert main([*args, "--quiet"]) == 0
    return path


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_engine_logs_the_gap_of_the_evaluated_test_features(trained: Path) -> None:
    params = config.load_params(trained)
    store = runs.feature_store(params, "synthav")
    run = paths.run_dir(params, "synthav", "concat", 0)
    _, model, state = runs.load_model(paths.checkpoint_dir(params, "synthav", "concat", 0), "last", store)
    features = runs.encode_split(model, runs.batches(store, state, "test"))
    history = rows(run / "history.csv")
    assert float(history[-1]["test_gap_audio_video"]) == pytest.approx(
        modality_gap(features["audio"], features["video"]), rel=1e-9
    )


@pytest.mark.parametrize("method", ["concat", "mie"])
def test_selected_checkpoint_is_the_val_selected_model(trained: Path, method: str) -> None:
    params = config.load_params(trained)
    store = runs.feature_store(params, "synthav")
    run = paths.run_dir(params, "synthav", method, 0)
    metrics = json.loads((run / "metrics.json").read_text())
    m, model, state = runs.load_model(paths.checkpoint_dir(params, "synthav", method, 0), "selected", store)
    assert state["epoch"] == metrics["protocols"]["val_selected"]["epochs"]["fused"]
    data = runs.batches(store, state, "test")
    features = runs.encode_split(model, data)
    for modality, stored in state["test_features"].items():
        np.testing.assert_array_equal(stored, features[modality])
    with torch.no_grad():
        probs = np.concatenate([m.predict(model(b.inputs))["fused"].numpy() for b in data.epoch()])
    np.testing.assert_allclose(probs, np.load(run / "predictions.npz")["fused"], rtol=1e-6, atol=1e-7)


def test_only_the_gradcam_methods_keep_their_epochs(trained: Path) -> None:
    params = config.load_params(trained)
    for method in METHODS:
        kept = sorted(p.name for p in paths.checkpoint_dir(params, "synthav", method, 0).iterdir())
        if method in params["analysis"]["gradcam"]["methods"]:
            assert kept == ["epoch0.pt", "epoch2.pt", "last.pt", "selected.pt"]  # [0, 6, -1] of 3 epochs
        else:
            assert kept == ["last.pt", "selected.pt"]


def test_every_analysis_writes_its_outputs(trained: Path) -> None:
    params = config.load_params(trained)
    out = Path(params["paths"]["tables"])
    for name in ANALYSES.names():
        assert main(["analyse", "--params", str(trained), "--name", name, "--quiet"]) == 0
        for path in ANALYSES.get(name)(params).outputs("synthav", out):
            assert path.is_file() and path.stat().st_size > 0, path
    assert (out / "synthav_gradcam.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "synthav_loss_landscape.pdf").read_bytes().startswith(b"%PDF")

    metrics = {
        (m, s): json.loads((paths.run_dir(params, "synthav", m, s) / "metrics.json").read_text())
        for m in METHODS
        for s in SEEDS
    }
    # Missing modality: nothing missing reproduces every run's val-selected fused accuracy.
    for row in rows(out / "synthav_missing_modality_runs.csv"):
        if row["missing"] == "complete":
            chosen = metrics[(row["method"], int(row["seed"]))]["protocols"]["val_selected"]["test"]
            assert float(row["acc"]) == pytest.approx(chosen["fused"]["acc"])
    assert {r["method"] for r in rows(out / "synthav_missing_modality_runs.csv")} == set(METHODS)
    # Label fitting: the bars are the runs' val-selected head accuracies, mean over seeds.
    for row in rows(out / "synthav_label_fitting.csv"):
        if row["head"] != "gap":
            values = [
                metrics[(row["method"], s)]["protocols"]["val_selected"]["test"][row["head"]]["acc"]
                for s in SEEDS
            ]
            assert float(row["acc_mean"]) == pytest.approx(np.mean(values))
    assert {r["labels"] for r in rows(out / "synthav_label_fitting.csv")} == {
        "L_S (one-hot)",
        "L_U (uniform)",
    }
    # Representation gap: the curve is the seeds' history column, averaged.
    for row in rows(out / "synthav_representation_gap.csv"):
        values = [
            float(
                rows(paths.run_dir(params, "synthav", row["method"], s) / "history.csv")[int(row["epoch"])][
                    "test_gap_audio_video"
                ]
            )
            for s in SEEDS
        ]
        assert float(row["gap_mean"]) == pytest.approx(np.mean(values))
    # MIE stages: the stage modality per epoch is MIE's schedule ([1, 2] epochs: audio, video, video).
    stages = {
        (r["method"], int(r["epoch"])): r["stage_modality"] for r in rows(out / "synthav_mie_stages.csv")
    }
    assert [stages[("mie", e)] for e in range(3)] == ["audio", "video", "video"]
    # Grad-CAM: the maps in the npz are in [0, 1] and one per picked sample.
    maps = np.load(out / "synthav_gradcam.npz")
    assert maps["concat/audio/epoch0"].shape[0] == params["analysis"]["gradcam"]["samples"]
    assert maps["lfm_h/video/epoch2"].min() >= 0.0 and maps["lfm_h/video/epoch2"].max() <= 1.0


def test_analyse_refuses_missing_runs(trained: Path, tmp_path: Path, capsys) -> None:
    params = config.load_params(trained)
    params["paths"]["results"] = str(tmp_path / "nothing")
    path = write_params(tmp_path / "params.yaml", params)
    assert main(["analyse", "--params", str(path), "--name", "label_fitting"]) == 2
    assert "metrics.json: not found" in capsys.readouterr().err
    assert main(["analyse", "--params", str(path), "--name", "sweep"]) == 2

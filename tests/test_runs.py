"""The run directory's files (mmbalance.runs.files): what the engine writes is what the report reads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mmbalance.errors import DataError
from mmbalance.report.clips import missing_clip_note
from mmbalance.report.plan import DatasetFacts
from mmbalance.runs import files


def test_history_columns_in_order_of_first_appearance_with_empty_cells(tmp_path: Path) -> None:
    history = [{"epoch": 0, "lr": 0.1, "a": 1.5}, {"epoch": 1, "lr": 0.05, "b": 2.0, "a": 0.5}]
    files.write_history(tmp_path, history)
    assert (tmp_path / "history.csv").read_text().splitlines() == [
        "epoch,lr,a,b",
        "0,0.1,1.5,",
        "1,0.05,0.5,2.0",
    ]
    assert files.history_header(tmp_path / files.HISTORY) == ["epoch", "lr", "a", "b"]
    columns = files.history_columns(tmp_path / files.HISTORY, {"b": "b", "gone": "missing"})
    assert set(columns) == {"epoch", "b"} and math.isnan(columns["b"][0]) and columns["b"][1] == 2.0
    assert files.last_logged(tmp_path / files.HISTORY, "b") == 2.0
    assert files.last_logged(tmp_path / files.HISTORY, "missing") is None
    assert files.read_history(tmp_path / files.HISTORY)[1]["b"] == "2.0"


def test_outputs_round_trip_and_finish_the_run(tmp_path: Path) -> None:
    run = tmp_path / "seed3"
    assert not files.is_finished(run)
    probs = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
    predictions = {"labels": np.array([0, 0]), "ids": np.array(["x", "y"]), "fused": probs}
    files.write_outputs(run, {"dataset": "d", "seed": 3}, predictions)
    assert files.is_finished(run) and files.seed_of(run / files.METRICS) == 3
    assert files.read_metrics(run / files.METRICS) == {"dataset": "d", "seed": 3}
    ids, read, labels = files.read_predictions(run / files.PREDICTIONS)
    assert ids.tolist() == ["x", "y"] and labels.tolist() == [0, 0] and np.array_equal(read, probs)
    with pytest.raises(DataError, match="no 'audio' probabilities"):
        files.read_predictions(run / files.PREDICTIONS, "audio")


def test_metrics_of_an_unknown_schema_version_are_refused(tmp_path: Path) -> None:
    path = tmp_path / files.METRICS
    path.write_text(json.dumps({"dataset": "d"}))  # no version key: version 1
    assert files.read_metrics(path)["dataset"] == "d"
    path.write_text(json.dumps({"schema": files.SCHEMA_VERSION + 1}))
    with pytest.raises(DataError, match=f"schema version {files.SCHEMA_VERSION + 1}"):
        files.read_metrics(path)
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="top level is not an object"):
        files.read_metrics(path)
    with pytest.raises(DataError, match="metrics file not found"):
        files.read_metrics(tmp_path / "none.json")
    with pytest.raises(DataError, match="not in a seed<k> run directory"):
        files.seed_of(tmp_path / "run" / files.METRICS)


def test_a_missing_clip_note_is_in_the_datasets_words() -> None:
    counts = {
        "train": {"listed": 10, "found": 9, "missing": 1},
        "test": {"listed": 4, "found": 4, "missing": 0},
    }
    facts = DatasetFacts(("image", "text"), "posts", "deleted")
    note = missing_clip_note("twitter", counts, facts)
    assert (
        note == "twitter: 1 of 10 train posts were unavailable (deleted); numbers are on the remaining posts."
    )
    with pytest.raises(DataError, match="not told how to word it"):
        missing_clip_note("twitter", counts, None)

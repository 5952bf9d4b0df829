"""The convergence rule (engine/convergence.py) and how the tables mark runs that did not converge."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmbalance.engine.convergence import MARGIN, least_squares_slope, run_convergence, series_convergence
from mmbalance.report.aggregate import CONVERGENCE, aggregate, read_summary
from mmbalance.report.convergence import MARK, Marks, convergence_note, convergence_summary
from mmbalance.report.tables import write_main_table
from tests.test_report import write_metrics


@pytest.mark.parametrize("values", [[0.1, 0.5, 0.2, 0.9], [0.3] * 7, list(np.linspace(0, 1, 12) ** 2)])
def test_slope_is_numpys_least_squares_line(values: list[float]) -> None:
    expected = np.polyfit(np.arange(len(values)), values, 1)[0]
    assert least_squares_slope(values) == pytest.approx(expected, abs=1e-12)


def test_a_run_still_rising_is_flagged() -> None:
    # +1 point per epoch over 40 epochs: the last 10 epochs rise by 9 points along the trend.
    rising = [0.40 + 0.01 * epoch for epoch in range(40)]
    result = series_convergence(rising)
    assert result["converged"] is False
    assert result["window"] == 10
    assert result["slope"] == pytest.approx(0.01)
    assert result["best_epoch"] == 39
    assert result["window_gain"] == pytest.approx(0.10)


def test_a_flat_run_converges() -> None:
    # Climbs, then fluctuates by ±1 point around 0.85 for the second half.
    flat = [0.3, 0.5, 0.7, 0.8] + [0.85 + (0.01 if epoch % 2 else -0.01) for epoch in range(36)]
    result = series_convergence(flat)
    assert result["converged"] is True
    assert abs(result["slope"]) < 0.001
    assert result["best_epoch"] == 5


def test_a_run_that_peaked_and_overfitted_converges() -> None:
    peaked = [0.4, 0.8, 0.82, 0.81] + [0.80 - 0.004 * epoch for epoch in range(16)]
    result = series_convergence(peaked)
    assert result["converged"] is True
    assert result["best_epoch"] == 2
    assert result["slope"] < 0


def test_a_late_jump_to_a_new_level_is_flagged_even_without_a_trend() -> None:
    # Flat at 0.70 until the last quarter, then flat at 0.80: the window's own slope is zero.
    jumped = [0.70] * 12 + [0.80] * 4
    result = series_convergence(jumped)
    assert result["slope"] == pytest.approx(0.0)
    assert result["window_gain"] == pytest.approx(0.10)
    assert result["converged"] is False


def test_a_dip_that_recovers_to_the_earlier_level_converges() -> None:
    # The last quarter (4 of 16 epochs) climbs back from a dip, by 2 points per epoch, to the earlier best.
    dipped = [0.5, 0.7, 0.77, 0.78, 0.78, 0.77, 0.78, 0.78, 0.77, 0.78, 0.77, 0.78, 0.72, 0.74, 0.76, 0.78]
    result = series_convergence(dipped)
    assert result["slope"] == pytest.approx(0.02)
    assert result["window_gain"] == pytest.approx(0.0, abs=1e-12)
    assert result["converged"] is True


def test_the_trend_end_counts_when_the_window_is_noisy() -> None:
    # A steady climb of 0.5 point per epoch with alternating noise: the window's line ends about 5.5
    # points above the best epoch before it.
    noisy = [0.6 + 0.005 * e + (0.01 if e % 2 else -0.01) for e in range(44)]
    result = series_convergence(noisy)
    expected_end = np.polyval(np.polyfit(np.arange(11), noisy[-11:], 1), 10)
    assert result["window_gain"] == pytest.approx(max(expected_end, max(noisy[-11:])) - max(noisy[:-11]))
    assert result["converged"] is False


def test_the_margin_is_inclusive() -> None:
    # The window gains exactly the margin over the earlier best, with no trend inside it.
    values = [0.5] * 6 + [0.5 + MARGIN] * 2
    assert series_convergence(values)["converged"] is True
    assert series_convergence([0.5] * 6 + [0.5 + MARGIN + 0.001] * 2)["converged"] is False


@pytest.mark.parametrize("epochs", [1, 2, 3])
def test_too_short_a_run_is_not_converged(epochs: int) -> None:
    result = series_convergence([0.5] * epochs)
    assert result["converged"] is False and result["window"] == 0 and result["slope"] is None


def history(fused: list[float], audio: list[float]) -> list[dict[str, float]]:
    return [
        {"epoch": e, "val_fused_acc": f, "val_audio_acc": a}
        for e, (f, a) in enumerate(zip(fused, audio, strict=True))
    ]


def test_joint_models_decide_on_the_fused_series_per_head_models_on_every_head() -> None:
    flat = [0.8] * 8
    rising = [0.1 * e for e in range(8)]
    joint = run_convergence(history(flat, rising), ["fused", "audio"], per_head=False)
    assert joint["converged"] is True and list(joint["series"]) == ["fused"]
    per_head = run_convergence(history(flat, rising), ["audio"], per_head=True)
    assert per_head["converged"] is False and list(per_head["series"]) == ["audio"]
    assert per_head["margin"] == MARGIN and "last quarter" in per_head["rule"]


def test_a_run_whose_loss_became_nan_diverged_and_did_not_converge() -> None:
    # Accuracy collapses to chance after the loss blows up: the rule alone would call it settled.
    rows = history([0.5, 0.8, 0.85, 0.17, 0.17, 0.17, 0.17, 0.17], [0.5] * 8)
    assert run_convergence(rows, ["fused"], per_head=False)["converged"] is True
    for row, loss in zip(rows, [1.0, 0.5, 0.4, -5137.6, float("nan"), "nan", "nan", "nan"], strict=True):
        row["train_loss"] = loss
    result = run_convergence(rows, ["fused"], per_head=False)
    assert result["diverged"] is True and result["converged"] is False
    assert result["series"]["fused"]["converged"] is False


def with_convergence(path: Path, converged: bool) -> None:
    data = json.loads(path.read_text())
    heads = ["audio", "video"] if data["method"] == "unimodal" else ["fused"]
    data["convergence"] = {
        "converged": converged,
        "series": {head: {"converged": converged, "best_epoch": 3} for head in heads},
    }
    path.write_text(json.dumps(data))


def test_summary_counts_converged_seeds_and_the_main_table_marks_the_method(tmp_path: Path) -> None:
    files = []
    for method in ("concat", "ogm_ge", "unimodal"):
        for seed in (0, 1, 2):
            path = write_metrics(tmp_path / "results", method, seed)
            with_convergence(path, not (method == "ogm_ge" and seed == 1))
            files.append(path)
    summary = tmp_path / "summary.csv"
    aggregate(files, summary)
    rows = {(r["method"], r["head"]): r for r in read_summary(summary) if r["protocol"] == CONVERGENCE}
    assert rows[("ogm_ge", "fused")]["mean"] == pytest.approx(2 / 3)
    assert rows[("ogm_ge", "fused")]["values"] == "1.0;0.0;1.0"
    assert rows[("concat", "fused")]["mean"] == 1.0 and ("unimodal", "video") in rows
    write_main_table(summary, tmp_path, "synth_av", ["unimodal", "concat", "ogm_ge"], ["audio", "video"])
    text = (tmp_path / "synth_av_main.md").read_text()
    assert f"| ogm_ge {MARK} |" in text and f"| concat {MARK}" not in text
    assert "Convergence: 8 of 9 runs converged" in text
    assert f"{MARK} not converged by" in text and "ogm_ge (1 of 3 seeds)" in text


def test_a_run_without_a_convergence_record_fails_aggregation_beside_one_with(tmp_path: Path) -> None:
    first = write_metrics(tmp_path, "concat", 0)
    with_convergence(first, True)
    second = write_metrics(tmp_path, "concat", 1)
    with pytest.raises(Exception, match="convergence"):
        aggregate([first, second], tmp_path / "summary.csv")


def test_marks_collect_every_flagged_run_once() -> None:
    counts = {("d", "a"): (1, 3), ("d", "b"): (0, 3)}
    marks = Marks(lambda dataset, method: counts.get((dataset, method)))
    assert marks("1.00", "d", "b") == "1.00"
    assert marks("1.00", "d", "a") == f"1.00 {MARK}"
    assert marks("2.00", "d", "b", "a") == f"2.00 {MARK}"
    assert marks("2.00", "d", "unknown") == "2.00"
    assert marks.notes() == [convergence_note({"d/a": (1, 3)})]
    assert Marks(lambda *_: None).notes() == []


def test_summary_sentence() -> None:
    assert convergence_summary({}) is None
    assert convergence_summary({"a": (0, 3), "b": (0, 3)}).startswith("Convergence: all 6 runs")
    assert convergence_note({"a": (0, 3)}) is None
    assert convergence_summary({"a": (2, 3)}).startswith("Convergence: 1 of 3 runs converged")

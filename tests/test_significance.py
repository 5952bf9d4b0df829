"""Significance (mmbalance.report.significance) against independent computations, and the tables and
figures that carry it, built from fake run files: sweeps, the significance table, the main table's
marks, the discrepancy marks, AUG's ours-only tables and the training cost."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mmbalance import config, pipeline
from mmbalance.engine.machine import cpu_model, describe
from mmbalance.errors import DataError
from mmbalance.report.aggregate import aggregate
from mmbalance.report.costs import build_cost_table, machine_label, run_cost, write_training_cost
from mmbalance.report.discrepancies import Pair, build_discrepancy_table
from mmbalance.report.results import Results
from mmbalance.report.sensitivity import build_sweep_table, plot_sweep
from mmbalance.report.significance import (
    Settings,
    compare,
    correctness,
    paired_bootstrap,
    paired_t_test,
)
from mmbalance.report.significance_table import build_significance_table, main_table_marks
from mmbalance.report.studies import build_study_table, load_studies

REPO = Path(__file__).resolve().parents[1]
SETTINGS = Settings(alpha=0.05, level=0.95, resamples=500, seed=3)


# --- the two tests against independent computations ----------------------------------------------


def test_paired_t_test_against_scipy_and_by_hand() -> None:
    first, second = np.array([0.70, 0.72, 0.69]), np.array([0.75, 0.74, 0.76])
    test = paired_t_test(second - first)
    reference = stats.ttest_rel(second, first)
    assert test.t == pytest.approx(reference.statistic) and test.p == pytest.approx(reference.pvalue)
    # By hand: d = (0.05, 0.02, 0.07), mean 0.14/3, squared deviations sum to 0.0038/3, so the sample
    # variance is 0.0019/3 and t = (0.14/3) / √(0.0019/9) = 3.2118.
    assert test.mean == pytest.approx(0.14 / 3) and test.std == pytest.approx(math.sqrt(0.0019 / 3))
    assert test.t == pytest.approx((0.14 / 3) / math.sqrt(0.0019 / 9)) and test.t == pytest.approx(
        3.2118, abs=1e-4
    )
    assert test.p == pytest.approx(2 * stats.t.sf(test.t, 2)) and 0.05 < test.p < 0.1
    assert paired_t_test([0.01]).p != paired_t_test([0.01]).p  # one seed: NaN
    assert paired_t_test([0.0, 0.0, 0.0]).p == 1.0
    assert math.isnan(paired_t_test([0.02, 0.02]).p)  # no spread: undefined, no mark


def test_paired_bootstrap_against_a_direct_resampling() -> None:
    rng = np.random.default_rng(0)
    correct = rng.random((3, 90)) < 0.8
    reference = rng.random((3, 90)) < 0.7
    boot = paired_bootstrap(correct, reference, resamples=700, level=0.9, seed=11)
    # Direct: draw the test samples one replicate at a time, recompute every seed's two accuracies.
    draw = np.random.default_rng(11)
    replicates = []
    for _ in range(700):
        index = draw.integers(0, 90, 90)
        replicates.append(np.mean([correct[s, index].mean() - reference[s, index].mean() for s in range(3)]))
    low, high = np.quantile(replicates, [0.05, 0.95])
    assert boot.low == pytest.approx(low, abs=1e-12) and boot.high == pytest.approx(high, abs=1e-12)
    assert boot.delta == pytest.approx(np.mean(correct.mean(1) - reference.mean(1)))
    assert (boot.n_samples, boot.n_seeds) == (90, 3)
    # The same predictions give Δ = 0 and a zero-width interval; a wide gap excludes 0.
    same = paired_bootstrap(correct, correct, resamples=100, level=0.95, seed=0)
    assert (same.delta, same.low, same.high, same.excludes_zero) == (0.0, 0.0, 0.0, False)
    assert paired_bootstrap(
        np.ones((1, 50)), np.zeros((1, 50)), resamples=50, level=0.95, seed=0
    ).excludes_zero


# --- fake runs: summaries, histories, predictions ------------------------------------------------

N_TEST = 120
SEEDS = (0, 1, 2)
# run → (test samples classified right by seed 0, more per seed); accuracy = that count / N_TEST, and
# the predictions classify exactly the first that many samples right.
CORRECT = {
    "concat": (84, 1),
    "ogm_ge": (84, 0),
    "ogm_ge_alpha_0p1": (96, 1),
    "ogm_ge_alpha_0p3": (85, 1),
    "aug": (90, 1),
    "aug_no_eps": (89, 1),
    "lfm_h": (86, 0),
    "lfm_h_js": (72, 2),
}


def accuracy(method: str, seed: int) -> float:
    base, step = CORRECT[method]
    return (base + step * seed) / N_TEST


def write_run(root: Path, method: str, seed: int, machine: dict | None = None) -> Path:
    run = root / "synthav" / method / "0123456789" / f"seed{seed}"
    run.mkdir(parents=True)
    acc = accuracy(method, seed)
    heads = {"fused": acc, "audio": acc - 0.1, "video": acc - 0.2}
    cells = {h: {"acc": a, "map": a, "macro_f1": a} for h, a in heads.items()}
    protocols = {
        p: {"epochs": dict.fromkeys(heads, 1), "test": cells, "val": cells}
        for p in ("val_selected", "best_test")
    }
    metrics = {
        "dataset": "synthav",
        "method": method,
        "seed": seed,
        "run_id": "0123456789",
        "protocols": protocols,
    }
    if machine is not None:
        metrics["machine"] = machine
    (run / "metrics.json").write_text(json.dumps(metrics))
    labels = np.arange(N_TEST) % 4
    right = np.arange(N_TEST) < round(acc * N_TEST)
    probs = np.full((N_TEST, 4), 0.1)
    probs[np.arange(N_TEST), np.where(right, labels, (labels + 1) % 4)] = 0.7
    np.savez(run / "predictions.npz", labels=labels, ids=np.arange(N_TEST), fused=probs)
    with (run / "history.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "seconds"])
        writer.writerows([[e, 1.0 + seed + 0.5 * e] for e in range(3)])  # 3 + 3·seed + 1.5 seconds per run
    return run


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Results, dict[str, list[Path]]]:
    runs = {m: [write_run(tmp_path / "results", m, s) for s in SEEDS] for m in CORRECT}
    summary = tmp_path / "summary.csv"
    aggregate([run / "metrics.json" for dirs in runs.values() for run in dirs], summary)
    results = Results(
        {"synthav": summary},
        {"synthav": {m: [r / "history.csv" for r in dirs] for m, dirs in runs.items()}},
        {"synthav": {m: [r / "predictions.npz" for r in dirs] for m, dirs in runs.items()}},
    )
    return results, runs


def test_compare_recomputes_the_accuracies_from_the_predictions(fake) -> None:
    results, _ = fake
    found = compare(results, "synthav", "ogm_ge_alpha_0p1", "concat", "val_selected", SETTINGS)
    differences = [accuracy("ogm_ge_alpha_0p1", s) - accuracy("concat", s) for s in SEEDS]
    assert found.bootstrap.delta == pytest.approx(np.mean(differences))  # the npz agree with metrics.json
    assert found.seeds.mean == pytest.approx(np.mean(differences))
    assert found.marks(0.05) == "†"  # +10 points on 120 samples; seed differences identical → no t-test
    assert found.cell(0.05) == "+10.00 ± 0.00 †"
    # ogm_ge − concat: 0, −1, −2 of 120 samples → −0.83 ± 0.83 points, t = −1.73, p = 0.23: no mark.
    close = compare(results, "synthav", "ogm_ge", "concat", "val_selected", SETTINGS)
    assert close.cell(0.05) == "-0.83 ± 0.83" and not close.bootstrap.excludes_zero
    assert close.seeds.p == pytest.approx(stats.ttest_1samp([0, -1, -2], 0).pvalue)
    # Under best-on-test there is no bootstrap (only val-selected predictions are kept).
    assert compare(results, "synthav", "ogm_ge", "concat", "best_test", SETTINGS).bootstrap is None
    assert compare(results, "synthav", "nope", "concat", "val_selected", SETTINGS) is None


def test_predictions_of_other_test_samples_are_refused(fake, tmp_path: Path) -> None:
    _, runs = fake
    path = runs["concat"][1] / "predictions.npz"
    data = dict(np.load(path))
    np.savez(path, **{**data, "ids": data["ids"][::-1]})
    with pytest.raises(DataError, match="other test samples than"):
        correctness({0: runs["concat"][0] / "predictions.npz", 1: path})
    (runs["concat"][2] / "predictions.npz").unlink()
    with pytest.raises(DataError, match="predictions file not found"):
        correctness({2: runs["concat"][2] / "predictions.npz"})


def test_significance_table_and_main_table_marks(fake) -> None:
    results, _ = fake
    methods = ["unimodal", "concat", "ogm_ge", "ogm_ge_alpha_0p1", "lfm_h_js"]
    table = build_significance_table(results, "synthav", methods, SETTINGS)
    rows = {row[0]: dict(zip(table.flat_header(), row, strict=True)) for row in table.rows}
    assert list(rows) == ["ogm_ge", "ogm_ge_alpha_0p1", "lfm_h_js"]
    # lfm_h_js − concat per seed: −12, −11, −10 samples of 120 → −9.17 ± 0.83 points, t = −19.05.
    js = rows["lfm_h_js"]
    assert js["val-selected (ours): Δ ACC"] == "-9.17 ± 0.83 *†"
    expected = stats.ttest_rel(
        [accuracy("lfm_h_js", s) for s in SEEDS], [accuracy("concat", s) for s in SEEDS]
    )
    assert float(js["val-selected (ours): p"]) == pytest.approx(expected.pvalue, abs=5e-4)
    assert js["best-on-test (papers): Δ ACC"] == "-9.17 ± 0.83 *"
    assert js["val-selected (ours): test samples"] == "120"
    assert "3 seeds are few: the seed test has 2 degrees of freedom" in "\n".join(table.notes)
    marks = main_table_marks(results, "synthav", methods, SETTINGS)
    assert marks == {"ogm_ge": "", "ogm_ge_alpha_0p1": "†", "lfm_h_js": "*†"}


def test_discrepancy_table_marks_the_accuracy_difference(fake) -> None:
    results, _ = fake
    pair = Pair("LFM", "matching loss", "lfm_h", "lfm_h_js", "align_loss: js_code", "code")
    table = build_discrepancy_table(results, ["synthav"], "val_selected", pairs=[pair], settings=SETTINGS)
    row = dict(zip(table.flat_header(), table.rows[0], strict=True))
    # −14, −12, −10 samples of 120: −10.00 ± 1.67 points, t = −10.39, p = 0.009.
    assert row["synthav: Δ ACC"] == "-10.00 ± 1.67 *†" and row["synthav: Δ MAP"] == "-10.00 ± 1.67"
    best = build_discrepancy_table(results, ["synthav"], "best_test", pairs=[pair], settings=SETTINGS)
    assert dict(zip(best.flat_header(), best.rows[0], strict=True))["synthav: Δ ACC"] == "-10.00 ± 1.67 *"
    assert "no † here" in "\n".join(best.notes)


def test_aug_tables_compare_every_row_with_its_reference(fake) -> None:
    results, _ = fake
    study = next(s for s in load_studies() if s.stem == "aug_table2")
    table = build_study_table(
        results, study, ["synthav"], {"synthav": ["audio", "video"]}, "val_selected", SETTINGS
    )
    rows = {row[1]: dict(zip(table.flat_header(), row, strict=True)) for row in table.rows}
    assert rows["aug"]["synthav: ACC"] == "75.83 ± 0.83" and rows["aug"]["synthav: Δ ACC"] == "—"
    assert rows["aug"]["synthav: Acc video"] == "55.83 ± 0.83"
    assert rows["aug_no_eps"]["synthav: Δ ACC"] == "-0.83 ± 0.00"
    assert rows["aug_no_eps_all"]["synthav: ACC"] == "not run"
    assert [s.stem for s in load_studies()] == ["aug_table2", "aug_table3", "aug_table4"]
    params = config.load_params(REPO / "params.yaml")
    named = {row.method for s in load_studies() for row in s.rows} | {
        row.reference for s in load_studies() for row in s.rows
    }
    ablations = set(
        config.experiment_methods({**params, "experiment": {**params["experiment"], "methods": "ablations"}})
    )
    assert named <= ablations  # every row is trained by the default matrix


# --- sweeps: table and figure ------------------------------------------------------------------


def test_sweep_table_and_figure(fake, tmp_path: Path) -> None:
    results, _ = fake
    params = config.load_params(REPO / "params.yaml")
    params["experiment"].update(methods=["concat", "ogm_ge"], sweeps=["ogm_ge_alpha"], sweep_seeds=3)
    (sweep,) = pipeline.sweep_plans(params, "synthav")
    table = build_sweep_table(results, sweep, "synthav", SETTINGS)
    rows = {row[0]: dict(zip(table.header, row, strict=True)) for row in table.rows}
    assert list(rows) == ["0.1", "0.3", "0.5", "0.8", "reference"]
    assert rows["0.8"]["Run"] == "ogm_ge (default)" and rows["0.8"]["Δ ACC vs default"] == "—"
    assert rows["0.1"]["ACC"] == "80.83 ± 0.83"
    assert rows["0.1"]["Δ ACC vs concat"] == "+10.00 ± 0.00 †"
    assert rows["0.1"]["Δ ACC vs default"] == "+10.83 ± 0.83 *†"
    assert rows["0.5"]["ACC"] == "not run" and rows["reference"]["Run"] == "concat"
    # sweep_seeds: only the first seed — the numbers change to that seed's.
    params["experiment"]["sweep_seeds"] = 1
    (sweep,) = pipeline.sweep_plans(params, "synthav")
    one = {row[0]: row for row in build_sweep_table(results, sweep, "synthav", SETTINGS).rows}
    assert one["0.1"][2] == "80.00 ± –"
    written = plot_sweep(results, sweep, "synthav", tmp_path / "sweep", ("png", "pdf"))
    assert [p.name for p in written] == ["sweep.png", "sweep.pdf"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and written[1].read_bytes()[:5] == b"%PDF-"


def test_sweep_figure_with_a_default_outside_the_points_and_a_grid(fake, tmp_path: Path) -> None:
    results, _ = fake
    params = config.load_params(REPO / "params.yaml")
    params["sweeps"]["a"] = {"method": "ogm_ge", "values": {"alpha": [0.1, 0.3]}}
    params["sweeps"]["g"] = {
        "method": "ogm_ge",
        "values": {"alpha": [0.1, 0.3], "modulation": ["OGM_GE", "OGM"]},
    }
    params["experiment"].update(methods=["concat", "ogm_ge"], sweeps=["a", "g"])
    config.validate(params)
    plans = {plan.name: plan for plan in pipeline.sweep_plans(params, "synthav")}
    table = build_sweep_table(results, plans["a"], "synthav", SETTINGS)
    shown = [row[:2] for row in table.rows]
    assert shown == [["0.1", "a_0p1"], ["0.3", "a_0p3"], ["0.8", "ogm_ge (default)"], ["reference", "concat"]]
    grid = build_sweep_table(results, plans["g"], "synthav", SETTINGS)
    assert table.header[:2] == ["alpha", "Run"] and grid.header[:3] == ["alpha", "modulation", "Run"]
    assert len(grid.rows) == 4 + 1 + 1
    for name in ("a", "g"):
        written = plot_sweep(results, plans[name], "synthav", tmp_path / name, ("png",))
        assert written[0].stat().st_size > 1000


# --- training cost ------------------------------------------------------------------------------


def test_training_cost_from_the_histories(tmp_path: Path) -> None:
    machine = {"cpu": "Test CPU", "logical_cpus": 2, "torch_threads": 1, "accelerator": "none (CPU)",
               "system": "Linux x86_64", "torch": "2.14.1"}  # fmt: skip
    runs = {m: [write_run(tmp_path, m, s, machine) for s in SEEDS] for m in ("concat", "aug")}
    cost = run_cost(runs["aug"][1])
    assert (cost.epochs, cost.total, cost.per_epoch) == (3, 7.5, 2.5)  # (2 + 2.5 + 3) seconds
    table, per_run = build_cost_table(
        {m: [run_cost(r) for r in d] for m, d in runs.items()} | {"mie": []}, "synthav"
    )
    rows = {row[0]: row for row in table.rows}
    # per run 4.5, 7.5, 10.5 s → mean 7.5, sample std 3.0; per epoch 1.5, 2.5, 3.5 → 2.5 ± 1.0.
    assert rows["aug"] == ["aug", "3", "3", "2.5 ± 1.0", "7.5 ± 3.0", "1.00×"]
    assert rows["mie"][1:] == ["not run"] * 5
    assert per_run == {"concat": (7.5, 3.0), "aug": (7.5, 3.0)}
    assert (
        "Measured on: Test CPU, 2 logical CPUs, 1 torch thread, no accelerator; Linux x86_64, torch 2.14.1."
        in table.notes
    )
    written = write_training_cost(runs, tmp_path / "out", "synthav", ("png",))
    assert sorted(p.name for p in written) == [
        f"synthav_training_cost.{x}" for x in ("csv", "md", "png", "tex")
    ]
    (runs["aug"][0] / "history.csv").write_text("epoch,seconds\n0,\n")
    with pytest.raises(DataError, match="no 'seconds' for every epoch"):
        run_cost(runs["aug"][0])


def test_the_machine_is_described(tmp_path: Path) -> None:
    import torch

    info = describe(torch.device("cpu"))
    assert info["accelerator"] == "none (CPU)" and info["torch"] == torch.__version__
    assert info["torch_threads"] == torch.get_num_threads() and info["logical_cpus"] >= 1
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU @ 2.0GHz\n")
    assert cpu_model(cpuinfo) == "Example CPU @ 2.0GHz"
    assert cpu_model(tmp_path / "missing")  # falls back to the platform's answer
    assert machine_label(None).startswith("not recorded")
    assert "2 torch threads" in machine_label({**info, "torch_threads": 2})

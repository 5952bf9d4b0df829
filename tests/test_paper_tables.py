"""The papers' tables: published numbers as data, layouts, rendering from a fixture of metrics files,
the discrepancy and protocol tables, the gap and singular-value figures, and the `tables` command."""

from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmbalance import config as mmcfg
from mmbalance import paths as mmpaths
from mmbalance import pipeline
from mmbalance.errors import ConfigError, DataError
from mmbalance.registry import DATASETS, METHODS
from mmbalance.report.aggregate import aggregate
from mmbalance.report.discrepancies import Pair, build_discrepancy_table, load_pairs
from mmbalance.report.figures import plot_modality_gap, plot_singular_values
from mmbalance.report.layouts import dataset_infos, load_layouts, read_layout
from mmbalance.report.outputs import read_record
from mmbalance.report.paper_tables import build_paper_table, paper_table_stems, write_paper_tables
from mmbalance.report.protocol_table import build_protocol_table
from mmbalance.report.published import read_published, shipped
from mmbalance.report.results import Results
from mmbalance.report.studies import study_stems
from mmbalance.report.tables import Table
from tests.conftest import tiny_params, write_params

REPO = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)
PROTOCOLS = ("val_selected", "best_test", "last")
METRICS = {"acc": 0.0, "map": 0.05, "macro_f1": -0.01}
# Rows that have no implementation: BalanceBenchmark-only methods, AUG's "MML w/ GB", MIE's
# Normalized-MIE. A layout name outside these, the registry and params' variants is a typo.
PLANNED = {
    "mmcosine", "umt", "mbsd", "cml", "relearning", "opm", "amco", "modality_valuation", "mml_gb",
    "mie_normalized",
}  # fmt: skip
# Published rows no layout shows: AUG's secondary parameter counts and times (not accuracies).
NOT_TABULATED = {("aug_secondary_unverified", m) for m in ("params_million", "hours", "seconds")}


# --- published numbers -------------------------------------------------------------------------


def test_shipped_numbers_load_and_are_checked() -> None:
    numbers = shipped()
    assert len(numbers) == 16
    t1 = numbers["lfm_table1_main_comparison"]
    cell = t1[("Ours-LB", "CREMA-D", "", "ACC")]
    assert (cell.value, cell.std, cell.display()) == (83.62, 0.11, "83.62 ± 0.11")
    t4 = numbers["lfm_table4_integration_strategy"]
    cell = t4[("Constant alpha=0", "KineticsSounds", "Multiple", "ACC")]
    assert cell.metric_caveat.startswith("inferred: table gives no metric")
    assert (
        numbers["mie_table5_singular_values"][
            ("MIE", "Kinetics-Sounds", "FC(Dim x 256)", "singular value Max")
        ].text
        == "3477.7"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("paper,table,method,dataset,setting,metric,value,std\n", "columns"),
        ("{h}\nLFM,T1,Concat,KS,,ACC,sixty,,\n", "'value' = 'sixty' is not a number"),
        ("{h}\nLFM,T1,Concat,KS,,ACC,60,x,\n", "'std' = 'x' is not a number"),
        ("{h}\nLFM,T1,Concat,KS,,ACC,60,,\nLFM,T1,Concat,KS,,ACC,61,,\n", "Concat/KS//ACC given twice"),
        ("{h}\nLFM,T1,,KS,,ACC,60,,\n", "empty 'method'"),
    ],
)
def test_bad_paper_numbers_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "numbers.csv"
    path.write_text(text.format(h="paper,table,method,dataset,setting,metric,value,std,note"))
    with pytest.raises(DataError, match=re.escape(message)):
        read_published(path)


# --- layouts against the published numbers ---------------------------------------------------------


def test_every_published_number_is_in_a_layout_and_every_layout_row_finds_its_numbers() -> None:
    used: set[tuple[str, tuple]] = set()
    for layout in load_layouts().values():
        for row in layout.rows:
            found = [layout.published(spec, g) for r, g, _, spec in layout.cells() if r is row]
            assert any(found), f"{layout.id}: row '{row.label}' finds no published number"
        used |= {(spec.source, layout.published(spec, g).key) for _, g, _, spec in layout.cells()
                 if layout.published(spec, g)}  # fmt: skip
    for source, cells in shipped().items():
        for key, cell in cells.items():
            if (source, cell.metric) not in NOT_TABULATED:
                assert (source, key) in used, f"{source}: {key} is in no layout"


def test_layout_names_are_registered_variants_or_planned() -> None:
    params = mmcfg.load_params(REPO / "params.yaml")
    known = set(METHODS.names()) | set(params["variants"]) | PLANNED
    for layout in load_layouts().values():
        names = {spec.method for *_, spec in layout.cells()}
        assert names <= known, f"{layout.id}: {names - known}"
    for pair in load_pairs()[1]:
        assert {pair.reference, pair.switched} <= set(METHODS.names()) | set(params["variants"])


def test_ablations_set_holds_every_variant_and_what_they_are_compared_with() -> None:
    params = mmcfg.load_params(REPO / "params.yaml", ["experiment.methods=ablations"])
    ablations = set(mmcfg.experiment_methods(params))
    assert set(params["variants"]) <= ablations
    assert {run for pair in load_pairs()[1] for run in (pair.reference, pair.switched)} <= ablations
    assert (
        params["experiment"]["method_sets"]["full"]
        == mmcfg.load_params(REPO / "params.yaml")["experiment"]["method_sets"]["full"]
    )


def test_dataset_map_matches_the_registry() -> None:
    infos = dataset_infos()
    registered = {name: DATASETS.get(name).modalities for name in infos if name in DATASETS}
    assert infos["synthav"].stand_in and infos["synthav"].modality_order(registered["synthav"]) == tuple(
        DATASETS.get("synthav").modalities
    )
    assert infos["nvgesture"].modality_order(registered["nvgesture"]) == ("rgb", "flow", "depth")
    # Every listed order names exactly the registered modalities.
    for name in registered:
        assert set(infos[name].modality_order(registered[name])) == set(registered[name])
    with pytest.raises(ConfigError, match="differ from the registered"):
        infos["nvgesture"].modality_order(["rgb", "depth"])


LAYOUT = """
title: T
source: lfm_table2_vggsound
groups: [{paper: VGGSound, columns: [{label: ACC, metric: ACC}]}]
rows: [{label: AGM, method: agm}]
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("method: agm}", "method: agm, colour: red}", "unknown key 'colour'"),
        ("method: agm}", "method: agm, head: 0}", "head 0 is not"),
        ("metric: ACC}", "metric: BLEU}", "metric 'BLEU' has no counterpart"),
        ("source: lfm_table2_vggsound", "source: nope", "source 'nope' is not a CSV"),
        ("paper: VGGSound", "paper: VGG", "no dataset of datasets.yaml has the label 'VGG'"),
        ("{label: AGM, method: agm}", "{label: AGM}", "no 'method'"),
    ],
)
def test_bad_layouts_are_named(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(LAYOUT.replace(old, new))
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_layout(path)


# --- rendering from a fixture of metrics files ---------------------------------------------------

# (dataset, method) -> per-head (base, spread): value = base + offsets + spread * (seed - 1), so the
# mean is base + offsets and the sample std is spread.
RUNS = {
    ("kinetics_sounds", "lfm_lb"): {"fused": (0.70, 0.01), "audio": (0.60, 0.01), "video": (0.50, 0.03)},
    ("synthav", "lfm_lb"): {"fused": (0.80, 0.02), "audio": (0.70, 0.0), "video": (0.75, 0.01)},
    ("synthav", "lfm_h"): {"fused": (0.78, 0.01), "audio": (0.70, 0.01), "video": (0.60, 0.01)},
    ("synthav", "lfm_h_js"): {"fused": (0.74, 0.02), "audio": (0.72, 0.01), "video": (0.50, 0.01)},
    ("synthav", "unimodal"): {"audio": (0.72, 0.01), "video": (0.84, 0.02)},
    ("synthav", "mie"): {"fused": (0.68, 0.01), "audio": (0.60, 0.01), "video": (0.55, 0.01)},
}
BEST_TEST_BONUS = 0.02  # best-on-test = val-selected + 2 points + 0.5 point per seed


def value(dataset: str, method: str, protocol: str, head: str, metric: str, seed: int) -> float:
    base, spread = RUNS[(dataset, method)][head]
    bonus = BEST_TEST_BONUS + 0.005 * seed if protocol == "best_test" else 0.0
    return base + METRICS[metric] + bonus + spread * (seed - 1)


def write_run(root: Path, dataset: str, method: str, seed: int) -> Path:
    heads = list(RUNS[(dataset, method)])
    protocols = {
        p: {
            "epochs": dict.fromkeys(heads, 3),
            **{s: {h: {m: value(dataset, method, p, h, m, seed) for m in METRICS} for h in heads}
               for s in ("test", "val")},
        }
        for p in PROTOCOLS
    }  # fmt: skip
    run = root / dataset / method / "0123456789" / f"seed{seed}"
    run.mkdir(parents=True)
    metrics = {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "run_id": "0123456789",
        "protocols": protocols,
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    write_history(run / "history.csv", seed, sv=method == "mie")
    write_predictions(run / "predictions.npz", value(dataset, method, "val_selected", heads[0], "acc", seed))
    return run


def write_predictions(path: Path, accuracy: float, n: int = 200) -> Path:
    """Val-selected test predictions of ``n`` samples, the first ``accuracy · n`` classified correctly."""
    labels = np.arange(n) % 3
    correct = np.arange(n) < round(accuracy * n)
    probs = np.full((n, 3), 0.1)
    probs[np.arange(n), np.where(correct, labels, (labels + 1) % 3)] = 0.8
    np.savez(path, labels=labels, ids=np.arange(n), fused=probs, audio=probs, video=probs)
    return path


def write_history(path: Path, seed: int, sv: bool) -> Path:
    """Four epochs of test accuracy per head; with ``sv``, singular values at epochs 1 and 3."""
    columns = ["epoch", "alpha", "test_fused_acc", "test_audio_acc", "test_video_acc", "seconds"]
    if sv:
        columns += [
            f"sv_{m}_{layer}_{s}" for m in ("audio", "video") for layer in (0, 2, 3) for s in ("max", "mean")
        ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for epoch in range(4):
            row = {"epoch": epoch, "alpha": 1.0 / (epoch + 1), "test_fused_acc": 0.5, "test_audio_acc": 0.6}
            row["seconds"] = 2.0 + seed
            row["test_video_acc"] = 0.3 + 0.1 * epoch
            if sv and epoch in (1, 3):
                row |= {c: 100.0 * (epoch + 1) + seed for c in columns if c.startswith("sv_")}
            writer.writerow(row)
    return path


@pytest.fixture
def results(tmp_path: Path) -> Results:
    root = tmp_path / "results"
    summaries, histories = {}, {}
    for dataset in ("synthav", "kinetics_sounds"):
        runs = [(m, write_run(root, d, m, s)) for (d, m) in RUNS if d == dataset for s in SEEDS]
        summaries[dataset] = tmp_path / f"{dataset}_summary.csv"
        aggregate([run / "metrics.json" for _, run in runs], summaries[dataset])
        histories[dataset] = {}
        for method, run in runs:
            histories[dataset].setdefault(method, []).append(run / "history.csv")
    return Results(summaries, histories)


def cells(table: Table) -> dict[str, dict[str, str]]:
    """Row label → flat header label → cell."""
    return {row[0]: dict(zip(table.flat_header(), row, strict=True)) for row in table.rows}


def test_ablation_table_ours_published_delta_gap_and_not_run(results: Results) -> None:
    layout = load_layouts()["lfm_table3"]
    table = build_paper_table(layout, results, "val_selected", ["synthav"])
    rows = cells(table)
    assert list(rows) == ["noCL+noDI", "CL+noDI", "CL+DI"]
    lb = rows["CL+DI"]
    # Kinetics-Sounds: MAP = base + 5 points; GAP per seed |audio - video| = 0.10 - 0.02 (seed - 1).
    assert lb["KineticsSounds: Multiple ours"] == "75.00 ± 1.00"
    assert lb["KineticsSounds: Multiple paper"] == "78.97"
    assert lb["KineticsSounds: Multiple Δ"] == "-3.97"
    assert lb["KineticsSounds: GAP ours"] == "10.00 ± 2.00"
    assert lb["KineticsSounds: GAP paper"] == "2.02" and lb["KineticsSounds: GAP Δ"] == "+7.98"
    # The stand-in group comes first and has ours only: |0.75 - 0.70| + (0.01 - 0) (seed - 1).
    assert table.groups[1] == ("synthav (ours only)", 4)
    assert lb["synthav (ours only): GAP"] == "5.00 ± 1.00"
    assert lb["Run"] == "lfm_lb"
    assert set(rows["noCL+noDI"][c] for c in table.flat_header() if c.endswith("ours")) == {"not run"}
    assert rows["noCL+noDI"]["KineticsSounds: Multiple paper"] == "69.32"
    assert rows["noCL+noDI"]["KineticsSounds: Multiple Δ"] == "—"
    # Not run on CREMA-D (no results for that dataset): the published number is still shown.
    assert lb["CREMA-D: Multiple ours"] == "not run" and lb["CREMA-D: Multiple paper"] == "90.06"
    notes = "\n".join(table.notes)
    assert "INCONSISTENT: |51.05-47.05|=4.00 != printed GAP" in notes
    assert "kinetics_sounds/lfm_lb 0123456789" in notes and "Seeds: 3 per run." in notes


def test_best_test_protocol_and_unimodal_heads(results: Results) -> None:
    table = build_paper_table(load_layouts()["lfm_table1"], results, "best_test", ["synthav"])
    rows = cells(table)
    # best-on-test = val + 2 points + 0.5 point per seed: mean +2.5 points, std +0.5.
    assert rows["Ours-LB"]["synthav (ours only): ACC"] == "82.50 ± 2.50"
    assert rows["Unimodal-2"]["synthav (ours only): ACC"] == "86.50 ± 2.50"
    assert rows["Unimodal-3"]["synthav (ours only): ACC"] == "—"
    assert rows["Ours-LB"]["KineticsSounds: ACC paper"] == "72.53 ± 0.31"
    assert rows["Concat"]["synthav (ours only): ACC"] == "not run"
    assert "best-on-test (papers)" in table.caption


def test_singular_values_from_history(results: Results) -> None:
    layout = load_layouts()["mie_table5"]
    assert layout.stems(("val_selected", "best_test")) == ["mie_table5"]
    rows = cells(build_paper_table(layout, results, None, ["synthav"]))
    # Last logged value: epoch 3, 400 + seed -> mean 401, std 1.
    assert rows["FC(Dim x 256) Max"]["synthav (ours only): MIE m1"] == "401.0 ± 1.0"
    assert rows["FC(256 x 64) Average"]["synthav (ours only): MIE m2"] == "401.0 ± 1.0"
    assert rows["FC(Dim x 256) Max"]["synthav (ours only): MIE (w/o SAM) m1"] == "not run"
    assert rows["FC(Dim x 256) Max"]["Kinetics-Sounds: MIE m1 paper"] == "3477.7"


def test_files_latex_and_markdown(tmp_path: Path, results: Results) -> None:
    written = write_paper_tables(results, tmp_path, ["synthav"])
    stems = paper_table_stems()
    assert sorted(p.name for p in written) == sorted(f"{s}.{x}" for s in stems for x in ("md", "csv", "tex"))
    for tex in tmp_path.glob("*.tex"):
        text = tex.read_text()
        body = "\n".join(
            line for line in text.splitlines() if not line.startswith("%") and "label" not in line
        )
        for env in set(re.findall(r"\\begin\{(\w+\*?)\}", body)):
            assert body.count(f"\\begin{{{env}}}") == body.count(f"\\end{{{env}}}") == 1, tex
        assert body.count("{") == body.count("}") + body.count(r"\{") - body.count(r"\}"), tex
        assert "±" not in body and "Δ" not in body, tex
        # Unescaped specials: _ and #, & outside a column separator, % other than a line-end comment.
        unescaped = re.search(r"(?<!\\)([_#]|%(?!$)|&(?! ))", body.replace(" & ", " "), re.MULTILINE)
        assert unescaped is None, (tex, unescaped)
    md = (tmp_path / "lfm_table2_val_selected.md").read_text()
    assert (
        "| Ours-LB | lfm_lb | 80.00 ± 2.00 | 85.00 ± 2.00 | not run | 52.74 | — | not run | 55.98 | — |" in md
    )


def test_discrepancy_table_pairs_seeds(results: Results) -> None:
    pair = Pair("LFM", "matching loss", "lfm_h", "lfm_h_js", "align_loss: js_code", "code")
    missing = Pair("MIE", "SAM", "mie", "mie_sam_code", "sam: code", "code")
    table = build_discrepancy_table(
        results, ["synthav", "kinetics_sounds"], "val_selected", pairs=[pair, missing]
    )
    rows = {row[1]: dict(zip(table.flat_header(), row, strict=True)) for row in table.rows}
    # ACC: 0.74 + 0.02 (s-1) minus 0.78 + 0.01 (s-1), per seed -> -4 ± 1 points.
    assert rows["matching loss"]["synthav: ACC reference"] == "78.00 ± 1.00"
    assert rows["matching loss"]["synthav: Δ ACC"] == "-4.00 ± 1.00"
    assert rows["matching loss"]["kinetics_sounds: Δ ACC"] == "not run"
    assert rows["SAM"]["synthav: ACC reference"] == "68.00 ± 1.00"
    assert rows["SAM"]["synthav: ACC switched"] == "not run" and rows["SAM"]["synthav: Δ MAP"] == "not run"


def test_protocol_table_inflation(results: Results) -> None:
    table = build_protocol_table(results, ["unimodal", "lfm_lb", "concat"], {"synthav": ["audio", "video"]})
    rows = cells(table)
    # best - val per seed = 2 + 0.5 seed points -> 2.5 ± 0.5.
    assert rows["lfm_lb"]["synthav: inflation"] == "2.50 ± 0.50"
    assert rows["lfm_lb"]["synthav: val-selected"] == "80.00 ± 2.00"
    assert rows["Unimodal-1 (audio)"]["synthav: best-on-test"] == "74.50 ± 1.50"
    assert rows["concat"]["synthav: last epoch"] == "not run"
    assert statistics.stdev([2.0, 2.5, 3.0]) == pytest.approx(0.5)


def test_gap_and_singular_value_figures(tmp_path: Path, results: Results) -> None:
    histories = {"mie": sorted((tmp_path / "results" / "synthav" / "mie").rglob("history.csv")), "concat": []}
    written = plot_modality_gap(histories, tmp_path / "gap", ["audio", "video"], ("png", "pdf"))
    assert [p.name for p in written] == ["gap.png", "gap.pdf"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and written[1].read_bytes()[:5] == b"%PDF-"
    written = plot_singular_values(histories, tmp_path / "sv", ("png",))
    assert written[0].stat().st_size > 1000
    # A row of panels per method that logs singular values (concat does not), a column per layer.
    twice = plot_singular_values(histories | {"mie_code": histories["mie"]}, tmp_path / "sv2", ("png",))
    one, two = (Image.open(paths[0]).size for paths in (written, twice))
    assert two[0] == one[0] and two[1] > 1.8 * one[1]
    assert plot_singular_values({"concat": []}, tmp_path / "none", ("png",))[0].is_file()


# --- the command: outputs the workflow declares, rebuilt identically from cached metrics ---------


def test_tables_command_writes_the_declared_outputs_identically(tmp_path: Path) -> None:
    from mmbalance.cli import main
    from mmbalance.report.discrepancies import discrepancy_stems
    from mmbalance.report.protocol_table import PROTOCOL_STEM

    params = tiny_params(tmp_path, **{"experiment.methods": ["unimodal", "lfm_lb", "mie"]})
    params_file = write_params(tmp_path / "params.yaml", params)
    for method in ("unimodal", "lfm_lb", "mie"):
        for seed in params["experiment"]["seeds"]:
            run = mmpaths.run_dir(params, "synthav", method, seed)
            source = write_run(tmp_path / "fixture", "synthav", method, seed)
            run.mkdir(parents=True)
            data = json.loads((source / "metrics.json").read_text()) | {"run_id": run.parent.name}
            (run / "metrics.json").write_text(json.dumps(data))
            (run / "history.csv").write_text((source / "history.csv").read_text())
            (run / "predictions.npz").write_bytes((source / "predictions.npz").read_bytes())
    assert main(["aggregate", "--params", str(params_file), "--dataset", "synthav"]) == 0
    outputs = []
    for out in ("a", "b"):
        assert main(["tables", "--params", str(params_file), "--out-dir", str(tmp_path / out)]) == 0
        outputs.append({p.name: p.read_bytes() for p in (tmp_path / out).iterdir()})
    assert outputs[0] == outputs[1]
    sweeps = [f"synthav_sweep_{name}" for name in params["experiment"]["sweeps"]]
    assert len(sweeps) == len(params["experiment"]["sweeps"]) > 0  # the sweeps of params.yaml, none run
    figure_stems = ["modality_curves", "modality_gap", "singular_values", "alpha", "training_cost"]
    figures = {f"{s}.{f}" for s in [*(f"synthav_{s}" for s in figure_stems), *sweeps]
               for f in params["report"]["figure_formats"]}  # fmt: skip
    tables = {f"{s}.{x}" for s in [*paper_table_stems(), *discrepancy_stems(), PROTOCOL_STEM, "synthav_main",
              "synthav_significance", "synthav_training_cost", *study_stems(), *sweeps]
              for x in ("md", "csv", "tex")}  # fmt: skip
    assert set(outputs[0]) == figures | tables | {"metrics.json", "outputs.txt"}
    # what the workflow declares (mmbalance.pipeline.report_outputs) is what the command writes
    declared = [p for files in pipeline.report_outputs(params, tmp_path / "a").values() for p in files]
    assert sorted(p.name for p in declared) == sorted(set(outputs[0]) - {"outputs.txt"})
    assert read_record(tmp_path / "a") == sorted(set(outputs[0]) - {"outputs.txt"})

    # A smaller matrix: LFM-LB's α figure goes, a file the command never wrote stays.
    (tmp_path / "a" / "notes.md").write_text("mine")
    smaller = mmcfg.apply_overrides(params, ['experiment.methods=["unimodal", "mie"]'])
    write_params(params_file, smaller)
    assert main(["aggregate", "--params", str(params_file), "--dataset", "synthav"]) == 0
    assert main(["tables", "--params", str(params_file), "--out-dir", str(tmp_path / "a")]) == 0
    left = {p.name for p in (tmp_path / "a").iterdir()}
    alpha = {f"synthav_alpha.{f}" for f in params["report"]["figure_formats"]}
    assert left == (set(outputs[0]) - alpha) | {"notes.md"}
    # Two seeds (the tiny params): MAP 0.78 + 0.05 and 0.80 + 0.05.
    assert "| CL+DI | lfm_lb | 84.00 ± 1.41 |" in outputs[0]["lfm_table3_val_selected.md"].decode()

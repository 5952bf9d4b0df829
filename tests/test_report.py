"""Report stage: aggregation over seeds, the main table (Markdown/CSV/LaTeX) and the curve figure."""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from pathlib import Path

import pytest
from PIL import Image

from mmbalance.errors import DataError, MMBalanceError
from mmbalance.report.aggregate import SUMMARY_COLUMNS, aggregate, read_summary
from mmbalance.report.figures import plot_modality_curves
from mmbalance.report.tables import Table, latex_escape, render_latex, render_markdown, write_main_table

DATASET = "synth_av"  # an underscore, so the LaTeX escaping is exercised
MODALITIES = ("audio", "video")
SEEDS = (0, 1, 2)
METRICS = ("acc", "macro_f1", "map")
PROTOCOLS = ("val_selected", "best_test", "last")
# method -> (heads, run id, spread); value = base + spread * (seed - 1): mean = base, sample std = spread.
METHODS = {
    "concat": (("fused", "audio", "video"), "aaaaaaaaaa", 0.01),
    "ogm_ge": (("fused", "audio", "video"), "bbbbbbbbbb", 0.02),
    "unimodal": (("audio", "video"), "cccccccccc", 0.005),
}
BASE = {
    ("val_selected", "fused"): 0.71,
    ("best_test", "fused"): 0.74,
    ("val_selected", "audio"): 0.52,
    ("best_test", "audio"): 0.55,
    ("val_selected", "video"): 0.33,
    ("best_test", "video"): 0.36,
}


def value(method: str, protocol: str, split: str, head: str, metric: str, seed: int) -> float:
    """The hand-chosen fixture value of one cell."""
    base = BASE.get((protocol, head), 0.6) + {"acc": 0.0, "macro_f1": -0.01, "map": 0.05}[metric]
    base += {"concat": 0.0, "ogm_ge": 0.02, "unimodal": -0.1}[method] + (0.03 if split == "val" else 0.0)
    return base + METHODS[method][2] * (seed - 1)


def write_metrics(root: Path, method: str, seed: int, run_id: str | None = None) -> Path:
    heads, default_id, _ = METHODS[method]
    run_id = run_id or default_id
    protocols = {
        protocol: {
            "epochs": {head: 3 for head in heads},
            **{
                split: {
                    head: {m: value(method, protocol, split, head, m, seed) for m in METRICS}
                    for head in heads
                }
                for split in ("test", "val")
            },
        }
        for protocol in PROTOCOLS
    }
    metrics = {
        "dataset": DATASET,
        "method": method,
        "seed": seed,
        "run_id": run_id,
        "heads": list(heads),
        "modalities": list(MODALITIES),
        "protocols": protocols,
        "epochs_trained": 5,
        "train_seconds": 1.0,
        "config": {},
        "config_hash": run_id,
    }
    path = root / DATASET / method / run_id / f"seed{seed}" / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))
    return path


def write_history(path: Path, heads: tuple[str, ...], seed: int, epochs: int = 5) -> Path:
    columns = ["epoch", "lr", "seconds", "train_loss", "train_coef_audio"]
    columns += [f"{s}_{h}_{m}" for s in ("val", "test") for h in heads for m in ("loss", *METRICS)]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for epoch in range(epochs):
            row = {c: 0.2 + 0.1 * epoch + 0.01 * seed for c in columns}
            writer.writerow(row | {"epoch": epoch})
    return path


@pytest.fixture
def metrics_files(tmp_path: Path) -> list[Path]:
    return [write_metrics(tmp_path / "results", method, seed) for method in METHODS for seed in SEEDS]


@pytest.fixture
def summary(tmp_path: Path, metrics_files: list[Path]) -> Path:
    out = tmp_path / "summary.csv"
    aggregate(metrics_files, out)
    return out


def test_aggregate_mean_and_sample_std(tmp_path: Path, metrics_files: list[Path]) -> None:
    out = tmp_path / "summary.csv"
    rows = aggregate(list(reversed(metrics_files)), out)
    n_cells = sum(len(PROTOCOLS) * 2 * len(heads) * len(METRICS) for heads, _, _ in METHODS.values())
    assert len(rows) == n_cells
    for row in rows:
        expected = [
            value(row["method"], row["protocol"], row["split"], row["head"], row["metric"], s) for s in SEEDS
        ]
        assert row["mean"] == pytest.approx(statistics.mean(expected), abs=1e-12)
        assert row["std"] == pytest.approx(statistics.stdev(expected), abs=1e-12)
        assert row["n_seeds"] == 3
        assert row["seeds"] == "0;1;2"
        assert [float(v) for v in row["values"].split(";")] == expected
        assert row["run_id"] == METHODS[row["method"]][1]
    with out.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == SUMMARY_COLUMNS
        on_disk = list(reader)
    first = on_disk[0]
    assert (first["dataset"], first["method"], first["protocol"], first["split"], first["head"]) == (
        DATASET,
        "concat",
        "val_selected",
        "test",
        "fused",
    )
    assert float(first["mean"]) == pytest.approx(0.71) and float(first["std"]) == pytest.approx(0.01)
    assert read_summary(out) == rows
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_aggregate_ddof0_is_population_std(tmp_path: Path, metrics_files: list[Path]) -> None:
    rows = aggregate(metrics_files, tmp_path / "summary.csv", ddof=0)
    for row in rows:
        values = [float(v) for v in row["values"].split(";")]
        assert row["std"] == pytest.approx(statistics.pstdev(values), abs=1e-12)


def test_single_seed_std_is_nan_and_renders_dash(tmp_path: Path) -> None:
    files = [write_metrics(tmp_path / "results", "concat", 0)]
    rows = aggregate(files, tmp_path / "summary.csv")
    assert all(math.isnan(row["std"]) and row["n_seeds"] == 1 for row in rows)
    md, _, _ = write_main_table(
        tmp_path / "summary.csv", tmp_path / "tables", DATASET, ["concat"], MODALITIES
    )
    assert "| concat | 70.00 ± – |" in md.read_text()


def test_mixing_run_ids_is_an_error(tmp_path: Path) -> None:
    a = write_metrics(tmp_path / "results", "concat", 0)
    b = write_metrics(tmp_path / "results", "concat", 1, run_id="dddddddddd")
    with pytest.raises(MMBalanceError, match="different runs") as info:
        aggregate([a, b], tmp_path / "summary.csv")
    assert str(a) in str(info.value) and str(b) in str(info.value)
    assert not (tmp_path / "summary.csv").exists()


def test_repeated_seed_is_an_error(tmp_path: Path) -> None:
    a = write_metrics(tmp_path / "results", "concat", 0)
    with pytest.raises(MMBalanceError, match="seed 0 given twice"):
        aggregate([a, a], tmp_path / "summary.csv")


def test_missing_or_corrupt_metrics_file_is_named(tmp_path: Path, metrics_files: list[Path]) -> None:
    missing = tmp_path / "results" / "nope" / "metrics.json"
    with pytest.raises(DataError, match=re.escape(str(missing))):
        aggregate([*metrics_files, missing], tmp_path / "summary.csv")
    metrics_files[1].write_text('{"dataset": "synth_av", "method": ')
    with pytest.raises(DataError, match=re.escape(str(metrics_files[1]))):
        aggregate(metrics_files, tmp_path / "summary.csv")


def test_percentages_instead_of_fractions_are_rejected(tmp_path: Path) -> None:
    path = write_metrics(tmp_path / "results", "concat", 0)
    data = json.loads(path.read_text())
    data["protocols"]["last"]["test"]["fused"]["acc"] = 71.0
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=re.escape("last.test.fused.acc")):
        aggregate([path], tmp_path / "summary.csv")


def markdown_rows(text: str) -> dict[str, list[str]]:
    """Table body rows of a Markdown table keyed by their first cell (header and rule excluded)."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return {
        cells[0]: cells[1:]
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])
    }


def test_main_table_markdown(tmp_path: Path, summary: Path) -> None:
    methods = ["unimodal", "concat", "sum", "ogm_ge"]
    paths = write_main_table(summary, tmp_path / "tables", DATASET, methods, MODALITIES)
    assert [p.name for p in paths] == [f"{DATASET}_main.md", f"{DATASET}_main.csv", f"{DATASET}_main.tex"]
    text = paths[0].read_text()
    header = [c.strip() for c in text.splitlines()[2].strip("|").split("|")]
    columns = ["ACC", "MAP", "macro-F1", "Acc audio", "Acc video"]
    assert header == [
        "Method",
        *(f"val-selected (ours): {c}" for c in columns),
        *(f"best-on-test (papers): {c}" for c in columns),
    ]
    rows = markdown_rows(text)
    assert list(rows) == ["Unimodal-1 (audio)", "Unimodal-2 (video)", "concat", "sum", "ogm_ge"]
    # val-selected: fused 71 / MAP 76 / F1 70, audio 52, video 33; best-on-test: +3 each.
    assert rows["concat"] == [
        "71.00 ± 1.00", "76.00 ± 1.00", "70.00 ± 1.00", "52.00 ± 1.00", "33.00 ± 1.00",
        "74.00 ± 1.00", "79.00 ± 1.00", "73.00 ± 1.00", "55.00 ± 1.00", "36.00 ± 1.00",
    ]  # fmt: skip
    assert rows["ogm_ge"][:5] == [
        "73.00 ± 2.00",
        "78.00 ± 2.00",
        "72.00 ± 2.00",
        "54.00 ± 2.00",
        "35.00 ± 2.00",
    ]
    assert rows["sum"] == ["not run"] * 10
    # Unimodal rows carry that modality's own head (base - 10 points), other modality's column not applicable.
    assert rows["Unimodal-1 (audio)"][:5] == [
        "42.00 ± 0.50",
        "47.00 ± 0.50",
        "41.00 ± 0.50",
        "42.00 ± 0.50",
        "—",
    ]
    assert rows["Unimodal-2 (video)"][5:] == [
        "26.00 ± 0.50",
        "31.00 ± 0.50",
        "25.00 ± 0.50",
        "—",
        "26.00 ± 0.50",
    ]
    assert "Seeds: 3 per method (0, 1, 2)." in text
    assert "sample std (ddof=1)" in text
    assert "val-selected (ours): the epoch with the best validation fused accuracy" in text
    assert "best-on-test (papers): the epoch with the best test fused accuracy" in text
    with paths[1].open(newline="") as handle:
        table_csv = list(csv.reader(handle))
    assert table_csv[0] == header
    assert table_csv[3][0] == "concat" and table_csv[3][1] == "71.00 ± 1.00"


def test_main_table_latex_is_balanced_and_escaped(tmp_path: Path, summary: Path) -> None:
    tex = write_main_table(summary, tmp_path, DATASET, ["concat", "ogm_ge", "unimodal"], MODALITIES)[2]
    text = tex.read_text()
    environments = set(re.findall(r"\\begin\{(\w+)\}", text)) | set(re.findall(r"\\end\{(\w+)\}", text))
    assert environments == {"table", "tabular"}
    for env in environments:
        assert text.count(f"\\begin{{{env}}}") == text.count(f"\\end{{{env}}}") == 1
    assert text.index(r"\toprule") < text.index(r"\midrule") < text.index(r"\bottomrule")
    body = [line for line in text.splitlines() if not line.startswith("%")]
    assert not any("±" in line or re.search(r"(?<!\\)[_%&]", line.replace(" & ", "")) for line in body
                   if "\\label" not in line)  # fmt: skip
    assert r"71.00 $\pm$ 1.00" in text and r"ogm\_ge" in text and r"synth\_av" in text
    assert r"\multicolumn{5}{c}{val-selected (ours)}" in text and r"\cmidrule(lr){2-6}" in text
    rows = [line for line in body if line.rstrip().endswith(r"\\") and "multicolumn" not in line]
    assert len(rows) == 1 + 4 and {line.count(" & ") for line in rows} == {10}


def test_generic_renderers() -> None:
    table = Table(header=["Method", "ACC"], rows=[["a|b", "50 % & 1_2"]], caption="Cap", notes=["n1"])
    assert "| a\\|b | 50 % & 1_2 |" in render_markdown(table)
    assert r"50 \% \& 1\_2" in render_latex(table)
    assert latex_escape("±–<") == r"$\pm$--\textless{}"
    with pytest.raises(ValueError, match="cells"):
        Table(header=["a", "b"], rows=[["only one"]])


def test_main_table_refuses_other_ddof(tmp_path: Path, summary: Path) -> None:
    with pytest.raises(MMBalanceError, match="ddof=0"):
        write_main_table(summary, tmp_path, DATASET, ["concat"], MODALITIES, ddof=0)


def histories(root: Path) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for method, (heads, _, _) in METHODS.items():
        for seed in SEEDS:
            path = root / f"{method}_seed{seed}.csv"
            files.setdefault(method, []).append(
                write_history(path, heads, seed, epochs=4 if seed == 2 else 5)
            )
    return files


def test_figure_png_and_pdf(tmp_path: Path) -> None:
    files = histories(tmp_path) | {"sum": []}
    written = plot_modality_curves(
        files, tmp_path / "figs" / "curves.svg", MODALITIES, formats=("png", "pdf")
    )
    assert written == [tmp_path / "figs" / "curves.png", tmp_path / "figs" / "curves.pdf"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and written[0].stat().st_size > 1000
    assert written[1].read_bytes()[:5] == b"%PDF-" and written[1].stat().st_size > 1000
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["curves.pdf", "curves.png"]


def test_figure_errors(tmp_path: Path) -> None:
    missing = tmp_path / "gone.csv"
    with pytest.raises(DataError, match=re.escape(str(missing))):
        plot_modality_curves({"concat": [missing]}, tmp_path / "f", MODALITIES)
    files = histories(tmp_path)
    with pytest.raises(MMBalanceError, match="unsupported"):
        plot_modality_curves(files, tmp_path / "f", MODALITIES, formats=("docx",))


def test_seed_lacking_a_value_is_named(tmp_path: Path) -> None:
    a = write_metrics(tmp_path / "results", "concat", 0)
    b = write_metrics(tmp_path / "results", "concat", 1)
    data = json.loads(b.read_text())
    del data["protocols"]["last"]["val"]["audio"]["map"]
    b.write_text(json.dumps(data))
    with pytest.raises(DataError, match=re.escape(f"{b}: has no last.val.audio.map")):
        aggregate([a, b], tmp_path / "summary.csv")


def test_headline_metrics_from_summary(tmp_path: Path) -> None:
    from mmbalance.report.headline import write_headline_metrics

    files = [write_metrics(tmp_path, "concat", seed) for seed in SEEDS]
    summary = tmp_path / "summary.csv"
    aggregate(files, summary)
    data = json.loads(write_headline_metrics({DATASET: summary}, tmp_path / "metrics.json").read_text())
    cell = data[DATASET]["concat"]["val_selected"]["fused"]["acc"]
    assert cell["mean"] == pytest.approx(value("concat", "val_selected", "test", "fused", "acc", 1))
    assert cell["std"] == pytest.approx(0.01)
    assert set(data[DATASET]["concat"]) == set(PROTOCOLS)


def test_history_column_figure(tmp_path: Path) -> None:
    from mmbalance.report.figures import plot_history_columns

    files = []
    for seed in SEEDS:
        path = tmp_path / f"seed{seed}.csv"
        rows = ["epoch,alpha"] + [f"{e},{1 - 0.1 * e + 0.01 * seed}" for e in range(5)]
        path.write_text("\n".join(rows) + "\n")
        files.append(path)
    written = plot_history_columns(
        {"lfm_lb": (files, "alpha"), "lfm_h": ([], "alpha")}, tmp_path / "alpha", "α", "α", ("png", "pdf")
    )
    assert [p.suffix for p in written] == [".png", ".pdf"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(DataError, match="no 'beta' column"):
        plot_history_columns({"lfm_lb": (files, "beta")}, tmp_path / "beta", "β", "β")


def test_many_history_lines_stay_distinguishable(tmp_path: Path) -> None:
    """17 LFM presets on one α figure: no two lines share colour and style; the legend goes beside
    the axes (a wider figure) instead of over the curves."""
    from mmbalance.report.figures import LEGEND_INSIDE, line_styles, plot_history_columns

    for n in (2, 10, 17, 40):
        assert len(set(line_styles(n))) == n
    path = tmp_path / "seed0.csv"
    path.write_text("epoch,alpha\n0,1.0\n1,0.5\n")
    few = plot_history_columns(
        {f"m{i}": ([path], "alpha") for i in range(LEGEND_INSIDE)}, tmp_path / "few", "α", "α"
    )
    many = plot_history_columns({f"m{i}": ([path], "alpha") for i in range(17)}, tmp_path / "many", "α", "α")
    width = {name: Image.open(paths[0]).size[0] for name, paths in (("few", few), ("many", many))}
    assert width["many"] > width["few"]


def test_curve_figures_follow_the_methods_declarations() -> None:
    from mmbalance.pipeline import curve_figures

    figures = {f.stem: f for f in curve_figures({}, ["concat", "lfm_h", "lfm_lb", "aug"], ["audio", "video"])}
    assert set(figures) == {"alpha", "classifiers", "train_gap_loss"}
    assert figures["train_gap_loss"].lines == {"aug": ("aug", "train_gap_loss")}
    assert figures["alpha"].lines == {"lfm_h": ("lfm_h", "alpha"), "lfm_lb": ("lfm_lb", "alpha")}
    assert figures["classifiers"].lines["aug: video"] == ("aug", "classifiers_video")
    assert curve_figures({}, ["concat", "sum"], ["audio", "video"]) == []


@pytest.mark.parametrize("n_panels", [1, 3, 60])
def test_figure_title_sits_above_every_panel(tmp_path: Path, n_panels: int) -> None:
    """A tall grid (62 runs, one panel each) kept its title inside the first row of panels."""
    from mmbalance.report.figures import _new_figure, _title_and_layout

    fig, axes = _new_figure(tmp_path / "f", ("png",), n_panels)
    for ax in axes:
        ax.set_title("a method (3 seeds)")
    _title_and_layout(fig, "Test accuracy per head\n(mean ± std over seeds)")
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    top_of_panels = max(ax.get_tightbbox(renderer).y1 for ax in axes)
    assert title.y0 >= top_of_panels
    assert title.y1 <= fig.bbox.y1

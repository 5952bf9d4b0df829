"""Sensitivity sweeps (mmbalance.sweeps): expansion into variants, run names and ids, reuse of runs
the matrix already has, the seeds, validation errors naming the key; variants' `train` blocks."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from mmbalance import config, paths, sweeps
from mmbalance.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def params() -> dict:
    """params.yaml with one sweep of our own selected (OGM-GE's α, 0.8 being its default)."""
    params = config.load_params(REPO / "params.yaml")
    params["sweeps"]["alpha"] = {"method": "ogm_ge", "values": {"alpha": [0.1, 0.8, 2]}}
    params["experiment"].update(methods=["concat", "ogm_ge", "mie", "mie_rho_paper"], sweeps=["alpha"])
    config.validate(params)
    return params


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(0.33, "0p33"), (1e-05, "1em05"), (100.0, "100p0"), (2, "2"), (True, "true"), ([1e-10], "1em10"),
     ([0.1, 0.2], "0p1_0p2"), ("OGM_GE", "ogmge")],
)  # fmt: skip
def test_values_become_run_name_fragments(value, fragment: str) -> None:
    assert sweeps.encode_value(value) == fragment


def test_points_are_variants_with_the_swept_options(params: dict) -> None:
    sweep = sweeps.defined(params)["alpha"]
    assert [sweep.point_name(p) for p in sweep.points()] == ["alpha_0p1", "alpha_0p8", "alpha_2"]
    base = paths.resolve_run(params, "synthav", "ogm_ge", 0)
    point = paths.resolve_run(params, "synthav", "alpha_0p1", 0)
    assert point["method_class"] == "ogm_ge" and point["method"] == "alpha_0p1"
    assert point["method_options"] == {**base["method_options"], "alpha": 0.1}
    assert paths.resolve_run(params, "synthav", "alpha_2", 0)["method_options"]["alpha"] == 2.0  # int → float
    assert paths.run_dir(params, "synthav", "alpha_0p1", 1).parts[-3] == "alpha_0p1"


def test_a_point_equal_to_a_run_of_the_matrix_is_that_run(params: dict) -> None:
    points = sweeps.points(params, sweeps.defined(params)["alpha"], "synthav")
    assert [(p.name, p.run, p.is_default) for p in points] == [
        ("alpha_0p1", "alpha_0p1", False),
        ("alpha_0p8", "ogm_ge", True),  # the default: OGM-GE's own run, not trained again
        ("alpha_2", "alpha_2", False),
    ]
    # ρ = 1e-10 is the variant mie_rho_paper of experiment.methods; 0.05 is MIE's default.
    served = {p.name: p.run for p in sweeps.points(params, sweeps.defined(params)["mie_rho"], "synthav")}
    assert served["mie_rho_1em10"] == "mie_rho_paper" and served["mie_rho_0p05"] == "mie"
    # Per dataset: where the per-dataset setting makes 0.1 the configured α, that point is ogm_ge's run.
    edited = copy.deepcopy(params)
    edited["train"]["embedded"]["synthav"]["methods"]["ogm_ge"] = {"alpha": 0.1}
    runs = [p.run for p in sweeps.points(edited, sweeps.defined(edited)["alpha"], "synthav")]
    assert runs == ["ogm_ge", "alpha_0p8", "alpha_2"]


def test_run_seeds_add_the_sweeps_runs_for_the_sweep_seeds(params: dict) -> None:
    params["experiment"]["sweep_seeds"] = 1
    runs = config.run_seeds(params, "synthav")
    assert runs == {
        "concat": [0, 1, 2],
        "ogm_ge": [0, 1, 2],
        "mie": [0, 1, 2],
        "mie_rho_paper": [0, 1, 2],
        "alpha_0p1": [0],
        "alpha_2": [0],
    }
    params["experiment"].update(methods=["mie"], sweep_seeds=2)
    runs = config.run_seeds(params, "synthav")
    assert runs["ogm_ge"] == runs["concat"] == [0, 1] and runs["mie"] == [0, 1, 2]
    params["experiment"]["sweeps"] = []
    assert config.run_seeds(params, "synthav") == {"mie": [0, 1, 2]}


def test_a_grid_of_two_options(params: dict) -> None:
    params["sweeps"]["grid"] = {
        "method": "aug",
        "values": {"sigma": [1.0, 1.5], "residual_lambda": [0.2, 0.5]},
    }
    params["experiment"]["sweeps"] = ["grid"]
    config.validate(params)
    points = sweeps.points(params, sweeps.defined(params)["grid"], "synthav")
    assert [p.name for p in points] == ["grid_1p0_0p2", "grid_1p0_0p5", "grid_1p5_0p2", "grid_1p5_0p5"]
    assert [p.run for p in points][1] == "aug"  # σ 1.0 and λ 0.5 are AUG's defaults
    options = config.method_options(params, "grid_1p5_0p2", dataset="synthav")
    assert (options["sigma"], options["residual_lambda"], options["t_n"]) == (1.5, 0.2, 4)


def test_a_sweep_of_a_variant_keeps_the_variants_options(params: dict) -> None:
    options = config.method_options(params, "lfm_alpha_0p25", dataset="synthav")
    assert options["schedule"] == "constant" and options["p"] == 0.25
    assert config.base_method(params, "lfm_alpha_0p25") == "lfm"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"values": {"alpah": [0.1]}}, "unknown key 'sweeps.alpha.values.alpah'"),
        (
            {"values": {"alpha": [0.1, "high"]}},
            "'sweeps.alpha.values.alpha': expected float, got str ('high')",
        ),
        ({"values": {"alpha": [0.1, 0.10]}}, "sweeps.alpha.values.alpha: 0.1 is given twice"),
        ({"values": {"alpha": [1, 1.0]}}, "sweeps.alpha.values.alpha: 1.0 is given twice"),
        ({"values": {"alpha": []}}, "sweeps.alpha.values.alpha: [] should be non-empty"),
        ({"method": "ogm"}, "sweeps.alpha.method: unknown method or variant 'ogm'"),
        ({"references": ["concatt"]}, "sweeps.alpha.references: unknown method or variant 'concatt'"),
        ({"colour": "red"}, "unknown key 'sweeps.alpha.colour'"),
        ({"values": {"alpha": [1.0], "end_epoch": [1], "start_epoch": [0]}}, "sweeps.alpha.values: {"),
    ],
)
def test_bad_sweeps_are_named(params: dict, edit: dict, message: str) -> None:
    params["sweeps"]["alpha"].update(edit)
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.validate(params)


def test_bad_selection_and_clashing_names_are_named(params: dict) -> None:
    bad = copy.deepcopy(params)
    bad["experiment"]["sweeps"] = ["alpah"]
    with pytest.raises(ConfigError, match=re.escape("experiment.sweeps: unknown sweep 'alpah' (known: ")):
        config.validate(bad)
    bad = copy.deepcopy(params)
    bad["variants"]["alpha_0p1"] = {"method": "ogm_ge"}
    with pytest.raises(
        ConfigError, match=re.escape("sweeps.alpha: point (0.1,) is named 'alpha_0p1', which")
    ):
        config.validate(bad)
    bad = copy.deepcopy(params)
    bad["experiment"]["sweep_seeds"] = 0
    with pytest.raises(
        ConfigError, match=re.escape("experiment.sweep_seeds: 0 is less than the minimum of 1")
    ):
        config.validate(bad)


def test_a_variants_train_block_is_merged_over_the_preset(params: dict) -> None:
    preset = config.train_config(params, "synthav")
    train = config.train_config(params, "synthav", "aug_resnet34")
    assert train["encoders"]["audio"] == {**preset["encoders"]["audio"], "name": "resnet34"}
    assert train["encoders"]["video"]["name"] == "resnet34" and train["epochs"] == preset["epochs"]
    assert config.train_config(params, "synthav", "aug") == preset
    ids = {m: paths.resolve_run(params, "synthav", m, 0)["run_id"] for m in ("aug", "aug_resnet34")}
    assert ids["aug"] != ids["aug_resnet34"]
    # On image-text there are no audio/video encoders: the variant does not apply there (not trained,
    # "not run" in the tables), and asking for its run names the key.
    params["experiment"].update(datasets=["synthav", "sarcasm"], methods=["concat", "aug_resnet34"])
    config.validate(params)
    assert config.applies(params, "aug_resnet34", "synthav")
    assert not config.applies(params, "aug_resnet34", "sarcasm")
    assert list(config.run_seeds(params, "sarcasm")) == [
        "concat",
        "alpha_0p1",
        "ogm_ge",
        "alpha_2",
    ]  # the sweep
    assert "aug_resnet34" in config.run_seeds(params, "synthav")
    message = "unknown key 'variants.aug_resnet34.train.encoders.audio': train.embedded.sarcasm.encoders has"
    with pytest.raises(ConfigError, match=re.escape(message)):
        paths.resolve_run(params, "sarcasm", "aug_resnet34", 0)
    # A key that no preset of any dataset has is a typo.
    params["variants"]["aug_resnet34"]["train"]["encoders"]["audoi"] = {"name": "resnet34"}
    message = "unknown key 'variants.aug_resnet34.train.encoders.audoi': train.embedded.synthav.encoders has"
    with pytest.raises(ConfigError, match=re.escape(message) + ".*no dataset preset has it"):
        config.validate(params)


def test_runs_command_lists_the_sweep_points_with_their_seeds(tmp_path: Path, capsys) -> None:
    import json

    from mmbalance.cli import main
    from tests.conftest import tiny_params, write_params

    selection = {"experiment.methods": ["concat", "ogm_ge"], "experiment.sweeps": ["ogm_ge_alpha"]}
    params = tiny_params(tmp_path, **selection, **{"experiment.sweep_seeds": 1})
    done = paths.run_dir(params, "synthav", "ogm_ge_alpha_0p1", 0)
    done.mkdir(parents=True)
    (done / "metrics.json").write_text("{}")
    assert main(["runs", "--json", "--params", str(write_params(tmp_path / "params.yaml", params))]) == 0
    rows = json.loads(capsys.readouterr().out)
    points = [(r["method"], r["seed"], r["status"]) for r in rows if r["method"].startswith("ogm_ge_alpha")]
    assert points == [("ogm_ge_alpha_0p1", 0, "done"), ("ogm_ge_alpha_0p3", 0, "missing"),
                      ("ogm_ge_alpha_0p5", 0, "missing")]  # fmt: skip
    assert [(r["method"], r["seed"]) for r in rows[:4]] == [
        ("concat", 0),
        ("concat", 1),
        ("ogm_ge", 0),
        ("ogm_ge", 1),
    ]

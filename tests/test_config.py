"""params.yaml validation, overrides and content-addressed run ids."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mmbalance import config, paths
from mmbalance.errors import ConfigError

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.fixture
def params() -> dict:
    return config.load_params(PARAMS)


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_repository_params_are_valid(params: dict) -> None:
    assert params["profile"] in ("embedded", "paper")
    config.validate(params)


def test_unknown_key_is_named(tmp_path: Path, params: dict) -> None:
    params["experiment"]["methodz"] = ["concat"]
    with pytest.raises(ConfigError, match=r"unknown key 'experiment\.methodz'"):
        config.load_params(write(tmp_path, params))


def test_misspelt_required_key_is_named_by_its_wrong_name(params: dict) -> None:
    preset = params["train"]["embedded"]["synthav"]
    preset["epochz"] = preset.pop("epochs")
    with pytest.raises(ConfigError, match=r"unknown key 'train\.embedded\.synthav\.epochz'"):
        config.validate(params)


def test_nested_unknown_key_is_named(params: dict) -> None:
    params["train"]["embedded"]["synthav"]["optimizer"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match=r"train\.embedded\.synthav\.optimizer\.learning_rate"):
        config.validate(params)


def test_wrong_type_is_named(params: dict) -> None:
    params["train"]["embedded"]["synthav"]["epochs"] = "ten"
    expected = r"train\.embedded\.synthav\.epochs: 'ten' is not of type 'integer'"
    with pytest.raises(ConfigError, match=expected):
        config.validate(params)


def test_method_sets(params: dict) -> None:
    params["experiment"]["method_sets"] = {"pair": ["concat", "sum"]}
    params["experiment"]["methods"] = "pair"
    config.validate(params)
    assert config.experiment_methods(params) == ["concat", "sum"]
    params["experiment"]["methods"] = "fast"
    message = "experiment.methods: unknown method set 'fast' (known: pair)"
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.validate(params)
    params["experiment"]["method_sets"]["pair"] = ["concat", "no_such_method"]
    params["experiment"]["methods"] = "pair"
    with pytest.raises(ConfigError, match="unknown method 'no_such_method'"):
        config.validate(params)


def test_methods_list_expands_sets_in_order_without_repeats(params: dict) -> None:
    params["experiment"]["method_sets"] = {"pair": ["concat", "sum"], "more": ["sum", "pmr"]}
    params["experiment"]["methods"] = ["unimodal", "pair", "more", "concat"]
    config.validate(params)
    assert config.experiment_methods(params) == ["unimodal", "concat", "sum", "pmr"]
    params["experiment"]["method_sets"]["concat"] = ["sum"]
    with pytest.raises(ConfigError, match=r"method_sets\.concat: a set may not share its name"):
        config.validate(params)


def test_unknown_method_and_dataset(params: dict) -> None:
    params["experiment"]["methods"] = ["concat", "no_such_method"]
    with pytest.raises(ConfigError, match="unknown method 'no_such_method'"):
        config.validate(params)


def test_method_option_typos_and_types(params: dict) -> None:
    params["methods"]["ogm_ge"] = {"alpah": 0.1}
    with pytest.raises(ConfigError, match=r"unknown key 'methods\.ogm_ge\.alpah'"):
        config.validate(params)
    params["methods"]["ogm_ge"] = {"alpha": "high"}
    with pytest.raises(ConfigError, match=r"methods\.ogm_ge\.alpha': expected float"):
        config.validate(params)
    params["methods"]["ogm_ge"] = {"modulation": "GE"}
    with pytest.raises(ConfigError, match="not one of"):
        config.validate(params)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        config.load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load_params(bad)


def test_set_overrides_are_validated() -> None:
    params = config.load_params(PARAMS, ["train.embedded.synthav.epochs=3", "experiment.seeds=[5]"])
    assert params["train"]["embedded"]["synthav"]["epochs"] == 3
    assert params["experiment"]["seeds"] == [5]
    with pytest.raises(ConfigError, match=r"expected dotted\.key=value"):
        config.load_params(PARAMS, ["epochs"])
    with pytest.raises(ConfigError, match="epochs"):
        config.load_params(PARAMS, ["train.embedded.synthav.epochs=-1"])


def test_run_id_changes_only_for_the_changed_method(params: dict) -> None:
    before = {m: paths.run_dir(params, "synthav", m, 0) for m in config.experiment_methods(params)}
    params["methods"]["ogm_ge"]["alpha"] = 0.3
    after = {m: paths.run_dir(params, "synthav", m, 0) for m in config.experiment_methods(params)}
    assert [m for m in before if before[m] != after[m]] == ["ogm_ge"]


def test_run_id_follows_training_and_data_settings_but_not_the_seed(params: dict) -> None:
    base = paths.resolve_run(params, "synthav", "concat", 0)["run_id"]
    assert paths.resolve_run(params, "synthav", "concat", 1)["run_id"] == base
    params["train"]["embedded"]["synthav"]["optimizer"]["lr"] = 0.5
    assert paths.resolve_run(params, "synthav", "concat", 0)["run_id"] != base
    params2 = config.load_params(PARAMS, ["data.synthav.video.noise=1.0"])
    assert paths.resolve_run(params2, "synthav", "concat", 0)["run_id"] != base
    assert paths.feature_dir(params2, "synthav") != paths.feature_dir(config.load_params(PARAMS), "synthav")


def test_run_dir_layout(params: dict) -> None:
    path = paths.run_dir(params, "synthav", "concat", 2)
    assert path.parts[0] == "results" and path.parts[1:3] == ("synthav", "concat")
    assert len(path.parts[3]) == paths.HASH_LENGTH and path.parts[4] == "seed2"


def test_variants_resolve_to_their_method_with_options(params: dict) -> None:
    params["methods"]["ogm_ge"] = {"alpha": 0.5, "end_epoch": 20}
    params["variants"]["ogm_plain"] = {"method": "ogm_ge", "options": {"modulation": "OGM"}}
    params["experiment"].update(methods=["ogm_ge", "ogm_plain"], sweeps=[])
    params["sweeps"] = {}
    config.validate(params)
    base = paths.resolve_run(params, "synthav", "ogm_ge", 0)
    variant = paths.resolve_run(params, "synthav", "ogm_plain", 0)
    assert variant["method_class"] == "ogm_ge" and variant["method"] == "ogm_plain"
    assert variant["method_options"] == {**base["method_options"], "modulation": "OGM"}
    assert variant["method_options"]["alpha"] == 0.5
    assert variant["run_id"] != base["run_id"]
    assert paths.run_dir(params, "synthav", "ogm_plain", 0).parts[-3] == "ogm_plain"


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ({"concat": {"method": "sum"}}, "variants.concat: the name of a registered method"),
        ({"mine": {"method": "nope"}}, "variants.mine.method: unknown method 'nope'"),
        (
            {"mine": {"method": "ogm_ge", "options": {"alpah": 1.0}}},
            "unknown key 'variants.mine.options.alpah'",
        ),
    ],
)
def test_bad_variants_are_named(params: dict, variant: dict, message: str) -> None:
    params["variants"] = variant
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.validate(params)


def test_per_dataset_method_settings_apply_to_their_dataset_and_profile_only(params: dict) -> None:
    params["train"]["embedded"]["synthav"]["methods"] = {"ogm_ge": {"alpha": 0.1}}
    params["methods"]["ogm_ge"] = {"alpha": 0.5, "end_epoch": 20}
    assert config.method_options(params, "ogm_ge", dataset="synthav")["alpha"] == 0.1
    assert config.method_options(params, "ogm_ge", dataset="synthav")["end_epoch"] == 20
    assert config.method_options(params, "ogm_ge")["alpha"] == 0.5
    before = paths.resolve_run(params, "synthav", "concat", 0)["run_id"]
    params["train"]["embedded"]["synthav"]["methods"]["ogm_ge"]["alpha"] = 0.2
    assert paths.resolve_run(params, "synthav", "concat", 0)["run_id"] == before  # only ogm_ge's runs move
    assert "methods" not in config.train_config(params, "synthav")
    params["train"]["paper"]["synthav"]["methods"] = {"ogm_ge": {"alpah": 0.3}}
    message = "unknown key 'train.paper.synthav.methods.ogm_ge.alpah'"
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.validate(params)

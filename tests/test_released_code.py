"""Runs that reproduce released code fix every constant the code fixes, on every dataset and profile.

A variant says so with ``released_code: true`` (a registered method with its class's
``released_code``); the resolution rule (:func:`mmbalance.config.reaching_settings`) lets only the
method's dataset settings (AUG's t_n and merge_weights, MIE's stage_epochs) through from
``methods.<method>`` and ``train.<profile>.<dataset>.methods.<method>``. The constants below are
written down from the released code (spec methods.md §A1.2, §A1.4, §A2.2, §A2.4, §A3.2, §B12 and
IGM's ``configs/*.json``), independently of ``params.yaml``.
"""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from mmbalance import config, paths
from mmbalance.errors import ConfigError
from mmbalance.registry import METHODS
from tests.conftest import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
PROFILES = ("embedded", "paper")
IGM_RHO_1E15 = {"sarcasm", "sarcasm_clip", "twitter2015", "twitter2015_clip", "nvgesture"}
"""IGM's ``noise_ratio`` is 1e-15 for Sarcasm, Twitter and NVGesture (the CLIP datasets read Sarcasm's and
Twitter's data), 1e-10 for CREMA-D and KS; its ``mixup_alpha`` is 0.9 for Twitter, 1.0 elsewhere."""


def code_constants(run: str, dataset: str) -> tuple[dict, str | None]:
    """The options the released code fixes for ``run`` on ``dataset``, and its heads' initialisation
    (``None``: the code's is not known, so the protocol's)."""
    if run == "lfm_code":  # Crema_epoch.py
        return {
            "align_loss": "js_code",
            "fusion": "logit_avg",
            "loss_scale": 2.0,
            "schedule": "code_poly5",
        }, ("xavier_heads")
    if run == "lfm_lb_code":  # Crema_epoch_learnable.py's α rule on the paper's LFM-LB
        rule = {"schedule": "learned_code", "alpha_lr": 1e-4, "alpha_batch": 8, "alpha_init": 0.95}
        return {**rule, "held_out_mode": "code", "align_loss": "infonce", "loss_scale": 1.0}, None
    if run == "lfm_bb":  # BalanceBenchmark LFM_trainer: lr_alpha 1e-4, ¼ of a 32-sample val batch
        rule = {"schedule": "learned_code", "alpha_lr": 1e-4, "alpha_batch": 8, "alpha_init": 0.05}
        return {**rule, "held_out_mode": "train", "align_loss": "js_code", "loss_scale": 2.0}, None
    if run == "mie_code":  # IGM configs/*.json and train_*.py
        igm = {
            "sam": "code",
            "rho": [1e-15 if dataset in IGM_RHO_1E15 else 1e-10],
            "flat_ratio": 0.3,
            "mixup_alpha": 0.9 if dataset.startswith("twitter2015") else 1.0,
            "tau": 0.4,
            "restart_schedule": True,
            "reload_best": "test",
            "reset_optimizer_state": True,
            "gm_scope": "head",
            "head_hidden": [256, 64],
            "fusion_rule": "average",
        }
        return igm, "pytorch"
    if run == "aug_code":  # train_CREMAD.py, HEAD 841d079
        aug = {
            "new_classifier_trainable": False,
            "residual_form": "code_ensemble_softmax",
            "update": "per_modality",
            "aca_rule": "ratio",
            "residual_lambda": 0.5,
            "sigma": 1.0,
            "tau": 0.01,
            "assign_after_first_epoch": True,
            "hidden": 256,
        }
        return aug, "xavier_heads"
    assert run == "greedy_code", f"{run}: add the constants of the code it reproduces here"
    greedy = {
        "stages": [2, 3, 4],
        "gate": "sigmoid",
        "running_average": "code_quirk",
        "head": "branch_average",
    }
    return {**greedy, "epsilon": 0.01, "window": 5, "start_epoch": 1, "ratio": 4}, None


def released_code_runs(params: dict) -> list[str]:
    """Every run that says it reproduces released code: flagged variants and registered classes."""
    variants = [name for name, v in params.get("variants", {}).items() if v.get("released_code")]
    return sorted(variants + [name for name in METHODS.names() if METHODS.get(name).released_code])


def test_the_released_code_runs_are_the_expected_ones() -> None:
    assert released_code_runs(PARAMS) == sorted(
        ["lfm_code", "lfm_lb_code", "lfm_bb", "mie_code", "aug_code", "greedy_code"]
    )
    assert all(config.reproduces_code(PARAMS, run) for run in released_code_runs(PARAMS))
    assert not any(config.reproduces_code(PARAMS, run) for run in ("lfm_lb", "mie", "aug", "mie_mixup"))


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("run", released_code_runs(PARAMS))
def test_released_code_runs_fix_the_codes_constants_on_every_dataset(profile: str, run: str) -> None:
    params = {**PARAMS, "profile": profile}
    base = config.base_method(params, run)
    for dataset in params["train"][profile]:
        options = config.method_options(params, run, dataset=dataset)
        constants, init = code_constants(run, dataset)
        assert {k: options[k] for k in constants} == constants, f"{run} on {profile}.{dataset}"
        protocol = params["train"][profile][dataset].get("init", "pytorch")
        resolved = paths.resolve_run(params, dataset, run, 0)
        assert resolved["train"]["init"] == (init or protocol), f"{run} on {profile}.{dataset}"
        # a dataset's schedule and shape settings still apply, exactly as they do to the paper's method
        paper_run = config.method_options(params, base, dataset=dataset)
        for key in METHODS.get(base).dataset_settings:
            assert options[key] == paper_run[key], f"{run}.{key} on {profile}.{dataset}"


def test_tuned_values_of_the_paper_method_do_not_reach_the_code_run() -> None:
    """The embedded LFM-LB's η_α and 64 samples stay with LFM-LB; MIE's stage lengths reach both."""
    params = copy.deepcopy(PARAMS)
    assert config.method_options(params, "lfm_lb", dataset="synthav")["alpha_lr"] == 1.0
    assert config.method_options(params, "lfm_lb_code", dataset="synthav")["alpha_lr"] == 1e-4
    params["methods"]["mie"] = {"rho": [0.5], "stage_epochs": [3, 4]}
    params["train"]["embedded"]["synthav"]["methods"]["mie"] = {"mixup_alpha": 0.2, "stage_epochs": [5, 6]}
    config.validate(params)
    mie = config.method_options(params, "mie", dataset="synthav")
    code = config.method_options(params, "mie_code", dataset="synthav")
    assert (mie["rho"], mie["mixup_alpha"], mie["stage_epochs"]) == ([0.5], 0.2, [5, 6])
    assert (code["rho"], code["mixup_alpha"], code["stage_epochs"]) == ([1e-10], 1.0, [5, 6])
    assert config.method_options(params, "mie_code")["stage_epochs"] == [3, 4]
    # a switch variant without the flag still differs from its method only in what it names
    assert config.method_options(params, "mie_mixup", dataset="synthav")["rho"] == [0.5]


def test_a_registered_released_code_method_refuses_a_changed_constant() -> None:
    params = copy.deepcopy(PARAMS)
    params["methods"]["lfm_code"] = {"loss_scale": 1.0}
    with pytest.raises(
        ConfigError, match=re.escape("'methods.lfm_code.loss_scale': lfm_code reproduces released")
    ):
        config.validate(params)
    params["methods"].pop("lfm_code")
    params["train"]["paper"]["cremad"]["methods"]["lfm_code"] = {"tau": 0.2}
    with pytest.raises(ConfigError, match=re.escape("'train.paper.cremad.methods.lfm_code.tau'")):
        config.validate(params)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda p: p["variants"]["mie_mixup"].update(init="xavier_heads"),
            "variants.mie_mixup.init: only a variant that reproduces released code",
        ),
        (
            lambda p: p["variants"]["mie_code"]["dataset_options"].update(sarcasmm={"rho": [1.0]}),
            "variants.mie_code.dataset_options: unknown dataset 'sarcasmm'",
        ),
        (
            lambda p: p["variants"]["mie_code"]["dataset_options"].update(twitter2015={"mixup": 0.9}),
            "unknown key 'variants.mie_code.dataset_options.twitter2015.mixup'",
        ),
        (
            lambda p: p["variants"]["aug_code"].update(init="kaiming"),
            "variants.aug_code.init: 'kaiming' is not one of",
        ),
        (lambda p: p["variants"]["aug_code"].update(released_code="yes"), "variants.aug_code.released_code"),
        (
            lambda p: p["train"]["embedded"]["synthav"].update(init="xavier"),
            "train.embedded.synthav.init: 'xavier' is not one of",
        ),
    ],
)
def test_bad_released_code_and_init_settings_are_named(edit, message: str) -> None:
    params = copy.deepcopy(PARAMS)
    edit(params)
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.validate(params)


def test_the_protocol_initialisation_is_one_for_every_method_but_the_codes_own() -> None:
    params = copy.deepcopy(PARAMS)
    runs = config.experiment_methods(params)
    before = {run: paths.resolve_run(params, "synthav", run, 0) for run in runs}
    codes = {"lfm_code": "xavier_heads", "aug_code": "xavier_heads", "mie_code": "pytorch"}
    assert {run: r["train"]["init"] for run, r in before.items() if r["train"]["init"] != "pytorch"} == {
        run: init for run, init in codes.items() if init != "pytorch"
    }
    params["train"]["embedded"]["synthav"]["init"] = "xavier_heads"
    config.validate(params)
    after = {run: paths.resolve_run(params, "synthav", run, 0) for run in runs}
    for run in runs:
        expected = codes.get(run, "xavier_heads")
        assert after[run]["train"]["init"] == expected, run
        assert (after[run]["run_id"] != before[run]["run_id"]) == (
            expected != before[run]["train"]["init"]
        ), run

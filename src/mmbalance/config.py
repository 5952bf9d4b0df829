"""Load and validate ``params.yaml``; type the options of methods, variants, analyses and datasets;
resolve a dataset's blocks and the experiment's runs. Run ids and paths: :mod:`mmbalance.paths`.

A run's resolved config is the merge of the dataset preset of the active profile
(``features`` and ``train``), the method's defaults (next to its code) and the
method overrides in ``params.yaml``. The run id is a short hash of exactly the
resolved keys that affect training, so any change to them moves the run to a new
path (the DVC + Snakemake staleness pitfall of ``workflow.md`` §2.7 and §5).

Runs that reproduce released code (a variant with ``released_code: true``, or a registered method
whose class says so, ``lfm_code``) fix every constant the code fixes: ``methods.<method>`` and the
per-dataset ``train.<profile>.<dataset>.methods.<method>`` reach them only for the method's
``dataset_settings`` (schedule and shape settings such as AUG's t_N or MIE's stage lengths), so a
value tuned for the paper's method (LFM-LB's embedded η_α) never leaks into the code's run; the
variant's ``options`` list the code's constants that differ from the method's defaults.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mmbalance import sweeps
from mmbalance.engine import settings as engine_settings
from mmbalance.errors import ConfigError, reject_unknown
from mmbalance.registry import ADAPTERS, ANALYSES, DATASETS, METHODS


def schema() -> dict[str, Any]:
    """The JSON schema of ``params.yaml`` (shipped inside the package)."""
    text = resources.files("mmbalance").joinpath("schemas/params.schema.yaml").read_text()
    return yaml.safe_load(text)


def read_yaml(path: str | Path) -> Any:
    """Read a YAML file; a missing or unparsable file is a :class:`ConfigError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc


def apply_overrides(params: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML) to a copy of ``params``."""
    params = copy.deepcopy(params)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected dotted.key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML") from exc
        node = params
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return params


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate(params: Any, source: str = "params.yaml") -> None:
    """Check ``params`` against the schema and the registries; raise :class:`ConfigError` naming the key."""
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    validator = jsonschema.Draft202012Validator(schema())
    # Unknown keys first: a misspelt required key is then reported by its wrong name, not as missing.
    errors = sorted(
        validator.iter_errors(params),
        key=lambda e: (e.validator != "additionalProperties", len(e.absolute_path), e.message),
    )
    if errors:
        err = errors[0]
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            unknown = sorted(set(err.instance) - set(allowed))
            where = _key_path(err)
            prefix = "" if where == "<top level>" else where + "."
            raise ConfigError(
                f"{source}: unknown key '{prefix}{unknown[0]}' (allowed here: {', '.join(allowed)})"
            )
        raise ConfigError(f"{source}: {_key_path(err)}: {err.message}")
    profile = params["profile"]
    for dataset in params["experiment"]["datasets"]:
        DATASETS.get(dataset)
        for section in ("features", "train"):
            if dataset not in params[section][profile]:
                raise ConfigError(f"{source}: missing key '{section}.{profile}.{dataset}'")
        if raw_dataset(dataset) not in params["data"]:
            raise ConfigError(f"{source}: missing key 'data.{raw_dataset(dataset)}'")
    for dataset, data_cfg in params["data"].items():
        plugin = DATASETS.get(dataset)
        if plugin.raw_from is not None:
            raise ConfigError(
                f"{source}: data.{dataset}: {dataset} reads the raw data of {plugin.raw_from}; "
                f"set data.{plugin.raw_from} instead"
            )
        if plugin.Config is not None:
            try:
                typed_options(plugin.Config(), data_cfg, where=f"data.{dataset}")
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}") from exc
    validate_encoder_features(params, source)
    validate_variants(params, source)
    sweeps.validate(params, source)
    for method in experiment_methods(params, source=source):
        base_method(params, method)
    for method in params["methods"]:
        method_options(params, method, source=source)
    for profile, presets in params["train"].items():
        for dataset, preset in presets.items():
            for method in preset.get("methods", {}):
                METHODS.get(method)
                method_options({**params, "profile": profile}, method, source=source, dataset=dataset)
    validate_analyses(params, source)


def analysis_options(params: Mapping[str, Any], name: str, source: str = "params.yaml") -> dict[str, Any]:
    """The options of analysis ``name``: its defaults (next to its code) under ``analysis.<name>``."""
    cls = ANALYSES.get(name)
    overrides = (params.get("analysis") or {}).get(name) or {}
    try:
        return typed_options(cls.Options(), overrides, where=f"analysis.{name}")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def validate_analyses(params: Mapping[str, Any], source: str) -> None:
    """Every ``analysis.<name>`` is a registered analysis with typed options naming known methods."""
    for name in params.get("analysis") or {}:
        try:
            ANALYSES.get(name)
        except ConfigError as exc:
            raise ConfigError(f"{source}: analysis.{name}: {exc}") from exc
        for method in analysis_options(params, name, source)["methods"]:
            try:
                base_method(params, method)
            except ConfigError as exc:
                raise ConfigError(f"{source}: analysis.{name}.methods: {exc}") from exc


def kept_epochs(params: Mapping[str, Any], dataset: str, method: str, epochs: int) -> list[int]:
    """The epochs (0-based, as ``history.csv``) after which a run keeps its model (checkpoint ``epoch<k>``):
    ``train.<profile>.<dataset>.keep_epochs`` for every run of the dataset, plus the ``gradcam``
    analysis's ``epochs`` for the runs of its methods. ``-1`` is the last epoch, ``-2`` the one before;
    epochs past the end of a run of ``epochs`` epochs are left out (the "7th epoch" of a 3-epoch test run)."""
    profile = params["profile"]
    wanted = list(params["train"][profile].get(dataset, {}).get("keep_epochs", []))
    if method in analysis_options(params, "gradcam")["methods"]:
        wanted += analysis_options(params, "gradcam")["epochs"]
    return epochs_within(wanted, epochs)


def epochs_within(wanted: Sequence[int], epochs: int) -> list[int]:
    """``wanted`` epochs of a run of ``epochs`` epochs as sorted 0-based indices: negative ones count from
    the end (``-1`` is the last), those past either end are left out, repeats drop."""
    return sorted({e % epochs for e in wanted if -epochs <= e < epochs})


def validate_encoder_features(params: Mapping[str, Any], source: str) -> None:
    """Every preset's encoders read what their modality's features store, in every profile: the adapter
    of a modality kind (:data:`~mmbalance.registry.ADAPTERS`) may say why a stored feature setting does
    not fit an encoder (``check_features``: a text encoder reads the ids of one tokenizer)."""
    for profile, presets in params["train"].items():
        for dataset, preset in presets.items():
            features = params["features"].get(profile, {}).get(dataset)
            if dataset not in DATASETS or not isinstance(features, Mapping):
                continue
            for modality, kind in DATASETS.get(dataset).modalities.items():
                check = getattr(ADAPTERS.get(kind), "check_features", None) if kind in ADAPTERS else None
                encoder = preset["encoders"].get(modality, {})
                where = f"features.{profile}.{dataset}.{modality}"
                problem = check(encoder, features.get(modality) or {}, where) if check else None
                if problem:
                    where = f"train.{profile}.{dataset}.encoders.{modality}.name"
                    raise ConfigError(f"{source}: {where}: {problem}; make them match")


def experiment_methods(params: Mapping[str, Any], source: str = "params.yaml") -> list[str]:
    """The methods of the experiment matrix, in order and without repeats.

    ``experiment.methods`` is the name of a list in ``experiment.method_sets`` (``full``, ``quick``,
    ``ablations``) or a list whose items are method or variant names or set names, so
    ``[full, ablations]`` trains the union of two sets. A set name may not also be a method name.
    """
    exp = params["experiment"]
    sets = exp.get("method_sets", {})
    clash = sorted(set(sets) & (set(METHODS.names()) | set(params.get("variants", {}))))
    if clash:
        raise ConfigError(
            f"{source}: experiment.method_sets.{clash[0]}: a set may not share its name with a method"
        )
    requested = exp["methods"]
    if isinstance(requested, str):
        if requested not in sets:
            known = ", ".join(sorted(sets)) or "none defined"
            raise ConfigError(
                f"{source}: experiment.methods: unknown method set '{requested}' (known: {known})"
            )
        requested = [requested]
    methods: list[str] = []
    for name in requested:
        for method in sets.get(name, [name]):
            if method not in methods:
                methods.append(method)
    return methods


def run_seeds(params: Mapping[str, Any], dataset: str) -> dict[str, list[int]]:
    """Every run of ``dataset`` to train and report, as ``{method: seeds}``: the experiment's methods
    with ``experiment.seeds``, then the runs of the selected sweeps (points not served by an
    experiment run, the swept methods' defaults, the references) with ``experiment.sweep_seeds``.
    A variant that does not apply to ``dataset`` (:func:`applies`) is left out; an unknown dataset is a
    :class:`ConfigError` naming the known ones."""
    DATASETS.get(dataset)
    seeds = list(params["experiment"]["seeds"])
    runs = {method: list(seeds) for method in experiment_methods(params) if applies(params, method, dataset)}
    extra = sweeps.seeds(params)
    for method in sweeps.runs(params, dataset):
        have = runs.setdefault(method, [])
        runs[method] = [s for s in seeds if s in have or s in extra]
    return runs


def load_params(path: str | Path = "params.yaml", overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read, override and validate ``params.yaml``."""
    params = apply_overrides(read_yaml(path) or {}, overrides)
    validate(params, source=str(path))
    return params


def typed_options(defaults: Any, overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Merge ``overrides`` into the dataclass instance ``defaults``, checking names, types and choices.

    A field may declare ``metadata={"choices": (...)}`` to restrict its values.
    """
    fields = {f.name: f for f in dataclasses.fields(defaults)}
    merged = dataclasses.asdict(defaults)
    for key, value in overrides.items():
        reject_unknown([key], fields, prefix=f"{where}.", label="allowed here")
        default = merged[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, list | tuple):
            ok = isinstance(value, list | tuple)
            value = list(value) if ok else value
        else:
            ok = default is None or isinstance(value, type(default))
        if not ok:
            raise ConfigError(
                f"'{where}.{key}': expected {type(default).__name__}, got {type(value).__name__} ({value!r})"
            )
        choices = fields[key].metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"'{where}.{key}': {value!r} is not one of {list(choices)}")
        merged[key] = value
    return merged


def all_variants(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``variants:`` of ``params`` and the generated variant of every sweep point
    (:mod:`mmbalance.sweeps`)."""
    return {**sweeps.variants(params), **(params.get("variants", {}) or {})}


def base_method(params: Mapping[str, Any], name: str) -> str:
    """The registered method behind ``name``: ``name`` itself, or the ``method`` of its variant
    (``variants.<name>`` or a sweep point)."""
    variant = all_variants(params).get(name)
    if variant is None:
        METHODS.get(name)
        return name
    return variant["method"]


def method_class(params: Mapping[str, Any], name: str) -> type:
    """The plugin class that trains runs of ``name`` (a registered method or a variant of one)."""
    return METHODS.get(base_method(params, name))


def reproduces_code(params: Mapping[str, Any], method: str) -> bool:
    """Whether runs of ``method`` reproduce released code: a variant that says ``released_code: true``,
    or a registered method whose class sets ``released_code`` (module docstring)."""
    variant = all_variants(params).get(method)
    if variant is not None:
        return bool(variant.get("released_code", False))
    return METHODS.get(method).released_code


def reaching_settings(
    params: Mapping[str, Any], method: str, block: Mapping[str, Any] | None, where: str
) -> dict[str, Any]:
    """The settings of ``block`` (``methods.<plugin>`` or a per-dataset block) that reach runs of
    ``method``: all of them, or, for a run reproducing released code, its plugin's ``dataset_settings``
    only. A registered released-code method's own block may not change one of its constants."""
    block = dict(block or {})
    if not reproduces_code(params, method):
        return block
    settings = METHODS.get(base_method(params, method)).dataset_settings
    fixed = sorted(set(block) - set(settings))
    if fixed and base_method(params, method) == method:
        allowed = ", ".join(settings) or "none"
        raise ConfigError(
            f"'{where}.{fixed[0]}': {method} reproduces released code, whose constants are fixed "
            f"(dataset settings: {allowed}); define a variant to change it"
        )
    return {key: value for key, value in block.items() if key in settings}


def method_options(
    params: Mapping[str, Any], method: str, source: str = "params.yaml", dataset: str | None = None
) -> dict[str, Any]:
    """The options of a run of ``method``: the plugin's defaults, then ``methods.<plugin>``, then, on
    ``dataset``, ``train.<profile>.<dataset>.methods.<plugin>`` (the papers' per-dataset settings),
    then, for a variant, ``variants.<method>.options`` (so a variant differs from its plugin's
    configured run only in what it names) and its ``dataset_options.<dataset>`` (a released code's
    per-dataset constants, e.g. IGM's Twitter mixup). A run reproducing released code takes only the
    plugin's dataset settings from the two blocks of the plugin (:func:`reaching_settings`)."""
    base = base_method(params, method)
    cls = METHODS.get(base)
    try:
        where = f"methods.{base}"
        overrides = reaching_settings(params, method, params.get("methods", {}).get(base), where)
        options = typed_options(cls.Options(), overrides, where=where)
        if dataset is not None:
            profile = params["profile"]
            where = f"train.{profile}.{dataset}.methods.{base}"
            block = params["train"][profile].get(dataset, {}).get("methods", {}).get(base)
            per_dataset = reaching_settings(params, method, block, where)
            options = typed_options(cls.Options(**options), per_dataset, where=where)
        if base != method:
            variant = all_variants(params)[method]
            where = f"variants.{method}.options"
            options = typed_options(cls.Options(**options), variant.get("options") or {}, where=where)
            specific = (variant.get("dataset_options") or {}).get(dataset) if dataset is not None else None
            where = f"variants.{method}.dataset_options.{dataset}"
            options = typed_options(cls.Options(**options), specific or {}, where=where)
        return options
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def applies(params: Mapping[str, Any], method: str, dataset: str) -> bool:
    """Whether ``method`` runs on ``dataset``: always, except a variant whose ``train`` block names a
    key that the dataset's preset lacks (e.g. ResNet34 ``audio``/``video`` encoders on image–text)."""
    try:
        train_config(params, dataset, method)
    except ConfigError:
        return False
    return True


def _validate_train_block(params: Mapping[str, Any], name: str, source: str) -> None:
    """A variant's ``train`` block must fit some dataset preset of some profile: a key that none has
    is a typo, reported for the first preset."""
    presets = [({**params, "profile": p}, d) for p, block in params["train"].items() for d in block]
    if any(applies(profile_params, name, dataset) for profile_params, dataset in presets):
        return
    try:
        train_config(*presets[0], name)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc} (no dataset preset has it)") from exc


def validate_variants(params: Mapping[str, Any], source: str) -> None:
    """A variant is a registered method with options; its name must not shadow a registered one; its
    ``train`` block must fit some dataset preset (:func:`applies`); only a variant reproducing released
    code sets its own initialisation."""
    registered = set(METHODS.names())
    for name, variant in params.get("variants", {}).items():
        if name in registered:
            raise ConfigError(f"{source}: variants.{name}: the name of a registered method; choose another")
        if variant["method"] not in registered:
            known = ", ".join(sorted(registered))
            raise ConfigError(
                f"{source}: variants.{name}.method: unknown method '{variant['method']}' (known: {known})"
            )
        if "init" in variant and not variant.get("released_code", False):
            raise ConfigError(
                f"{source}: variants.{name}.init: only a variant that reproduces released code "
                "(released_code: true) sets its own; the protocol's is train.<profile>.<dataset>.init"
            )
        method_options(params, name, source=source)
        if variant.get("train"):
            _validate_train_block(params, name, source)
        for dataset in variant.get("dataset_options") or {}:
            if dataset not in DATASETS:
                raise ConfigError(
                    f"{source}: variants.{name}.dataset_options: unknown dataset '{dataset}' "
                    f"(known: {', '.join(DATASETS.names())})"
                )
            method_options(params, name, source=source, dataset=dataset)


def _dataset_block(section: Mapping[str, Any], dataset: str, key: str) -> dict[str, Any]:
    """``section[dataset]`` copied; an unknown dataset or a missing block is a ConfigError naming it."""
    DATASETS.get(dataset)
    if dataset not in section:
        raise ConfigError(f"missing key '{key}.{dataset}'")
    return copy.deepcopy(section[dataset])


def raw_dataset(dataset: str) -> str:
    """The dataset whose raw data ``dataset`` reads: its ``raw_from`` (``sarcasm_clip`` → ``sarcasm``),
    or itself. That dataset's ``data`` block, data id and raw folder are ``dataset``'s."""
    return DATASETS.get(dataset).raw_from or dataset


def data_config(params: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    return _dataset_block(params["data"], raw_dataset(dataset), "data")


def feature_config(params: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    profile = params["profile"]
    return _dataset_block(params["features"][profile], dataset, f"features.{profile}")


def initialisation(params: Mapping[str, Any], dataset: str, method: str) -> str:
    """The heads' initialisation of a run (:mod:`mmbalance.models.init`): the protocol's
    ``train.<profile>.<dataset>.init`` (default ``pytorch``, the same for every method), except for a
    run reproducing released code, which uses the code's: its variant's ``init``, else its plugin
    class's ``code_init`` where given."""
    own = METHODS.get(base_method(params, method)).code_init if reproduces_code(params, method) else None
    own = all_variants(params).get(method, {}).get("init", own)
    if own is not None:
        return own
    profile = params["profile"]
    return _dataset_block(params["train"][profile], dataset, f"train.{profile}").get("init", "pytorch")


def train_config(params: Mapping[str, Any], dataset: str, method: str | None = None) -> dict[str, Any]:
    """The dataset's training preset, without its per-dataset ``methods`` block (which enters a run
    through :func:`method_options`, so it moves only the run ids of the methods it names) and its
    ``keep_epochs`` (which enters through :func:`kept_epochs`, joined with the Grad-CAM analysis's),
    and without the engine settings at their defaults (:mod:`mmbalance.engine.settings`: runs that do
    not use them keep their run ids and outputs); for a variant with a ``train`` block (e.g. other
    encoders: AUG Table 4's ResNet34), that block merged over the preset, key by key. A key the preset
    does not have is an error naming it (such a variant does not apply to the dataset: :func:`applies`)."""
    profile = params["profile"]
    block = _dataset_block(params["train"][profile], dataset, f"train.{profile}")
    block.pop("methods", None)
    block.pop("keep_epochs", None)
    override = all_variants(params).get(method, {}).get("train") if method is not None else None
    if override:
        _merge_existing(block, override, f"variants.{method}.train", f"train.{profile}.{dataset}")
    return engine_settings.without_defaults(block)


def _merge_existing(block: dict[str, Any], override: Mapping[str, Any], where: str, preset: str) -> None:
    """Merge ``override`` into ``block`` in place; every key must exist in ``block``."""
    for key, value in override.items():
        if key not in block:
            allowed = ", ".join(sorted(block))
            raise ConfigError(
                f"unknown key '{where}.{key}': {preset} has no '{key}' (allowed here: {allowed})"
            )
        if isinstance(value, Mapping) and isinstance(block[key], dict):
            _merge_existing(block[key], value, f"{where}.{key}", f"{preset}.{key}")
        else:
            block[key] = copy.deepcopy(value)

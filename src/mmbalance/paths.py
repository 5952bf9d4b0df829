"""Content-addressed identities and the folders they name: the data id, the feature id, a run's
resolved configuration and its run id, and the folders of raw data, features, runs and checkpoints.

Every id is a short hash of the configuration that produced the output, plus the package version, so
a changed value is a new path and a stale output can never pass for a current one (``workflow.md``
§2.7 and §5). The configuration itself comes from :mod:`mmbalance.config`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmbalance import __version__
from mmbalance.config import (
    base_method,
    data_config,
    feature_config,
    initialisation,
    kept_epochs,
    method_options,
    raw_dataset,
    train_config,
)
from mmbalance.engine import settings as engine_settings
from mmbalance.runs.files import seed_dir

HASH_LENGTH = 10


def short_hash(obj: Any) -> str:
    """A short, stable hash of a JSON-serialisable object (sorted keys; never Python's ``hash``)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def data_id(params: Mapping[str, Any], dataset: str) -> str:
    """Identifies the raw data: a hash of the dataset's data block and the package version.

    The version enters every id (data, features, runs), so a release that changes what the code
    produces moves every output to new paths instead of leaving stale ones that look current. A
    dataset that reads another's raw data (:func:`raw_dataset`) has that dataset's data id.
    """
    source = raw_dataset(dataset)
    return short_hash({"dataset": source, "data": data_config(params, source), "version": __version__})


def feature_id(params: Mapping[str, Any], dataset: str) -> str:
    """Identifies a feature store: the front-end name plus a hash of the raw data and feature settings."""
    feats = feature_config(params, dataset)
    frontend = feats.get("audio", {}).get("frontend", "features")
    return f"{frontend}-" + short_hash({"data": data_id(params, dataset), "features": feats})


def raw_folder(data_root: str | Path, dataset: str, data: str) -> Path:
    """``<data root>/raw/<dataset>/<data id>`` (the layout; ``dataset`` and ``data`` may be wildcards)."""
    return Path(data_root) / "raw" / dataset / data


def feature_folder(data_root: str | Path, dataset: str, features: str) -> Path:
    """``<data root>/features/<dataset>/<feature id>`` (the layout; the names may be wildcards)."""
    return Path(data_root) / "features" / dataset / features


def run_folder(root: str | Path, dataset: str, method: str, run: str, seed: int) -> Path:
    """``<root>/<dataset>/<method>/<run id>/seed<k>`` (the layout of runs and of their checkpoints; the
    names may be wildcards)."""
    return Path(root) / dataset / method / run / seed_dir(seed)


def raw_dir(params: Mapping[str, Any], dataset: str) -> Path:
    """``<paths.data>/raw/<raw dataset>/<data id>``: shared by the datasets that read the same raw data."""
    return raw_folder(params["paths"]["data"], raw_dataset(dataset), data_id(params, dataset))


def feature_dir(params: Mapping[str, Any], dataset: str) -> Path:
    return feature_folder(params["paths"]["data"], dataset, feature_id(params, dataset))


def resolve_run(params: Mapping[str, Any], dataset: str, method: str, seed: int) -> dict[str, Any]:
    """The complete configuration of one training run."""
    resolved = {
        "dataset": dataset,
        "method": method,
        "method_class": base_method(params, method),
        "method_options": method_options(params, method, dataset=dataset),
        "data": data_config(params, dataset),
        "features": feature_config(params, dataset),
        "feature_id": feature_id(params, dataset),
        "train": {**train_config(params, dataset, method), "init": initialisation(params, dataset, method)},
        "profile": params["profile"],
        "seed": int(seed),
    }
    # Only a run that keeps checkpoints has the key, so the others' run ids do not depend on it.
    kept = kept_epochs(params, dataset, method, resolved["train"]["epochs"])
    if kept:
        resolved["train"]["keep_epochs"] = kept
    resolved["run_id"] = run_id(resolved)
    return resolved


def run_id(resolved: Mapping[str, Any]) -> str:
    """Hash of the keys that affect training (not the seed, which has its own path level, nor the
    engine settings that cannot change what a run computes, such as ``prefetch``)."""
    keys = ("dataset", "method", "method_class", "method_options", "feature_id")
    hashed = {k: resolved[k] for k in keys}
    return short_hash({"version": __version__, **hashed, "train": engine_settings.hashed(resolved["train"])})


def _run_path(params: Mapping[str, Any], root: str, dataset: str, method: str, seed: int) -> Path:
    rid = resolve_run(params, dataset, method, seed)["run_id"]
    return run_folder(params["paths"][root], dataset, method, rid, seed)


def run_dir(params: Mapping[str, Any], dataset: str, method: str, seed: int) -> Path:
    """``results/<dataset>/<method>/<run-id>/seed<k>``."""
    return _run_path(params, "results", dataset, method, seed)


def checkpoint_dir(params: Mapping[str, Any], dataset: str, method: str, seed: int) -> Path:
    """``checkpoints/<dataset>/<method>/<run-id>/seed<k>/``: a run's checkpoints (``last.pt``,
    ``selected.pt``, ``epoch<k>.pt``), in a tree of their own (``paths.checkpoints``) so that the
    results a user pulls to rebuild the tables stay small."""
    return _run_path(params, "checkpoints", dataset, method, seed)


def checkpoint_path(
    params: Mapping[str, Any], dataset: str, method: str, seed: int, name: str = "last"
) -> Path:
    """The checkpoint ``name`` of a run (:func:`mmbalance.engine.checkpoint.checkpoint_path` in
    :func:`checkpoint_dir`)."""
    return checkpoint_dir(params, dataset, method, seed) / f"{name}.pt"

"""Sensitivity sweeps: a method's option(s) over a list of values, each point a variant.

``params.yaml``'s ``sweeps.<name>`` names a method (a registered one or a ``variants:`` entry), the
values of one option (a curve) or of two (a grid) and the runs drawn as horizontal references::

    sweeps:
      mie_tau: {method: mie, values: {tau: [1.0e-5, 1.0e-2, 0.4, 100.0]}, references: [concat]}

Every point is a generated variant named ``<sweep>_<value>[_<value>]`` (``mie_tau_1em05``: ``.`` →
``p``, ``-`` → ``m``), with the swept method's options and the point's value(s). Only the sweeps
named in ``experiment.sweeps`` are trained, each point for the first ``experiment.sweep_seeds`` of
``experiment.seeds`` (default all of them), by the ordinary ``train`` rule.

A point whose resolved run (method class, options, features, training preset) equals a run of the
matrix — the swept method's own default run, or any method or variant of ``experiment.methods`` —
*is* that run: it is not trained again, it reads that run's results (e.g. MIE's ρ = 1e-10 is the
``mie_rho_paper`` variant; LFM's constant α = 0.5 is ``lfm_alpha05``). Which run serves a point can
depend on the dataset (per-dataset method settings), so the mapping is made per dataset.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mmbalance.errors import ConfigError
from mmbalance.registry import METHODS

MAX_OPTIONS = 2
DEFAULT_REFERENCES = ("concat",)
_NAME = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class Sweep:
    """One named sweep of ``params.yaml``.

    Attributes:
        name: the key under ``sweeps``.
        method: the swept run name (a registered method or a variant).
        options: the swept option names (one: a curve; two: a grid, the first on the x axis).
        values: per option, its values in order.
        references: run names drawn as horizontal reference lines.
        description: free text shown in the figure's title and the table's caption.
    """

    name: str
    method: str
    options: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]
    references: tuple[str, ...]
    description: str

    def points(self) -> list[tuple[Any, ...]]:
        """Every combination of the options' values, the first option varying slowest."""
        return list(itertools.product(*self.values))

    def point_name(self, point: Sequence[Any]) -> str:
        """The generated variant name of one point, e.g. ``mie_tau_1em05``."""
        return "_".join([self.name, *(encode_value(value) for value in point)])


@dataclass(frozen=True)
class Point:
    """One point of a sweep on one dataset: its values, its variant name and the run that serves it."""

    values: tuple[Any, ...]
    name: str
    run: str
    is_default: bool


def encode_value(value: Any) -> str:
    """A value as a run-name fragment of ``[a-z0-9]``: ``0.33`` → ``0p33``, ``1e-05`` → ``1em05``,
    ``True`` → ``true``, lists joined by ``_``, other characters of strings dropped."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "_".join(encode_value(item) for item in value) or "empty"
    text = repr(value) if isinstance(value, float) else str(value)
    text = text.lower().replace(".", "p").replace("-", "m").replace("+", "")
    return re.sub(r"[^a-z0-9]", "", text) or "x"


def defined(params: Mapping[str, Any]) -> dict[str, Sweep]:
    """Every sweep of ``params["sweeps"]`` (trained or not), by name, as :class:`Sweep`."""
    sweeps = {}
    for name, entry in (params.get("sweeps") or {}).items():
        values = entry["values"]
        sweeps[name] = Sweep(
            name=name,
            method=entry["method"],
            options=tuple(values),
            values=tuple(tuple(v) for v in values.values()),
            references=tuple(entry.get("references", DEFAULT_REFERENCES)),
            description=entry.get("description", ""),
        )
    return sweeps


def selected(params: Mapping[str, Any]) -> list[Sweep]:
    """The sweeps named in ``experiment.sweeps``, in that order."""
    sweeps = defined(params)
    return [sweeps[name] for name in params["experiment"].get("sweeps", [])]


def selected_on(params: Mapping[str, Any], dataset: str) -> list[Sweep]:
    """The selected sweeps that apply to ``dataset``: not those of a variant whose ``train`` block is
    for other modalities (:func:`mmbalance.config.applies`)."""
    from mmbalance.config import applies

    return [sweep for sweep in selected(params) if applies(params, sweep.method, dataset)]


def seeds(params: Mapping[str, Any]) -> list[int]:
    """The first ``experiment.sweep_seeds`` of ``experiment.seeds`` (all of them when it is not set)."""
    exp = params["experiment"]
    return list(exp["seeds"][: exp.get("sweep_seeds", len(exp["seeds"]))])


def variants(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The generated variant of every point of every defined sweep: ``{method, options, description}``
    over the swept method (its plugin and, for a variant, the variant's options and ``train`` block)."""
    user = params.get("variants", {}) or {}
    generated: dict[str, dict[str, Any]] = {}
    for sweep in defined(params).values():
        swept = user.get(sweep.method)
        base = swept["method"] if swept is not None else sweep.method
        options = dict((swept or {}).get("options", {}) or {})
        for point in sweep.points():
            generated[sweep.point_name(point)] = {
                "method": base,
                "options": {**options, **dict(zip(sweep.options, point, strict=True))},
                **({"train": swept["train"]} if swept is not None and "train" in swept else {}),
                "description": f"sweep {sweep.name}: "
                + ", ".join(f"{o} = {v}" for o, v in zip(sweep.options, point, strict=True)),
            }
    return generated


def _comparable(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """What makes two runs the same training: everything resolved but the run's name, id and seed."""
    return {k: v for k, v in resolved.items() if k not in ("method", "run_id", "seed")}


def points(params: Mapping[str, Any], sweep: Sweep, dataset: str) -> list[Point]:
    """The points of ``sweep`` on ``dataset`` with the run that serves each (module docstring).

    A point is the default when the swept method's own run serves it: the point's options then
    resolve to exactly the swept method's on this dataset.
    """
    from mmbalance.config import applies, experiment_methods
    from mmbalance.paths import resolve_run

    candidates = [
        name
        for name in dict.fromkeys([sweep.method, *experiment_methods(params)])
        if applies(params, name, dataset)
    ]
    known = [(name, _comparable(resolve_run(params, dataset, name, 0))) for name in candidates]
    result = []
    for values in sweep.points():
        name = sweep.point_name(values)
        mine = _comparable(resolve_run(params, dataset, name, 0))
        run = next((other for other, resolved in known if resolved == mine), name)
        result.append(Point(values=tuple(values), name=name, run=run, is_default=run == sweep.method))
    return result


def runs(params: Mapping[str, Any], dataset: str) -> list[str]:
    """The runs the selected sweeps need on ``dataset``: every point's, the swept methods' default
    runs and the references, without repeats, in order (:func:`selected_on`)."""
    names: list[str] = []
    for sweep in selected_on(params, dataset):
        names += [point.run for point in points(params, sweep, dataset)]
        names += [sweep.method, *sweep.references]
    return list(dict.fromkeys(names))


def validate(params: Mapping[str, Any], source: str) -> None:
    """Check every defined sweep and the selection (message names the key; module docstring)."""
    from mmbalance.config import method_options, typed_options

    user = params.get("variants", {}) or {}
    taken = set(METHODS.names()) | set(user) | set(params["experiment"].get("method_sets", {}))
    generated: dict[str, str] = {}
    for sweep in defined(params).values():
        where = f"sweeps.{sweep.name}"
        if sweep.method not in user and sweep.method not in METHODS.names():
            known = ", ".join(sorted(set(METHODS.names()) | set(user)))
            raise ConfigError(
                f"{source}: {where}.method: unknown method or variant '{sweep.method}' (known: {known})"
            )
        if not 1 <= len(sweep.options) <= MAX_OPTIONS:
            raise ConfigError(
                f"{source}: {where}.values: one option (a curve) or two (a grid), got {len(sweep.options)}"
            )
        for reference in sweep.references:
            if reference not in user and reference not in METHODS.names():
                raise ConfigError(f"{source}: {where}.references: unknown method or variant '{reference}'")
        base = user[sweep.method]["method"] if sweep.method in user else sweep.method
        cls = METHODS.get(base)
        swept = method_options(params, sweep.method, source=source)
        for option, values in zip(sweep.options, sweep.values, strict=True):
            if not values:
                raise ConfigError(f"{source}: {where}.values.{option}: give at least one value")
            seen: list[Any] = []
            for i, value in enumerate(values):
                try:
                    typed = typed_options(cls.Options(**swept), {option: value}, where=f"{where}.values")
                except ConfigError as exc:
                    raise ConfigError(f"{source}: {exc} (value {i + 1} of {len(values)})") from exc
                if typed[option] in seen:
                    raise ConfigError(f"{source}: {where}.values.{option}: {value!r} is given twice")
                seen.append(typed[option])
        for point in sweep.points():
            name = sweep.point_name(point)
            if not _NAME.match(name):
                raise ConfigError(f"{source}: {where}: point name '{name}' is not a valid run name")
            if name in taken:
                raise ConfigError(
                    f"{source}: {where}: point {point} is named '{name}', "
                    "which is already a method, variant or set"
                )
            if name in generated:
                raise ConfigError(
                    f"{source}: {where}: points {generated[name]} and {point} both get the run name '{name}'"
                )
            generated[name] = repr(point)
    exp = params["experiment"]
    for name in exp.get("sweeps", []):
        if name not in defined(params):
            known = ", ".join(sorted(defined(params))) or "none defined"
            raise ConfigError(f"{source}: experiment.sweeps: unknown sweep '{name}' (known: {known})")

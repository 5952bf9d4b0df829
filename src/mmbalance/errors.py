"""Errors that the command line turns into one clear line instead of a traceback."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class MMBalanceError(Exception):
    """A problem the user can fix: bad params, a missing or corrupt file, an unknown name."""


class ConfigError(MMBalanceError):
    """``params.yaml`` (or a ``--set`` override) is invalid; the message names the key."""


class DataError(MMBalanceError):
    """An input file is missing, truncated or undecodable; the message names the file."""


class TrainingError(MMBalanceError):
    """Training cannot go on (its numbers stopped being finite); the message names where and why."""


def reject_unknown(
    keys: Iterable[str],
    allowed: Iterable[str],
    *,
    prefix: str = "",
    context: str = "",
    shown: Sequence[str] | None = None,
    label: str = "allowed",
) -> None:
    """Stop on the first of ``keys`` (in their order) that is not in ``allowed``: a :class:`ConfigError`
    ``<context>unknown key '<prefix><key>' (<label>: <shown, default the allowed keys sorted>)``.

    The one check behind every "unknown key" of a settings block that the schema leaves open (method
    and analysis options, encoders, feature kinds, table layouts)."""
    allowed = set(allowed)
    unknown = next((key for key in keys if key not in allowed), None)
    if unknown is not None:
        names = ", ".join(sorted(allowed) if shown is None else shown)
        raise ConfigError(f"{context}unknown key '{prefix}{unknown}' ({label}: {names})")

"""Decorator registries for methods, datasets, encoders, fusions and audio front-ends.

Modelled on timm's ``register_model``: a plugin module registers itself at import
time, and :func:`import_plugins` imports every module of a plugin package, so adding
a method (or dataset, encoder, ...) is adding one file. Unknown names raise an error
that lists the known ones.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from mmbalance.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → object table for one kind of plugin."""

    def __init__(self, kind: str, package: str) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Return a decorator that registers its argument under ``name``."""

        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Look ``name`` up; an unknown name is a :class:`ConfigError` listing the known ones."""
        import_plugins(self.package)
        if name not in self._entries:
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"unknown {self.kind} '{name}' (known: {known})")
        return self._entries[name]

    def names(self) -> list[str]:
        """All registered names, sorted."""
        import_plugins(self.package)
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        import_plugins(self.package)
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


_imported: set[str] = set()


def import_plugins(package: str) -> None:
    """Import every module of ``package`` once, so that their decorators run."""
    if package in _imported:
        return
    _imported.add(package)
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


METHODS: Registry = Registry("method", "mmbalance.methods")
DATASETS: Registry = Registry("dataset", "mmbalance.data.datasets")
ENCODERS: Registry = Registry("encoder", "mmbalance.models.encoders")
FUSIONS: Registry = Registry("fusion", "mmbalance.models.fusions")
FRONTENDS: Registry = Registry("audio front-end", "mmbalance.data.frontends")
KINDS: Registry = Registry("modality kind", "mmbalance.data.kinds")
ADAPTERS: Registry = Registry("encoder adapter", "mmbalance.models.encoders")
ANALYSES: Registry = Registry("analysis", "mmbalance.analysis")

register_method = METHODS.register
register_dataset = DATASETS.register
register_encoder = ENCODERS.register
register_fusion = FUSIONS.register
register_frontend = FRONTENDS.register
register_kind = KINDS.register
register_adapter = ADAPTERS.register
register_analysis = ANALYSES.register

"""The initialisation of a model's heads: a protocol setting, one for every method of a dataset.

``train.<profile>.<dataset>.init`` (docs/methods.md, "Initialisation"):

* ``pytorch`` (default): every module keeps PyTorch's default initialisation (a ``Linear``'s weight
  Kaiming-uniform with ``a = √5``, its bias uniform in ``±1/√fan_in``).
* ``xavier_heads``: every ``nn.Linear`` of the fusion (classification heads, probes, attention and
  gating layers, AUG's classifiers) gets Xavier-normal weights and zero biases, as the released LFM
  and AUG code's ``weight_init`` (methods.md §A1.2); the encoders keep their own initialisation.
"""

from __future__ import annotations

from torch import nn

INITS = ("pytorch", "xavier_heads")


def initialise_heads(module: nn.Module, scheme: str) -> nn.Module:
    """Initialise every ``nn.Linear`` under ``module`` (a model's fusion, or one layer) by ``scheme``;
    returns ``module``."""
    if scheme not in INITS:
        raise ValueError(f"unknown initialisation {scheme!r} (known: {', '.join(INITS)})")
    if scheme == "xavier_heads":
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
    return module

"""Optimisers and learning-rate schedules from the ``train`` block of params."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from mmbalance.errors import ConfigError


def build_optimizer(params: Iterable[Any], cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD (with momentum), Adam or AdamW."""
    name, lr, wd = cfg["name"], cfg["lr"], cfg.get("weight_decay", 0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.get("momentum", 0.0), weight_decay=wd)
    betas = tuple(cfg.get("betas", (0.9, 0.999)))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=wd)
    raise ConfigError(f"train.optimizer.name: unknown optimiser '{name}'")


class Schedule:
    """A uniform ``step(val_loss)`` over StepLR, ReduceLROnPlateau (on validation loss) or none."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: dict[str, Any]) -> None:
        self.name = cfg["name"]
        self.optimizer = optimizer
        self.initial_lrs = [group["lr"] for group in optimizer.param_groups]
        self.scheduler: Any = None
        if self.name == "step":
            self.scheduler = torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=cfg.get("step_size", 70), gamma=cfg.get("gamma", 0.1)
            )
        elif self.name == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=cfg.get("factor", 0.1), patience=cfg.get("patience", 10)
            )
        elif self.name != "none":
            raise ConfigError(f"train.scheduler.name: unknown schedule '{self.name}'")

    def step(self, val_loss: float) -> None:
        """Called once at the end of every epoch."""
        if self.name == "step":
            self.scheduler.step()
        elif self.name == "plateau":
            self.scheduler.step(val_loss)

    def restart(self) -> None:
        """Start the schedule afresh: initial learning rates, step count and plateau history reset
        (MIE's code builds a new optimiser and StepLR at every stage)."""
        for group, lr in zip(self.optimizer.param_groups, self.initial_lrs, strict=True):
            group["lr"] = lr
        if self.name == "step":
            self.scheduler.last_epoch = 0
        elif self.name == "plateau":
            self.scheduler.best = self.scheduler.mode_worse
            self.scheduler.num_bad_epochs = 0
            self.scheduler.cooldown_counter = 0

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict() if self.scheduler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)

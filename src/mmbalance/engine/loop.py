"""The one training loop. Methods plug in through :class:`mmbalance.methods._base.Method`, found by name
in the registry.

Per epoch: ``on_epoch_start`` → ``training_step`` per batch → evaluation on validation and
test (with the test features' modality gap) → model checkpoints → ``on_epoch_end`` → learning-rate
schedule → history row → checkpoint. A checkpoint holds the model, optimiser, schedule, method
state, RNG states, history and the current val-selected test predictions, so a run killed at any
point resumes from its last finished epoch and ends bit-identical to an uninterrupted run (on CPU,
same machine and threads). The model checkpoints (``selected``, ``epoch<k>``;
:mod:`mmbalance.engine.checkpoint`) are written between evaluation and ``on_epoch_end``, so they hold
the model exactly as it was evaluated (before AUG adds a classifier or MSES rolls a branch back).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from mmbalance.data.store import FeatureStore, open_store
from mmbalance.engine.acceleration import prepare_model
from mmbalance.engine.batches import SplitBatches, evaluation_batches, split_batches
from mmbalance.engine.checkpoint import (
    CHECKPOINT_DIR,
    checkpoint_path,
    epoch_checkpoint_name,
    load_checkpoint,
    model_state,
    save_checkpoint,
)
from mmbalance.engine.convergence import run_convergence
from mmbalance.engine.environment import environment
from mmbalance.engine.evaluate import evaluate
from mmbalance.engine.machine import describe as describe_machine
from mmbalance.engine.metrics import modality_gaps
from mmbalance.engine.optim import Schedule, build_optimizer
from mmbalance.engine.precision import Precision
from mmbalance.engine.protocols import protocol_metrics
from mmbalance.engine.seeding import configure_determinism, rng_state, seed_everything, set_rng_state
from mmbalance.engine.settings import EngineSettings
from mmbalance.engine.types import Context, ModelSpec
from mmbalance.errors import MMBalanceError
from mmbalance.models.init import initialise_heads
from mmbalance.registry import METHODS
from mmbalance.runs import files as run_files

if TYPE_CHECKING:  # the engine knows no method: it finds their classes in the registry
    from mmbalance.methods._base import Method

log = logging.getLogger("mmbalance.train")

SPLITS = ("val", "test")
CHECKPOINT = f"{CHECKPOINT_DIR}/last.pt"
"""The resume checkpoint relative to the run directory (:func:`checkpoint_path` of ``last``)."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MMBalanceError(f"--device {name}: no CUDA device is available")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise MMBalanceError(f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s)")
    return device


def build_method(resolved: dict[str, Any], modalities: dict[str, str], num_classes: int) -> Method:
    train_cfg = resolved["train"]
    spec = ModelSpec(modalities, train_cfg["encoders"], num_classes, init=train_cfg.get("init", "pytorch"))
    return METHODS.get(resolved["method_class"])(resolved["method_options"], spec)


def eval_batches(
    store: FeatureStore,
    resolved: dict[str, Any],
    split: str,
    device: torch.device,
    rows: list[int] | None = None,
) -> SplitBatches:
    """A run's evaluation batches of ``split`` (:func:`~mmbalance.engine.batches.evaluation_batches` with
    the run's settings), of the samples at ``rows`` only when given: what the analyses evaluate on."""
    where = f"train.{resolved['profile']}.{resolved['dataset']}"
    settings = EngineSettings.of(resolved["train"])
    return evaluation_batches(store, resolved["train"], split, device, settings, where, rows)


class Trainer:
    """Trains one resolved run configuration into ``run_dir``."""

    def __init__(
        self,
        resolved: dict[str, Any],
        feature_dir: Path,
        run_dir: Path,
        device: str = "auto",
        checkpoint_dir: Path | None = None,
    ) -> None:
        self.cfg = resolved
        self.run_dir = Path(run_dir)
        self.checkpoint_dir = (
            Path(checkpoint_dir) if checkpoint_dir is not None else self.run_dir / CHECKPOINT_DIR
        )
        self.device = resolve_device(device)
        self.seed = int(resolved["seed"])
        self.settings = EngineSettings.of(resolved["train"])
        store = open_store(Path(feature_dir))
        where = f"train.{resolved['profile']}.{resolved['dataset']}"
        self.batches = split_batches(store, resolved["train"], self.device, self.seed, self.settings, where)
        self.test_ids = list(store.split("test").ids)
        self.clips = store.manifest.get("clips")
        self.keep_epochs = set(resolved["train"].get("keep_epochs", []))

        configure_determinism(self.device, self.settings.deterministic)
        self.precision = Precision(self.settings.precision, self.device)
        seed_everything(self.seed)
        self.method = build_method(resolved, store.modalities, store.num_classes)
        self.build_model()
        self.heads = self.method.heads()
        self.num_classes = store.num_classes
        self.history: list[dict[str, Any]] = []
        self.best_val: dict[str, float] = {}
        self.best_predictions: dict[str, np.ndarray] = {}
        self.start_epoch = 0
        self.step = 0

    def build_model(self) -> None:
        """Model, optimiser and schedule from the method (and its current state)."""
        train_cfg = self.cfg["train"]
        self.model = self.method.build()
        initialise_heads(self.model.fusion, self.method.spec.init)
        self.model = prepare_model(self.model.to(self.device), self.settings)
        self.optimizer = build_optimizer(self.method.param_groups(self.model), train_cfg["optimizer"])
        self.schedule = Schedule(self.optimizer, train_cfg["scheduler"])

    # --- checkpoints -----------------------------------------------------------------------
    def state(self, epoch: int) -> dict[str, Any]:
        return {
            "run_id": self.cfg["run_id"],
            "seed": self.seed,
            "epoch": epoch,
            "step": self.step,
            "config": self.cfg,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "method": self.method.state_dict(),
            "rng": rng_state(),
            "precision": self.precision.state_dict(),
            "history": self.history,
            "best_val": self.best_val,
            "best_predictions": self.best_predictions,
        }

    def resume(self) -> None:
        path = checkpoint_path(self.checkpoint_dir)
        if not path.exists():
            return
        state = load_checkpoint(path)
        if state["run_id"] != self.cfg["run_id"] or state["seed"] != self.seed:
            raise MMBalanceError(
                f"{path}: checkpoint of run {state['run_id']}/seed{state['seed']}, expected "
                f"{self.cfg['run_id']}/seed{self.seed}; delete it to restart"
            )
        self.method.load_state_dict(state["method"])
        self.build_model()
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        set_rng_state(state["rng"])
        self.precision.load_state_dict(state.get("precision", {}))
        self.history = state["history"]
        self.best_val = state["best_val"]
        self.best_predictions = state["best_predictions"]
        self.step = state["step"]
        self.start_epoch = state["epoch"] + 1
        log.info("resumed from %s after epoch %d", path, state["epoch"])

    # --- training --------------------------------------------------------------------------
    def context(self, epoch: int) -> Context:
        return Context(
            model=self.model,
            optimizer=self.optimizer,
            epoch=epoch,
            num_epochs=self.cfg["train"]["epochs"],
            step=self.step,
            device=self.device,
            modalities=self.method.modalities,
            num_classes=self.num_classes,
            data=self.batches,
            schedule=self.schedule,
            precision=self.precision,
        )

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """The epoch's training steps; returns the sample-weighted means of their logs over the steps
        that were applied. A step the precision skipped for non-finite gradients (bf16, fp16) changed
        no weight, so its logs (often a NaN loss) stay out of the means, which would otherwise mark
        a run that trains fine as diverged; an epoch whose every step was skipped logs NaN."""
        self.model.train()
        sums: dict[str, float] = {}
        logged: list[str] = []
        count = 0
        for batch in self.batches["train"].epoch(epoch):
            ctx = self.context(epoch)
            skipped = self.precision.skipped
            logs = self.method.training_step(batch, ctx)
            self.step += 1
            logged += [key for key in logs if key not in logged]
            if self.precision.skipped > skipped:
                continue
            for key, value in logs.items():
                sums[key] = sums.get(key, 0.0) + value * len(batch)
            count += len(batch)
        if count == 0:
            return {f"train_{k}": math.nan for k in logged}
        return {f"train_{k}": v / count for k, v in sums.items()}

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        started = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        row: dict[str, Any] = {"epoch": epoch, "lr": lr}
        row.update(self.method.on_epoch_start(self.context(epoch)))
        skipped = self.precision.skipped
        row.update(self.train_epoch(epoch))
        if self.precision.dtype is not None:
            row["skipped_steps"] = self.precision.skipped - skipped
        evaluation, probs, features = {}, {}, {}
        for split in SPLITS:
            evaluation[split], probs[split] = evaluate(
                self.model,
                self.method,
                self.batches[split],
                features if split == "test" else None,
                self.precision.autocast,
            )
            for head, values in evaluation[split].items():
                row.update({f"{split}_{head}_{k}": v for k, v in values.items()})
        row.update({f"test_{name}": gap for name, gap in modality_gaps(features).items()})
        self.save_models(epoch, evaluation, features)
        row.update(self.method.on_epoch_end(self.context(epoch), evaluation))
        self.schedule.step(evaluation["val"]["fused"]["loss"])
        self.track_selection(evaluation, probs["test"])
        row["seconds"] = round(time.perf_counter() - started, 3)
        return row

    def save_models(self, epoch: int, evaluation: dict, features: dict[str, np.ndarray]) -> None:
        """The model as just evaluated: ``selected`` when the fused head's validation accuracy improves
        (the rule of :meth:`track_selection`, which records it afterwards), ``epoch<k>`` for kept epochs."""
        best = self.best_val.get("fused")
        names = ["selected"] if best is None or evaluation["val"]["fused"]["acc"] > best else []
        if epoch in self.keep_epochs:
            names.append(epoch_checkpoint_name(epoch))
        for name in names:
            kept = features if name == "selected" else None
            state = model_state(self.cfg, epoch, self.model, self.method, kept)
            save_checkpoint(checkpoint_path(self.checkpoint_dir, name), state)

    def track_selection(self, evaluation: dict, test_probs: dict[str, np.ndarray]) -> None:
        """Keep the test predictions of the val-selected epoch (strict improvement: earliest wins)."""
        for head in self.heads:
            key = head if self.method.select_per_head else "fused"
            acc = evaluation["val"][key]["acc"]
            if head not in self.best_val or acc > self.best_val[head]:
                self.best_val[head] = acc
                self.best_predictions[head] = test_probs[head]

    def fit(self, progress: bool = True) -> dict[str, Any]:
        """Train (or resume) to the configured number of epochs and write the run's outputs."""
        self.resume()
        epochs = self.cfg["train"]["epochs"]
        bar = tqdm(
            range(self.start_epoch, epochs),
            initial=self.start_epoch,
            total=epochs,
            desc=f"{self.cfg['method']} seed{self.seed}",
            disable=not progress,
            unit="epoch",
        )
        for epoch in bar:
            row = self.run_epoch(epoch)
            self.history.append(row)
            save_checkpoint(checkpoint_path(self.checkpoint_dir), self.state(epoch))
            run_files.write_history(self.run_dir, self.history)
            bar.set_postfix(val=f"{row['val_fused_acc']:.3f}", test=f"{row['test_fused_acc']:.3f}")
            log.info(
                "epoch %d: train loss %.4f, val acc %.4f, test acc %.4f (%.1fs)",
                epoch,
                row.get("train_loss", float("nan")),
                row["val_fused_acc"],
                row["test_fused_acc"],
                row["seconds"],
            )
        if self.precision.skipped:
            log.warning(
                "%s seed %d: %d optimiser steps skipped for non-finite gradients under %s "
                "(history.csv: skipped_steps)",
                self.cfg["method"],
                self.seed,
                self.precision.skipped,
                self.precision.name,
            )
        return self.write_outputs()

    # --- outputs ---------------------------------------------------------------------------
    def write_outputs(self) -> dict[str, Any]:
        # History again here: a run killed after its last checkpoint, whose outputs a workflow manager
        # then deleted, resumes with no epoch left to run and must still leave its history.csv.
        run_files.write_history(self.run_dir, self.history)
        per_head = self.method.select_per_head
        metrics = {
            "dataset": self.cfg["dataset"],
            "method": self.cfg["method"],
            "seed": self.seed,
            "run_id": self.cfg["run_id"],
            "heads": self.heads,
            "modalities": self.method.modalities,
            "protocols": protocol_metrics(self.history, self.heads, per_head),
            "convergence": run_convergence(self.history, self.heads, per_head),
            # listed/found/missing clips per split, for datasets that can miss some (none for synthav)
            **({"clips": self.clips} if self.clips is not None else {}),
            "epochs_trained": len(self.history),
            # optimiser steps skipped for non-finite gradients (bf16 and fp16 only; engine.precision)
            **({"skipped_steps": self.precision.skipped} if self.precision.dtype is not None else {}),
            "machine": describe_machine(self.device),
            "config": self.cfg,
            "config_hash": self.cfg["run_id"],
            "environment": environment(self.device),
        }
        predictions = {"labels": self.batches["test"].labels, "ids": np.array(self.test_ids)}
        predictions.update(self.best_predictions)
        run_files.write_outputs(self.run_dir, metrics, predictions)
        return metrics


def train(
    resolved: dict[str, Any],
    feature_dir: Path,
    run_dir: Path,
    device: str = "auto",
    progress: bool = True,
    checkpoint_dir: Path | None = None,
) -> dict[str, Any]:
    """Train one run into ``run_dir``, its checkpoints into ``checkpoint_dir`` (default ``run_dir/ckpt``;
    the CLI passes :func:`mmbalance.paths.checkpoint_dir`); returns the content of ``metrics.json``."""
    return Trainer(resolved, feature_dir, run_dir, device, checkpoint_dir).fit(progress=progress)

"""The Lightning part of training: the ``Trainer`` run behind `TorchClassifier.fit`.

Imported only when a network is trained (``TorchClassifier.fit`` imports it inside the
function), so loading a saved model and predicting never import Lightning.

Why the Lightning ``Trainer`` rather than ``Fabric``: the Trainer brings, already tested, the
three things this core would otherwise re-implement: resumable end-of-epoch checkpoints that
restore the optimizer, the epoch counter and callback state (``ckpt_path``), early stopping,
and the distributed plumbing (DDP process launch, distributed sampler injection, including for
a ``WeightedRandomSampler``). What it does not give (best-epoch weights kept in memory on every
rank, speaker-grouped validation UA, history) lives in a small ``LightningModule`` here.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping
from torch import nn
from torch.utils.data import DataLoader

from serkit.models.training import WARMUP_FRACTION, _warmup_cosine, resolve_precision

if TYPE_CHECKING:
    from serkit.models.training import TorchClassifier

__all__ = ["LAST_CHECKPOINT", "fit_network", "quiet_lightning", "seed_everything"]

logger = logging.getLogger(__name__)

#: Name of the resumable checkpoint inside ``checkpoint_dir``.
LAST_CHECKPOINT = "last.ckpt"
#: Lightning's loggers whose info lines (GPU available, ...) are hidden unless progress=True.
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


def fit_network(
    model: TorchClassifier,
    network: nn.Module,
    *,
    weights: np.ndarray | None,
    meta: dict[str, Any],
    train_loader: DataLoader,
    val_loader: DataLoader | None,
) -> _LitClassifier:
    """Train `network` with the Lightning Trainer configured by `model`'s hyper-parameters.

    Resumes from ``model.checkpoint_dir`` when it holds a checkpoint of the same run (`meta`).

    Args:
        model: The estimator whose settings (lr, max_epochs, patience, monitor, accelerator,
            devices, strategy, precision, checkpoint_dir, progress, ...) drive the run.
        network: The network to train, in place.
        weights: Cross-entropy class weights, or None.
        meta: What identifies the run (classes, input shape, training rows); a checkpoint of
            another run is refused.
        train_loader: The training batches.
        val_loader: The validation batches, or None (no validation loop).

    Returns:
        The trained LightningModule: ``history``, ``best_epoch`` and ``best_state`` (the best
        validation epoch's weights, None without validation).

    Raises:
        ValueError: A spawn / fork strategy, or a checkpoint of another run.
    """
    lit_class = _LitValidated if val_loader is not None else _LitClassifier
    lit = lit_class(
        network, lr=float(model.lr), weights=weights, monitor=model.monitor, meta=meta, lr_schedule=model.lr_schedule
    )
    callbacks: list[pl.Callback] = []
    if val_loader is not None and model.patience is not None:
        mode = "min" if model.monitor == "val_loss" else "max"
        callbacks.append(EarlyStopping(monitor=model.monitor, mode=mode, patience=int(model.patience)))
    resume = None
    if model.checkpoint_dir is not None:
        folder = Path(model.checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        callbacks.append(_LastCheckpoint(folder / LAST_CHECKPOINT))
        if (folder / LAST_CHECKPOINT).is_file():
            resume = str(folder / LAST_CHECKPOINT)
            logger.info("%s: resuming from %s", model.name, resume)
    with tempfile.TemporaryDirectory(prefix="serkit-train-") as workdir, _lightning_warnings():
        trainer = pl.Trainer(
            accelerator=model.accelerator,
            devices=model.devices,
            strategy=model.strategy,
            precision=resolve_precision(model.precision, model.accelerator),
            max_epochs=int(model.max_epochs),
            callbacks=callbacks,
            logger=False,
            enable_checkpointing=model.checkpoint_dir is not None,
            enable_progress_bar=bool(model.progress),
            enable_model_summary=bool(model.progress),
            num_sanity_val_steps=0,
            default_root_dir=workdir,  # nothing may land in the working directory
            benchmark=False if model.deterministic else None,
        )
        _check_launcher(trainer)
        # weights_only: our checkpoints hold tensors and plain data, read with the restricted unpickler
        trainer.fit(lit, train_loader, val_loader, ckpt_path=resume, weights_only=True)
    return lit


# --------------------------------------------------------------------------- LightningModules


class _LitClassifier(pl.LightningModule):
    """Training-only LightningModule: no validation loop (``val_fraction=0``).

    Attributes:
        history: One dict per finished epoch: ``epoch`` (1-based), ``train_loss``,
            ``val_loss`` and ``val_ua`` (None without validation).
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        lr: float,
        weights: np.ndarray | None,
        monitor: str,
        meta: dict[str, Any],
        lr_schedule: str | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.monitor = monitor
        self.meta = meta
        weight = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        self.criterion = nn.CrossEntropyLoss(weight=weight)
        self.history: list[dict[str, Any]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.stopped_early = False
        self._val: dict[str, float | None] = {"val_loss": None, "val_ua": None}
        self._train_sum = torch.zeros(())
        self._train_rows = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.float())

    def configure_optimizers(self) -> Any:
        params = [p for p in self.network.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=self.lr)
        if self.lr_schedule in (None, "constant"):
            return optimizer
        # Steps of the whole max_epochs run (per rank under DDP); the scheduler's state is in
        # the checkpoints, so a resumed run continues the same curve.
        factor = _warmup_cosine(int(self.trainer.estimated_stepping_batches), WARMUP_FRACTION)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_start(self) -> None:
        hook = getattr(self.network, "on_train_start", None)
        if callable(hook):
            hook()
        if self.stopped_early:  # resumed from a run that had already stopped early
            self.trainer.should_stop = True

    def on_train_epoch_start(self) -> None:
        self._train_sum = torch.zeros((), device=self.device)
        self._train_rows = torch.zeros((), device=self.device)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.criterion(self(x), y)
        self._train_sum += loss.detach().float() * len(y)
        self._train_rows += len(y)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        total = self.trainer.strategy.reduce(self._train_sum, reduce_op="sum")
        rows = self.trainer.strategy.reduce(self._train_rows, reduce_op="sum")
        entry = {"epoch": self.current_epoch + 1, "train_loss": float(total / rows.clamp_min(1))}
        entry.update(self._val)
        self.history.append(entry)
        logger.debug("epoch %(epoch)d: train_loss %(train_loss).4f val_loss %(val_loss)s val_ua %(val_ua)s", entry)
        if self.trainer.should_stop:
            self.stopped_early = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["serkit"] = {
            "meta": self.meta,
            "history": self.history,
            "best_state": self.best_state,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("serkit")
        if saved is None or saved.get("meta") != self.meta:
            raise ValueError(
                "checkpoint_dir holds a checkpoint of a different training run "
                f"(saved {None if saved is None else saved.get('meta')}, now {self.meta}); use an empty folder"
            )
        self.history = list(saved["history"])
        self.best_state = saved["best_state"]
        self.best_score = saved["best_score"]
        self.best_epoch = saved["best_epoch"]
        self.stopped_early = bool(saved["stopped_early"])


class _LitValidated(_LitClassifier):
    """Adds the validation loop: loss and UA over the whole (gathered) validation split."""

    def on_validation_epoch_start(self) -> None:
        self._val_logits: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self._val_logits.append(self(x).float())
        self._val_targets.append(y)

    def on_validation_epoch_end(self) -> None:
        logits, targets = self._gather(torch.cat(self._val_logits)), self._gather(torch.cat(self._val_targets))
        loss = float(self.criterion(logits, targets))
        ua = _unweighted_accuracy(logits.argmax(dim=1), targets)
        self._val = {"val_loss": loss, "val_ua": ua}
        # Already equal on every rank (gathered), so syncing only silences Lightning's advice.
        self.log("val_loss", loss, prog_bar=True, sync_dist=True)
        self.log("val_ua", ua, prog_bar=True, sync_dist=True)
        score = loss if self.monitor == "val_loss" else -ua
        if self.best_score is None or score < self.best_score:
            self.best_score = score
            self.best_epoch = self.current_epoch + 1
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """All ranks' rows (the distributed sampler gives each rank the same count)."""
        if self.trainer.world_size == 1 or not torch.distributed.is_initialized():
            return tensor
        # torch.distributed directly: Lightning's all_gather goes through a deprecated torch API,
        # and no gradient is needed here.
        parts = [torch.empty_like(tensor) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)


def _unweighted_accuracy(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-class recall over the classes present in `target` (UA)."""
    recalls = [float((predicted[target == c] == c).float().mean()) for c in torch.unique(target)]
    return float(np.mean(recalls)) if recalls else float("nan")


# --------------------------------------------------------------------------- Trainer pieces


class _LastCheckpoint(Checkpoint):
    """Saves ``last.ckpt`` at the end of every training epoch (atomically, on rank 0).

    A `Checkpoint` subclass runs after the LightningModule's ``on_train_epoch_end``, so the
    saved history includes the epoch just finished.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.path)


def _check_launcher(trainer: pl.Trainer) -> None:
    """Refuse spawn / fork strategies: they train in child processes and hand back only weights.

    This core keeps history and the best epoch's weights in the LightningModule, which a
    spawned child cannot return; ``"ddp"`` starts every rank from the calling script instead.

    Raises:
        ValueError: A ``ddp_spawn`` / ``ddp_fork`` (or ``"auto"`` in a notebook) strategy.
    """
    start_method = getattr(trainer.strategy, "_start_method", "popen")
    if start_method != "popen":
        raise ValueError(
            f"strategy {type(trainer.strategy).__name__} with start method {start_method!r} is not supported: "
            "use strategy='ddp' and run the training from a script (every rank re-runs it)"
        )


@contextlib.contextmanager
def quiet_lightning(enabled: bool) -> Iterator[None]:
    """Hide Lightning's info lines (accelerator summary, 'max_epochs reached') for the block."""
    if not enabled:
        yield
        return
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def _lightning_warnings() -> Iterator[None]:
    """Silence, narrowly, Lightning advice that does not apply to in-memory features."""
    with warnings.catch_warnings():
        # Features are in-memory tensors: worker processes would only pickle copies of them.
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        # Lightning 2.6's CombinedLoader builds a torch LeafSpec, which torch >= 2.10 deprecates
        # (Lightning-AI/pytorch-lightning#21326); harmless, and not ours to fix.
        warnings.filterwarnings(
            "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
        )
        yield


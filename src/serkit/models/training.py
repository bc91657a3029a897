"""The shared training core of serkit's neural classifiers, built on the Lightning ``Trainer``.

`TorchClassifier` turns a network (``build_network``) into a scikit-learn style classifier:
``fit(X, y, groups)`` draws a validation split BY SPEAKER from the training data, trains with
Adam and (optionally weighted) cross-entropy, stops early on the validation loss, restores the
weights of the best validation epoch and records per-epoch history in ``history_``;
``predict_proba`` runs batched in eval mode; ``save_state`` / ``load_state`` keep the weights
in safetensors so that loading never runs code.

Why the Lightning ``Trainer`` rather than ``Fabric``: the Trainer brings, already tested, the
three things this core would otherwise re-implement: resumable end-of-epoch checkpoints that
restore the optimizer, the epoch counter and callback state (``ckpt_path``), early stopping,
and the distributed plumbing (DDP process launch, distributed sampler injection, including for
a ``WeightedRandomSampler``). What it does not give (best-epoch weights kept in memory on every
rank, speaker-grouped validation UA, history) lives in a small ``LightningModule`` here.

Input standardisation: a network may contain `Standardize` modules (as its first layer);
``fit`` sets their mean and standard deviation from the TRAINING part of the data before the
first epoch, so the statistics are part of the saved weights and never see validation or test
rows.

Optional hooks a network can define: ``on_train_start()`` (called when training starts, after
Lightning's own checks; used to keep frozen batch-norm layers in eval mode).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset, WeightedRandomSampler

from serkit.models.base import Classifier

__all__ = [
    "AUGMENT_DEFAULTS",
    "CLASS_WEIGHTS",
    "LR_SCHEDULES",
    "MONITORS",
    "SpecAugment",
    "Standardize",
    "TorchClassifier",
    "class_weights",
    "make_train_loader",
    "resolve_augment",
    "resolve_precision",
    "sample_weights",
    "validation_split",
]

logger = logging.getLogger(__name__)

#: File that `TorchClassifier.save_state` writes.
WEIGHTS_FILE = "weights.safetensors"
#: Name of the resumable checkpoint inside ``checkpoint_dir``.
LAST_CHECKPOINT = "last.ckpt"
#: Validation metrics that choose the best epoch and drive early stopping.
MONITORS: tuple[str, ...] = ("val_loss", "val_ua")
#: Allowed values of ``lr_schedule``: None or ``"constant"`` (the paper's Adam; the name lets a
#: TOML override, which has no null, switch a recipe's schedule off), or ``"cosine"``: a linear
#: warm-up over `WARMUP_FRACTION` of the training steps, then a cosine decay to zero at ``max_epochs``.
LR_SCHEDULES: tuple[str | None, ...] = (None, "constant", "cosine")
WARMUP_FRACTION = 0.05
#: Allowed values of ``class_weight``.
CLASS_WEIGHTS: tuple[str | None, ...] = (None, "balanced")
#: Settings of the ``augment`` hyper-parameter and their values for ``augment=True``: the
#: largest circular time shift and the widest time / frequency mask, as fractions of the axis,
#: and how many masks of each kind (SpecAugment's time and frequency masking).
AUGMENT_DEFAULTS: dict[str, float] = {"time_shift": 0.125, "time_mask": 0.125, "freq_mask": 0.125, "masks": 1}
#: Batch size of validation and prediction (eval mode, no batch-norm batch statistics).
EVAL_BATCH_SIZE = 32
#: Lightning's loggers whose info lines (GPU available, ...) are hidden unless progress=True.
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


# --------------------------------------------------------------------------- data helpers


def validation_split(
    codes: np.ndarray, groups: Sequence[Any] | None, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation row indices, the validation rows drawn by speaker.

    With groups (speakers), a class-stratified speaker-disjoint fold is drawn with
    `StratifiedGroupKFold` (``round(1 / val_fraction)`` folds, at most one per speaker, so a
    corpus with few speakers gives one speaker to validation). Without groups, or with a
    single speaker, the split is a stratified random split and a warning is logged: early
    stopping on it is speaker-dependent, hence optimistic.

    Args:
        codes: Integer class codes of the rows.
        groups: Speaker of each row, or None.
        val_fraction: Share of the data for validation; 0 gives no validation rows.
        seed: Random seed of the split.

    Returns:
        ``(train_idx, val_idx)``, sorted integer arrays.

    Raises:
        ValueError: `val_fraction` outside [0, 1), or groups of the wrong length.
    """
    from sklearn.model_selection import ShuffleSplit, StratifiedGroupKFold, StratifiedShuffleSplit

    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    rows = np.arange(len(codes))
    if val_fraction == 0.0:
        return rows, rows[:0]
    if groups is not None:
        groups = np.asarray(groups)
        if len(groups) != len(codes):
            raise ValueError(f"groups has {len(groups)} entries for {len(codes)} rows")
        speakers = np.unique(groups)
        if len(speakers) >= 2:
            n_splits = min(max(2, round(1.0 / val_fraction)), len(speakers))
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            with _sklearn_warnings_to_log():
                train, val = next(splitter.split(rows, codes, groups))
            logger.info("validation: %d rows of %d speakers (of %d)", len(val), len(np.unique(groups[val])), len(speakers))
            return np.sort(train), np.sort(val)
        logger.warning("only one speaker in the training data: the validation split is random, not by speaker")
    else:
        logger.warning(
            "no speaker groups given: the validation split is random and speaker-dependent, "
            "so early stopping and the best epoch are chosen optimistically; pass groups=speakers"
        )
    try:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
        train, val = next(splitter.split(rows, codes))
    except ValueError:  # a class with one row, or fewer validation rows than classes
        train, val = next(ShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed).split(rows))
    return np.sort(train), np.sort(val)


@contextlib.contextmanager
def _sklearn_warnings_to_log() -> Iterator[None]:
    """Turn scikit-learn's split warnings (e.g. a class rarer than the folds) into log lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for item in caught:
        logger.warning("validation split: %s", item.message)


def class_weights(codes: np.ndarray, n_classes: int, mode: str | None) -> np.ndarray | None:
    """Cross-entropy class weights: None, or ``"balanced"`` = n / (n_classes * count).

    Classes absent from `codes` get weight 0 (they contribute no loss anyway).

    Raises:
        ValueError: Unknown mode.
    """
    if mode is None:
        return None
    if mode != "balanced":
        raise ValueError(f"class_weight must be one of {list(CLASS_WEIGHTS)}, got {mode!r}")
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = len(codes) / (present.sum() * counts[present])
    return weights


def sample_weights(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-row sampling weights 1 / count(class): every class is drawn equally often."""
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    return 1.0 / counts[codes]


def make_train_loader(
    dataset: torch.utils.data.Dataset,
    codes: np.ndarray,
    n_classes: int,
    *,
    batch_size: int,
    balanced: bool,
    seed: int,
) -> DataLoader:
    """The training DataLoader: shuffled, or class-balanced with a `WeightedRandomSampler`.

    A last batch of one row is dropped (``drop_last`` when the set is larger than a batch):
    batch norm cannot normalise a single row, and shuffling uses every row across epochs.
    No worker processes: the features are already in memory, workers would only copy them.

    Args:
        dataset: Training rows as ``(x, y)`` pairs.
        codes: Class codes of those rows, in dataset order.
        n_classes: Number of classes.
        batch_size: Rows per batch.
        balanced: Draw rows with probability 1 / count(class), with replacement.
        seed: Seed of the shuffling / sampling generator.
    """
    generator = torch.Generator().manual_seed(int(seed))
    drop_last = len(dataset) > batch_size
    if balanced:
        sampler = WeightedRandomSampler(
            torch.as_tensor(sample_weights(codes, n_classes), dtype=torch.float64),
            num_samples=len(dataset),
            replacement=True,
            generator=generator,
        )
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator, drop_last=drop_last)


def _uses_cuda(accelerator: str) -> bool:
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def resolve_precision(precision: str, accelerator: str) -> str:
    """``"auto"`` -> ``"bf16-mixed"`` on a CUDA GPU that supports bfloat16, else ``"32-true"``.

    bfloat16 on CPU is emulated and many times slower than float32, so CPU runs stay 32-bit.
    Any other value is passed to Lightning as it is.
    """
    if precision != "auto":
        return precision
    if _uses_cuda(accelerator) and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def resolve_augment(augment: bool | dict[str, Any] | None) -> dict[str, float] | None:
    """The ``augment`` hyper-parameter as full settings, or None when augmentation is off.

    None / False: off. True: `AUGMENT_DEFAULTS`. A dict: the defaults updated with its
    entries (e.g. ``{"time_mask": 0.2, "masks": 2}``).

    Raises:
        ValueError: Unknown keys, fractions outside [0, 1), or a negative mask count.
    """
    if augment is None or augment is False:
        return None
    if augment is True:
        return dict(AUGMENT_DEFAULTS)
    if not isinstance(augment, dict):
        raise ValueError(f"augment must be true, false, null or a table of {sorted(AUGMENT_DEFAULTS)}, got {augment!r}")
    unknown = sorted(set(augment) - set(AUGMENT_DEFAULTS))
    if unknown:
        raise ValueError(f"augment: unknown setting(s) {unknown}; allowed: {sorted(AUGMENT_DEFAULTS)}")
    settings = {**AUGMENT_DEFAULTS, **augment}
    for key in ("time_shift", "time_mask", "freq_mask"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(f"augment.{key} must be a fraction in [0, 1), got {value!r}")
    masks = settings["masks"]
    if isinstance(masks, bool) or not isinstance(masks, (int, np.integer)) or masks < 0:
        raise ValueError(f"augment.masks must be a non-negative integer, got {masks!r}")
    return settings


# --------------------------------------------------------------------------- modules


class SpecAugment(nn.Module):
    """Training-time augmentation of frame maps and spectrogram images; the identity in eval mode.

    Each training row gets its own random circular shift in time (up to ``time_shift`` of the
    frames either way: where in the clip the speech sits says nothing about the emotion) and
    ``masks`` time masks and ``masks`` frequency masks (SpecAugment, Park et al. 2019), each of
    a random width up to ``time_mask`` / ``freq_mask`` of its axis, set to zero. Placed right
    after `Standardize`, zero is the training mean. It holds no parameters or buffers, so
    saved weights are the same with or without it, and exported (eval-mode) graphs skip it.
    Random draws come from torch's global generator, which ``fit`` seeds.

    Args:
        time_axis: Axis of time in a batch (negative, e.g. -2 for (N, C, T, D)).
        freq_axis: Axis of frequency (or feature dimension) in a batch.
        time_shift, time_mask, freq_mask, masks: See `AUGMENT_DEFAULTS`.
    """

    def __init__(
        self, time_axis: int, freq_axis: int, *, time_shift: float, time_mask: float, freq_mask: float, masks: int
    ) -> None:
        super().__init__()
        if time_axis >= 0 or freq_axis >= 0 or time_axis == freq_axis:
            raise ValueError(f"time_axis and freq_axis must be distinct negative axes, got {time_axis}, {freq_axis}")
        self.time_axis, self.freq_axis = time_axis, freq_axis
        self.time_shift, self.time_mask, self.freq_mask = float(time_shift), float(time_mask), float(freq_mask)
        self.masks = int(masks)

    def extra_repr(self) -> str:
        return (f"time_axis={self.time_axis}, freq_axis={self.freq_axis}, time_shift={self.time_shift}, "
                f"time_mask={self.time_mask}, freq_mask={self.freq_mask}, masks={self.masks}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        x = x.movedim((self.time_axis, self.freq_axis), (-2, -1))  # (N, ..., T, F)
        n, frames, dims = x.shape[0], x.shape[-2], x.shape[-1]
        row_shape = (n,) + (1,) * (x.ndim - 3)
        largest = int(self.time_shift * frames)
        if largest > 0:
            shifts = torch.randint(-largest, largest + 1, (n,), device=x.device)
            index = (torch.arange(frames, device=x.device) - shifts[:, None]) % frames  # (N, T)
            x = torch.gather(x, -2, index.view(*row_shape, frames, 1).expand_as(x))
        time_masked = _random_masks(n, frames, int(self.time_mask * frames), self.masks, x.device)
        freq_masked = _random_masks(n, dims, int(self.freq_mask * dims), self.masks, x.device)
        masked = time_masked.view(*row_shape, frames, 1) | freq_masked.view(*row_shape, 1, dims)
        return x.masked_fill(masked, 0.0).movedim((-2, -1), (self.time_axis, self.freq_axis))


def _random_masks(rows: int, length: int, widest: int, count: int, device: torch.device) -> torch.Tensor:
    """(rows, length) booleans: `count` spans per row, each of a random width in 0..widest."""
    positions = torch.arange(length, device=device)
    masked = torch.zeros(rows, length, dtype=torch.bool, device=device)
    if widest <= 0:
        return masked
    for _ in range(count):
        width = torch.randint(0, widest + 1, (rows, 1), device=device)
        start = (torch.rand(rows, 1, device=device) * (length - width + 1)).floor().long()
        masked |= (positions >= start) & (positions < start + width)
    return masked


class Standardize(nn.Module):
    """Subtract a mean and divide by a standard deviation fitted on the training rows.

    Args:
        input_shape: Shape of one input row (without the batch dimension).
        reduce_axes: Axes of a row the statistics are pooled over (e.g. time), besides the
            rows themselves; the other axes get their own mean and deviation.
    """

    def __init__(self, input_shape: Sequence[int], reduce_axes: Sequence[int] = ()) -> None:
        super().__init__()
        ndim = len(input_shape)
        axes = sorted({a % ndim for a in reduce_axes}) if ndim else []
        self.reduce_axes = tuple(axes)
        shape = [1 if i in axes else int(n) for i, n in enumerate(input_shape)]
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    @torch.no_grad()
    def fit(self, x: torch.Tensor, rows: np.ndarray, chunk_elements: int = 1 << 24) -> None:
        """Set mean and deviation from ``x[rows]`` (two passes in float64, chunk by chunk).

        Chunks hold at most `chunk_elements` values (128 MB in float64), so large SSL frame
        arrays are never copied whole. Deviations below 1e-6 become 1 so that constant
        inputs stay finite.
        """
        dims = (0,) + tuple(a + 1 for a in self.reduce_axes)
        chunk = max(1, chunk_elements // max(1, x[0].numel()))
        total = torch.zeros(self.mean.shape, dtype=torch.float64)
        count = 0
        for batch in _chunks(x, rows, chunk):
            total += batch.sum(dim=dims, keepdim=True)[0]
            count += batch.numel() // total.numel()
        mean = total / max(count, 1)
        squares = torch.zeros_like(total)
        for batch in _chunks(x, rows, chunk):
            squares += ((batch - mean) ** 2).sum(dim=dims, keepdim=True)[0]
        std = (squares / max(count, 1)).sqrt()
        std[std < 1e-6] = 1.0
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(std.to(self.std.dtype))


def _chunks(x: torch.Tensor, rows: np.ndarray, size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(rows), size):
        yield x[torch.as_tensor(rows[start : start + size])].to(torch.float64)


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


def _warmup_cosine(total_steps: int, warmup_fraction: float) -> Any:
    """Learning-rate factor of step s: linear warm-up to 1, then a cosine decay to 0 at the last step."""
    warmup = max(1, round(warmup_fraction * total_steps))
    decay = max(1, total_steps - warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / decay)))

    return factor


def _unweighted_accuracy(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-class recall over the classes present in `target` (UA)."""
    recalls = [float((predicted[target == c] == c).float().mean()) for c in torch.unique(target)]
    return float(np.mean(recalls)) if recalls else float("nan")


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


# --------------------------------------------------------------------------- runtime context


@contextlib.contextmanager
def _quiet_lightning(enabled: bool) -> Iterator[None]:
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
def _determinism(enabled: bool) -> Iterator[None]:
    """Deterministic algorithms for the block (warn-only where an op has none), then restore."""
    if not enabled:
        yield
        return
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # needed by deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2], before[3]


@contextlib.contextmanager
def _threads(num_threads: int | None) -> Iterator[None]:
    if num_threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


# --------------------------------------------------------------------------- the classifier


class TorchClassifier(Classifier):
    """Base of the neural classifiers: Lightning training, safetensors persistence.

    Subclasses implement `build_network` and may override `prepare_input` and
    `initialize_network`. Their ``__init__`` takes their own hyper-parameters explicitly and
    passes the training ones on with ``**training``; `_get_param_names` collects both, so
    ``get_params`` (and ``model.json``) holds every hyper-parameter.

    Args:
        lr: Adam learning rate (paper: 1e-3).
        batch_size: Training batch size (paper: 4).
        max_epochs: Upper bound on training epochs.
        patience: Epochs without improvement of `monitor` before stopping; None: never stop
            early. Ignored without validation.
        val_fraction: Share of the training data (drawn by speaker) used for validation;
            0: no validation, train `max_epochs` and keep the last weights.
        monitor: ``"val_loss"`` (lowest) or ``"val_ua"`` (highest) picks the best epoch,
            whose weights are restored after fit, and drives early stopping.
        class_weight: None, or ``"balanced"``: cross-entropy weights n / (classes * count).
        balanced_sampling: Draw training rows with a class-balanced `WeightedRandomSampler`.
        seed: Seed of initialisation, splits, shuffling and dropout.
        deterministic: Use deterministic algorithms during fit (warn-only where none exist).
        accelerator: Lightning accelerator (``"auto"``, ``"cpu"``, ``"gpu"``).
        devices: Lightning devices (an int or ``"auto"``).
        strategy: Lightning strategy (``"auto"``; ``"ddp"`` for several processes).
        precision: ``"auto"`` (bf16-mixed on GPUs with bfloat16, else 32-true) or a Lightning
            precision string.
        checkpoint_dir: Folder for ``last.ckpt``, written every epoch; fit() called again
            with the same folder continues from it (to retrain, use an empty folder).
        progress: Show the progress bar, the model summary and Lightning's info lines.
        num_threads: torch CPU threads during fit and predict; None leaves torch's setting.
        augment: Training-time `SpecAugment` of frame maps and images: None / False (off),
            True (`AUGMENT_DEFAULTS`) or a dict overriding some of them. Models whose rows
            have no time axis refuse it.
        lr_schedule: None or ``"constant"`` (a constant learning rate, the paper's), or
            ``"cosine"`` (5 % linear warm-up, then cosine decay to zero at ``max_epochs``; see
            `LR_SCHEDULES`).
    """

    name: ClassVar[str] = ""
    input_kind: ClassVar[str] = ""
    uses_validation: ClassVar[bool] = True
    runtime_params: ClassVar[tuple[str, ...]] = (
        "accelerator", "devices", "strategy", "checkpoint_dir", "progress", "num_threads")

    def __init__(
        self,
        lr: float = 1e-3,
        batch_size: int = 4,
        max_epochs: int = 30,
        patience: int | None = 8,
        val_fraction: float = 0.2,
        monitor: str = "val_loss",
        class_weight: str | None = None,
        balanced_sampling: bool = False,
        seed: int = 0,
        deterministic: bool = True,
        accelerator: str = "auto",
        devices: int | str = "auto",
        strategy: str = "auto",
        precision: str = "auto",
        checkpoint_dir: str | None = None,
        progress: bool = False,
        num_threads: int | None = None,
        augment: bool | dict[str, Any] | None = None,
        lr_schedule: str | None = None,
    ) -> None:
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.monitor = monitor
        self.class_weight = class_weight
        self.balanced_sampling = balanced_sampling
        self.seed = seed
        self.deterministic = deterministic
        self.accelerator = accelerator
        self.devices = devices
        self.strategy = strategy
        self.precision = precision
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress
        self.num_threads = num_threads
        self.augment = augment
        self.lr_schedule = lr_schedule

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """Named ``__init__`` arguments of every class from `cls` up to TorchClassifier."""
        names: set[str] = set()
        for klass in cls.__mro__:
            if "__init__" in vars(klass):
                for param in inspect.signature(klass.__init__).parameters.values():
                    if param.name != "self" and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                        names.add(param.name)
            if klass is TorchClassifier:
                break
        return sorted(names)

    # ----------------------------------------------------------------- subclass interface

    def build_network(self, n_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        """A fresh network mapping a float32 batch of `input_shape` rows to class logits.

        Every subclass (cnn, efficientnet, pooled) defines it; the base has no network.
        """
        raise TypeError(f"{type(self).__name__} does not define build_network(); subclass TorchClassifier")

    def prepare_input(self, X: Any) -> torch.Tensor:
        """The features as a tensor with rows first; float16 stays float16 (cast per batch).

        Raises:
            ValueError: Empty or non-numeric input.
        """
        array = np.asarray(X)
        if array.ndim < 2 or len(array) == 0:
            raise ValueError(f"{type(self).__name__}: expected a non-empty array (rows, ...), got shape {array.shape}")
        if array.dtype == np.float16:
            return torch.from_numpy(np.ascontiguousarray(array))
        if not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"{type(self).__name__}: features must be numeric, got dtype {array.dtype}")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def augmenter(self, time_axis: int, freq_axis: int) -> nn.Module:
        """The network's training-time augmentation: `SpecAugment` per ``augment``, else identity.

        Networks place it right after their `Standardize`, naming the axes of their batches.
        """
        settings = resolve_augment(self.augment)
        if settings is None:
            return nn.Identity()
        return SpecAugment(time_axis, freq_axis, **settings)

    def initialize_network(self, network: nn.Module) -> None:
        """Called once per fit on the new network, before training (e.g. pretrained weights)."""

    def check_params(self) -> None:
        """Validate the hyper-parameters; subclasses extend it.

        Raises:
            ValueError: A hyper-parameter out of range; the message names it.
        """
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float, np.floating)) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("batch_size", "max_epochs"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.patience is not None and (not isinstance(self.patience, (int, np.integer)) or self.patience < 1):
            raise ValueError(f"patience must be a positive integer or None, got {self.patience!r}")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {list(MONITORS)}, got {self.monitor!r}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise ValueError(f"class_weight must be one of {list(CLASS_WEIGHTS)}, got {self.class_weight!r}")
        if self.num_threads is not None and int(self.num_threads) < 1:
            raise ValueError(f"num_threads must be a positive integer or None, got {self.num_threads!r}")
        resolve_augment(self.augment)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {self.lr_schedule!r}")

    # ----------------------------------------------------------------- fit

    def fit(self, X: Any, y: Any, groups: Any = None, validation: tuple[Any, Any] | None = None) -> "TorchClassifier":
        """Train on `X` (rows first) and labels `y`; `groups` (speakers) draw the validation split.

        Args:
            X: Features, rows first.
            y: Labels.
            groups: Speakers of the rows; the validation split is drawn by speaker from them.
            validation: ``(X_val, y_val)`` chosen by the caller (an experiment's own
                speaker-drawn validation rows); replaces the internal split when given.

        Returns:
            self, with ``classes_``, ``network_``, ``input_shape_``, ``history_``,
            ``best_epoch_`` (None without validation) and ``class_weights_``.

        Raises:
            ValueError: Bad hyper-parameters, fewer than two classes, or mismatched lengths.
        """
        self.check_params()
        x = self.prepare_input(X)
        labels = np.asarray(y).astype(str)
        if len(labels) != len(x):
            raise ValueError(f"X has {len(x)} rows but y has {len(labels)} labels")
        classes = np.unique(labels)
        if len(classes) < 2:
            raise ValueError(f"need at least two classes to train, got {classes.tolist()}")
        if validation is not None and len(validation[1]):
            x, labels, train_idx, val_idx = self._with_validation(x, labels, classes, validation)
            codes = np.searchsorted(classes, labels)
        else:
            codes = np.searchsorted(classes, labels)
            train_idx, val_idx = validation_split(codes, groups, float(self.val_fraction), int(self.seed))
        input_shape = tuple(int(n) for n in x.shape[1:])
        with _threads(self.num_threads), _determinism(self.deterministic), _quiet_lightning(not self.progress):
            seed_everything(int(self.seed), workers=False, verbose=False)
            network = self.build_network(len(classes), input_shape)
            self.initialize_network(network)
            for module in network.modules():
                if isinstance(module, Standardize):
                    module.fit(x, train_idx)
            weights = class_weights(codes[train_idx], len(classes), self.class_weight)
            meta = {"classes": classes.tolist(), "input_shape": list(input_shape), "train_rows": len(train_idx)}
            lit_class = _LitValidated if len(val_idx) else _LitClassifier
            lit = lit_class(
                network, lr=float(self.lr), weights=weights, monitor=self.monitor, meta=meta, lr_schedule=self.lr_schedule
            )
            self._train(lit, x, codes, train_idx, val_idx, len(classes))
        if lit.best_state is not None:
            network.load_state_dict(lit.best_state)
        self.classes_ = classes
        self.network_ = network.cpu().eval()
        self.input_shape_ = input_shape
        self.history_ = [dict(entry) for entry in lit.history]
        self.best_epoch_ = lit.best_epoch
        self.class_weights_ = weights
        return self

    def _with_validation(self, x, labels: np.ndarray, classes: np.ndarray, validation: tuple[Any, Any]):
        """Append the caller's validation rows; their labels must be training classes."""
        x_val = self.prepare_input(validation[0])
        y_val = np.asarray(validation[1]).astype(str)
        if len(x_val) != len(y_val):
            raise ValueError(f"validation X has {len(x_val)} rows but {len(y_val)} labels")
        unseen = sorted(set(y_val) - set(classes))
        if unseen:
            raise ValueError(f"validation labels {unseen} do not occur in the training labels {classes.tolist()}")
        if tuple(x_val.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(f"validation rows have shape {tuple(x_val.shape[1:])}, training rows {tuple(x.shape[1:])}")
        joined = torch.cat([x, x_val]) if isinstance(x, torch.Tensor) else np.concatenate([x, x_val])
        n = len(x)
        return joined, np.concatenate([labels, y_val]), np.arange(n), np.arange(n, n + len(x_val))

    def _train(
        self,
        lit: _LitClassifier,
        x: torch.Tensor,
        codes: np.ndarray,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        n_classes: int,
    ) -> None:
        """Run the Lightning Trainer (resuming from ``checkpoint_dir`` when it holds a checkpoint)."""
        dataset = TensorDataset(x, torch.as_tensor(codes, dtype=torch.long))
        train_loader = make_train_loader(
            Subset(dataset, train_idx.tolist()),
            codes[train_idx],
            n_classes,
            batch_size=int(self.batch_size),
            balanced=bool(self.balanced_sampling),
            seed=int(self.seed),
        )
        val_loader = None
        if len(val_idx):
            val_loader = DataLoader(Subset(dataset, val_idx.tolist()), batch_size=EVAL_BATCH_SIZE)
        callbacks: list[pl.Callback] = []
        if val_loader is not None and self.patience is not None:
            mode = "min" if self.monitor == "val_loss" else "max"
            callbacks.append(EarlyStopping(monitor=self.monitor, mode=mode, patience=int(self.patience)))
        resume = None
        if self.checkpoint_dir is not None:
            folder = Path(self.checkpoint_dir)
            folder.mkdir(parents=True, exist_ok=True)
            callbacks.append(_LastCheckpoint(folder / LAST_CHECKPOINT))
            if (folder / LAST_CHECKPOINT).is_file():
                resume = str(folder / LAST_CHECKPOINT)
                logger.info("%s: resuming from %s", self.name, resume)
        with tempfile.TemporaryDirectory(prefix="serkit-train-") as workdir, _lightning_warnings():
            trainer = pl.Trainer(
                accelerator=self.accelerator,
                devices=self.devices,
                strategy=self.strategy,
                precision=resolve_precision(self.precision, self.accelerator),
                max_epochs=int(self.max_epochs),
                callbacks=callbacks,
                logger=False,
                enable_checkpointing=self.checkpoint_dir is not None,
                enable_progress_bar=bool(self.progress),
                enable_model_summary=bool(self.progress),
                num_sanity_val_steps=0,
                default_root_dir=workdir,  # nothing may land in the working directory
                benchmark=False if self.deterministic else None,
            )
            _check_launcher(trainer)
            # weights_only: our checkpoints hold tensors and plain data, read with the restricted unpickler
            trainer.fit(lit, train_loader, val_loader, ckpt_path=resume, weights_only=True)

    # ----------------------------------------------------------------- predict

    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise ValueError(f"{type(self).__name__} is not fitted; call fit() first")

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (rows x classes, ``classes_`` order), batched, in eval mode.

        Raises:
            ValueError: Not fitted, or rows of another shape than the training rows.
        """
        self._check_fitted()
        x = self.prepare_input(X)
        if tuple(x.shape[1:]) != tuple(self.input_shape_):
            raise ValueError(
                f"{type(self).__name__}: rows of shape {tuple(x.shape[1:])}, trained on {tuple(self.input_shape_)}"
            )
        device = torch.device("cuda") if _uses_cuda(self.accelerator) else torch.device("cpu")
        network = self.network_.to(device).eval()
        parts = []
        with _threads(self.num_threads), torch.inference_mode():
            for start in range(0, len(x), EVAL_BATCH_SIZE):
                logits = network(x[start : start + EVAL_BATCH_SIZE].to(device).float())
                parts.append(torch.softmax(logits.float(), dim=1).cpu())
        self.network_ = network.cpu()
        return torch.cat(parts).numpy().astype(np.float64)

    # ----------------------------------------------------------------- persistence

    def save_state(self, folder: Path) -> dict[str, Any]:
        """Write ``weights.safetensors`` (the network's state dict); return the JSON state."""
        from safetensors.torch import save_file

        self._check_fitted()
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.network_.state_dict().items()}
        save_file(tensors, str(Path(folder) / WEIGHTS_FILE))
        return {
            "classes": [str(c) for c in self.classes_],
            "input_shape": list(self.input_shape_),
            "history": self.history_,
            "best_epoch": self.best_epoch_,
            "class_weights": None if self.class_weights_ is None else [float(w) for w in self.class_weights_],
        }

    @classmethod
    def load_state(cls, params: dict[str, Any], state: dict[str, Any], folder: Path) -> "TorchClassifier":
        """Rebuild the network from `params` and the saved input shape; load its weights.

        Raises:
            KeyError: A state entry is missing.
            ValueError: The weights do not fit the network.
        """
        from safetensors.torch import load_file

        model = cls(**params)
        model.check_params()
        classes = np.asarray(state["classes"], dtype=str)
        input_shape = tuple(int(n) for n in state["input_shape"])
        network = model.build_network(len(classes), input_shape)
        try:
            network.load_state_dict(load_file(str(Path(folder) / WEIGHTS_FILE)))
        except RuntimeError as exc:  # missing / unexpected / mis-shaped tensors
            raise ValueError(f"{WEIGHTS_FILE} does not match the {cls.name} network: {exc}") from None
        model.classes_ = classes
        model.network_ = network.eval()
        model.input_shape_ = input_shape
        model.history_ = list(state.get("history") or [])
        model.best_epoch_ = state.get("best_epoch")
        weights = state.get("class_weights")
        model.class_weights_ = None if weights is None else np.asarray(weights)
        return model


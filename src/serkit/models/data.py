"""The data side of the neural classifiers: what their rows go through and what they train on.

`Standardize` (input statistics fitted on the training rows) and `SpecAugment` (training-time
masking, the identity in eval mode) are layers of the saved networks, so prediction imports
this module; the speaker-drawn validation split (`serkit.evaluation.validation.draw_validation`), class weights and the (optionally
class-balanced) training loader are called by `TorchClassifier.fit`. Torch only, no Lightning.
`serkit.models.training` re-exports every public name here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

__all__ = [
    "AUGMENT_DEFAULTS",
    "CLASS_WEIGHTS",
    "SpecAugment",
    "Standardize",
    "class_weights",
    "make_train_loader",
    "resolve_augment",
    "sample_weights",
    "validation_split",
]

logger = logging.getLogger(__name__)

#: Allowed values of ``class_weight``.
CLASS_WEIGHTS: tuple[str | None, ...] = (None, "balanced")
#: Settings of the ``augment`` hyper-parameter and their values for ``augment=True``: the
#: largest circular time shift and the widest time / frequency mask, as fractions of the axis,
#: and how many masks of each kind (SpecAugment's time and frequency masking).
AUGMENT_DEFAULTS: dict[str, float] = {"time_shift": 0.125, "time_mask": 0.125, "freq_mask": 0.125, "masks": 1}


# --------------------------------------------------------------------------- rows and weights


def validation_split(
    codes: np.ndarray, groups: Sequence[Any] | None, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation row indices, the validation rows drawn by speaker.

    The draw is `serkit.evaluation.validation.kfold_validation` (one speaker-grouped stratified fold; see its
    docstring for why it is not yet `draw_validation`, the draw of an experiment's ``val``
    rows). Without groups the split is stratified by label and a warning is logged: early
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
    from serkit.evaluation.validation import kfold_validation  # pandas only when training draws its own split

    if groups is None and val_fraction > 0:
        logger.warning(
            "no speaker groups given: the validation split is random and speaker-dependent, "
            "so early stopping and the best epoch are chosen optimistically; pass groups=speakers"
        )
    mask = kfold_validation(codes, groups, val_fraction, seed)
    rows = np.arange(len(codes))
    return rows[~mask], rows[mask]


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


# --------------------------------------------------------------------------- augmentation


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


# --------------------------------------------------------------------------- standardisation


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

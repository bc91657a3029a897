"""The estimator behind serkit's neural classifiers: `TorchClassifier`, torch only, no Lightning.

`TorchClassifier` turns a network (``build_network``) into a scikit-learn style classifier:
``fit(X, y, groups)`` draws a validation split BY SPEAKER from the training data, trains with
Adam and (optionally weighted) cross-entropy, stops early on the validation loss, restores the
weights of the best validation epoch and records per-epoch history in ``history_``;
``predict_proba`` runs batched in eval mode; ``save_state`` / ``load_state`` keep the weights
in safetensors so that loading never runs code.

This module imports torch, never Lightning: loading a saved model and predicting stay free of
the training machinery. The Lightning ``Trainer`` run lives in `serkit.models.lightning_fit`,
which ``fit`` imports when it is called; the data side (`Standardize`, `SpecAugment`, the
validation split, class weights, loaders) lives in `serkit.models.data` and is re-exported here.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from serkit.models.base import Classifier
from serkit.models.data import (
    AUGMENT_DEFAULTS,
    CLASS_WEIGHTS,
    SpecAugment,
    Standardize,
    class_weights,
    make_train_loader,
    resolve_augment,
    sample_weights,
    validation_split,
)

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

#: File that `TorchClassifier.save_state` writes.
logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.safetensors"
#: Validation metrics that choose the best epoch and drive early stopping.
MONITORS: tuple[str, ...] = ("val_loss", "val_ua")
#: Allowed values of ``lr_schedule``: None or ``"constant"`` (the paper's Adam; the name lets a
#: TOML override, which has no null, switch a recipe's schedule off), or ``"cosine"``: a linear
#: warm-up over `WARMUP_FRACTION` of the training steps, then a cosine decay to zero at ``max_epochs``.
LR_SCHEDULES: tuple[str | None, ...] = (None, "constant", "cosine")
WARMUP_FRACTION = 0.05
#: Batch size of validation and prediction (eval mode, no batch-norm batch statistics).
EVAL_BATCH_SIZE = 32


# --------------------------------------------------------------------------- settings


def _uses_cuda(accelerator: str) -> bool:
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def resolve_precision(precision: str, accelerator: str) -> str:
    """``"auto"`` -> Lightning's ``"bf16-mixed"`` where bfloat16 pays, else ``"32-true"``.

    On a CUDA GPU: bf16-mixed where it supports bfloat16. On the CPU: by measurement
    (`serkit.precision.torch_cpu_autocast`): bfloat16 autocast only where the processor has
    AVX-512 BF16 or AMX instructions and a timed conv + matmul probe runs faster (on AVX2-only
    processors bfloat16 is emulated and many times slower). The choice is logged. Any other
    value is passed to Lightning as it is.
    """
    if precision != "auto":
        return precision
    if _uses_cuda(accelerator):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    from serkit.precision import torch_cpu_autocast

    choice = torch_cpu_autocast()
    logger.info("training precision auto on the CPU: %s", choice.describe())
    return "bf16-mixed" if choice.precision == "bfloat16" else "32-true"


def _warmup_cosine(total_steps: int, warmup_fraction: float) -> Any:
    """Learning-rate factor of step s: linear warm-up to 1, then a cosine decay to 0 at the last step."""
    warmup = max(1, round(warmup_fraction * total_steps))
    decay = max(1, total_steps - warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / decay)))

    return factor



# --------------------------------------------------------------------------- runtime context


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
        from serkit.models import lightning_fit  # Lightning only when training: prediction never imports it

        quiet = lightning_fit.quiet_lightning(not self.progress)
        with _threads(self.num_threads), _determinism(self.deterministic), quiet:
            lightning_fit.seed_everything(int(self.seed), workers=False, verbose=False)
            network = self.build_network(len(classes), input_shape)
            self.initialize_network(network)
            for module in network.modules():
                if isinstance(module, Standardize):
                    module.fit(x, train_idx)
            weights = class_weights(codes[train_idx], len(classes), self.class_weight)
            meta = {"classes": classes.tolist(), "input_shape": list(input_shape), "train_rows": len(train_idx)}
            train_loader, val_loader = self._loaders(x, codes, train_idx, val_idx, len(classes))
            lit = lightning_fit.fit_network(
                self, network, weights=weights, meta=meta, train_loader=train_loader, val_loader=val_loader
            )
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

    def _loaders(
        self, x: torch.Tensor, codes: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, n_classes: int
    ) -> tuple[DataLoader, DataLoader | None]:
        """The training loader (`make_train_loader`) and the validation loader (None without validation rows)."""
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
        return train_loader, val_loader

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


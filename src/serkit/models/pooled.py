"""A small head on pooled self-supervised features (beyond the paper; SUPERB / EmoBox style).

Two poolings:

* ``"layer_sum"`` (input_kind ``"pooled"``): rows of per-layer utterance statistics
  (N, L, F), e.g. the SSL extractor's ``pooled`` output (layers + 1, D * stats), or (N, F)
  treated as L = 1 (e.g. MFCC ``stats``). A softmax-weighted sum over the layers (learnable
  weights, ``layer_weights_`` after fit) feeds an MLP.
* ``"attention"`` (input_kind ``"frames"``): frame maps (N, T, D) of one layer, or
  (N, L, T, D) of several (weighted over layers first, as above). Attention pooling over
  time (a one-hidden-layer scorer, softmax over frames) gives one vector per clip for the MLP.

Inputs are standardised per layer and feature dimension with statistics of the training rows.
``augment`` (attention only) masks and shifts the frames during training (`SpecAugment`; the
feature dimensions play the part of frequency). MLP: dense(hidden) -> ReLU -> dropout -> dense(classes).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from serkit.models.base import OnnxGraph
from serkit.models.training import Standardize, TorchClassifier

__all__ = ["POOLINGS", "READABLE", "PooledClassifier", "PooledNetwork"]

#: Pooling -> the cached feature output it reads unless ``input_kind`` names another.
POOLINGS: dict[str, str] = {"layer_sum": "pooled", "attention": "frames"}
#: Pooling -> the feature outputs whose rows fit it: per-layer (or single) utterance vectors
#: for layer_sum (SSL ``pooled``, spectral ``stats``, openSMILE ``functionals``), frame maps
#: for attention.
READABLE: dict[str, tuple[str, ...]] = {"layer_sum": ("pooled", "stats", "functionals"), "attention": ("frames",)}


class PooledNetwork(nn.Module):
    """Layer weighting, optional attention pooling over time, MLP.

    Args:
        input_shape: (L, F) for ``layer_sum``, (L, T, D) for ``attention``.
        n_classes: Outputs.
        pooling: ``"layer_sum"`` or ``"attention"``.
        hidden: MLP width.
        dropout: MLP dropout.
        attention_hidden: Width of the attention scorer.
        augment: Training-time augmentation after `Standardize` (`SpecAugment`); None: none.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_classes: int,
        *,
        pooling: str,
        hidden: int,
        dropout: float,
        attention_hidden: int,
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.pooling = pooling
        layers, dims = int(input_shape[0]), int(input_shape[-1])
        # Per layer and dim; for frames the statistics are pooled over time (axis 1).
        self.standardize = Standardize(input_shape, reduce_axes=(1,) if pooling == "attention" else ())
        self.augment = augment if augment is not None else nn.Identity()  # training only
        self.layer_logits = nn.Parameter(torch.zeros(layers))  # uniform weights at start
        self.attention: nn.Module | None = None
        if pooling == "attention":
            self.attention = nn.Sequential(nn.Linear(dims, attention_hidden), nn.Tanh(), nn.Linear(attention_hidden, 1))
        self.mlp = nn.Sequential(
            nn.Linear(dims, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
        )

    def layer_weights(self) -> torch.Tensor:
        """Softmax of the layer logits: the weight of each layer in the sum."""
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.augment(self.standardize(x))
        weights = self.layer_weights().view(-1, *([1] * (x.ndim - 2)))
        x = (x * weights).sum(dim=1)  # (N, F) or (N, T, D)
        if self.attention is not None:
            scores = torch.softmax(self.attention(x).squeeze(-1), dim=1)  # (N, T)
            x = torch.einsum("nt,ntd->nd", scores, x)
        return self.mlp(x)


class PooledClassifier(TorchClassifier):
    """MLP on layer-weighted pooled SSL features, or attention pooling over frames.

    Args:
        pooling: ``"layer_sum"`` (rows (N, L, F) or (N, F)) or ``"attention"`` (rows
            (N, T, D) or (N, L, T, D)).
        hidden: MLP width.
        dropout: MLP dropout.
        attention_hidden: Width of the attention scorer (``attention`` only).
        input_kind: The feature output to read; None: the pooling's own (``pooled`` for
            layer_sum, ``frames`` for attention). layer_sum also reads ``stats`` (MFCC / log-mel
            statistics) and ``functionals`` (openSMILE), as one layer.
        **training: Training hyper-parameters of `TorchClassifier` (lr, batch_size, ...).
    """

    name: ClassVar[str] = "pooled"

    def __init__(
        self,
        pooling: str = "layer_sum",
        hidden: int = 256,
        dropout: float = 0.2,
        attention_hidden: int = 128,
        input_kind: str | None = None,
        **training: Any,
    ) -> None:
        super().__init__(**training)
        self.pooling = pooling
        self.hidden = hidden
        self.dropout = dropout
        self.attention_hidden = attention_hidden
        self.input_kind = input_kind

    @property
    def input_kind(self) -> str:  # type: ignore[override]
        """The feature output read: the ``input_kind`` given, else the pooling's own."""
        return self._input_kind or POOLINGS.get(self.pooling, "pooled")

    @input_kind.setter
    def input_kind(self, value: str | None) -> None:
        self._input_kind = value

    @property
    def layer_weights_(self) -> np.ndarray:
        """Learned weight of each layer (sums to 1), after fit or load."""
        self._check_fitted()
        with torch.no_grad():
            return self.network_.layer_weights().cpu().numpy()

    def check_params(self) -> None:
        """Validate pooling, widths and dropout (and the training hyper-parameters)."""
        super().check_params()
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {self.pooling!r}")
        for name in ("hidden", "attention_hidden"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.input_kind not in READABLE[self.pooling]:
            raise ValueError(
                f"pooled ({self.pooling}) reads one of {list(READABLE[self.pooling])}, not input_kind {self.input_kind!r}"
            )
        if self.pooling == "layer_sum" and self.augment not in (None, False):
            raise ValueError("augment needs frame maps: pooled layer_sum reads utterance statistics (use attention)")

    def prepare_input(self, X: Any) -> torch.Tensor:
        """Add the layer axis when there is one layer: (N, F) -> (N, 1, F), (N, T, D) -> (N, 1, T, D).

        Raises:
            ValueError: A shape that does not fit the pooling.
        """
        self.check_params()
        x = super().prepare_input(X)
        expected = 3 if self.pooling == "layer_sum" else 4
        if x.ndim == expected - 1:
            x = x.unsqueeze(1)
        if x.ndim != expected:
            shapes = "(N, F) or (N, L, F)" if self.pooling == "layer_sum" else "(N, T, D) or (N, L, T, D)"
            raise ValueError(f"pooled ({self.pooling}): expected X of shape {shapes}, got {tuple(x.shape)}")
        return x

    def build_network(self, n_classes: int, input_shape: tuple[int, ...]) -> PooledNetwork:
        """The head for rows of `input_shape` ((L, F) or (L, T, D))."""
        self.check_params()
        return PooledNetwork(
            tuple(input_shape),
            n_classes,
            pooling=self.pooling,
            hidden=int(self.hidden),
            dropout=float(self.dropout),
            attention_hidden=int(self.attention_hidden),
            augment=self.augmenter(time_axis=-2, freq_axis=-1) if self.pooling == "attention" else None,
        )

    def to_onnx(self, opset: int) -> OnnxGraph:
        """The fitted head (layer weights, attention pooling, MLP) and a softmax as an ONNX graph."""
        from serkit.models.torch_onnx import network_graph

        self._check_fitted()
        return network_graph(self.network_, self.input_shape_, opset)

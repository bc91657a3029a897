"""The paper's 2-D CNN on frame maps (wav2vec 2.0 features, log-mel or MFCC).

Network (arXiv 2309.12714 describes 7 convolutional blocks with batch norm, max pooling and
dropout on a 300 x 300 map; the 3- and 5-block variants are its ablation):

    Standardize (per channel and feature dim, over time; fitted on the training rows)
    -> SpecAugment (training only, when ``augment`` is set; time is the map's first axis)
    -> input adapter (``input_mode``: the map as the CNN sees it, see `adapt_map`)
    -> depth x [3x3 conv (no bias) -> batch norm -> ReLU -> 2x2 max pool -> dropout]
    -> global average pooling -> dense(hidden) -> ReLU -> dropout -> dense(classes)

Channel widths: ``DEFAULT_CHANNELS`` = 16, 32, 64, 64, 128, 128, 256 (the first `depth` of them).
The paper gives no widths; these double roughly every two blocks, as in VGG-style nets, while
the 300 x 300 map halves every block (300 -> 150 -> 75 -> 37 -> 18 -> 9 -> 4 -> 2), and keep
the 7-block net small (~0.6 M parameters) for corpora of a few thousand clips.

Pooling on small maps: a spatial dim smaller than 2 is no longer pooled (kernel 1 on that
axis), so MFCC maps such as 50 x 13 run through all 7 blocks.

Input: X of shape (N, T, D) (one channel) or (N, C, T, D) (C channels, e.g. several SSL
layers); float16 features are kept as float16 in memory and cast to float32 per batch.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from serkit.models.base import OnnxGraph
from serkit.models.training import Standardize, TorchClassifier

__all__ = ["DEFAULT_CHANNELS", "INPUT_MODES", "CNNClassifier", "adapt_map", "adapted_shape", "pool_kernels"]

#: Output channels of the 7 blocks; a network of depth d uses the first d.
DEFAULT_CHANNELS: tuple[int, ...] = (16, 32, 64, 64, 128, 128, 256)
#: How the (T, D) map becomes the CNN's input (see `adapt_map`).
INPUT_MODES: tuple[str, ...] = ("resize", "crop_pool", "none")
MAX_DEPTH = len(DEFAULT_CHANNELS)


def adapted_shape(input_shape: Sequence[int], input_mode: str, input_size: int) -> tuple[int, int, int]:
    """The (C, H, W) the convolutions see for rows of `input_shape` (C, T, D).

    ``resize`` and ``crop_pool`` give (C, input_size, input_size); ``none`` gives (C, T, D).

    Raises:
        ValueError: Unknown mode, or a shape that is not (C, T, D).
    """
    if input_mode not in INPUT_MODES:
        raise ValueError(f"input_mode must be one of {list(INPUT_MODES)}, got {input_mode!r}")
    if len(input_shape) != 3:
        raise ValueError(f"expected rows of shape (channels, time, dims), got {tuple(input_shape)}")
    channels, frames, dims = (int(n) for n in input_shape)
    if input_mode == "none":
        return channels, frames, dims
    return channels, int(input_size), int(input_size)


def adapt_map(x: torch.Tensor, input_mode: str, input_size: int) -> torch.Tensor:
    """Bring a batch of maps (B, C, T, D) to the CNN's input size.

    * ``"resize"``: bilinear resize (antialiased when shrinking) to input_size x input_size.
    * ``"crop_pool"``: the first input_size frames (zero-padded at the end if fewer; zero is
      the training mean after standardisation), the D dims average-pooled to input_size
      with adaptive pooling (bins of ~3.4 dims for 1024 -> 300; fewer dims are repeated).
    * ``"none"``: the map unchanged.

    Raises:
        ValueError: Unknown mode.
    """
    if input_mode == "none":
        return x
    if input_mode == "resize":
        return F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False, antialias=True)
    if input_mode == "crop_pool":
        x = x[:, :, :input_size]
        if x.shape[2] < input_size:
            x = F.pad(x, (0, 0, 0, input_size - x.shape[2]))
        # Time is already input_size long, so the adaptive pool only pools the feature dims.
        return F.adaptive_avg_pool2d(x, (input_size, input_size))
    raise ValueError(f"input_mode must be one of {list(INPUT_MODES)}, got {input_mode!r}")


def pool_kernels(height: int, width: int, depth: int) -> list[tuple[int, int]]:
    """Max-pool kernel of each block: 2 on an axis while it is >= 2 long, else 1 (no pooling)."""
    kernels = []
    for _ in range(depth):
        kernel = (2 if height >= 2 else 1, 2 if width >= 2 else 1)
        kernels.append(kernel)
        height, width = height // kernel[0], width // kernel[1]
    return kernels


class _MapAdapter(nn.Module):
    def __init__(self, input_mode: str, input_size: int) -> None:
        super().__init__()
        self.input_mode = input_mode
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adapt_map(x, self.input_mode, self.input_size)

    @torch.no_grad()
    def as_matrices(self, shape: Sequence[int]) -> "SeparableMap":
        """This adapter on maps of `shape` (C, H, W), written as two matrix products.

        Antialiased bilinear resizing has no ONNX operator; resizing and crop-and-pool of a
        map of fixed size are linear and act on each axis separately, so a unit impulse along
        one axis (the other of length 1) gives one column of that axis's matrix. The result
        is checked against the adapter on a random map.

        Raises:
            ValueError: The adapter is not such a separable linear map.
        """
        _, height, width = (int(n) for n in shape)
        module = SeparableMap(_impulse_responses(self, height, axis=2), _impulse_responses(self, width, axis=3))
        probe = torch.randn(2, *(int(n) for n in shape), generator=torch.Generator().manual_seed(0))
        expected, got = self(probe), module(probe)
        scale = float(expected.abs().max()) or 1.0
        if expected.shape != got.shape or float((expected - got).abs().max()) > 1e-5 * scale:
            raise ValueError(f"input_mode {self.input_mode!r} is not a separable linear map; cannot express it in ONNX")
        return module


class SeparableMap(nn.Module):
    """``left @ x @ right.T`` on the last two axes: an input adapter as ONNX can run it."""

    def __init__(self, left: torch.Tensor, right: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("left", left)
        self.register_buffer("right_t", right.T.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.left, x), self.right_t)


def _impulse_responses(adapter: nn.Module, size: int, axis: int, chunk: int = 64) -> torch.Tensor:
    """The matrix of `adapter` along `axis` (2: height, 3: width), from unit impulses, in chunks.

    Each impulse is a map with `size` cells on `axis` and one cell on the other axis; its
    first output row (or column) is one column of the matrix. Chunks bound the memory of
    maps such as 1024 feature dims resized to 300 x 300.
    """
    columns = []
    for start in range(0, size, chunk):
        count = min(chunk, size - start)
        impulses = torch.zeros(count, size)
        impulses[torch.arange(count), start + torch.arange(count)] = 1.0
        if axis == 2:
            columns.append(adapter(impulses.reshape(count, 1, size, 1))[:, 0, :, 0])
        else:
            columns.append(adapter(impulses.reshape(count, 1, 1, size))[:, 0, 0, :])
    return torch.cat(columns).T.contiguous()


def _block(c_in: int, c_out: int, kernel: tuple[int, int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),  # batch norm supplies the bias
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if kernel != (1, 1):
        layers.append(nn.MaxPool2d(kernel))
    layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class CNNNetwork(nn.Module):
    """The paper's CNN (see the module docstring).

    Attributes:
        kernels: Max-pool kernel of each block (``(1, 1)``: that block does not pool).
        conv_input_shape: (C, H, W) after the input adapter.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        *,
        channels: Sequence[int],
        input_mode: str,
        input_size: int,
        dropout: float,
        hidden: int,
        dense_dropout: float,
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv_input_shape = adapted_shape(input_shape, input_mode, input_size)
        c_in, height, width = self.conv_input_shape
        self.standardize = Standardize(input_shape, reduce_axes=(1,))
        self.augment = augment if augment is not None else nn.Identity()  # training only
        self.adapt = _MapAdapter(input_mode, input_size)
        self.kernels = pool_kernels(height, width, len(channels))
        blocks = []
        for c_out, kernel in zip(channels, self.kernels):
            blocks.append(_block(c_in, int(c_out), kernel, dropout))
            c_in = int(c_out)
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(c_in, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dense_dropout),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.adapt(self.augment(self.standardize(x)))))

    def exportable(self, input_shape: Sequence[int]) -> "CNNNetwork":
        """A CPU copy in eval mode whose input adapter ONNX can express (see `_MapAdapter.as_matrices`).

        Args:
            input_shape: The rows' shape (C, T, D), which the adapter sees unchanged.
        """
        network = copy.deepcopy(self).cpu().eval()
        if network.adapt.input_mode != "none":
            network.adapt = network.adapt.as_matrices(input_shape)
        return network


class CNNClassifier(TorchClassifier):
    """The paper's 2-D CNN classifier on frame maps.

    Args:
        depth: Convolutional blocks, 1..7 (paper: 7; ablation: 3 and 5).
        input_mode: ``"resize"`` (default), ``"crop_pool"`` or ``"none"`` (see `adapt_map`);
            the paper turned 349 x 1024 into 300 x 300 without saying how.
        input_size: Side of the square map for ``resize`` and ``crop_pool`` (paper: 300).
        channels: Output channels of the blocks, one per block; None: the first `depth` of
            ``DEFAULT_CHANNELS``.
        dropout: Dropout after every convolutional block.
        hidden: Width of the dense layer before the output.
        dense_dropout: Dropout before the output layer.
        **training: Training hyper-parameters of `TorchClassifier` (lr, batch_size, ...).
    """

    name: ClassVar[str] = "cnn"
    input_kind: ClassVar[str] = "frames"

    def __init__(
        self,
        depth: int = 7,
        input_mode: str = "resize",
        input_size: int = 300,
        channels: Sequence[int] | None = None,
        dropout: float = 0.1,
        hidden: int = 128,
        dense_dropout: float = 0.3,
        **training: Any,
    ) -> None:
        super().__init__(**training)
        self.depth = depth
        self.input_mode = input_mode
        self.input_size = input_size
        self.channels = channels
        self.dropout = dropout
        self.hidden = hidden
        self.dense_dropout = dense_dropout

    def check_params(self) -> None:
        """Validate depth, input mode and size, channels and dropouts (and the training ones)."""
        super().check_params()
        if not isinstance(self.depth, (int, np.integer)) or not 1 <= self.depth <= MAX_DEPTH:
            raise ValueError(f"depth must be an integer in 1..{MAX_DEPTH}, got {self.depth!r}")
        if self.input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {list(INPUT_MODES)}, got {self.input_mode!r}")
        if not isinstance(self.input_size, (int, np.integer)) or self.input_size < 1:
            raise ValueError(f"input_size must be a positive integer, got {self.input_size!r}")
        if self.channels is not None:
            widths = list(self.channels)
            if len(widths) != self.depth or any(int(c) != c or c < 1 for c in widths):
                raise ValueError(f"channels must be {self.depth} positive integers (one per block), got {self.channels!r}")
        for name in ("dropout", "dense_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not isinstance(self.hidden, (int, np.integer)) or self.hidden < 1:
            raise ValueError(f"hidden must be a positive integer, got {self.hidden!r}")

    def block_channels(self) -> list[int]:
        """The output channels of each block."""
        if self.channels is not None:
            return [int(c) for c in self.channels]
        return list(DEFAULT_CHANNELS[: self.depth])

    def prepare_input(self, X: Any) -> torch.Tensor:
        """(N, T, D) -> (N, 1, T, D); (N, C, T, D) as it is.

        Raises:
            ValueError: Neither 3 nor 4 dimensions.
        """
        x = super().prepare_input(X)
        if x.ndim == 3:
            return x.unsqueeze(1)
        if x.ndim != 4:
            raise ValueError(f"cnn: expected X of shape (N, T, D) or (N, C, T, D), got {tuple(x.shape)}")
        return x

    def build_network(self, n_classes: int, input_shape: tuple[int, ...]) -> CNNNetwork:
        """The CNN for rows of `input_shape` (C, T, D)."""
        self.check_params()
        return CNNNetwork(
            input_shape,
            n_classes,
            channels=self.block_channels(),
            input_mode=self.input_mode,
            input_size=int(self.input_size),
            dropout=float(self.dropout),
            hidden=int(self.hidden),
            dense_dropout=float(self.dense_dropout),
            augment=self.augmenter(time_axis=-2, freq_axis=-1),  # rows (C, T, D)
        )

    def to_onnx(self, opset: int) -> OnnxGraph:
        """The fitted CNN and a softmax as an ONNX graph; the input adapter becomes matrix products."""
        from serkit.models.torch_onnx import network_graph

        self._check_fitted()
        return network_graph(self.network_.exportable(self.input_shape_), self.input_shape_, opset)

"""EfficientNet-B0 on spectrogram images: the paper's transfer-learning baseline.

The network is timm's ``efficientnet_b0`` with ONE input channel (``in_chans=1``) on the
(H, W) log-mel images of serkit's spectral extractors. One channel rather than a grey image
repeated three times: with the ImageNet stem summed over its RGB filters, a 1-channel
convolution of x equals the 3-channel convolution of (x, x, x) exactly, at a third of the stem's
cost. Inputs are standardised with one mean and deviation fitted on the training images
(ImageNet normalisation also maps its inputs to about zero mean and unit variance).

``pretrained``: a LOCAL ImageNet state dict of timm's efficientnet_b0 (``.safetensors``, or
``.pth`` / ``.pt`` read with ``torch.load(weights_only=True)``); nothing is downloaded. The
3-channel stem is summed to 1 channel and the 1000-class head is dropped (a new head is
trained). Without it the network trains from scratch: the paper's pretrained-vs-scratch ablation.
``freeze_backbone``: train the head only; frozen batch-norm layers keep their statistics.
``augment``: time shifts and SpecAugment masks of the images during training (see
`serkit.models.training.SpecAugment`); from scratch on a few hundred images it is what lets
the network generalise to unseen speakers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from serkit.models.base import OnnxGraph
from serkit.models.training import Standardize, TorchClassifier

__all__ = ["ARCHITECTURE", "EfficientNetClassifier", "load_pretrained", "read_state_dict"]

logger = logging.getLogger(__name__)

#: timm architecture name.
ARCHITECTURE = "efficientnet_b0"
#: Prefix of the classification head in timm's EfficientNet state dict.
_HEAD = "classifier."
_STEM = "conv_stem.weight"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a state-dict file without running code from it.

    ``.safetensors`` files are read with safetensors; other files with
    ``torch.load(weights_only=True)``. A checkpoint that wraps the weights in a
    ``"state_dict"`` or ``"model"`` entry is unwrapped.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file does not hold a dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return dict(state)


def load_pretrained(backbone: nn.Module, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
    """Load ImageNet weights into a 1-channel timm EfficientNet, keeping its new head.

    Args:
        backbone: timm efficientnet with ``in_chans=1`` and the task's classes.
        state: Its ImageNet state dict (3-channel stem, 1000-class head).
        source: Name of the weights for messages.

    Raises:
        ValueError: Weights of another architecture (missing, unexpected or mis-shaped tensors).
    """
    state = {k: v for k, v in state.items() if not k.startswith(_HEAD)}
    stem = state.get(_STEM)
    if stem is not None and stem.ndim == 4 and stem.shape[1] == 3:
        state[_STEM] = stem.sum(dim=1, keepdim=True)  # RGB filters summed: exact for grey images
    try:
        missing, unexpected = backbone.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ValueError(f"{source} does not fit {ARCHITECTURE}: {exc}") from None
    missing = [k for k in missing if not k.startswith(_HEAD)]
    if missing or unexpected:
        raise ValueError(
            f"{source} does not fit {ARCHITECTURE}: missing {missing[:5]} ({len(missing)}), "
            f"unexpected {unexpected[:5]} ({len(unexpected)})"
        )


class EfficientNetNetwork(nn.Module):
    """Standardize -> add the channel axis -> timm efficientnet_b0 (1 input channel).

    Args:
        input_shape: (H, W) of the images.
        n_classes: Outputs of the new head.
        drop_rate: Dropout before the head.
        freeze_backbone: Train the head only.
        augment: Training-time augmentation after `Standardize` (`SpecAugment`); None: none.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_classes: int,
        *,
        drop_rate: float,
        freeze_backbone: bool,
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        import timm

        self.standardize = Standardize(input_shape, reduce_axes=tuple(range(len(input_shape))))
        self.augment = augment if augment is not None else nn.Identity()  # training only
        self.backbone = timm.create_model(
            ARCHITECTURE, pretrained=False, in_chans=1, num_classes=n_classes, drop_rate=drop_rate
        )
        # timm draws the head from U(+-1 / sqrt(n_classes)), a range meant for 1000 classes: with
        # 4 classes that is +-0.5, logits of std ~5 at the start (loss 3.9 instead of ln 4) and a
        # from-scratch run that never settles. A small normal head starts at chance instead.
        nn.init.normal_(self.backbone.classifier.weight, std=0.01)
        nn.init.zeros_(self.backbone.classifier.bias)
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            for key, param in self.backbone.named_parameters():
                param.requires_grad = key.startswith(_HEAD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.augment(self.standardize(x)).unsqueeze(1))

    def on_train_start(self) -> None:
        """Keep frozen batch-norm layers in eval mode (their statistics stay the pretrained ones)."""
        if self.freeze_backbone:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()


class EfficientNetClassifier(TorchClassifier):
    """EfficientNet-B0 transfer learning on (N, H, W) spectrogram images.

    Args:
        pretrained: Path of a local ImageNet efficientnet_b0 state dict, or None (scratch).
        freeze_backbone: Train only the classification head.
        drop_rate: Dropout before the head (timm's default for B0 is 0.2).
        **training: Training hyper-parameters of `TorchClassifier` (lr, batch_size, ...).
    """

    name: ClassVar[str] = "efficientnet"
    input_kind: ClassVar[str] = "image"

    def __init__(
        self,
        pretrained: str | None = None,
        freeze_backbone: bool = False,
        drop_rate: float = 0.2,
        **training: Any,
    ) -> None:
        super().__init__(**training)
        self.pretrained = pretrained
        self.freeze_backbone = freeze_backbone
        self.drop_rate = drop_rate

    def check_params(self) -> None:
        """Validate drop_rate (and the training hyper-parameters)."""
        super().check_params()
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {self.drop_rate!r}")
        if self.pretrained is not None and not isinstance(self.pretrained, (str, Path)):
            raise ValueError(f"pretrained must be a file path or None, got {self.pretrained!r}")

    def prepare_input(self, X: Any) -> torch.Tensor:
        """(N, H, W) images; (N, 1, H, W) is squeezed to (N, H, W).

        Raises:
            ValueError: Any other shape.
        """
        x = super().prepare_input(X)
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3:
            raise ValueError(f"efficientnet: expected images of shape (N, H, W), got {tuple(x.shape)}")
        return x

    def build_network(self, n_classes: int, input_shape: tuple[int, ...]) -> EfficientNetNetwork:
        """A 1-channel efficientnet_b0 with a new `n_classes` head (weights not loaded here)."""
        self.check_params()
        return EfficientNetNetwork(
            tuple(input_shape),
            n_classes,
            drop_rate=float(self.drop_rate),
            freeze_backbone=bool(self.freeze_backbone),
            augment=self.augmenter(time_axis=-1, freq_axis=-2),  # images: rows = frequency, columns = time
        )

    def initialize_network(self, network: nn.Module) -> None:
        """Load the `pretrained` ImageNet weights, when given, before training."""
        if self.pretrained is None:
            if self.freeze_backbone:
                logger.warning("efficientnet: freeze_backbone without pretrained weights trains a head on random features")
            return
        load_pretrained(network.backbone, read_state_dict(self.pretrained), source=str(self.pretrained))
        logger.info("efficientnet: loaded ImageNet weights from %s (stem summed to 1 channel, new head)", self.pretrained)

    def to_onnx(self, opset: int) -> OnnxGraph:
        """The fitted EfficientNet and a softmax as an ONNX graph."""
        from serkit.models.torch_onnx import network_graph

        self._check_fitted()
        return network_graph(self.network_, self.input_shape_, opset)

"""What the torch classifiers' ONNX exports share: the network and a softmax, traced.

Each torch model module's ``to_onnx`` hands its fitted network (rewritten, where ONNX lacks
an operator, by the model itself: see `serkit.models.cnn`) to `network_graph`. Tracing uses
the TorchScript-based ``torch.onnx.export`` (``dynamo=False``: the newer exporter needs the
extra package onnxscript). Imported only when a model is exported.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from serkit.models.base import ONNX_INPUT, ONNX_OUTPUT, OnnxGraph

__all__ = ["network_graph"]


class _Probabilities(nn.Module):
    """`network` followed by a softmax over classes, as ``predict_proba`` computes it."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.inner = network

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.inner(features.float()), dim=1)


def network_graph(network: nn.Module, input_shape: Sequence[int], opset: int) -> OnnxGraph:
    """Trace a copy of `network` (on the CPU, in eval mode) plus a softmax into an ONNX graph.

    Args:
        network: The fitted network, taking float32 rows of `input_shape`.
        input_shape: One row's shape, without the batch axis (``input_shape_``).
        opset: The ONNX opset.

    Returns:
        The graph with a dynamic batch axis and float32 input.
    """
    shape = tuple(int(n) for n in input_shape)
    wrapper = _Probabilities(copy.deepcopy(network).cpu()).eval()  # the fitted model is left as it is
    example = torch.from_numpy(np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32))
    # torch.onnx.export documents file paths only, so the graph goes through a scratch file.
    with tempfile.TemporaryDirectory(prefix="serkit-onnx-") as scratch, warnings.catch_warnings(), torch.no_grad():
        path = Path(scratch) / "classifier.onnx"
        # The TorchScript exporter announces its deprecation and tracing warns about
        # shape-derived Python values; both are expected here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            dynamo=False,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
            opset_version=opset,
        )
        return OnnxGraph(path.read_bytes(), shape, "float32")

"""The export hook of the classifier contract: each model writes its own ONNX graph.

End-to-end exports (files, export.json, onnxruntime vs torch / scikit-learn on real features)
are tested in test_inference.py; here the hook itself, on untrained networks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serkit.models.base import ONNX_INPUT, ONNX_OUTPUT, Classifier, OnnxGraph

pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")


class _NoExport(Classifier):
    """A classifier that implements the contract but not ``to_onnx``."""

    name = "no_export"

    def fit(self, X: Any, y: Any, groups: Any = None) -> "_NoExport":
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.full((len(X), 2), 0.5)

    def save_state(self, folder: Path) -> dict[str, Any]:
        return {}

    @classmethod
    def load_state(cls, params: dict[str, Any], state: dict[str, Any], folder: Path) -> "_NoExport":
        return cls()


def _run(graph: OnnxGraph, rows: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(graph.model, providers=["CPUExecutionProvider"])
    (probabilities,) = session.run([ONNX_OUTPUT], {ONNX_INPUT: rows})
    return probabilities


def _untrained(model: Any, input_shape: tuple[int, ...], classes: list[str]) -> Any:
    import torch

    torch.manual_seed(0)
    model.network_ = model.build_network(len(classes), input_shape).eval()
    model.input_shape_ = input_shape
    model.classes_ = np.array(classes)
    model.history_, model.best_epoch_, model.class_weights_ = [], None, None
    return model


def test_a_model_without_an_export_says_so(tmp_path: Path) -> None:
    from serkit.inference.export import _export_classifier

    with pytest.raises(NotImplementedError, match=r"_NoExport \(model 'no_export'\) has no ONNX export"):
        _NoExport().to_onnx(17)
    with pytest.raises(ValueError, match="ONNX export does not support _NoExport models"):
        _export_classifier(_NoExport(), tmp_path / "classifier.onnx", 17)
    assert not (tmp_path / "classifier.onnx").exists()


@pytest.mark.parametrize("pooling", ["layer_sum", "attention"])
def test_pooled_exports_its_network(pooling: str) -> None:
    from serkit.models.pooled import PooledClassifier

    shape = (3, 24) if pooling == "layer_sum" else (2, 10, 8)
    model = _untrained(PooledClassifier(pooling=pooling, hidden=8, attention_hidden=4), shape, ["a", "b"])
    graph = model.to_onnx(17)
    assert graph.input_shape == shape and graph.input_dtype == "float32"
    rows = np.random.default_rng(1).normal(size=(4, *shape)).astype(np.float32)
    np.testing.assert_allclose(_run(graph, rows), model.predict_proba(rows), atol=1e-5)


def test_cnn_export_leaves_the_fitted_network_as_it_is() -> None:
    from serkit.models.cnn import CNNClassifier

    model = _untrained(CNNClassifier(depth=2, input_size=12, channels=[4, 8], hidden=8), (1, 30, 10), ["a", "b", "c"])
    adapter = model.network_.adapt
    model.network_.train()
    graph = model.to_onnx(17)
    assert model.network_.adapt is adapter and model.network_.training  # a copy was rewritten, not the model
    model.network_.eval()
    rows = np.random.default_rng(2).normal(size=(3, 1, 30, 10)).astype(np.float32)
    np.testing.assert_allclose(_run(graph, rows), model.predict_proba(rows), atol=1e-5)


def test_an_unfitted_model_cannot_export() -> None:
    from sklearn.exceptions import NotFittedError

    from serkit.models.svm import SVMClassifier

    with pytest.raises(NotFittedError):
        SVMClassifier().to_onnx(17)

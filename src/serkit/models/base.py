"""The classifier contract: scikit-learn's estimator API plus a safe persistence hook.

The API (``get_params`` / ``set_params`` / `sklearn.base.clone` / tags) comes from
`serkit.models.params.EstimatorParams`, which imports scikit-learn only when a scikit-learn
method needs it: a CNN loads and predicts without scikit-learn (issue #14).

Subclasses:
- store hyper-parameters only in ``__init__`` (scikit-learn rule: ``get_params`` must see
  them all, unchanged, and they must be JSON-able: they go into ``model.json``);
- set ``name`` (the registry key) and ``input_kind`` (which cached feature output they
  read: ``frames``, ``image``, ``pooled``, ``stats`` or ``functionals``);
- implement ``fit(X, y, groups=None)`` (``groups`` are speakers, used to draw validation
  or inner cross-validation folds by speaker from the training part only), setting
  ``classes_`` (sorted label strings) and returning self, and ``predict_proba(X)`` with
  columns in ``classes_`` order;
- implement ``save_state(folder) -> dict`` (write weights into `folder` in a format that
  loads without executing code, return JSON-able fitted state) and the classmethod
  ``load_state(params, state, folder)``;
- optionally implement ``to_onnx(opset) -> OnnxGraph``: the fitted model as an ONNX graph
  from ``features`` (one row per input, as ``predict_proba`` takes them after the model's own
  reshaping) to ``probabilities``. Each model module writes its own graph; `serkit.inference.export`
  only writes, checks and records it. Without it, export raises NotImplementedError.
"""

from __future__ import annotations

import importlib
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from serkit.models.params import EstimatorParams

__all__ = ["MODELS", "ONNX_INPUT", "ONNX_OUTPUT", "Classifier", "OnnxGraph", "build_model", "model_class"]

#: Model name -> "module:Class"; imported only when used. Loading a saved model looks its
#: name up here and nowhere else, so a model file can never name code to run.
MODELS: dict[str, str] = {
    "cnn": "serkit.models.cnn:CNNClassifier",
    "svm": "serkit.models.svm:SVMClassifier",
    "efficientnet": "serkit.models.efficientnet:EfficientNetClassifier",
    "pooled": "serkit.models.pooled:PooledClassifier",
}

#: Names of the input and output of every classifier's ONNX graph.
ONNX_INPUT = "features"
ONNX_OUTPUT = "probabilities"


@dataclass(frozen=True)
class OnnxGraph:
    """A classifier's ONNX graph, as `Classifier.to_onnx` returns it.

    Attributes:
        model: The serialized ONNX model: input `ONNX_INPUT` of shape (batch, *input_shape)
            with a dynamic batch axis, output `ONNX_OUTPUT` of shape (batch, classes) in
            ``classes_`` order.
        input_shape: The shape of one input row, without the batch axis.
        input_dtype: The input's numpy dtype name (``"float32"`` or ``"float64"``).
    """

    model: bytes
    input_shape: tuple[int, ...]
    input_dtype: str


class Classifier(EstimatorParams):
    """Base of every serkit classifier (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    input_kind: ClassVar[str] = ""
    #: Whether ``fit`` takes ``validation=(X, y)`` rows (early stopping on held-out speakers);
    #: the experiment draws validation speakers only for such models.
    uses_validation: ClassVar[bool] = False
    #: Settings of how a fit runs (where, on what, how verbosely), not of what it learns:
    #: `serkit.models.io.save_model` keeps them out of model.json.
    runtime_params: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def fit(self, X: Any, y: Any, groups: Any = None) -> "Classifier":
        """Train on features `X` and labels `y`; `groups` are the speakers of the rows."""

    @abstractmethod
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n, len(classes_)), columns in ``classes_`` order."""

    def check_params(self) -> None:
        """Raise ValueError naming a hyper-parameter whose value is out of range or mistyped.

        Called by ``fit`` and, before any feature is extracted, by the experiment runner.
        """

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each row."""
        return np.asarray(self.classes_)[np.argmax(self.predict_proba(X), axis=1)]

    @abstractmethod
    def save_state(self, folder: Path) -> dict[str, Any]:
        """Write the fitted weights into `folder`; return the JSON-able fitted state."""

    @classmethod
    @abstractmethod
    def load_state(cls, params: dict[str, Any], state: dict[str, Any], folder: Path) -> "Classifier":
        """Rebuild a fitted model from its hyper-parameters, `save_state`'s dict and files."""

    def to_onnx(self, opset: int) -> OnnxGraph:
        """The fitted model as an ONNX graph from features to class probabilities.

        Args:
            opset: The ONNX opset to write.

        Raises:
            NotImplementedError: The model has no ONNX export (the message names it).
        """
        raise NotImplementedError(f"{type(self).__name__} (model {self.name!r}) has no ONNX export")


def model_class(name: str) -> type[Classifier]:
    """The classifier class registered under `name`.

    Raises:
        ValueError: Unknown name; the message lists the known ones.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    module_name, class_name = MODELS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_model(name: str, **params: Any) -> Classifier:
    """A new, unfitted classifier; unknown hyper-parameters are an error naming them.

    Raises:
        ValueError: Unknown model or hyper-parameter.
    """
    cls = model_class(name)
    allowed = sorted(cls().get_params(deep=False))
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"model {name!r}: unknown hyper-parameter(s) {unknown}; allowed: {allowed}")
    return cls(**params)

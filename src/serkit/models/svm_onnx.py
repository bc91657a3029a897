"""The SVM pipeline as an ONNX graph: ``StandardScaler -> SVC(rbf) -> calibration``.

`SVMClassifier.to_onnx` builds it node by node in float64 from the fitted attributes (no extra
package; skl2onnx has no converter for temperature scaling): the optional layer pick, the
scaler, the RBF kernel against the support vectors, libsvm's pairwise decision values turned
into scikit-learn's one-vs-rest scores, then temperature or sigmoid (Platt) calibration. Kept
apart from `serkit.models.svm` so that onnx is imported only when a model is exported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serkit.models.base import ONNX_INPUT, ONNX_OUTPUT, OnnxGraph

__all__ = ["svm_graph"]


def svm_graph(model: Any, opset: int) -> OnnxGraph:
    """The fitted `SVMClassifier`'s graph, checked by ``onnx.checker``, float64 rows of its input shape."""
    import onnx

    graph_model = _svm_model(model, opset)
    onnx.checker.check_model(graph_model)
    shape = (int(model.n_features_in_),) if model.n_layers_ is None else (int(model.n_layers_), int(model.n_features_in_))
    return OnnxGraph(graph_model.SerializeToString(), shape, "float64")


class _Graph:
    """A small helper that names constants and nodes while a graph is built."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, value: Any, dtype: Any = np.float64) -> str:
        from onnx import numpy_helper

        name = self._name("c")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, output: str | None = None, **attributes: Any) -> str:
        from onnx import helper

        name = output or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], **attributes))
        return name


def _svm_parts(model: Any) -> tuple[Any, Any, Any]:
    """Scaler, SVC and calibrated classifier of the fitted pipeline."""
    scaler = model.pipeline_.named_steps["scale"]
    calibrated = model.pipeline_.named_steps["svm"].calibrated_classifiers_
    if len(calibrated) != 1:
        raise ValueError(f"svm: expected one calibrated classifier (ensemble=False), got {len(calibrated)}")
    return scaler, calibrated[0].estimator, calibrated[0]


def _svm_model(model: Any, opset: int) -> Any:
    """The ONNX model of ``StandardScaler -> SVC(rbf) -> calibration`` (see module docstring)."""
    from onnx import TensorProto, helper

    scaler, svc, calibrated = _svm_parts(model)
    if svc.kernel != "rbf":
        raise ValueError(f"svm: only the RBF kernel is exported, got {svc.kernel!r}")
    g = _Graph()
    x = ONNX_INPUT
    if model.layer_ is not None:
        x = g.op("Gather", x, g.const(int(model.layer_), np.int64), axis=1)
    x = g.op("Div", g.op("Sub", x, g.const(scaler.mean_)), g.const(scaler.scale_))
    decision = _svc_decision(g, x, svc)
    n_classes = len(svc.classes_)
    if calibrated.method == "temperature":
        _temperature(g, decision, n_classes, float(calibrated.calibrators[0].beta_))
    elif calibrated.method == "sigmoid":
        _sigmoid(g, decision, n_classes, calibrated.calibrators)
    else:
        raise ValueError(f"svm: calibration {calibrated.method!r} is not exported")
    batch = "batch"
    shape = [batch, int(model.n_features_in_)] if model.n_layers_ is None else [batch, int(model.n_layers_), int(model.n_features_in_)]
    graph = helper.make_graph(
        g.nodes,
        "serkit_svm",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.DOUBLE, shape)],
        [helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.DOUBLE, [batch, n_classes])],
        initializer=g.initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="serkit")


def _svc_decision(g: _Graph, x: str, svc: Any) -> str:
    """The SVC's decision values: (N, 1) for two classes, one-vs-rest (N, classes) otherwise.

    libsvm's pairwise value for classes i < j is the kernel row times the dual coefficients of
    both classes' support vectors, plus the intercept; scikit-learn turns the pairwise values
    into one-vs-rest scores (votes plus a squashed sum of confidences), which are what the
    calibrator sees.
    """
    vectors = np.asarray(svc.support_vectors_, dtype=np.float64)
    squared_x = g.op("ReduceSum", g.op("Mul", x, x), g.const([1], np.int64), keepdims=1)
    cross = g.op("MatMul", x, g.const(vectors.T))
    distance = g.op("Add", g.op("Sub", squared_x, g.op("Mul", cross, g.const(2.0))), g.const((vectors**2).sum(1)[None]))
    distance = g.op("Max", distance, g.const(0.0))  # rounding can make a tiny distance negative
    kernel = g.op("Exp", g.op("Mul", distance, g.const(-float(svc._gamma))))
    weights = _pairwise_weights(svc)
    pairwise = g.op("Add", g.op("MatMul", kernel, g.const(weights)), g.const(np.asarray(svc.intercept_, dtype=np.float64)))
    n_classes = len(svc.classes_)
    if n_classes == 2:
        return pairwise
    return _one_vs_rest(g, pairwise, n_classes)


def _pairwise_weights(svc: Any) -> np.ndarray:
    """(support vectors, pairs) matrix W with pairwise decision = K @ W + intercept."""
    coef = np.asarray(svc.dual_coef_, dtype=np.float64)
    counts = [int(n) for n in svc.n_support_]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    n_classes = len(counts)
    pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
    weights = np.zeros((coef.shape[1], len(pairs)))
    for p, (i, j) in enumerate(pairs):
        rows_i = slice(offsets[i], offsets[i + 1])
        rows_j = slice(offsets[j], offsets[j + 1])
        weights[rows_i, p] = coef[j - 1, rows_i]
        weights[rows_j, p] = coef[i, rows_j]
    return weights


def _one_vs_rest(g: _Graph, pairwise: str, n_classes: int) -> str:
    """scikit-learn's ``_ovr_decision_function(dec < 0, -dec, n)`` as matrix products."""
    pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
    first = np.zeros((len(pairs), n_classes))
    second = np.zeros((len(pairs), n_classes))
    for p, (i, j) in enumerate(pairs):
        first[p, i] = 1.0
        second[p, j] = 1.0
    from onnx import TensorProto

    wins = g.op("Cast", g.op("GreaterOrEqual", pairwise, g.const(0.0)), to=TensorProto.DOUBLE)
    losses = g.op("Cast", g.op("Less", pairwise, g.const(0.0)), to=TensorProto.DOUBLE)
    votes = g.op("Add", g.op("MatMul", wins, g.const(first)), g.op("MatMul", losses, g.const(second)))
    confidence = g.op("MatMul", pairwise, g.const(first - second))
    squashed = g.op("Div", confidence, g.op("Mul", g.op("Add", g.op("Abs", confidence), g.const(1.0)), g.const(3.0)))
    return g.op("Add", votes, squashed)


def _temperature(g: _Graph, decision: str, n_classes: int, beta: float) -> None:
    """softmax(beta * logits); two classes use the logits (-d, d)."""
    logits = decision
    if n_classes == 2:
        logits = g.op("Concat", g.op("Neg", decision), decision, axis=1)
    g.op("Softmax", g.op("Mul", logits, g.const(beta)), axis=1, output=ONNX_OUTPUT)


def _sigmoid(g: _Graph, decision: str, n_classes: int, calibrators: list[Any]) -> None:
    """Platt scaling per class, renormalised (uniform where every class gets 0)."""
    a = np.asarray([float(c.a_) for c in calibrators])[None]
    b = np.asarray([float(c.b_) for c in calibrators])[None]
    probability = g.op("Sigmoid", g.op("Neg", g.op("Add", g.op("Mul", decision, g.const(a)), g.const(b))))
    if n_classes == 2:
        g.op("Concat", g.op("Sub", g.const(1.0), probability), probability, axis=1, output=ONNX_OUTPUT)
        return
    total = g.op("ReduceSum", probability, g.const([1], np.int64), keepdims=1)
    normalised = g.op("Div", probability, total)
    uniform = g.op("Add", g.op("Mul", probability, g.const(0.0)), g.const(1.0 / n_classes))
    g.op("Where", g.op("Equal", total, g.const(0.0)), uniform, normalised, output=ONNX_OUTPUT)

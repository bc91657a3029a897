"""ONNX export of a saved model, and running the export with onnxruntime.

`export_onnx(model_dir)` writes into ``model_dir/onnx/``:

* ``classifier.onnx``: features -> class probabilities. One input, ``features``, of shape
  (batch, *row shape) with a dynamic batch axis, and one output, ``probabilities``, of shape
  (batch, classes) in the model's label order.

  - torch models (cnn, pooled, efficientnet): the fitted network followed by a softmax,
    traced with the TorchScript-based ``torch.onnx.export`` (``dynamo=False``: the newer
    exporter needs the extra package onnxscript). The input is float32 and its row shape is
    the network's (``input_shape_``: e.g. (1, T, D) for a CNN on one-channel frames), which
    is the stacked extractor output with unit axes added or removed: `OnnxClassifier`
    reshapes for it. Antialiased bilinear resizing (the CNN's ``input_mode="resize"``) has no
    ONNX operator, so input adapters that resize or crop-and-pool a map of fixed size are
    replaced by the same linear map written as two matrix products, measured from the
    adapter itself and checked against it.
  - the scikit-learn SVM pipeline (StandardScaler -> RBF SVC -> temperature or sigmoid
    calibration): built node by node in float64 from the fitted attributes (no extra
    package; skl2onnx has no converter for temperature scaling).

  Before it is moved into place, the export is run with onnxruntime on random rows and
  compared with the original model; a difference above `MAX_EXPORT_DIFF` is an error.
* with ``encoder=True`` and SSL features, the SSL encoder too, through
  `serkit.features.onnx_backend` (the SSL extractor's own export, in a folder named after its
  source identity), so that ``Predictor.load(model_dir, backend="onnx")`` runs the whole chain
  with onnxruntime.
* ``export.json``: what was exported, from which model fingerprint and labels, with which
  opset and library versions, and the measured largest difference.

Every file is written under a temporary name and moved into place with `os.replace`.
torch, onnx and onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from serkit.atomic import atomic_path, atomic_write
from serkit.features.base import exports_onnx_encoder
from serkit.models.io import ModelFormatError

__all__ = [
    "CLASSIFIER_FILE",
    "EXPORT_DIR",
    "MAX_EXPORT_DIFF",
    "RECORD_FILE",
    "OnnxClassifier",
    "export_onnx",
    "read_export_record",
]

logger = logging.getLogger(__name__)

#: Folder inside the model folder that holds the exports.
EXPORT_DIR = "onnx"
CLASSIFIER_FILE = "classifier.onnx"
RECORD_FILE = "export.json"
#: Bump when the exported graphs' inputs, outputs or export.json change incompatibly.
EXPORT_FORMAT = 1
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"
#: Largest probability difference between the export and the original model that is accepted.
MAX_EXPORT_DIFF = 1e-4
#: Rows of the random check batch (not the traced batch size, so the dynamic axis is exercised).
_CHECK_ROWS = 3


# --------------------------------------------------------------------------- the entry point


def export_onnx(model_dir: str | os.PathLike, *, encoder: bool = False, opset: int = 17) -> list[Path]:
    """Export a saved model's classifier (and optionally its SSL encoder) to ONNX.

    Args:
        model_dir: A folder written by `serkit.models.io.save_model`.
        encoder: Also export the SSL encoder of the model's features (SSL features only;
            the encoder must be local or in the Hugging Face cache).
        opset: ONNX opset of the classifier graph.

    Returns:
        The files written: ``classifier.onnx`` (and the encoder's ``.onnx``), then
        ``export.json``.

    Raises:
        ModelFormatError: Not a model folder.
        ValueError: A model kind that cannot be exported, ``encoder=True`` for non-SSL
            features, or an export that does not reproduce the model.
    """
    from serkit.models.io import load_model

    folder = Path(model_dir)
    saved = load_model(folder)
    if encoder and not exports_onnx_encoder((saved.features or {}).get("kind")):
        kind = (saved.features or {}).get("kind")
        raise ValueError(
            f"{folder}: {kind!r} features have no ONNX encoder export (only SSL encoders do; "
            "a Whisper encoder stays in its own backend, CTranslate2 or transformers, for prediction)"
        )
    out_dir = folder / EXPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / CLASSIFIER_FILE
    classifier = _export_classifier(saved.model, target, opset)
    written = [target]
    encoder_record = _export_encoder(saved, out_dir) if encoder else _previous_encoder(folder, saved.fingerprint)
    if encoder and encoder_record is not None:
        written.append(out_dir / encoder_record["file"])
    record = {
        "format": EXPORT_FORMAT,
        "model": saved.model.name,
        "labels": saved.labels,
        "fingerprint": saved.fingerprint,
        "input_kind": saved.meta.get("input_kind"),
        "classifier": classifier,
        "encoder": encoder_record,
        "versions": {name: _version(name) for name in ("torch", "onnx", "onnxruntime", "scikit-learn", "serkit")},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    record_path = out_dir / RECORD_FILE
    with atomic_write(record_path, "w") as handle:
        handle.write(json.dumps(record, indent=2, sort_keys=True))
    written.append(record_path)
    logger.info("exported %s to %s (largest difference %.2g)", folder, out_dir, classifier["max_abs_diff"])
    return written


def read_export_record(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``onnx/export.json`` of a model folder, or None when there is none (or it is unreadable)."""
    path = Path(model_dir) / EXPORT_DIR / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


# --------------------------------------------------------------------------- classifier


def _export_classifier(model: Any, target: Path, opset: int) -> dict[str, Any]:
    """Write the classifier graph to `target` (checked before it is moved there)."""
    if hasattr(model, "network_") and hasattr(model, "input_shape_"):
        return _export_torch(model, target, opset)
    if hasattr(model, "pipeline_"):
        return _export_svm(model, target, opset)
    raise ValueError(f"ONNX export does not support {type(model).__name__} models")


def _export_torch(model: Any, target: Path, opset: int) -> dict[str, Any]:
    """Trace network + softmax with a dynamic batch axis, check it with onnxruntime, move it in place."""
    import torch

    input_shape = [int(n) for n in model.input_shape_]
    wrapper = _probabilities_module(_exportable_network(model.network_, input_shape)).eval()
    example = torch.from_numpy(_random_rows(2, input_shape, np.float32, seed=0))
    with atomic_path(target) as tmp:  # moved into place only once the check passed
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter announces its deprecation and tracing warns about
            # shape-derived Python values; both are expected here.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (example,),
                str(tmp),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=opset,
            )
        rows = _random_rows(_CHECK_ROWS, input_shape, np.float32, seed=1)
        expected = model.predict_proba(rows)
        difference = _check_export(tmp, rows, expected)
    return _classifier_record(input_shape, "float32", opset, difference)


def _classifier_record(input_shape: list[int], dtype: str, opset: int, difference: float) -> dict[str, Any]:
    return {
        "file": CLASSIFIER_FILE,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "input_shape": input_shape,
        "input_dtype": dtype,
        "opset": opset,
        "max_abs_diff": difference,
    }


def _random_rows(count: int, shape: list[int], dtype: type, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(dtype)


def _check_export(path: Path, rows: np.ndarray, expected: np.ndarray) -> float:
    """Largest |onnxruntime - original| probability on `rows`; an error above MAX_EXPORT_DIFF."""
    session = _session(path)
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: rows})
    difference = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - expected)))
    if not difference <= MAX_EXPORT_DIFF:
        raise ValueError(
            f"the ONNX export differs from the model by up to {difference:.3g} in probability "
            f"(tolerance {MAX_EXPORT_DIFF:g}); not written"
        )
    return difference


def _probabilities_module(network: Any) -> Any:
    """`network` followed by a softmax over classes, as `predict_proba` computes it."""
    import torch

    class Probabilities(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = network

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.inner(features.float()), dim=1)

    return Probabilities()


def _exportable_network(network: Any, input_shape: list[int]) -> Any:
    """A copy of `network` whose map adapters are written as matrix products ONNX can express."""
    network = copy.deepcopy(network).cpu().eval()
    adapters = [
        (name, module)
        for name, module in network.named_modules()
        if name and getattr(module, "input_mode", "none") != "none" and hasattr(module, "input_size")
    ]
    if not adapters:
        return network
    shapes = _adapter_input_shapes(network, [m for _, m in adapters], input_shape)
    for name, module in adapters:
        replacement = _SeparableMap.measure(module, shapes[id(module)])
        parent_name, _, attribute = name.rpartition(".")
        parent = network.get_submodule(parent_name) if parent_name else network
        setattr(parent, attribute, replacement)
    return network


def _adapter_input_shapes(network: Any, modules: list[Any], input_shape: list[int]) -> dict[int, tuple[int, ...]]:
    """The input shape (without batch) each module sees, from one forward pass with hooks."""
    import torch

    shapes: dict[int, tuple[int, ...]] = {}
    handles = [
        m.register_forward_hook(lambda mod, args, out: shapes.__setitem__(id(mod), tuple(args[0].shape[1:])))
        for m in modules
    ]
    try:
        with torch.no_grad():
            network(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


class _SeparableMap:
    """Builds a module computing ``A @ x @ B.T`` on the last two axes (torch imported lazily)."""

    @staticmethod
    def measure(adapter: Any, shape: tuple[int, ...]) -> Any:
        """The linear map of `adapter` on maps of `shape` (C, H, W), measured on unit inputs.

        The adapter is linear and acts on each axis separately; a unit impulse along one axis
        (the other of length 1) gives one column of that axis's matrix. The result is checked
        against the adapter on a random map.

        Raises:
            ValueError: The adapter is not such a separable linear map.
        """
        import torch

        _, height, width = (int(n) for n in shape)
        with torch.no_grad():
            left = _impulse_responses(adapter, height, axis=2)  # (H', H)
            right = _impulse_responses(adapter, width, axis=3)  # (W', W)
            module = _separable_module(left, right)
            probe = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
            expected, got = adapter(probe), module(probe)
        scale = float(expected.abs().max()) or 1.0
        if expected.shape != got.shape or float((expected - got).abs().max()) > 1e-5 * scale:
            raise ValueError(f"{type(adapter).__name__} is not a separable linear map; cannot express it in ONNX")
        return module


def _impulse_responses(adapter: Any, size: int, axis: int, chunk: int = 64) -> Any:
    """The matrix of `adapter` along `axis` (2: height, 3: width), from unit impulses, in chunks.

    Each impulse is a map with `size` cells on `axis` and one cell on the other axis; its
    first output row (or column) is one column of the matrix. Chunks bound the memory of
    maps such as 1024 feature dims resized to 300 x 300.
    """
    import torch

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


def _separable_module(left: Any, right: Any) -> Any:
    import torch

    class SeparableMap(torch.nn.Module):
        """``left @ x @ right.T`` on the last two axes."""

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("left", left)
            self.register_buffer("right_t", right.T.contiguous())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.matmul(torch.matmul(self.left, x), self.right_t)

    return SeparableMap()


# --------------------------------------------------------------------------- scikit-learn SVM


def _export_svm(model: Any, target: Path, opset: int) -> dict[str, Any]:
    """Build the SVM pipeline's graph in float64, check it with onnxruntime, move it in place."""
    import onnx

    graph_model = _svm_graph(model, opset)
    onnx.checker.check_model(graph_model)
    shape = [int(model.n_features_in_)] if model.n_layers_ is None else [int(model.n_layers_), int(model.n_features_in_)]
    with atomic_path(target) as tmp:  # moved into place only once the check passed
        onnx.save_model(graph_model, str(tmp))
        rows = _random_rows(_CHECK_ROWS, shape, np.float64, seed=1)
        difference = _check_export(tmp, rows, model.predict_proba(rows))
    return _classifier_record(shape, "float64", opset, difference)


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


def _svm_graph(model: Any, opset: int) -> Any:
    """The ONNX model of ``StandardScaler -> SVC(rbf) -> calibration`` (see module docstring)."""
    from onnx import TensorProto, helper

    scaler, svc, calibrated = _svm_parts(model)
    if svc.kernel != "rbf":
        raise ValueError(f"svm: only the RBF kernel is exported, got {svc.kernel!r}")
    g = _Graph()
    x = INPUT_NAME
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
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.DOUBLE, shape)],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.DOUBLE, [batch, n_classes])],
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
    g.op("Softmax", g.op("Mul", logits, g.const(beta)), axis=1, output=OUTPUT_NAME)


def _sigmoid(g: _Graph, decision: str, n_classes: int, calibrators: list[Any]) -> None:
    """Platt scaling per class, renormalised (uniform where every class gets 0)."""
    a = np.asarray([float(c.a_) for c in calibrators])[None]
    b = np.asarray([float(c.b_) for c in calibrators])[None]
    probability = g.op("Sigmoid", g.op("Neg", g.op("Add", g.op("Mul", decision, g.const(a)), g.const(b))))
    if n_classes == 2:
        g.op("Concat", g.op("Sub", g.const(1.0), probability), probability, axis=1, output=OUTPUT_NAME)
        return
    total = g.op("ReduceSum", probability, g.const([1], np.int64), keepdims=1)
    normalised = g.op("Div", probability, total)
    uniform = g.op("Add", g.op("Mul", probability, g.const(0.0)), g.const(1.0 / n_classes))
    g.op("Where", g.op("Equal", total, g.const(0.0)), uniform, normalised, output=OUTPUT_NAME)


# --------------------------------------------------------------------------- SSL encoder


def _export_encoder(saved: Any, out_dir: Path) -> dict[str, Any]:
    """Export the features' encoder with its extractor's own ONNX export, under `out_dir`."""
    from serkit.audio import AudioSpec
    from serkit.features import build_extractor

    identity = saved.features
    extractor = build_extractor({"kind": identity["kind"], **identity["config"]}, AudioSpec.from_dict(identity["audio_spec"]))
    path = extractor.export_onnx_encoder(out_dir)
    return {
        "file": path.relative_to(out_dir).as_posix(),
        "model": identity["config"].get("model"),
        "revision": extractor.resolved_revision(),
        "quantize": identity["config"].get("quantize", "none"),
    }


def _previous_encoder(model_dir: Path, fingerprint: str | None) -> dict[str, Any] | None:
    """Keep the encoder entry of an earlier export of the same features when its file is still there."""
    record = read_export_record(model_dir)
    if not record or record.get("fingerprint") != fingerprint or not isinstance(record.get("encoder"), dict):
        return None
    if not (model_dir / EXPORT_DIR / str(record["encoder"].get("file", ""))).is_file():
        return None
    return record["encoder"]


# --------------------------------------------------------------------------- running an export


class OnnxClassifier:
    """The exported classifier run with onnxruntime, with ``predict_proba`` like the original.

    Args:
        path: The ``classifier.onnx`` file.
        record: Its ``classifier`` entry of export.json (input shape and dtype).
        labels: The model's labels (``classes_``).
        num_threads: onnxruntime intra-op threads; None keeps its default.
    """

    def __init__(self, path: Path, record: dict[str, Any], labels: list[str], num_threads: int | None = None) -> None:
        self.path = Path(path)
        self.input_shape = tuple(int(n) for n in record["input_shape"])
        self.input_dtype = np.dtype(record.get("input_dtype", "float32"))
        self.classes_ = np.asarray(labels)
        self.session = _session(self.path, num_threads)

    @classmethod
    def from_model_dir(
        cls, model_dir: str | os.PathLike, *, fingerprint: str | None, labels: list[str], num_threads: int | None = None
    ) -> "OnnxClassifier":
        """Open ``model_dir/onnx/classifier.onnx`` after checking export.json matches the model.

        Raises:
            ModelFormatError: No export, or one made from other features or labels.
        """
        folder = Path(model_dir)
        record = read_export_record(folder)
        hint = f"run `serkit export {folder} --onnx`"
        if record is None or not isinstance(record.get("classifier"), dict):
            raise ModelFormatError(f"{folder}: no ONNX export ({EXPORT_DIR}/{RECORD_FILE} missing); {hint}")
        if record.get("format") != EXPORT_FORMAT:
            raise ModelFormatError(f"{folder}: ONNX export format {record.get('format')!r} is not {EXPORT_FORMAT}; {hint}")
        if record.get("fingerprint") != fingerprint or record.get("labels") != labels:
            raise ModelFormatError(f"{folder}: the ONNX export was made from another version of this model; {hint}")
        path = folder / EXPORT_DIR / str(record["classifier"].get("file", CLASSIFIER_FILE))
        if not path.is_file():
            raise ModelFormatError(f"{folder}: {path.name} is missing; {hint}")
        return cls(path, record["classifier"], labels, num_threads)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of stacked extractor outputs, (N, classes) float64.

        Raises:
            ValueError: Rows whose size does not match the exported input.
        """
        rows = np.asarray(X)
        if rows.ndim < 1 or len(rows) == 0:
            raise ValueError(f"onnx classifier: expected a non-empty batch, got shape {rows.shape}")
        size = int(np.prod(self.input_shape))
        if rows[0].size != size:
            raise ValueError(f"onnx classifier: rows of shape {rows.shape[1:]}, the export takes {self.input_shape}")
        # The stacked extractor output differs from the network's rows only by unit axes.
        feed = np.ascontiguousarray(rows.reshape(len(rows), *self.input_shape), dtype=self.input_dtype)
        (probabilities,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: feed})
        return np.asarray(probabilities, dtype=np.float64)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each row."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


# --------------------------------------------------------------------------- small helpers


def _session(path: Path, num_threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"

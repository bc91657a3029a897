"""ONNX export of a saved model, and running the export with onnxruntime.

`export_onnx(model_dir)` writes into ``model_dir/onnx/``:

* ``classifier.onnx``: features -> class probabilities. One input, ``features``, of shape
  (batch, *row shape) with a dynamic batch axis, and one output, ``probabilities``, of shape
  (batch, classes) in the model's label order. Each model writes its own graph
  (`serkit.models.base.Classifier.to_onnx`):

  - torch models (cnn, pooled, efficientnet): the fitted network followed by a softmax,
    traced (`serkit.models.torch_onnx`). The input is float32 and its row shape is the
    network's (``input_shape_``: e.g. (1, T, D) for a CNN on one-channel frames), which is
    the stacked extractor output with unit axes added or removed: `OnnxClassifier` reshapes
    for it. The CNN writes its resizing input adapters as matrix products (antialiased
    bilinear resizing has no ONNX operator).
  - the scikit-learn SVM pipeline (StandardScaler -> RBF SVC -> temperature or sigmoid
    calibration): built node by node in float64 (`serkit.models.svm_onnx`).

  Before it is moved into place, the export is run with onnxruntime on random rows and
  compared with the original model; a difference above `MAX_EXPORT_DIFF` is an error.
* with ``encoder=True`` and SSL features, the SSL encoder too, through
  `serkit.features.onnx_backend` (the SSL extractor's own export, in a folder named after its
  source identity), so that ``Predictor.load(model_dir, backend="onnx")`` runs the whole chain
  with onnxruntime.
* ``export.json``: what was exported, from which model (its feature fingerprint, labels and
  `model_digest`, a hash of the model folder's files, so an export left beside retrained
  weights is never run), with which opset and library versions, and the measured largest
  difference.

`export_problem` says whether a folder's export can stand in for its model; the ``"auto"``
backend of `serkit.inference.predictor.Predictor.load` uses the export exactly when it has none.

Every file is written under a temporary name and moved into place with `os.replace`.
This module only orchestrates: files, the check, export.json, and running the export.
torch, onnx and onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from serkit.atomic import atomic_path, atomic_write
from serkit.features.base import exports_onnx_encoder
from serkit.models.base import ONNX_INPUT, ONNX_OUTPUT
from serkit.models.io import ModelFormatError

__all__ = [
    "CLASSIFIER_FILE",
    "EXPORT_DIR",
    "MAX_EXPORT_DIFF",
    "RECORD_FILE",
    "OnnxClassifier",
    "ensure_export",
    "export_onnx",
    "export_problem",
    "model_digest",
    "read_export_record",
]

logger = logging.getLogger(__name__)

#: Folder inside the model folder that holds the exports.
EXPORT_DIR = "onnx"
CLASSIFIER_FILE = "classifier.onnx"
RECORD_FILE = "export.json"
#: Bump when the exported graphs' inputs, outputs or export.json change incompatibly.
EXPORT_FORMAT = 1
INPUT_NAME = ONNX_INPUT
OUTPUT_NAME = ONNX_OUTPUT
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
        "model_digest": model_digest(folder),
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


def ensure_export(model_dir: str | os.PathLike) -> list[Path]:
    """Export a saved model's classifier unless its folder already has a current export.

    Returns:
        The files written (`export_onnx`), or an empty list when the export was current
        (`export_problem` found nothing, e.g. a resumed run).

    Raises:
        As `export_onnx`.
    """
    from serkit.models.io import read_model_json

    meta = read_model_json(model_dir)
    if export_problem(model_dir, fingerprint=meta.get("fingerprint"), labels=meta.get("labels")) is None:
        return []
    return export_onnx(model_dir)


def model_digest(model_dir: str | os.PathLike) -> str:
    """SHA-256 of a model folder's files (names and bytes), leaving out the export folder.

    model.json holds the save time and every weight file sits beside it, so retraining into
    the same folder changes the digest even when features and labels stay the same.
    """
    folder = Path(model_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if relative.parts[0] == EXPORT_DIR:
            continue
        digest.update(relative.as_posix().encode("utf-8", "surrogateescape") + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def export_problem(model_dir: str | os.PathLike, *, fingerprint: str | None, labels: list[str]) -> str | None:
    """Why a model folder's ONNX export cannot stand in for its model, or None when it can.

    The export must exist, be of this serkit's export format, come from the same features
    (fingerprint) and labels, and, where export.json records it (every export since the
    digest was added), from the same model files (`model_digest`).

    Args:
        model_dir: A folder written by `serkit.models.io.save_model`.
        fingerprint: The model's feature fingerprint (model.json).
        labels: The model's labels (model.json).

    Returns:
        None, or the reason in a few words (e.g. ``"no ONNX export (onnx/export.json missing)"``).
    """
    folder = Path(model_dir)
    record = read_export_record(folder)
    if record is None or not isinstance(record.get("classifier"), dict):
        return f"no ONNX export ({EXPORT_DIR}/{RECORD_FILE} missing)"
    if record.get("format") != EXPORT_FORMAT:
        return f"ONNX export format {record.get('format')!r} is not {EXPORT_FORMAT}"
    if record.get("fingerprint") != fingerprint or record.get("labels") != labels:
        return "the ONNX export was made from another version of this model (features or labels differ)"
    if "model_digest" in record and record["model_digest"] != model_digest(folder):
        return "the ONNX export was made from other model files (the model was saved again after it)"
    path = folder / EXPORT_DIR / str(record["classifier"].get("file", CLASSIFIER_FILE))
    if not path.is_file():
        return f"{path.name} is missing"
    return None


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
    """Write the model's own graph (`Classifier.to_onnx`) to `target`, checked before it is moved there."""
    try:
        graph = model.to_onnx(opset)
    except NotImplementedError as exc:
        raise ValueError(f"ONNX export does not support {type(model).__name__} models ({exc})") from None
    shape = [int(n) for n in graph.input_shape]
    with atomic_path(target) as tmp:  # moved into place only once the check passed
        tmp.write_bytes(graph.model)
        rows = _random_rows(_CHECK_ROWS, shape, np.dtype(graph.input_dtype), seed=1)
        difference = _check_export(tmp, rows, model.predict_proba(rows))
    return _classifier_record(shape, graph.input_dtype, opset, difference)


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


def _random_rows(count: int, shape: list[int], dtype: np.dtype, seed: int) -> np.ndarray:
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


# --------------------------------------------------------------------------- SSL encoder


def _export_encoder(saved: Any, out_dir: Path) -> dict[str, Any]:
    """Export the features' encoder with its extractor's own ONNX export, under `out_dir`."""
    from serkit.features.base import extractor_from_identity

    identity = saved.features
    extractor = extractor_from_identity(identity)
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
            ModelFormatError: No export, or one made from other features, labels or model files.
        """
        folder = Path(model_dir)
        problem = export_problem(folder, fingerprint=fingerprint, labels=labels)
        if problem is not None:
            raise ModelFormatError(f"{folder}: {problem}; run `serkit export {folder} --onnx`")
        record = read_export_record(folder) or {}
        path = folder / EXPORT_DIR / str(record["classifier"].get("file", CLASSIFIER_FILE))
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

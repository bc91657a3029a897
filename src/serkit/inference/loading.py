"""Rebuilding a saved model's pieces from its folder, as `Predictor.load` needs them.

`load_parts` reads ``model.json`` (without loading weights: the ONNX backend needs no torch),
refuses a folder that does not say how to rebuild its features (`ModelInfo`: labels, the
extractor's recorded identity and audio spec, the feature output the model reads, the frame
count maps were fitted to), then loads the model's transform (``speaker_norm``), rebuilds the
extractor (with the exported ONNX encoder on the ONNX backend when `serkit export --encoder`
wrote one), checks it produces that output, loads the classifier (the torch / scikit-learn model,
or `serkit.inference.export.OnnxClassifier`) and sets the extractor up in its work folder. Heavy
libraries are imported inside the functions that need them.

The ``"auto"`` backend (`resolve_backend`) runs the ONNX export when the folder has one made
from exactly these model files (training writes it, see `serkit.experiment.runner`) and
onnxruntime is installed: the export was checked against the model when it was written, and
onnxruntime starts without torch or scikit-learn (a cold `serkit predict` of the demo's models
in about 1-1.6 s instead of 3-4 s; `benchmarks/bench_cold_start.py`). Otherwise it runs the
saved model.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serkit.features.base import Extractor, exports_onnx_encoder, extractor_from_identity
from serkit.models.io import ModelFormatError

__all__ = ["ModelInfo", "ModelParts", "load_parts", "resolve_backend"]

logger = logging.getLogger(__name__)


@dataclass
class ModelInfo:
    """What model.json says about feeding the classifier."""

    name: str
    labels: list[str]
    input_kind: str
    features: dict[str, Any]
    fingerprint: str | None
    input_frames: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelParts:
    """A model folder's pieces: what model.json says, its transform, extractor (set up) and classifier.

    ``backend`` is the one used (``"torch"`` or ``"onnx"``; ``"auto"`` resolved) and
    ``backend_reason`` why ``"auto"`` chose it (empty for an explicit backend).
    """

    info: ModelInfo
    transform: Any
    extractor: Extractor
    model: Any
    backend: str = "torch"
    backend_reason: str = ""


def load_parts(folder: Path, backend: str, workdir: Path | None) -> ModelParts:
    """Read a model folder and rebuild its transform, extractor and classifier.

    Args:
        folder: A folder written by `serkit.models.io.save_model`.
        backend: ``"torch"``, ``"onnx"`` or ``"auto"`` (`resolve_backend`; checked by the caller).
        workdir: Folder the extractor may keep derived files in; None: ``folder/onnx`` for the
            ONNX backend, else the feature cache folder of the model's fingerprint.

    Returns:
        The pieces, the extractor set up.

    Raises:
        ModelFormatError: Not a model folder, no features in model.json, unknown extractor
            settings, a bad transform, or (ONNX) a missing or stale export.
    """
    from serkit.models.transforms import load_transform

    info = _model_info(folder, _read_model_json(folder))
    reason = ""
    if backend == "auto":
        backend, reason = resolve_backend(folder, info)
        # an export that is there but cannot be used is worth a warning: its user expects the fast path
        level = logging.WARNING if backend == "torch" and _has_export(folder) else logging.INFO
        logger.log(level, "%s: %s backend (%s)", folder, backend, reason)
    try:
        transform = load_transform(folder, info.meta.get("transform"))
    except (KeyError, ValueError) as exc:
        raise ModelFormatError(f"{folder}: {exc}") from None
    extractor = _build_features(folder, info, backend)
    _check_output(folder, extractor, info.input_kind)
    model = _load_classifier(folder, info, backend)
    extractor.setup(workdir if workdir is not None else _default_workdir(folder, info, backend))
    return ModelParts(info=info, transform=transform, extractor=extractor, model=model, backend=backend,
                      backend_reason=reason)


def resolve_backend(folder: Path, info: ModelInfo) -> tuple[str, str]:
    """The backend ``"auto"`` means for a model folder, and why.

    Args:
        folder: The model folder.
        info: Its model.json facts (`_model_info`).

    Returns:
        ``("onnx", reason)`` when the folder's ONNX export stands in for these model files
        (`serkit.inference.export.export_problem`) and onnxruntime is installed, else
        ``("torch", reason)``.
    """
    from serkit.inference.export import export_problem

    problem = export_problem(folder, fingerprint=info.fingerprint, labels=info.labels)
    if problem is not None:
        return "torch", problem
    if importlib.util.find_spec("onnxruntime") is None:
        return "torch", "onnxruntime is not installed"
    return "onnx", "its ONNX export matches the model files"


def _read_model_json(model_dir: Path) -> dict[str, Any]:
    """model.json as a dict (without loading weights: the ONNX backend needs no torch)."""
    from serkit.models.io import read_model_json

    return read_model_json(model_dir)


def _model_info(model_dir: Path, meta: dict[str, Any]) -> ModelInfo:
    """Check that model.json says how to rebuild the features; refuse it otherwise."""
    features = meta.get("features")
    if not isinstance(features, dict) or "kind" not in features or not isinstance(features.get("config"), dict):
        raise ModelFormatError(
            f"{model_dir}: model.json does not record its feature extractor (features.kind / features.config), "
            "so the features it was trained on cannot be rebuilt; save the model with "
            "save_model(..., features=extractor.identity(), fingerprint=extractor.fingerprint())"
        )
    if not isinstance(features.get("audio_spec"), dict):
        raise ModelFormatError(f"{model_dir}: model.json records no audio_spec for its features")
    labels = meta.get("labels")
    if not isinstance(labels, list) or len(labels) < 2:
        raise ModelFormatError(f"{model_dir}: model.json lists no labels (got {labels!r})")
    input_kind = meta.get("input_kind")
    if not isinstance(input_kind, str) or not input_kind:
        raise ModelFormatError(f"{model_dir}: model.json does not say which feature output the model reads (input_kind)")
    return ModelInfo(
        name=str(meta.get("model")),
        labels=[str(label) for label in labels],
        input_kind=input_kind,
        features=features,
        fingerprint=meta.get("fingerprint"),
        input_frames=_input_frames(model_dir, meta),
        meta=meta,
    )


def _input_frames(model_dir: Path, meta: dict[str, Any]) -> int | None:
    """The frame count the experiment runner padded or cut frame maps to (``extra.input_frames``)."""
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    frames = extra.get("input_frames")
    if frames is None:
        return None
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise ModelFormatError(f"{model_dir}: model.json extra.input_frames must be a positive integer, got {frames!r}")
    return frames


def _build_features(model_dir: Path, info: ModelInfo, backend: str) -> Extractor:
    """The extractor the model was trained with, from its recorded identity."""
    identity = info.features
    changes: dict[str, Any] = {}
    if backend == "onnx" and exports_onnx_encoder(identity["kind"]) and _has_onnx_encoder(model_dir):
        changes = {"backend": "onnx", "device": None}  # reuse the encoder that `serkit export --encoder` wrote
    try:
        return extractor_from_identity(identity, **changes)
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{model_dir}: cannot rebuild the feature extractor from model.json ({exc})") from None


def _has_export(model_dir: Path) -> bool:
    from serkit.inference import export

    return export.read_export_record(model_dir) is not None


def _has_onnx_encoder(model_dir: Path) -> bool:
    from serkit.inference import export

    record = export.read_export_record(model_dir)
    return bool(record and record.get("encoder"))


def _check_output(model_dir: Path, extractor: Extractor, input_kind: str) -> None:
    """The extractor must produce the output the model reads (when its config names outputs)."""
    outputs = getattr(extractor.config, "outputs", None)
    if outputs is not None and input_kind not in outputs:
        raise ModelFormatError(
            f"{model_dir}: the model reads feature output {input_kind!r} but its extractor "
            f"({extractor.name}) is configured for {list(outputs)}"
        )


def _load_classifier(model_dir: Path, info: ModelInfo, backend: str) -> Any:
    """The saved model (torch backend) or its ONNX export (ONNX backend)."""
    if backend == "onnx":
        from serkit.inference.export import OnnxClassifier

        return OnnxClassifier.from_model_dir(model_dir, fingerprint=info.fingerprint, labels=info.labels)
    from serkit.models.io import load_model

    saved = load_model(model_dir)
    classes = [str(c) for c in saved.model.classes_]
    if classes != info.labels:
        raise ModelFormatError(f"{model_dir}: model.json labels {info.labels} disagree with the model's {classes}")
    return saved.model


def _default_workdir(model_dir: Path, info: ModelInfo, backend: str) -> Path:
    """Where the extractor keeps derived files: the export folder, or its feature cache folder."""
    if backend == "onnx":
        return model_dir / "onnx"
    from serkit.features.cache import default_cache_root

    return default_cache_root() / str(info.fingerprint or "unknown")

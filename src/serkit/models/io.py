"""Saving and loading trained models: a folder a person can read, and that runs no code.

Layout::

    model/
        model.json      format version, model name and hyper-parameters, labels, AudioSpec,
                        feature extractor identity and fingerprint, library versions, and the
                        model's own JSON-able fitted state
        <weights>       written by the model: safetensors for torch, skops for scikit-learn

Loading looks the model name up in `serkit.models.MODELS` only, checks the hyper-parameters
against that class, and leaves the weight formats to loaders that do not unpickle.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from serkit.atomic import make_temp_dir
from serkit.data.audio import AudioSpec
from serkit.models.base import Classifier, model_class
from serkit.models.skops_io import import_skops_io  # re-exported: its former home

__all__ = [
    "FORMAT_VERSION", "ModelFormatError", "SavedModel", "import_skops_io", "library_versions", "load_model",
    "read_model_json", "save_model",
]

#: Bump when the folder layout or model.json changes incompatibly.
FORMAT_VERSION = 1
_MODEL_JSON = "model.json"


class ModelFormatError(ValueError):
    """A model folder that cannot be loaded; the message names the folder and the reason."""


@dataclass
class SavedModel:
    """A loaded model and what its folder says about how to feed it."""

    model: Classifier
    labels: list[str]
    audio_spec: AudioSpec | None
    features: dict[str, Any] | None
    fingerprint: str | None
    meta: dict[str, Any] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model's numbers."""
    versions = {"python": platform.python_version()}
    for dist in ("serkit", "numpy", "scikit-learn", "torch", "transformers", "timm", "opensmile", "librosa", "skops", "safetensors"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _json_safe(value: Any, where: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except TypeError as exc:
        raise TypeError(f"{where} must be JSON-able to go into model.json: {exc}") from None


def save_model(
    model: Classifier,
    folder: str | os.PathLike,
    *,
    audio_spec: AudioSpec | None = None,
    features: dict[str, Any] | None = None,
    fingerprint: str | None = None,
    extra: dict[str, Any] | None = None,
    transform: Any = None,
) -> Path:
    """Write a fitted model to `folder`, replacing any model there only once all is written.

    Args:
        model: A fitted serkit classifier.
        folder: Destination folder.
        audio_spec: How audio was prepared for the features it was trained on.
        features: The feature extractor's identity (``extractor.identity()``).
        fingerprint: The feature extractor's fingerprint.
        extra: Other JSON-able facts to keep (such as the run it came from).
        transform: A fitted `serkit.models.transforms.SpeakerNorm` applied before the classifier, or
            None; its statistics are written beside the weights and described under
            ``transform`` in model.json.

    Returns:
        The folder.
    """
    if not hasattr(model, "classes_"):
        raise ValueError(f"{type(model).__name__} is not fitted; call fit() before saving")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = make_temp_dir(folder.parent, f".{folder.name}.saving-")  # not mkdtemp: its 0700 becomes the model's
    try:
        state = _json_safe(model.save_state(staging), f"{model.name} state")
        params = {k: v for k, v in model.get_params(deep=False).items() if k not in model.runtime_params}
        spec = audio_spec.to_dict() if audio_spec is not None else None
        meta = {
            "format_version": FORMAT_VERSION,
            "model": model.name,
            "input_kind": model.input_kind,
            "params": _json_safe(params, f"{model.name} hyper-parameters"),  # runtime settings left out
            "labels": [str(c) for c in model.classes_],
            "state": state,
            # once: under features when the extractor's identity already holds it
            "audio_spec": None if features is not None and features.get("audio_spec") == spec else spec,
            "features": _json_safe(features, "features") if features is not None else None,
            "fingerprint": fingerprint,
            "versions": library_versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "extra": _json_safe(extra or {}, "extra"),
            "transform": transform.save(staging) if transform is not None else None,
        }
        (staging / _MODEL_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True))
        if folder.exists():  # swap in the new folder so a crash never leaves half of each
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
            os.replace(staging, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def read_model_json(folder: str | os.PathLike) -> dict[str, Any]:
    """A model folder's model.json as a dict, without touching the weights.

    Raises:
        ModelFormatError: No model.json, invalid JSON, or not a JSON object.
    """
    folder = Path(folder)
    path = folder / _MODEL_JSON
    if not path.is_file():
        raise ModelFormatError(f"{folder}: not a serkit model folder (no {_MODEL_JSON})")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelFormatError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    return meta


def load_model(folder: str | os.PathLike) -> SavedModel:
    """Load a model folder written by `save_model`.

    Raises:
        ModelFormatError: No model.json, a newer format, an unknown model name or
            hyper-parameter, or unreadable weights.
    """
    folder = Path(folder)
    path = folder / _MODEL_JSON
    meta = read_model_json(folder)
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path}: model format {version!r}; this serkit reads up to {FORMAT_VERSION} (upgrade serkit)"
        )
    try:
        cls = model_class(str(meta.get("model")))
    except ValueError as exc:
        raise ModelFormatError(f"{path}: {exc}") from None
    params = meta.get("params") or {}
    if not isinstance(params, dict):
        raise ModelFormatError(f"{path}: params must be a JSON object, got {type(params).__name__}")
    allowed = set(cls().get_params(deep=False))
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ModelFormatError(f"{path}: unknown hyper-parameter(s) {unknown} for model {meta['model']!r}")
    try:
        model = cls.load_state(params, meta.get("state") or {}, folder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFormatError(f"{folder}: cannot load the weights of {meta['model']!r} ({exc})") from None
    try:
        recorded = meta.get("audio_spec") or (meta.get("features") or {}).get("audio_spec")
        spec = AudioSpec.from_dict(recorded) if recorded else None
    except (ValueError, TypeError) as exc:
        raise ModelFormatError(f"{path}: bad audio_spec ({exc})") from None
    return SavedModel(
        model=model,
        labels=list(meta.get("labels", [])),
        audio_spec=spec,
        features=meta.get("features"),
        fingerprint=meta.get("fingerprint"),
        meta=meta,
    )

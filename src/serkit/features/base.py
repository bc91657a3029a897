"""The extractor contract shared by every feature kind.

An extractor is a name, a frozen config dataclass, an `AudioSpec`, ``extract(signal,
sampling_rate) -> {output name: array}`` and a ``fingerprint()`` that covers every setting
that changes the numbers (the config, the AudioSpec, the model id and revision, the cache
format version), so cached features are never reused across settings.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
import importlib
import json
from pathlib import Path
from dataclasses import asdict, fields, is_dataclass
from typing import Any, ClassVar

import numpy as np

from serkit.data.audio import AudioSpec

__all__ = ["CACHE_FORMAT_VERSION", "EXTRACTORS", "Extractor", "build_extractor", "config_from_dict", "exports_onnx_encoder", "extractor_class"]

#: Bump when the on-disk layout of cached features changes; part of every fingerprint.
CACHE_FORMAT_VERSION = 1

#: Feature kind -> "module:Class"; imported only when used.
EXTRACTORS: dict[str, str] = {
    "ssl": "serkit.features.ssl:SSLExtractor",
    "logmel": "serkit.features.spectral:LogMelExtractor",
    "mfcc": "serkit.features.spectral:MFCCExtractor",
    "opensmile": "serkit.features.opensmile:OpenSmileExtractor",
    "whisper": "serkit.features.whisper:WhisperExtractor",
}


def config_from_dict(config_cls: type, data: dict[str, Any], where: str) -> Any:
    """Build a frozen config dataclass, naming unknown keys and the allowed ones."""
    allowed = [f.name for f in fields(config_cls)]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {unknown}; allowed: {allowed}")
    return config_cls(**data)


class Extractor(ABC):
    """Base class: subclasses set `name` and `config_class`, and implement `extract`.

    Subclasses may override `extract_batch` to run several signals at once and `identity`
    to add what the config does not say (for SSL models, the resolved revision).
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    def __init__(self, config: Any = None, spec: AudioSpec | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        if not is_dataclass(self.config):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}")
        self.spec = spec if spec is not None else self.default_spec()

    def default_spec(self) -> AudioSpec:
        """The AudioSpec used when none is given (16 kHz, native length)."""
        return AudioSpec(duration=None)

    @abstractmethod
    def extract(self, signal: np.ndarray, sampling_rate: int) -> dict[str, np.ndarray]:
        """Features of one preprocessed 1-D signal, as named arrays."""

    def setup(self, workdir: Path | None = None) -> None:
        """Load models or export files before extraction; `workdir` is the cache folder.

        Called once by the extraction pipeline; the default does nothing. Extractors that
        keep a derived file (such as an ONNX export) keep it under `workdir`.
        """

    def min_samples(self) -> int:
        """The shortest signal, in samples at ``spec.sampling_rate``, whose own audio fills one frame.

        Shorter signals give features of padding only, or none; `serkit.data.quality` refuses them
        before prediction. The default, 1, suits extractors that pad their frames (log-mel,
        MFCC); openSMILE and the pretrained encoders override it.
        """
        return 1

    def extract_batch(self, signals: list[np.ndarray], sampling_rate: int) -> list[dict[str, np.ndarray]]:
        """Features of several signals; the default runs them one by one."""
        return [self.extract(s, sampling_rate) for s in signals]

    def identity(self) -> dict[str, Any]:
        """Everything that determines the numbers, as JSON-able data."""
        return {
            "kind": self.name,
            "config": asdict(self.config),
            "audio_spec": self.spec.to_dict(),
            "cache_format": CACHE_FORMAT_VERSION,
        }

    def fingerprint(self) -> str:
        """A short stable hash of `identity`: names the cache directory."""
        blob = json.dumps(self.identity(), sort_keys=True, default=str).encode()
        return f"{self.name}-{hashlib.sha256(blob).hexdigest()[:16]}"


def build_extractor(config: dict[str, Any], spec: AudioSpec | None = None) -> Extractor:
    """Make an extractor from ``{"kind": ..., <settings>}``.

    Raises:
        ValueError: Unknown kind or setting; the message lists the allowed ones.
    """
    settings = dict(config)
    kind = settings.pop("kind", None)
    cls = extractor_class(kind)
    return cls(config_from_dict(cls.config_class, settings, f"features.{kind}"), spec)


def extractor_from_identity(identity: dict[str, Any], **changes: Any) -> Extractor:
    """Rebuild the extractor a model was trained with from its recorded `Extractor.identity`.

    Args:
        identity: ``{"kind", "config", "audio_spec", ...}`` as saved in ``model.json``.
        **changes: Settings to replace (e.g. ``backend="onnx"`` to run a saved ONNX encoder).

    Raises:
        ValueError: An identity that no longer builds (unknown kind or setting); KeyError: a missing part.
    """
    from serkit.data.audio import AudioSpec

    settings = {**identity["config"], **changes}
    return build_extractor({"kind": identity["kind"], **settings}, AudioSpec.from_dict(identity["audio_spec"]))


def exports_onnx_encoder(kind: str | None) -> bool:
    """Whether the extractor family `kind` can export its encoder to ONNX (False for unknown kinds)."""
    try:
        return bool(getattr(extractor_class(str(kind)), "exports_onnx_encoder", False))
    except ValueError:
        return False


def extractor_class(kind: str) -> type[Extractor]:
    """The extractor class registered for `kind`, imported on use.

    Raises:
        ValueError: Unknown kind; the message lists the known ones.
    """
    if kind not in EXTRACTORS:
        raise ValueError(f"feature kind {kind!r} unknown; known: {sorted(EXTRACTORS)}")
    module_name, class_name = EXTRACTORS[kind].split(":")
    return getattr(importlib.import_module(module_name), class_name)

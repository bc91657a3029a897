"""Predict emotions of audio with a saved model: files, bytes, signals, long recordings.

`Predictor.load(model_dir)` rebuilds everything the model was trained with from its
``model.json``: the audio preprocessing (`AudioSpec`), the feature extractor (from its recorded
identity) and the classifier, which runs either in torch / scikit-learn (``backend="torch"``)
or from the ONNX files that `serkit.inference.export.export_onnx` wrote (``backend="onnx"``).

Long recordings. A recording longer than ``window`` seconds (or any recording when
``segments=True``) is decoded once at the spec's rate and native length, cut into windows of
``window`` seconds every ``hop`` seconds (the last window aligned to the end, so every window
is full length), and each window is brought to the extractor's spec (padded or cut) as a clip
would be. Every window gets a label and probabilities; the recording's probabilities are the
mean over its windows and its label their argmax.

Quality. Every input is checked by `serkit.data.quality.check` before preprocessing: an all-zero
signal or one shorter than the model's minimum (`Predictor.min_duration`) is refused (an
`serkit.data.quality.AudioQualityError` naming the input; in batch calls a `Prediction` with
``error`` set and the refusal's code in ``warnings``); near-silence, clipping and short audio
are returned as ``Prediction.warnings`` beside the label.

Batching. `Predictor.predict_signals` and `Predictor.predict_files` run the clips (or windows)
of several inputs through one ``extract_batch`` and one classifier call per ``batch_size``
clips; an input that cannot be decoded or featurised gets a `Prediction` with ``error`` set and
the others go on. A lock serialises extractor and classifier calls, so one `Predictor` may be
shared by threads (a web service batching concurrent requests).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from serkit.data.audio import AudioError, fix_length, preprocess, probe, read, stream
from serkit.data.audio_notes import collect_notes
from serkit.features.base import Extractor, exports_onnx_encoder, extractor_from_identity
from serkit.models.io import ModelFormatError
from serkit.data.quality import LevelMeter, QualityWarning, check, check_levels, decoding_findings, model_min_duration

__all__ = ["BACKENDS", "FORMATS", "Prediction", "Predictor", "Segment", "format_predictions", "segment_bounds"]

logger = logging.getLogger(__name__)

#: Where the classifier runs.
BACKENDS: tuple[str, ...] = ("torch", "onnx")
#: Default window and hop of long recordings, in seconds (the paper's clip length, half of it).
DEFAULT_WINDOW = 7.0
DEFAULT_HOP = 3.5
#: Clips (or windows) per extractor and classifier call.
DEFAULT_BATCH_SIZE = 32
#: Files longer than this (seconds) are predicted as they are decoded, window by window, so
#: memory does not grow with their length (`Predictor.stream_above`).
STREAM_ABOVE_S = 600.0
#: Files smaller than this are never long enough to stream (16 kbit/s Opus: about 8 minutes).
_STREAM_MIN_BYTES = 1 << 20

Source = str | os.PathLike | BinaryIO | bytes


@dataclass
class Segment:
    """One window of a long recording.

    Attributes:
        start: Start time in seconds.
        end: End time in seconds.
        label: The most probable label of this window.
        probabilities: Label -> probability, in the model's label order.
    """

    start: float
    end: float
    label: str
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return dataclasses.asdict(self)


@dataclass
class Prediction:
    """The prediction for one input (or why there is none).

    Attributes:
        source: The file name or the name given to the signal.
        label: The most probable label; None when `error` is set.
        probabilities: Label -> probability (mean over segments for long recordings); empty
            when `error` is set.
        duration: Length of the decoded recording in seconds (0 when it could not be read).
        segments: Per-window predictions when the recording was windowed, else None.
        error: Why this input could not be predicted, else None.
        warnings: Quality findings (`serkit.data.quality`: ``near_silent``, ``clipped``, ``short``)
            that make the label less trustworthy; for a refused input, the refusal (``silent``,
            ``too_short``) first. Empty for a clean recording.
    """

    source: str
    label: str | None
    probabilities: dict[str, float]
    duration: float
    segments: list[Segment] | None = None
    error: str | None = None
    warnings: list[QualityWarning] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (segments and warnings as dicts)."""
        return {
            "source": self.source,
            "label": self.label,
            "probabilities": dict(self.probabilities),
            "duration": self.duration,
            "segments": None if self.segments is None else [s.to_dict() for s in self.segments],
            "error": self.error,
            "warnings": [w.to_dict() for w in self.warnings],
        }

    @classmethod
    def failed(
        cls, source: str, error: str, duration: float = 0.0, warnings: Sequence[QualityWarning] = ()
    ) -> "Prediction":
        """A prediction that records an error (and any quality findings) instead of a label."""
        return cls(source=source, label=None, probabilities={}, duration=duration, error=error, warnings=list(warnings))


def segment_bounds(num_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Sample ranges of the windows of a recording.

    Windows of `window` samples start every `hop` samples; when they do not end exactly at the
    end of the recording, one more window is aligned to its end. A recording no longer than
    one window is a single window covering all of it.

    Args:
        num_samples: Length of the recording.
        window: Window length in samples (>= 1).
        hop: Step between window starts in samples (>= 1).

    Returns:
        ``[(start, end), ...]`` in increasing order.
    """
    if num_samples <= window:
        return [(0, num_samples)]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return [(s, s + window) for s in starts]


@dataclass
class _Prepared:
    """An input decoded to the spec's rate at native length, with its windows."""

    name: str
    duration: float
    windows: list[tuple[float, float]]
    clips: list[np.ndarray]
    segmented: bool
    warnings: list[QualityWarning] = field(default_factory=list)  # serkit.data.quality findings
    speaker: str | None = None  # whose statistics normalise it (models with speaker_norm)


@dataclass
class _ModelInfo:
    """What model.json says about feeding the classifier."""

    name: str
    labels: list[str]
    input_kind: str
    features: dict[str, Any]
    fingerprint: str | None
    input_frames: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _read_model_json(model_dir: Path) -> dict[str, Any]:
    """model.json as a dict (without loading weights: the ONNX backend needs no torch)."""
    from serkit.models.io import read_model_json

    return read_model_json(model_dir)


def _model_info(model_dir: Path, meta: dict[str, Any]) -> _ModelInfo:
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
    return _ModelInfo(
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


def _build_features(model_dir: Path, info: _ModelInfo, backend: str) -> Extractor:
    """The extractor the model was trained with, from its recorded identity."""
    identity = info.features
    changes: dict[str, Any] = {}
    if backend == "onnx" and exports_onnx_encoder(identity["kind"]) and _has_onnx_encoder(model_dir):
        changes = {"backend": "onnx", "device": None}  # reuse the encoder that `serkit export --encoder` wrote
    try:
        return extractor_from_identity(identity, **changes)
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{model_dir}: cannot rebuild the feature extractor from model.json ({exc})") from None


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


class Predictor:
    """A saved model with its preprocessing and features, ready to predict; build it with `Predictor.load`.

    Attributes:
        model_dir: The model folder.
        labels: The model's labels, in probability-column order.
        audio_spec: How clips are prepared for the extractor (``extractor.spec``).
        extractor: The feature extractor, set up.
        model: The classifier: a serkit `Classifier` (torch backend) or an
            `serkit.inference.export.OnnxClassifier` (ONNX backend); both have ``predict_proba``.
        input_kind: The extractor output the classifier reads.
        backend: ``"torch"`` or ``"onnx"``.
        window: Window length for long recordings, seconds.
        hop: Step between windows, seconds.
        batch_size: Clips per extractor and classifier call.
        fingerprint: The features' fingerprint recorded in model.json.
        transform: The model's `serkit.models.transforms.SpeakerNorm`, or None.
        enrolled: Speaker -> statistics added with `enroll` (beside the training speakers'
            statistics stored in the model).
        stream_above: `predict_files` streams files longer than this many seconds through
            their windows (decoded block by block, memory independent of their length).
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        labels: list[str],
        extractor: Extractor,
        model: Any,
        input_kind: str,
        backend: str,
        window: float,
        hop: float,
        batch_size: int,
        fingerprint: str | None,
        input_frames: int | None = None,
        transform: Any = None,
    ) -> None:
        self.model_dir = model_dir
        self.labels = labels
        self.extractor = extractor
        self.audio_spec = extractor.spec
        self.model = model
        self.input_kind = input_kind
        self.backend = backend
        self.window = float(window)
        self.hop = float(hop)
        self.batch_size = int(batch_size)
        self.fingerprint = fingerprint
        self.input_frames = input_frames
        self.transform = transform
        self.enrolled: dict[str, Any] = {}
        self._unknown_speakers: set[str | None] = set()
        self._lock = threading.Lock()
        self.stream_above = STREAM_ABOVE_S

    # ----------------------------------------------------------------- construction

    @classmethod
    def load(
        cls,
        model_dir: str | os.PathLike,
        *,
        backend: Literal["torch", "onnx"] = "torch",
        window: float = DEFAULT_WINDOW,
        hop: float = DEFAULT_HOP,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workdir: str | os.PathLike | None = None,
    ) -> "Predictor":
        """Load a model folder and rebuild its features.

        Args:
            model_dir: A folder written by `serkit.models.io.save_model`.
            backend: ``"torch"`` (the saved torch / scikit-learn model) or ``"onnx"`` (the
                files of `serkit.inference.export.export_onnx`; with an exported SSL encoder, that too).
            window: Window length for long recordings, in seconds.
            hop: Step between windows, in seconds (at most `window`).
            batch_size: Clips per extractor and classifier call.
            workdir: Folder the extractor may keep derived files in (an SSL ONNX export);
                default: ``model_dir/onnx`` for the ONNX backend, else the feature cache
                folder of this fingerprint.

        Returns:
            A ready Predictor.

        Raises:
            ModelFormatError: Not a model folder, no features in model.json, unknown
                extractor settings, or (ONNX) a missing or stale export.
            ValueError: Bad backend, window, hop or batch size.
        """
        _check_settings(backend, window, hop, batch_size)
        from serkit.models.transforms import load_transform

        folder = Path(model_dir)
        info = _model_info(folder, _read_model_json(folder))
        try:
            transform = load_transform(folder, info.meta.get("transform"))
        except (KeyError, ValueError) as exc:
            raise ModelFormatError(f"{folder}: {exc}") from None
        extractor = _build_features(folder, info, backend)
        _check_output(folder, extractor, info.input_kind)
        model = _load_classifier(folder, info, backend)
        extractor.setup(Path(workdir) if workdir is not None else _default_workdir(folder, info, backend))
        logger.info(
            "loaded %s (%s backend): %s features -> %s, labels %s", folder, backend, extractor.name, info.name, info.labels
        )
        return cls(
            folder,
            labels=info.labels,
            extractor=extractor,
            model=model,
            input_kind=info.input_kind,
            backend=backend,
            window=window,
            hop=hop,
            batch_size=batch_size,
            fingerprint=info.fingerprint,
            input_frames=info.input_frames,
            transform=transform,
        )

    # ----------------------------------------------------------------- public API

    @functools.cached_property
    def min_duration(self) -> float:
        """The shortest recording this model accepts, in seconds (`serkit.data.quality.model_min_duration`)."""
        with self._lock:  # openSMILE measures its window with the extractor's own pipeline
            return model_min_duration(self.extractor)

    def predict_signal(
        self,
        signal: np.ndarray,
        sampling_rate: int,
        *,
        segments: bool = False,
        name: str = "<signal>",
        speaker: str | None = None,
    ) -> Prediction:
        """Predict one decoded signal.

        Args:
            signal: Samples, shape (frames,) or (frames, channels), any rate.
            sampling_rate: Rate of `signal` in Hz.
            segments: Window the signal even when it is not longer than `window`.
            name: Names the input in the prediction and in errors.
            speaker: Whose statistics normalise it, for a model with ``speaker_norm``: a
                training speaker or one added with `enroll`; None or an unknown name uses the
                global statistics (logged once per name).

        Returns:
            The prediction (``segments`` set when the signal was windowed).

        Raises:
            AudioError: NaN/Inf samples, empty, too short or too long for the spec.
            serkit.data.quality.AudioQualityError: (an AudioError) every sample is zero, or the
                signal is shorter than `min_duration`; ``code`` says which.
            ValueError: The extractor or classifier rejected the clip (the message names it).
        """
        prepared = self._prepare(signal, sampling_rate, name, segments)
        return self._predict_named(prepared, speaker)

    def _predict_named(self, prepared: "_Prepared", speaker: str | None) -> Prediction:
        """Predict one prepared input; a rejection by the extractor or classifier names it."""
        prepared.speaker = speaker
        try:
            return self._predict_prepared([prepared])[0]
        except ValueError as exc:
            raise ValueError(f"{prepared.name}: {exc}") from exc

    def predict_file(
        self, source: Source, *, segments: bool = False, name: str | None = None, speaker: str | None = None
    ) -> Prediction:
        """Predict one audio file.

        Args:
            source: A path, an open binary file or the file's bytes.
            segments: Window the recording even when it is not longer than `window`.
            name: Names the input when `source` is not a path.
            speaker: See `predict_signal`.

        Returns:
            The prediction.

        Raises:
            AudioError: The file is missing, empty, not audio, truncated, too short or too long.
            ValueError: The extractor or classifier rejected the clip.
        """
        label = _source_name(source, name)
        signal, sampling_rate, notes = self._read(source, label)
        return self._predict_named(self._prepare(signal, sampling_rate, label, segments, notes), speaker)

    def predict_files(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        segments: bool = False,
        progress: bool = False,
        speaker: str | None = None,
    ) -> list[Prediction]:
        """Predict many files, batching their clips; unreadable files do not stop the rest.

        Args:
            paths: Audio files.
            segments: Window every recording.
            progress: Show a tqdm progress bar on stderr.
            speaker: Whose statistics normalise every file (see `predict_signal`).

        Returns:
            One prediction per path, in order; a file that cannot be read or featurised has
            ``error`` set.
        """
        paths = [Path(p) for p in paths]
        results: list[Prediction] = []
        bar = _progress_bar(len(paths), progress)
        try:
            for start in range(0, len(paths), self.batch_size):
                chunk = paths[start : start + self.batch_size]
                items = [self._try_prepare_file(path, segments, speaker) for path in chunk]
                for item in items:
                    if isinstance(item, _Prepared):
                        item.speaker = speaker
                results.extend(self._predict_items(items))
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        return results

    def predict_signals(
        self,
        signals: Sequence[tuple[np.ndarray, int]],
        *,
        segments: bool = False,
        names: Sequence[str] | None = None,
        speakers: Sequence[str | None] | None = None,
        notes: Sequence[Sequence[QualityWarning]] | None = None,
    ) -> list[Prediction]:
        """Predict several decoded signals with batched extractor and classifier calls.

        Args:
            signals: ``(samples, sampling_rate)`` pairs.
            segments: Window every signal.
            names: Names of the inputs (default ``<signal N>``).
            speakers: Speaker of each signal (see `predict_signal`); default: none.
            notes: Findings about how each signal was decoded, to pass on in its prediction's
                ``warnings`` (`serkit.data.quality.decoding_findings`); default: none.

        Returns:
            One prediction per signal, in order; a signal that cannot be used has ``error``
            set and does not affect the others.
        """
        if names is not None and len(names) != len(signals):
            raise ValueError(f"{len(names)} names for {len(signals)} signals")
        if speakers is not None and len(speakers) != len(signals):
            raise ValueError(f"{len(speakers)} speakers for {len(signals)} signals")
        labels = list(names) if names is not None else [f"<signal {i}>" for i in range(len(signals))]
        whose = list(speakers) if speakers is not None else [None] * len(signals)
        items: list[_Prepared | Prediction] = []
        found = list(notes) if notes is not None else [()] * len(signals)
        if len(found) != len(signals):
            raise ValueError(f"{len(found)} lists of notes for {len(signals)} signals")
        for (signal, sampling_rate), name, speaker, noted in zip(signals, labels, whose, found):
            try:
                items.append(self._prepare(signal, sampling_rate, name, segments, noted))
                items[-1].speaker = speaker
            except AudioError as exc:
                items.append(_refused(name, exc))
        return self._predict_items(items)

    # ----------------------------------------------------------------- preparation

    def _read(self, source: Source, label: str) -> tuple[np.ndarray, int, list[QualityWarning]]:
        """Decode within the spec's limits; also what decoding had to warn about (``header``, ``damaged``)."""
        spec = self.audio_spec
        with collect_notes() as notes:
            signal, rate = read(source, max_duration=spec.max_duration, min_duration=spec.min_duration, name=label)
        return signal, rate, decoding_findings(notes)

    def _try_prepare_file(self, path: Path, segments: bool, speaker: str | None = None) -> "_Prepared | Prediction":
        """Decode and window one file, or a failed prediction saying why not (a long file: predicted)."""
        try:
            if self._is_long(path):
                with collect_notes() as notes:
                    streamed = self._predict_streamed(path, segments, speaker)
                streamed.warnings[:0] = decoding_findings(notes)
                return streamed
            signal, sampling_rate, notes = self._read(path, str(path))
            return self._prepare(signal, sampling_rate, str(path), segments, notes)
        except AudioError as exc:
            return _refused(str(path), exc)

    def _prepare(
        self, signal: np.ndarray, sampling_rate: int, name: str, segments: bool, notes: Sequence[QualityWarning] = ()
    ) -> _Prepared:
        """Check quality, resample once at native length, cut the windows, fit each to the extractor's spec.

        `notes` (decoding findings) come first in the item's warnings.
        """
        found = [*notes, *check(signal, int(sampling_rate), min_duration=self.min_duration, name=name)]
        spec = self.audio_spec
        native = preprocess(signal, int(sampling_rate), dataclasses.replace(spec, duration=None), name=name)
        rate = spec.sampling_rate
        duration = native.size / rate
        window = _samples(self.window, rate)
        segmented = segments or native.size > window
        if segmented:
            bounds = segment_bounds(native.size, window, _samples(self.hop, rate))
        else:
            bounds = [(0, native.size)]
        clips = [self._fit(native[start:end]) for start, end in bounds]
        windows = [(start / rate, end / rate) for start, end in bounds]
        return _Prepared(name=name, duration=duration, windows=windows, clips=clips, segmented=segmented, warnings=found)

    def _is_long(self, path: Path) -> bool:
        """Whether `path` is longer than `stream_above` (read from the header, or by decoding)."""
        try:
            if path.stat().st_size < _STREAM_MIN_BYTES:
                return False
        except OSError:
            return False  # reading reports it
        return probe(path, max_duration=self.audio_spec.max_duration).duration > self.stream_above

    def _predict_streamed(self, path: Path, segments: bool, speaker: str | None) -> Prediction:
        """Predict a long file window by window as it is decoded (`serkit.data.audio.stream`).

        The windows, probabilities and quality findings are those of the in-memory path;
        memory holds one decoding block, one window and one batch of clips at a time.
        """
        name = str(path)
        spec = self.audio_spec
        rate = spec.sampling_rate
        window, hop = _samples(self.window, rate), _samples(self.hop, rate)
        meter, native_rate = LevelMeter(), [rate]

        def measure(block: np.ndarray, sampling_rate: int) -> None:
            meter.add(block)
            native_rate[0] = sampling_rate

        buffer = np.zeros(0, dtype=np.float32)
        offset = next_start = 0  # sample index of buffer[0]; start of the next window
        bounds: list[tuple[int, int]] = []
        clips: list[np.ndarray] = []
        rows: list[np.ndarray] = []

        def flush() -> None:
            if clips:
                rows.append(self.predict_proba_clips(clips, speakers=[speaker] * len(clips)))
                clips.clear()

        blocks = stream(path, dataclasses.replace(spec, duration=None), block_seconds=max(60.0, 4 * self.window),
                        name=name, native=measure, warn_silent=False)
        try:
            for block in blocks:
                buffer = np.concatenate([buffer, block])
                while next_start + window <= offset + buffer.size:
                    begin = next_start - offset
                    clips.append(self._fit(buffer[begin : begin + window]))
                    bounds.append((next_start, next_start + window))
                    next_start += hop
                    if len(clips) >= self.batch_size:
                        flush()
                drop = max(0, min(next_start - offset, buffer.size - window))  # keep the last window
                buffer, offset = buffer[drop:].copy(), offset + drop
            total = offset + buffer.size
            found = check_levels(meter.levels(), native_rate[0], min_duration=self.min_duration, name=name)
            if not bounds or bounds[-1][1] < total:  # as segment_bounds: one more window aligned to the end
                start = max(0, total - window)
                clips.append(self._fit(buffer[start - offset :]))
                bounds.append((start, total))
            flush()
        except ValueError as exc:
            if isinstance(exc, AudioError):
                raise
            return Prediction.failed(name, f"{name}: {exc}", duration=offset / rate)
        item = _Prepared(name=name, duration=total / rate, windows=[(a / rate, b / rate) for a, b in bounds],
                         clips=[], segmented=segments or total > window, warnings=found, speaker=speaker)
        return self._assemble(item, np.concatenate(rows))

    def _fit(self, clip: np.ndarray) -> np.ndarray:
        """Pad or cut a window to the extractor's fixed duration (when it has one)."""
        spec = self.audio_spec
        if spec.num_samples is None:
            return np.ascontiguousarray(clip)
        return fix_length(clip, spec.num_samples, spec.crop)

    # ----------------------------------------------------------------- prediction

    def _predict_items(self, items: list["_Prepared | Prediction"]) -> list[Prediction]:
        """Predict the prepared items together; failures already recorded pass through."""
        prepared = [item for item in items if isinstance(item, _Prepared)]
        done: dict[int, Prediction] = {}
        if prepared:
            try:
                for item, prediction in zip(prepared, self._predict_prepared(prepared)):
                    done[id(item)] = prediction
            except ValueError:
                # One bad clip fails a whole batch: retry one by one so only it is marked.
                for item in prepared:
                    done[id(item)] = self._predict_one_safely(item)
        return [done[id(item)] if isinstance(item, _Prepared) else item for item in items]

    def _predict_one_safely(self, item: _Prepared) -> Prediction:
        try:
            return self._predict_prepared([item])[0]
        except ValueError as exc:
            return Prediction.failed(item.name, f"{item.name}: {exc}", duration=item.duration, warnings=item.warnings)

    def _predict_prepared(self, prepared: list[_Prepared]) -> list[Prediction]:
        """Run every clip of every item through the extractor and classifier, then regroup."""
        clips = [clip for item in prepared for clip in item.clips]
        speakers = [item.speaker for item in prepared for _ in item.clips]
        probabilities = self.predict_proba_clips(clips, speakers=speakers)
        results, position = [], 0
        for item in prepared:
            rows = probabilities[position : position + len(item.clips)]
            position += len(item.clips)
            results.append(self._assemble(item, rows))
        return results

    def predict_proba_clips(
        self, clips: Sequence[np.ndarray], *, speakers: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """Class probabilities of clips already prepared for the extractor.

        Args:
            clips: 1-D float32 signals at ``audio_spec.sampling_rate`` (fitted to its duration).
            speakers: Speaker of each clip, for a model with ``speaker_norm`` (see
                `predict_signal`); ignored by other models.

        Returns:
            (len(clips), len(labels)) float64 probabilities.

        Raises:
            ValueError: The extractor or the classifier rejected a clip.
        """
        parts = []
        for start in range(0, len(clips), self.batch_size):
            batch = list(clips[start : start + self.batch_size])
            whose = list(speakers[start : start + self.batch_size]) if speakers is not None else [None] * len(batch)
            with self._lock:
                X = self._inputs(batch)
                if self.transform is not None:
                    X = self.transform.transform(X, [w or "" for w in whose], self._statistics_for(whose))
                parts.append(np.asarray(self.model.predict_proba(X), dtype=np.float64))
        if not parts:
            return np.zeros((0, len(self.labels)))
        return np.concatenate(parts)

    def enroll(self, speaker: str, sources: Sequence[Source]) -> Any:
        """Describe a speaker by a few of their recordings, for a model with ``speaker_norm``.

        Each recording's windows are featurised as in prediction; their statistics (labels are
        not needed) normalise later predictions made with ``speaker=speaker``.

        Args:
            speaker: The name to predict with.
            sources: That speaker's recordings (paths, open files or bytes); about ten
                utterances describe a speaker well (README, results).

        Returns:
            The speaker's `serkit.models.transforms.SpeakerStats`.

        Raises:
            ValueError: The model has no speaker normalisation, or no recording given.
            AudioError: A recording cannot be read (named).
        """
        if self.transform is None:
            raise ValueError(f"{self.model_dir}: this model does not normalise per speaker (no speaker_norm)")
        if not sources:
            raise ValueError(f"enrolment of speaker {speaker!r} needs at least one recording")
        clips = []
        for source in sources:
            label = _source_name(source, None)
            signal, rate, _ = self._read(source, label)
            clips.extend(self._prepare(signal, rate, label, False).clips)
        parts = []
        for start in range(0, len(clips), self.batch_size):
            with self._lock:
                parts.append(self._inputs(list(clips[start : start + self.batch_size])))
        stats = self.transform.speaker_statistics(np.concatenate(parts))
        self.enrolled[str(speaker)] = stats
        logger.info("enrolled speaker %r from %d recording(s), %d window(s)", speaker, len(sources), len(clips))
        return stats

    def _statistics_for(self, speakers: Sequence[str | None]) -> dict[str, Any]:
        """Statistics of each named speaker; unknown ones get the global statistics (warned once)."""
        known = {**self.transform.speakers_, **self.enrolled}
        chosen: dict[str, Any] = {}
        for speaker in set(speakers):
            stats = known.get(speaker) if speaker else None
            if stats is None:
                if speaker not in self._unknown_speakers:
                    self._unknown_speakers.add(speaker)
                    who = f"speaker {speaker!r} is not known" if speaker else "no speaker given"
                    logger.warning("%s: normalising with the training rows' global statistics; "
                                   "enroll the speaker for better predictions", who)
                stats = self.transform.global_
            chosen[speaker or ""] = stats
        return chosen

    def known_speakers(self) -> list[str]:
        """Speakers whose statistics this model can use (training speakers and enrolled ones)."""
        if self.transform is None:
            return []
        return sorted({*self.transform.speakers_, *self.enrolled})

    def _inputs(self, clips: list[np.ndarray]) -> np.ndarray:
        """One extractor call: the classifier's input rows of `clips`, before any transform."""
        features = self._extract_clips(clips)
        return _stack([self._rows(f) for f in features], self.input_kind)

    def _rows(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """The output the classifier reads, with frame maps padded or cut as in training."""
        try:
            array = features[self.input_kind]
        except KeyError:
            raise ValueError(f"the extractor gave outputs {sorted(features)}, not {self.input_kind!r}") from None
        if self.input_frames is None or array.ndim < 2 or array.shape[-2] == self.input_frames:
            return array
        return _fix_frames(array, self.input_frames)

    def _assemble(self, item: _Prepared, rows: np.ndarray) -> Prediction:
        overall = rows.mean(axis=0)
        segments = None
        if item.segmented:
            segments = [
                Segment(start=round(start, 6), end=round(end, 6), label=self._top(row), probabilities=self._named(row))
                for (start, end), row in zip(item.windows, rows)
            ]
        return Prediction(
            source=item.name,
            label=self._top(overall),
            probabilities=self._named(overall),
            duration=round(item.duration, 6),
            segments=segments,
            warnings=[*item.warnings, *self._speaker_findings(item.speaker)],
        )

    def _speaker_findings(self, speaker: str | None) -> list[QualityWarning]:
        """A ``no_speaker_statistics`` finding when a speaker_norm model fell back to global statistics."""
        if self.transform is None or (speaker and (speaker in self.enrolled or speaker in self.transform.speakers_)):
            return []
        who = f"speaker {speaker!r} is not known" if speaker else "no speaker was given"
        return [QualityWarning("no_speaker_statistics", f"{who}: normalised with the training speakers' global "
                               "statistics; enrol the speaker (a few recordings) for better predictions")]

    def _named(self, row: np.ndarray) -> dict[str, float]:
        return {label: float(p) for label, p in zip(self.labels, row)}

    def _top(self, row: np.ndarray) -> str:
        return self.labels[int(np.argmax(row))]

    # ----------------------------------------------------------------- where features run

    #: None, or a function ``(clips, sampling_rate) -> list of feature dicts`` called instead
    #: of ``extractor.extract_batch``: the HTTP service sets its pool of worker processes here
    #: for extractors without a batch API (`serkit.serving.pool.FeaturePool.map`).
    feature_map: Any = None

    def _extract_clips(self, clips: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """The extractor's outputs for `clips`: through `feature_map` when one is set."""
        if self.feature_map is not None:
            return self.feature_map(clips, self.audio_spec.sampling_rate)
        return self.extractor.extract_batch(clips, self.audio_spec.sampling_rate)


# --------------------------------------------------------------------------- helpers


def _check_settings(backend: str, window: float, hop: float, batch_size: int) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if not (isinstance(window, (int, float)) and math.isfinite(window) and window > 0):
        raise ValueError(f"window must be a positive number of seconds, got {window!r}")
    if not (isinstance(hop, (int, float)) and math.isfinite(hop) and 0 < hop <= window):
        raise ValueError(f"hop must be a positive number of seconds no larger than window ({window}), got {hop!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _samples(seconds: float, rate: int) -> int:
    return max(1, int(round(seconds * rate)))


def _refused(name: str, exc: AudioError) -> Prediction:
    """The failed prediction of an input that could not be read or was refused for its quality."""
    return Prediction.failed(name, str(exc), warnings=getattr(exc, "warnings", ()))


def _source_name(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, bytes):
        return "<bytes>"
    return str(getattr(source, "name", "<audio stream>"))


def _stack(arrays: list[np.ndarray], input_kind: str) -> np.ndarray:
    """Stack per-clip features into the (N, ...) array the classifier takes."""
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"feature output {input_kind!r} has different shapes across clips {sorted(shapes)}; "
            "this model needs clips of equal length (an AudioSpec with a fixed duration)"
        )
    return np.stack(arrays)


def _fix_frames(array: np.ndarray, frames: int) -> np.ndarray:
    """Zero-pad at the end or cut the time axis (-2) to `frames`, as the experiment runner does."""
    return fix_length(array, frames, axis=-2)


def _load_classifier(model_dir: Path, info: _ModelInfo, backend: str) -> Any:
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


def _default_workdir(model_dir: Path, info: _ModelInfo, backend: str) -> Path:
    """Where the extractor keeps derived files: the export folder, or its feature cache folder."""
    if backend == "onnx":
        return model_dir / "onnx"
    from serkit.features.cache import default_cache_root

    return default_cache_root() / str(info.fingerprint or "unknown")


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="file", file=sys.stderr, desc="predict")


# --------------------------------------------------------------------------- output formats

#: Output formats of `format_predictions`.
FORMATS: tuple[str, ...] = ("table", "json", "csv")


def format_predictions(
    predictions: Sequence[Prediction],
    labels: Sequence[str],
    fmt: str = "table",
    *,
    segments: bool = False,
    info: dict[str, Any] | None = None,
) -> str:
    """Predictions as text: an aligned table, JSON or CSV.

    Args:
        predictions: What `Predictor.predict_files` returned.
        labels: The model's labels (probability columns, in order).
        fmt: ``"table"``, ``"json"`` or ``"csv"``.
        segments: Table and CSV: add one row per window under each windowed recording.
            JSON always carries the segments a prediction has.

    Quality warnings: JSON lists them per prediction (``warnings``: code and message); CSV
    has a ``warnings`` column of codes joined by ``;``; the table prints each message on a
    line of its own under the prediction.
        info: JSON only: extra top-level facts (model folder, backend).

    Returns:
        The text, ending with a newline.

    Raises:
        ValueError: Unknown format.
    """
    if fmt == "json":
        document = {**(info or {}), "labels": list(labels), "predictions": [p.to_dict() for p in predictions]}
        return json.dumps(document, indent=2) + "\n"
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    rows = _flat_rows(predictions, labels, segments)
    return _csv_text(rows, labels) if fmt == "csv" else _table_text(rows, labels)


def _flat_rows(predictions: Sequence[Prediction], labels: Sequence[str], segments: bool) -> list[dict[str, Any]]:
    """One row per prediction (segment ""), then, when asked, one per window (segment 1, 2, ...)."""
    rows = []
    for p in predictions:
        rows.append({"source": p.source, "segment": "", "start": 0.0, "end": p.duration, "label": p.label or "",
                     "probabilities": p.probabilities, "error": p.error or "", "warnings": p.warnings})
        if segments and p.segments:
            for number, s in enumerate(p.segments, 1):
                rows.append({"source": p.source, "segment": number, "start": s.start, "end": s.end, "label": s.label,
                             "probabilities": s.probabilities, "error": "", "warnings": []})
    return rows


def _csv_text(rows: list[dict[str, Any]], labels: Sequence[str]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["source", "segment", "start", "end", "label", *[f"prob_{label}" for label in labels], "error", "warnings"])
    for row in rows:
        probabilities = [f"{row['probabilities'][label]:.6f}" if label in row["probabilities"] else "" for label in labels]
        writer.writerow([row["source"], row["segment"], f"{row['start']:.3f}", f"{row['end']:.3f}", row["label"],
                         *probabilities, row["error"], ";".join(w.code for w in row["warnings"])])
    return buffer.getvalue()


def _table_text(rows: list[dict[str, Any]], labels: Sequence[str]) -> str:
    names = [row["source"] if row["segment"] == "" else f"  {row['start']:.2f}-{row['end']:.2f} s" for row in rows]
    width = max([len("file"), *map(len, names)])
    label_width = max([len("label"), *map(len, labels)])
    columns = [max(6, len(label)) for label in labels]
    header = f"{'file':<{width}}  {'label':<{label_width}}  " + "  ".join(f"{l:>{w}}" for l, w in zip(labels, columns))
    lines = [header.rstrip()]
    for name, row in zip(names, rows):
        if row["error"]:
            lines.append(f"{name:<{width}}  ERROR: {row['error']}")
            continue
        values = "  ".join(f"{row['probabilities'][l]:>{w}.3f}" for l, w in zip(labels, columns))
        lines.append(f"{name:<{width}}  {row['label']:<{label_width}}  {values}")
        lines.extend(f"  warning ({w.code}): {w.message}" for w in row["warnings"])
    return "\n".join(lines) + "\n"

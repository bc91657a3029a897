"""Predict emotions of audio with a saved model: files, bytes, signals, long recordings.

`Predictor.load(model_dir)` rebuilds the audio preprocessing, feature extractor, classifier
(torch / scikit-learn, or the ONNX export) and any ``speaker_norm`` transform from the folder's
``model.json`` (`serkit.inference.loading`). A `Predictor` decodes each input and checks its
quality first (`serkit.data.quality`): a silent input or one shorter than `min_duration` is
refused (`AudioQualityError`; in batch calls a `Prediction` with ``error`` set), while
near-silence, clipping and short audio come back as ``Prediction.warnings``. A recording longer
than ``window`` seconds is cut into windows (`serkit.inference.windows`; files over
``stream_above`` seconds as they decode, `serkit.inference.streaming`), and the clips of several
inputs run through the extractor and classifier in batches under a lock, so threads may share
one `Predictor` (`serkit.inference.model_runner`); an input that cannot be decoded or
featurised gets a failed `Prediction` and the others go on. `Prediction`, `Segment`,
`segment_bounds`, `format_predictions` and `FORMATS` are still importable from here.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np

from serkit.data.audio import AudioError, read
from serkit.data.audio_notes import collect_notes
from serkit.data.quality import QualityWarning, decoding_findings
from serkit.features.base import Extractor
from serkit.inference.formatting import FORMATS, format_predictions
from serkit.inference.loading import load_parts
from serkit.inference.model_runner import ModelRunner
from serkit.inference.results import Prediction, Segment, refused
from serkit.inference.streaming import is_long, stream_windows
from serkit.inference.windows import Prepared, prepare, segment_bounds

__all__ = ["BACKENDS", "FORMATS", "Prediction", "Predictor", "Segment", "format_predictions", "segment_bounds"]

logger = logging.getLogger(__name__)

#: Where the classifier runs.
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx")
#: Default window and hop of long recordings, in seconds (the paper's clip length, half of it).
DEFAULT_WINDOW = 7.0
DEFAULT_HOP = 3.5
#: Clips (or windows) per extractor and classifier call.
DEFAULT_BATCH_SIZE = 32
#: Files longer than this (seconds) are predicted as they are decoded, window by window, so
#: memory does not grow with their length (`Predictor.stream_above`).
STREAM_ABOVE_S = 600.0

Source = str | os.PathLike | BinaryIO | bytes


class Predictor(ModelRunner):
    """A saved model with its preprocessing and features, ready to predict; build it with `Predictor.load`.

    Running prepared clips through the extractor and classifier is `ModelRunner`'s part.

    Attributes:
        model_dir: The model folder.
        labels: The model's labels, in probability-column order.
        audio_spec: How clips are prepared for the extractor (``extractor.spec``).
        extractor: The feature extractor, set up.
        model: The classifier: a serkit `Classifier` (torch backend) or an
            `serkit.inference.export.OnnxClassifier` (ONNX backend); both have ``predict_proba``.
        input_kind: The extractor output the classifier reads.
        backend: The backend in use, ``"torch"`` or ``"onnx"``.
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
        super().__init__(labels=labels, extractor=extractor, model=model, input_kind=input_kind, batch_size=batch_size,
                         input_frames=input_frames, transform=transform)
        self.model_dir = model_dir
        self.backend = backend
        self.window = float(window)
        self.hop = float(hop)
        self.fingerprint = fingerprint
        self.stream_above = STREAM_ABOVE_S

    # ----------------------------------------------------------------- construction

    @classmethod
    def load(
        cls,
        model_dir: str | os.PathLike,
        *,
        backend: Literal["auto", "torch", "onnx"] = "auto",
        window: float = DEFAULT_WINDOW,
        hop: float = DEFAULT_HOP,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workdir: str | os.PathLike | None = None,
    ) -> "Predictor":
        """Load a model folder and rebuild its features.

        Args:
            model_dir: A folder written by `serkit.models.io.save_model`.
            backend: ``"torch"`` (the saved torch / scikit-learn model), ``"onnx"`` (the
                files of `serkit.inference.export.export_onnx`; with an exported SSL encoder, that
                too) or ``"auto"``: the ONNX export when the folder has one made from these model
                files and onnxruntime is installed, else the saved model
                (`serkit.inference.loading.resolve_backend`). ``Predictor.backend`` is the one used.
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
        folder = Path(model_dir)
        parts = load_parts(folder, backend, Path(workdir) if workdir is not None else None)
        info = parts.info
        logger.info(
            "loaded %s (%s backend): %s features -> %s, labels %s", folder, parts.backend, parts.extractor.name,
            info.name, info.labels,
        )
        return cls(
            folder,
            labels=info.labels,
            extractor=parts.extractor,
            model=parts.model,
            input_kind=info.input_kind,
            backend=parts.backend,
            window=window,
            hop=hop,
            batch_size=batch_size,
            fingerprint=info.fingerprint,
            input_frames=info.input_frames,
            transform=parts.transform,
        )

    # ----------------------------------------------------------------- public API

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

    def _predict_named(self, prepared: Prepared, speaker: str | None) -> Prediction:
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
                    if isinstance(item, Prepared):
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
        items: list[Prepared | Prediction] = []
        found = list(notes) if notes is not None else [()] * len(signals)
        if len(found) != len(signals):
            raise ValueError(f"{len(found)} lists of notes for {len(signals)} signals")
        for (signal, sampling_rate), name, speaker, noted in zip(signals, labels, whose, found):
            try:
                items.append(self._prepare(signal, sampling_rate, name, segments, noted))
                items[-1].speaker = speaker
            except AudioError as exc:
                items.append(refused(name, exc))
        return self._predict_items(items)

    # ----------------------------------------------------------------- preparation

    def _read(self, source: Source, label: str) -> tuple[np.ndarray, int, list[QualityWarning]]:
        """Decode within the spec's limits; also what decoding had to warn about (``header``, ``damaged``)."""
        spec = self.audio_spec
        with collect_notes() as notes:
            signal, rate = read(source, max_duration=spec.max_duration, min_duration=spec.min_duration, name=label)
        return signal, rate, decoding_findings(notes)

    def _try_prepare_file(self, path: Path, segments: bool, speaker: str | None = None) -> Prepared | Prediction:
        """Decode and window one file, or a failed prediction saying why not (a long file: predicted)."""
        try:
            if is_long(path, self.stream_above, self.audio_spec.max_duration):
                with collect_notes() as notes:
                    streamed = self._predict_streamed(path, segments, speaker)
                streamed.warnings[:0] = decoding_findings(notes)
                return streamed
            signal, sampling_rate, notes = self._read(path, str(path))
            return self._prepare(signal, sampling_rate, str(path), segments, notes)
        except AudioError as exc:
            return refused(str(path), exc)

    def _prepare(
        self, signal: np.ndarray, sampling_rate: int, name: str, segments: bool, notes: Sequence[QualityWarning] = ()
    ) -> Prepared:
        """Check quality and cut the windows at this predictor's settings (`serkit.inference.windows.prepare`).

        `notes` (decoding findings) come first in the item's warnings.
        """
        return prepare(signal, sampling_rate, name, segments, notes, spec=self.audio_spec, window=self.window,
                       hop=self.hop, min_duration=self.min_duration)

    def _predict_streamed(self, path: Path, segments: bool, speaker: str | None) -> Prediction:
        """Predict a long file window by window as it is decoded (`serkit.inference.streaming`)."""
        streamed = stream_windows(
            path, spec=self.audio_spec, window=self.window, hop=self.hop, batch_size=self.batch_size,
            min_duration=self.min_duration, segments=segments,
            classify=lambda clips: self.predict_proba_clips(clips, speakers=[speaker] * len(clips)),
        )
        if isinstance(streamed, Prediction):
            return streamed
        item, rows = streamed
        item.speaker = speaker
        return self._assemble(item, rows)

    # ----------------------------------------------------------------- enrolment

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


def _source_name(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, bytes):
        return "<bytes>"
    return str(getattr(source, "name", "<audio stream>"))


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="file", file=sys.stderr, desc="predict")

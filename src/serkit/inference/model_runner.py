"""The model half of a `Predictor`: prepared clips through the extractor and classifier, in batches.

`ModelRunner` holds a set-up feature extractor and a classifier with what feeding it needs (the
extractor output it reads, the frame count maps were fitted to, the ``speaker_norm`` transform
and the speakers' statistics) and runs clips already fitted to the extractor's spec through
them: one ``extract_batch`` (or the service's worker pool, `ModelRunner.feature_map`) and one
``predict_proba`` per ``batch_size`` clips, under a lock so threads may share it. It regroups the
rows into one `Prediction` per `serkit.inference.windows.Prepared` input; when one clip makes a
batch fail, the inputs are retried one by one so only the bad one gets ``error`` set.
`serkit.inference.predictor.Predictor` adds loading, decoding and windowing on top.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from serkit.data.audio import fix_length
from serkit.data.quality import model_min_duration
from serkit.features.base import Extractor
from serkit.inference.results import Prediction, assemble
from serkit.inference.speakers import known_speakers, speaker_findings, statistics_for
from serkit.inference.windows import Prepared

__all__ = ["ModelRunner"]


class ModelRunner:
    """A feature extractor and classifier ready to run on prepared clips (the base of `Predictor`).

    Attributes:
        labels: The model's labels, in probability-column order.
        extractor: The feature extractor, set up.
        audio_spec: How clips are prepared for the extractor (``extractor.spec``).
        model: The classifier; it has ``predict_proba``.
        input_kind: The extractor output the classifier reads.
        batch_size: Clips per extractor and classifier call.
        input_frames: Frame maps are padded or cut to this many frames (as in training), or None.
        transform: The model's `serkit.models.transforms.SpeakerNorm`, or None.
        enrolled: Speaker -> statistics added by enrolment (beside the training speakers'
            statistics stored in the model).
    """

    def __init__(
        self,
        *,
        labels: list[str],
        extractor: Extractor,
        model: Any,
        input_kind: str,
        batch_size: int,
        input_frames: int | None = None,
        transform: Any = None,
    ) -> None:
        self.labels = labels
        self.extractor = extractor
        self.audio_spec = extractor.spec
        self.model = model
        self.input_kind = input_kind
        self.batch_size = int(batch_size)
        self.input_frames = input_frames
        self.transform = transform
        self.enrolled: dict[str, Any] = {}
        self._unknown_speakers: set[str | None] = set()
        self._lock = threading.Lock()

    @functools.cached_property
    def min_duration(self) -> float:
        """The shortest recording this model accepts, in seconds (`serkit.data.quality.model_min_duration`)."""
        with self._lock:  # openSMILE measures its window with the extractor's own pipeline
            return model_min_duration(self.extractor)

    # ----------------------------------------------------------------- prediction

    def predict_proba_clips(
        self, clips: Sequence[np.ndarray], *, speakers: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """Class probabilities of clips already prepared for the extractor.

        Args:
            clips: 1-D float32 signals at ``audio_spec.sampling_rate`` (fitted to its duration).
            speakers: Speaker of each clip, for a model with ``speaker_norm`` (see
                `Predictor.predict_signal`); ignored by other models.

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

    def _predict_items(self, items: list["Prepared | Prediction"]) -> list[Prediction]:
        """Predict the prepared items together; failures already recorded pass through."""
        prepared = [item for item in items if isinstance(item, Prepared)]
        done: dict[int, Prediction] = {}
        if prepared:
            try:
                for item, prediction in zip(prepared, self._predict_prepared(prepared)):
                    done[id(item)] = prediction
            except ValueError:
                # One bad clip fails a whole batch: retry one by one so only it is marked.
                for item in prepared:
                    done[id(item)] = self._predict_one_safely(item)
        return [done[id(item)] if isinstance(item, Prepared) else item for item in items]

    def _predict_one_safely(self, item: Prepared) -> Prediction:
        try:
            return self._predict_prepared([item])[0]
        except ValueError as exc:
            return Prediction.failed(item.name, f"{item.name}: {exc}", duration=item.duration, warnings=item.warnings)

    def _predict_prepared(self, prepared: list[Prepared]) -> list[Prediction]:
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

    def _statistics_for(self, speakers: Sequence[str | None]) -> dict[str, Any]:
        """Statistics of each named speaker; unknown ones get the global statistics (warned once)."""
        return statistics_for(self.transform, self.enrolled, self._unknown_speakers, speakers)

    def known_speakers(self) -> list[str]:
        """Speakers whose statistics this model can use (training speakers and enrolled ones)."""
        return known_speakers(self.transform, self.enrolled)

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

    def _assemble(self, item: Prepared, rows: np.ndarray) -> Prediction:
        findings = speaker_findings(self.transform, self.enrolled, item.speaker)
        return assemble(item, rows, self.labels, findings)

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

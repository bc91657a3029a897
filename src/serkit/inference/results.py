"""What a prediction returns: `Prediction` for one input, with a `Segment` per window of a long recording.

`Prediction` carries the label, the probabilities (a recording's are the mean over its windows,
its label their argmax), the decoded duration, the per-window `Segment` list when the recording
was windowed, and the quality findings (`serkit.data.quality.QualityWarning`) beside the label;
an input that could not be predicted gets one with ``error`` set (`Prediction.failed`, `refused`).
`assemble` turns a prepared input's probability rows into its `Prediction`. Plain data only:
`serkit.Prediction` imports no model code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from serkit.data.quality import QualityWarning

if TYPE_CHECKING:
    from serkit.data.audio import AudioError
    from serkit.inference.windows import Prepared

__all__ = ["Prediction", "Segment", "assemble", "refused"]


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


def refused(name: str, exc: AudioError) -> Prediction:
    """The failed prediction of an input that could not be read or was refused for its quality."""
    return Prediction.failed(name, str(exc), warnings=getattr(exc, "warnings", ()))


def assemble(
    item: Prepared, rows: np.ndarray, labels: Sequence[str], findings: Sequence[QualityWarning] = ()
) -> Prediction:
    """The prediction of a prepared input from its windows' probability rows.

    Args:
        item: The input, decoded and cut into windows (`serkit.inference.windows.Prepared`).
        rows: (windows, labels) probabilities, one row per window of `item`.
        labels: The model's labels, in column order.
        findings: Warnings to add after the item's own (the speaker statistics used).

    Returns:
        The mean of the rows with its argmax label, and one `Segment` per window when the
        item was windowed.
    """
    overall = rows.mean(axis=0)
    segments = None
    if item.segmented:
        segments = [
            Segment(start=round(start, 6), end=round(end, 6), label=_top(row, labels), probabilities=_named(row, labels))
            for (start, end), row in zip(item.windows, rows)
        ]
    return Prediction(
        source=item.name,
        label=_top(overall, labels),
        probabilities=_named(overall, labels),
        duration=round(item.duration, 6),
        segments=segments,
        warnings=[*item.warnings, *findings],
    )


def _named(row: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    return {label: float(p) for label, p in zip(labels, row)}


def _top(row: np.ndarray, labels: Sequence[str]) -> str:
    return labels[int(np.argmax(row))]

"""Cutting a decoded recording into the windows a model reads.

A recording longer than the predictor's ``window`` seconds (or any recording when segments
are asked for) is resampled once to the spec's rate at its native length, cut into windows of
``window`` seconds every ``hop`` seconds (`segment_bounds`: the last window aligned to the end,
so every window is full length), and each window is brought to the extractor's spec (padded or
cut, `fit_clip`) as a clip would be. `prepare` does all of it after the quality check and
returns a `Prepared` input: its name, duration, window times and clips, ready for the
extractor; `serkit.inference.streaming` cuts a long file into the same windows as it decodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from serkit.data.audio import AudioSpec, fix_length, preprocess
from serkit.data.quality import QualityWarning, check

__all__ = ["Prepared", "fit_clip", "prepare", "samples", "segment_bounds"]


@dataclass
class Prepared:
    """An input decoded to the spec's rate at native length, with its windows."""

    name: str
    duration: float
    windows: list[tuple[float, float]]
    clips: list[np.ndarray]
    segmented: bool
    warnings: list[QualityWarning] = field(default_factory=list)  # serkit.data.quality findings
    speaker: str | None = None  # whose statistics normalise it (models with speaker_norm)


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


def samples(seconds: float, rate: int) -> int:
    """`seconds` as a whole number of samples at `rate` (at least one)."""
    return max(1, int(round(seconds * rate)))


def fit_clip(clip: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """Pad or cut a window to the extractor's fixed duration (when it has one)."""
    if spec.num_samples is None:
        return np.ascontiguousarray(clip)
    return fix_length(clip, spec.num_samples, spec.crop)


def prepare(
    signal: np.ndarray,
    sampling_rate: int,
    name: str,
    segments: bool,
    notes: Sequence[QualityWarning] = (),
    *,
    spec: AudioSpec,
    window: float,
    hop: float,
    min_duration: float,
) -> Prepared:
    """Check quality, resample once at native length, cut the windows, fit each to the extractor's spec.

    Args:
        signal: Samples, shape (frames,) or (frames, channels), any rate.
        sampling_rate: Rate of `signal` in Hz.
        name: Names the input in findings and errors.
        segments: Window the signal even when it is not longer than `window`.
        notes: Decoding findings; they come first in the item's warnings.
        spec: The extractor's spec (its rate; its duration, when fixed, for each window).
        window: Window length in seconds.
        hop: Step between windows in seconds.
        min_duration: The model's shortest accepted recording, in seconds.

    Raises:
        AudioError: NaN/Inf samples, empty, too short or too long for the spec.
        serkit.data.quality.AudioQualityError: Silent, or shorter than `min_duration`.
    """
    found = [*notes, *check(signal, int(sampling_rate), min_duration=min_duration, name=name)]
    native = preprocess(signal, int(sampling_rate), dataclasses.replace(spec, duration=None), name=name)
    rate = spec.sampling_rate
    duration = native.size / rate
    width = samples(window, rate)
    segmented = segments or native.size > width
    if segmented:
        bounds = segment_bounds(native.size, width, samples(hop, rate))
    else:
        bounds = [(0, native.size)]
    clips = [fit_clip(native[start:end], spec) for start, end in bounds]
    windows = [(start / rate, end / rate) for start, end in bounds]
    return Prepared(name=name, duration=duration, windows=windows, clips=clips, segmented=segmented, warnings=found)

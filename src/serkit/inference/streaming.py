"""Predicting a long file window by window as it is decoded, so memory does not grow with its length.

`Predictor.predict_files` streams a file longer than ``stream_above`` seconds (`is_long`: from
its header, or by decoding; files under 1 MiB never qualify) through `stream_windows` instead
of decoding it whole: `serkit.data.audio.stream` hands over blocks at the spec's rate, the
windows of `serkit.inference.windows.segment_bounds` are cut from them as they arrive and
classified a batch at a time, and the levels are metered on the way for the quality check. The
windows, probabilities and findings are those of the in-memory path; memory holds one decoding
block, one window and one batch of clips at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from serkit.data.audio import AudioError, AudioSpec, probe, stream
from serkit.data.quality import LevelMeter, check_levels
from serkit.inference.results import Prediction
from serkit.inference.windows import Prepared, fit_clip, samples

__all__ = ["STREAM_MIN_BYTES", "is_long", "stream_windows"]

#: Files smaller than this are never long enough to stream (16 kbit/s Opus: about 8 minutes).
STREAM_MIN_BYTES = 1 << 20


def is_long(path: Path, above: float, max_duration: float | None) -> bool:
    """Whether `path` is longer than `above` seconds (read from the header, or by decoding)."""
    try:
        if path.stat().st_size < STREAM_MIN_BYTES:
            return False
    except OSError:
        return False  # reading reports it
    return probe(path, max_duration=max_duration).duration > above


def stream_windows(
    path: Path,
    *,
    spec: AudioSpec,
    window: float,
    hop: float,
    batch_size: int,
    min_duration: float,
    segments: bool,
    classify: Callable[[list[np.ndarray]], np.ndarray],
) -> tuple[Prepared, np.ndarray] | Prediction:
    """Decode a long file block by block, cutting and classifying its windows as they arrive.

    Args:
        path: The audio file.
        spec: The extractor's spec (rate; duration of each window when fixed).
        window: Window length in seconds.
        hop: Step between windows in seconds.
        batch_size: Windows per `classify` call.
        min_duration: The model's shortest accepted recording, in seconds.
        segments: Mark the result windowed even when it is a single window.
        classify: Windows (fitted to `spec`) -> their (N, labels) probabilities.

    Returns:
        The file as a `Prepared` item (windows, duration, quality findings; no clips kept) and
        the probability rows of its windows; or, when the extractor or classifier rejected a
        window (a ValueError), a failed `Prediction` naming the file.

    Raises:
        AudioError: The file cannot be decoded, or it is refused for its quality.
    """
    name = str(path)
    rate = spec.sampling_rate
    width, step = samples(window, rate), samples(hop, rate)
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
            rows.append(classify(list(clips)))
            clips.clear()

    blocks = stream(path, dataclasses.replace(spec, duration=None), block_seconds=max(60.0, 4 * window),
                    name=name, native=measure, warn_silent=False)
    try:
        for block in blocks:
            buffer = np.concatenate([buffer, block])
            while next_start + width <= offset + buffer.size:
                begin = next_start - offset
                clips.append(fit_clip(buffer[begin : begin + width], spec))
                bounds.append((next_start, next_start + width))
                next_start += step
                if len(clips) >= batch_size:
                    flush()
            drop = max(0, min(next_start - offset, buffer.size - width))  # keep the last window
            buffer, offset = buffer[drop:].copy(), offset + drop
        total = offset + buffer.size
        found = check_levels(meter.levels(), native_rate[0], min_duration=min_duration, name=name)
        if not bounds or bounds[-1][1] < total:  # as segment_bounds: one more window aligned to the end
            start = max(0, total - width)
            clips.append(fit_clip(buffer[start - offset :], spec))
            bounds.append((start, total))
        flush()
    except ValueError as exc:
        if isinstance(exc, AudioError):
            raise
        return Prediction.failed(name, f"{name}: {exc}", duration=offset / rate)
    item = Prepared(name=name, duration=total / rate, windows=[(a / rate, b / rate) for a, b in bounds],
                    clips=[], segmented=segments or total > width, warnings=found)
    return item, np.concatenate(rows)

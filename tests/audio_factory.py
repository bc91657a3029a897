"""Realistic synthetic audio for tests: voiced, speech-like signals written in any format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def voiced(seconds: float = 1.0, sampling_rate: int = 16000, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A harmonic-rich vowel-like signal with a syllable-rate envelope, float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sampling_rate))) / sampling_rate
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sampling_rate
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 4 * t)) + 0.05
    signal = harmonics * envelope + 0.01 * rng.standard_normal(t.size)
    return (0.5 * signal / np.max(np.abs(signal))).astype(np.float32)


def write(
    path: str | Path,
    seconds: float = 1.0,
    sampling_rate: int = 16000,
    channels: int = 1,
    format: str | None = None,
    subtype: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a voiced signal to `path` (format from the extension unless given); returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mono = voiced(seconds, sampling_rate, seed=seed)
    data = np.stack([mono * (0.8 ** c) for c in range(channels)], axis=1) if channels > 1 else mono
    sf.write(path, data, sampling_rate, format=format, subtype=subtype)
    return path

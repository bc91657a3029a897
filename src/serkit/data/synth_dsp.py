"""Signal processing shared by the synthetic corpus's two voices: level, noise, tilt, bands, padding.

Both voices of `serkit.data.synth` render at `SAMPLING_RATE` and finish the same way: a
spectral tilt for voice quality (pressed or breathy), band-limited aspiration noise, a level
in dBFS with a noise floor so that pauses are not digital silence, a soft limiter instead of
clipping, and random leading and trailing silence as in a recording session.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

try:
    from scipy import signal
except ImportError as exc:  # pragma: no cover - scipy is installed with every serkit extra that trains
    raise ImportError("serkit.data.synth needs scipy for its filters: pip install scipy") from exc

__all__ = [
    "LEVEL_DBFS",
    "NOISE_FLOOR_DBFS",
    "SAMPLING_RATE",
    "band",
    "breath_noise",
    "finish",
    "pad",
    "rms",
    "smooth",
    "tilt_filter",
]

SAMPLING_RATE = 16000  # every utterance is rendered at this rate

LEVEL_DBFS = -26.0  # RMS of the voiced parts of a neutral utterance
NOISE_FLOOR_DBFS = -66.0  # background hiss so that pauses are not digital silence


def rms(x: np.ndarray) -> float:
    """Root mean square of `x`; 0 for an empty array."""
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def tilt_filter(x: np.ndarray, tilt: float) -> np.ndarray:
    """Flatten (tilt > 0, pressed voice) or steepen (tilt < 0, breathy voice) the spectrum."""
    if tilt > 0:  # first-order pre-emphasis: more high harmonics
        return signal.lfilter([1.0, -0.7 * tilt], [1.0], x)
    if tilt < 0:  # one-pole low-pass: fewer high harmonics
        pole = 0.65 * -tilt
        return signal.lfilter([1.0 - pole], [1.0, -pole], x)
    return x


@lru_cache(maxsize=64)
def band(low: float, high: float, order: int = 4) -> np.ndarray:
    """Butterworth band-pass SOS at the render rate, cached because speakers reuse bands."""
    nyquist = SAMPLING_RATE / 2
    return signal.butter(order, [low, min(high, 0.95 * nyquist)], btype="bandpass", fs=SAMPLING_RATE, output="sos")


def smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving Hann-weighted average (edges ramp instead of clicking)."""
    if width < 3:
        return x
    window = np.hanning(width + 2)[1:-1]
    return np.convolve(x, window / window.sum(), mode="same")


def breath_noise(envelope: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """High-frequency aspiration noise following `envelope`."""
    noise = signal.sosfilt(band(1500.0, 7000.0, 2), rng.standard_normal(envelope.size))
    return amount * envelope * noise / max(rms(noise), 1e-9)


def finish(speech: np.ndarray, gain_db: float, rng: np.random.Generator) -> np.ndarray:
    """Apply the level, add a noise floor, keep peaks below full scale; float32 out."""
    out = speech * 10 ** (gain_db / 20) + 10 ** (NOISE_FLOOR_DBFS / 20) * rng.standard_normal(speech.size)
    if float(np.max(np.abs(out))) > 0.95:  # soft limiter rather than clipping; only loud takes reach it
        out = 0.95 * np.tanh(out / 0.95)
    return out.astype(np.float32)


def pad(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Leading and trailing silence of random length, as in a recording session."""
    lead = int(rng.uniform(0.12, 0.35) * SAMPLING_RATE)
    trail = int(rng.uniform(0.15, 0.40) * SAMPLING_RATE)
    return np.concatenate([np.zeros(lead), x, np.zeros(trail)])

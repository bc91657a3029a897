"""Spectral features: log-mel maps and MFCCs, as frames, a fixed-size image and utterance statistics.

Both extractors share one log-mel front end (`LogMelExtractor`); `MFCCExtractor` adds a DCT,
optional cepstral mean normalisation and deltas on top of it.

Front end (at the AudioSpec's rate ``sr``):

* Framing: a 25 ms Hann window every 10 ms (``window_ms``, ``hop_ms``), zero-padded to
  ``n_fft`` = the next power of two (400 / 160 / 512 samples at 16 kHz).
* Centring: frame ``t`` is centred on sample ``t * hop``; the signal is zero-padded by
  ``n_fft // 2`` on both sides (librosa's ``center=True, pad_mode="constant"``), so a signal of
  ``N >= 1`` samples gives ``T = 1 + N // hop`` frames (101 for 1 s at 16 kHz). The frames are
  then taken uncentred from the padded signal, so signals shorter than ``n_fft`` need no
  special case.
* Power spectrogram -> Slaney-style mel filterbank (librosa defaults: ``htk=False``,
  ``norm="slaney"``) between ``fmin`` and ``fmax`` (default 0 and sr / 2).
* Log: ``10 * log10(max(power, 10 ** (floor_db / 10)))``, i.e. dB relative to a *fixed*
  reference power of 1.0 with a floor at ``floor_db`` (default -100 dB), as
  `librosa.power_to_db` with ``ref=1.0, top_db=None``. A fixed reference keeps the absolute
  level (loudness is a main arousal cue) and makes every frame independent of the rest of the
  utterance; the floor keeps digital silence finite. No ``top_db`` clipping here: clipping
  relative to the utterance peak would make frame values depend on the whole utterance.
* MFCC: orthonormal DCT-II over the mel bands (``librosa.feature.mfcc(dct_type=2,
  norm="ortho")``), deltas as ``librosa.feature.delta(mode="nearest")``.

The DSP is numpy (`serkit.features.spectral_dsp`), not librosa: importing librosa and its first
call cost 3 - 4 s of a cold ``serkit predict`` (scipy.signal, numba and LLVM; issue #14). The
numbers are librosa 0.11's calls on the same padded signal to float rounding (librosa runs the
STFT and mel sums in float32, this in float64). Measured on EMOVO speech and synthetic signals
(``tests/test_spectral_dsp.py``): log-mel frames within 7.6e-6 dB, MFCCs within 1.1e-4 (c0
reaches several hundred), deltas within 3.4e-5.

Outputs (all float32, selected with the ``outputs`` setting):

* ``"frames"``: (T, F) frame map; F = ``n_mels`` for log-mel, ``n_mfcc * (1 + deltas)`` for MFCC.
* ``"image"``: (H, W) = ``image_size`` (default 224 x 224), rows = frequency (row 0 = lowest
  band, not flipped as in a plot), columns = time. The whole utterance map is resized along both
  axes with a bilinear (triangle) filter that is antialiased when shrinking (the convention of
  PIL's BILINEAR, as used by torchvision). Values lie in [0, 1] per utterance: for log-mel the
  map is first clipped ``image_top_db`` (80 dB) below the utterance peak, then min-max scaled,
  so 1 is the peak and 0 is peak - 80 dB or less; MFCC maps are min-max scaled. A constant map
  (digital silence; constant to 1e-9 of its magnitude, i.e. to rounding) gives an all-zero
  image. With a fixed-duration AudioSpec (the paper's 7 s) every column covers the same time
  span; with native lengths the time axis is stretched.
* ``"stats"``: (F * len(stats),) utterance statistics over frames, statistic-major
  (all F means, then all F standard deviations, ...). ``stats`` names: mean, std (population),
  min, max, median and percentiles ``pNN`` (e.g. p10, p90).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from serkit.data.audio import AudioSpec
from serkit.features import spectral_dsp
from serkit.features.base import Extractor

__all__ = ["LogMelConfig", "LogMelExtractor", "MFCCConfig", "MFCCExtractor", "OUTPUTS", "utterance_stats"]

logger = logging.getLogger(__name__)

#: Every output a spectral extractor can produce.
OUTPUTS: tuple[str, ...] = ("frames", "image", "stats")

_NAMED_STATS = ("mean", "std", "min", "max", "median")
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")


def _as_tuple(value: Any, name: str) -> tuple:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a sequence, got {value!r}")
    return tuple(value)


def _check_stat_name(stat: str) -> None:
    if stat in _NAMED_STATS:
        return
    match = _PERCENTILE.match(stat)
    if match is None or not 0 <= float(match.group(1)) <= 100:
        raise ValueError(f"unknown statistic {stat!r}; allowed: {list(_NAMED_STATS)} or a percentile pNN such as 'p10'")


@dataclass(frozen=True)
class LogMelConfig:
    """Settings of the log-mel front end and of the outputs built from it.

    Attributes:
        n_mels: Mel bands. 64 resolves speech formants at 16 kHz while every band still spans
            at least one FFT bin of the 512-point FFT; it keeps the SVM statistics small (128).
        window_ms: Analysis window length in milliseconds (Hann).
        hop_ms: Frame step in milliseconds.
        fmin: Lowest filterbank frequency in Hz.
        fmax: Highest filterbank frequency in Hz; None means sr / 2.
        floor_db: Power floor of the log, in dB re 1.0; keeps silence finite.
        image_size: (height = frequency, width = time) of the ``"image"`` output.
        image_top_db: Dynamic range of the log-mel image below the utterance peak.
        stats: Utterance statistics for ``"stats"``: mean, std, min, max, median, pNN.
        outputs: Which of ``"frames"``, ``"image"``, ``"stats"`` to compute.
    """

    n_mels: int = 64
    window_ms: float = 25.0
    hop_ms: float = 10.0
    fmin: float = 0.0
    fmax: float | None = None
    floor_db: float = -100.0
    image_size: tuple[int, int] = (224, 224)
    image_top_db: float = 80.0
    stats: tuple[str, ...] = ("mean", "std")
    outputs: tuple[str, ...] = OUTPUTS

    def __post_init__(self) -> None:
        # Configs read from JSON/YAML carry lists; store tuples so the config stays hashable.
        for name in ("image_size", "stats", "outputs"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name), name))
        if int(self.n_mels) != self.n_mels or self.n_mels < 1:
            raise ValueError(f"n_mels must be a positive integer, got {self.n_mels!r}")
        if not self.window_ms > 0 or not self.hop_ms > 0:
            raise ValueError(f"window_ms and hop_ms must be positive, got {self.window_ms!r}, {self.hop_ms!r}")
        if self.fmin < 0 or (self.fmax is not None and not self.fmax > self.fmin):
            raise ValueError(f"need 0 <= fmin < fmax, got fmin={self.fmin!r}, fmax={self.fmax!r}")
        if len(self.image_size) != 2 or any(int(v) != v or v < 1 for v in self.image_size):
            raise ValueError(f"image_size must be two positive integers (height, width), got {self.image_size!r}")
        if not self.image_top_db > 0:
            raise ValueError(f"image_top_db must be positive, got {self.image_top_db!r}")
        if not self.stats or len(set(self.stats)) != len(self.stats):
            raise ValueError(f"stats must be a non-empty list without repeats, got {self.stats!r}")
        for stat in self.stats:
            _check_stat_name(stat)
        unknown = [o for o in self.outputs if o not in OUTPUTS]
        if unknown or not self.outputs or len(set(self.outputs)) != len(self.outputs):
            raise ValueError(f"outputs must be a non-empty subset of {list(OUTPUTS)} without repeats, got {self.outputs!r}")


@dataclass(frozen=True)
class MFCCConfig(LogMelConfig):
    """MFCC settings: the log-mel front end plus DCT, normalisation and deltas.

    ``image_top_db`` is not used by MFCC images (cepstra are not in dB).

    Attributes:
        n_mels: Mel bands feeding the DCT; 40 is the usual MFCC filterbank at 16 kHz.
        n_mfcc: Cepstral coefficients kept, c0 (log energy-like) included.
        deltas: 0 (static only), 1 (+ deltas) or 2 (+ deltas and delta-deltas).
        delta_width: Frames in the Savitzky-Golay delta window (odd, >= 3).
        cmn: Subtract each static coefficient's utterance mean (cepstral mean normalisation)
            before the deltas. Off by default: it removes channel effects but also the mean
            level, which the SVM statistics would otherwise use.
    """

    n_mels: int = 40
    n_mfcc: int = 13
    deltas: int = 2
    delta_width: int = 9
    cmn: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.n_mfcc) != self.n_mfcc or not 1 <= self.n_mfcc <= self.n_mels:
            raise ValueError(f"n_mfcc must be an integer in [1, n_mels={self.n_mels}], got {self.n_mfcc!r}")
        if self.deltas not in (0, 1, 2):
            raise ValueError(f"deltas must be 0, 1 or 2, got {self.deltas!r}")
        if int(self.delta_width) != self.delta_width or self.delta_width < 3 or self.delta_width % 2 == 0:
            raise ValueError(f"delta_width must be an odd integer >= 3, got {self.delta_width!r}")


def utterance_stats(frames: np.ndarray, stats: tuple[str, ...]) -> np.ndarray:
    """Statistics of a (T, F) map over time, statistic-major, float32 of shape (F * len(stats),).

    Args:
        frames: Frame map, time first.
        stats: Names: mean, std (population), min, max, median, pNN (percentile NN).

    Returns:
        ``[stat_0(F), stat_1(F), ...]`` concatenated.
    """
    data = np.asarray(frames, dtype=np.float64)
    parts = []
    for stat in stats:
        if stat == "mean":
            parts.append(data.mean(axis=0))
        elif stat == "std":
            parts.append(data.std(axis=0))
        elif stat == "min":
            parts.append(data.min(axis=0))
        elif stat == "max":
            parts.append(data.max(axis=0))
        elif stat == "median":
            parts.append(np.median(data, axis=0))
        else:
            _check_stat_name(stat)
            parts.append(np.percentile(data, float(stat[1:]), axis=0))
    return np.concatenate(parts).astype(np.float32)


@lru_cache(maxsize=64)
def _resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of a 1-D bilinear resize, antialiased when shrinking.

    Triangle filter on pixel centres (align_corners=False); when shrinking, the triangle is
    widened by the scale factor so every input sample contributes (PIL's BILINEAR). Rows are
    non-negative and sum to 1, so values stay inside the input's range.
    """
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    distance = np.abs(np.arange(n_in)[None, :] - centres[:, None])
    weights = np.clip(1.0 - distance / support, 0.0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    weights.setflags(write=False)  # shared through the cache
    return weights


#: A map whose range is below this fraction of its magnitude is constant up to rounding.
_CONSTANT_RANGE = 1e-9


def _unit_range(values: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1]; a constant map carries nothing and becomes zeros.

    "Constant" allows float64 rounding: digital silence with cepstral mean normalisation gives
    MFCCs of about 1e-15 instead of exact zeros, which scaled would be an image of noise.
    """
    low, high = float(values.min()), float(values.max())
    if not high - low > _CONSTANT_RANGE * max(abs(low), abs(high), 1.0):
        return np.zeros_like(values, dtype=np.float64)
    return (values - low) / (high - low)


def _check_signal(signal: np.ndarray, sampling_rate: int, expected_rate: int, kind: str) -> np.ndarray:
    """The signal as contiguous 1-D float32, or a ValueError naming what is wrong."""
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise ValueError(f"{kind}: expected a 1-D signal, got shape {signal.shape}")
    if signal.size == 0:
        raise ValueError(f"{kind}: empty signal (0 samples)")
    if sampling_rate != expected_rate:
        raise ValueError(
            f"{kind}: signal is at {sampling_rate} Hz but the extractor's AudioSpec expects {expected_rate} Hz; "
            "load it with serkit.data.audio.load(path, extractor.spec)"
        )
    signal = np.ascontiguousarray(signal, dtype=np.float32)
    if not np.isfinite(signal).all():
        raise ValueError(f"{kind}: signal contains NaN or Inf samples")
    return signal


class LogMelExtractor(Extractor):
    """Log-mel spectrogram frames, image and statistics (see the module docstring).

    Attributes:
        win_length: Window length in samples.
        hop_length: Frame step in samples.
        n_fft: FFT size, the next power of two >= `win_length`.
        fmax: Resolved upper filterbank frequency in Hz.
    """

    name: ClassVar[str] = "logmel"
    config_class: ClassVar[type] = LogMelConfig
    #: Whether image values are clipped `image_top_db` below the peak (only for dB maps).
    _image_in_db: ClassVar[bool] = True

    def __init__(self, config: LogMelConfig | None = None, spec: AudioSpec | None = None) -> None:
        super().__init__(config, spec)
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(self.config).__name__}")
        sr = self.spec.sampling_rate
        cfg = self.config
        self.win_length = int(round(cfg.window_ms * sr / 1000))
        self.hop_length = int(round(cfg.hop_ms * sr / 1000))
        if self.win_length < 2 or self.hop_length < 1:
            raise ValueError(f"{self.name}: window of {self.win_length} / hop of {self.hop_length} samples at {sr} Hz is too short")
        self.n_fft = 1 << (self.win_length - 1).bit_length()
        self.fmax = float(cfg.fmax) if cfg.fmax is not None else sr / 2
        if self.fmax > sr / 2:
            raise ValueError(f"{self.name}: fmax={self.fmax} Hz is above the Nyquist frequency {sr / 2} Hz")
        if cfg.fmin >= self.fmax:
            raise ValueError(f"{self.name}: fmin={cfg.fmin} Hz must be below fmax={self.fmax} Hz")
        logger.debug(
            "%s: window %d, hop %d, n_fft %d samples at %d Hz", self.name, self.win_length, self.hop_length, self.n_fft, sr
        )

    def frame_count(self, num_samples: int) -> int:
        """Frames produced for a signal of `num_samples` (>= 1) samples: ``1 + N // hop``."""
        return 1 + int(num_samples) // self.hop_length

    def log_mel(self, signal: np.ndarray) -> np.ndarray:
        """The (n_mels, T) float32 log-mel map in dB of a checked 1-D float32 signal."""
        return self._log_mel64(signal).astype(np.float32)

    def _log_mel64(self, signal: np.ndarray) -> np.ndarray:
        """`log_mel` in float64, before rounding (the MFCCs start from it)."""
        cfg = self.config
        # Centre frames by padding here (same as librosa's center=True, pad_mode="constant"),
        # so that signals shorter than n_fft need no special case.
        padded = np.pad(signal, self.n_fft // 2)
        power = spectral_dsp.mel_power_spectrogram(
            padded,
            self.spec.sampling_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            n_mels=cfg.n_mels,
            fmin=cfg.fmin,
            fmax=self.fmax,
        )
        return spectral_dsp.power_to_db(power, amin=10.0 ** (cfg.floor_db / 10.0))

    def frames(self, signal: np.ndarray) -> np.ndarray:
        """The (T, F) frame map of a checked signal; subclasses change what F holds."""
        return np.ascontiguousarray(self.log_mel(signal).T)

    def image(self, frames: np.ndarray) -> np.ndarray:
        """The fixed-size (H, W) image in [0, 1] of a (T, F) frame map."""
        height, width = self.config.image_size
        grid = np.asarray(frames, dtype=np.float64).T  # (F, T): rows are frequency
        if self._image_in_db:
            grid = np.maximum(grid, grid.max() - self.config.image_top_db)
        grid = _unit_range(grid)
        image = _resize_weights(grid.shape[0], height) @ grid @ _resize_weights(grid.shape[1], width).T
        return np.clip(image, 0.0, 1.0).astype(np.float32)

    def extract(self, signal: np.ndarray, sampling_rate: int) -> dict[str, np.ndarray]:
        """Selected outputs (``frames``, ``image``, ``stats``) of one preprocessed signal.

        Raises:
            ValueError: Not 1-D, empty, NaN/Inf, or not at the AudioSpec's rate.
        """
        signal = _check_signal(signal, sampling_rate, self.spec.sampling_rate, self.name)
        frames = self.frames(signal)
        outputs = self.config.outputs
        result: dict[str, np.ndarray] = {}
        if "frames" in outputs:
            result["frames"] = frames.astype(np.float32, copy=False)
        if "image" in outputs:
            result["image"] = self.image(frames)
        if "stats" in outputs:
            result["stats"] = utterance_stats(frames, self.config.stats)
        return result

    def frame_names(self) -> list[str]:
        """Names of the ``frames`` columns."""
        return [f"mel{i:02d}" for i in range(self.config.n_mels)]

    def stats_names(self) -> list[str]:
        """Names of the ``stats`` entries, e.g. ``mel00_mean``."""
        return [f"{column}_{stat}" for stat in self.config.stats for column in self.frame_names()]


class MFCCExtractor(LogMelExtractor):
    """MFCCs (+ deltas) computed from the same log-mel front end as `LogMelExtractor`.

    Frames are ``[c0..c{n-1}, deltas, delta-deltas]``; deltas are Savitzky-Golay derivatives
    over `delta_width` frames with the edge frames repeated (HTK's convention), which also
    works for utterances shorter than the window.
    """

    name: ClassVar[str] = "mfcc"
    config_class: ClassVar[type] = MFCCConfig
    _image_in_db: ClassVar[bool] = False

    def frames(self, signal: np.ndarray) -> np.ndarray:
        """The (T, n_mfcc * (1 + deltas)) float32 MFCC map of a checked signal."""
        cfg = self.config
        cepstra = spectral_dsp.mfcc(self._log_mel64(signal), cfg.n_mfcc)
        if cfg.cmn:
            cepstra = cepstra - cepstra.mean(axis=1, keepdims=True)
        blocks = [cepstra]
        for order in range(1, cfg.deltas + 1):
            blocks.append(spectral_dsp.delta(cepstra, width=cfg.delta_width, order=order))
        return np.ascontiguousarray(np.concatenate(blocks, axis=0).T, dtype=np.float32)

    def frame_names(self) -> list[str]:
        """Names of the ``frames`` columns: ``c0``, ..., ``d_c0``, ..., ``dd_c0``, ..."""
        prefixes = ["", "d_", "dd_"][: self.config.deltas + 1]
        return [f"{prefix}c{i}" for prefix in prefixes for i in range(self.config.n_mfcc)]

"""The DSP of the spectral front end in numpy: no librosa, numba or scipy (issue #14).

These functions give the numbers of the librosa 0.11 calls serkit used before (float rounding
apart: librosa runs the STFT output, the filterbank and the mel sums in float32, this module in
float64; the measured agreement is stated in ``tests/test_spectral_dsp.py``):

* `power_spectrogram` = ``abs(librosa.stft(y, n_fft, hop_length, win_length, window="hann",
  center=False)) ** 2``;
* `slaney_mel_filterbank` = ``librosa.filters.mel(sr=..., n_fft=..., n_mels=..., fmin=...,
  fmax=..., htk=False, norm="slaney")``; Whisper's filters (`serkit.features.whisper_mel`) are
  the same function from 0 to 8 kHz;
* `mel_power_spectrogram` = ``librosa.feature.melspectrogram(..., center=False, power=2.0)``;
* `power_to_db` = ``librosa.power_to_db(S, ref=1.0, amin=amin, top_db=None)``;
* `mfcc` = ``librosa.feature.mfcc(S=log_mel, n_mfcc=..., dct_type=2, norm="ortho")``;
* `delta` = ``librosa.feature.delta(data, width=..., order=..., mode="nearest")``, i.e.
  ``scipy.signal.savgol_filter(data, width, polyorder=order, deriv=order, mode="nearest")``.

Importing librosa costs 2.5 - 3.5 s in a cold process (scipy.signal, numba and LLVM, cached
numba kernels) and its first call about 0.9 s more: most of a cold ``serkit predict`` with an
MFCC model. Whisper's front end imports this module too, so it stays free of scipy as well (the
DCT is a small matrix product).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

__all__ = [
    "delta",
    "delta_coefficients",
    "dct_matrix",
    "hann_window",
    "mel_power_spectrogram",
    "mfcc",
    "power_spectrogram",
    "power_to_db",
    "slaney_hz_to_mel",
    "slaney_mel_filterbank",
    "slaney_mel_to_hz",
]

#: Bytes of float64 frames (n_fft samples each) transformed at once: 1024 frames at n_fft = 512,
#: 10 s at a 10 ms hop. Bounds the memory of long signals (about 3x this per block) and keeps a
#: block's spectra in cache (4x the blocks were 1.3x slower).
_BLOCK_BYTES = 1 << 22

# Slaney's mel scale (Auditory Toolbox; librosa's htk=False): 3 mels per 200 Hz up to 1 kHz
# (= 15 mels), then 27 mels per factor 6.4 in frequency.
_BREAK_HZ = 1000.0
_BREAK_MEL = 15.0
_LOG_STEP = np.log(6.4) / 27.0


def slaney_hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Frequencies in Hz to Slaney mels: linear below 1 kHz, logarithmic above.

    Returns:
        float64 array of the shape of `freq` (at least 1-D).
    """
    freq = np.array(freq, dtype=np.float64, ndmin=1)
    mels = 3.0 * freq / 200.0
    log_region = freq >= _BREAK_HZ
    mels[log_region] = _BREAK_MEL + np.log(freq[log_region] / _BREAK_HZ) * (27.0 / np.log(6.4))
    return mels


def slaney_mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Slaney mels to Hz, the inverse of `slaney_hz_to_mel`.

    Returns:
        float64 array of the shape of `mels` (at least 1-D).
    """
    mels = np.array(mels, dtype=np.float64, ndmin=1)
    freq = 200.0 * mels / 3.0
    log_region = mels >= _BREAK_MEL
    freq[log_region] = _BREAK_HZ * np.exp(_LOG_STEP * (mels[log_region] - _BREAK_MEL))
    return freq


@lru_cache(maxsize=32)
def slaney_mel_filterbank(sampling_rate: float, n_fft: int, n_mels: int, fmin: float = 0.0,
                          fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters on the Slaney scale with Slaney's area normalisation.

    The ``n_mels + 2`` band edges are equally spaced in Slaney mels from `fmin` to `fmax`; band
    ``m`` rises from edge ``m`` to edge ``m + 1`` and falls to edge ``m + 2``, evaluated at the
    FFT bin frequencies ``k * sampling_rate / n_fft``, and is scaled by ``2 / (edge[m + 2] -
    edge[m])`` so each filter has unit area in Hz. This is ``librosa.filters.mel(htk=False,
    norm="slaney")`` (librosa 0.11, in float64 instead of its float32 default) and, from 0 to
    8 kHz, transformers' ``mel_filter_bank(norm="slaney", mel_scale="slaney")``.

    Args:
        sampling_rate: Sampling rate in Hz.
        n_fft: FFT size in samples.
        n_mels: Number of mel bands.
        fmin: Lower edge of the lowest band in Hz.
        fmax: Upper edge of the highest band in Hz; None means ``sampling_rate / 2``.

    Returns:
        Read-only float64 array of shape (n_mels, 1 + n_fft // 2): weights from power-spectrum
        bins to mel bands (cached, shared between callers).

    Raises:
        ValueError: Non-positive sizes or rate, or not ``0 <= fmin < fmax``.
    """
    fmax = sampling_rate / 2.0 if fmax is None else float(fmax)
    if sampling_rate <= 0 or n_fft < 1 or n_mels < 1:
        raise ValueError(
            f"mel filterbank: need sampling_rate, n_fft, n_mels > 0, got {sampling_rate}, {n_fft}, {n_mels}")
    if not 0.0 <= fmin < fmax:
        raise ValueError(f"mel filterbank: need 0 <= fmin < fmax, got fmin={fmin} Hz, fmax={fmax} Hz")
    bin_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sampling_rate)
    low_mel, high_mel = slaney_hz_to_mel([fmin, fmax])
    edges = slaney_mel_to_hz(np.linspace(low_mel, high_mel, n_mels + 2))
    widths = np.diff(edges)
    offsets = edges[:, None] - bin_freqs[None, :]  # (n_mels + 2, bins): edge minus bin frequency
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    filters.setflags(write=False)
    return filters


@lru_cache(maxsize=32)
def hann_window(win_length: int, n_fft: int | None = None) -> np.ndarray:
    """A periodic Hann window, zero-padded centrally to `n_fft` samples.

    ``0.5 - 0.5 * cos(2 pi n / win_length)`` for ``n < win_length`` (periodic, i.e. for FFT
    frames: ``scipy.signal.get_window("hann", win_length, fftbins=True)``), then padded with
    ``(n_fft - win_length) // 2`` zeros in front and the rest behind (``librosa.util.pad_center``,
    as librosa's STFT pads a window shorter than the FFT).

    Returns:
        Read-only float64 array of shape (n_fft,) (of shape (win_length,) when n_fft is None).

    Raises:
        ValueError: win_length < 1 or above n_fft.
    """
    n_fft = win_length if n_fft is None else n_fft
    if not 1 <= win_length <= n_fft:
        raise ValueError(f"Hann window: need 1 <= win_length <= n_fft, got win_length={win_length}, n_fft={n_fft}")
    window = np.zeros(n_fft)
    start = (n_fft - win_length) // 2
    window[start:start + win_length] = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    window.setflags(write=False)
    return window


def _check_framing(signal: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise ValueError(f"spectrogram: expected a 1-D signal, got shape {signal.shape}")
    if hop_length < 1:
        raise ValueError(f"spectrogram: hop_length must be >= 1, got {hop_length}")
    if signal.size < n_fft:
        raise ValueError(f"spectrogram: a signal of {signal.size} samples is shorter than one frame of n_fft={n_fft} "
                         "(pad it first: frames are not centred here)")
    return signal


def _frame_power(signal: np.ndarray, n_fft: int, hop_length: int, win_length: int) -> np.ndarray:
    """(frames, 1 + n_fft // 2) float64 power spectra of every complete frame of `signal`.

    Only the `win_length` samples under the window are multiplied and transformed, zero-padded
    at the end to n_fft by the FFT: centring them in the frame instead (`hann_window` with n_fft)
    is a circular shift, which changes the phases and not the power.
    """
    start = (n_fft - win_length) // 2
    frames = np.lib.stride_tricks.sliding_window_view(signal, n_fft)[::hop_length, start:start + win_length]
    spectrum = np.fft.rfft(frames * hann_window(win_length), n=n_fft, axis=-1)  # float64, as the window
    return spectrum.real ** 2 + spectrum.imag ** 2


def _frame_blocks(count: int, n_fft: int) -> Iterator[slice]:
    """Consecutive runs of frame indices covering ``0 .. count - 1``, `_BLOCK_BYTES` of frames each."""
    per_block = max(1, _BLOCK_BYTES // (8 * n_fft))
    for first in range(0, count, per_block):
        yield slice(first, min(first + per_block, count))


def power_spectrogram(signal: np.ndarray, n_fft: int, hop_length: int, win_length: int | None = None) -> np.ndarray:
    """Power spectrogram of an already padded signal, frames not centred.

    Frame ``t`` holds samples ``t * hop_length`` to ``t * hop_length + n_fft - 1`` (only complete
    frames), multiplied by `hann_window` (win_length samples centred in n_fft), then the real FFT
    and its squared magnitude: ``abs(librosa.stft(signal, n_fft=n_fft, hop_length=hop_length,
    win_length=win_length, window="hann", center=False)) ** 2`` (librosa 0.11; it rounds the
    STFT to complex64 for float32 input, this is float64 throughout).

    Args:
        signal: 1-D signal of at least n_fft samples (any real dtype).
        n_fft: FFT size and frame length in samples.
        hop_length: Frame step in samples.
        win_length: Hann window length in samples (<= n_fft); None means n_fft.

    Returns:
        float64 array of shape (1 + n_fft // 2, T), ``T = 1 + (len(signal) - n_fft) // hop_length``,
        in squared signal units; row k is frequency ``k * sr / n_fft``.

    Raises:
        ValueError: Not 1-D, shorter than n_fft, or bad lengths.
    """
    win_length = n_fft if win_length is None else win_length
    hann_window(win_length, n_fft)  # checks the lengths
    signal = _check_framing(signal, n_fft, hop_length)
    return _frame_power(signal, n_fft, hop_length, win_length).T


def mel_power_spectrogram(signal: np.ndarray, sampling_rate: float, n_fft: int, hop_length: int,
                          win_length: int | None = None, n_mels: int = 128, fmin: float = 0.0,
                          fmax: float | None = None) -> np.ndarray:
    """Mel power spectrogram: `slaney_mel_filterbank` @ `power_spectrogram`.

    ``librosa.feature.melspectrogram(y=signal, sr=sampling_rate, n_fft=n_fft,
    hop_length=hop_length, win_length=win_length, window="hann", center=False, power=2.0,
    n_mels=n_mels, fmin=fmin, fmax=fmax)`` (librosa 0.11). Frames are transformed in blocks of 4 MiB,
    so memory stays the size of the result plus about 15 MB (an hour at 16 kHz with 40 bands:
    115 MB; the whole power spectrogram, as librosa holds it, would take 740 MB in complex64).

    Args:
        signal: 1-D signal of at least n_fft samples, already padded as wanted.
        sampling_rate: Its rate in Hz.
        n_fft, hop_length, win_length: Framing, as in `power_spectrogram`.
        n_mels, fmin, fmax: Filterbank, as in `slaney_mel_filterbank`.

    Returns:
        float64 array of shape (n_mels, T) in squared signal units.

    Raises:
        ValueError: As `power_spectrogram` and `slaney_mel_filterbank`.
    """
    win_length = n_fft if win_length is None else win_length
    hann_window(win_length, n_fft)  # checks the lengths
    filters = slaney_mel_filterbank(sampling_rate, n_fft, n_mels, fmin, fmax)
    signal = _check_framing(signal, n_fft, hop_length)
    count = 1 + (signal.size - n_fft) // hop_length
    mel = np.empty((n_mels, count))
    for frames in _frame_blocks(count, n_fft):
        samples = signal[frames.start * hop_length:(frames.stop - 1) * hop_length + n_fft]
        _apply_filters(filters, _frame_power(samples, n_fft, hop_length, win_length), mel[:, frames])
    return mel


def _apply_filters(filters: np.ndarray, power: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = filters @ power.T``, summing each band over its non-zero bins only.

    A triangle spans a few bins, so this is 20 - 65x fewer products than the dense matrix
    product (40 - 128 bands at n_fft = 512), and it stays out of the threaded BLAS matrix
    product, whose threads cost more than they save on products this small (on two busy cores
    the dense product made 7 s of MFCCs several times slower). `power` is (frames, bins); its
    bins are made rows first, so each band reads contiguous memory.
    """
    power = np.ascontiguousarray(power.T)
    for band, weights in enumerate(filters):
        support = np.flatnonzero(weights)
        if support.size == 0:  # an empty band (more bands than bins can resolve)
            out[band] = 0.0
            continue
        low, high = support[0], support[-1] + 1
        np.dot(weights[low:high], power[low:high], out=out[band])


def power_to_db(power: np.ndarray, amin: float = 1e-10) -> np.ndarray:
    """Power in decibels re 1.0 with a floor: ``10 * log10(max(amin, power))``.

    ``librosa.power_to_db(power, ref=1.0, amin=amin, top_db=None)`` (librosa 0.11): a fixed
    reference and no clipping relative to the peak, so each value depends on its own power only.

    Args:
        power: Non-negative powers, any shape.
        amin: Floor, > 0; the result is at least ``10 * log10(amin)`` dB.

    Returns:
        Array of the same shape in dB (float64, or float32 for float32 input).

    Raises:
        ValueError: amin <= 0.
    """
    if not amin > 0:
        raise ValueError(f"power_to_db: amin must be > 0, got {amin}")
    power = np.asarray(power)
    if not np.issubdtype(power.dtype, np.floating):
        power = power.astype(np.float64)
    return 10.0 * np.log10(np.maximum(power, power.dtype.type(amin)))


@lru_cache(maxsize=16)
def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """The first `n_out` rows of the orthonormal DCT-II of size `n_in`.

    ``D[k, n] = s_k cos(pi k (2n + 1) / (2 n_in))`` with ``s_0 = sqrt(1 / n_in)`` and
    ``s_k = sqrt(2 / n_in)``: ``D @ x`` is ``scipy.fft.dct(x, type=2, norm="ortho")[:n_out]``.

    Returns:
        Read-only float64 array of shape (n_out, n_in) (cached).

    Raises:
        ValueError: Not ``1 <= n_out <= n_in``.
    """
    if not 1 <= n_out <= n_in:
        raise ValueError(f"DCT: need 1 <= n_out <= n_in, got n_out={n_out}, n_in={n_in}")
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    matrix = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    matrix[0] *= math.sqrt(0.5)
    matrix.setflags(write=False)
    return matrix


def mfcc(log_mel: np.ndarray, n_mfcc: int) -> np.ndarray:
    """Mel-frequency cepstral coefficients of a log-mel map: its orthonormal DCT-II over bands.

    ``librosa.feature.mfcc(S=log_mel, n_mfcc=n_mfcc, dct_type=2, norm="ortho")`` (librosa 0.11,
    no liftering).

    Args:
        log_mel: (n_mels, T) log-mel map (dB).
        n_mfcc: Coefficients kept, c0 first; 1 <= n_mfcc <= n_mels.

    Returns:
        float64 array of shape (n_mfcc, T), in the units of `log_mel`.

    Raises:
        ValueError: Not 2-D, or n_mfcc out of range.
    """
    log_mel = np.asarray(log_mel, dtype=np.float64)
    if log_mel.ndim != 2:
        raise ValueError(f"mfcc: expected an (n_mels, T) map, got shape {log_mel.shape}")
    return dct_matrix(int(n_mfcc), log_mel.shape[0]) @ log_mel


@lru_cache(maxsize=16)
def delta_coefficients(width: int, order: int) -> np.ndarray:
    """Savitzky-Golay weights of the `order`-th derivative over `width` frames.

    A polynomial of degree `order` is fitted by least squares to the frames at offsets
    ``-width // 2 .. width // 2`` around each frame, and its `order`-th derivative at offset 0
    is ``order! * pinv(V)[order] @ x`` with ``V[j, p] = offset_j ** p``. These are the weights
    ``scipy.signal.savgol_coeffs(width, order, deriv=order)`` in correlation order (weight j
    multiplies the frame at offset ``j - width // 2``; for order 1 and width 9: ``offset / 60``).

    Returns:
        Read-only float64 array of shape (width,) (cached).

    Raises:
        ValueError: width not odd and >= 3, or order not in 1 .. width - 1.
    """
    if width < 3 or width % 2 != 1:
        raise ValueError(f"delta: width must be an odd integer >= 3, got {width}")
    if not 1 <= order < width:
        raise ValueError(f"delta: order must be an integer in 1 .. width - 1 = {width - 1}, got {order}")
    offsets = np.arange(width, dtype=np.float64) - width // 2
    vandermonde = offsets[:, None] ** np.arange(order + 1)[None, :]
    weights = np.linalg.pinv(vandermonde)[order] * math.factorial(order)
    weights.setflags(write=False)
    return weights


def delta(data: np.ndarray, width: int = 9, order: int = 1) -> np.ndarray:
    """Delta (order 1) or delta-delta (order 2) features along the last axis (time).

    The Savitzky-Golay derivative of `delta_coefficients`, with the first and last frames
    repeated beyond the ends (mode "nearest", so any number of frames works, even fewer than
    `width`): ``librosa.feature.delta(data, width=width, order=order, mode="nearest")``
    (librosa 0.11), i.e. ``scipy.signal.savgol_filter(data, width, polyorder=order,
    deriv=order, axis=-1, mode="nearest")``. Order 2 is the second derivative of a quadratic fit,
    not the delta of the delta.

    Args:
        data: (..., T) features, T >= 1 frames.
        width: Frames in the window (odd, >= 3).
        order: Derivative order, 1 .. width - 1.

    Returns:
        float64 array of the shape of `data`, per frame.

    Raises:
        ValueError: Empty time axis, or bad width / order.
    """
    weights = delta_coefficients(int(width), int(order))
    data = np.asarray(data, dtype=np.float64)
    if data.ndim == 0 or data.shape[-1] == 0:
        raise ValueError(f"delta: need at least one frame along the last axis, got shape {data.shape}")
    half = width // 2
    padded = np.pad(data, [(0, 0)] * (data.ndim - 1) + [(half, half)], mode="edge")
    return np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1) @ weights

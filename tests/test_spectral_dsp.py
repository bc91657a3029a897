"""The numpy spectral front end (`serkit.features.spectral_dsp`) gives librosa's numbers (issue #14).

Two levels of comparison:

* Each DSP function against the librosa 0.11 call it replaces, both run in float64 (librosa's
  ``dtype=np.complex128`` STFT, float64 filterbank): equal to float64 rounding, so the
  conventions (window, padding, framing, mel edges, normalisation, DCT scaling, delta
  orientation) are the same, not just close.
* `LogMelExtractor` / `MFCCExtractor` outputs against the librosa calls serkit made before
  (`_librosa_frames` below: float32 signal, librosa's float32 STFT output, filterbank and mel
  sums). They differ by float32 rounding only. Measured absolute maxima, over these tests'
  signals (12 EMOVO clips among them) and 21 other EMOVO clips: log-mel frames 7.6e-6 dB
  (float32's step at 64 dB), MFCC statics 1.1e-4 (c0 reaches several hundred), deltas and
  delta-deltas 3.4e-5, images 1.9e-5 (a 1-sample signal: min-max scaling of a 0.36 dB range;
  6e-7 on speech), stats 5.5e-5. Tolerances below are these rounded up, about 10x.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serkit.data.audio import AudioSpec
from serkit.features import spectral_dsp as dsp
from serkit.features.spectral import LogMelConfig, LogMelExtractor, MFCCConfig, MFCCExtractor, utterance_stats
from tests.audio_factory import voiced

librosa = pytest.importorskip("librosa")

#: float64 against float64, relative to the array's largest magnitude: measured 2.3e-15 at most
#: (power 6e-16, mel power 1.2e-15, MFCC 2.3e-15).
F64_RTOL = 1e-13
#: Extractor outputs against the old librosa path (float32 rounding; measured maxima in the docstring).
LOG_MEL_ATOL_DB = 1e-4  # measured 7.6e-6 dB
MFCC_ATOL = 1e-3  # measured 1.1e-4
DELTA_ATOL = 1e-4  # measured 3.4e-5
#: Images are min-max scaled, which divides the frame error by the map's range: measured 1.9e-5 for a
#: 1-sample signal (one frame, 0.36 dB range), 2.8e-7 on speech.
IMAGE_ATOL = 1e-4
STATS_ATOL = {LogMelExtractor: 1e-4, MFCCExtractor: 5e-4}  # measured 7.6e-6, 5.5e-5


def harmonic(seconds: float, sampling_rate: int, f0: float = 180.0) -> np.ndarray:
    """A steady harmonic tone with falling partials (1/k) and a 20 dB level step, float32."""
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    partials = [k for k in range(1, 40) if k * f0 < sampling_rate / 2]
    signal = sum(np.sin(2 * np.pi * k * f0 * t + k) / k for k in partials)
    signal *= np.where(t < seconds / 2, 0.4, 0.04)
    return signal.astype(np.float32)


def _close(actual: np.ndarray, expected: np.ndarray, rtol: float = F64_RTOL) -> None:
    """Equal up to `rtol` times the largest magnitude of `expected`."""
    assert actual.shape == expected.shape
    scale = max(float(np.abs(expected).max()), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


# --- each function against librosa, float64 -------------------------------------------------


@pytest.mark.parametrize("win_length, n_fft", [(400, 512), (200, 256), (401, 512), (512, 512), (7, 10)])
def test_hann_window_is_scipy_periodic_hann_padded_like_librosa(win_length: int, n_fft: int) -> None:
    from scipy.signal import get_window

    expected = librosa.util.pad_center(get_window("hann", win_length, fftbins=True), size=n_fft)
    np.testing.assert_allclose(dsp.hann_window(win_length, n_fft), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("sr, n_fft, n_mels, fmin, fmax", [
    (16000, 512, 64, 0.0, None), (16000, 512, 40, 0.0, None), (8000, 256, 40, 0.0, None),
    (16000, 512, 40, 133.0, 6855.0), (8000, 256, 24, 300.0, 3400.0), (22050, 1024, 128, 20.0, 11025.0),
    (16000, 400, 80, 0.0, 8000.0), (16000, 511, 30, 50.0, None),  # Whisper's; an odd FFT size
])
def test_filterbank_is_librosa_slaney_mel(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> None:
    expected = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False,
                                   norm="slaney", dtype=np.float64)
    filters = dsp.slaney_mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
    _close(filters, expected, rtol=1e-12)
    assert not filters.flags.writeable  # cached, shared


def test_mel_scale_round_trip_and_break_point() -> None:
    hz = np.array([0.0, 200.0, 999.0, 1000.0, 1001.0, 4000.0, 8000.0])
    np.testing.assert_allclose(dsp.slaney_hz_to_mel(hz), librosa.hz_to_mel(hz, htk=False), rtol=1e-13)
    np.testing.assert_allclose(dsp.slaney_mel_to_hz(dsp.slaney_hz_to_mel(hz)), hz, rtol=1e-13)
    assert dsp.slaney_hz_to_mel(1000.0)[0] == pytest.approx(15.0)


@pytest.mark.parametrize("sr, n_fft, hop, win", [(16000, 512, 160, 400), (8000, 256, 80, 200), (16000, 400, 160, 400)])
def test_power_spectrogram_is_librosa_uncentred_stft_power(sr: int, n_fft: int, hop: int, win: int) -> None:
    y = np.pad(voiced(1.3, sr).astype(np.float64), n_fft // 2)
    expected = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win, window="hann", center=False,
                                   dtype=np.complex128)) ** 2
    power = dsp.power_spectrogram(y, n_fft, hop, win)
    assert power.shape == (1 + n_fft // 2, 1 + (len(y) - n_fft) // hop)
    _close(power, expected)


@pytest.mark.parametrize("fmin, fmax", [(0.0, None), (100.0, 5000.0)])
def test_mel_power_is_librosa_melspectrogram(fmin: float, fmax: float | None) -> None:
    y = np.pad(voiced(2.0).astype(np.float64), 256)
    expected = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=160, win_length=400, window="hann",
                                              center=False, power=2.0, n_mels=40, fmin=fmin, fmax=fmax,
                                              dtype=np.float64)
    _close(dsp.mel_power_spectrogram(y, 16000, 512, 160, 400, n_mels=40, fmin=fmin, fmax=fmax), expected)


def test_mel_power_is_the_filterbank_times_the_power_even_with_empty_bands() -> None:
    y = np.pad(voiced(0.5).astype(np.float64), 32)
    filters = dsp.slaney_mel_filterbank(16000, 64, 48)  # 48 bands on 33 bins: some are empty
    assert not filters.any(axis=1).all()
    expected = filters @ dsp.power_spectrogram(y, 64, 16, 48)
    _close(dsp.mel_power_spectrogram(y, 16000, 64, 16, 48, n_mels=48), expected)


def test_mel_power_in_blocks_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    y = np.pad(voiced(1.0), 256)
    whole = dsp.mel_power_spectrogram(y, 16000, 512, 160, 400, n_mels=40)
    for frames_per_block in (1, 7, 100):  # 101 frames: blocks of uneven sizes, a last short one
        monkeypatch.setattr(dsp, "_BLOCK_BYTES", frames_per_block * 8 * 512)
        # Not bit-equal: the matrix product's summation order depends on the block's shape.
        _close(dsp.mel_power_spectrogram(y, 16000, 512, 160, 400, n_mels=40), whole, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_power_to_db_is_librosa_with_fixed_reference(dtype: type) -> None:
    power = (np.random.default_rng(0).random((40, 50)) ** 8 * 10.0 ** np.arange(-12, 3, 15 / 50)).astype(dtype)
    power[3, :5] = 0.0
    for amin in (1e-10, 1e-5):
        expected = librosa.power_to_db(power, ref=1.0, amin=amin, top_db=None)
        result = dsp.power_to_db(power, amin=amin)
        assert result.dtype == expected.dtype
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12 if dtype is np.float64 else 1e-5)
        assert result.min() == pytest.approx(10 * np.log10(amin), abs=1e-4)


def test_mfcc_is_librosa_ortho_dct() -> None:
    from scipy.fft import dct

    log_mel = dsp.power_to_db(dsp.mel_power_spectrogram(np.pad(voiced(1.0).astype(np.float64), 256), 16000, 512, 160,
                                                        400, n_mels=40))
    for n_mfcc in (1, 13, 40):
        expected = librosa.feature.mfcc(S=log_mel, n_mfcc=n_mfcc, dct_type=2, norm="ortho")
        _close(dsp.mfcc(log_mel, n_mfcc), expected)
    np.testing.assert_allclose(dsp.dct_matrix(40, 40), dct(np.eye(40), type=2, norm="ortho", axis=0), atol=1e-14)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("width", [3, 5, 9])
@pytest.mark.parametrize("frames", [1, 2, 4, 9, 150])
def test_delta_is_librosa_delta_nearest(order: int, width: int, frames: int) -> None:
    data = np.random.default_rng(frames).standard_normal((13, frames)).cumsum(axis=1)
    expected = librosa.feature.delta(data, width=width, order=order, mode="nearest")
    np.testing.assert_allclose(dsp.delta(data, width, order), expected, rtol=0, atol=1e-12)


def test_delta_orientation_slope_and_curvature() -> None:
    t = np.arange(30, dtype=np.float64)
    np.testing.assert_allclose(dsp.delta(3.0 * t, 9, 1)[4:-4], 3.0)  # rising: positive slope per frame
    np.testing.assert_allclose(dsp.delta(0.5 * t ** 2, 9, 2)[4:-4], 1.0)  # second derivative of t^2 / 2
    np.testing.assert_allclose(dsp.delta_coefficients(9, 1), np.arange(-4, 5) / 60.0, atol=1e-15)
    from scipy.signal import savgol_coeffs

    for order in (1, 2):
        np.testing.assert_allclose(dsp.delta_coefficients(9, order), savgol_coeffs(9, order, deriv=order, use="dot"),
                                   atol=1e-14)


@pytest.mark.parametrize("call, reason", [
    (lambda: dsp.power_spectrogram(np.zeros(100), 512, 160, 400), "shorter than one frame"),
    (lambda: dsp.power_spectrogram(np.zeros((2, 600)), 512, 160, 400), "1-D"),
    (lambda: dsp.power_spectrogram(np.zeros(600), 512, 0, 400), "hop_length"),
    (lambda: dsp.power_spectrogram(np.zeros(600), 512, 160, 600), "win_length <= n_fft"),
    (lambda: dsp.slaney_mel_filterbank(16000, 512, 40, 4000.0, 3000.0), "fmin < fmax"),
    (lambda: dsp.power_to_db(np.ones(3), amin=0.0), "amin"),
    (lambda: dsp.mfcc(np.ones((10, 4)), 11), "n_out <= n_in"),
    (lambda: dsp.delta(np.ones((2, 5)), 4, 1), "odd"),
    (lambda: dsp.delta(np.ones((2, 5)), 3, 3), "order"),
    (lambda: dsp.delta(np.ones((2, 0)), 3, 1), "at least one frame"),
])
def test_bad_arguments_are_named(call, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        call()


# --- the extractors against the librosa calls serkit made before ------------------------------


def _librosa_frames(extractor: LogMelExtractor, signal: np.ndarray) -> np.ndarray:
    """The (T, F) frames of serkit's previous librosa implementation (the exact calls)."""
    cfg = extractor.config
    padded = np.pad(signal, extractor.n_fft // 2)
    power = librosa.feature.melspectrogram(
        y=padded, sr=extractor.spec.sampling_rate, n_fft=extractor.n_fft, hop_length=extractor.hop_length,
        win_length=extractor.win_length, window="hann", center=False, power=2.0, n_mels=cfg.n_mels, fmin=cfg.fmin,
        fmax=extractor.fmax,
    )
    log_mel = librosa.power_to_db(power, ref=1.0, amin=10.0 ** (cfg.floor_db / 10.0), top_db=None).astype(np.float32)
    if not isinstance(extractor, MFCCExtractor):
        return np.ascontiguousarray(log_mel.T)
    cepstra = librosa.feature.mfcc(S=log_mel, n_mfcc=cfg.n_mfcc, dct_type=2, norm="ortho")
    if cfg.cmn:
        cepstra = cepstra - cepstra.mean(axis=1, keepdims=True)
    blocks = [cepstra]
    for order in range(1, cfg.deltas + 1):
        blocks.append(librosa.feature.delta(cepstra, width=cfg.delta_width, order=order, mode="nearest"))
    return np.ascontiguousarray(np.concatenate(blocks, axis=0).T, dtype=np.float32)


def _assert_like_librosa(extractor: LogMelExtractor, signal: np.ndarray) -> None:
    out = extractor.extract(signal, extractor.spec.sampling_rate)
    expected = _librosa_frames(extractor, signal)
    frames = out["frames"].astype(np.float64)
    assert out["frames"].shape == expected.shape and out["frames"].dtype == np.float32
    if isinstance(extractor, MFCCExtractor):
        n = extractor.config.n_mfcc
        np.testing.assert_allclose(frames[:, :n], expected[:, :n], rtol=0, atol=MFCC_ATOL)
        np.testing.assert_allclose(frames[:, n:], expected[:, n:], rtol=0, atol=DELTA_ATOL)
    else:
        np.testing.assert_allclose(frames, expected, rtol=0, atol=LOG_MEL_ATOL_DB)
    np.testing.assert_allclose(out["image"], extractor.image(expected), rtol=0, atol=IMAGE_ATOL)
    np.testing.assert_allclose(out["stats"], utterance_stats(expected, extractor.config.stats), rtol=0,
                               atol=STATS_ATOL[type(extractor)])


CONFIGS = {
    "logmel": LogMelConfig(),
    "logmel-fmin-fmax": LogMelConfig(n_mels=40, fmin=80.0, fmax=3800.0, stats=("mean", "std", "median", "p90")),
    "mfcc-d0": MFCCConfig(deltas=0),
    "mfcc-d1": MFCCConfig(deltas=1),
    "mfcc-d2": MFCCConfig(deltas=2),
    "mfcc-d2-cmn": MFCCConfig(deltas=2, cmn=True),
    "mfcc-fmin-fmax-width5": MFCCConfig(n_mels=32, n_mfcc=20, fmin=60.0, fmax=3900.0, delta_width=5, floor_db=-80.0),
}


def _extractor(name: str, sampling_rate: int) -> LogMelExtractor:
    config = CONFIGS[name]
    cls = MFCCExtractor if isinstance(config, MFCCConfig) else LogMelExtractor
    return cls(config, AudioSpec(sampling_rate=sampling_rate, duration=None))


@pytest.mark.parametrize("sampling_rate", [8000, 16000])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_extractors_equal_librosa_on_synthetic_speech_and_tones(name: str, sampling_rate: int) -> None:
    extractor = _extractor(name, sampling_rate)
    _assert_like_librosa(extractor, voiced(1.7, sampling_rate, f0=130.0, seed=3))
    _assert_like_librosa(extractor, harmonic(1.2, sampling_rate))


@pytest.mark.parametrize("sampling_rate", [8000, 16000])
@pytest.mark.parametrize("name", ["logmel", "logmel-fmin-fmax", "mfcc-d2", "mfcc-d2-cmn"])
@pytest.mark.parametrize("samples", [1, 37, 255, 300])  # all shorter than n_fft (256 / 512): 1 - 4 frames
def test_extractors_equal_librosa_below_one_fft(name: str, sampling_rate: int, samples: int) -> None:
    _assert_like_librosa(_extractor(name, sampling_rate), voiced(1.0, sampling_rate)[:samples])


@pytest.mark.parametrize("sampling_rate", [8000, 16000])
@pytest.mark.parametrize("name", ["logmel", "mfcc-d2", "mfcc-fmin-fmax-width5"])
def test_digital_silence_equals_librosa(name: str, sampling_rate: int) -> None:
    extractor = _extractor(name, sampling_rate)
    _assert_like_librosa(extractor, np.zeros(8000, dtype=np.float32))
    out = extractor.extract(np.zeros(8000, dtype=np.float32), sampling_rate)
    if name == "logmel":  # the floor exactly, and a constant map gives an all-zero image
        assert np.all(out["frames"] == np.float32(extractor.config.floor_db)) and not out["image"].any()
    else:  # only c0 is non-zero, deltas are zero
        assert np.abs(out["frames"][:, 1:]).max() < 1e-4 and np.allclose(out["frames"][:, 0], out["frames"][0, 0])


@pytest.mark.parametrize("sampling_rate", [8000, 16000])
def test_digital_silence_with_cmn_is_zero_not_an_image_of_rounding_noise(sampling_rate: int) -> None:
    # librosa left float32 noise here (up to 1.2e-4 at 8 kHz) that min-max scaling blew up to a
    # [0, 1] image of noise; float64 noise is ~1e-15, below the constant-map threshold.
    extractor = _extractor("mfcc-d2-cmn", sampling_rate)
    silence = np.zeros(8000, dtype=np.float32)
    out = extractor.extract(silence, sampling_rate)
    np.testing.assert_allclose(out["frames"], _librosa_frames(extractor, silence), atol=MFCC_ATOL)
    assert np.abs(out["frames"]).max() < 1e-9 and not out["image"].any()


@pytest.fixture(scope="module")
def speech(shared_data: Path) -> list[np.ndarray]:
    """Twelve EMOVO utterances (16 kHz, 1.5 - 5 s), every speaker and several emotions."""
    sf = pytest.importorskip("soundfile")
    files = sorted((shared_data / "emovo").glob("*/*.flac"))[::50]
    assert len(files) >= 10
    return [sf.read(f, dtype="float32")[0] for f in files]


@pytest.mark.parametrize("name", ["logmel", "logmel-fmin-fmax", "mfcc-d2", "mfcc-d2-cmn", "mfcc-fmin-fmax-width5"])
def test_extractors_equal_librosa_on_real_speech(speech: list[np.ndarray], name: str) -> None:
    extractor = _extractor(name, 16000)
    for clip in speech:
        _assert_like_librosa(extractor, clip)


def test_a_cold_mfcc_extraction_imports_no_librosa_numba_or_scipy() -> None:
    code = (
        "import sys, numpy as np\n"
        "from serkit.data.audio import AudioSpec\n"
        "from serkit.features.spectral import MFCCExtractor\n"
        "x = (0.3 * np.sin(np.arange(16000) * 0.07)).astype(np.float32)\n"
        "frames = MFCCExtractor(spec=AudioSpec(duration=None)).extract(x, 16000)['frames']\n"
        "assert frames.shape == (101, 39), frames.shape\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('librosa', 'numba', 'llvmlite', 'scipy')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"  # neither librosa, numba, scipy.signal nor any of scipy

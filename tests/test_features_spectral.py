"""Spectral (log-mel, MFCC) and openSMILE extractors: shapes, conventions, physics, real speech."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serkit.data.audio import AudioSpec, load
from serkit.features import build_extractor
from serkit.features.spectral import LogMelConfig, LogMelExtractor, MFCCConfig, MFCCExtractor, utterance_stats
from tests.audio_factory import voiced

SR = 16000


def tone(freq: float, seconds: float = 1.0, amplitude: float = 0.5, sampling_rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def logmel() -> LogMelExtractor:
    return build_extractor({"kind": "logmel"})


@pytest.fixture(scope="module")
def mfcc() -> MFCCExtractor:
    return build_extractor({"kind": "mfcc"})


# --- log-mel -------------------------------------------------------------------------------


def test_logmel_framing_in_samples(logmel: LogMelExtractor) -> None:
    assert (logmel.win_length, logmel.hop_length, logmel.n_fft) == (400, 160, 512)
    at_8k = LogMelExtractor(spec=AudioSpec(sampling_rate=8000, duration=None))
    assert (at_8k.win_length, at_8k.hop_length, at_8k.n_fft, at_8k.fmax) == (200, 80, 256, 4000.0)


def test_logmel_outputs_for_one_second(logmel: LogMelExtractor) -> None:
    out = logmel.extract(voiced(1.0), SR)
    assert set(out) == {"frames", "image", "stats"}
    assert out["frames"].shape == (101, 64)
    assert out["image"].shape == (224, 224)
    assert out["stats"].shape == (128,)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("n", [1, 100, 159, 160, 399, 512, 16000, 16001, 23999])
def test_frame_count_is_one_plus_n_over_hop(logmel: LogMelExtractor, n: int) -> None:
    frames = logmel.extract(voiced(n / SR), SR)["frames"]
    assert frames.shape[0] == logmel.frame_count(n) == 1 + n // 160


def test_centring_matches_librosa_center_true(logmel: LogMelExtractor) -> None:
    import librosa

    x = voiced(1.0)
    power = librosa.feature.melspectrogram(
        y=x, sr=SR, n_fft=512, hop_length=160, win_length=400, n_mels=64, center=True, pad_mode="constant"
    )
    expected = 10 * np.log10(np.maximum(power, 1e-10))
    np.testing.assert_allclose(logmel.extract(x, SR)["frames"], expected.T, atol=1e-3)


def test_tone_energy_lands_in_band_containing_it(logmel: LogMelExtractor) -> None:
    import librosa

    band = int(np.argmax(logmel.extract(tone(1000.0), SR)["frames"].mean(axis=0)))
    # Band k spans edges[k]..edges[k + 2] and peaks at edges[k + 1].
    edges = librosa.mel_frequencies(n_mels=64 + 2, fmin=0.0, fmax=SR / 2)
    assert edges[band] < 1000.0 < edges[band + 2]
    assert abs(edges[band + 1] - 1000.0) < (edges[band + 2] - edges[band]) / 2


def test_louder_signal_has_higher_logmel_mean_by_its_gain(logmel: LogMelExtractor) -> None:
    quiet = logmel.extract(0.05 * voiced(1.0), SR)["frames"].mean()
    loud = logmel.extract(0.5 * voiced(1.0), SR)["frames"].mean()
    assert loud - quiet == pytest.approx(20.0, abs=0.5)  # 10x amplitude = +20 dB, fixed reference


def test_image_size_fixed_and_unit_range(logmel: LogMelExtractor) -> None:
    for seconds in (1.0, 6.0):
        image = logmel.extract(voiced(seconds), SR)["image"]
        assert image.shape == (224, 224) and image.dtype == np.float32
        # Resizing averages neighbours, so the extremes are approached, not always reached.
        assert 0.0 <= image.min() < 0.2 and 0.9 < image.max() <= 1.0


def test_image_is_peak_referenced_unit_map_at_native_size() -> None:
    extractor = build_extractor({"kind": "logmel", "image_size": [64, 101], "image_top_db": 60.0})
    out = extractor.extract(voiced(1.0), SR)
    grid = np.maximum(out["frames"].T, out["frames"].max() - 60.0)  # resize is the identity here
    expected = (grid - grid.min()) / (grid.max() - grid.min())
    np.testing.assert_allclose(out["image"], expected, atol=1e-5)
    assert out["image"].min() == 0.0 and out["image"].max() == 1.0


def test_image_size_setting_and_orientation() -> None:
    extractor = build_extractor({"kind": "logmel", "image_size": [96, 128]})
    image = extractor.extract(tone(300.0, seconds=2.0), SR)["image"]
    assert image.shape == (96, 128)
    # Row 0 is the lowest band: a low tone is bright in the bottom rows of the array.
    assert image[: 96 // 4].mean() > image[-96 // 4 :].mean()


def test_stats_layout_and_settings() -> None:
    extractor = build_extractor({"kind": "logmel", "stats": ["mean", "std", "min", "max", "p10", "p90"]})
    out = extractor.extract(voiced(1.0), SR)
    frames, stats = out["frames"], out["stats"]
    assert stats.shape == (64 * 6,)
    np.testing.assert_allclose(stats[:64], frames.mean(axis=0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(stats[64:128], frames.std(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats[128:192], frames.min(axis=0))
    np.testing.assert_allclose(stats[320:], np.percentile(frames, 90, axis=0), rtol=1e-5, atol=1e-4)
    assert len(extractor.stats_names()) == 384 and extractor.stats_names()[64] == "mel00_std"


def test_outputs_setting_selects() -> None:
    out = build_extractor({"kind": "logmel", "outputs": ["stats"]}).extract(voiced(0.5), SR)
    assert list(out) == ["stats"]


def test_silent_signal_gives_finite_outputs(logmel: LogMelExtractor, mfcc: MFCCExtractor) -> None:
    silence = np.zeros(SR, dtype=np.float32)
    out = logmel.extract(silence, SR)
    assert np.allclose(out["frames"], -100.0, atol=1e-3)  # the floor_db
    assert not out["image"].any()
    assert all(np.isfinite(v).all() for v in mfcc.extract(silence, SR).values())


@pytest.mark.parametrize("n", [1, 50, 399])
def test_signal_shorter_than_one_window(logmel: LogMelExtractor, mfcc: MFCCExtractor, n: int) -> None:
    for extractor in (logmel, mfcc):
        out = extractor.extract(voiced(n / SR), SR)
        assert out["frames"].shape[0] == 1 + n // 160
        assert out["image"].shape == (224, 224)
        assert all(np.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize(
    ("signal", "rate", "reason"),
    [
        (np.zeros(0, np.float32), SR, "empty"),
        (np.zeros((2, 100), np.float32), SR, "1-D"),
        (np.array([0.0, np.nan], np.float32), SR, "NaN"),
        (np.zeros(100, np.float32), 8000, "8000 Hz"),
    ],
)
def test_bad_signals_are_named(logmel: LogMelExtractor, signal: np.ndarray, rate: int, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        logmel.extract(signal, rate)


# --- MFCC ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("deltas", "dims"), [(0, 13), (1, 26), (2, 39)])
def test_mfcc_delta_dims(deltas: int, dims: int) -> None:
    extractor = build_extractor({"kind": "mfcc", "deltas": deltas})
    out = extractor.extract(voiced(1.0), SR)
    assert out["frames"].shape == (101, dims) and out["frames"].dtype == np.float32
    assert out["stats"].shape == (2 * dims,)
    assert len(extractor.frame_names()) == dims


def test_mfcc_is_dct_of_the_shared_logmel_front_end() -> None:
    from scipy.fft import dct

    x = voiced(1.0)
    mel = LogMelExtractor(LogMelConfig(n_mels=40)).extract(x, SR)["frames"]
    cep = MFCCExtractor(MFCCConfig(n_mels=40, deltas=0)).extract(x, SR)["frames"]
    np.testing.assert_allclose(cep, dct(mel.astype(np.float64), type=2, norm="ortho", axis=1)[:, :13], atol=1e-3)


def test_cmn_zeroes_coefficient_means() -> None:
    x = voiced(2.0)
    plain = build_extractor({"kind": "mfcc"}).extract(x, SR)["frames"]
    normalised = build_extractor({"kind": "mfcc", "cmn": True}).extract(x, SR)["frames"]
    assert np.abs(plain[:, :13].mean(axis=0)).max() > 1.0
    np.testing.assert_allclose(normalised[:, :13].mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(normalised[:, 13:], plain[:, 13:], atol=1e-3)  # deltas ignore offsets


# --- settings, fingerprints, construction --------------------------------------------------


def test_fingerprints_follow_settings() -> None:
    base = build_extractor({"kind": "logmel"}).fingerprint()
    assert build_extractor({"kind": "logmel"}).fingerprint() == base
    assert build_extractor({"kind": "logmel", "image_size": [224, 224]}).fingerprint() == base
    others = {
        build_extractor({"kind": "logmel", "n_mels": 80}).fingerprint(),
        build_extractor({"kind": "logmel", "image_size": [128, 128]}).fingerprint(),
        build_extractor({"kind": "logmel"}, AudioSpec(duration=7.0)).fingerprint(),
        build_extractor({"kind": "mfcc"}).fingerprint(),
        build_extractor({"kind": "mfcc", "cmn": True}).fingerprint(),
    }
    assert len(others) == 5 and base not in others


def test_build_extractor_rejects_unknown_setting() -> None:
    with pytest.raises(ValueError, match="n_mel"):
        build_extractor({"kind": "logmel", "n_mel": 64})
    with pytest.raises(ValueError, match="unknown setting"):
        build_extractor({"kind": "mfcc", "n_mfccs": 20})


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"kind": "logmel", "outputs": ["frames", "spectrum"]}, "outputs"),
        ({"kind": "logmel", "stats": ["mean", "kurtosis"]}, "kurtosis"),
        ({"kind": "logmel", "fmax": 9000.0}, "Nyquist"),
        ({"kind": "logmel", "image_size": [224]}, "image_size"),
        ({"kind": "mfcc", "n_mfcc": 50}, "n_mfcc"),
        ({"kind": "mfcc", "deltas": 3}, "deltas"),
        ({"kind": "mfcc", "delta_width": 8}, "delta_width"),
    ],
)
def test_bad_settings_are_named(settings: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        build_extractor(settings)


def test_extract_batch_matches_extract(mfcc: MFCCExtractor) -> None:
    signals = [voiced(0.5, seed=1), voiced(0.7, seed=2)]
    batch = mfcc.extract_batch(signals, SR)
    for single, batched in zip(signals, batch):
        np.testing.assert_array_equal(mfcc.extract(single, SR)["frames"], batched["frames"])


def test_utterance_stats_on_known_values() -> None:
    frames = np.array([[0.0, 10.0], [2.0, 30.0]], dtype=np.float32)
    np.testing.assert_allclose(utterance_stats(frames, ("mean", "std", "median")), [1, 20, 1, 10, 1, 20])


def test_importing_feature_modules_stays_cheap() -> None:
    code = (
        "import sys, serkit.features.spectral, serkit.features.opensmile;"
        "print(sorted(m for m in ('librosa', 'opensmile', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- openSMILE -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def egemaps():
    return build_extractor({"kind": "opensmile"})


def test_egemaps_functionals(egemaps) -> None:
    out = egemaps.extract(voiced(2.0), SR)
    assert list(out) == ["functionals"]
    values = out["functionals"]
    assert values.shape == (88,) and values.dtype == np.float32 and np.isfinite(values).all()
    names = egemaps.feature_names()
    assert len(names) == 88 and "loudness_sma3_amean" in names


def test_egemaps_smile_is_built_once_and_extractor_pickles(egemaps) -> None:
    egemaps.setup()
    smile = egemaps._smile
    egemaps.extract(voiced(1.0), SR)
    assert egemaps._smile is smile
    clone = pickle.loads(pickle.dumps(egemaps))
    np.testing.assert_array_equal(clone.extract(voiced(1.0), SR)["functionals"], egemaps.extract(voiced(1.0), SR)["functionals"])


def test_compare_2016_functionals() -> None:
    extractor = build_extractor({"kind": "opensmile", "feature_set": "ComParE_2016"})
    values = extractor.extract(voiced(2.0), SR)["functionals"]
    assert values.shape == (6373,) and np.isfinite(values).all()
    assert len(extractor.feature_names()) == 6373


def test_egemaps_lld_frames() -> None:
    extractor = build_extractor({"kind": "opensmile", "feature_level": "lld"})
    frames = extractor.extract(voiced(2.0), SR)["frames"]
    assert frames.ndim == 2 and frames.shape[1] == 25 == len(extractor.feature_names())
    assert 190 <= frames.shape[0] <= 200 and frames.dtype == np.float32  # 10 ms steps


@pytest.mark.parametrize(
    ("settings", "listed"),
    [({"feature_set": "eGeMAPS_v03"}, "eGeMAPSv02"), ({"feature_level": "frames"}, "functionals")],
)
def test_opensmile_unknown_names_list_allowed(settings: dict, listed: str) -> None:
    with pytest.raises(ValueError, match=listed):
        build_extractor({"kind": "opensmile", **settings})


def test_louder_signal_has_higher_loudness(egemaps) -> None:
    column = egemaps.feature_names().index("loudness_sma3_amean")
    quiet = egemaps.extract(0.1 * voiced(2.0), SR)["functionals"][column]
    loud = egemaps.extract(0.8 * voiced(2.0), SR)["functionals"][column]
    assert loud > 2 * quiet > 0


def test_full_scale_samples_do_not_wrap(egemaps) -> None:
    column = egemaps.feature_names().index("loudness_sma3_amean")
    square = np.sign(tone(200.0, seconds=1.0)).astype(np.float32)  # samples at exactly +-1.0
    half = 0.5 * square
    assert egemaps.extract(square, SR)["functionals"][column] > egemaps.extract(half, SR)["functionals"][column]


def test_opensmile_identity_has_version(egemaps) -> None:
    import opensmile

    assert egemaps.identity()["opensmile_version"] == opensmile.__version__
    other = build_extractor({"kind": "opensmile", "feature_set": "ComParE_2016"})
    assert other.fingerprint() != egemaps.fingerprint()


def test_opensmile_too_short_and_silent(egemaps) -> None:
    with pytest.raises(ValueError, match="too short"):
        egemaps.extract(voiced(0.02), SR)
    assert np.isfinite(egemaps.extract(np.zeros(SR, np.float32), SR)["functionals"]).all()
    with pytest.raises(ValueError, match="Hz"):
        egemaps.extract(voiced(1.0), 8000)


# --- real speech ---------------------------------------------------------------------------


def _emovo_files(shared_data: Path, emotion: str) -> list[Path]:
    files = sorted((shared_data / "emovo" / "f1").glob(f"{emotion}-f1-*.flac"))
    if len(files) < 5:
        pytest.skip(f"EMOVO speaker f1 {emotion!r} files not found under {shared_data}")
    return files


@pytest.mark.realdata
def test_real_speech_anger_louder_than_sadness(shared_data: Path) -> None:
    extractors = {kind: build_extractor({"kind": kind}) for kind in ("logmel", "mfcc", "opensmile")}
    loudness_column = extractors["opensmile"].feature_names().index("loudness_sma3_amean")
    loudness: dict[str, list[float]] = {}
    energy: dict[str, list[float]] = {}
    for emotion in ("rab", "tri"):  # anger, sadness
        for path in _emovo_files(shared_data, emotion):
            signal = load(path, extractors["logmel"].spec)
            frames = 1 + signal.size // 160
            mel = extractors["logmel"].extract(signal, SR)
            cep = extractors["mfcc"].extract(signal, SR)
            smile = extractors["opensmile"].extract(load(path, extractors["opensmile"].spec), SR)
            assert mel["frames"].shape == (frames, 64) and cep["frames"].shape == (frames, 39)
            assert mel["image"].shape == cep["image"].shape == (224, 224)
            assert smile["functionals"].shape == (88,)
            for out in (mel, cep, smile):
                assert all(np.isfinite(v).all() for v in out.values())
            loudness.setdefault(emotion, []).append(float(smile["functionals"][loudness_column]))
            energy.setdefault(emotion, []).append(float(mel["frames"].mean()))
    assert np.mean(loudness["rab"]) > np.mean(loudness["tri"])
    assert np.mean(energy["rab"]) > np.mean(energy["tri"])

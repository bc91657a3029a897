"""serkit's numpy Whisper log-mel equals transformers' `WhisperFeatureExtractor` on real speech."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from serkit.features.whisper_mel import WhisperLogMel, slaney_mel_filters

transformers = pytest.importorskip("transformers")
sf = pytest.importorskip("soundfile")

#: transformers' numpy path: the same float64 computation, float32 rounding apart.
NUMPY_PATH_TOLERANCE = 1e-5
#: transformers' torch path (float32 STFT; what it runs with torch installed, and serkit used before):
#: its own numpy path differs from it by 2.1e-5 on these clips, in the quietest top bands.
TORCH_PATH_TOLERANCE = 5e-5


@pytest.fixture(scope="module")
def speech(shared_data: Path) -> list[np.ndarray]:
    """Twelve EMOVO utterances (16 kHz, 1.5 - 5 s), every speaker and several emotions."""
    files = sorted((shared_data / "emovo").glob("*/*.flac"))[::50]
    assert len(files) >= 10
    return [sf.read(f, dtype="float32")[0] for f in files]


@pytest.mark.parametrize("n_mels", [80, 128])
def test_the_filters_are_transformers_slaney_filters(n_mels: int) -> None:
    from transformers.audio_utils import mel_filter_bank

    expected = mel_filter_bank(num_frequency_bins=201, num_mel_filters=n_mels, min_frequency=0.0, max_frequency=8000.0,
                               sampling_rate=16000, norm="slaney", mel_scale="slaney")
    np.testing.assert_allclose(slaney_mel_filters(n_mels, 400, 16000), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("padding", ["longest", "max_length"])
def test_log_mel_equals_transformers_on_real_speech(speech: list[np.ndarray], padding: str) -> None:
    reference = transformers.WhisperFeatureExtractor(feature_size=80)
    ours = WhisperLogMel(80)(speech, sampling_rate=16000, padding=padding)["input_features"]
    torch_path = reference(speech, sampling_rate=16000, padding=padding, return_tensors="np")["input_features"]
    assert ours.dtype == np.float32 and ours.shape == torch_path.shape
    assert np.abs(ours - torch_path).max() < TORCH_PATH_TOLERANCE
    length = 480000 if padding == "max_length" else max(len(s) for s in speech)
    for row, clip in enumerate(speech):  # the numpy path, clip by clip, padded as the batch was
        padded = np.zeros((1, length), dtype=np.float32)
        padded[0, : len(clip)] = clip
        numpy_path = reference._np_extract_fbank_features(padded, "cpu")[0]
        assert np.abs(ours[row] - numpy_path).max() < NUMPY_PATH_TOLERANCE


def test_settings_come_from_the_model_folder(tmp_path: Path) -> None:
    assert WhisperLogMel.for_model(tmp_path, 128).feature_size == 128  # no preprocessor_config.json: defaults
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"feature_size": 128, "chunk_length": 20}))
    mel = WhisperLogMel.for_model(tmp_path, 128)
    assert mel.n_samples == 20 * 16000 and mel([np.zeros(100, np.float32)])["input_features"].shape == (1, 128, 2000)
    with pytest.raises(ValueError, match="128 mel bins, the encoder 80"):
        WhisperLogMel.for_model(tmp_path, 80)


def test_other_rates_and_dither_are_refused() -> None:
    with pytest.raises(ValueError, match="expected 16000 Hz"):
        WhisperLogMel(80)([np.zeros(1600, np.float32)], sampling_rate=8000)
    with pytest.raises(ValueError, match="dither"):
        WhisperLogMel(80, dither=1e-5)

"""Whisper's log-mel spectrogram in numpy: no torch, no transformers (issue #14).

`WhisperLogMel` computes what transformers' `WhisperFeatureExtractor` returns as
``input_features`` (transformers 5.x): clips zero-padded to the longest of the batch or to 30 s, a centred STFT (periodic
Hann window of ``n_fft`` samples, reflect padding, ``hop_length`` hop, the last frame dropped),
power spectrum -> Slaney mel filters from 0 to 8 kHz -> ``log10(max(., 1e-10))``, floored at
8 decades below each clip's maximum, then ``(x + 4) / 4``. The STFT and the filters run in
float64 and the result is float32.

Agreement (tested on real speech, EMOVO: ``tests/test_whisper_mel.py``): equal to transformers'
numpy path (``_np_extract_fbank_features``) to 1e-5 (measured 1.2e-7, float32 rounding), and
to its torch path, which transformers runs when torch is installed and which serkit used
before, to 5e-5 (measured 2.2e-5, in the quietest top bands near the 8-decade floor: torch
computes the STFT in float32; transformers' own two paths differ by as much). Values are O(1).

Importing transformers' extractor imports torch and scans the transformers package: seconds
of a cold `serkit predict` with a Whisper SVM that otherwise needs neither. The settings come
from the model folder's ``preprocessor_config.json`` when it has one (read as JSON), else
Whisper's defaults with the encoder's mel count, as transformers does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from serkit.features.spectral_dsp import power_spectrogram, slaney_mel_filterbank

__all__ = ["WhisperLogMel", "slaney_mel_filters"]

#: Settings read from a preprocessor_config.json, with Whisper's defaults.
_DEFAULTS = {"feature_size": 80, "sampling_rate": 16000, "hop_length": 160, "chunk_length": 30, "n_fft": 400,
             "padding_value": 0.0, "dither": 0.0}
#: Upper edge of Whisper's mel filters, Hz.
_MAX_HZ = 8000.0


def slaney_mel_filters(n_mels: int, n_fft: int, sampling_rate: int) -> np.ndarray:
    """Slaney-normalised triangular mel filters from 0 Hz to 8 kHz, as Whisper uses them.

    Returns:
        float64 array of shape (n_fft // 2 + 1, n_mels): FFT bin -> mel band weights (the
        same numbers as ``transformers.audio_utils.mel_filter_bank(..., norm="slaney",
        mel_scale="slaney")``): the transpose of `slaney_mel_filterbank`, shared with the
        spectral extractors. Read-only: it is cached.
    """
    return slaney_mel_filterbank(sampling_rate, n_fft, n_mels, 0.0, _MAX_HZ).T


class WhisperLogMel:
    """Whisper's log-mel front end, callable like transformers' `WhisperFeatureExtractor`.

    Attributes:
        feature_size: Mel bands.
        sampling_rate: Expected input rate, Hz.
        hop_length: Samples per frame (160: 10 ms at 16 kHz).
        n_fft: STFT window, samples.
        chunk_length: Whisper's window, seconds; ``n_samples`` is it in samples.
    """

    def __init__(self, feature_size: int = 80, sampling_rate: int = 16000, hop_length: int = 160,
                 chunk_length: int = 30, n_fft: int = 400, padding_value: float = 0.0, dither: float = 0.0) -> None:
        if dither != 0.0:  # transformers adds random noise then; serkit's features are deterministic
            raise ValueError(f"Whisper log-mel: dither {dither} is not supported (serkit's features are deterministic)")
        self.feature_size = int(feature_size)
        self.sampling_rate = int(sampling_rate)
        self.hop_length = int(hop_length)
        self.chunk_length = int(chunk_length)
        self.n_fft = int(n_fft)
        self.padding_value = float(padding_value)
        self.n_samples = self.chunk_length * self.sampling_rate
        self.filters = slaney_mel_filters(self.feature_size, self.n_fft, self.sampling_rate)

    @classmethod
    def for_model(cls, folder: str | Path | None, n_mels: int) -> "WhisperLogMel":
        """The front end a model folder asks for: its preprocessor_config.json, else the defaults with `n_mels`.

        Raises:
            ValueError: The preprocessor's mel count differs from the encoder's `n_mels`, or it
                is not valid JSON.
        """
        settings: dict[str, Any] = {**_DEFAULTS, "feature_size": n_mels}
        path = Path(folder) / "preprocessor_config.json" if folder is not None else None
        if path is not None and path.is_file():
            try:
                saved = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(f"{path}: not valid JSON ({exc})") from None
            settings.update({k: saved[k] for k in _DEFAULTS if k in saved})
        mel = cls(**settings)
        if mel.feature_size != n_mels:
            raise ValueError(f"{path}: the preprocessor has {mel.feature_size} mel bins, the encoder {n_mels}")
        return mel

    def __call__(self, clips: list[np.ndarray], sampling_rate: int | None = None, padding: str = "max_length",
                 return_tensors: str = "np") -> dict[str, np.ndarray]:
        """Log-mel spectrograms of a batch of clips.

        Args:
            clips: 1-D signals at `sampling_rate`.
            sampling_rate: Their rate; must equal ``self.sampling_rate`` when given.
            padding: ``"max_length"`` (zero-padded or cut to 30 s) or ``"longest"`` (to the
                longest clip).
            return_tensors: ``"np"`` only (accepted for transformers' call signature).

        Returns:
            ``{"input_features": float32 array (batch, feature_size, samples // hop_length)}``.

        Raises:
            ValueError: Another sampling rate, padding or tensor type, or an empty batch.
        """
        if sampling_rate is not None and int(sampling_rate) != self.sampling_rate:
            raise ValueError(f"Whisper log-mel: expected {self.sampling_rate} Hz audio, got {sampling_rate} Hz")
        if return_tensors != "np" or padding not in ("max_length", "longest") or not len(clips):
            raise ValueError(f"Whisper log-mel: padding {padding!r}, return_tensors {return_tensors!r}, {len(clips)} clips")
        length = self.n_samples if padding == "max_length" else max(len(c) for c in clips)
        batch = np.full((len(clips), length), self.padding_value, dtype=np.float32)
        for row, clip in enumerate(clips):
            clip = np.asarray(clip, dtype=np.float32)[:length]  # float32 first, as transformers does
            batch[row, : len(clip)] = clip
        return {"input_features": np.stack([self._log_mel(row) for row in batch])}

    def _log_mel(self, signal: np.ndarray) -> np.ndarray:
        """(feature_size, frames) log-mel of one padded signal."""
        half = self.n_fft // 2
        padded = np.pad(signal.astype(np.float64), half, mode="reflect")  # torch.stft(center=True)
        power = power_spectrogram(padded, self.n_fft, self.hop_length)[:, :-1]  # periodic Hann; last frame dropped
        log_spec = np.log10(np.maximum(self.filters.T @ power, 1e-10))
        log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
        return ((log_spec + 4.0) / 4.0).astype(np.float32)


"""Audio in: decode, check, mix down, resample and pad/crop, driven by one frozen `AudioSpec`.

What libsndfile reads exactly is read with soundfile (WAV of any PCM width or float, FLAC,
OGG/Vorbis, AIFF and AIFF-C, AU, CAF). Everything else FFmpeg reads (MP3, M4A/AAC, WebM/Opus,
MP4, OGG/Opus, ...) is decoded through PyAV (`serkit.data.audio_av`, imported only then) to its
real end: a compressed stream's length comes from decoding, never from a header's estimate.
The container is detected from the content, not the name, so AIFF-C data stored under a
``.wav`` name reads fine. Paths are opened by Python, so file names that are not UTF-8 read.

Bad input raises `AudioError`, whose message names the file and the reason. All-zero audio
is not an error but emits a `SilentAudioWarning`; a WAV header that says 0 bytes while audio
follows emits a `HeaderWarning` and the audio is read.

This module is the public face: the spec and `read`, `probe`, `stream`, `preprocess`, `load`.
The decoding backends live in `serkit.data.audio_decode`, the header checks in
`serkit.data.audio_header`, and the error and warnings in `serkit.data.audio_notes` (the
public ones are re-exported here).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np

from serkit.data.audio_decode import (
    AudioInfo,
    Source,
    decode_ffmpeg,
    decoded_info,
    display_name,
    ffmpeg_blocks,
    info_of,
    open_sndfile,
    open_source,
    read_sndfile,
    reject_lfs_pointer,
    sndfile_blocks,
    source_name,
)
from serkit.data.audio_header import declared_frames, repair_zero_sized_wav
from serkit.data.audio_notes import AudioError, DecodeWarning, HeaderWarning, SilentAudioWarning

__all__ = [
    "AudioError",
    "AudioInfo",
    "AudioSpec",
    "DecodeWarning",
    "HeaderWarning",
    "PAPER_SPEC",
    "SilentAudioWarning",
    "display_name",
    "fix_length",
    "load",
    "preprocess",
    "probe",
    "read",
    "stream",
]


@dataclass(frozen=True)
class AudioSpec:
    """How every clip is brought to a common form before feature extraction.

    Attributes:
        sampling_rate: Target rate in Hz; other rates are resampled with soxr.
        mono: Mix multi-channel audio down to one channel (mean of channels).
        duration: Fixed length in seconds (zero-padded at the end or cropped), or None to
            keep each clip's own length.
        crop: Where a longer clip is cut: ``"start"`` keeps the beginning, ``"center"``
            keeps the middle.
        min_duration: Clips shorter than this (before padding), in seconds, are rejected.
        max_duration: Clips longer than this, in seconds, are rejected before decoding, so
            a bogus header cannot make the reader allocate unbounded memory.
    """

    sampling_rate: int = 16000
    mono: bool = True
    duration: float | None = 7.0
    crop: Literal["start", "center"] = "start"
    min_duration: float = 0.0
    max_duration: float = 3600.0

    def __post_init__(self) -> None:
        if int(self.sampling_rate) != self.sampling_rate or self.sampling_rate <= 0:
            raise ValueError(f"AudioSpec.sampling_rate must be a positive integer, got {self.sampling_rate!r}")
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"AudioSpec.duration must be positive or None, got {self.duration!r}")
        if self.crop not in ("start", "center"):
            raise ValueError(f"AudioSpec.crop must be 'start' or 'center', got {self.crop!r}")
        if self.min_duration < 0 or not self.max_duration > self.min_duration:
            raise ValueError(
                f"AudioSpec needs 0 <= min_duration < max_duration, got {self.min_duration!r}, {self.max_duration!r}"
            )
        if not self.mono:
            # Everything downstream (encoders, spectrograms) expects one channel.
            raise ValueError("AudioSpec.mono=False is not supported: serkit models take one channel")

    @property
    def num_samples(self) -> int | None:
        """Fixed length in samples, or None when clips keep their own length."""
        return None if self.duration is None else int(round(self.duration * self.sampling_rate))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (model.json, cache metadata)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AudioSpec":
        """Rebuild from `to_dict` output; unknown keys are an error naming them."""
        allowed = {f.name for f in fields(cls)}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown AudioSpec keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**data)


#: The source paper's preprocessing: 16 kHz mono, zero-padded or cut to 7 s.
PAPER_SPEC = AudioSpec()


def probe(source: Source, *, name: str | None = None, max_duration: float = AudioSpec.max_duration) -> AudioInfo:
    """Rate, channels, length, container and sample format of a file.

    For what libsndfile reads exactly (WAV, FLAC, OGG/Vorbis, AIFF, ...) this reads the header
    only. A compressed stream (MP3, AAC, Opus, ...) is decoded to its end without keeping the
    samples, because its header only estimates the length; that decoding stops at
    `max_duration`.

    Args:
        source: A path, an open binary file or the file's bytes.
        name: Name used in error messages when `source` is not a path.
        max_duration: Longest compressed stream decoded to measure it, in seconds.

    Returns:
        The file's information; ``frames`` is the decoded length for compressed streams.

    Raises:
        AudioError: The file is missing, empty, not audio, has no samples, or is a
            compressed stream longer than `max_duration`.
    """
    label = source_name(source, name)
    with open_source(source, label) as handle:
        start = handle.tell()
        reject_lfs_pointer(handle, start, label)
        handle, start = repair_zero_sized_wav(handle, start, label, max_duration)
        snd, why = open_sndfile(handle, start)
        if snd is None:
            return decoded_info(decode_ffmpeg(handle, start, label, max_duration, False, why))
        with snd:
            info = info_of(snd)
    if info.frames <= 0:
        raise AudioError(label, "contains no samples (zero-length audio)")
    return info


def read(
    source: Source,
    *,
    max_duration: float = AudioSpec.max_duration,
    min_duration: float = 0.0,
    name: str | None = None,
) -> tuple[np.ndarray, int]:
    """Decode a file to float32 samples with every input check applied.

    What libsndfile reads exactly (WAV, FLAC, OGG/Vorbis, AIFF, ...) is read with soundfile;
    everything else FFmpeg reads (MP3, M4A/AAC, WebM/Opus, MP4, OGG/Opus, ...) with PyAV,
    decoded to its real end.

    Args:
        source: A path, an open binary file or the file's bytes.
        max_duration: Longer files are rejected: from the header, before any allocation,
            where the header states the length exactly; while decoding (stopping there) for
            compressed streams.
        min_duration: Shorter files are rejected.
        name: Name used in error messages when `source` is not a path.

    Returns:
        ``(signal, sampling_rate)`` with `signal` of shape (frames, channels), float32.

    Raises:
        AudioError: Missing, empty, not audio (a Git LFS pointer is named as such),
            zero-length, truncated or corrupt, NaN/Inf samples, too short or too long.

    Warns:
        HeaderWarning: A WAV header says 0 bytes of audio but audio follows; it is read.
    """
    label = source_name(source, name)
    with open_source(source, label) as handle:
        start = handle.tell()
        reject_lfs_pointer(handle, start, label)
        handle, start = repair_zero_sized_wav(handle, start, label, max_duration)
        declared = declared_frames(handle, start)
        snd, why = open_sndfile(handle, start)
        if snd is None:
            decoded = decode_ffmpeg(handle, start, label, max_duration, True, why)
            signal, rate = decoded.signal, decoded.sampling_rate
        else:
            with snd:
                signal, rate = read_sndfile(snd, label, declared, max_duration)
    if not np.isfinite(signal).all():
        raise AudioError(label, "contains NaN or Inf samples")
    duration = signal.shape[0] / rate
    if duration < min_duration:
        raise AudioError(label, f"too short: {duration:.3f} s, minimum is {min_duration:g} s")
    return signal, rate


def stream(
    source: Source,
    spec: AudioSpec = PAPER_SPEC,
    *,
    block_seconds: float = 60.0,
    name: str | None = None,
    native: Callable[[np.ndarray, int], None] | None = None,
    warn_silent: bool = True,
) -> Iterator[np.ndarray]:
    """Decode, mix down and resample a recording block by block, for recordings of any length.

    Memory holds about one block (plus the resampler's state), whatever the recording's
    length: the way to take a long recording through windows. Joined, the blocks equal
    ``load(source, dataclasses.replace(spec, duration=None))`` up to float rounding.

    Args:
        source: A path, an open binary file or the file's bytes.
        spec: Target rate and limits; its ``duration`` (padding, cropping) is not applied.
        block_seconds: Length of the blocks decoded at a time, in seconds of the source.
        name: Name used in error messages when `source` is not a path.
        native: Called with each decoded block as the file holds it, ``(samples of shape
            (frames, channels), sampling_rate)``, before mixdown and resampling (to measure
            levels and clipping, `serkit.data.quality.LevelMeter`).
        warn_silent: Emit `SilentAudioWarning` for all-zero audio (False when the caller
            judges silence itself).

    Yields:
        1-D float32 blocks at ``spec.sampling_rate`` (lengths vary slightly with resampling).

    Raises:
        AudioError: As `read`, raised when iteration reaches the problem: header checks
            before the first block, corrupt data and ``max_duration`` on the way, NaN/Inf
            in the block that holds them, ``min_duration`` at the end.

    Warns:
        SilentAudioWarning: At the end, when every sample was zero.
    """
    import soxr

    if not block_seconds > 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds!r}")
    label = source_name(source, name)
    with open_source(source, label) as handle, contextlib.ExitStack() as stack:
        start = handle.tell()
        reject_lfs_pointer(handle, start, label)
        handle, start = repair_zero_sized_wav(handle, start, label, spec.max_duration)
        declared = declared_frames(handle, start)
        snd, why = open_sndfile(handle, start)
        if snd is None:
            raw = ffmpeg_blocks(handle, start, label, spec.max_duration, block_seconds, why)
        else:
            stack.enter_context(snd)
            block_samples = max(1, int(block_seconds * snd.samplerate) * snd.channels)
            raw = sndfile_blocks(snd, label, declared, spec.max_duration, block_samples)
        resampler = None
        total = 0
        sounding = False
        for block, rate in raw:
            mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
            if not np.isfinite(mono).all():
                raise AudioError(label, "contains NaN or Inf samples")
            if native is not None:
                native(block, rate)
            sounding = sounding or bool(np.any(mono))
            total += mono.size
            if rate != spec.sampling_rate:
                if resampler is None:
                    resampler = (soxr.ResampleStream(rate, spec.sampling_rate, 1, dtype="float32", quality="HQ"), rate)
                mono = resampler[0].resample_chunk(mono)
            if mono.size:
                yield np.ascontiguousarray(mono, dtype=np.float32)
        if resampler is not None:
            tail = resampler[0].resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if tail.size:
                yield np.ascontiguousarray(tail, dtype=np.float32)
        rate = resampler[1] if resampler is not None else spec.sampling_rate
        if total / rate < spec.min_duration:
            raise AudioError(label, f"too short: {total / rate:.3f} s, minimum is {spec.min_duration:g} s")
        if not sounding and warn_silent:
            warnings.warn(f"{label}: all samples are zero (silent audio)", SilentAudioWarning, stacklevel=2)


def fix_length(signal: np.ndarray, num_samples: int, crop: str = "start", *, axis: int = -1) -> np.ndarray:
    """Zero-pad at the end or cut an array to exactly `num_samples` along one axis.

    The one pad/cut of serkit: samples of a signal (the last axis) and frames of a feature map
    (``axis=-2``: the experiment's stacking, the Predictor's, an encoder's frame maps).

    Args:
        signal: Samples (or a frame map).
        num_samples: Target length.
        crop: ``"start"`` keeps the beginning of a longer signal, ``"center"`` the middle.
        axis: The axis to fix.

    Returns:
        A new contiguous array, `num_samples` long on `axis`.
    """
    moved = np.moveaxis(signal, axis, -1)
    n = moved.shape[-1]
    if n == num_samples:
        out = moved.copy()
    elif n < num_samples:
        out = np.zeros(moved.shape[:-1] + (num_samples,), dtype=moved.dtype)
        out[..., :n] = moved
    else:
        start = 0 if crop == "start" else (n - num_samples) // 2
        out = moved[..., start : start + num_samples]
    return np.ascontiguousarray(np.moveaxis(out, -1, axis))


def preprocess(
    signal: np.ndarray, sampling_rate: int, spec: AudioSpec = PAPER_SPEC, *, name: str = "<signal>"
) -> np.ndarray:
    """Bring decoded samples to `spec`: mono, resampled, padded or cropped.

    Args:
        signal: Samples, shape (frames,) or (frames, channels).
        sampling_rate: Rate of `signal` in Hz.
        spec: Target form.
        name: Used in warnings and errors.

    Returns:
        1-D float32 signal at ``spec.sampling_rate``, of ``spec.num_samples`` samples when
        the spec fixes a duration.

    Raises:
        AudioError: NaN/Inf samples, or shorter than ``spec.min_duration``.
    """
    import soxr

    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim == 2:
        signal = signal.mean(axis=1, dtype=np.float32) if signal.shape[1] > 1 else signal[:, 0]
    elif signal.ndim != 1:
        raise AudioError(name, f"expected samples of shape (frames,) or (frames, channels), got {signal.shape}")
    if signal.size == 0:
        raise AudioError(name, "contains no samples (zero-length audio)")
    if not np.isfinite(signal).all():
        raise AudioError(name, "contains NaN or Inf samples")
    duration = signal.size / sampling_rate
    if duration < spec.min_duration:
        raise AudioError(name, f"too short: {duration:.3f} s, minimum is {spec.min_duration:g} s")
    if duration > spec.max_duration:
        raise AudioError(name, f"too long: {duration:.1f} s, maximum is {spec.max_duration:g} s")
    if not np.any(signal):
        warnings.warn(f"{name}: all samples are zero (silent audio)", SilentAudioWarning, stacklevel=2)
    if sampling_rate != spec.sampling_rate:
        signal = soxr.resample(signal, sampling_rate, spec.sampling_rate, quality="HQ").astype(np.float32, copy=False)
    if spec.num_samples is not None:
        signal = fix_length(signal, spec.num_samples, spec.crop)
    return np.ascontiguousarray(signal, dtype=np.float32)


def load(source: Source, spec: AudioSpec = PAPER_SPEC, *, name: str | None = None) -> np.ndarray:
    """Read a file and bring it to `spec`: the one preprocessing path every feature uses.

    Args:
        source: A path, an open binary file or the file's bytes.
        spec: Target form (default: the paper's 16 kHz mono 7 s).
        name: Name used in error messages when `source` is not a path.

    Returns:
        1-D float32 signal at ``spec.sampling_rate``.

    Raises:
        AudioError: For every kind of bad input (see `read`).
    """
    label = source_name(source, name)
    signal, sampling_rate = read(
        source, max_duration=spec.max_duration, min_duration=spec.min_duration, name=label
    )
    return preprocess(signal, sampling_rate, spec, name=label)

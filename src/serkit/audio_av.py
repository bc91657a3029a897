"""Decoding compressed and container formats (MP3, M4A/AAC, WebM/Opus, MP4, ...) through PyAV.

PyAV ships FFmpeg's libraries in its wheels. This module is imported only when a file is not
one libsndfile reads exactly, so ``import serkit`` stays fast.

A compressed stream's length is what decoding it yields, never a header's estimate (an MP3's
Xing header or its bit rate, a container's duration field). The guard against lying headers
moves into the decoding loop: decoding stops, and `AudioError` is raised, as soon as the
decoded length passes the configured maximum, so memory never exceeds that maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from serkit.audio import AudioError

__all__ = ["Decoded", "UnknownFormatError", "decode"]


class UnknownFormatError(AudioError):
    """FFmpeg recognises no container in the file (it is not audio, or a format FFmpeg lacks)."""

#: FFmpeg sample formats (packed names) -> (numpy dtype, offset, scale) giving float in [-1, 1).
_SAMPLE_FORMATS: dict[str, tuple[str, float, float]] = {
    "u8": ("uint8", 128.0, 1 / 128),
    "s16": ("int16", 0.0, 1 / 2**15),
    "s32": ("int32", 0.0, 1 / 2**31),
    "s64": ("int64", 0.0, 1 / 2**63),
    "flt": ("float32", 0.0, 1.0),
    "dbl": ("float64", 0.0, 1.0),
}

#: FFmpeg demuxer names -> the container name serkit reports (`AudioInfo.format`).
_CONTAINERS: dict[str, str] = {"mov,mp4,m4a,3gp,3g2,mj2": "MP4", "matroska,webm": "WEBM"}


@dataclass(frozen=True)
class Decoded:
    """The result of decoding one audio stream.

    Attributes:
        signal: Samples of shape (frames, channels), float32, or None when only counted.
        sampling_rate: Rate of the decoded stream in Hz.
        channels: Number of channels.
        frames: Decoded length in samples per channel.
        format: Container, e.g. ``"MP3"``, ``"MP4"``, ``"WEBM"``, ``"OGG"``.
        codec: Codec of the stream, e.g. ``"MP3"``, ``"AAC"``, ``"OPUS"``.
    """

    signal: np.ndarray | None
    sampling_rate: int
    channels: int
    frames: int
    format: str
    codec: str


def _to_float(frame, label: str) -> np.ndarray:
    """One decoded frame as float32 of shape (channels, samples)."""
    name = frame.format.name
    planar = name.endswith("p")
    kind = _SAMPLE_FORMATS.get(name[:-1] if planar else name)
    if kind is None:
        raise AudioError(label, f"unsupported sample format {name!r} from the decoder")
    dtype, offset, scale = kind
    data = np.asarray(frame.to_ndarray(), dtype=dtype)
    channels = len(frame.layout.channels)
    if not planar:  # packed: (1, samples * channels), interleaved
        data = data.reshape(-1, channels).T
    out = data.astype(np.float32)
    if offset:
        out -= np.float32(offset)
    if scale != 1.0:
        out *= np.float32(scale)
    return out


def decode(file: BinaryIO, label: str, *, max_duration: float, keep: bool = True) -> Decoded:
    """Decode the first audio stream of `file` to its real end.

    Args:
        file: An open binary file positioned at the start of the data (seekable).
        label: The file's name for error messages.
        max_duration: Decoding stops with an error once more than this many seconds have
            been decoded, so a lying or hostile file cannot make memory or time grow without
            bound.
        keep: Keep the samples; False only counts them (for `serkit.audio.probe`).

    Returns:
        The decoded stream; ``signal`` is None when `keep` is False.

    Raises:
        AudioError: PyAV is not installed, FFmpeg cannot read the file, it has no audio
            stream or no samples, the data is corrupt, or it is longer than `max_duration`.
    """
    try:
        import av
    except ImportError:  # pragma: no cover - av is a base dependency
        raise AudioError(label, "not a format libsndfile reads, and PyAV is missing: pip install av") from None
    try:
        container = av.open(file, mode="r", metadata_errors="replace")
    except av.FFmpegError as exc:
        raise UnknownFormatError(label, f"not a readable audio file (FFmpeg: {_reason(exc)})") from None
    with container:
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise AudioError(label, f"no audio stream in this file (streams: {', '.join(kinds)})")
        stream = container.streams.audio[0]
        container_name = _CONTAINERS.get(container.format.name, container.format.name.split(",")[0].upper())
        codec = stream.codec_context.name.upper()
        blocks: list[np.ndarray] = []
        frames = 0
        rate = channels = 0
        max_frames = 0
        try:
            for frame in container.decode(stream):
                if frame.samples == 0:
                    continue
                if not rate:
                    rate, channels = int(frame.sample_rate), len(frame.layout.channels)
                    if rate <= 0 or channels <= 0:
                        raise AudioError(label, f"the decoder reports {rate} Hz and {channels} channels")
                    max_frames = int(math.ceil(max_duration * rate))
                elif frame.sample_rate != rate or len(frame.layout.channels) != channels:
                    raise AudioError(
                        label,
                        f"the sampling rate or channel count changes within the stream ({rate} Hz x {channels} "
                        f"-> {frame.sample_rate} Hz x {len(frame.layout.channels)}); convert it to one format first",
                    )
                frames += frame.samples
                if frames > max_frames:
                    raise AudioError(
                        label, f"too long: decoding passed the maximum of {max_duration:g} s and was stopped"
                    )
                if keep:
                    blocks.append(_to_float(frame, label))
        except av.FFmpegError as exc:
            raise AudioError(
                label, f"corrupt audio data after {frames / rate if rate else 0:.2f} s ({_reason(exc)})"
            ) from None
    if frames == 0:
        raise AudioError(label, "contains no samples (zero-length audio)")
    signal = None
    if keep:
        signal = np.ascontiguousarray(np.concatenate(blocks, axis=1).T)
    return Decoded(signal, rate, channels, frames, container_name, codec)


def _reason(exc: Exception) -> str:
    """FFmpeg's message without PyAV's errno prefix and file-name suffix."""
    return str(getattr(exc, "strerror", None) or exc)

"""Decoding compressed and container formats (MP3, M4A/AAC, WebM/Opus, MP4, ...) through PyAV.

PyAV ships FFmpeg's libraries in its wheels. This module is imported only when a file is not
one libsndfile reads exactly, so ``import serkit`` stays fast.

A compressed stream's length is what decoding it yields, never a header's estimate (an MP3's
Xing header or its bit rate, a container's duration field). The guard against lying headers
moves into the decoding loop: decoding stops, and `AudioError` is raised, as soon as the
decoded length passes the configured maximum, so memory never exceeds that maximum.

Damage is handled as FFmpeg's own tools do, within bounds: a few undecodable packets (a
damaged MP3 frame) are skipped with a `serkit.audio.DecodeWarning`; more than 3 and more than
1 % of the packets make the file an `AudioError`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from serkit.audio import AudioError, DecodeWarning

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
            stream or no samples, more than a few packets are corrupt (over 3, and over 1 %),
            the format changes within the stream, or it is longer than `max_duration`.

    Warns:
        DecodeWarning: A few packets could not be decoded and were skipped, or the data ends
            with bytes the container parser cannot read (what precedes them is returned).
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
        damage = _Damage()
        for frame in _decoded_frames(container, stream, damage):
            if frame.samples == 0:
                continue
            if not rate:
                rate, channels = int(frame.sample_rate), len(frame.layout.channels)
                if rate <= 0 or channels <= 0:
                    raise AudioError(label, f"the decoder reports {rate} Hz and {channels} channels")
                max_frames = int(math.ceil(max_duration * rate))
            elif frame.sample_rate != rate or len(frame.layout.channels) != channels:
                # a damaged frame header, or a real change of format: told apart by how often
                damage.odd_frames += 1
                damage.odd = f"{rate} Hz x {channels} -> {frame.sample_rate} Hz x {len(frame.layout.channels)}"
                continue
            frames += frame.samples
            if frames > max_frames:
                raise AudioError(label, f"too long: decoding passed the maximum of {max_duration:g} s and was stopped")
            if keep:
                blocks.append(_to_float(frame, label))
    where = f"after {frames / rate:.2f} s" if rate else "at the start"
    if damage.odd_frames > max(_MAX_BAD_PACKETS, _MAX_BAD_FRACTION * damage.packets):
        raise AudioError(label, f"the sampling rate or channel count changes within the stream ({damage.odd}, "
                         f"{damage.odd_frames} frame(s)); convert it to one format first")
    if damage.odd_frames:
        damage.bad_packets += damage.odd_frames
        damage.reason = damage.reason or f"frames of another format: {damage.odd}"
        damage.first = damage.first or "an unknown time"
    if damage.bad_packets > max(_MAX_BAD_PACKETS, _MAX_BAD_FRACTION * damage.packets) or (frames == 0 and damage):
        raise AudioError(label, f"corrupt audio data: {damage.bad_packets} of {damage.packets} packet(s) "
                         f"could not be decoded, first {where if frames == 0 else 'at ' + damage.first} "
                         f"({damage.reason})")
    if damage.bad_packets:
        warnings.warn(f"{label}: {damage.bad_packets} of {damage.packets} packet(s) could not be decoded "
                      f"(first at {damage.first}; {damage.reason}) and were skipped", DecodeWarning, stacklevel=4)
    if damage.cut_at is not None:
        warnings.warn(f"{label}: the data ends with bytes FFmpeg cannot read ({damage.reason}); "
                      f"read the {frames / rate if rate else 0:.2f} s before them", DecodeWarning, stacklevel=4)
    if frames == 0:
        raise AudioError(label, "contains no samples (zero-length audio)")
    signal = None
    if keep:
        signal = np.ascontiguousarray(np.concatenate(blocks, axis=1).T)
    return Decoded(signal, rate, channels, frames, container_name, codec)


#: Undecodable packets tolerated (skipped, with a `DecodeWarning`): at most this many, or this
#: fraction of all packets if more. A damaged MP3 frame or two should not cost the recording.
_MAX_BAD_PACKETS = 3
_MAX_BAD_FRACTION = 0.01


class _Damage:
    """What went wrong while decoding: packets skipped, and where the readable data ended."""

    def __init__(self) -> None:
        self.packets = 0
        self.bad_packets = 0
        self.first = ""
        self.reason = ""
        self.cut_at: str | None = None
        self.odd_frames = 0  # decoded frames whose rate or channel count differs from the first
        self.odd = ""

    def __bool__(self) -> bool:
        return bool(self.bad_packets or self.cut_at is not None)

    def record(self, exc: Exception, seconds: float | None) -> None:
        if not self.reason:
            self.reason = _reason(exc)
            self.first = f"{seconds:.2f} s" if seconds is not None else "an unknown time"


def _decoded_frames(container, stream, damage: _Damage):
    """Yield decoded frames packet by packet, skipping (and counting) packets that fail to decode.

    A demuxing error (bytes the container parser cannot read) ends the stream there.
    """
    import av

    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as exc:
            damage.cut_at = "end"
            damage.record(exc, None)
            return
        if packet.size:
            damage.packets += 1
        try:
            decoded = packet.decode()
        except av.FFmpegError as exc:
            damage.bad_packets += 1
            damage.record(exc, float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base else None)
            continue
        yield from decoded


def _reason(exc: Exception) -> str:
    """FFmpeg's message without PyAV's errno prefix and file-name suffix."""
    return str(getattr(exc, "strerror", None) or exc)

"""Decoding compressed and container formats (MP3, M4A/AAC, WebM/Opus, MP4, ...) through PyAV.

PyAV ships FFmpeg's libraries in its wheels. This module is imported only when a file is not
one libsndfile reads exactly, so ``import serkit`` stays fast.

A compressed stream's length is what decoding it yields, never a header's estimate (an MP3's
Xing header or its bit rate, a container's duration field). The guard against lying headers
moves into the decoding loop: decoding stops, and `AudioError` is raised, as soon as the
decoded length passes the configured maximum, so memory never exceeds that maximum.

Damage is handled as FFmpeg's own tools do, within bounds: a few undecodable packets (a
damaged MP3 frame) are skipped with a `serkit.data.audio.DecodeWarning`; more than 3 and more than
1 % of the packets make the file an `AudioError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from serkit.data.audio_notes import AudioError, DecodeWarning, notify

__all__ = ["Decoded", "UnknownFormatError", "blocks", "decode"]


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
        keep: Keep the samples; False only counts them (for `serkit.data.audio.probe`).

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
    state = _State()
    blocks = [_to_float(frame, label) if keep else None for frame in _frames(file, label, max_duration, state)]
    signal = np.ascontiguousarray(np.concatenate(blocks, axis=1).T) if keep else None
    return Decoded(signal, state.rate, state.channels, state.frames, state.format, state.codec)


def blocks(file: BinaryIO, label: str, *, max_duration: float, block_seconds: float) -> Iterator[tuple[np.ndarray, int]]:
    """Decode `file` block by block, holding about one block in memory whatever the length.

    Args:
        file: As for `decode`.
        label: As for `decode`.
        max_duration: As for `decode`.
        block_seconds: Length of each block in seconds (the last one may be shorter).

    Yields:
        ``(samples, sampling_rate)`` with samples of shape (frames, channels), float32.

    Raises:
        AudioError: As `decode`; raised when iteration reaches the problem.
    """
    state = _State()
    pending: list[np.ndarray] = []
    held = 0
    for frame in _frames(file, label, max_duration, state):
        pending.append(_to_float(frame, label))
        held += frame.samples
        if held >= block_seconds * state.rate:
            yield np.ascontiguousarray(np.concatenate(pending, axis=1).T), state.rate
            pending, held = [], 0
    if pending:
        yield np.ascontiguousarray(np.concatenate(pending, axis=1).T), state.rate


class _State:
    """What decoding found out: the stream's format and how much was decoded."""

    def __init__(self) -> None:
        self.rate = self.channels = self.frames = 0
        self.format = self.codec = ""


def _frames(file: BinaryIO, label: str, max_duration: float, state: _State) -> Iterator:
    """The decoded frames of the first audio stream, all of one format, checked on the way.

    Fills `state`; raises or warns as `decode` documents once the stream ends.
    """
    try:
        import av
    except ImportError:  # pragma: no cover - av is a base dependency
        raise AudioError(label, "not a format libsndfile reads, and PyAV is missing: pip install av") from None
    try:
        container = av.open(file, mode="r", metadata_errors="replace")
    except av.FFmpegError as exc:
        raise UnknownFormatError(label, f"not a readable audio file (FFmpeg: {_reason(exc)})") from None
    damage = _Damage()
    with container:
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise AudioError(label, f"no audio stream in this file (streams: {', '.join(kinds)})")
        stream = container.streams.audio[0]
        state.format = _CONTAINERS.get(container.format.name, container.format.name.split(",")[0].upper())
        state.codec = stream.codec_context.name.upper()
        max_frames = 0
        for frame in _decoded_frames(container, stream, damage):
            if frame.samples == 0:
                continue
            rate, channels = int(frame.sample_rate), len(frame.layout.channels)
            if not state.rate:
                if rate <= 0 or channels <= 0:
                    raise AudioError(label, f"the decoder reports {rate} Hz and {channels} channels")
                state.rate, state.channels = rate, channels
                max_frames = int(math.ceil(max_duration * rate))
            elif (rate, channels) != (state.rate, state.channels):
                # a damaged frame header, or a real change of format: told apart by how often
                damage.odd_frames += 1
                damage.odd = f"{state.rate} Hz x {state.channels} -> {rate} Hz x {channels}"
                continue
            state.frames += frame.samples
            if state.frames > max_frames:
                raise AudioError(label, f"too long: decoding passed the maximum of {max_duration:g} s and was stopped")
            yield frame
    _judge(damage, state, label)


def _judge(damage: "_Damage", state: _State, label: str) -> None:
    """Raise or warn about what went wrong while decoding (see `decode`)."""
    limit = max(_MAX_BAD_PACKETS, _MAX_BAD_FRACTION * damage.packets)
    if damage.odd_frames > limit:
        raise AudioError(label, f"the sampling rate or channel count changes within the stream ({damage.odd}, "
                         f"{damage.odd_frames} frame(s)); convert it to one format first")
    if damage.odd_frames:
        damage.bad_packets += damage.odd_frames
        damage.reason = damage.reason or f"frames of another format: {damage.odd}"
        damage.first = damage.first or "an unknown time"
    if damage.bad_packets > limit or (state.frames == 0 and damage.bad_packets):
        raise AudioError(label, f"corrupt audio data: {damage.bad_packets} of {damage.packets} packet(s) could not "
                         f"be decoded, the first at {damage.first} ({damage.reason})")
    if state.frames == 0:
        reason = f" (FFmpeg: {damage.reason})" if damage.reason else ""
        raise AudioError(label, f"contains no samples (zero-length audio){reason}")
    seconds = state.frames / state.rate
    if damage.bad_packets:
        notify(f"{label}: {damage.bad_packets} of {damage.packets} packet(s) could not be decoded "
               f"(the first at {damage.first}; {damage.reason}) and were skipped", DecodeWarning, stacklevel=5)
    if damage.cut_at is not None:
        notify(f"{label}: the data ends with bytes FFmpeg cannot read ({damage.reason}); "
               f"read the {seconds:.2f} s before them", DecodeWarning, stacklevel=5)


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

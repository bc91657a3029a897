"""Compressed test audio written with PyAV's FFmpeg encoders (no ffmpeg binary needed)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

#: name -> (encoder, FFmpeg muxer, sampling rate): what phones, browsers and tools write.
FORMATS: dict[str, tuple[str, str, int]] = {
    "mp3": ("libmp3lame", "mp3", 16000),  # VBR with a Xing/LAME header
    "m4a": ("aac", "ipod", 16000),  # phone voice memo
    "webm": ("libopus", "webm", 48000),  # browser MediaRecorder
    "mp4": ("aac", "mp4", 44100),  # browser / video recorder
    "opus.ogg": ("libopus", "ogg", 48000),
}


def tone(seconds: float, sampling_rate: int, start_silence: float = 0.0) -> np.ndarray:
    """A 220 Hz sine with a slow vibrato, float32 at half scale; optionally silent at first."""
    t = np.arange(int(round(seconds * sampling_rate))) / sampling_rate
    signal = 0.5 * np.sin(2 * np.pi * 220 * t + 2 * np.sin(2 * np.pi * 3 * t))
    signal[: int(round(start_silence * sampling_rate))] = 0.0
    return signal.astype(np.float32)


def encode(
    path: str | os.PathLike,
    signal: np.ndarray,
    sampling_rate: int,
    codec: str,
    container: str,
    *,
    vbr: bool = False,
    xing: bool = True,
    pipe: bool = False,
) -> Path:
    """Encode a mono float signal into `path`.

    Args:
        path: Output file.
        signal: Samples, shape (frames,), float32 in [-1, 1].
        sampling_rate: Rate of `signal` in Hz (the encoder's rate too).
        codec: FFmpeg encoder name (``libmp3lame``, ``aac``, ``libopus``).
        container: FFmpeg muxer name (``mp3``, ``ipod``, ``mp4``, ``webm``, ``ogg``).
        vbr: MP3 only: variable bit rate at quality 2 (``-q:a 2``).
        xing: MP3 only: False writes neither a Xing/LAME header nor an ID3v2 tag
            (``-write_xing 0 -id3v2_version 0``).
        pipe: Write through a non-seekable stream, as ``ffmpeg ... pipe:1 > file`` does: the
            muxer cannot go back to fill in its headers (an MP3's Xing frame count and LAME
            gapless information stay unwritten).

    Returns:
        `path`.
    """
    import av

    options = {} if xing else {"write_xing": "0", "id3v2_version": "0"}
    sink = _Pipe() if pipe else os.fspath(path)
    with av.open(sink, "w", format=container, options=options) as out:
        stream = out.add_stream(codec, rate=sampling_rate)
        stream.layout = "mono"
        if vbr:
            stream.codec_context.qscale = True
            stream.codec_context.global_quality = 2 * 118  # FF_QP2LAMBDA * 2, as ffmpeg's -q:a 2
        step = 1024
        for begin in range(0, signal.size, step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(signal[None, begin : begin + step]), format="flt", layout="mono"
            )
            frame.sample_rate = sampling_rate
            frame.pts = begin
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    if pipe:
        Path(path).write_bytes(bytes(sink.data))
    return Path(path)


class _Pipe(io.RawIOBase):
    """A write-only, non-seekable byte sink (what a muxer writing to ``pipe:1`` sees)."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, chunk) -> int:
        self.data += bytes(chunk)
        return len(chunk)


def stream_samples(path: str | os.PathLike) -> int:
    """Samples an MP3 stream holds, counted from its frames without decoding (packets x frame size)."""
    import av

    with av.open(os.fspath(path)) as container:
        stream = container.streams.audio[0]
        per_frame = 1152 if stream.rate >= 32000 else 576  # MPEG-1 / MPEG-2 layer III
        return per_frame * sum(1 for packet in container.demux(stream) if packet.size)


def write_format(path: str | os.PathLike, name: str, seconds: float = 2.0) -> tuple[Path, np.ndarray, int]:
    """Encode `tone(seconds)` in one of `FORMATS`; returns (path, the signal encoded, its rate)."""
    codec, container, rate = FORMATS[name]
    signal = tone(seconds, rate)
    return encode(path, signal, rate, codec, container, vbr=name == "mp3"), signal, rate


def id3v2_with_picture(picture_bytes: int = 30000, padding: int = 4096) -> bytes:
    """An ID3v2.3 tag holding a title, an attached picture (APIC) and zero padding."""

    def frame(frame_id: bytes, body: bytes) -> bytes:
        return frame_id + len(body).to_bytes(4, "big") + b"\x00\x00" + body

    jpeg = b"\xff\xd8\xff\xe0" + bytes(picture_bytes) + b"\xff\xd9"
    body = frame(b"TIT2", b"\x00voice memo") + frame(b"APIC", b"\x00image/jpeg\x00\x03\x00" + jpeg) + bytes(padding)
    size = len(body)
    synchsafe = bytes(((size >> shift) & 0x7F) for shift in (21, 14, 7, 0))
    return b"ID3\x03\x00\x00" + synchsafe + body

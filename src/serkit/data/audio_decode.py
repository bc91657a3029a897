"""The decoding backends behind `serkit.data.audio`: a source opened with its checks, then libsndfile or FFmpeg.

A source (a path, an open binary file or bytes) is opened here, by Python, so any file name the
OS gives reads, after the checks every kind shares (missing, a folder, empty, a Git LFS
pointer). What libsndfile reads exactly is decoded with soundfile in blocks, its length checked
against its header first (truncated, unknown, longer than allowed), so memory follows the data
actually decoded; everything else goes to PyAV (`serkit.data.audio_av`, imported only then),
and libsndfile's refusal is joined to FFmpeg's when neither reads the file.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from serkit.data.audio_notes import AudioError

__all__ = [
    "AudioInfo",
    "Source",
    "decode_ffmpeg",
    "decoded_info",
    "display_name",
    "ffmpeg_blocks",
    "info_of",
    "open_sndfile",
    "open_source",
    "read_sndfile",
    "reject_lfs_pointer",
    "sndfile_blocks",
    "source_name",
]

Source = str | os.PathLike | BinaryIO | bytes


@dataclass(frozen=True)
class AudioInfo:
    """What the header says about a file, without decoding it."""

    sampling_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sampling_rate if self.sampling_rate else 0.0


def display_name(path: str | os.PathLike | bytes) -> str:
    """A file name as text that can always be printed and written as UTF-8.

    Names that are not valid UTF-8 on disk (a Windows zip unpacked on Linux: ``b"caf\\xe9.wav"``)
    reach Python as strings with surrogate escapes, which cannot be encoded; their bad bytes
    are shown as ``\\xe9`` instead.
    """
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def source_name(source: Source, name: str | None) -> str:
    """The name errors use: `name` when given, else the path (`display_name`) or the stream's own name."""
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return display_name(source)
    return str(getattr(source, "name", "<audio stream>"))


@contextlib.contextmanager
def open_source(source: Source, label: str) -> Iterator[BinaryIO]:
    """`source` as an open binary file, after the checks every kind of source shares.

    Paths are opened here (not by name in libsndfile or FFmpeg), so any file name the OS
    gives, UTF-8 or not, reads.
    """
    if isinstance(source, bytes):
        if not source:
            raise AudioError(label, "empty file (0 bytes)")
        yield io.BytesIO(source)
        return
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioError(label, "file not found")
        if path.is_dir():
            raise AudioError(label, "is a directory, not an audio file")
        if path.stat().st_size == 0:
            raise AudioError(label, "empty file (0 bytes)")
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise AudioError(label, f"cannot be opened ({exc.strerror or exc})") from None
        with handle:
            yield handle
        return
    try:
        pos = source.tell()
        size = source.seek(0, io.SEEK_END) - pos
        source.seek(pos)
    except (AttributeError, OSError, ValueError):
        size = None
    if size == 0:
        raise AudioError(label, "empty file (0 bytes)")
    yield source


#: How a Git LFS pointer file starts: a small text file checked out instead of the audio.
_LFS_POINTER = b"version https://git-lfs"


def reject_lfs_pointer(handle: BinaryIO, start: int, label: str) -> None:
    head = handle.read(len(_LFS_POINTER))
    handle.seek(start)
    if head == _LFS_POINTER:
        raise AudioError(
            label,
            "a Git LFS pointer (a small text file standing in for the audio), not audio: "
            "run `git lfs pull` in the repository to fetch the real file",
        )


#: libsndfile subtypes that FFmpeg decodes instead: MPEG audio (libsndfile takes an MP3's
#: length from its Xing header or bit rate) and Opus.
_FFMPEG_SUBTYPES = frozenset({"MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III", "OPUS"})


def open_sndfile(handle: BinaryIO, start: int):
    """Open with soundfile when libsndfile reads the format exactly.

    Returns:
        ``(soundfile handle, None)``, or ``(None, reason)`` when the file is for FFmpeg: not a
        format libsndfile reads (`reason` says why) or one it only estimates (`reason` None).
    """
    import soundfile as sf

    handle.seek(start)
    try:
        snd = sf.SoundFile(handle)
    except sf.LibsndfileError as exc:
        handle.seek(start)
        return None, exc.error_string
    except (RuntimeError, TypeError, ValueError) as exc:
        handle.seek(start)
        return None, str(exc)
    if snd.subtype in _FFMPEG_SUBTYPES:
        snd.close()
        handle.seek(start)
        return None, None
    return snd, None


def decode_ffmpeg(handle: BinaryIO, start: int, label: str, max_duration: float, keep: bool, why: str | None):
    """Decode through PyAV (`serkit.data.audio_av`); `why` is libsndfile's refusal, if any."""
    from serkit.data import audio_av  # imported here: PyAV loads FFmpeg's libraries

    handle.seek(start)
    try:
        return audio_av.decode(handle, label, max_duration=max_duration, keep=keep)
    except audio_av.UnknownFormatError as exc:
        if why is None:
            raise
        ffmpeg = exc.reason.partition("(")[2].rstrip(")")
        raise AudioError(label, f"not a readable audio file ({why.rstrip('.')}; {ffmpeg})") from None


def ffmpeg_blocks(
    handle: BinaryIO, start: int, label: str, max_duration: float, block_seconds: float, why: str | None
) -> Iterator[tuple[np.ndarray, int]]:
    """`serkit.data.audio_av.blocks`, with libsndfile's refusal joined to FFmpeg's as in `decode_ffmpeg`."""
    from serkit.data import audio_av

    handle.seek(start)
    try:
        yield from audio_av.blocks(handle, label, max_duration=max_duration, block_seconds=block_seconds)
    except audio_av.UnknownFormatError as exc:
        if why is None:
            raise
        ffmpeg = exc.reason.partition("(")[2].rstrip(")")
        raise AudioError(label, f"not a readable audio file ({why.rstrip('.')}; {ffmpeg})") from None


def info_of(handle) -> AudioInfo:
    """`AudioInfo` of an open soundfile handle, from its header."""
    return AudioInfo(
        sampling_rate=int(handle.samplerate),
        channels=int(handle.channels),
        frames=int(handle.frames),
        format=str(handle.format),
        subtype=str(handle.subtype),
    )


def decoded_info(decoded) -> AudioInfo:
    """`AudioInfo` of a stream PyAV decoded (`serkit.data.audio_av.decode`): its real length."""
    return AudioInfo(decoded.sampling_rate, decoded.channels, decoded.frames, decoded.format, decoded.codec)


#: libsndfile's frame count for a stream whose header does not state its length.
_UNKNOWN_FRAMES = 2**63 - 1

#: Samples decoded per block in `read`: memory follows the data actually decoded, never the
#: frame count a header claims (libsndfile trusts FLAC's and OGG's headers).
_BLOCK_SAMPLES = 1 << 20

def read_sndfile(handle, label: str, declared: int | None, max_duration: float) -> tuple[np.ndarray, int]:
    """Read an open soundfile handle in blocks, checking its length against its header."""
    blocks = [block for block, _ in sndfile_blocks(handle, label, declared, max_duration, _BLOCK_SAMPLES)]
    signal = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    return signal, int(handle.samplerate)


def sndfile_blocks(
    handle, label: str, declared: int | None, max_duration: float, block_samples: int
) -> Iterator[tuple[np.ndarray, int]]:
    """Blocks of about `block_samples` samples (all channels) from an open soundfile handle.

    The header is checked first: truncated (against what the header itself claims), no
    samples, unknown length, longer than `max_duration`.

    Yields:
        ``(samples, sampling_rate)``, samples of shape (frames, channels), float32.
    """
    info = info_of(handle)
    # For WAV/RF64/AIFF libsndfile's count is already cut to the data present: compare it
    # with what the header itself claims to catch truncated files and lying headers.
    if declared is not None and declared > info.frames:
        raise AudioError(label, f"truncated: header says {declared} frames, the file holds only {info.frames}")
    if info.frames <= 0:
        raise AudioError(label, "contains no samples (zero-length audio)")
    if info.frames == _UNKNOWN_FRAMES:  # e.g. a streamed FLAC with no total sample count
        raise AudioError(label, "header does not state the length (streamed file); re-encode it")
    max_frames = int(math.ceil(max_duration * info.sampling_rate))
    if info.frames > max_frames:
        raise AudioError(label, f"too long: header says {info.duration:.1f} s, maximum is {max_duration:g} s")
    # Decode in blocks rather than one read of info.frames: soundfile allocates the whole
    # output up front, so a FLAC header claiming an hour would cost an hour of memory even
    # when the file holds one second.
    step = max(1, block_samples // info.channels)
    done = 0
    while done < info.frames:
        try:
            block = handle.read(frames=min(step, info.frames - done), dtype="float32", always_2d=True)
        except Exception as exc:  # libsndfile reports decode errors as several types
            raise AudioError(label, f"corrupt or truncated audio data ({exc})") from None
        if block.shape[0] == 0:
            break
        done += block.shape[0]
        yield block, info.sampling_rate
    if done < info.frames:
        raise AudioError(label, f"truncated: header says {info.frames} frames, only {done} could be read")



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
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import math
import os
import struct
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Literal

import numpy as np

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

Source = str | os.PathLike | BinaryIO | bytes


class AudioError(ValueError):
    """An audio input that cannot be used; the message names the file and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class SilentAudioWarning(UserWarning):
    """The audio decoded fine but every sample is zero."""


class HeaderWarning(UserWarning):
    """A file's header contradicts its data, and the data was read (e.g. a WAV saying 0 bytes)."""


class DecodeWarning(UserWarning):
    """A compressed stream had a few undecodable packets (skipped) or unreadable trailing bytes."""


#: Warnings about how a file was decoded, for the current thread / task (`collect_notes`).
_NOTES: contextvars.ContextVar[list[tuple[type[Warning], str]] | None] = contextvars.ContextVar(
    "serkit_audio_notes", default=None
)


@contextlib.contextmanager
def collect_notes() -> Iterator[list[tuple[type[Warning], str]]]:
    """Collect the `HeaderWarning` / `DecodeWarning` of reads inside the block, for this thread.

    The warnings are still issued; this also hands them to the caller (as ``(category,
    message)`` pairs), so a prediction can carry them. Context-local, hence safe in threads
    and asyncio tasks, unlike `warnings.catch_warnings`.
    """
    token = _NOTES.set([])
    try:
        yield _NOTES.get()  # type: ignore[misc]
    finally:
        _NOTES.reset(token)


def notify(message: str, category: type[Warning], stacklevel: int = 2) -> None:
    """Issue a decoding warning and record it for an enclosing `collect_notes`."""
    notes = _NOTES.get()
    if notes is not None:
        notes.append((category, message))
    warnings.warn(message, category, stacklevel=stacklevel + 1)


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


def _name(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return display_name(source)
    return str(getattr(source, "name", "<audio stream>"))


@contextlib.contextmanager
def _binary(source: Source, label: str) -> Iterator[BinaryIO]:
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


def _reject_lfs_pointer(handle: BinaryIO, start: int, label: str) -> None:
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


def _open_sndfile(handle: BinaryIO, start: int):
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


def _decode_ffmpeg(handle: BinaryIO, start: int, label: str, max_duration: float, keep: bool, why: str | None):
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


def _ffmpeg_blocks(
    handle: BinaryIO, start: int, label: str, max_duration: float, block_seconds: float, why: str | None
) -> Iterator[tuple[np.ndarray, int]]:
    """`serkit.data.audio_av.blocks`, with libsndfile's refusal joined to FFmpeg's as in `_decode_ffmpeg`."""
    from serkit.data import audio_av

    handle.seek(start)
    try:
        yield from audio_av.blocks(handle, label, max_duration=max_duration, block_seconds=block_seconds)
    except audio_av.UnknownFormatError as exc:
        if why is None:
            raise
        ffmpeg = exc.reason.partition("(")[2].rstrip(")")
        raise AudioError(label, f"not a readable audio file ({why.rstrip('.')}; {ffmpeg})") from None


def _info_of(handle) -> AudioInfo:
    return AudioInfo(
        sampling_rate=int(handle.samplerate),
        channels=int(handle.channels),
        frames=int(handle.frames),
        format=str(handle.format),
        subtype=str(handle.subtype),
    )


def _decoded_info(decoded) -> AudioInfo:
    return AudioInfo(decoded.sampling_rate, decoded.channels, decoded.frames, decoded.format, decoded.codec)


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
    label = _name(source, name)
    with _binary(source, label) as handle:
        start = handle.tell()
        _reject_lfs_pointer(handle, start, label)
        handle, start = _repair_zero_sized_wav(handle, start, label, max_duration)
        snd, why = _open_sndfile(handle, start)
        if snd is None:
            return _decoded_info(_decode_ffmpeg(handle, start, label, max_duration, False, why))
        with snd:
            info = _info_of(snd)
    if info.frames <= 0:
        raise AudioError(label, "contains no samples (zero-length audio)")
    return info


#: libsndfile's frame count for a stream whose header does not state its length.
_UNKNOWN_FRAMES = 2**63 - 1

#: Samples decoded per block in `read`: memory follows the data actually decoded, never the
#: frame count a header claims (libsndfile trusts FLAC's and OGG's headers).
_BLOCK_SAMPLES = 1 << 20

#: WAV format tags with exactly one block (``block_align`` bytes) per frame: PCM, float, A/u-law.
_WAV_FRAME_TAGS = {0x0001, 0x0003, 0x0006, 0x0007}

#: AIFF-C compression types whose COMM frame count is a plain sample-frame count.
_AIFC_FRAME_TYPES = {
    b"NONE", b"sowt", b"twos", b"fl32", b"FL32", b"fl64", b"FL64", b"ulaw", b"ULAW", b"alaw", b"ALAW"
}


def _chunks(f: BinaryIO, byteorder: Literal["little", "big"]):
    """Yield (chunk id, size) for the chunks of a RIFF/IFF body, `f` positioned at each body."""
    for _ in range(256):  # a real header has a handful of chunks; stop on garbage
        header = f.read(8)
        if len(header) < 8:
            return
        size = int.from_bytes(header[4:], byteorder)
        start = f.tell()
        yield header[:4], size
        f.seek(start + size + (size & 1))  # chunks are padded to an even length


def _header_frames(f: BinaryIO) -> int | None:
    """Frames a WAV/RF64/AIFF(-C) header itself declares, or None (other container, unknown)."""
    head = f.read(12)
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        tag = block_align = ds64_data = None
        for chunk, size in _chunks(f, "little"):
            if chunk == b"ds64" and size >= 16:
                ds64_data = struct.unpack("<QQ", f.read(16))[1]
            elif chunk == b"fmt " and size >= 16:
                body = f.read(min(size, 40))
                tag, block_align = struct.unpack_from("<H", body)[0], struct.unpack_from("<H", body, 12)[0]
                if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: tag in the GUID
                    tag = struct.unpack_from("<H", body, 24)[0]
            elif chunk == b"data":
                if head[:4] == b"RF64" and size == 0xFFFFFFFF:
                    size = ds64_data
                elif size == 0xFFFFFFFF:
                    return None  # what a writer that cannot seek back leaves: length unknown
                if size is None or tag not in _WAV_FRAME_TAGS or not block_align:
                    return None
                return size // block_align
    elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        for chunk, size in _chunks(f, "big"):
            if chunk == b"COMM" and size >= 18:
                body = f.read(min(size, 22))
                if head[8:12] == b"AIFC" and body[18:22] not in _AIFC_FRAME_TYPES:
                    return None
                return struct.unpack_from(">I", body, 2)[0]
    return None


def _declared_frames(handle: BinaryIO, start: int) -> int | None:
    """The frame count in a WAV/RF64/AIFF(-C) header, read from the raw bytes; None if unknown.

    libsndfile silently lowers these containers' frame count to the data actually present, so
    without this a truncated file, or a header claiming days of audio in a tiny file, would read
    as a shorter clip without any error.
    """
    try:
        return _header_frames(handle)
    except (OSError, ValueError, AttributeError, TypeError, struct.error):
        return None  # not seekable, not bytes...: opening reports what is wrong
    finally:
        handle.seek(start)


def _zero_sized_data(f: BinaryIO) -> tuple[int, int, int] | None:
    """``(data offset, block_align, sampling rate)`` of a RIFF WAV whose data chunk says 0 bytes.

    That is what a recorder killed before patching its header leaves (RIFF and data sizes 0,
    the audio behind them). None for any other file.
    """
    head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    block_align = rate = None
    for chunk, size in _chunks(f, "little"):
        if chunk == b"fmt " and size >= 16:
            body = f.read(16)
            rate, block_align = struct.unpack_from("<I", body, 4)[0], struct.unpack_from("<H", body, 12)[0]
        elif chunk == b"data":
            if size != 0 or not block_align or not rate:
                return None
            return f.tell(), block_align, rate
    return None


def _repair_zero_sized_wav(handle: BinaryIO, start: int, label: str, max_duration: float) -> tuple[BinaryIO, int]:
    """A WAV whose header says 0 bytes of audio but holds some, with sizes set to what it holds.

    Returns `(handle, start)` unchanged for every other file, or an in-memory copy with the
    RIFF and data sizes corrected, after a `HeaderWarning`.

    Raises:
        AudioError: The audio behind the header is longer than `max_duration` (checked
            before it is read) or than a RIFF file can state.
    """
    try:
        found = _zero_sized_data(handle)
        end = handle.seek(0, io.SEEK_END)
    except (OSError, ValueError, AttributeError, TypeError, struct.error):
        found = None
    handle.seek(start)
    if found is None:
        return handle, start
    offset, block_align, rate = found
    data_bytes = end - offset
    if data_bytes < block_align:
        return handle, start  # truly empty: reported as "contains no samples"
    frames = data_bytes // block_align
    if frames > math.ceil(max_duration * rate):
        raise AudioError(label, f"too long: {frames / rate:.1f} s of audio behind a header that says 0, "
                         f"maximum is {max_duration:g} s")
    offset -= start  # from here on, relative to the start of the WAV
    if offset + data_bytes - 8 > 0xFFFFFFFF:
        raise AudioError(label, "the header says 0 bytes and more than 4 GiB follow; re-save it as RF64 or FLAC")
    raw = bytearray(handle.read(offset + data_bytes))
    handle.seek(start)
    raw[4:8] = (len(raw) - 8).to_bytes(4, "little")
    raw[offset - 4 : offset] = data_bytes.to_bytes(4, "little")
    notify(
        f"{label}: the WAV header lied: its RIFF and data sizes say 0 bytes (a recorder stopped before "
        f"finishing the file); read the {frames / rate:.2f} s of audio that follow",
        HeaderWarning,
        stacklevel=3,
    )
    return io.BytesIO(bytes(raw)), 0


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
    label = _name(source, name)
    with _binary(source, label) as handle:
        start = handle.tell()
        _reject_lfs_pointer(handle, start, label)
        handle, start = _repair_zero_sized_wav(handle, start, label, max_duration)
        declared = _declared_frames(handle, start)
        snd, why = _open_sndfile(handle, start)
        if snd is None:
            decoded = _decode_ffmpeg(handle, start, label, max_duration, True, why)
            signal, rate = decoded.signal, decoded.sampling_rate
        else:
            with snd:
                signal, rate = _read_sndfile(snd, label, declared, max_duration)
    if not np.isfinite(signal).all():
        raise AudioError(label, "contains NaN or Inf samples")
    duration = signal.shape[0] / rate
    if duration < min_duration:
        raise AudioError(label, f"too short: {duration:.3f} s, minimum is {min_duration:g} s")
    return signal, rate


def _read_sndfile(handle, label: str, declared: int | None, max_duration: float) -> tuple[np.ndarray, int]:
    """Read an open soundfile handle in blocks, checking its length against its header."""
    blocks = [block for block, _ in _sndfile_blocks(handle, label, declared, max_duration, _BLOCK_SAMPLES)]
    signal = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    return signal, int(handle.samplerate)


def _sndfile_blocks(
    handle, label: str, declared: int | None, max_duration: float, block_samples: int
) -> Iterator[tuple[np.ndarray, int]]:
    """Blocks of about `block_samples` samples (all channels) from an open soundfile handle.

    The header is checked first: truncated (against what the header itself claims), no
    samples, unknown length, longer than `max_duration`.

    Yields:
        ``(samples, sampling_rate)``, samples of shape (frames, channels), float32.
    """
    info = _info_of(handle)
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
    label = _name(source, name)
    with _binary(source, label) as handle, contextlib.ExitStack() as stack:
        start = handle.tell()
        _reject_lfs_pointer(handle, start, label)
        handle, start = _repair_zero_sized_wav(handle, start, label, spec.max_duration)
        declared = _declared_frames(handle, start)
        snd, why = _open_sndfile(handle, start)
        if snd is None:
            raw = _ffmpeg_blocks(handle, start, label, spec.max_duration, block_seconds, why)
        else:
            stack.enter_context(snd)
            block_samples = max(1, int(block_seconds * snd.samplerate) * snd.channels)
            raw = _sndfile_blocks(snd, label, declared, spec.max_duration, block_samples)
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
    label = _name(source, name)
    signal, sampling_rate = read(
        source, max_duration=spec.max_duration, min_duration=spec.min_duration, name=label
    )
    return preprocess(signal, sampling_rate, spec, name=label)

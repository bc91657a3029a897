"""WAV, RF64 and AIFF(-C) headers read from the raw bytes: the length they declare, and zero-size repair.

libsndfile silently lowers these containers' frame count to the data actually present, so
`declared_frames` reads what the header itself claims (the decoder compares the two to catch
truncated files and lying headers). `repair_zero_sized_wav` handles the file a recorder killed
before patching its header leaves: RIFF and data sizes of 0 with the audio behind them, read
from an in-memory copy with the sizes corrected after a `HeaderWarning`.
"""

from __future__ import annotations

import io
import math
import struct
from typing import BinaryIO, Literal

from serkit.data.audio_notes import AudioError, HeaderWarning, notify

__all__ = ["declared_frames", "repair_zero_sized_wav"]


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


def declared_frames(handle: BinaryIO, start: int) -> int | None:
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


def repair_zero_sized_wav(handle: BinaryIO, start: int, label: str, max_duration: float) -> tuple[BinaryIO, int]:
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



"""Request bodies: bounded reading, in-memory multipart, and upload places per client.

Every limit on what a client may send is here: the Content-Type (`RAW_CONTENT_TYPES` or
``multipart/form-data``), the size (checked from Content-Length and again while reading, so a
chunked body is bounded too), the time to receive it (`receive`), and how many bodies may be
arriving at once, in all and per client address (`Uploads`). A client's file name is never
used as a path; `safe_name` only makes it fit to show.

python-multipart is imported inside the functions, so importing serkit never needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from serkit.serving.errors import RETRY_AND_CLOSE, HTTPFailure

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["DEFAULT_MAX_UPLOAD", "RAW_CONTENT_TYPES", "Progress", "Uploads", "client_address", "receive", "safe_name"]

#: Content-Types accepted for a raw (non-multipart) audio body. The container is detected
#: from the bytes, so these only guard against posting something that is clearly not audio.
RAW_CONTENT_TYPES: frozenset[str] = frozenset(
    {
        "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave",
        "audio/flac", "audio/x-flac",
        "audio/ogg", "audio/opus",
        "audio/mpeg", "audio/mp3",
        "audio/aiff", "audio/x-aiff",
        # what phones and browsers record: voice memos (AAC in MP4), MediaRecorder (Opus in WebM)
        "audio/mp4", "audio/m4a", "audio/x-m4a", "audio/aac", "video/mp4",
        "audio/webm", "video/webm",
        "application/octet-stream",
    }
)
#: The default largest request body, in bytes.
DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
_MULTIPART = "multipart/form-data"
_UPLOAD_FIELD = "file"
_MAX_NAME = 100
_UNSAFE_NAME_CHARS = re.compile(r"[^\w.\- ]+")


def safe_name(raw: str | None, default: str = "upload") -> str:
    """A client-supplied file name reduced to something safe to show (never to open).

    Drops any directory part (``/`` or ``\\``), replaces characters other than letters,
    digits, ``._-`` and spaces, trims dots and spaces at the ends and caps the length.

    Args:
        raw: The name as the client sent it, or None.
        default: Returned when nothing usable is left.

    Returns:
        The sanitised name, e.g. ``"passwd"`` for ``"../../etc/passwd"``.
    """
    base = re.split(r"[\\/]", raw or "")[-1]
    base = _UNSAFE_NAME_CHARS.sub("_", base).strip(" .")[:_MAX_NAME]
    return base or default


def client_address(request: Request) -> str:
    """The client's address as the per-client upload places count it."""
    return request.client.host if request.client is not None else "unknown"


@dataclass
class Progress:
    """Bytes of one request body received so far (for the log line of a disconnect)."""

    received: int = 0


def _media_type(request: Request) -> tuple[str, dict[bytes, bytes]]:
    from python_multipart.multipart import parse_options_header

    media, options = parse_options_header(request.headers.get("content-type", ""))
    return media.decode("latin-1").strip().lower(), options


def _too_large(limit: int) -> str:
    return f"request body is larger than the limit of {limit} bytes ({limit / 2**20:.1f} MiB)"


def _check_declared_length(request: Request, limit: int) -> None:
    """Refuse up front a body whose Content-Length is over the limit."""
    declared = request.headers.get("content-length")
    if declared is None:
        return  # chunked: counted while reading
    try:
        size = int(declared)
    except ValueError:
        raise HTTPFailure(400, "Content-Length is not a number") from None
    if size > limit:
        raise HTTPFailure(413, _too_large(limit))


async def _bounded_chunks(request: Request, limit: int, progress: Progress) -> AsyncIterator[bytes]:
    """The body's chunks, failing with 413 as soon as more than `limit` bytes arrived.

    Counting here (not trusting Content-Length) is what bounds a chunked request.
    """
    async for chunk in request.stream():
        progress.received += len(chunk)
        if progress.received > limit:
            raise HTTPFailure(413, _too_large(limit))
        if chunk:
            yield chunk


async def _read_raw(request: Request, limit: int, progress: Progress) -> bytes:
    body = bytearray()
    async for chunk in _bounded_chunks(request, limit, progress):
        body += chunk
    return bytes(body)


class _FormFile:
    """Streams a multipart body through python-multipart, keeping the ``file`` part in memory."""

    def __init__(self, boundary: bytes) -> None:
        from python_multipart.multipart import MultipartParser

        self.data: bytearray | None = None
        self.filename: str | None = None
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._current: bytearray | None = None
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def _part_begin(self) -> None:
        self._headers = {}
        self._current = None

    def _header_end(self) -> None:
        key = self._header_field.decode("latin-1").strip().lower()
        self._headers[key] = self._header_value.decode("latin-1").strip()
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        kind, options = parse_options_header(self._headers.get("content-disposition", ""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if kind == b"form-data" and name == _UPLOAD_FIELD and self.data is None:
            self._current = bytearray()  # other fields are parsed and dropped
            filename = options.get(b"filename")
            self.filename = filename.decode("utf-8", "replace") if filename is not None else None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None:
            self._current.extend(data[start:end])

    def _part_end(self) -> None:
        if self._current is not None:
            self.data = self._current
            self._current = None


async def _read_multipart(
    request: Request, options: dict[bytes, bytes], limit: int, progress: Progress
) -> tuple[bytes, str | None]:
    """The ``file`` field's bytes and file name, parsed in memory as the body streams in."""
    from python_multipart.exceptions import MultipartParseError

    boundary = options.get(b"boundary")
    if not boundary:
        raise HTTPFailure(400, "multipart/form-data without a boundary")
    try:
        form = _FormFile(boundary)
        async for chunk in _bounded_chunks(request, limit, progress):
            form.parser.write(chunk)
        form.parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        raise HTTPFailure(400, f"malformed multipart body ({exc})") from None
    if form.data is None:
        raise HTTPFailure(422, f"multipart body has no {_UPLOAD_FIELD!r} field; send the audio as {_UPLOAD_FIELD}=@clip.wav")
    return bytes(form.data), form.filename


async def _read_upload(request: Request, limit: int, progress: Progress) -> tuple[bytes, str]:
    """The uploaded audio's bytes and a display name, with every size and type check."""
    media, options = _media_type(request)
    if media != _MULTIPART and media not in RAW_CONTENT_TYPES:
        shown = media or "none"
        raise HTTPFailure(
            415,
            f"unsupported Content-Type {shown!r}: send {_MULTIPART} with a {_UPLOAD_FIELD!r} field, "
            f"or the raw audio as one of {sorted(RAW_CONTENT_TYPES)}",
        )
    _check_declared_length(request, limit)
    if media == _MULTIPART:
        data, filename = await _read_multipart(request, options, limit, progress)
        return data, safe_name(filename)
    return await _read_raw(request, limit, progress), "upload"


async def receive(request: Request, limit: int, timeout_s: float, progress: Progress) -> tuple[bytes, str]:
    """The uploaded audio's bytes and display name, within `limit` bytes and `timeout_s` seconds.

    Failures ask for the connection to be closed: after an early answer the rest of the body
    is never read, and uvicorn would keep the connection open for as long as the client keeps
    sending it.

    Raises:
        HTTPFailure: 400 malformed, 408 too slow, 413 too large, 415 not audio, 422 no ``file`` field.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_upload(request, limit, progress)
    except TimeoutError:
        raise HTTPFailure(408, f"the upload took longer than {timeout_s:g} s", {"Connection": "close"}) from None
    except HTTPFailure as exc:
        exc.headers.setdefault("Connection", "close")
        raise


class Uploads:
    """Places for request bodies being received: `limit` in all, `per_client` per address."""

    def __init__(self, limit: int, per_client: int) -> None:
        self.limit = limit
        self.per_client = per_client
        self.total = 0
        self.by_client: dict[str, int] = {}

    @contextlib.contextmanager
    def place(self, client: str) -> Iterator[None]:
        """Hold a place while the body arrives; 503 (with Retry-After) when none is free."""
        held = self.by_client.get(client, 0)
        if self.total >= self.limit:
            raise HTTPFailure(503, "server busy: too many uploads in progress, retry shortly", RETRY_AND_CLOSE)
        if held >= self.per_client:
            raise HTTPFailure(503, "too many uploads in progress from your address, retry shortly", RETRY_AND_CLOSE)
        self.total += 1
        self.by_client[client] = held + 1
        try:
            yield
        finally:
            self.total -= 1
            if self.by_client[client] <= 1:
                del self.by_client[client]  # the table holds current clients only
            else:
                self.by_client[client] -= 1

"""HTTP service: upload audio, get its emotion back (JSON API and a one-page web app).

`create_app(predictor)` builds a FastAPI app around a loaded `serkit.inference.Predictor`;
`run(model_dir)` loads a model and serves it with uvicorn on 127.0.0.1. This module does HTTP
only: decoding is `serkit.audio.read`'s and prediction the Predictor's.

Endpoints:
    ``POST /predict``: the audio as a multipart upload (field ``file``) or as the raw request
        body with an audio Content-Type; ``?segments=true`` asks for the per-window timeline;
        ``?speaker=ID`` normalises with a speaker's stored statistics (``speaker_norm`` models).
        Returns `Prediction.to_dict()`, whose ``warnings`` list the quality findings
        (`serkit.quality`: ``near_silent``, ``clipped``, ``short``, each a code and a message).
        Errors, as ``{"detail": message}``: 400 malformed multipart or Content-Length, 408
        upload slower than ``read_timeout_s``, 413 body over the limit (checked from
        Content-Length and while reading), 415 unsupported Content-Type, 422 audio that cannot
        be used (with ``"code"`` too when refused for its content: ``silent``, all samples
        zero, or ``too_short``, shorter than the model's minimum), 503 queue full or too many
        uploads in progress (with Retry-After). An error answered before the body was read
        closes the connection.
    ``GET /health``, ``GET /labels``: model name, labels and limits.
    ``GET /``: the upload / record page (``serkit/static``: index.html, page.css, page.js).

Requests are decoded in memory only; a client's file name is never used as a path, it only
appears, sanitised, as the prediction's ``source``. Concurrent requests wait in a bounded
queue; a worker gathers up to ``max_batch`` of them arriving within ``batch_wait_ms`` (no wait
while the model is idle) and runs them through one `Predictor.predict_signals` call in a thread
pool, with at most ``max_concurrency`` batches in flight.

Admission counts work, not sockets: only a request whose body has fully arrived takes a queue
place. Bodies still arriving are bounded on their own (``max_uploads`` in all,
``max_uploads_per_client`` per client address, each within ``read_timeout_s``), so clients
that upload slowly only use up upload places, and one address only its own share of them.
Connections are closed when no complete request head arrives within ``header_timeout_s`` (of
connecting or of the previous response; uvicorn's h11 protocol has no such timer) or when
idle for ``keep_alive_s`` after a response (uvicorn's ``timeout_keep_alive``). uvicorn's own
``limit_concurrency`` is not used: it counts connections, so slow clients would fill it. A
client that disconnects mid-upload is an INFO line with its address and the bytes received.
An answer sent before the body was read is followed by a lingering close (``linger_s``), so the
client reads it instead of a connection reset (`serkit.connections`).

fastapi, uvicorn and python-multipart (the ``serve`` extra) are imported here only, so
importing serkit never needs them.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which
# name classes imported inside create_app.
import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from serkit.audio import AudioError, collect_notes, read
from serkit.connections import server_options
from serkit.quality import decoding_findings

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

    from serkit.inference import Prediction, Predictor

__all__ = ["RAW_CONTENT_TYPES", "create_app", "run", "safe_name", "server_options"]

logger = logging.getLogger(__name__)

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
_MULTIPART = "multipart/form-data"
_UPLOAD_FIELD = "file"
_DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
_RETRY_AND_CLOSE = {"Retry-After": "1", "Connection": "close"}
_MAX_NAME = 100
_UNSAFE_NAME_CHARS = re.compile(r"[^\w.\- ]+")
# Absolute paths that might appear in an error from a library: never echo them to a client.
_PATHS = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.\-]+){2,}[\\/]?")


class _HTTPFailure(Exception):
    """A request that ends with an error status; turned into ``{"detail": ...}``."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None, code: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.code = code  # a machine code for the body (quality refusals), or None


# --------------------------------------------------------------------------- request bodies


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


def _scrub(message: str) -> str:
    """Remove server-side paths from an error message before it goes to a client."""
    return _PATHS.sub("<path>", message)


def _media_type(request: "Request") -> tuple[str, dict[bytes, bytes]]:
    from python_multipart.multipart import parse_options_header

    media, options = parse_options_header(request.headers.get("content-type", ""))
    return media.decode("latin-1").strip().lower(), options


def _check_declared_length(request: "Request", limit: int) -> None:
    """Refuse up front a body whose Content-Length is over the limit."""
    declared = request.headers.get("content-length")
    if declared is None:
        return  # chunked: counted while reading
    try:
        size = int(declared)
    except ValueError:
        raise _HTTPFailure(400, "Content-Length is not a number") from None
    if size > limit:
        raise _HTTPFailure(413, _too_large(limit))


def _too_large(limit: int) -> str:
    return f"request body is larger than the limit of {limit} bytes ({limit / 2**20:.1f} MiB)"


@dataclass
class _Progress:
    """Bytes of one request body received so far (for the log line of a disconnect)."""

    received: int = 0


async def _bounded_chunks(request: "Request", limit: int, progress: _Progress) -> AsyncIterator[bytes]:
    """The body's chunks, failing with 413 as soon as more than `limit` bytes arrived.

    Counting here (not trusting Content-Length) is what bounds a chunked request.
    """
    async for chunk in request.stream():
        progress.received += len(chunk)
        if progress.received > limit:
            raise _HTTPFailure(413, _too_large(limit))
        if chunk:
            yield chunk


async def _read_raw(request: "Request", limit: int, progress: _Progress) -> bytes:
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
    request: "Request", options: dict[bytes, bytes], limit: int, progress: _Progress
) -> tuple[bytes, str | None]:
    """The ``file`` field's bytes and file name, parsed in memory as the body streams in."""
    from python_multipart.exceptions import MultipartParseError

    boundary = options.get(b"boundary")
    if not boundary:
        raise _HTTPFailure(400, "multipart/form-data without a boundary")
    try:
        form = _FormFile(boundary)
        async for chunk in _bounded_chunks(request, limit, progress):
            form.parser.write(chunk)
        form.parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        raise _HTTPFailure(400, f"malformed multipart body ({exc})") from None
    if form.data is None:
        raise _HTTPFailure(422, f"multipart body has no {_UPLOAD_FIELD!r} field; send the audio as {_UPLOAD_FIELD}=@clip.wav")
    return bytes(form.data), form.filename


async def _read_upload(request: "Request", limit: int, progress: _Progress) -> tuple[bytes, str]:
    """The uploaded audio's bytes and a display name, with every size and type check."""
    media, options = _media_type(request)
    if media != _MULTIPART and media not in RAW_CONTENT_TYPES:
        shown = media or "none"
        raise _HTTPFailure(
            415,
            f"unsupported Content-Type {shown!r}: send {_MULTIPART} with a {_UPLOAD_FIELD!r} field, "
            f"or the raw audio as one of {sorted(RAW_CONTENT_TYPES)}",
        )
    _check_declared_length(request, limit)
    if media == _MULTIPART:
        data, filename = await _read_multipart(request, options, limit, progress)
        return data, safe_name(filename)
    return await _read_raw(request, limit, progress), "upload"


async def _receive(request: "Request", limit: int, timeout_s: float, progress: _Progress) -> tuple[bytes, str]:
    """`_read_upload` within `timeout_s`; failures ask for the connection to be closed.

    After an early answer the rest of the body is never read, and uvicorn would keep the
    connection open for as long as the client keeps sending it.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_upload(request, limit, progress)
    except TimeoutError:
        raise _HTTPFailure(408, f"the upload took longer than {timeout_s:g} s", {"Connection": "close"}) from None
    except _HTTPFailure as exc:
        exc.headers.setdefault("Connection", "close")
        raise


class _Uploads:
    """Places for request bodies being received: `limit` in all, `per_client` per address."""

    def __init__(self, limit: int, per_client: int) -> None:
        self.limit = limit
        self.per_client = per_client
        self.total = 0
        self.by_client: dict[str, int] = {}

    @contextlib.contextmanager
    def place(self, client: str) -> Any:
        """Hold a place while the body arrives; 503 (with Retry-After) when none is free."""
        held = self.by_client.get(client, 0)
        if self.total >= self.limit:
            raise _HTTPFailure(503, "server busy: too many uploads in progress, retry shortly", _RETRY_AND_CLOSE)
        if held >= self.per_client:
            raise _HTTPFailure(503, "too many uploads in progress from your address, retry shortly", _RETRY_AND_CLOSE)
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


def _client_address(request: "Request") -> str:
    return request.client.host if request.client is not None else "unknown"


# --------------------------------------------------------------------------- batching


@dataclass
class _Job:
    """One request waiting for the model."""

    data: bytes
    name: str
    segments: bool
    future: asyncio.Future = field(repr=False)
    speaker: str | None = None
    notes: list = field(default_factory=list)  # decoding findings (serkit.quality.decoding_findings)


@dataclass
class _Rejected:
    """A job whose audio could not be used: the reason (and a quality refusal's code), for a 422."""

    reason: str
    code: str | None = None


class _Batcher:
    """A bounded queue of requests and the task that feeds them to the model in batches."""

    def __init__(self, predictor: Any, *, max_concurrency: int, max_batch: int, batch_wait_ms: float, max_queue: int) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self.batch_wait = batch_wait_ms / 1000.0
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_queue)
        self.slots = asyncio.Semaphore(max_concurrency)
        self.executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="serkit-infer")
        self._inflight: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="serkit-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self.queue.empty():
            job = self.queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(_HTTPFailure(503, "server is shutting down"))
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=30)
        self.executor.shutdown(wait=False, cancel_futures=True)

    def submit(self, job: _Job) -> None:
        """Queue a job, or fail with 503 when the queue is full (the client should retry)."""
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise _HTTPFailure(503, "server busy: the request queue is full, retry shortly", {"Retry-After": "1"}) from None

    async def _loop(self) -> None:
        while True:
            # Take a slot first: while all are busy, requests pile up and make the next batch.
            await self.slots.acquire()
            try:
                batch = await self._collect()
            except BaseException:
                self.slots.release()
                raise
            task = asyncio.get_running_loop().create_task(self._dispatch(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _collect(self) -> list[_Job]:
        """The next batch: the first waiting job, plus those arriving within the batch window.

        The window is skipped while no other batch is running: an idle model would only sit
        waiting, and under load the queue fills by itself while all slots are busy.
        """
        batch = [await self.queue.get()]
        wait = self.batch_wait if self._inflight else 0.0
        deadline = asyncio.get_running_loop().time() + wait
        while len(batch) < self.max_batch:
            try:
                batch.append(self.queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _dispatch(self, batch: list[_Job]) -> None:
        try:
            loop = asyncio.get_running_loop()
            outcomes = await loop.run_in_executor(self.executor, self._infer, batch)
        except Exception:  # a bug in the batching itself: every request of the batch gets a 500
            logger.exception("batch of %d failed", len(batch))
            outcomes = [_HTTPFailure(500, "prediction failed; see the server log")] * len(batch)
        finally:
            self.slots.release()
        for job, outcome in zip(batch, outcomes):
            if job.future.done():  # the client went away
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    def _predict_group(self, members: list[tuple[int, Any]], segmented: bool, batch: list[_Job]) -> list[Any]:
        """One model call for the group; if it fails, one call each so only the culprit fails."""
        signals = [signal for _, signal in members]
        names = [batch[i].name for i, _ in members]
        speakers = [batch[i].speaker for i, _ in members]
        notes = [batch[i].notes for i, _ in members]
        try:
            predictions = self.predictor.predict_signals(signals, segments=segmented, names=names, speakers=speakers,
                                                         notes=notes)
        except Exception:
            if len(members) == 1:
                logger.exception("prediction of %s failed", names[0])
                return [_HTTPFailure(500, "prediction failed; see the server log")]
            logger.warning("batch of %d failed; predicting its requests one by one", len(members), exc_info=True)
            return [out for member in members for out in self._predict_group([member], segmented, batch)]
        return [_Rejected(p.error, _refusal_code(p)) if p.error else p for p in predictions]

    def _infer(self, batch: list[_Job]) -> list["Prediction | _Rejected"]:
        """Decode each job, then one `predict_signals` call per segments setting (thread pool)."""
        started = time.perf_counter()
        spec = self.predictor.audio_spec
        outcomes: list[Any] = [None] * len(batch)
        groups: dict[bool, list[tuple[int, tuple[Any, int]]]] = {}
        for i, job in enumerate(batch):
            try:
                with collect_notes() as notes:  # decoding findings travel with the prediction
                    signal = read(job.data, max_duration=spec.max_duration, min_duration=spec.min_duration,
                                  name=job.name)
            except AudioError as exc:
                outcomes[i] = _Rejected(f"{job.name}: {exc.reason}")
                continue
            job.notes = decoding_findings(notes)
            groups.setdefault(job.segments, []).append((i, signal))
        for segmented, members in groups.items():
            for (i, _), outcome in zip(members, self._predict_group(members, segmented, batch)):
                outcomes[i] = outcome
        logger.debug("batch of %d in %.1f ms", len(batch), 1000 * (time.perf_counter() - started))
        return outcomes


def _known_speakers(predictor: Any) -> list[str]:
    known = getattr(predictor, "known_speakers", None)
    return list(known()) if callable(known) else []


def _check_speaker(predictor: Any, speaker: str | None) -> None:
    """Refuse (422) a speaker the model cannot use; none given is fine (global statistics)."""
    if speaker is None:
        return
    if getattr(predictor, "transform", None) is None:
        raise _HTTPFailure(422, "this model does not normalise per speaker; leave out ?speaker=")
    if speaker not in _known_speakers(predictor):
        raise _HTTPFailure(422, f"unknown speaker {speaker[:60]!r}: the model holds statistics for the speakers "
                                "GET /health lists; leave out ?speaker= to use the global statistics")


def _refusal_code(prediction: "Prediction") -> str | None:
    """The code of the quality finding that refused a prediction (`serkit.quality`), if one did."""
    return next((w.code for w in prediction.warnings if w.refusal), None)


# --------------------------------------------------------------------------- app


class _NoSniff:
    """ASGI middleware adding ``X-Content-Type-Options: nosniff`` to every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(key.lower() == b"x-content-type-options" for key, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)


def _check_limits(batch_wait_ms: float, counts: dict[str, int], seconds: dict[str, float]) -> None:
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(batch_wait_ms, (int, float)) or not 0 <= batch_wait_ms <= 10_000:
        raise ValueError(f"batch_wait_ms must be between 0 and 10000, got {batch_wait_ms!r}")
    for name, value in seconds.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")


def _model_name(predictor: Any) -> str:
    folder = getattr(predictor, "model_dir", None)
    return os.path.basename(os.fspath(folder)) if folder is not None else "model"


def create_app(
    predictor: "Predictor",
    *,
    max_upload_bytes: int = _DEFAULT_MAX_UPLOAD,
    max_concurrency: int = 2,
    max_batch: int = 8,
    batch_wait_ms: float = 10,
    max_queue: int = 64,
    read_timeout_s: float = 60.0,
    max_uploads: int = 256,
    max_uploads_per_client: int = 32,
) -> "FastAPI":
    """The FastAPI app serving `predictor`.

    Args:
        predictor: A loaded `Predictor` (anything with ``labels``, ``audio_spec`` and
            ``predict_signals``).
        max_upload_bytes: Largest request body accepted; larger ones get 413.
        max_concurrency: Batches run by the model at the same time.
        max_batch: Requests gathered into one model call.
        batch_wait_ms: How long the first request of a batch waits for others to join it
            while another batch is running (an idle model starts at once).
        max_queue: Requests (bodies fully received) waiting for the model beyond which new
            ones get 503.
        read_timeout_s: Longest time to receive one upload (a trickling client gets 408).
        max_uploads: Request bodies being received at once; one more gets 503. Memory held
            by bodies in progress is at most ``max_uploads * max_upload_bytes``.
        max_uploads_per_client: Of those, how many one client address may hold (behind a
            reverse proxy every client has the proxy's address: raise it to ``max_uploads``).

    Returns:
        The app; its lifespan starts and stops the batching worker.
    """
    from fastapi import FastAPI, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.requests import ClientDisconnect

    counts = {
        "max_upload_bytes": max_upload_bytes, "max_concurrency": max_concurrency, "max_batch": max_batch,
        "max_queue": max_queue, "max_uploads": max_uploads, "max_uploads_per_client": max_uploads_per_client,
    }
    _check_limits(batch_wait_ms, counts, {"read_timeout_s": read_timeout_s})
    labels = [str(label) for label in predictor.labels]
    model = _model_name(predictor)
    uploads = _Uploads(max_uploads, max_uploads_per_client)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher = _Batcher(
            predictor, max_concurrency=max_concurrency, max_batch=max_batch, batch_wait_ms=batch_wait_ms, max_queue=max_queue
        )
        batcher.start()
        app.state.batcher = batcher
        logger.info("serving %s: labels %s, batches of <= %d, %d in flight", model, labels, max_batch, max_concurrency)
        try:
            yield
        finally:
            await batcher.stop()

    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN; /openapi.json stays.
    app = FastAPI(
        title="serkit", summary="Speech emotion recognition", version=_version(), lifespan=lifespan,
        docs_url=None, redoc_url=None,
    )

    @app.exception_handler(_HTTPFailure)
    async def _failure(request: Request, exc: _HTTPFailure) -> JSONResponse:
        body = {"detail": exc.detail} if exc.code is None else {"detail": exc.detail, "code": exc.code}
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    app.add_middleware(_NoSniff)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, the model's name and labels, the upload limit and uploads being received."""
        return {
            "status": "ok", "model": model, "labels": labels, "max_upload_bytes": max_upload_bytes,
            "uploads_in_progress": uploads.total, "speaker_norm": getattr(predictor, "transform", None) is not None,
            "speakers": _known_speakers(predictor),
        }

    @app.get("/labels")
    async def get_labels() -> dict[str, list[str]]:
        """The model's labels, in probability order."""
        return {"labels": labels}

    page_files = _page_files()

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        """The upload / record page."""
        return HTMLResponse(page_files["index.html"], headers={"Content-Security-Policy": _PAGE_CSP,
                                                               "Cache-Control": "no-cache"})

    @app.get("/page.css", include_in_schema=False)
    async def page_css() -> Response:
        return Response(page_files["page.css"], media_type="text/css", headers={"Cache-Control": "no-cache"})

    @app.get("/page.js", include_in_schema=False)
    async def page_js() -> Response:
        return Response(page_files["page.js"], media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    @app.post("/predict")
    async def predict(
        request: Request,
        segments: bool = Query(False, description="return the per-window timeline even for short audio"),
        speaker: str | None = Query(None, max_length=200, description="speaker_norm models: a speaker whose "
                                    "statistics the model holds (GET /health lists them)"),
    ) -> JSONResponse:
        """Predict the emotion of the uploaded audio (multipart field ``file`` or a raw body)."""
        _check_speaker(predictor, speaker)
        client, progress = _client_address(request), _Progress()
        try:
            with uploads.place(client):
                data, name = await _receive(request, max_upload_bytes, read_timeout_s, progress)
        except ClientDisconnect:
            # The client's choice, not a server fault; nobody is left to read an answer.
            logger.info("client %s disconnected during its upload after %d bytes", client, progress.received)
            return Response(status_code=400)
        # Only now, with the whole body here, does the request take a place in the work queue.
        job = _Job(data=data, name=name, segments=segments, future=asyncio.get_running_loop().create_future(),
                   speaker=speaker)
        request.app.state.batcher.submit(job)
        outcome = await job.future
        if isinstance(outcome, _Rejected):
            raise _HTTPFailure(422, _scrub(outcome.reason), code=outcome.code)
        return JSONResponse(outcome.to_dict())  # already plain JSON types: no model validation

    return app


#: The page loads nothing from elsewhere: its script and styles come from this server (no
#: inline code runs), the recorder's AudioWorklet module is a blob: URL, the player plays blob: URLs.
_PAGE_CSP = (
    "default-src 'none'; script-src 'self' blob:; style-src 'self'; connect-src 'self'; "
    "media-src blob:; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: The page's files, shipped as package data in ``serkit/static``.
_PAGE_FILES = ("index.html", "page.css", "page.js")


def _page_files() -> dict[str, str]:
    """The web page's HTML, CSS and JavaScript (read once per app)."""
    from importlib.resources import files

    folder = files("serkit") / "static"
    return {name: (folder / name).read_text(encoding="utf-8") for name in _PAGE_FILES}


def _version() -> str:
    from serkit import __version__

    return __version__


def run(
    model_dir: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    backend: str = "torch",
    log_level: str = "info",
    keep_alive_s: float = 5.0,
    header_timeout_s: float = 10.0,
    linger_s: float = 2.0,
    **limits: Any,
) -> None:
    """Load a model and serve it with uvicorn until interrupted.

    Args:
        model_dir: A folder written by `serkit.models.io.save_model`.
        host: Interface to bind; 127.0.0.1 unless exposing the service is intended.
        port: TCP port (0 picks a free one).
        backend: ``"torch"`` or ``"onnx"`` (see `Predictor.load`).
        log_level: uvicorn's log level.
        keep_alive_s: See `server_options`.
        header_timeout_s: See `server_options`.
        linger_s: See `server_options`.
        **limits: `create_app` keyword arguments (``max_upload_bytes``, ``max_concurrency``,
            ``max_batch``, ``batch_wait_ms``, ``max_queue``, ``read_timeout_s``,
            ``max_uploads``, ``max_uploads_per_client``).
    """
    import uvicorn

    from serkit.inference import Predictor

    options = server_options(keep_alive_s=keep_alive_s, header_timeout_s=header_timeout_s, linger_s=linger_s)
    predictor = Predictor.load(model_dir, backend=backend)  # type: ignore[arg-type]
    app = create_app(predictor, **limits)
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: reachable from other machines; there is no authentication", host)
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, ws="none", server_header=False, proxy_headers=False, **options
    )

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
    ``GET /``: a self-contained page (inline CSS and JS) to upload or record audio.

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

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        """The upload / record page."""
        return HTMLResponse(PAGE, headers={"Content-Security-Policy": _PAGE_CSP, "Cache-Control": "no-cache"})

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


#: The page loads nothing from elsewhere; scripts and styles are inline, the recorder's
#: AudioWorklet module is a blob: URL, the player plays blob: URLs.
_PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' blob:; style-src 'unsafe-inline'; connect-src 'self'; "
    "media-src blob:; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


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


# --------------------------------------------------------------------------- the page

#: The whole web page: no external resources (see `_PAGE_CSP`).
PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>serkit · speech emotion recognition</title>
<style>
  :root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --bg: #f5f6f8; --card: #fff; --accent: #3559e0; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
  main { max-width: 760px; margin: 0 auto; padding: 28px 18px 40px; }
  header h1 { margin: 0; font-size: 22px; letter-spacing: .2px; }
  header p { margin: 2px 0 0; color: var(--muted); }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 18px 20px; margin-top: 18px; }
  .card h2 { margin: 0 0 12px; font-size: 13px; text-transform: uppercase; letter-spacing: .6px; color: var(--muted); }
  .row { display: flex; flex-wrap: wrap; gap: 10px; align-items: center; }
  input[type=file] { flex: 1 1 260px; min-width: 0; padding: 7px; border: 1px dashed #b9c0cc; border-radius: 8px; background: #fafbfc; }
  button { font: inherit; padding: 8px 16px; border-radius: 8px; border: 1px solid var(--accent); cursor: pointer; }
  button.primary { background: var(--accent); color: #fff; }
  button.secondary { background: #fff; color: var(--accent); }
  button:disabled { opacity: .5; cursor: default; }
  button.recording { background: #d92d20; border-color: #d92d20; color: #fff; }
  label.check { color: var(--muted); user-select: none; }
  #status { min-height: 1.4em; margin-top: 10px; color: var(--muted); }
  #error { margin-top: 10px; padding: 9px 12px; border-radius: 8px; background: #fef3f2; color: #b42318; border: 1px solid #fecdca; }
  audio { width: 100%; margin-top: 12px; }
  .verdict { display: flex; align-items: baseline; gap: 12px; flex-wrap: wrap; }
  #label { font-size: 30px; font-weight: 700; text-transform: capitalize; }
  #label .chip { display: inline-block; width: 14px; height: 14px; border-radius: 4px; margin-right: 8px; vertical-align: 3px; }
  #summary { color: var(--muted); }
  #warnings { flex-basis: 100%; list-style: none; margin: 2px 0 0; padding: 0; display: grid; gap: 6px; }
  #warnings li { padding: 7px 11px; border-radius: 8px; background: #fffaeb; color: #93370d; border: 1px solid #fedf89; }
  #warnings li::before { content: "\26A0\FE0F  "; }
  #bars { margin-top: 14px; display: grid; gap: 7px; }
  .bar { display: grid; grid-template-columns: 92px 1fr 52px; gap: 10px; align-items: center; }
  .bar .name { text-transform: capitalize; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .bar .track { height: 16px; background: #eef0f3; border-radius: 5px; overflow: hidden; }
  .bar .fill { height: 100%; border-radius: 5px; transition: width .35s ease; }
  .bar .pct { text-align: right; font-variant-numeric: tabular-nums; color: var(--muted); }
  .bar.top .name, .bar.top .pct { font-weight: 600; color: var(--fg); }
  #timeline { display: flex; height: 42px; border-radius: 7px; overflow: hidden; border: 1px solid var(--line); }
  .seg { display: flex; align-items: center; justify-content: center; min-width: 0; color: #fff; font-size: 12px; font-weight: 600;
         text-transform: capitalize; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; padding: 0 4px;
         border-right: 1px solid rgba(255,255,255,.6); }
  .seg:last-child { border-right: 0; }
  #axis { position: relative; height: 18px; margin-top: 4px; color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
  #axis span { position: absolute; transform: translateX(-50%); white-space: nowrap; }
  #axis span:first-child { transform: none; }
  #axis span:last-child { transform: translateX(-100%); }
  #legend { display: flex; flex-wrap: wrap; gap: 6px 14px; margin-top: 10px; color: var(--muted); font-size: 13px; }
  #legend i { display: inline-block; width: 10px; height: 10px; border-radius: 3px; margin-right: 5px; }
  [hidden] { display: none !important; }
  footer { margin-top: 18px; color: var(--muted); font-size: 12px; text-align: center; }
</style>
</head>
<body>
<main>
  <header>
    <h1>serkit · speech emotion recognition</h1>
    <p>Model <b id="model">…</b> · labels <span id="labels">…</span></p>
  </header>

  <section class="card">
    <h2>Audio</h2>
    <div class="row">
      <input id="file" type="file" accept="audio/*,.wav,.flac,.ogg,.opus,.mp3,.m4a,.aac,.mp4,.webm,.aif,.aiff">
      <button id="submit" class="primary" type="button" disabled>Predict</button>
      <button id="record" class="secondary" type="button">● Record</button>
    </div>
    <div class="row" style="margin-top:10px">
      <label class="check"><input id="segments" type="checkbox"> show the timeline for short clips too</label>
    </div>
    <div id="status" aria-live="polite"></div>
    <div id="error" role="alert" hidden></div>
    <audio id="player" controls hidden></audio>
  </section>

  <section id="result" class="card" hidden>
    <h2>Prediction</h2>
    <div class="verdict"><div id="label"></div><div id="summary"></div><ul id="warnings" aria-label="quality warnings" hidden></ul></div>
    <div id="bars"></div>
  </section>

  <section id="timeline-card" class="card" hidden>
    <h2>Timeline</h2>
    <div id="timeline"></div>
    <div id="axis"></div>
    <div id="legend"></div>
  </section>
  <footer>Audio is decoded in memory and not stored.</footer>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const KNOWN = { angry: "#d92d20", anger: "#d92d20", happy: "#f79009", happiness: "#f79009", joy: "#f79009",
  sad: "#2e6fd8", sadness: "#2e6fd8", neutral: "#7a8699", fear: "#7a4cc2", fearful: "#7a4cc2",
  surprise: "#0e9384", surprised: "#0e9384", disgust: "#4c8c2b", disgusted: "#4c8c2b", calm: "#3ba7c9" };
const PALETTE = ["#3559e0", "#e04f8a", "#12a594", "#c27c0e", "#8e44ad", "#5d6b82", "#d14d2b", "#2f9e44"];
const state = { labels: [], maxBytes: 20 * 1024 * 1024, blob: null, name: null, busy: false, rec: null };

function colour(label) {
  const key = String(label).toLowerCase();
  if (KNOWN[key]) return KNOWN[key];
  const i = state.labels.indexOf(label);
  return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
}
function setStatus(text) { $("status").textContent = text || ""; }
function showError(text) { const e = $("error"); e.textContent = text || ""; e.hidden = !text; }
function percent(p) { return (100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1) + "%"; }
function seconds(s) { return s < 10 ? s.toFixed(1) + " s" : Math.round(s) + " s"; }
function refresh() { $("submit").disabled = state.busy || !state.blob || !!state.rec; }

async function init() {
  try {
    const r = await fetch("health");
    const info = await r.json();
    state.labels = info.labels || [];
    state.maxBytes = info.max_upload_bytes || state.maxBytes;
    $("model").textContent = info.model;
    $("labels").textContent = state.labels.join(", ");
  } catch (err) { showError("Cannot reach the service: " + err); }
}

function choose(blob, name) {
  state.blob = blob; state.name = name;
  const player = $("player");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(blob); player.hidden = false;
  showError("");
  refresh();
}

$("file").addEventListener("change", () => {
  const f = $("file").files[0];
  if (!f) { state.blob = null; refresh(); return; }
  if (f.size > state.maxBytes) { showError(`The file is ${(f.size / 1048576).toFixed(1)} MiB; the limit is ${(state.maxBytes / 1048576).toFixed(1)} MiB.`); state.blob = null; refresh(); return; }
  choose(f, f.name);
  setStatus(`${f.name} · ${(f.size / 1024).toFixed(0)} KiB`);
});

$("submit").addEventListener("click", async () => {
  if (!state.blob || state.busy) return;
  state.busy = true; refresh(); showError(""); setStatus("Analysing…");
  const form = new FormData();
  form.append("file", state.blob, state.name || "audio.wav");
  const t0 = performance.now();
  try {
    const r = await fetch("predict?segments=" + $("segments").checked, { method: "POST", body: form });
    let body = null;
    try { body = await r.json(); } catch (_) { body = null; }
    if (!r.ok) {
      const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : r.statusText;
      throw new Error(`${r.status}: ${detail}`);
    }
    render(body);
    setStatus(`Done in ${Math.round(performance.now() - t0)} ms.`);
  } catch (err) {
    // an earlier prediction must not stand beside this error as if it were the answer
    $("result").hidden = true; $("timeline-card").hidden = true;
    setStatus(""); showError(String(err.message || err));
  } finally { state.busy = false; refresh(); }
});

function render(p) {
  const label = $("label");
  label.replaceChildren();
  const chip = document.createElement("span");
  chip.className = "chip"; chip.style.background = colour(p.label);
  label.append(chip, document.createTextNode(p.label));
  label.dataset.label = p.label;
  const top = p.probabilities[p.label] || 0;
  $("summary").textContent = `${percent(top)} · ${seconds(p.duration)} · ${p.source}`;
  // quality warnings (silence, clipping, short audio) beside the label: how far to trust it
  const warnings = $("warnings");
  warnings.replaceChildren();
  for (const w of p.warnings || []) {
    const item = document.createElement("li");
    item.dataset.code = w.code; item.textContent = w.message;
    warnings.append(item);
  }
  warnings.hidden = !warnings.children.length;
  const bars = $("bars");
  bars.replaceChildren();
  const order = Object.entries(p.probabilities).sort((a, b) => b[1] - a[1]);
  for (const [name, prob] of order) {
    const row = document.createElement("div");
    row.className = "bar" + (name === p.label ? " top" : "");
    row.dataset.label = name;
    const n = document.createElement("span"); n.className = "name"; n.textContent = name;
    const track = document.createElement("div"); track.className = "track";
    const fill = document.createElement("div"); fill.className = "fill";
    fill.style.background = colour(name); fill.style.width = "0%";
    track.append(fill);
    const pct = document.createElement("span"); pct.className = "pct"; pct.textContent = percent(prob);
    row.append(n, track, pct);
    bars.append(row);
    requestAnimationFrame(() => { fill.style.width = (100 * prob).toFixed(2) + "%"; });
  }
  $("result").hidden = false;
  renderTimeline(p);
}

function renderTimeline(p) {
  const card = $("timeline-card"), line = $("timeline"), axis = $("axis"), legend = $("legend");
  line.replaceChildren(); axis.replaceChildren(); legend.replaceChildren();
  const segs = p.segments || [];
  if (!segs.length || !(p.duration > 0)) { card.hidden = true; return; }
  // Windows overlap: give each the stretch nearer its own centre than its neighbours'.
  const cuts = [0];
  for (let i = 1; i < segs.length; i++) cuts.push((segs[i].start + segs[i - 1].end) / 2);
  cuts.push(p.duration);
  segs.forEach((s, i) => {
    const block = document.createElement("div");
    block.className = "seg";
    block.dataset.label = s.label;
    block.style.flex = `${Math.max(cuts[i + 1] - cuts[i], 0.001)} 1 0`;
    block.style.background = colour(s.label);
    block.textContent = s.label;
    block.title = `${s.start.toFixed(1)}–${s.end.toFixed(1)} s: ${s.label} ${percent(s.probabilities[s.label] || 0)}`;
    line.append(block);
  });
  const ticks = 4;
  for (let k = 0; k <= ticks; k++) {
    const t = document.createElement("span");
    t.style.left = (100 * k / ticks) + "%";
    t.textContent = seconds(p.duration * k / ticks);
    axis.append(t);
  }
  for (const name of new Set(segs.map((s) => s.label))) {
    const item = document.createElement("span");
    const dot = document.createElement("i"); dot.style.background = colour(name);
    item.append(dot, document.createTextNode(`${name} (${segs.filter((s) => s.label === name).length})`));
    legend.append(item);
  }
  card.hidden = false;
}

// ---- recording: capture PCM with an AudioWorklet (ScriptProcessor as a fallback) and
// encode 16-bit WAV here, since MediaRecorder's webm/opus is not readable by libsndfile.
const WORKLET = `class Capture extends AudioWorkletProcessor {
  process(inputs) { const ch = inputs[0] && inputs[0][0]; if (ch) this.port.postMessage(ch.slice(0)); return true; }
}
registerProcessor("serkit-capture", Capture);`;

async function startRecording() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw new Error("this browser cannot record (no getUserMedia; use https or localhost)");
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  const ctx = new AudioContext();
  const source = ctx.createMediaStreamSource(stream);
  const chunks = [];
  let node;
  if (ctx.audioWorklet && window.AudioWorkletNode) {
    const url = URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" }));
    await ctx.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    node = new AudioWorkletNode(ctx, "serkit-capture");
    node.port.onmessage = (e) => chunks.push(e.data);
  } else {
    node = ctx.createScriptProcessor(4096, 1, 1);
    node.onaudioprocess = (e) => chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
  }
  source.connect(node);
  node.connect(ctx.destination);  // keeps the node pulled; it outputs silence
  // Stay under the upload limit: 2 bytes per sample plus the header.
  const maxSeconds = Math.min(600, Math.floor((state.maxBytes - 1024) / (2 * ctx.sampleRate)));
  const started = performance.now();
  const timer = setInterval(() => {
    const s = (performance.now() - started) / 1000;
    setStatus(`Recording… ${s.toFixed(0)} s (stop with ■)`);
    if (s >= maxSeconds) stopRecording();
  }, 250);
  state.rec = { stream, ctx, source, node, chunks, timer };
}

async function stopRecording() {
  const rec = state.rec;
  if (!rec) return;
  state.rec = null;
  clearInterval(rec.timer);
  rec.source.disconnect(); rec.node.disconnect();
  rec.stream.getTracks().forEach((t) => t.stop());
  const rate = rec.ctx.sampleRate;
  await rec.ctx.close();
  $("record").textContent = "● Record"; $("record").classList.remove("recording");
  const wav = encodeWav(rec.chunks, rate);
  const secs = (wav.size - 44) / 2 / rate;
  if (secs < 0.2) { setStatus(""); showError("The recording is empty; allow the microphone and try again."); refresh(); return; }
  $("file").value = "";  // the recording replaces any chosen file
  choose(wav, "recording.wav");
  setStatus(`Recorded ${seconds(secs)}; analysing…`);
  $("submit").click();
}

function encodeWav(chunks, rate) {
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const buf = new ArrayBuffer(44 + 2 * n), v = new DataView(buf);
  const text = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  text(0, "RIFF"); v.setUint32(4, 36 + 2 * n, true); text(8, "WAVE");
  text(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  text(36, "data"); v.setUint32(40, 2 * n, true);
  let o = 44;
  for (const c of chunks) for (let i = 0; i < c.length; i++, o += 2) {
    const s = Math.max(-1, Math.min(1, c[i]));
    v.setInt16(o, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([buf], { type: "audio/wav" });
}

$("record").addEventListener("click", async () => {
  if (state.rec) { await stopRecording(); return; }
  showError("");
  try {
    await startRecording();
    $("record").textContent = "■ Stop"; $("record").classList.add("recording");
    refresh();
  } catch (err) { state.rec = null; showError("Recording failed: " + (err.message || err)); }
});

init();
</script>
</body>
</html>
"""

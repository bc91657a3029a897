"""The FastAPI app: routes, limits, the page, and `run` for ``serkit serve``.

`create_app(predictor)` builds the app around a loaded `serkit.inference.predictor.Predictor`;
`run(model_dir)` loads a model and serves it with uvicorn on 127.0.0.1. What the endpoints
answer is described in `serkit.serving`; reading bodies is `serkit.serving.uploads`', batching
`serkit.serving.batcher`'s, connection timers `serkit.serving.connections`'.

fastapi and uvicorn are imported inside the functions, so importing serkit never needs them.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which
# name classes imported inside create_app.
import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from serkit.serving.batcher import Batcher, Job, Rejected
from serkit.serving.connections import server_options
from serkit.serving.errors import HTTPFailure, scrub
from serkit.serving.uploads import DEFAULT_MAX_UPLOAD, Progress, Uploads, client_address, receive

if TYPE_CHECKING:
    from fastapi import FastAPI

    from serkit.inference.predictor import Predictor

__all__ = ["create_app", "run"]

logger = logging.getLogger("serkit.serving")

#: The page loads nothing from elsewhere: its script and styles come from this server (no
#: inline code runs), the recorder's AudioWorklet module is a blob: URL, the player plays blob: URLs.
_PAGE_CSP = (
    "default-src 'none'; script-src 'self' blob:; style-src 'self'; connect-src 'self'; "
    "media-src blob:; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: The page's files, shipped as package data in ``serkit/serving/static``.
_PAGE_FILES = ("index.html", "page.css", "page.js")


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


def _check_limits(batch_wait_ms: float, counts: dict[str, int], seconds: dict[str, float],
                  workers: dict[str, tuple[int | None, int]]) -> None:
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(batch_wait_ms, (int, float)) or not 0 <= batch_wait_ms <= 10_000:
        raise ValueError(f"batch_wait_ms must be between 0 and 10000, got {batch_wait_ms!r}")
    for name, value in seconds.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
    for name, (value, least) in workers.items():  # None: one per core
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise ValueError(f"{name} must be None or an integer >= {least}, got {value!r}")


def _model_name(predictor: Any) -> str:
    """The model folder's name; with its run's name for `serkit run`'s ``RUN/VARIANT/model`` folders."""
    folder = getattr(predictor, "model_dir", None)
    if folder is None:
        return "model"
    path = os.path.normpath(os.path.abspath(os.fspath(folder)))
    name, parent = os.path.basename(path), os.path.basename(os.path.dirname(path))
    return f"{parent}/{name}" if name == "model" and parent else name


def _known_speakers(predictor: Any) -> list[str]:
    known = getattr(predictor, "known_speakers", None)
    return list(known()) if callable(known) else []


def _check_speaker(predictor: Any, speaker: str | None) -> None:
    """Refuse (422) a speaker the model cannot use; none given is fine (global statistics)."""
    if speaker is None:
        return
    if getattr(predictor, "transform", None) is None:
        raise HTTPFailure(422, "this model does not normalise per speaker; leave out ?speaker=")
    if speaker not in _known_speakers(predictor):
        raise HTTPFailure(422, f"unknown speaker {speaker[:60]!r}: the model holds statistics for the speakers "
                               "GET /health lists; leave out ?speaker= to use the global statistics")


def _page_files() -> dict[str, str]:
    """The web page's HTML, CSS and JavaScript (read once per app)."""
    from importlib.resources import files

    folder = files("serkit.serving") / "static"
    return {name: (folder / name).read_text(encoding="utf-8") for name in _PAGE_FILES}


def _version() -> str:
    from serkit import __version__

    return __version__


def create_app(
    predictor: "Predictor",
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    max_concurrency: int = 2,
    max_batch: int = 8,
    batch_wait_ms: float = 10,
    max_queue: int = 64,
    read_timeout_s: float = 60.0,
    max_uploads: int = 256,
    max_uploads_per_client: int = 32,
    decode_workers: int | None = None,
    feature_workers: int | None = None,
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
        decode_workers: Threads decoding uploads; None: one per core.
        feature_workers: Worker processes for an extractor without a batch API (openSMILE,
            log-mel, MFCC); None: one per core (none on one core), 0: none.

    Returns:
        The app; its lifespan starts and stops the batching worker.

    Raises:
        ValueError: A limit that is not a positive number (``feature_workers``: not None or >= 0).
    """
    from fastapi import FastAPI, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.requests import ClientDisconnect

    counts = {
        "max_upload_bytes": max_upload_bytes, "max_concurrency": max_concurrency, "max_batch": max_batch,
        "max_queue": max_queue, "max_uploads": max_uploads, "max_uploads_per_client": max_uploads_per_client,
    }
    _check_limits(batch_wait_ms, counts, {"read_timeout_s": read_timeout_s},
                  {"decode_workers": (decode_workers, 1), "feature_workers": (feature_workers, 0)})
    labels = [str(label) for label in predictor.labels]
    model = _model_name(predictor)
    uploads = Uploads(max_uploads, max_uploads_per_client)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher = Batcher(
            predictor, max_concurrency=max_concurrency, max_batch=max_batch, batch_wait_ms=batch_wait_ms,
            max_queue=max_queue, decode_workers=decode_workers, feature_workers=feature_workers,
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

    @app.exception_handler(HTTPFailure)
    async def _failure(request: Request, exc: HTTPFailure) -> JSONResponse:
        body = {"detail": exc.detail} if exc.code is None else {"detail": exc.detail, "code": exc.code}
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    app.add_middleware(_NoSniff)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, the model's name, labels and backend, the upload limit and uploads being received."""
        return {
            "status": "ok", "model": model, "labels": labels, "backend": getattr(predictor, "backend", None),
            "max_upload_bytes": max_upload_bytes,
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
        client, progress = client_address(request), Progress()
        try:
            with uploads.place(client):
                data, name = await receive(request, max_upload_bytes, read_timeout_s, progress)
        except ClientDisconnect:
            # The client's choice, not a server fault; nobody is left to read an answer.
            logger.info("client %s disconnected during its upload after %d bytes", client, progress.received)
            return Response(status_code=400)
        # Only now, with the whole body here, does the request take a place in the work queue.
        job = Job(data=data, name=name, segments=segments, future=asyncio.get_running_loop().create_future(),
                  speaker=speaker)
        request.app.state.batcher.submit(job)
        outcome = await job.future
        if isinstance(outcome, Rejected):
            raise HTTPFailure(422, scrub(outcome.reason), code=outcome.code)
        return JSONResponse(outcome.to_dict())  # already plain JSON types: no model validation

    return app


def run(
    model_dir: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    backend: str = "auto",
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
        backend: ``"auto"``, ``"torch"`` or ``"onnx"`` (see `Predictor.load`).
        log_level: uvicorn's log level.
        keep_alive_s: See `server_options`.
        header_timeout_s: See `server_options`.
        linger_s: See `server_options`.
        **limits: `create_app` keyword arguments (``max_upload_bytes``, ``max_concurrency``,
            ``max_batch``, ``batch_wait_ms``, ``max_queue``, ``read_timeout_s``,
            ``max_uploads``, ``max_uploads_per_client``, ``decode_workers``, ``feature_workers``).
    """
    import uvicorn

    from serkit.inference.predictor import Predictor

    options = server_options(keep_alive_s=keep_alive_s, header_timeout_s=header_timeout_s, linger_s=linger_s)
    predictor = Predictor.load(model_dir, backend=backend)  # type: ignore[arg-type]
    app = create_app(predictor, **limits)
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving on %s: reachable from other machines; there is no authentication", host)
    uvicorn.run(
        app, host=host, port=port, log_level=log_level, ws="none", server_header=False, proxy_headers=False, **options
    )

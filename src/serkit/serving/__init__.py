"""HTTP service: upload audio, get its emotion back (JSON API and a one-page web app).

One job per module: `app` (`create_app`, the routes, `run` for ``serkit serve``), `uploads`
(bounded body reading, in-memory multipart, upload places per client), `batcher` (the bounded
queue and micro-batches), `pool` (worker processes for extractors without a batch API),
`connections` (uvicorn's connection timers), `errors`; the page is package data in ``static/``.
Decoding is `serkit.data.audio.read`'s and prediction the `serkit.inference.predictor.Predictor`'s.

Endpoints:
    ``POST /predict``: the audio as a multipart upload (field ``file``) or as the raw request
        body with an audio Content-Type; ``?segments=true`` asks for the per-window timeline;
        ``?speaker=ID`` normalises with a speaker's stored statistics (``speaker_norm`` models).
        Returns `Prediction.to_dict()`, whose ``warnings`` list the quality findings
        (`serkit.data.quality`: ``near_silent``, ``clipped``, ``short``, each a code and a message).
        Errors, as ``{"detail": message}``: 400 malformed multipart or Content-Length, 408
        upload slower than ``read_timeout_s``, 413 body over the limit (checked from
        Content-Length and while reading), 415 unsupported Content-Type, 422 audio that cannot
        be used (with ``"code"`` too when refused for its content: ``silent``, all samples
        zero, or ``too_short``, shorter than the model's minimum), 503 queue full or too many
        uploads in progress (with Retry-After). An error answered before the body was read
        closes the connection.
    ``GET /health``, ``GET /labels``: model name, labels and limits.
    ``GET /``: the upload / record page (index.html, page.css, page.js).

Requests are decoded in memory only; a client's file name is never used as a path, it only
appears, sanitised, as the prediction's ``source``. Concurrent requests wait in a bounded
queue; a worker gathers up to ``max_batch`` of them arriving within ``batch_wait_ms`` (no wait
while the model is idle), decodes them in parallel threads and runs them through one
`Predictor.predict_signals` call: one extractor and one classifier call for the batch, with
features of extractors that have no batch API computed in worker processes (`batcher`).

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
client reads it instead of a connection reset (`connections`).

All log lines go to the ``serkit.serving`` logger. fastapi, uvicorn and python-multipart (the
``serve`` extra) are imported inside functions, so importing serkit never needs them.
"""

from serkit.serving.app import create_app, run
from serkit.serving.connections import server_options
from serkit.serving.uploads import RAW_CONTENT_TYPES, safe_name

__all__ = ["RAW_CONTENT_TYPES", "create_app", "run", "safe_name", "server_options"]

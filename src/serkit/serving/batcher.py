"""Micro-batching: requests that arrive together share one extractor and one classifier call.

Requests whose bodies have fully arrived wait in a bounded queue (`Batcher.submit` answers
503 when it is full). A worker task gathers up to ``max_batch`` of them arriving within
``batch_wait_ms`` (no wait while the model is idle) and runs the batch in two stages:

1. **Decoding**, each request in its own thread of a pool sized to the cores (soundfile, PyAV
   and soxr release the GIL), so a batch of eight costs about what its slowest file costs.
2. **The model**: one `Predictor.predict_signals` call for the whole batch, so an encoder
   (wav2vec 2.0, Whisper) sees every clip in one ``extract_batch`` call and the classifier
   every row in one ``predict_proba`` call. Extractors without a batch API (openSMILE,
   log-mel, MFCC) run clip by clip in a `serkit.serving.pool.FeaturePool` of worker
   processes, one per core, installed as the predictor's ``feature_map`` while the batcher
   runs; the classifier still gets the batch in one call.

At most ``max_concurrency`` batches are in flight: while one is in the model the next one
decodes, and requests arriving meanwhile make the batch after. If a batch's model call fails,
its requests are predicted one by one, so only the culprit fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from serkit.data.audio import AudioError, read
from serkit.data.audio_notes import collect_notes
from serkit.data.quality import decoding_findings
from serkit.serving.errors import HTTPFailure
from serkit.serving.pool import FeaturePool, batches_features, usable_cores

if TYPE_CHECKING:
    import numpy as np

    from serkit.inference.results import Prediction

__all__ = ["Batcher", "Job", "Rejected"]

logger = logging.getLogger("serkit.serving")


@dataclass
class Job:
    """One request waiting for the model."""

    data: bytes
    name: str
    segments: bool
    future: asyncio.Future = field(repr=False)
    speaker: str | None = None
    notes: list = field(default_factory=list)  # decoding findings (serkit.data.quality.decoding_findings)


@dataclass
class Rejected:
    """A job whose audio could not be used: the reason (and a quality refusal's code), for a 422."""

    reason: str
    code: str | None = None


def _refusal_code(prediction: Prediction) -> str | None:
    """The code of the quality finding that refused a prediction (`serkit.data.quality`), if one did."""
    return next((w.code for w in prediction.warnings if w.refusal), None)


class Batcher:
    """A bounded queue of requests and the task that feeds them to the model in batches.

    Args:
        predictor: A loaded `Predictor`, or anything with ``audio_spec`` and ``predict_signals``.
        max_concurrency: Batches in flight at once.
        max_batch: Requests gathered into one model call.
        batch_wait_ms: How long a batch waits for more requests while another batch runs.
        max_queue: Requests waiting beyond which `submit` answers 503.
        decode_workers: Threads decoding uploads; None: one per core.
        feature_workers: Processes extracting features for an extractor without a batch
            API; None: one per core when there are two or more, 0: extract in the model's
            thread. Only a `Predictor` gets a pool.
    """

    def __init__(
        self,
        predictor: Any,
        *,
        max_concurrency: int,
        max_batch: int,
        batch_wait_ms: float,
        max_queue: int,
        decode_workers: int | None = None,
        feature_workers: int | None = None,
    ) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self.batch_wait = batch_wait_ms / 1000.0
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=max_queue)
        self.slots = asyncio.Semaphore(max_concurrency)
        self.executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="serkit-infer")
        self.decoders = ThreadPoolExecutor(max_workers=decode_workers or usable_cores(),
                                           thread_name_prefix="serkit-decode")
        self.feature_workers = feature_workers
        self.feature_pool: FeaturePool | None = None
        self._inflight: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the feature pool (when the extractor needs one) and the batching task."""
        self.feature_pool = self._start_pool()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="serkit-batcher")

    def _start_pool(self) -> FeaturePool | None:
        from serkit.inference.predictor import Predictor

        workers = self.feature_workers if self.feature_workers is not None else usable_cores()
        if workers < 2 and self.feature_workers is None:
            return None  # one core: a process would only add the trip to it
        if workers < 1 or not isinstance(self.predictor, Predictor) or batches_features(self.predictor.extractor):
            return None
        try:
            pool = FeaturePool(self.predictor.extractor, workers)
        except Exception as exc:  # noqa: BLE001 - an extractor that cannot travel still serves, in-thread
            logger.warning("features run in the model's thread: the extractor cannot go to worker processes (%s)", exc)
            return None
        predictor = self.predictor

        def ready() -> None:
            predictor.feature_map = pool.map
            logger.info("%s features run in %d worker processes", predictor.extractor.name, workers)

        pool.warm_up(ready)  # until the workers are up, features are extracted in the model's thread
        return pool

    async def stop(self) -> None:
        """Stop taking batches, fail what still waits with 503, let running batches finish (30 s at most)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self.queue.empty():
            job = self.queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(HTTPFailure(503, "server is shutting down"))
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=30)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.decoders.shutdown(wait=False, cancel_futures=True)
        if self.feature_pool is not None:
            pool = self.feature_pool
            # Waited for: uvicorn re-raises SIGTERM after shutdown, so nothing runs after this.
            await asyncio.to_thread(pool.close)
            if getattr(self.predictor, "feature_map", None) == pool.map:  # after close: no late `ready`
                self.predictor.feature_map = None

    def submit(self, job: Job) -> None:
        """Queue a job, or fail with 503 when the queue is full (the client should retry)."""
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise HTTPFailure(503, "server busy: the request queue is full, retry shortly", {"Retry-After": "1"}) from None

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

    async def _collect(self) -> list[Job]:
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

    async def _dispatch(self, batch: list[Job]) -> None:
        try:
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            decoded = await asyncio.gather(*(loop.run_in_executor(self.decoders, self._decode, job) for job in batch))
            outcomes = await loop.run_in_executor(self.executor, self._infer, batch, decoded)
            logger.debug("batch of %d in %.1f ms", len(batch), 1000 * (time.perf_counter() - started))
        except Exception:  # a bug in the batching itself: every request of the batch gets a 500
            logger.exception("batch of %d failed", len(batch))
            outcomes = [HTTPFailure(500, "prediction failed; see the server log")] * len(batch)
        finally:
            self.slots.release()
        for job, outcome in zip(batch, outcomes):
            if job.future.done():  # the client went away
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    def _decode(self, job: Job) -> tuple[np.ndarray, int] | Rejected:
        """One upload decoded within the spec's limits (a decoding thread); its findings go to `job.notes`."""
        spec = self.predictor.audio_spec
        try:
            with collect_notes() as notes:  # per thread: decoding findings travel with the prediction
                signal = read(job.data, max_duration=spec.max_duration, min_duration=spec.min_duration, name=job.name)
        except AudioError as exc:
            return Rejected(f"{job.name}: {exc.reason}")
        job.notes = decoding_findings(notes)
        return signal

    def _infer(self, batch: list[Job], decoded: list[Any]) -> list[Prediction | Rejected | HTTPFailure]:
        """One `predict_signals` call per segments setting for the decoded jobs (the model's thread)."""
        outcomes: list[Any] = [None] * len(batch)
        groups: dict[bool, list[tuple[int, Any]]] = {}
        for i, (job, signal) in enumerate(zip(batch, decoded)):
            if isinstance(signal, Rejected):
                outcomes[i] = signal
            else:
                groups.setdefault(job.segments, []).append((i, signal))
        for segmented, members in groups.items():
            for (i, _), outcome in zip(members, self._predict_group(members, segmented, batch)):
                outcomes[i] = outcome
        return outcomes

    def _predict_group(self, members: list[tuple[int, Any]], segmented: bool, batch: list[Job]) -> list[Any]:
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
                return [HTTPFailure(500, "prediction failed; see the server log")]
            logger.warning("batch of %d failed; predicting its requests one by one", len(members), exc_info=True)
            return [out for member in members for out in self._predict_group([member], segmented, batch)]
        return [Rejected(p.error, _refusal_code(p)) if p.error else p for p in predictions]

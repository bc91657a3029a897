"""Feature extraction in worker processes, for extractors that have no batch API.

A pretrained encoder runs several clips in one call (`Extractor.extract_batch`), so the
batcher gives it a whole batch at once. openSMILE and the spectral extractors work one
utterance at a time, and openSMILE's Python side holds the GIL for much of each call, so
threads would not overlap them: `FeaturePool` runs them clip by clip in as many processes as
there are cores, each with its own copy of the extractor, and the classifier still sees the
whole batch in one call (`Predictor.feature_map`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

__all__ = ["FeaturePool", "batches_features", "usable_cores"]

logger = logging.getLogger("serkit.serving")

_extractor: Any = None  # the worker process's own extractor (set by _start_worker)
_ORPHAN_CHECK_S = 1.0  # how often a worker checks that its server still runs


def batches_features(extractor: Any) -> bool:
    """Whether `extractor` runs several clips in one call (it overrides `Extractor.extract_batch`)."""
    from serkit.features.base import Extractor

    method = getattr(type(extractor), "extract_batch", None)
    return method is not None and method is not Extractor.extract_batch


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _start_worker(extractor: Any, server_pid: int) -> None:
    global _extractor
    extractor.setup(None)
    _extractor = extractor
    threading.Thread(target=_exit_with, args=(server_pid,), name="serkit-orphan-watch", daemon=True).start()


def _exit_with(server_pid: int) -> None:
    """End this worker once the server is gone.

    A server killed outright (SIGKILL, or uvicorn re-raising SIGTERM after its shutdown) never
    tells its workers to stop, and they would wait for work forever.
    """
    while True:
        time.sleep(_ORPHAN_CHECK_S)
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass  # a process of that id exists (another user's): keep waiting


def _extract(clip: np.ndarray, sampling_rate: int) -> tuple[int, dict[str, np.ndarray]]:
    return os.getpid(), _extractor.extract(clip, sampling_rate)


def _ready() -> int:
    return os.getpid()


class FeaturePool:
    """Worker processes that each run a copy of one extractor, clip by clip.

    Attributes:
        workers: Number of processes.
        clips: Clips extracted in the workers so far.
        worker_pids: Process ids of the workers that extracted them.
        closed: Whether `close` was called.
    """

    def __init__(self, extractor: Any, workers: int) -> None:
        """Prepare `workers` processes (started on first use or by `warm_up`).

        Raises:
            ValueError: Fewer than one worker.
            pickle.PicklingError, TypeError: The extractor cannot be sent to a worker.
        """
        if workers < 1:
            raise ValueError(f"a feature pool needs at least one worker, got {workers}")
        pickle.dumps(extractor)  # fails here, not in the first request, if it cannot travel
        self.extractor = extractor
        self.workers = workers
        self.clips = 0
        self.worker_pids: set[int] = set()
        self.closed = False
        self._lock = threading.Lock()
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        # forkserver: a worker is forked from a small clean process, never from this one, whose
        # threads (the event loop, the decoding pool) make fork unsafe.
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context(method),
            initializer=_start_worker, initargs=(self.extractor, os.getpid()),
        )

    def warm_up(self, when_ready: Callable[[], None]) -> None:
        """Start every worker now, in the background; call `when_ready` once they have started.

        Until then the caller keeps extracting in its own thread, so requests never wait for
        a worker process to import its libraries.
        """
        futures = [self._executor.submit(_ready) for _ in range(self.workers)]
        left = [len(futures)]
        lock = threading.Lock()

        def started(future: Future) -> None:
            if future.cancelled() or future.exception() is not None:
                return  # never ready: the caller keeps extracting in its own thread
            with lock:
                left[0] -= 1
                if left[0] == 0 and not self.closed:
                    when_ready()

        for future in futures:
            future.add_done_callback(started)

    def map(self, clips: list[np.ndarray], sampling_rate: int) -> list[dict[str, np.ndarray]]:
        """The extractor's outputs for `clips`, in order; what `Extractor.extract_batch` returns.

        Raises:
            ValueError: The extractor rejected a clip (as it would in this process).
        """
        executor = self._executor
        if self.closed:  # a predictor that outlived its service extracts in its own thread again
            return self.extractor.extract_batch(list(clips), sampling_rate)
        try:
            done = list(executor.map(_extract, clips, [sampling_rate] * len(clips)))
        except RuntimeError as exc:
            if isinstance(exc, BrokenProcessPool):
                # A worker died (killed, out of memory): a fresh pool for later batches, this one here.
                logger.error("a feature worker died; restarting the pool of %d", self.workers)
                with self._lock:
                    if self._executor is executor and not self.closed:
                        self._executor = self._new_executor()
                executor.shutdown(wait=False, cancel_futures=True)
            elif not self.closed:
                raise
            return self.extractor.extract_batch(list(clips), sampling_rate)
        with self._lock:
            self.clips += len(done)
            self.worker_pids.update(pid for pid, _ in done)
        return [features for _, features in done]

    def close(self) -> None:
        """Stop the workers and wait until they have exited; later `map` calls extract in the caller's thread."""
        self.closed = True
        self._executor.shutdown(wait=True, cancel_futures=True)

"""Fill a feature cache from a manifest: resumable, batched, shardable across processes.

The work list is the whole manifest in one deterministic order (by duration, so batches hold
clips of similar length and little compute goes to padding). Under torchrun each rank takes
every WORLD_SIZE-th item of that list, so ranks never overlap and need not talk to each other
until the final barrier. Utterances already cached are skipped, so a killed run resumes
where it stopped. A clip that fails is recorded in the cache and the run goes on.

Processes that were not sharded (two `serkit extract` started on one cache, or two torchrun
jobs) share the work as they go: each claims a batch's utterances just before decoding them
(`FeatureCache.claim`), skips those another live process holds or has finished meanwhile, and
at the end waits for the ones still held elsewhere, taking over any whose holder died. So N
processes finish in about 1/N of the time, never compute an utterance twice while both live,
and each returns only once its whole share is cached or failed.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from serkit.data.audio import AudioError, load
from serkit.features.base import Extractor
from serkit.features.cache import FeatureCache, default_cache_root
from serkit.features.claims import Claim

__all__ = ["ExtractionResult", "distributed_env", "extract_manifest", "finish_run", "load_feature_config", "shard"]

log = logging.getLogger(__name__)


# How often a process with nothing left to claim looks again at items other processes hold.
WAIT_POLL_SECONDS = 0.2


@dataclass
class ExtractionResult:
    """What one `extract_manifest` call did (for this rank).

    ``total == already_cached + computed + len(failed) + by_others``.
    """

    cache_dir: Path
    total: int
    already_cached: int
    computed: int
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    audio_seconds: float = 0.0
    by_others: int = 0  # finished (cached or failed) by another process while this one ran
    stale_temps_removed: int = 0

    def to_dict(self) -> dict:
        """JSON-able summary (``serkit extract --json``)."""
        return {
            "cache_dir": str(self.cache_dir),
            "total": self.total,
            "already_cached": self.already_cached,
            "computed": self.computed,
            "failed": len(self.failed),
            "by_others": self.by_others,
            "stale_temps_removed": self.stale_temps_removed,
            "seconds": round(self.seconds, 3),
            "audio_seconds": round(self.audio_seconds, 3),
        }

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed


def distributed_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (0, 1, 0 when absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def shard(manifest: pd.DataFrame, rank: int = 0, world_size: int = 1) -> pd.DataFrame:
    """This rank's share of the manifest, from one order that every rank computes alike.

    Sorting by duration (ties by utt_id) keeps similar lengths together; taking every
    `world_size`-th row gives every rank a similar mix of lengths.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of size {world_size}")
    ordered = manifest.sort_values(["duration", "utt_id"], kind="stable").reset_index(drop=True)
    return ordered.iloc[rank::world_size].reset_index(drop=True)


class _WorkQueue:
    """Hands out batches of utterances this process has claimed, in the manifest's order.

    An utterance that another process holds is put aside and tried again once the fresh ones
    are used up; one that another process has cached (or recorded as failed) since `since` is
    counted in `by_others` and dropped.
    """

    def __init__(self, cache: FeatureCache, rows: pd.DataFrame, size: int, since: float) -> None:
        self.cache = cache
        self.rows = rows.reset_index(drop=True)
        self.size = size
        self.since = since
        self.by_others = 0
        self.claims: dict[str, Claim] = {}
        self._fresh = 0  # next row never looked at
        self._deferred: list[int] = []  # rows held by other processes last time we looked

    @property
    def finished(self) -> bool:
        """True when every row has been handed out or finished elsewhere."""
        return self._fresh >= len(self.rows) and not self._deferred

    @property
    def waiting(self) -> int:
        """Rows held by other processes."""
        return len(self._deferred)

    def _done_elsewhere(self, utt_id: str) -> bool:
        if self.cache.has(utt_id):
            return True
        try:  # failed in another process during this run: do not try it again
            return self.cache.error_path(utt_id).stat().st_mtime >= self.since
        except FileNotFoundError:
            return False

    def _try(self, index: int) -> bool | None:
        """True: claimed; False: held elsewhere; None: finished elsewhere."""
        utt_id = self.rows.at[index, "utt_id"]
        if self._done_elsewhere(utt_id):
            return None
        claim = self.cache.claim(utt_id)
        if claim is None:
            return False
        if self._done_elsewhere(utt_id):  # its holder finished between our look and our claim
            claim.release()
            return None
        self.claims[utt_id] = claim
        return True

    def take(self) -> pd.DataFrame:
        """Up to `size` newly claimed rows; empty when none can be claimed right now."""
        picked: list[int] = []
        held: list[int] = []
        while len(picked) < self.size and self._fresh < len(self.rows):
            self._sort(self._fresh, picked, held)
            self._fresh += 1
        if self._fresh >= len(self.rows):  # fresh rows used up: look again at the held ones
            for index in self._deferred:
                if len(picked) < self.size:
                    self._sort(index, picked, held)
                else:
                    held.append(index)
            self._deferred = held
        else:
            self._deferred += held
        return self.rows.iloc[picked]

    def _sort(self, index: int, picked: list[int], held: list[int]) -> None:
        outcome = self._try(index)
        if outcome is None:
            self.by_others += 1
        elif outcome:
            picked.append(index)
        else:
            held.append(index)

    def done(self, utt_id: str) -> None:
        """Give up the claim on `utt_id` once it is saved or recorded as failed."""
        claim = self.claims.pop(utt_id, None)
        if claim is not None:
            claim.release()

    def release_all(self) -> None:
        """Give up every claim still held (on the way out after an error)."""
        for claim in self.claims.values():
            claim.release()
        self.claims.clear()


def _load_batch(rows: pd.DataFrame, extractor: Extractor) -> list[tuple[str, str, np.ndarray | None, str]]:
    """Decode a batch: (utt_id, path, signal or None, error reason)."""
    out = []
    for utt_id, path in zip(rows["utt_id"], rows["path"]):
        try:
            out.append((utt_id, path, load(path, extractor.spec), ""))
        except AudioError as exc:
            out.append((utt_id, path, None, exc.reason))
    return out


def _prefetched(queue: _WorkQueue, extractor: Extractor, depth: int) -> Iterator[list]:
    """Decode claimed batches in a background thread, `depth` ahead of the model.

    Batches are claimed only when they are queued for decoding, so other processes can take
    everything after them. With nothing of its own left, it waits for rows other processes
    hold (never while holding undone claims of its own, which the others may be waiting for).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="serkit-audio") as pool:
        pending: deque[Future] = deque()

        def refill() -> None:
            while len(pending) < depth:
                batch = queue.take()
                if batch.empty:
                    return
                pending.append(pool.submit(_load_batch, batch, extractor))

        announced = False
        while True:
            refill()
            if not pending:
                if queue.finished:
                    return
                if not announced:
                    log.info("waiting for %d utterance(s) other processes are computing", queue.waiting)
                    announced = True
                time.sleep(WAIT_POLL_SECONDS)
                continue
            batch = pending.popleft().result()
            refill()
            yield batch


def _describe_outputs(features: dict[str, np.ndarray]) -> dict[str, dict]:
    return {name: {"dtype": str(a.dtype), "shape_of_first": list(a.shape)} for name, a in features.items()}


def _run_batch(extractor: Extractor, loaded: list, sampling_rate: int) -> list[tuple[str, str, dict | None, str]]:
    """Extract a decoded batch; when the batch call fails, retry one by one to isolate the bad clip."""
    good = [(u, p, s) for u, p, s, _ in loaded if s is not None]
    results = [(u, p, None, reason) for u, p, s, reason in loaded if s is None]
    if not good:
        return results
    try:
        outputs = extractor.extract_batch([s for _, _, s in good], sampling_rate)
        return results + [(u, p, o, "") for (u, p, _), o in zip(good, outputs)]
    except Exception as exc:  # noqa: BLE001 - isolate the failing clip below
        if len(good) == 1:
            u, p, _ = good[0]
            return results + [(u, p, None, f"feature extraction failed: {exc}")]
        log.warning("batch failed (%s); retrying its %d clips one by one", exc, len(good))
    for u, p, s in good:
        results += _run_batch(extractor, [(u, p, s, "")], sampling_rate)
    return results


def extract_manifest(
    manifest: pd.DataFrame,
    extractor: Extractor,
    cache_root: str | os.PathLike | None = None,
    *,
    batch_size: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    prefetch: int = 2,
) -> ExtractionResult:
    """Compute and cache the features of every utterance of `manifest` not cached yet.

    Args:
        manifest: A validated manifest (utt_id, path, duration, ...).
        extractor: The feature extractor.
        cache_root: Cache root (default `default_cache_root()`).
        batch_size: Clips per extractor call (default: the extractor's ``batch_size``
            setting when it has one, else 1).
        rank: This process's rank when the work is spread over several processes.
        world_size: Number of processes sharing the work.
        progress: Show a progress bar with files per second and time left.
        prefetch: Batches decoded ahead of the model in a background thread.

    Returns:
        What was done; failures are in ``result.failed`` and in the cache's ``errors/``.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    since = time.time()
    cache = FeatureCache(cache_root or default_cache_root(), extractor)
    removed = cache.clean()
    if removed:
        log.info("%s: removed %d temporary file(s) left by a killed run", cache.dir, removed)
    extractor.setup(cache.dir)
    if rank == 0 or not (cache.dir / "meta.json").exists():
        cache.write_meta()
    mine = shard(manifest, rank, world_size)
    todo = mine[~mine["utt_id"].map(cache.has)]
    size = batch_size or int(getattr(extractor.config, "batch_size", 1) or 1)
    result = ExtractionResult(cache.dir, total=len(mine), already_cached=len(mine) - len(todo), computed=0,
                              stale_temps_removed=removed)
    log.info("%s: %d of %d utterances to compute (rank %d/%d)", cache.dir, len(todo), len(mine), rank, world_size)
    described = (cache.dir / "meta.json").exists() and "outputs" in cache.read_meta()
    bar = tqdm(total=len(todo), unit="file", desc=f"extract {extractor.name}", disable=not progress, dynamic_ncols=True)
    sampling_rate = extractor.spec.sampling_rate
    queue = _WorkQueue(cache, todo, size, since)
    durations = dict(zip(todo["utt_id"], todo["duration"]))
    try:
        for loaded in _prefetched(queue, extractor, max(prefetch, 1)):
            for utt_id, path, features, reason in _run_batch(extractor, loaded, sampling_rate):
                if features is None:
                    cache.record_error(utt_id, path, reason)
                    queue.done(utt_id)
                    result.failed.append({"utt_id": utt_id, "path": path, "reason": reason})
                    continue
                cache.save(utt_id, features, source=path)
                queue.done(utt_id)
                if not described:
                    cache.write_meta(_describe_outputs(features))
                    described = True
                result.computed += 1
                result.audio_seconds += float(durations[utt_id])
            bar.update(result.computed + len(result.failed) + queue.by_others - bar.n)
    finally:
        queue.release_all()
        bar.close()
    result.by_others = queue.by_others
    _ensure_described(cache, mine["utt_id"])
    result.seconds = time.perf_counter() - started
    return result


def _ensure_described(cache: FeatureCache, utt_ids: Sequence[str]) -> None:
    """Describe the outputs in ``meta.json`` from a stored item if no process has yet.

    Concurrent processes each rewrite ``meta.json`` at start, so one that started late can
    drop the description an earlier one wrote; whoever finishes last puts it back.
    """
    if "outputs" in cache.read_meta():
        return
    for utt_id in utt_ids:
        if cache.has(utt_id):
            cache.write_meta(_describe_outputs(cache.load(utt_id)))
            return


def finish_run(cache_dir: Path, extractor: Extractor) -> list[dict[str, str]]:
    """After every rank is done: write ``errors.csv`` and return the failures still open."""
    cache = FeatureCache(cache_dir.parent, extractor)
    cache.write_errors_csv()
    return cache.errors()


def load_feature_config(features: str, overrides: Sequence[tuple[str, object]] = ()) -> dict:
    """A feature configuration from a kind name or a TOML/JSON file, with overrides applied.

    Args:
        features: A kind (``ssl``, ``logmel``, ``mfcc``, ``opensmile``) or a ``.toml`` /
            ``.json`` file holding ``kind = ...`` and the settings (a ``[features]`` table
            is also accepted).
        overrides: ``(key, value)`` pairs that replace settings.

    Returns:
        ``{"kind": ..., <settings>}`` for `serkit.features.build_extractor`.
    """
    import json
    import tomllib

    path = Path(features)
    if path.suffix in (".toml", ".json"):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: feature configuration not found")
        text = path.read_text()
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot parse feature configuration ({exc})") from None
        data = dict(data.get("features", data))
    else:
        data = {"kind": features}
    for key, value in overrides:
        if isinstance(value, list):  # tuples in frozen configs, lists in TOML / JSON
            value = tuple(value)
        data[key] = value
    return data

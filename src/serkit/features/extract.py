"""Fill a feature cache from a manifest: resumable, batched, shardable across processes.

The work list is the whole manifest in one deterministic order (by duration, so batches hold
clips of similar length and little compute goes to padding). Under torchrun each rank takes
every WORLD_SIZE-th item of that list, so ranks never overlap and need not talk to each other
until the final barrier. Utterances already cached are skipped, so a killed run resumes
where it stopped. A clip that fails is recorded in the cache and the run goes on.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from serkit.audio import AudioError, load
from serkit.features.base import Extractor
from serkit.features.cache import FeatureCache, default_cache_root

__all__ = ["ExtractionResult", "distributed_env", "extract_manifest", "finish_run", "load_feature_config", "shard"]

log = logging.getLogger(__name__)


@dataclass
class ExtractionResult:
    """What one `extract_manifest` call did (for this rank)."""

    cache_dir: Path
    total: int
    already_cached: int
    computed: int
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    audio_seconds: float = 0.0

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


def _batches(rows: pd.DataFrame, batch_size: int) -> list[pd.DataFrame]:
    return [rows.iloc[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def _load_batch(rows: pd.DataFrame, extractor: Extractor) -> list[tuple[str, str, np.ndarray | None, str]]:
    """Decode a batch: (utt_id, path, signal or None, error reason)."""
    out = []
    for utt_id, path in zip(rows["utt_id"], rows["path"]):
        try:
            out.append((utt_id, path, load(path, extractor.spec), ""))
        except AudioError as exc:
            out.append((utt_id, path, None, exc.reason))
    return out


def _prefetched(batches: Sequence[pd.DataFrame], extractor: Extractor, depth: int) -> Iterator[list]:
    """Decode batches in a background thread, `depth` ahead of the model."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="serkit-audio") as pool:
        pending: list[Future] = [pool.submit(_load_batch, b, extractor) for b in batches[:depth]]
        for index in range(len(batches)):
            batch = pending.pop(0).result()
            if index + depth < len(batches):
                pending.append(pool.submit(_load_batch, batches[index + depth], extractor))
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
    cache = FeatureCache(cache_root or default_cache_root(), extractor)
    extractor.setup(cache.dir)
    if rank == 0 or not (cache.dir / "meta.json").exists():
        cache.write_meta()
    mine = shard(manifest, rank, world_size)
    todo = mine[~mine["utt_id"].map(cache.has)]
    size = batch_size or int(getattr(extractor.config, "batch_size", 1) or 1)
    result = ExtractionResult(cache.dir, total=len(mine), already_cached=len(mine) - len(todo), computed=0)
    log.info("%s: %d of %d utterances to compute (rank %d/%d)", cache.dir, len(todo), len(mine), rank, world_size)
    described = (cache.dir / "meta.json").exists() and "outputs" in cache.read_meta()
    bar = tqdm(total=len(todo), unit="file", desc=f"extract {extractor.name}", disable=not progress, dynamic_ncols=True)
    sampling_rate = extractor.spec.sampling_rate
    try:
        for loaded in _prefetched(_batches(todo, size), extractor, max(prefetch, 1)):
            for utt_id, path, features, reason in _run_batch(extractor, loaded, sampling_rate):
                if features is None:
                    cache.record_error(utt_id, path, reason)
                    result.failed.append({"utt_id": utt_id, "path": path, "reason": reason})
                    continue
                cache.save(utt_id, features, source=path)
                if not described:
                    cache.write_meta(_describe_outputs(features))
                    described = True
                result.computed += 1
            bar.update(len(loaded))
    finally:
        bar.close()
    result.audio_seconds = float(todo["duration"].sum())
    result.seconds = time.perf_counter() - started
    return result


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

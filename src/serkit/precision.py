"""Numeric precision chosen by measurement on the processor at hand (``precision = "auto"``).

Processors differ: with AVX2 only, torch's bfloat16 matmul is emulated and many times slower
than float32; with AVX-512 BF16 or AMX it is several times faster. So "auto" never assumes:

1. It reads what the processor offers (`cpu_info`: the ``flags`` line of ``/proc/cpuinfo``,
   e.g. ``amx_bf16``, ``avx512_bf16``, ``amx_int8``, ``avx512_vnni``). A reduced precision that
   the processor has no instructions for is not even timed: float32 is chosen at no cost. A
   backend that knows its own efficient types (CTranslate2) passes them as ``supported``
   instead, and those are timed.
2. Otherwise it times each remaining candidate on a short probe (best of a few calls) and keeps
   the fastest that beats float32 by at least ``min_speedup`` and, where a probe reports one,
   whose deviation from float32 stays within ``tolerance``.
3. The decision is cached per machine (processor model, flags, thread count, library versions
   and the probe's own key) in ``$SERKIT_PRECISION_CACHE`` or ``~/.cache/serkit/precision.json``,
   so later runs pay nothing. ``SERKIT_PRECISION=float32`` (or another candidate) overrides it.

The result, a `PrecisionChoice`, carries the precision, the measured speed-up and the reason;
callers log it and put the precision actually used into cache fingerprints and run configs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PrecisionChoice",
    "CpuInfo",
    "choose_precision",
    "cpu_info",
    "precision_cache_path",
    "relative_deviation",
    "time_best",
    "torch_cpu_autocast",
]

logger = logging.getLogger(__name__)

#: A reduced precision must be at least this much faster than float32 to be chosen.
MIN_SPEEDUP = 1.15
#: Largest relative deviation from float32 (per layer, of the pooled statistics) "auto" accepts.
#: bfloat16 autocast stays well under it; CTranslate2's int8 Whisper tiny.en deviates by 4.6 %
#: (measured on a 4 s clip), so "auto" does not pick int8 for it unless the tolerance is raised.
TOLERANCE = 0.02
#: Processor flags (Linux ``/proc/cpuinfo`` names) that give native instructions per precision.
NATIVE_FLAGS: dict[str, frozenset[str]] = {
    "bfloat16": frozenset({"amx_bf16", "avx512_bf16"}),
    "int8": frozenset({"amx_int8", "avx512_vnni", "avx_vnni"}),
}
_ENV_OVERRIDE = "SERKIT_PRECISION"
_ENV_CACHE = "SERKIT_PRECISION_CACHE"


@dataclass(frozen=True)
class CpuInfo:
    """What the processor offers.

    Attributes:
        model: Processor model name (``/proc/cpuinfo``'s ``model name``, else `platform.processor`).
        flags: Instruction-set flags, lower case (empty where the platform does not list them).
    """

    model: str
    flags: frozenset[str]

    def native(self, precision: str) -> bool:
        """Whether the processor has instructions for `precision` (float32 always)."""
        needed = NATIVE_FLAGS.get(precision)
        return needed is None or bool(needed & self.flags)


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's processor model and flags, read once per process."""
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:  # not Linux: no flags, so only float32 counts as native
        return CpuInfo(model, flags)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key == "flags":
            flags = frozenset(value.lower().split())
        if flags and model:
            break
    return CpuInfo(model, flags)


@dataclass(frozen=True)
class PrecisionChoice:
    """What "auto" chose and why.

    Attributes:
        precision: The precision to use (``"float32"``, ``"bfloat16"``, ``"int8"``, ...).
        reason: One line: ``measured``, ``cached``, ``no native instructions``, ``override``, ...
        speedup: Measured float32 time / chosen time on the probe; None when nothing was timed.
        seconds: Probe seconds per candidate that was timed.
        deviation: Largest relative deviation from float32 per candidate, where the probe gives one.
    """

    precision: str
    reason: str
    speedup: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    deviation: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for logs, run configs and the cache)."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """A log line: precision, speed-up and reason."""
        speed = f", {self.speedup:.2f}x float32" if self.speedup is not None else ""
        return f"{self.precision}{speed} ({self.reason})"


def precision_cache_path() -> Path:
    """``$SERKIT_PRECISION_CACHE`` or ``~/.cache/serkit/precision.json``."""
    env = os.environ.get(_ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "serkit" / "precision.json"


def time_best(call: Callable[[], Any], repeats: int = 3) -> float:
    """Seconds of the fastest of `repeats` calls, after one untimed warm-up call."""
    call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


Probe = Callable[[str], "tuple[float, float | None]"]


def choose_precision(
    task: str,
    candidates: Sequence[str],
    probe: Probe,
    *,
    key: Mapping[str, Any] | None = None,
    cpu: CpuInfo | None = None,
    min_speedup: float | None = None,
    tolerance: float | None = None,
    use_cache: bool = True,
    supported: Sequence[str] | None = None,
) -> PrecisionChoice:
    """Pick the fastest acceptable precision for `task` on this processor.

    Args:
        task: What is being decided (``"torch-cpu-autocast"``, ``"ctranslate2:<model>"``, ...).
        candidates: Precisions to consider; ``"float32"`` is always the reference.
        probe: ``probe(precision) -> (seconds, deviation)``: the best time of the probe workload,
            and its largest relative deviation from float32 (None when it has no such measure).
        key: What else decides the answer (model, backend, library versions); part of the cache key.
        cpu: The processor (default: `cpu_info`); tests pass a fake one.
        min_speedup: A candidate must be this much faster than float32 (default `MIN_SPEEDUP`).
        tolerance: Largest accepted deviation from float32 (default `TOLERANCE`).
        use_cache: Read and write the per-machine cache.
        supported: Candidates the backend itself reports as efficient on this device (e.g.
            CTranslate2's ``get_supported_compute_types``); None asks the processor's flags.

    Returns:
        The choice; float32 when no candidate is native to the processor, faster and accurate enough.

    Raises:
        ValueError: ``SERKIT_PRECISION`` names a precision outside `candidates` and float32.
    """
    min_speedup = MIN_SPEEDUP if min_speedup is None else min_speedup
    tolerance = TOLERANCE if tolerance is None else tolerance
    allowed = ["float32", *[c for c in candidates if c != "float32"]]
    override = os.environ.get(_ENV_OVERRIDE)
    if override:
        if override not in allowed:
            raise ValueError(f"{_ENV_OVERRIDE}={override!r}: {task} offers {allowed}")
        return PrecisionChoice(override, f"set by {_ENV_OVERRIDE}")
    cpu = cpu or cpu_info()
    native = [c for c in allowed[1:] if (c in supported if supported is not None else cpu.native(c))]
    if not native:
        return PrecisionChoice("float32", f"no native {'/'.join(allowed[1:]) or 'reduced-precision'} instructions on {cpu.model}")
    cache_key = _cache_key(task, native, key, cpu, min_speedup, tolerance)
    if use_cache and (cached := _read_cache(cache_key)) is not None:
        return dataclasses.replace(cached, reason=f"cached: {cached.reason}")
    choice = _measure(native, probe, min_speedup, tolerance)
    if use_cache:
        _write_cache(cache_key, choice)
    return choice


def _measure(native: list[str], probe: Probe, min_speedup: float, tolerance: float) -> PrecisionChoice:
    seconds: dict[str, float] = {"float32": probe("float32")[0]}
    deviation: dict[str, float] = {}
    for candidate in native:
        seconds[candidate], dev = probe(candidate)
        if dev is not None:
            deviation[candidate] = float(dev)
    best, reason = "float32", "measured: no candidate was faster and accurate enough"
    for candidate in native:
        speedup = seconds["float32"] / seconds[candidate]
        if speedup < min_speedup or deviation.get(candidate, 0.0) > tolerance:
            continue
        if best == "float32" or seconds[candidate] < seconds[best]:
            best, reason = candidate, "measured"
    speedup = seconds["float32"] / seconds[best]
    return PrecisionChoice(best, reason, round(speedup, 3), seconds, deviation)


def _cache_key(task: str, native: list[str], key: Mapping[str, Any] | None, cpu: CpuInfo, *limits: float) -> str:
    blob = {
        "task": task, "candidates": native, "key": dict(key or {}), "cpu": cpu.model,
        "flags": sorted(cpu.flags & set().union(*NATIVE_FLAGS.values())), "threads": os.cpu_count(), "limits": limits,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _read_cache(cache_key: str) -> PrecisionChoice | None:
    path = precision_cache_path()
    try:
        entry = json.loads(path.read_text())[cache_key]
        return PrecisionChoice(**entry)
    except (OSError, ValueError, KeyError, TypeError):  # absent, unreadable or older layout: measure again
        return None


def _write_cache(cache_key: str, choice: PrecisionChoice) -> None:
    from serkit.atomic import atomic_write

    path = precision_cache_path()
    try:
        entries = json.loads(path.read_text()) if path.is_file() else {}
        if not isinstance(entries, dict):
            entries = {}
    except (OSError, ValueError):
        entries = {}
    entries[cache_key] = choice.to_dict()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w") as handle:
            json.dump(entries, handle, indent=1, sort_keys=True)
    except OSError as exc:  # a read-only home only costs a new measurement next time
        logger.warning("precision: could not write %s (%s)", path, exc)


def relative_deviation(reference: Any, other: Any) -> float:
    """Largest per-row relative L2 deviation ``||other - reference|| / ||reference||``.

    Args:
        reference: (rows, ...) float32 results, e.g. pooled statistics per layer.
        other: The same from the reduced precision.

    Returns:
        The maximum over rows (layers); 0.0 for identical inputs.
    """
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    diff = np.asarray(other, dtype=np.float64).reshape(len(reference), -1) - ref
    norms = np.maximum(np.linalg.norm(ref, axis=1), np.finfo(np.float64).tiny)
    return float((np.linalg.norm(diff, axis=1) / norms).max())


def _autocast_probe(precision: str) -> tuple[float, float | None]:
    """Seconds of a conv + matmul workload shaped like speech encoders and CNN heads, and its deviation."""
    import torch

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(4, 16, 32, 32, generator=generator)
    kernel = torch.randn(32, 16, 3, 3, generator=generator) / 12.0
    frames = torch.randn(256, 768, generator=generator)
    weight = torch.randn(768, 768, generator=generator) / 28.0

    def work(reduced: bool) -> list[Any]:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=reduced):
            conv = torch.nn.functional.conv2d(images, kernel, padding=1)
            return [conv.float().mean(dim=(2, 3)), (frames @ weight).float()]

    reduced = precision == "bfloat16"
    seconds = time_best(lambda: work(reduced))
    if not reduced:
        return seconds, None
    pairs = zip(work(False), work(True))
    return seconds, max(relative_deviation(ref, out) for ref, out in pairs)


def torch_cpu_autocast(use_cache: bool = True, cpu: CpuInfo | None = None) -> PrecisionChoice:
    """float32 or bfloat16 autocast for torch on this CPU (SSL encoders and training).

    The probe is a 3 x 3 convolution (8 x 32 x 48 x 48 -> 64 channels) and a 1024 x 768 x 3072
    matmul, timed with and without ``torch.autocast("cpu", dtype=torch.bfloat16)``; bfloat16 is
    timed only where the processor has AVX-512 BF16 or AMX-BF16 instructions.
    """
    import torch

    key = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    return choose_precision("torch-cpu-autocast", ["bfloat16"], _autocast_probe, key=key, cpu=cpu, use_cache=use_cache)

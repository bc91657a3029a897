"""Benchmark: the HTTP service (`serkit serve`) against calling the Predictor directly.

A small eGeMAPS SVM is trained on serkit's synthetic corpus (or ``--model DIR`` is used), the
service is started as ``serkit serve`` in a child process on 127.0.0.1 with an ephemeral port,
and N uploads (multipart WAV, about 2 to 4 s each) are sent at concurrency 1, 8 and 32 with
httpx. Reported per level: throughput, p50 / p99 latency, errors, and the service's cost over
`Predictor.predict_file` on the same bytes in this process (per-request ms and ratio; at
concurrency > 1 the per-request time is wall time / N, so batching and overlap show up there).

Everything is bounded: N requests per level, a time budget per level (requests not started in
time are skipped and reported), and the server is stopped at the end.

Run: .venv/bin/python benchmarks/bench_serve.py [--requests 64] [--levels 1 8 32] [--model DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def make_corpus(root: Path):
    """A small synthetic corpus (4 speakers x 4 emotions x 4 clips); returns its listing."""
    import pandas as pd

    from serkit import synth

    table = pd.read_csv(synth.write_corpus(root, speakers=4, per_emotion=4, voice="source-filter"))
    table["file"] = [root / p for p in table["path"]]
    return table


def train_model(table, dest: Path) -> Path:
    """A small eGeMAPS SVM on the corpus; returns the model folder."""
    from serkit import audio
    from serkit.features import build_extractor
    from serkit.models import build_model
    from serkit.models.io import save_model

    extractor = build_extractor({"kind": "opensmile"})
    rate = extractor.spec.sampling_rate
    X = np.stack([extractor.extract(audio.load(f, extractor.spec), rate)["functionals"] for f in table["file"]])
    model = build_model("svm", C_grid=[1, 10]).fit(X, table["label"], groups=table["speaker"])
    return save_model(model, dest, audio_spec=extractor.spec, features=extractor.identity(),
                      fingerprint=extractor.fingerprint())


def wav_uploads(files: list[Path], count: int) -> list[bytes]:
    """`count` uploads: the corpus files re-encoded as 16 kHz 16-bit WAV, cycled."""
    import soundfile as sf

    from serkit.audio import AudioSpec, load

    spec = AudioSpec(sampling_rate=16000, duration=None)
    encoded = []
    for path in files:
        buffer = io.BytesIO()
        sf.write(buffer, load(path, spec), spec.sampling_rate, format="WAV", subtype="PCM_16")
        encoded.append(buffer.getvalue())
    return [encoded[i % len(encoded)] for i in range(count)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, max_concurrency: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "serkit", "serve", str(model), "--host", HOST, "--port", str(port),
               "--max-concurrency", str(max_concurrency)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serkit serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError("serkit serve did not come up in time")


async def load_level(base: str, uploads: list[bytes], concurrency: int, budget: float) -> dict:
    """Send every upload with at most `concurrency` in flight; latencies in seconds."""
    import httpx

    latencies: list[float] = []
    errors = skipped = 0
    gate = asyncio.Semaphore(concurrency)
    deadline = time.perf_counter() + budget

    async def one(client: httpx.AsyncClient, i: int, data: bytes) -> None:
        nonlocal errors, skipped
        async with gate:
            if time.perf_counter() > deadline:
                skipped += 1
                return
            started = time.perf_counter()
            try:
                response = await client.post("/predict", files={"file": (f"clip{i}.wav", data, "audio/wav")})
                ok = response.status_code == 200 and response.json().get("label") is not None
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(client, i, data) for i, data in enumerate(uploads)))
        wall = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "skipped": skipped, "wall": wall}


def direct_baseline(model: Path, uploads: list[bytes]) -> float:
    """Mean seconds per `Predictor.predict_file` call on the same bytes, one at a time."""
    from serkit.inference import Predictor

    predictor = Predictor.load(model)
    for data in uploads[:4]:  # warm-up
        predictor.predict_file(data)
    started = time.perf_counter()
    for data in uploads:
        predictor.predict_file(data)
    return (time.perf_counter() - started) / len(uploads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--model", type=Path, default=None, help="a model folder (default: train a small one)")
    parser.add_argument("--max-concurrency", type=int, default=2, help="the server's batches in flight")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds allowed per level")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 10_000 or any(not 1 <= c <= 256 for c in args.levels):
        parser.error("--requests must be 1..10000 and each level 1..256")

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        table = make_corpus(Path(tmp) / "corpus")
        model = args.model
        if model is None:
            print("training a small eGeMAPS SVM on a synthetic corpus ...", flush=True)
            model = train_model(table, Path(tmp) / "model")
        uploads = wav_uploads(list(table["file"]), args.requests)
        direct = direct_baseline(model, uploads)

        port = free_port()
        base = f"http://{HOST}:{port}"
        proc = start_server(model, port, args.max_concurrency)
        try:
            wait_healthy(base, proc)
            asyncio.run(load_level(base, uploads[:8], 1, 30))  # warm-up
            results = {c: asyncio.run(load_level(base, uploads, c, args.budget)) for c in args.levels}
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    mean_kib = np.mean([len(u) for u in uploads]) / 1024
    print(f"\nserkit serve on {HOST}, {args.requests} multipart WAV uploads per level (mean {mean_kib:.0f} KiB), "
          f"server max_concurrency={args.max_concurrency}, {os.cpu_count()} CPU(s)")
    print(f"direct Predictor.predict_file on the same bytes: {1000 * direct:.1f} ms per file "
          f"({1 / direct:.1f} files/s)\n")
    header = f"{'concurrency':>11}  {'req/s':>7}  {'p50 ms':>7}  {'p99 ms':>7}  {'errors':>6}  {'skipped':>7}  " \
             f"{'ms/req':>7}  {'over direct':>11}  {'ratio':>5}"
    print(header)
    print("-" * len(header))
    for concurrency, r in results.items():
        lat = np.array(r["latencies"]) * 1000
        done = len(lat)
        throughput = done / r["wall"] if r["wall"] else 0.0
        # Per-request cost: latency at concurrency 1, wall time / requests when overlapping.
        per_request = float(np.mean(lat)) if concurrency == 1 else 1000 * r["wall"] / max(done, 1)
        p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if done else (float("nan"),) * 2
        print(f"{concurrency:>11}  {throughput:>7.1f}  {p50:>7.1f}  {p99:>7.1f}  {r['errors']:>6}  {r['skipped']:>7}  "
              f"{per_request:>7.1f}  {per_request - 1000 * direct:>+11.1f}  {per_request / (1000 * direct):>5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

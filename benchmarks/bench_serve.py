"""Benchmark: the HTTP service (`serkit serve`) against calling the Predictor directly.

Models are trained on serkit's synthetic corpus (or ``--model DIR`` is used): an SVM on
Whisper tiny.en pooled features (``whisper``: ``{kind="whisper", model="whisper-tiny.en",
mode="native", window="30s"}``, real weights from the ``whisper`` extra; ``whisper_clip``: the
demo's setting, 7 s clips with ``window="clip"``) and an eGeMAPS SVM (``egemaps``). Per model, the
service is started as ``serkit serve`` in a child process on 127.0.0.1 with an ephemeral port,
and N uploads (multipart WAV, about 2 to 4 s each) are sent at concurrency 1, 8 and 32 with
httpx. Reported per level: throughput, p50 / p99 latency, errors, throughput over concurrency
1's, and p99 over the direct call's p99, all from the same run.

The direct baseline does the same work the service does for one request, in a process like the
server's: a fresh child process loads the Predictor, warms it, and times
``Predictor.predict_file(bytes)`` on the same uploads one after another (decode, quality check,
features, classifier), so the service's cost is HTTP, queueing and batching alone. (It used to
run in the benchmark's own process, after training, whose torch threads and memory were not
the server's: there a direct call could be slower than the service.)

Everything is bounded: N requests per level, a time budget per level (requests not started in
time are skipped and reported), and the server is stopped at the end.

``--slow-clients 80 200`` measures instead what a normal client gets while that many slow
clients trickle: each slow client (its own loopback address, 127.0.1.x) starts a multipart
upload and then sends one byte a second; meanwhile one normal client uploads clips one after
another for ``--window`` seconds. Reported per level: the uploads the server holds, requests
served (200), 503s, other errors and the normal client's latency; level 0 is the baseline.

Run: nice .venv/bin/python benchmarks/bench_serve.py [--features whisper_clip whisper egemaps] [--requests 64]
         [--levels 1 8 32] [--model DIR]
     nice .venv/bin/python benchmarks/bench_serve.py --features egemaps --slow-clients 80 200 [--window 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
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

    from serkit.data import synth

    table = pd.read_csv(synth.write_corpus(root, speakers=4, per_emotion=4, voice="source-filter"))
    table["file"] = [root / p for p in table["path"]]
    return table


#: The benchmarked feature sets: (extractor settings, the output the SVM reads).
FEATURES = {
    "whisper": ({"kind": "whisper", "model": "whisper-tiny.en", "mode": "native", "window": "30s"}, "pooled"),
    # the demo's Whisper SVM (recipes/demo.toml): 7 s clips, the encoder sees the clip, not 30 s
    "whisper_clip": ({"kind": "whisper", "model": "whisper-tiny.en", "mode": "paper", "window": "clip"}, "pooled"),
    "egemaps": ({"kind": "opensmile"}, "functionals"),
}


def train_model(table, dest: Path, features: str) -> Path:
    """An SVM on `features` (a `FEATURES` key) of the corpus; returns the model folder."""
    from serkit.data import audio
    from serkit.features import build_extractor
    from serkit.models import build_model
    from serkit.models.io import save_model

    settings, output = FEATURES[features]
    extractor = build_extractor(settings)
    rate = extractor.spec.sampling_rate
    clips = [audio.load(f, extractor.spec) for f in table["file"]]
    X = np.stack([f[output] for f in extractor.extract_batch(clips, rate)]).astype(np.float32)
    model = build_model("svm", C_grid=[1, 10], input_kind=output).fit(X, table["label"], groups=table["speaker"])
    return save_model(model, dest, audio_spec=extractor.spec, features=extractor.identity(),
                      fingerprint=extractor.fingerprint())


def wav_uploads(files: list[Path], count: int) -> list[bytes]:
    """`count` uploads: the corpus files re-encoded as 16 kHz 16-bit WAV, cycled."""
    import soundfile as sf

    from serkit.data.audio import AudioSpec, load

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


def start_server(model: Path, port: int, max_concurrency: int, feature_workers: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "serkit", "serve", str(model), "--host", HOST, "--port", str(port),
               "--max-concurrency", str(max_concurrency)]
    if feature_workers is not None:
        command += ["--feature-workers", str(feature_workers)]
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


_SLOW_HEAD = (
    b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: multipart/form-data; boundary=slow\r\n"
    b"Content-Length: 1000000\r\n\r\n"
    b'--slow\r\nContent-Disposition: form-data; name="file"; filename="slow.wav"\r\n\r\nRIFF'
)


async def trickle(port: int, index: int, stop: asyncio.Event) -> None:
    """One slow client: an upload's head and first bytes, then one byte a second until `stop`."""
    source = f"127.0.1.{index % 250 + 2}"  # its own address: the per-client cap is not what is measured
    try:
        reader, writer = await asyncio.open_connection(HOST, port, local_addr=(source, 0))
    except OSError:
        return
    try:
        writer.write(_SLOW_HEAD)
        while not stop.is_set():
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            writer.write(b"\0")
    except OSError:
        pass  # the server closed it (408 at its read timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def slow_level(base: str, port: int, uploads: list[bytes], slow: int, window: float) -> dict:
    """A normal client's sequential uploads for `window` seconds while `slow` clients trickle."""
    import httpx

    stop = asyncio.Event()
    tricklers = [asyncio.create_task(trickle(port, i, stop)) for i in range(slow)]
    statuses: list[int] = []
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        deadline = time.perf_counter() + 10
        while (held := (await client.get("/health")).json().get("uploads_in_progress", 0)) < slow:
            if time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.05)
        end = time.perf_counter() + window
        i = 0
        while time.perf_counter() < end:
            started = time.perf_counter()
            try:
                response = await client.post("/predict", files={"file": (f"n{i}.wav", uploads[i % len(uploads)], "audio/wav")})
                statuses.append(response.status_code)
            except httpx.HTTPError:
                statuses.append(0)
            if statuses[-1] == 503:
                await asyncio.sleep(0.05)  # what a client honouring Retry-After would at least do
            else:
                latencies.append(time.perf_counter() - started)
            i += 1
    stop.set()
    await asyncio.gather(*tricklers)
    return {"held": held, "statuses": statuses, "latencies": latencies, "window": window}


def print_slow_table(results: dict[int, dict], window: float) -> None:
    print(f"\nnormal client, sequential multipart uploads for {window:g} s while N slow clients trickle "
          f"(1 byte/s each), {os.cpu_count()} CPU(s)\n")
    header = f"{'slow clients':>12}  {'held':>5}  {'served':>6}  {'req/s':>6}  {'503':>5}  {'other':>5}  {'p50 ms':>7}  {'p99 ms':>7}"
    print(header)
    print("-" * len(header))
    for slow, r in results.items():
        statuses = np.array(r["statuses"])
        lat = np.array(r["latencies"]) * 1000
        served = int((statuses == 200).sum())
        busy = int((statuses == 503).sum())
        p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if len(lat) else (float("nan"),) * 2
        print(f"{slow:>12}  {r['held']:>5}  {served:>6}  {served / r['window']:>6.1f}  {busy:>5}  "
              f"{len(statuses) - served - busy:>5}  {p50:>7.1f}  {p99:>7.1f}")


def direct_child(model: Path, folder: Path) -> None:
    """In a fresh process: seconds per `Predictor.predict_file` call on each upload in `folder`, as JSON."""
    from serkit.inference.predictor import Predictor

    uploads = [path.read_bytes() for path in sorted(folder.glob("*.wav"))]
    predictor = Predictor.load(model)
    for data in uploads[:4]:  # warm-up, as the server's
        predictor.predict_file(data)
    latencies = []
    started = time.perf_counter()
    for data in uploads:
        begun = time.perf_counter()
        predictor.predict_file(data)
        latencies.append(time.perf_counter() - begun)
    print(json.dumps({"latencies": latencies, "wall": time.perf_counter() - started}))


def direct_baseline(model: Path, uploads: list[bytes], tmp: Path) -> dict:
    """`direct_child` run in a child process like the server's, on the same bytes."""
    folder = tmp / "uploads"
    folder.mkdir(exist_ok=True)
    for i, data in enumerate(uploads):
        (folder / f"{i:05d}.wav").write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, __file__, "--direct-child", str(model), str(folder)], env=env,
                         capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def serve_levels(model: Path, uploads: list[bytes], levels: list[int], max_concurrency: int, budget: float,
                 feature_workers: int | None = None) -> dict:
    """Start ``serkit serve`` on `model`, warm it, send every level's uploads; stop it."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    proc = start_server(model, port, max_concurrency, feature_workers)
    try:
        wait_healthy(base, proc)
        asyncio.run(load_level(base, uploads[:8], 1, 60))  # warm-up
        asyncio.run(load_level(base, uploads[:16], 8, 60))  # and the worker processes, if any
        return {c: asyncio.run(load_level(base, uploads, c, budget)) for c in levels}
    finally:
        stop_server(proc)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stats(latencies: list[float], wall: float) -> tuple[float, float, float]:
    """(req/s, p50 ms, p99 ms)."""
    lat = np.array(latencies) * 1000
    if not len(lat):
        return 0.0, float("nan"), float("nan")
    return len(lat) / wall, float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def print_table(name: str, direct: dict, results: dict[int, dict], uploads: list[bytes], max_concurrency: int,
                feature_workers: int | None) -> None:
    mean_kib = np.mean([len(u) for u in uploads]) / 1024
    workers = "one per core" if feature_workers is None else feature_workers
    print(f"\n{name}: serkit serve on {HOST}, {len(uploads)} multipart WAV uploads per level (mean {mean_kib:.0f} KiB), "
          f"server max_concurrency={max_concurrency}, feature workers {workers}, {os.cpu_count()} CPU(s), load average now: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    d_rate, d_p50, d_p99 = _stats(direct["latencies"], direct["wall"])
    header = f"{'':>11}  {'req/s':>7}  {'p50 ms':>7}  {'p99 ms':>7}  {'errors':>6}  {'skipped':>7}  " \
             f"{'req/s / c1':>10}  {'p99 / direct':>12}"
    print(header)
    print("-" * len(header))
    print(f"{'direct':>11}  {d_rate:>7.2f}  {d_p50:>7.1f}  {d_p99:>7.1f}  {0:>6}  {0:>7}  {'':>10}  {1:>12.2f}")
    first = None
    for concurrency, r in results.items():
        rate, p50, p99 = _stats(r["latencies"], r["wall"])
        first = first if first is not None else rate
        print(f"{'c=' + str(concurrency):>11}  {rate:>7.2f}  {p50:>7.1f}  {p99:>7.1f}  {r['errors']:>6}  {r['skipped']:>7}  "
              f"{rate / first if first else float('nan'):>10.2f}  {p99 / d_p99:>12.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", nargs="+", choices=sorted(FEATURES), default=["whisper", "egemaps"],
                        help="models to benchmark (an SVM on each)")
    parser.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--model", type=Path, default=None, help="a model folder (default: train one per --features)")
    parser.add_argument("--max-concurrency", type=int, default=2, help="the server's batches in flight")
    parser.add_argument("--feature-workers", type=int, default=None,
                        help="the server's feature processes (default: its own, one per core; 0: none)")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds allowed per level")
    parser.add_argument("--slow-clients", type=int, nargs="+", default=None, metavar="N",
                        help="measure a normal client beside N trickling clients instead (a 0 baseline is added)")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per --slow-clients level")
    parser.add_argument("--direct-child", nargs=2, type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.direct_child is not None:
        direct_child(*args.direct_child)
        return 0
    if not 1 <= args.requests <= 10_000 or any(not 1 <= c <= 256 for c in args.levels):
        parser.error("--requests must be 1..10000 and each level 1..256")
    if args.slow_clients is not None and (any(not 0 <= n <= 1000 for n in args.slow_clients) or not 1 <= args.window <= 120):
        parser.error("--slow-clients must be 0..1000 and --window 1..120 s")

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        table = make_corpus(Path(tmp) / "corpus")
        uploads = wav_uploads(list(table["file"]), args.requests)
        models = {"model": args.model} if args.model is not None else {}
        for features in ([] if args.model is not None else args.features):
            print(f"training an SVM on {features} features of a synthetic corpus ...", flush=True)
            models[features] = train_model(table, Path(tmp) / features, features)
        if args.slow_clients is not None:
            model = next(iter(models.values()))
            port = free_port()
            base = f"http://{HOST}:{port}"
            proc = start_server(model, port, args.max_concurrency)
            try:
                wait_healthy(base, proc)
                asyncio.run(load_level(base, uploads[:8], 1, 30))  # warm-up
                levels = [0, *sorted(set(args.slow_clients) - {0})]
                slow_results = {n: asyncio.run(slow_level(base, port, uploads, n, args.window)) for n in levels}
            finally:
                stop_server(proc)
            print_slow_table(slow_results, args.window)
            return 0
        for name, model in models.items():
            print(f"{name}: direct baseline ...", flush=True)
            direct = direct_baseline(model, uploads, Path(tmp))
            print(f"{name}: service ...", flush=True)
            results = serve_levels(model, uploads, args.levels, args.max_concurrency, args.budget, args.feature_workers)
            print_table(name, direct, results, uploads, args.max_concurrency, args.feature_workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: seconds per training epoch of the paper's CNN on 300 x 300 maps, by precision.

The paper's 7-layer CNN (`serkit.models.cnn`, batch 4, Adam 1e-3) is trained through serkit's
own estimator (Lightning underneath) on random 1 x 300 x 300 maps with 5 balanced classes, in
float32 (``"32-true"``), bfloat16 autocast (``"bf16-mixed"``) and ``"auto"`` (what
`serkit.precision` picks on this processor, printed with its reason). An epoch's time is the
difference between a 3-epoch and a 1-epoch fit, halved, so set-up is not counted. bfloat16 is
timed only where the processor has native bfloat16 instructions (AVX-512 BF16 or AMX), or with
``--force-bf16``: emulated, it is many times slower.

After one untimed warm-up fit, the fits are run interleaved ``--repeats`` times and each fit's
fastest time is kept; when noise still exceeds an epoch (a 3-epoch fit no slower than a 1-epoch
fit) the script says so instead of printing a table.

Run: .venv/bin/python benchmarks/bench_train.py [--maps 64] [--threads 2] [--repeats 2] [--force-bf16]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def fit_seconds(X: np.ndarray, y: np.ndarray, precision: str, epochs: int, threads: int) -> float:
    """Wall seconds of one `fit` of the paper's CNN for `epochs` epochs (no validation, no early stop)."""
    from serkit.models import build_model

    model = build_model(
        "cnn", input_mode="resize", input_size=300, batch_size=4, max_epochs=epochs, patience=100,
        val_fraction=0.0, precision=precision, progress=False, num_threads=threads, seed=0,
    )
    start = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=64, help="training maps (an epoch is maps / 4 steps)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved passes; the fastest counts")
    parser.add_argument("--force-bf16", action="store_true", help="time bf16-mixed without native bfloat16 (slow)")
    args = parser.parse_args()
    os.environ.pop("SERKIT_PRECISION", None)

    import torch

    from serkit.models.training import resolve_precision
    from serkit.precision import cpu_info, torch_cpu_autocast

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.maps, 1, 300, 300)).astype(np.float32)
    y = np.array([f"c{i % 5}" for i in range(args.maps)])
    choice = torch_cpu_autocast()
    precisions = ["32-true"]
    if cpu_info().native("bfloat16") or args.force_bf16:
        precisions.append("bf16-mixed")
    precisions.append("auto")
    fit_seconds(X, y, "32-true", 1, args.threads)  # warm-up: imports, first-call allocations
    best: dict[tuple[str, int], float] = {}
    for _ in range(args.repeats):  # interleaved, fastest kept: load from other processes hits every row alike
        for precision in precisions:
            for epochs in (1, 3):
                seconds = fit_seconds(X, y, precision, epochs, args.threads)
                best[precision, epochs] = min(best.get((precision, epochs), float("inf")), seconds)
    rows = [(p, resolve_precision(p, "cpu"), (best[p, 3] - best[p, 1]) / 2) for p in precisions]
    if any(seconds <= 0 for _, _, seconds in rows):
        print("\nnoise exceeded the epoch time (a 3-epoch fit was not slower than a 1-epoch fit): "
              "use more --maps or --repeats on a quieter machine")
        return
    base = rows[0][2]
    print(f"\n### Paper CNN training, {args.maps} maps of 300 x 300, batch 4, {args.threads} threads\n")
    print(f"CPU: {cpu_info().model}; torch capability {torch.backends.cpu.get_cpu_capability()}; "
          f"auto: {choice.describe()}\n")
    print("| precision | runs as | s / epoch | x float32 |")
    print("|---|---|---:|---:|")
    for precision, runs, seconds in rows:
        print(f"| {precision} | {runs} | {seconds:.2f} | {base / seconds:.2f} |")


if __name__ == "__main__":
    main()

"""Benchmark: cold-process seconds of `serkit predict MODEL clip.wav`, one row per model kind.

Two small models are trained on serkit's synthetic corpus with the Python API (no recipe, no
cache): the paper's CNN on MFCC frame maps (3 s clips, depth 5, 64 x 64 resize, 2 epochs) and
an SVM on eGeMAPS functionals. Each row starts a fresh Python process ``--repeat`` times and
reports the median and the fastest wall time; ``python -c "import serkit"`` is the floor. One
extra run per row under ``python -X importtime`` counts the Lightning modules the process
imported (prediction must import none) and the cumulative import seconds of torch, librosa /
numba and opensmile where they were imported at all.

The numbers depend on how busy the machine is: compare rows of the same run.

Run: .venv/bin/python benchmarks/bench_cold_start.py [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: The console script next to this interpreter (the venv's ``serkit``).
SERKIT = Path(sys.executable).with_name("serkit")
#: Top-level packages whose cumulative import time is reported.
WATCHED = ("torch", "lightning", "librosa", "numba", "opensmile", "sklearn")


def make_corpus(root: Path):
    """A small synthetic corpus (4 speakers x 4 emotions x 3 clips); returns its listing."""
    import pandas as pd

    from serkit import synth

    table = pd.read_csv(synth.write_corpus(root, speakers=4, per_emotion=3, voice="source-filter"))
    table["file"] = [root / p for p in table["path"]]
    return table


def train(table, kind: str, dest: Path) -> Path:
    """Train the `kind` model ("cnn" or "svm") on its features; returns the model folder."""
    from serkit import audio
    from serkit.features import build_extractor
    from serkit.models import build_model
    from serkit.models.io import save_model

    if kind == "cnn":
        extractor = build_extractor({"kind": "mfcc", "outputs": ["frames"]}, audio.AudioSpec(duration=3.0))
        output, params = "frames", {"depth": 5, "input_mode": "resize", "input_size": 64, "max_epochs": 2,
                                    "batch_size": 8, "accelerator": "cpu"}
    else:
        extractor = build_extractor({"kind": "opensmile"})
        output, params = "functionals", {"C_grid": [1.0, 10.0], "inner_folds": 2}
    extractor.setup(None)
    rate = extractor.spec.sampling_rate
    X = np.stack([extractor.extract(audio.load(f, extractor.spec), rate)[output] for f in table["file"]])
    model = build_model(kind, **params).fit(X, table["label"].to_numpy(), table["speaker"].to_numpy())
    return save_model(model, dest, audio_spec=extractor.spec, features=extractor.identity(),
                      fingerprint=extractor.fingerprint())


def timed(command: list[str]) -> float:
    """Wall seconds of one run of `command`; raises if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds


def imports(command: list[str]) -> tuple[int, dict[str, float]]:
    """Lightning modules imported by `command` and the cumulative import seconds of `WATCHED`."""
    done = subprocess.run([sys.executable, "-X", "importtime", *command], capture_output=True, text=True, check=False)
    lightning = 0
    top: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if not match:
            continue
        cumulative, name = int(match.group(1)), match.group(3)
        lightning += name.split(".")[0] == "lightning"
        if name in WATCHED:
            top[name] = max(top.get(name, 0.0), cumulative / 1e6)
    return lightning, top


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="cold runs per row (default 3)")
    parser.add_argument("--keep", type=Path, help="build the models here and keep them (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="serkit-cold-") as tmp:
        root = args.keep or Path(tmp)
        print("training the models ...", file=sys.stderr)
        table = make_corpus(root / "corpus")
        clip = str(table["file"].iloc[0])
        rows = [("python -c 'import serkit'", [sys.executable, "-c", "import serkit"], ["-c", "import serkit"])]
        for kind in ("cnn", "svm"):
            folder = train(table, kind, root / kind)
            rows.append((f"serkit predict ({kind})", [str(SERKIT), "predict", str(folder), clip],
                         [str(SERKIT), "predict", str(folder), clip]))
        print(f"\ncold process, {args.repeat} runs each; clip {Path(clip).name}\n")
        print(f"| {'command':<28} | median s | fastest s | lightning modules | import s (cumulative) |")
        print(f"|{'-' * 30}|---------:|----------:|------------------:|-----------------------|")
        for label, command, traced in rows:
            times = [timed(command) for _ in range(args.repeat)]
            lightning, top = imports(traced)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in sorted(top.items(), key=lambda kv: -kv[1])) or "-"
            print(f"| {label:<28} | {statistics.median(times):8.2f} | {min(times):9.2f} | {lightning:17d} | {shown} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

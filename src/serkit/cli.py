"""Command-line interface: argument parsing only; the work happens in the library modules."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from serkit import __version__

log = logging.getLogger("serkit")


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def _parse_option(text: str) -> tuple[str, object]:
    """``key=value`` -> (key, value); the value is read as `serkit.experiment.config.parse_value` reads ``--set``
    values (TOML syntax: numbers, booleans, lists, quoted strings; a bare word is a string)."""
    from serkit.experiment.config import parse_value

    if "=" not in text:
        raise CommandError(f"option {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    return key.strip().replace("-", "_"), parse_value(raw.strip())


def _report_skipped(skipped: list[dict[str, str]], dest: Path | None) -> int:
    if not skipped:
        return 0
    print(f"\n{len(skipped)} file(s) were left out, each with its reason:", file=sys.stderr)
    for item in skipped[:20]:
        print(f"  {item['path']}: {item['reason']}", file=sys.stderr)
    if len(skipped) > 20:
        print(f"  ... and {len(skipped) - 20} more", file=sys.stderr)
    if dest is not None:
        import pandas as pd

        errors = dest.with_name(dest.stem + ".errors.csv")
        pd.DataFrame(skipped).to_csv(errors, index=False)
        print(f"  full list: {errors}", file=sys.stderr)
    return 1


def cmd_prepare(args: argparse.Namespace) -> int:
    from serkit.data.datasets import prepare
    from serkit.data.schema import write_manifest

    options = dict(_parse_option(o) for o in args.option)
    manifest = prepare(args.corpus, args.root, **options)
    out = write_manifest(manifest, args.output)
    print(f"wrote {out}: {len(manifest)} utterances, {manifest['speaker'].nunique()} speakers, "
          f"{manifest['duration'].sum() / 3600:.2f} h")
    return _report_skipped(manifest.attrs.get("skipped", []), out)


def format_summary(summary: dict, top_speakers: int | None = None) -> str:
    """The `serkit info` text: totals, then count / share / hours per label, gender, speaker."""
    lines = [
        f"utterances: {summary['utterances']}   speakers: {summary['speakers']}   "
        f"hours: {summary['hours']:.2f}   corpora: {', '.join(summary['corpora'])}",
    ]
    total = max(summary["utterances"], 1)
    for column in ("label", "gender", "speaker"):
        rows = summary[column]
        items = list(rows.items())
        if column == "speaker" and top_speakers is not None:
            items = items[:top_speakers]
        width = max([len(column)] + [len(k) for k, _ in items])
        lines += ["", f"{column:<{width}}  {'count':>6}  {'share':>6}  {'hours':>6}"]
        for key, row in items:
            lines.append(f"{key:<{width}}  {row['count']:>6}  {row['count'] / total:>6.1%}  {row['hours']:>6.3f}")
        if len(items) < len(rows):
            lines.append(f"... {len(rows) - len(items)} more speakers")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    from serkit.data.schema import read_manifest, summarize

    manifest = read_manifest(args.manifest, check_files=not args.no_check_files)
    summary = summarize(manifest)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"manifest: {args.manifest}")
        print(format_summary(summary))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from serkit.data.synth import write_corpus

    metadata = write_corpus(
        args.dest, speakers=args.speakers, per_emotion=args.per_emotion, seed=args.seed, voice=args.voice,
        speaker_prefix=args.speaker_prefix,
    )
    print(f"wrote a SYNTHETIC corpus to {args.dest} (listing: {metadata})")
    print(f"next: serkit prepare csv {metadata} -o manifest.csv")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from serkit.data.schema import read_manifest

    from serkit.features.extract import distributed_env

    manifest = read_manifest(args.manifest)
    extractors = _extractors_for(args)
    rank, world, local_rank = distributed_env()
    dist = _init_distributed(world, local_rank)
    status, documents = 0, []
    for extractor in extractors:
        if len(extractors) > 1 and not args.json and rank == 0:
            print(f"== {extractor.name}: {extractor.fingerprint()}", flush=True)
        code, document = _extract_one(args, manifest, extractor, rank, world, dist)
        status, documents = max(status, code), documents + [document]
    if args.json and rank == 0:
        print(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))
    return status


def _extractors_for(args: argparse.Namespace) -> list:
    """The extractors `serkit extract` fills the cache for: a recipe's (as `serkit run` builds them) or one."""
    from serkit.experiment.runner import is_recipe, recipe_cache, recipe_extractors
    from serkit.features import build_extractor
    from serkit.features.extract import load_feature_config

    if is_recipe(args.features):
        if getattr(args, "cache", None) is None:  # the cache the recipe's runs read
            args.cache = recipe_cache(args.features, args.set)
        return recipe_extractors(args.features, args.set, args.variant)
    if args.variant:
        raise CommandError(f"--variant needs a recipe; {args.features} is not one")
    return [build_extractor(load_feature_config(args.features, [_parse_option(o) for o in args.set]))]


def _extract_one(args: argparse.Namespace, manifest, extractor, rank: int, world: int, dist) -> tuple[int, dict]:
    """Fill the cache of one extractor; the exit status and (rank 0) what was done, for --json."""
    from serkit.features.extract import extract_manifest, finish_run

    result = extract_manifest(
        manifest, extractor, args.cache, batch_size=args.batch_size, rank=rank, world_size=world,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    if dist is not None:
        dist.barrier()
    if rank != 0:
        return 0, {}
    failed = finish_run(result.cache_dir, extractor)
    document = {**result.to_dict(), "failed_in_cache": len(failed)}
    if not args.json:
        rate = result.computed / result.seconds if result.seconds else 0.0
        print(f"features: {result.cache_dir}")
        scope = f" on rank 0 of {world}" if world > 1 else ""
        print(f"  {result.total} utterances{scope}, {result.already_cached} already cached, "
              f"{result.computed} computed in {result.seconds:.1f} s ({rate:.2f} files/s)")
        if result.by_others:
            print(f"  {result.by_others} done by other processes sharing the cache meanwhile")
    if failed:
        print(f"{len(failed)} utterance(s) failed; see {result.cache_dir / 'errors.csv'}", file=sys.stderr)
        for item in failed[:10]:
            print(f"  {item['utt_id']} ({item['path']}): {item['reason']}", file=sys.stderr)
        return 1, document
    return 0, document


def _init_distributed(world: int, local_rank: int):
    """Join torchrun's process group (gloo on CPU, NCCL on GPUs); None for one process."""
    if world <= 1:
        return None
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
    return dist


def cmd_run(args: argparse.Namespace) -> int:
    from serkit.experiment.runner import run_recipe
    from serkit.evaluation.compare import compare_runs, format_comparison

    results = run_recipe(args.recipe, args.set, args.variant, progress=not args.no_progress and sys.stderr.isatty())
    print()
    print(format_comparison(compare_runs([r.run_dir for r in results]), fmt="text"))
    for result in results:
        report = result.run_dir / "report" / "report.md"
        print(f"run: {result.run_dir}" + (f"   report: {report}" if report.exists() else ""))
    incomplete = [r for r in results if r.left_out]
    for result in incomplete:
        print(f"{len(result.left_out)} file(s) were left out of {result.run_dir.name}, e.g. "
              f"{result.left_out[0]['path']}: {result.left_out[0]['reason']}; all in {result.run_dir / 'left_out.csv'}",
              file=sys.stderr)
    return 1 if incomplete else 0


def cmd_report(args: argparse.Namespace) -> int:
    from serkit.evaluation.report import write_report

    for run in args.run:
        print(f"report: {write_report(run)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from serkit.evaluation.compare import compare_runs, format_comparison

    print(format_comparison(compare_runs(args.run), fmt=args.format))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from serkit.data.download import download_corpus

    manifest_path = download_corpus(args.corpus, args.dest)
    print(f"manifest: {manifest_path}")
    return 0


def _audio_inputs(paths: Sequence[Path]) -> tuple[list[Path], list[dict[str, str]]]:
    """Files as given; directories searched recursively for audio files (a missing path stays, to be reported).

    Returns:
        ``(files, left_out)``: what to predict, and the audio-looking files found in
        directories that are not used (unknown extension, Git LFS pointer), as
        ``{"path", "reason"}``.
    """
    from serkit.data.audio import display_name
    from serkit.data.datasets._common import scan_audio

    files: list[Path] = []
    left_out: list[dict[str, str]] = []
    for path in paths:
        if path.is_dir():
            found, skipped = scan_audio(path)
            if not found and not skipped:
                raise CommandError(f"{display_name(path)}: no audio files found in this directory")
            files.extend(found)
            left_out.extend(skipped)
        else:
            files.append(path)
    return files, left_out


def _printable(text: str) -> str:
    """`text` with file-name bytes that are not UTF-8 shown as ``\\xe9``, so it can be printed and saved."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _speaker_for(predictor, args: argparse.Namespace) -> str | None:
    """The speaker whose statistics normalise the inputs (``--speaker`` / ``--enroll``), if any."""
    if not (args.enroll or args.speaker):
        return None
    if predictor.transform is None:
        raise CommandError(f"{args.model}: --speaker/--enroll need a model trained with speaker_norm; this one has none")
    if args.enroll:
        enroll, left_out = _audio_inputs(args.enroll)
        if left_out or not enroll:
            _report_left_out(left_out)
            raise CommandError("--enroll: every enrolment recording must be readable audio")
        predictor.enroll(args.speaker or "enrolled", enroll)  # an unreadable one: AudioError, named
        return args.speaker or "enrolled"
    if args.speaker not in predictor.known_speakers():
        raise CommandError(f"--speaker {args.speaker!r}: the model has no statistics for this speaker; "
                           f"known: {predictor.known_speakers()[:10]} (or give --enroll FILES)")
    return args.speaker


def _results_carry_decoding_warnings() -> None:
    """Do not also print decoding warnings as Python warnings: each result carries them (`warnings`)."""
    import warnings

    from serkit.data.audio import DecodeWarning, HeaderWarning

    for category in (HeaderWarning, DecodeWarning):
        warnings.filterwarnings("ignore", category=category)


def cmd_predict(args: argparse.Namespace) -> int:
    from serkit.inference.predictor import Predictor, format_predictions

    _results_carry_decoding_warnings()

    files, left_out = _audio_inputs(args.inputs)
    if not files:
        _report_left_out(left_out)
        return 1
    if args.max_duration is not None and not args.max_duration > 0:
        raise CommandError("--max-duration must be positive")
    predictor = Predictor.load(args.model, backend=args.backend, window=args.window, hop=args.hop)
    if args.max_duration is not None:  # the reading limit only: the features' own spec is unchanged
        import dataclasses

        spec = predictor.audio_spec
        predictor.audio_spec = dataclasses.replace(
            spec, max_duration=args.max_duration, min_duration=min(spec.min_duration, args.max_duration / 2)
        )
    speaker = _speaker_for(predictor, args)
    progress = len(files) >= 8 and not args.no_progress and sys.stderr.isatty()
    predictions = predictor.predict_files(files, segments=args.segments, progress=progress, speaker=speaker)
    for prediction in predictions:  # names that are not UTF-8 (surrogate escapes) shown as \xe9
        prediction.source = _printable(prediction.source)
    info = {"model": str(args.model), "backend": args.backend}
    text = _printable(format_predictions(predictions, predictor.labels, args.format, segments=args.segments, info=info))
    if args.output is not None:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    failed = [p for p in predictions if p.error]
    if failed:
        print(f"{len(failed)} of {len(predictions)} file(s) could not be predicted:", file=sys.stderr)
        for p in failed[:20]:
            print(f"  {_printable(p.error)}", file=sys.stderr)
    _report_left_out(left_out)
    return 1 if failed or left_out else 0


def _report_left_out(left_out: list[dict[str, str]]) -> None:
    """Print the audio-looking files of the input folders that were not predicted, with reasons."""
    if not left_out:
        return
    print(f"{len(left_out)} audio-looking file(s) in the folders were not predicted:", file=sys.stderr)
    for item in left_out[:20]:
        print(f"  {item['path']}: {item['reason']}", file=sys.stderr)
    if len(left_out) > 20:
        print(f"  ... and {len(left_out) - 20} more", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    from serkit.inference.export import export_onnx

    if not args.onnx:
        raise CommandError("choose an export format: --onnx (the only one so far)")
    for path in export_onnx(args.model, encoder=args.encoder, opset=args.opset):
        print(f"wrote {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    _results_carry_decoding_warnings()
    try:
        from serkit.serving import run
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise CommandError(f"serve needs the serve extra (pip install 'serkit[serve]'): {exc}") from None
    if args.max_upload_mb <= 0 or args.max_concurrency < 1:
        raise CommandError("--max-upload-mb must be positive and --max-concurrency at least 1")
    if min(args.read_timeout, args.header_timeout, args.keep_alive) <= 0 or min(args.max_uploads, args.max_uploads_per_client) < 1:
        raise CommandError("the timeouts must be positive and --max-uploads, --max-uploads-per-client at least 1")
    if args.feature_workers is not None and args.feature_workers < 0:
        raise CommandError("--feature-workers must be 0 or more")
    run(args.model, host=args.host, port=args.port, backend=args.backend,
        max_upload_bytes=int(args.max_upload_mb * 2**20), max_concurrency=args.max_concurrency,
        read_timeout_s=args.read_timeout, max_uploads=args.max_uploads, max_uploads_per_client=args.max_uploads_per_client,
        header_timeout_s=args.header_timeout, keep_alive_s=args.keep_alive, feature_workers=args.feature_workers)
    return 0


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
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("info", help="counts per label, speaker and gender; hours")
    p.add_argument("manifest", type=Path)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-check-files", action="store_true", help="do not check that the audio files exist")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("synth", help="write a labelled synthetic speech-like corpus (no download needed)")
    p.add_argument("dest", type=Path)
    p.add_argument("--speakers", type=int, default=6)
    p.add_argument("--per-emotion", type=int, default=8, help="utterances per speaker and emotion")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--voice", choices=("auto", "espeak", "source-filter"), default="auto",
                   help="espeak-ng speech when installed (auto), or the built-in source-filter voice")
    p.add_argument("--speaker-prefix", default="spk",
                   help="speaker names are this and a number (spk01, ...); another keeps new voices apart by name")
    p.set_defaults(func=cmd_synth)

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
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("run", help="run a recipe: prepare, extract, train per fold, evaluate, report")
    p.add_argument("recipe", type=Path, help="a recipe TOML file (see recipes/)")
    p.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set model.params.depth=5 or --set protocol.name=loso")
    p.add_argument("--variant", action="append", default=[], help="run only this variant (repeatable)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="(re)write a run's Markdown report and plots from its files")
    p.add_argument("run", type=Path, nargs="+")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="one table of WA / UA / macro-F1, spread, protocol and overlap across runs")
    p.add_argument("run", type=Path, nargs="+")
    p.add_argument("--format", choices=("text", "markdown"), default="text")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("download", help="fetch a corpus's official archives and prepare its manifest")
    p.add_argument("corpus", choices=("shemo",))
    p.add_argument("dest", type=Path)
    p.set_defaults(func=cmd_download)

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
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="run the saved model (torch) or its ONNX export (see `serkit export`)")
    p.add_argument("--enroll", type=Path, nargs="+", default=None, metavar="FILE|DIR",
                   help="speaker_norm models: a few recordings of the speaker of the inputs (about 10), whose "
                   "statistics normalise them; without it or --speaker, the training speakers' global statistics")
    p.add_argument("--speaker", default=None, metavar="NAME",
                   help="speaker_norm models: a speaker whose statistics the model stored (a training speaker), "
                   "or the name given to the --enroll recordings")
    p.add_argument("-o", "--output", type=Path, default=None, help="write the predictions here instead of stdout")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a saved model for serving (ONNX)")
    p.add_argument("model", type=Path, metavar="MODEL", help="a model folder (with model.json)")
    p.add_argument("--onnx", action="store_true", help="write onnx/classifier.onnx and onnx/export.json")
    p.add_argument("--encoder", action="store_true", help="also export the SSL encoder of the features")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset of the classifier")
    p.set_defaults(func=cmd_export)

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
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="run the saved model (torch) or its ONNX export (see `serkit export`)")
    p.add_argument("--feature-workers", type=int, default=None, metavar="N",
                   help="processes extracting features for models whose features have no batch API "
                        "(openSMILE, log-mel, MFCC); default one per core, 0 extracts in the server process")
    p.set_defaults(func=cmd_serve)
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
    from serkit.data.schema import ManifestError

    try:
        return int(args.func(args) or 0)
    except (CommandError, AudioError, ManifestError, FileNotFoundError, ValueError, OSError) as exc:
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

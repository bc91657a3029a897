"""Command-line interface: argument parsing only; the work happens in the library modules."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from serkit import __version__

log = logging.getLogger("serkit")


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def _parse_option(text: str) -> tuple[str, object]:
    """``key=value`` -> (key, value), with value read as JSON when it parses (ints, bools)."""
    if "=" not in text:
        raise CommandError(f"option {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    try:
        value: object = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().replace("-", "_"), value


def _report_skipped(skipped: list[dict[str, str]], dest: Path | None) -> int:
    if not skipped:
        return 0
    print(f"\n{len(skipped)} file(s) could not be read and were left out:", file=sys.stderr)
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
    from serkit.datasets import prepare
    from serkit.schema import write_manifest

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
    from serkit.schema import read_manifest, summarize

    manifest = read_manifest(args.manifest, check_files=not args.no_check_files)
    summary = summarize(manifest)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"manifest: {args.manifest}")
        print(format_summary(summary))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from serkit.synth import write_corpus

    metadata = write_corpus(
        args.dest, speakers=args.speakers, per_emotion=args.per_emotion, seed=args.seed, voice=args.voice
    )
    print(f"wrote a SYNTHETIC corpus to {args.dest} (listing: {metadata})")
    print(f"next: serkit prepare csv {metadata} -o manifest.csv")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from serkit.features import build_extractor
    from serkit.features.extract import distributed_env, extract_manifest, finish_run, load_feature_config
    from serkit.schema import read_manifest

    config = load_feature_config(args.features, [_parse_option(o) for o in args.set])
    extractor = build_extractor(config)
    manifest = read_manifest(args.manifest)
    rank, world, local_rank = distributed_env()
    dist = _init_distributed(world, local_rank)
    result = extract_manifest(
        manifest, extractor, args.cache, batch_size=args.batch_size, rank=rank, world_size=world,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    if dist is not None:
        dist.barrier()
    if rank != 0:
        return 0
    failed = finish_run(result.cache_dir, extractor)
    rate = result.computed / result.seconds if result.seconds else 0.0
    print(f"features: {result.cache_dir}")
    scope = f" on rank 0 of {world}" if world > 1 else ""
    print(f"  {result.total} utterances{scope}, {result.already_cached} already cached, "
          f"{result.computed} computed in {result.seconds:.1f} s ({rate:.2f} files/s)")
    if failed:
        print(f"{len(failed)} utterance(s) failed; see {result.cache_dir / 'errors.csv'}", file=sys.stderr)
        for item in failed[:10]:
            print(f"  {item['utt_id']} ({item['path']}): {item['reason']}", file=sys.stderr)
        return 1
    return 0


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
    from serkit.experiment import run_recipe
    from serkit.report import compare_runs, format_comparison

    results = run_recipe(args.recipe, args.set, args.variant, progress=not args.no_progress and sys.stderr.isatty())
    print()
    print(format_comparison(compare_runs([r.run_dir for r in results]), fmt="text"))
    for result in results:
        report = result.run_dir / "report" / "report.md"
        print(f"run: {result.run_dir}" + (f"   report: {report}" if report.exists() else ""))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from serkit.report import write_report

    for run in args.run:
        print(f"report: {write_report(run)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from serkit.report import compare_runs, format_comparison

    print(format_comparison(compare_runs(args.run), fmt=args.format))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from serkit.download import download_corpus

    manifest_path = download_corpus(args.corpus, args.dest)
    print(f"manifest: {manifest_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `serkit` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="serkit", description="Speech emotion recognition toolkit.")
    parser.add_argument("--version", action="version", version=f"serkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from serkit.datasets import ADAPTERS

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
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("extract", help="compute features of a manifest into the cache (resumable)")
    p.add_argument("manifest", type=Path)
    p.add_argument("-f", "--features", required=True,
                   help="feature kind (ssl, logmel, mfcc, opensmile) or a .toml/.json feature configuration")
    p.add_argument("-s", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a feature setting, e.g. --set model=facebook/hubert-large-ll60k; repeatable")
    p.add_argument("--cache", type=Path, default=None, help="cache root (default $SERKIT_CACHE or ~/.cache/serkit/features)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `serkit` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from serkit.audio import AudioError
    from serkit.schema import ManifestError

    try:
        return int(args.func(args) or 0)
    except (CommandError, AudioError, ManifestError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"serkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

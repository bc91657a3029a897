"""The corpus commands: ``serkit prepare``, ``info``, ``synth`` and ``download``.

Each builds or describes a manifest through `serkit.data` (adapters, schema, synthetic corpus,
downloads) and prints what it wrote; `prepare` also lists the files an adapter left out, with
their reasons, and saves the full list beside the manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from serkit.commands import parse_option

__all__ = ["cmd_download", "cmd_info", "cmd_prepare", "cmd_synth", "format_summary"]


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

    options = dict(parse_option(o) for o in args.option)
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


def cmd_download(args: argparse.Namespace) -> int:
    from serkit.data.download import download_corpus

    manifest_path = download_corpus(args.corpus, args.dest)
    print(f"manifest: {manifest_path}")
    return 0

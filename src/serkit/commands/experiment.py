"""The experiment commands: ``serkit run`` (a recipe, end to end), ``report`` and ``compare``.

`run` runs every variant of a recipe through `serkit.experiment.runner` and prints the comparison
table of its runs; `report` rewrites a run's report from its files and `compare` tabulates runs
side by side (`serkit.evaluation.report`, `serkit.evaluation.compare`).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["cmd_compare", "cmd_report", "cmd_run"]


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

"""Side-by-side comparison of finished runs: one row per run, best UA first.

`compare_runs` reads each run directory's ``metrics.json`` and ``config.json``
(`serkit.evaluation.run_facts`) into a table of corpus, protocol, speaker independence and
the largest measured speaker overlap, model, features and WA / UA / macro-F1 with their
intervals; `format_comparison` prints it as Markdown or plain text, with a note when
speaker-dependent runs sit beside speaker-independent ones (they are not comparable).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from serkit.evaluation.report_format import METRICS, fmt_num, fmt_pct, is_number, md_table, text_table
from serkit.evaluation.run_facts import (
    corpus_name,
    features_kind,
    is_speaker_independent_run,
    model_name,
    overlap_counts,
    read_metrics,
    read_optional_csv,
    read_optional_json,
)

__all__ = ["compare_runs", "format_comparison"]


def _run_row(run: Path) -> dict[str, Any]:
    metrics = read_metrics(run)
    config = read_optional_json(run / "config.json", {})
    manifest = None if config.get("corpus") else read_optional_csv(run / "manifest.csv")
    overall = metrics.get("overall") or {}
    folds = metrics.get("folds") or []
    _, n_folds, max_shared = overlap_counts(metrics)
    row: dict[str, Any] = {
        "run": str(config.get("name") or run.name),
        "corpus": corpus_name(config, manifest),
        "protocol": str(config.get("protocol", "?")),
        "speaker_independent": is_speaker_independent_run(metrics),
        "max_speaker_overlap": float(max_shared) if is_number(max_shared) else float("nan"),
        "model": model_name(config),
        "features": features_kind(config),
        "n_folds": n_folds,
        "n_seeds": len({f.get("seed") for f in folds}),
        "ci_resampling": str(overall.get("ci_resampling", "?")),
    }
    for key, _ in METRICS:
        stat = overall.get(key) or {}
        interval = stat.get("ci95") if isinstance(stat.get("ci95"), Sequence) and len(stat.get("ci95")) == 2 else (None, None)
        for suffix, value in (("mean", stat.get("mean")), ("std", stat.get("std")), ("ci_lo", interval[0]), ("ci_hi", interval[1])):
            row[f"{key}_{suffix}"] = float(value) if is_number(value) else float("nan")
    row["path"] = str(run)
    return row


def compare_runs(run_dirs: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Summarise several runs, one row each, best UA first.

    Args:
        run_dirs: Run directories, each with a ``metrics.json``.

    Returns:
        Columns ``run, corpus, protocol, speaker_independent (bool), max_speaker_overlap
        (fraction of test utterances), model, features, n_folds, n_seeds, ci_resampling``,
        then ``{wa,ua,macro_f1}_{mean,std,ci_lo,ci_hi}`` and ``path``; sorted by
        ``ua_mean`` descending (runs without a UA last). Use `format_comparison` to print.

    Raises:
        ValueError: A directory lacks ``metrics.json`` (the message names it).
    """
    rows = [_run_row(Path(d)) for d in run_dirs]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values("ua_mean", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def format_comparison(df: pd.DataFrame, fmt: Literal["markdown", "text"] = "markdown") -> str:
    """Render a `compare_runs` table as Markdown or aligned plain text.

    Args:
        df: The frame from `compare_runs`.
        fmt: ``"markdown"`` (GitHub table) or ``"text"`` (fixed-width, for terminals).

    Returns:
        The table; metrics as ``mean ± std [ci_lo, ci_hi]``.

    Raises:
        ValueError: Unknown ``fmt``.
    """
    if fmt not in ("markdown", "text"):
        raise ValueError(f"fmt must be 'markdown' or 'text', got {fmt!r}")
    header = ["Run", "Corpus", "Protocol", "Speaker-indep.", "Max overlap", "Model", "Features", "Folds", "WA", "UA", "Macro-F1", "CI by"]
    rows = []
    for _, r in df.iterrows():
        metrics = [
            f"{fmt_num(r[f'{k}_mean'])} ± {fmt_num(r[f'{k}_std'])} [{fmt_num(r[f'{k}_ci_lo'])}, {fmt_num(r[f'{k}_ci_hi'])}]"
            for k, _ in METRICS
        ]
        rows.append(
            [
                r["run"],
                r["corpus"],
                r["protocol"],
                "yes" if r["speaker_independent"] else "no",
                fmt_pct(r["max_speaker_overlap"]),
                r["model"],
                r["features"],
                f"{r['n_folds']}×{r['n_seeds']}" if r["n_seeds"] > 1 else str(r["n_folds"]),
                *metrics,
                r["ci_resampling"],
            ]
        )
    align = "lllrrllrrrrl"
    table = md_table(header, rows, align) if fmt == "markdown" else text_table(header, rows, align)
    note = "Sorted by UA (mean over folds); metrics are mean ± std over folds [95 % interval]."
    if not df.empty and not df["speaker_independent"].all():
        note += " Speaker-dependent runs (Speaker-indep. no) are not comparable to speaker-independent ones."
    return f"{table}\n\n{note}\n"

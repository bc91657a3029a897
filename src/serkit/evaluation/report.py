"""The Markdown report of a finished run: ``<run>/report/report.md`` with its plots.

Everything is read from the run directory (``config.json``, ``manifest.csv``, ``folds.csv``,
``predictions.csv``, ``history.json``, ``metrics.json``); nothing is recomputed from audio or
models. The first thing a report says after the protocol is whether test speakers were seen
in training (`serkit.evaluation.run_facts.overlap_summary`), then results with intervals,
per-fold, per-class and per-speaker tables, the figures (`serkit.evaluation.report_plots`),
model and data. Comparing several runs is `serkit.evaluation.compare`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from serkit.atomic import atomic_write
from serkit.evaluation.report_format import METRICS, fmt_ci, fmt_mean_std, fmt_num, fmt_pct, inline_params, md_table
from serkit.evaluation.report_plots import make_plots
from serkit.evaluation.run_facts import (
    corpus_name,
    features_kind,
    is_speaker_independent_run,
    model_name,
    overlap_summary,
    read_metrics,
    read_optional_csv,
    read_optional_json,
)

__all__ = ["write_report"]

log = logging.getLogger(__name__)


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 to a temp file beside ``path``, then move it into place."""
    with atomic_write(path) as handle:
        handle.write(text.encode("utf-8"))


def _header_section(name: str, config: Mapping[str, Any], metrics: Mapping[str, Any], corpus: str) -> list[str]:
    folds = metrics.get("folds") or []
    n_folds = len({f.get("fold") for f in folds})
    n_seeds = len({f.get("seed") for f in folds})
    protocol = config.get("protocol", "?")
    overlap = overlap_summary(metrics)
    marker = "" if is_speaker_independent_run(metrics) else "⚠ "
    return [
        f"# Evaluation report: {name}",
        "",
        f"**Protocol:** `{protocol}` on `{corpus}`, {n_folds} folds × {n_seeds} seed{'s' if n_seeds != 1 else ''}; "
        f"model `{model_name(config)}` on `{features_kind(config)}` features.",
        "",
        *([f"**Normalisation:** {metrics['transform']}.", ""] if metrics.get("transform") else []),
        f"> **{marker}{overlap}**",
        "",
    ]


def _results_section(metrics: Mapping[str, Any]) -> list[str]:
    overall = metrics.get("overall") or {}
    resampling = overall.get("ci_resampling", "?")
    n_evals = len(metrics.get("folds") or [])
    rows = [(label, fmt_mean_std(overall.get(key)), fmt_ci(overall.get(key))) for key, label in METRICS]
    why = {
        "speaker": "test utterances resampled by speaker, so the interval reflects how much results vary between speakers",
        "utterance": "test utterances resampled individually, which ignores that utterances of one speaker are correlated",
    }.get(str(resampling), f"resampled by {resampling}")
    pooled = overall.get("pooled") or {}
    return [
        "## Results",
        "",
        md_table(["Metric", "Mean ± std over folds", "95 % interval"], rows, "lrr"),
        "",
        f"Mean and standard deviation are over the {n_evals} fold × seed evaluations. "
        f"95 % interval: {why} (resampling unit: **{resampling}**). "
        f"Pooled over all {pooled.get('n', 'n/a')} test predictions: WA {fmt_num(pooled.get('wa'))}, "
        f"UA {fmt_num(pooled.get('ua'))}, macro-F1 {fmt_num(pooled.get('macro_f1'))}.",
        "",
        "WA: weighted accuracy (share of utterances right); UA: unweighted accuracy (mean recall over classes); "
        "macro-F1: unweighted mean of per-class F1.",
        "",
    ]


def _split_sizes(folds_csv: pd.DataFrame | None) -> dict[str, dict[str, int]]:
    if folds_csv is None or not {"fold", "split"} <= set(folds_csv.columns):
        return {}
    table = folds_csv.groupby(["fold", "split"]).size()
    sizes: dict[str, dict[str, int]] = {}
    for (fold, split), count in table.items():
        sizes.setdefault(str(fold), {})[str(split)] = int(count)
    return sizes


def _per_fold_section(metrics: Mapping[str, Any], folds_csv: pd.DataFrame | None) -> list[str]:
    sizes = _split_sizes(folds_csv)
    rows = []
    for entry in sorted(metrics.get("folds") or [], key=lambda f: (f.get("fold", 0), f.get("seed", 0))):
        split = sizes.get(str(entry.get("fold")), {})
        overlap = entry.get("speaker_overlap") or {}
        rows.append(
            (
                entry.get("fold", "?"),
                entry.get("seed", "?"),
                split.get("train", "n/a"),
                split.get("val", "n/a"),
                entry.get("n_test", "n/a"),
                overlap.get("n_test_speakers", "n/a"),
                overlap.get("n_shared_speakers", "n/a"),
                fmt_pct(overlap.get("shared_fraction")),
                fmt_num(entry.get("wa")),
                fmt_num(entry.get("ua")),
                fmt_num(entry.get("macro_f1")),
            )
        )
    header = ["Fold", "Seed", "Train", "Val", "Test", "Test speakers", "Shared speakers", "Shared test utts", "WA", "UA", "Macro-F1"]
    return ["## Per fold", "", md_table(header, rows, "rrrrrrrrrrr"), ""]


def _per_class_section(labels: Sequence[str], per_class: Mapping[str, Mapping[str, Any]]) -> list[str]:
    rows = []
    for label in labels:
        stats = per_class.get(label, {})
        rows.append(
            (label, fmt_num(stats.get("precision")), fmt_num(stats.get("recall")), fmt_num(stats.get("f1")), stats.get("support", "n/a"))
        )
    return [
        "## Per class (pooled over all test predictions)",
        "",
        md_table(["Class", "Precision", "Recall", "F1", "Support"], rows, "lrrrr"),
        "",
    ]


def _plots_section(plots: Mapping[str, Path | None], notes: Mapping[str, str]) -> list[str]:
    titles = {
        "confusion": "Confusion matrix (rows normalised to the true class)",
        "per_class": "Per-class precision, recall and F1",
        "learning_curves": "Learning curves",
        "per_speaker": "Per-speaker accuracy",
    }
    lines = ["## Plots", ""]
    for key, title in titles.items():
        lines += [f"### {title}", ""]
        path = plots.get(key)
        lines.append(f"![{title}]({path.name})" if path is not None else f"_{notes.get(key, 'Not available.')}_")
        lines.append("")
    return lines


def _per_speaker_section(per_speaker: Mapping[str, Mapping[str, Any]], genders: Mapping[str, str]) -> list[str]:
    if not per_speaker:
        return []
    items = sorted(per_speaker.items(), key=lambda kv: (-float(kv[1].get("accuracy", 0.0)), kv[0]))
    rows = [(spk, genders.get(spk, "?"), stats.get("n", "n/a"), fmt_num(stats.get("accuracy"))) for spk, stats in items]
    return ["## Per speaker", "", md_table(["Speaker", "Gender", "Test utts", "Accuracy"], rows, "llrr"), ""]


def _config_section(config: Mapping[str, Any]) -> list[str]:
    model = config.get("model") if isinstance(config.get("model"), Mapping) else {}
    features = config.get("features") if isinstance(config.get("features"), Mapping) else {}
    lines = [
        "## Model and features",
        "",
        f"- Model: `{model_name(config)}`; parameters: {inline_params(model.get('params'))}",
        f"- Features: `{features_kind(config)}`; settings: {inline_params(features, skip=('kind',))}",
    ]
    if config.get("labels"):
        lines.append(f"- Labels: {', '.join(f'`{lab}`' for lab in config['labels'])}")
    if config.get("seeds") is not None:
        lines.append(f"- Seeds: {', '.join(str(s) for s in config['seeds'])}")
    return lines + [""]


def _data_section(
    manifest: pd.DataFrame | None,
    predictions: pd.DataFrame | None,
    labels: Sequence[str],
    metrics: Mapping[str, Any],
) -> list[str]:
    lines = ["## Data", ""]
    if manifest is None:
        n_speakers = len(metrics.get("per_speaker") or {})
        lines += [f"- manifest.csv not found; {n_speakers} speakers with test predictions, {len(labels)} labels.", ""]
        return lines
    lines.append(f"- Utterances: {len(manifest)}")
    if "speaker" in manifest.columns:
        speakers = manifest.drop_duplicates("speaker")
        detail = ""
        if "gender" in speakers.columns:
            by_gender = speakers["gender"].value_counts()
            detail = " (" + ", ".join(f"{int(c)} {g}" for g, c in by_gender.items()) + ")"
        lines.append(f"- Speakers: {len(speakers)}{detail}")
    if "duration" in manifest.columns:
        seconds = float(pd.to_numeric(manifest["duration"], errors="coerce").sum())
        lines.append(f"- Audio: {seconds / 3600:.2f} h" if seconds >= 3600 else f"- Audio: {seconds / 60:.1f} min")
    if predictions is not None:
        lines.append(f"- Test predictions: {len(predictions)} (one per test utterance, fold and seed)")
    lines.append(f"- Labels: {len(labels)}")
    lines.append("")
    if "label" in manifest.columns and len(manifest):
        counts = manifest["label"].value_counts()
        order = list(labels) + sorted(set(counts.index) - set(labels))
        rows = [(lab, int(counts.get(lab, 0)), fmt_pct(counts.get(lab, 0) / len(manifest))) for lab in order]
        lines += [md_table(["Label", "Utterances", "Share"], rows, "lrr"), ""]
    return lines


def _genders(manifest: pd.DataFrame | None) -> dict[str, str]:
    if manifest is None or not {"speaker", "gender"} <= set(manifest.columns):
        return {}
    first = manifest.drop_duplicates("speaker")
    return dict(zip(first["speaker"].astype(str), first["gender"].astype(str)))


def write_report(run_dir: str | os.PathLike) -> Path:
    """Write ``<run_dir>/report/report.md`` and its PNG plots from the run's files.

    Re-running overwrites the previous report; every file is written to a temporary name
    and moved into place, so a reader never sees half a file.

    Args:
        run_dir: A finished run directory (must contain ``metrics.json``).

    Returns:
        Path of the written ``report.md``.

    Raises:
        ValueError: ``run_dir`` has no ``metrics.json`` or it is not valid JSON.
    """
    run = Path(run_dir)
    metrics = read_metrics(run)
    config = read_optional_json(run / "config.json", {})
    history = read_optional_json(run / "history.json", {})
    if not isinstance(history, Mapping):  # anything but {"<fold>-<seed>": [...]} is unusable
        log.warning("ignoring %s: expected an object keyed by '<fold>-<seed>'", run / "history.json")
        history = {}
    manifest = read_optional_csv(run / "manifest.csv")
    folds_csv = read_optional_csv(run / "folds.csv")
    predictions = read_optional_csv(run / "predictions.csv")

    pooled = (metrics.get("overall") or {}).get("pooled") or {}
    labels = list(pooled.get("labels") or metrics.get("labels") or config.get("labels") or [])
    genders = _genders(manifest)
    name = str(config.get("name") or run.name)

    out = run / "report"
    out.mkdir(parents=True, exist_ok=True)
    plots, notes = make_plots(out, metrics, history, labels, genders)

    lines = _header_section(name, config, metrics, corpus_name(config, manifest))
    lines += _results_section(metrics)
    lines += _per_fold_section(metrics, folds_csv)
    lines += _per_class_section(labels, pooled.get("per_class") or {})
    lines += _plots_section(plots, notes)
    lines += _per_speaker_section(metrics.get("per_speaker") or {}, genders)
    lines += _config_section(config)
    lines += _data_section(manifest, predictions, labels, metrics)
    lines += ["---", "", "_Generated by `serkit report` from the files of the run directory; nothing was recomputed._", ""]

    report = out / "report.md"
    _atomic_write_text(report, "\n".join(lines))
    log.info("wrote %s (%d plots)", report, sum(p is not None for p in plots.values()))
    return report

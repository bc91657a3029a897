"""Reports on finished runs: a Markdown summary with plots, and side-by-side run comparison.

Everything here is read from a run directory (``config.json``, ``manifest.csv``,
``folds.csv``, ``predictions.csv``, ``history.json``, ``metrics.json``); nothing is
recomputed from audio or models. ``write_report`` writes ``<run>/report/report.md`` and
its PNG plots; ``compare_runs`` and ``format_comparison`` put several runs in one table.

The first thing a report says after the protocol is whether test speakers were seen in
training, because speaker-dependent numbers are not comparable to speaker-independent ones.

matplotlib is imported only inside the plotting functions, so importing this module is
cheap; figures are drawn on explicit Agg canvases (never through pyplot), which keeps the
caller's own matplotlib backend untouched and leaves no figure registered anywhere.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from serkit.atomic import atomic_write

if TYPE_CHECKING:  # only for annotations; importing matplotlib eagerly would slow `import serkit`
    from matplotlib.figure import Figure

__all__ = [
    "PLOT_FILES",
    "compare_runs",
    "format_comparison",
    "normalize_confusion",
    "overlap_summary",
    "plot_confusion",
    "plot_learning_curves",
    "plot_per_class",
    "plot_per_speaker",
    "write_report",
]

log = logging.getLogger(__name__)

#: File names of the plots inside ``<run>/report/``.
PLOT_FILES: dict[str, str] = {
    "confusion": "confusion_matrix.png",
    "per_class": "per_class.png",
    "learning_curves": "learning_curves.png",
    "per_speaker": "per_speaker.png",
}
_METRICS = (("wa", "WA"), ("ua", "UA"), ("macro_f1", "Macro-F1"))
_DPI = 110
_MAX_LEGEND_LINES = 10  # more runs than this make an unreadable legend; show the mean instead
_GENDER_COLOURS = {"female": "#c44e52", "male": "#4c72b0", "unknown": "#8c8c8c"}


# --------------------------------------------------------------------------- reading


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise ValueError(f"run directory {run_dir} has no metrics.json (was the run finished?)")
    try:
        return _read_json(path)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def _read_optional_json(path: Path, default: Any) -> Any:
    if not path.is_file():
        return default
    try:
        return _read_json(path)
    except json.JSONDecodeError:
        log.warning("ignoring %s: not valid JSON", path)
        return default


def _read_optional_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    # ids such as speaker "1001" must stay strings to match the keys of metrics.json
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# --------------------------------------------------------------------------- formatting helpers


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


def _num(value: Any, digits: int = 3) -> str:
    return f"{float(value):.{digits}f}" if _is_number(value) else "n/a"


def _pct(fraction: Any) -> str:
    """A fraction as a percentage; tiny non-zero shares are not rounded down to 0 %."""
    if not _is_number(fraction):
        return "n/a"
    if 0 < fraction < 0.01:
        return "<1 %"
    return f"{100 * float(fraction):.0f} %"


def _mean_std(stat: Mapping[str, Any] | None, digits: int = 3) -> str:
    stat = stat or {}
    return f"{_num(stat.get('mean'), digits)} ± {_num(stat.get('std'), digits)}"


def _ci(stat: Mapping[str, Any] | None, digits: int = 3) -> str:
    interval = (stat or {}).get("ci95")
    if not isinstance(interval, Sequence) or len(interval) != 2:
        return "n/a"
    return f"[{_num(interval[0], digits)}, {_num(interval[1], digits)}]"


def _cell(value: Any) -> str:
    # a pipe or newline inside a cell would break the Markdown table
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` has one of ``l``/``r`` per column."""
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _text_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A fixed-width plain-text table for terminals."""
    align = align or "l" * len(header)
    cells = [[str(h) for h in header]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(row, widths, align)).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *(line(r) for r in cells[1:])])


def _inline_params(params: Mapping[str, Any] | None, skip: Iterable[str] = ()) -> str:
    skipped = set(skip)
    items = [(k, v) for k, v in (params or {}).items() if k not in skipped]
    if not items:
        return "defaults"
    parts = []
    for key, value in items:
        text = json.dumps(value, sort_keys=True, default=str)
        parts.append(f"`{key}={text if len(text) <= 60 else text[:57] + '...'}`")
    return ", ".join(parts)


def _corpus_name(config: Mapping[str, Any], manifest: pd.DataFrame | None) -> str:
    corpus = config.get("corpus")
    if isinstance(corpus, str) and corpus:
        return corpus
    if isinstance(corpus, Mapping) and corpus.get("name"):
        return str(corpus["name"])
    if isinstance(corpus, Sequence) and not isinstance(corpus, str) and corpus:
        return "+".join(str(c) for c in corpus)
    if manifest is not None and "corpus" in manifest.columns and len(manifest):
        return "+".join(sorted(manifest["corpus"].unique()))
    return "?"


def _model_name(config: Mapping[str, Any]) -> str:
    model = config.get("model")
    if isinstance(model, Mapping):
        return str(model.get("name", "?"))
    return str(model) if model else "?"


def _features_kind(config: Mapping[str, Any]) -> str:
    features = config.get("features")
    if isinstance(features, Mapping):
        return str(features.get("kind", "?"))
    return str(features) if features else "?"


# --------------------------------------------------------------------------- speaker overlap


def _overlap_counts(metrics: Mapping[str, Any]) -> tuple[int, int, float | None]:
    """(folds sharing speakers, folds, max shared fraction) from metrics.json."""
    overlap = metrics.get("speaker_overlap") or {}
    folds = metrics.get("folds") or []
    shared_folds = overlap.get("folds_with_shared_speakers")
    if shared_folds is None:  # older files: derive from the per-fold entries
        shared_folds = sum(1 for f in folds if (f.get("speaker_overlap") or {}).get("n_shared_speakers", 0) > 0)
    n_folds = overlap.get("n_folds")
    if n_folds is None:
        n_folds = len({f.get("fold") for f in folds})
    max_shared = overlap.get("max_shared_fraction")
    if max_shared is None:
        fractions = [(f.get("speaker_overlap") or {}).get("shared_fraction") for f in folds]
        fractions = [x for x in fractions if _is_number(x)]
        max_shared = max(fractions) if fractions else None
    return int(shared_folds), int(n_folds), max_shared


def _is_speaker_independent(metrics: Mapping[str, Any]) -> bool:
    """Independent only when the run says so *and* no fold actually shares a speaker."""
    shared_folds, _, max_shared = _overlap_counts(metrics)
    measured_clean = shared_folds == 0 and not (_is_number(max_shared) and max_shared > 0)
    return bool(metrics.get("speaker_independent", measured_clean)) and measured_clean


def overlap_summary(metrics: Mapping[str, Any]) -> str:
    """The one-line verdict on speaker overlap between training and test.

    Args:
        metrics: The parsed ``metrics.json``.

    Returns:
        ``"Speaker-independent: no test speaker appears in training (0 of N folds share
        speakers)"`` or ``"Speaker-DEPENDENT: K of N folds share speakers with training (up
        to P % of test utterances); numbers are not comparable to speaker-independent
        results"``. The measured overlap wins over the ``speaker_independent`` flag.
    """
    shared_folds, n_folds, max_shared = _overlap_counts(metrics)
    flag = metrics.get("speaker_independent")
    if _is_speaker_independent(metrics):
        return f"Speaker-independent: no test speaker appears in training (0 of {n_folds} folds share speakers)"
    if shared_folds == 0 and not (_is_number(max_shared) and max_shared > 0):
        # flagged dependent although no overlap was measured: say so rather than guess
        return (
            f"Speaker-DEPENDENT protocol: no overlap was measured (0 of {n_folds} folds share speakers), "
            "but the run is not declared speaker-independent; treat numbers as speaker-dependent"
        )
    line = (
        f"Speaker-DEPENDENT: {shared_folds} of {n_folds} folds share speakers with training "
        f"(up to {_pct(max_shared)} of test utterances); numbers are not comparable to "
        "speaker-independent results"
    )
    if flag is True:
        line += " (the run claims to be speaker-independent, but the folds say otherwise)"
    return line


# --------------------------------------------------------------------------- confusion helper


def normalize_confusion(confusion: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Row-normalise a confusion matrix (rows: true class) so every non-empty row sums to 1.

    Args:
        confusion: Square matrix of counts, rows true labels, columns predictions.

    Returns:
        A new float array; rows without any sample stay all zero instead of dividing by 0.
    """
    matrix = np.asarray(confusion, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {matrix.shape}")
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


# --------------------------------------------------------------------------- atomic writes


def _atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(handle)`` on a temp file beside ``path``, then move it into place."""
    with atomic_write(path) as handle:
        write(handle)


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write_bytes(path, lambda h: h.write(text.encode("utf-8")))


def _save_figure(fig: Figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # render with Agg explicitly, whatever backend the caller uses
    _atomic_write_bytes(path, lambda h: fig.savefig(h, format="png", dpi=_DPI))
    fig.clear()  # release artists now; the figure was never registered with pyplot
    log.debug("wrote %s", path)
    return path


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


# --------------------------------------------------------------------------- plots


def plot_confusion(confusion: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix, each cell annotated with its percentage and count.

    Args:
        confusion: Counts, rows true labels, columns predictions, in ``labels`` order.
        labels: Class names.
        path: Output PNG.
        title: Figure title.

    Returns:
        ``path``.
    """
    counts = np.asarray(confusion, dtype=int)
    shares = normalize_confusion(counts)
    n = len(labels)
    side = max(4.8, 0.95 * n + 2.2)
    fig = _new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    # no fraction/pad arguments: they fight constrained layout and push the y label off the canvas
    fig.colorbar(image, ax=ax, label="share of true class")
    size = 10 if n <= 6 else 8 if n <= 9 else 6
    for i in range(n):
        for j in range(n):
            # dark cells need light text to stay legible
            colour = "white" if shares[i, j] > 0.55 else "black"
            ax.text(j, i, f"{100 * shares[i, j]:.1f} %\n({counts[i, j]})", ha="center", va="center", color=colour, fontsize=size)
    ax.set_xticks(range(n), labels=labels, rotation=35 if n > 5 else 0, ha="right" if n > 5 else "center")
    ax.set_yticks(range(n), labels=labels)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title, fontsize=10)
    return _save_figure(fig, path)


def plot_per_class(per_class: Mapping[str, Mapping[str, float]], labels: Sequence[str], path: Path) -> Path:
    """Grouped precision / recall / F1 bars per class, support in the tick labels.

    Args:
        per_class: ``{label: {"precision", "recall", "f1", "support"}}``.
        labels: Class order.
        path: Output PNG.

    Returns:
        ``path``.
    """
    n = len(labels)
    fig = _new_figure(max(6.0, 1.3 * n + 2.0), 4.4)
    ax = fig.add_subplot()
    x = np.arange(n)
    width = 0.26
    for k, (key, name, colour) in enumerate(
        (("precision", "Precision", "#4c72b0"), ("recall", "Recall", "#dd8452"), ("f1", "F1", "#55a868"))
    ):
        values = [float(per_class.get(lab, {}).get(key, 0.0) or 0.0) for lab in labels]
        bars = ax.bar(x + (k - 1) * width, values, width, label=name, color=colour)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7, padding=1)
    ticks = [f"{lab}\n(n={int(per_class.get(lab, {}).get('support', 0) or 0)})" for lab in labels]
    ax.set_xticks(x, labels=ticks)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score")
    ax.set_title("Per-class precision, recall and F1 (pooled test predictions)", fontsize=10)
    ax.legend(loc="upper center", ncols=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.16))
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return _save_figure(fig, path)


def _history_key_order(key: str) -> tuple[int, int, str]:
    match = re.fullmatch(r"(-?\d+)-(-?\d+)", key)
    return (int(match.group(1)), int(match.group(2)), key) if match else (1 << 30, 0, key)


def _history_series(entries: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    epochs = np.array([float(e.get("epoch", i)) for i, e in enumerate(entries)])
    values = np.array([float(e[key]) if _is_number(e.get(key)) else np.nan for e in entries])
    return epochs, values


def plot_learning_curves(history: Mapping[str, Sequence[Mapping[str, Any]]], path: Path, n_labels: int) -> Path:
    """Train loss, validation loss and validation UA per epoch, one line per fold (and seed).

    Args:
        history: ``{"<fold>-<seed>": [{"epoch", "train_loss", "val_loss", "val_ua"}, ...]}``.
        path: Output PNG.
        n_labels: Number of classes, for the chance line on the UA panel.

    Returns:
        ``path``.
    """
    from matplotlib import colormaps

    keys = sorted(history, key=_history_key_order)
    seeds = {_history_key_order(k)[1] for k in keys}
    fig = _new_figure(13.0, 4.2)
    axes = fig.subplots(1, 3)
    axes[1].sharey(axes[0])  # the two loss panels on one scale so over-fitting shows
    panels = (("train_loss", "Training loss"), ("val_loss", "Validation loss"), ("val_ua", "Validation UA"))
    cmap = colormaps["tab10" if len(keys) <= 10 else "viridis"]
    many = len(keys) > _MAX_LEGEND_LINES
    for ax, (field, title) in zip(axes, panels):
        grid: dict[float, list[float]] = {}
        for i, key in enumerate(keys):
            epochs, values = _history_series(history[key], field)
            fold, seed, _ = _history_key_order(key)
            name = (f"fold {fold}" if len(seeds) == 1 else f"fold {fold} / seed {seed}") if fold != 1 << 30 else key
            colour = cmap(i % 10) if len(keys) <= 10 else cmap(i / max(1, len(keys) - 1))
            ax.plot(epochs, values, color=colour, lw=0.8 if many else 1.4, alpha=0.6 if many else 0.9, label=name)
            for epoch, value in zip(epochs, values):
                if not math.isnan(value):
                    grid.setdefault(epoch, []).append(value)
        if many and grid:  # a mean curve says more than 30 overlapping lines
            xs = sorted(grid)
            ax.plot(xs, [float(np.mean(grid[x])) for x in xs], color="black", lw=2.2, label="mean")
        if field == "val_ua" and n_labels > 0:
            ax.axhline(1.0 / n_labels, color="grey", ls="--", lw=1, label="chance")
            ax.set_ylim(0, 1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss")
    axes[2].set_ylabel("UA")
    handles, names = axes[2].get_legend_handles_labels()
    if many:  # keep only the summary entries
        pairs = [(h, n) for h, n in zip(handles, names) if n in ("mean", "chance")]
        handles, names = [p[0] for p in pairs], [p[1] for p in pairs]
    axes[2].legend(handles, names, fontsize=7, loc="lower right")
    return _save_figure(fig, path)


def plot_per_speaker(
    per_speaker: Mapping[str, Mapping[str, Any]],
    path: Path,
    n_labels: int,
    genders: Mapping[str, str] | None = None,
) -> Path:
    """Horizontal per-speaker accuracy bars, sorted (best on top), coloured by gender when known.

    Args:
        per_speaker: ``{speaker: {"n", "accuracy"}}``.
        path: Output PNG.
        n_labels: Number of classes, for the chance line.
        genders: Optional ``{speaker: gender}`` from the manifest.

    Returns:
        ``path``.
    """
    from matplotlib.patches import Patch

    genders = genders or {}
    items = sorted(per_speaker.items(), key=lambda kv: (float(kv[1].get("accuracy", 0.0)), kv[0]))
    names = [str(k) for k, _ in items]
    accuracy = [float(v.get("accuracy", 0.0)) for _, v in items]
    counts = [int(v.get("n", 0)) for _, v in items]
    height = min(40.0, max(3.2, 0.28 * len(items) + 1.6))  # grows with speakers, capped for huge corpora
    fig = _new_figure(7.5, height)
    ax = fig.add_subplot()
    colours = [_GENDER_COLOURS.get(genders.get(n, "unknown"), _GENDER_COLOURS["unknown"]) for n in names]
    bars = ax.barh(range(len(items)), accuracy, color=colours)
    texts = ax.bar_label(bars, labels=[f"{a:.2f} (n={c})" for a, c in zip(accuracy, counts)], fontsize=7, padding=2)
    for text in texts:  # keep values legible where they cross the mean or chance line
        text.set_bbox({"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.6})
    ax.set_yticks(range(len(items)), labels=names, fontsize=8 if len(items) <= 30 else 6)
    ax.set_xlim(0, 1.18)
    ax.set_ylim(-0.6, len(items) - 0.4)
    mean = float(np.mean(accuracy)) if accuracy else float("nan")
    ax.axvline(mean, color="black", lw=1, label=f"mean over speakers ({mean:.2f})")
    if n_labels > 0:
        ax.axvline(1.0 / n_labels, color="grey", ls="--", lw=1, label=f"chance (1/{n_labels})")
    handles, _ = ax.get_legend_handles_labels()
    present = sorted({genders.get(n, "unknown") for n in names} & set(_GENDER_COLOURS))
    if genders and present:
        handles += [Patch(color=_GENDER_COLOURS[g], label=g) for g in present]
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    ax.set_xlabel("accuracy on the speaker's test utterances")
    ax.set_title("Per-speaker accuracy", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return _save_figure(fig, path)


# --------------------------------------------------------------------------- report sections


def _header_section(name: str, config: Mapping[str, Any], metrics: Mapping[str, Any], corpus: str) -> list[str]:
    folds = metrics.get("folds") or []
    n_folds = len({f.get("fold") for f in folds})
    n_seeds = len({f.get("seed") for f in folds})
    protocol = config.get("protocol", "?")
    overlap = overlap_summary(metrics)
    marker = "" if _is_speaker_independent(metrics) else "⚠ "
    return [
        f"# Evaluation report: {name}",
        "",
        f"**Protocol:** `{protocol}` on `{corpus}`, {n_folds} folds × {n_seeds} seed{'s' if n_seeds != 1 else ''}; "
        f"model `{_model_name(config)}` on `{_features_kind(config)}` features.",
        "",
        *([f"**Normalisation:** {metrics['transform']}.", ""] if metrics.get("transform") else []),
        f"> **{marker}{overlap}**",
        "",
    ]


def _results_section(metrics: Mapping[str, Any]) -> list[str]:
    overall = metrics.get("overall") or {}
    resampling = overall.get("ci_resampling", "?")
    n_evals = len(metrics.get("folds") or [])
    rows = [(label, _mean_std(overall.get(key)), _ci(overall.get(key))) for key, label in _METRICS]
    why = {
        "speaker": "test utterances resampled by speaker, so the interval reflects how much results vary between speakers",
        "utterance": "test utterances resampled individually, which ignores that utterances of one speaker are correlated",
    }.get(str(resampling), f"resampled by {resampling}")
    pooled = overall.get("pooled") or {}
    return [
        "## Results",
        "",
        _md_table(["Metric", "Mean ± std over folds", "95 % interval"], rows, "lrr"),
        "",
        f"Mean and standard deviation are over the {n_evals} fold × seed evaluations. "
        f"95 % interval: {why} (resampling unit: **{resampling}**). "
        f"Pooled over all {pooled.get('n', 'n/a')} test predictions: WA {_num(pooled.get('wa'))}, "
        f"UA {_num(pooled.get('ua'))}, macro-F1 {_num(pooled.get('macro_f1'))}.",
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
                _pct(overlap.get("shared_fraction")),
                _num(entry.get("wa")),
                _num(entry.get("ua")),
                _num(entry.get("macro_f1")),
            )
        )
    header = ["Fold", "Seed", "Train", "Val", "Test", "Test speakers", "Shared speakers", "Shared test utts", "WA", "UA", "Macro-F1"]
    return ["## Per fold", "", _md_table(header, rows, "rrrrrrrrrrr"), ""]


def _per_class_section(labels: Sequence[str], per_class: Mapping[str, Mapping[str, Any]]) -> list[str]:
    rows = []
    for label in labels:
        stats = per_class.get(label, {})
        rows.append(
            (label, _num(stats.get("precision")), _num(stats.get("recall")), _num(stats.get("f1")), stats.get("support", "n/a"))
        )
    return [
        "## Per class (pooled over all test predictions)",
        "",
        _md_table(["Class", "Precision", "Recall", "F1", "Support"], rows, "lrrrr"),
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
    rows = [(spk, genders.get(spk, "?"), stats.get("n", "n/a"), _num(stats.get("accuracy"))) for spk, stats in items]
    return ["## Per speaker", "", _md_table(["Speaker", "Gender", "Test utts", "Accuracy"], rows, "llrr"), ""]


def _config_section(config: Mapping[str, Any]) -> list[str]:
    model = config.get("model") if isinstance(config.get("model"), Mapping) else {}
    features = config.get("features") if isinstance(config.get("features"), Mapping) else {}
    lines = [
        "## Model and features",
        "",
        f"- Model: `{_model_name(config)}`; parameters: {_inline_params(model.get('params'))}",
        f"- Features: `{_features_kind(config)}`; settings: {_inline_params(features, skip=('kind',))}",
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
        rows = [(lab, int(counts.get(lab, 0)), _pct(counts.get(lab, 0) / len(manifest))) for lab in order]
        lines += [_md_table(["Label", "Utterances", "Share"], rows, "lrr"), ""]
    return lines


# --------------------------------------------------------------------------- report


def _genders(manifest: pd.DataFrame | None) -> dict[str, str]:
    if manifest is None or not {"speaker", "gender"} <= set(manifest.columns):
        return {}
    first = manifest.drop_duplicates("speaker")
    return dict(zip(first["speaker"].astype(str), first["gender"].astype(str)))


def _make_plots(
    out: Path,
    metrics: Mapping[str, Any],
    history: Mapping[str, Any],
    labels: Sequence[str],
    genders: Mapping[str, str],
) -> tuple[dict[str, Path | None], dict[str, str]]:
    """Draw every plot that has data; remove stale files of plots that have none."""
    pooled = (metrics.get("overall") or {}).get("pooled") or {}
    plots: dict[str, Path | None] = dict.fromkeys(PLOT_FILES)
    notes: dict[str, str] = {}
    if pooled.get("confusion"):
        n_evals = len(metrics.get("folds") or [])
        title = f"Confusion matrix, rows normalised\npooled over {n_evals} fold × seed evaluations (n = {pooled.get('n', '?')})"
        plots["confusion"] = plot_confusion(pooled["confusion"], labels, out / PLOT_FILES["confusion"], title)
    else:
        notes["confusion"] = "No pooled confusion matrix in metrics.json."
    if pooled.get("per_class"):
        plots["per_class"] = plot_per_class(pooled["per_class"], labels, out / PLOT_FILES["per_class"])
    else:
        notes["per_class"] = "No per-class scores in metrics.json."
    if any(history.get(k) for k in history):
        usable = {k: v for k, v in history.items() if v}
        plots["learning_curves"] = plot_learning_curves(usable, out / PLOT_FILES["learning_curves"], len(labels))
    else:
        notes["learning_curves"] = "No learning curves: history.json is absent or empty (models without epochs, e.g. the SVM, have none)."
    if metrics.get("per_speaker"):
        plots["per_speaker"] = plot_per_speaker(metrics["per_speaker"], out / PLOT_FILES["per_speaker"], len(labels), genders)
    else:
        notes["per_speaker"] = "No per-speaker results in metrics.json."
    for key, path in plots.items():
        if path is None:  # a re-run must not leave an old plot that the new report does not describe
            (out / PLOT_FILES[key]).unlink(missing_ok=True)
    return plots, notes


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
    metrics = _read_metrics(run)
    config = _read_optional_json(run / "config.json", {})
    history = _read_optional_json(run / "history.json", {})
    if not isinstance(history, Mapping):  # anything but {"<fold>-<seed>": [...]} is unusable
        log.warning("ignoring %s: expected an object keyed by '<fold>-<seed>'", run / "history.json")
        history = {}
    manifest = _read_optional_csv(run / "manifest.csv")
    folds_csv = _read_optional_csv(run / "folds.csv")
    predictions = _read_optional_csv(run / "predictions.csv")

    pooled = (metrics.get("overall") or {}).get("pooled") or {}
    labels = list(pooled.get("labels") or metrics.get("labels") or config.get("labels") or [])
    genders = _genders(manifest)
    name = str(config.get("name") or run.name)

    out = run / "report"
    out.mkdir(parents=True, exist_ok=True)
    plots, notes = _make_plots(out, metrics, history, labels, genders)

    lines = _header_section(name, config, metrics, _corpus_name(config, manifest))
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


# --------------------------------------------------------------------------- comparison


def _run_row(run: Path) -> dict[str, Any]:
    metrics = _read_metrics(run)
    config = _read_optional_json(run / "config.json", {})
    manifest = None if config.get("corpus") else _read_optional_csv(run / "manifest.csv")
    overall = metrics.get("overall") or {}
    folds = metrics.get("folds") or []
    _, n_folds, max_shared = _overlap_counts(metrics)
    row: dict[str, Any] = {
        "run": str(config.get("name") or run.name),
        "corpus": _corpus_name(config, manifest),
        "protocol": str(config.get("protocol", "?")),
        "speaker_independent": _is_speaker_independent(metrics),
        "max_speaker_overlap": float(max_shared) if _is_number(max_shared) else float("nan"),
        "model": _model_name(config),
        "features": _features_kind(config),
        "n_folds": n_folds,
        "n_seeds": len({f.get("seed") for f in folds}),
        "ci_resampling": str(overall.get("ci_resampling", "?")),
    }
    for key, _ in _METRICS:
        stat = overall.get(key) or {}
        interval = stat.get("ci95") if isinstance(stat.get("ci95"), Sequence) and len(stat.get("ci95")) == 2 else (None, None)
        for suffix, value in (("mean", stat.get("mean")), ("std", stat.get("std")), ("ci_lo", interval[0]), ("ci_hi", interval[1])):
            row[f"{key}_{suffix}"] = float(value) if _is_number(value) else float("nan")
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
            f"{_num(r[f'{k}_mean'])} ± {_num(r[f'{k}_std'])} [{_num(r[f'{k}_ci_lo'])}, {_num(r[f'{k}_ci_hi'])}]"
            for k, _ in _METRICS
        ]
        rows.append(
            [
                r["run"],
                r["corpus"],
                r["protocol"],
                "yes" if r["speaker_independent"] else "no",
                _pct(r["max_speaker_overlap"]),
                r["model"],
                r["features"],
                f"{r['n_folds']}×{r['n_seeds']}" if r["n_seeds"] > 1 else str(r["n_folds"]),
                *metrics,
                r["ci_resampling"],
            ]
        )
    align = "lllrrllrrrrl"
    table = _md_table(header, rows, align) if fmt == "markdown" else _text_table(header, rows, align)
    note = "Sorted by UA (mean over folds); metrics are mean ± std over folds [95 % interval]."
    if not df.empty and not df["speaker_independent"].all():
        note += " Speaker-dependent runs (Speaker-indep. no) are not comparable to speaker-independent ones."
    return f"{table}\n\n{note}\n"

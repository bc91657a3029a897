"""The PNG figures of a run report: confusion matrix, per-class scores, learning curves, per-speaker accuracy.

matplotlib is imported only inside the plotting functions, so importing this module is
cheap; figures are drawn on explicit Agg canvases (never through pyplot), which keeps the
caller's own matplotlib backend untouched and leaves no figure registered anywhere. Each
file is written to a temporary name and moved into place (`serkit.atomic`); `make_plots`
draws every figure a run has data for, under the names in `PLOT_FILES`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serkit.atomic import atomic_write
from serkit.evaluation.report_format import is_number

if TYPE_CHECKING:  # only for annotations; importing matplotlib eagerly would slow `import serkit`
    from matplotlib.figure import Figure

__all__ = [
    "PLOT_FILES",
    "make_plots",
    "normalize_confusion",
    "plot_confusion",
    "plot_learning_curves",
    "plot_per_class",
    "plot_per_speaker",
]

log = logging.getLogger(__name__)

#: File names of the plots inside ``<run>/report/``.
PLOT_FILES: dict[str, str] = {
    "confusion": "confusion_matrix.png",
    "per_class": "per_class.png",
    "learning_curves": "learning_curves.png",
    "per_speaker": "per_speaker.png",
}
_DPI = 110
_MAX_LEGEND_LINES = 10  # more runs than this make an unreadable legend; show the mean instead
_GENDER_COLOURS = {"female": "#c44e52", "male": "#4c72b0", "unknown": "#8c8c8c"}


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


def _atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(handle)`` on a temp file beside ``path``, then move it into place."""
    with atomic_write(path) as handle:
        write(handle)


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
    values = np.array([float(e[key]) if is_number(e.get(key)) else np.nan for e in entries])
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


def make_plots(
    out: Path,
    metrics: Mapping[str, Any],
    history: Mapping[str, Any],
    labels: Sequence[str],
    genders: Mapping[str, str],
) -> tuple[dict[str, Path | None], dict[str, str]]:
    """Draw every plot that has data; remove stale files of plots that have none.

    Args:
        out: The report folder (``<run>/report``).
        metrics: The parsed ``metrics.json``.
        history: ``{"<fold>-<seed>": [epoch entries]}`` from ``history.json`` (may be empty).
        labels: Class order.
        genders: ``{speaker: gender}`` for colouring the per-speaker bars (may be empty).

    Returns:
        ``(plots, notes)``: each `PLOT_FILES` key -> the written path or None, and for each
        missing plot the sentence the report prints instead.
    """
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

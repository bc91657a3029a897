"""Predictions as text for `serkit predict`: an aligned table, JSON or CSV (`format_predictions`).

JSON carries every prediction whole (`Prediction.to_dict`: segments and quality warnings
included) under the model's labels and any extra top-level facts; the table and CSV have one
row per input, and on request one more per window of a windowed recording. CSV has a
probability column per label and the warnings' codes joined by ``;``; the table prints each
warning's message on a line of its own under its prediction and an unreadable input's error in
place of its probabilities. Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serkit.inference.results import Prediction

__all__ = ["FORMATS", "format_predictions"]

#: Output formats of `format_predictions`.
FORMATS: tuple[str, ...] = ("table", "json", "csv")


def format_predictions(
    predictions: Sequence[Prediction],
    labels: Sequence[str],
    fmt: str = "table",
    *,
    segments: bool = False,
    info: dict[str, Any] | None = None,
) -> str:
    """Predictions as text: an aligned table, JSON or CSV.

    Quality warnings: JSON lists them per prediction (``warnings``: code and message); CSV
    has a ``warnings`` column of codes joined by ``;``; the table prints each message on a
    line of its own under the prediction.

    Args:
        predictions: What `Predictor.predict_files` returned.
        labels: The model's labels (probability columns, in order).
        fmt: ``"table"``, ``"json"`` or ``"csv"``.
        segments: Table and CSV: add one row per window under each windowed recording.
            JSON always carries the segments a prediction has.
        info: JSON only: extra top-level facts (model folder, backend).

    Returns:
        The text, ending with a newline.

    Raises:
        ValueError: Unknown format.
    """
    if fmt == "json":
        document = {**(info or {}), "labels": list(labels), "predictions": [p.to_dict() for p in predictions]}
        return json.dumps(document, indent=2) + "\n"
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")
    rows = _flat_rows(predictions, labels, segments)
    return _csv_text(rows, labels) if fmt == "csv" else _table_text(rows, labels)


def _flat_rows(predictions: Sequence[Prediction], labels: Sequence[str], segments: bool) -> list[dict[str, Any]]:
    """One row per prediction (segment ""), then, when asked, one per window (segment 1, 2, ...)."""
    rows = []
    for p in predictions:
        rows.append({"source": p.source, "segment": "", "start": 0.0, "end": p.duration, "label": p.label or "",
                     "probabilities": p.probabilities, "error": p.error or "", "warnings": p.warnings})
        if segments and p.segments:
            for number, s in enumerate(p.segments, 1):
                rows.append({"source": p.source, "segment": number, "start": s.start, "end": s.end, "label": s.label,
                             "probabilities": s.probabilities, "error": "", "warnings": []})
    return rows


def _csv_text(rows: list[dict[str, Any]], labels: Sequence[str]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["source", "segment", "start", "end", "label", *[f"prob_{label}" for label in labels], "error", "warnings"])
    for row in rows:
        probabilities = [f"{row['probabilities'][label]:.6f}" if label in row["probabilities"] else "" for label in labels]
        writer.writerow([row["source"], row["segment"], f"{row['start']:.3f}", f"{row['end']:.3f}", row["label"],
                         *probabilities, row["error"], ";".join(w.code for w in row["warnings"])])
    return buffer.getvalue()


def _table_text(rows: list[dict[str, Any]], labels: Sequence[str]) -> str:
    names = [row["source"] if row["segment"] == "" else f"  {row['start']:.2f}-{row['end']:.2f} s" for row in rows]
    width = max([len("file"), *map(len, names)])
    label_width = max([len("label"), *map(len, labels)])
    columns = [max(6, len(label)) for label in labels]
    header = f"{'file':<{width}}  {'label':<{label_width}}  " + "  ".join(f"{l:>{w}}" for l, w in zip(labels, columns))
    lines = [header.rstrip()]
    for name, row in zip(names, rows):
        if row["error"]:
            lines.append(f"{name:<{width}}  ERROR: {row['error']}")
            continue
        values = "  ".join(f"{row['probabilities'][l]:>{w}.3f}" for l, w in zip(labels, columns))
        lines.append(f"{name:<{width}}  {row['label']:<{label_width}}  {values}")
        lines.extend(f"  warning ({w.code}): {w.message}" for w in row["warnings"])
    return "\n".join(lines) + "\n"

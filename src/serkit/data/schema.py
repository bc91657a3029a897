"""The manifest: one row per utterance, the contract between corpora and everything after.

Columns (in this order): ``utt_id, path, speaker, gender, label, corpus, duration`` and the
optional ``session`` and ``transcript``. ``gender`` is ``female``, ``male`` or ``unknown``;
``duration`` is in seconds. Relative paths in a manifest file are relative to that file's
folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from serkit.atomic import atomic_write

__all__ = [
    "COLUMNS",
    "GENDERS",
    "OPTIONAL_COLUMNS",
    "ManifestError",
    "read_manifest",
    "summarize",
    "validate_manifest",
    "write_manifest",
]

COLUMNS: tuple[str, ...] = ("utt_id", "path", "speaker", "gender", "label", "corpus", "duration")
OPTIONAL_COLUMNS: tuple[str, ...] = ("session", "transcript")
GENDERS: frozenset[str] = frozenset({"female", "male", "unknown"})
_STRING_COLUMNS = ("utt_id", "path", "speaker", "gender", "label", "corpus")
_MAX_LISTED = 20


class ManifestError(ValueError):
    """A manifest that breaks the schema; the message lists the offending rows."""


def _rows_message(problem: str, frame: pd.DataFrame, columns: Iterable[str]) -> str:
    cols = [c for c in columns if c in frame.columns]
    shown = frame[cols].head(_MAX_LISTED)
    lines = [f"{problem} ({len(frame)} row{'s' if len(frame) != 1 else ''}):"]
    for index, row in shown.iterrows():
        lines.append(f"  row {index}: " + ", ".join(f"{c}={row[c]!r}" for c in cols))
    if len(frame) > _MAX_LISTED:
        lines.append(f"  ... and {len(frame) - _MAX_LISTED} more")
    return "\n".join(lines)


def validate_manifest(
    manifest: pd.DataFrame,
    *,
    labels: Iterable[str] | None = None,
    check_files: bool = True,
) -> pd.DataFrame:
    """Check a manifest against the schema and return it in canonical column order.

    Args:
        manifest: The table to check.
        labels: The allowed label set; None accepts any label.
        check_files: Also check that every ``path`` exists.

    Returns:
        A copy with the schema's columns first, string columns as ``str`` and
        ``duration`` as float.

    Raises:
        ManifestError: Missing columns, empty values, duplicate ids, unknown genders or
            labels, non-positive durations, or missing files; every problem found is listed.
    """
    missing = [c for c in COLUMNS if c not in manifest.columns]
    if missing:
        raise ManifestError(
            f"manifest lacks column(s) {missing}; required: {list(COLUMNS)}, optional: {list(OPTIONAL_COLUMNS)}"
        )
    frame = manifest.copy()
    problems: list[str] = []
    empty = frame[list(_STRING_COLUMNS)].isna() | (frame[list(_STRING_COLUMNS)].astype(str).apply(lambda s: s.str.strip()) == "")
    if empty.any(axis=None):
        bad = frame[empty.any(axis=1)]
        problems.append(_rows_message("empty values in required columns", bad, COLUMNS))
    for column in _STRING_COLUMNS:
        frame[column] = frame[column].astype(str)
    for column in OPTIONAL_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].fillna("").astype(str)
    duplicated = frame[frame["utt_id"].duplicated(keep=False)]
    if len(duplicated):
        problems.append(_rows_message("duplicate utt_id", duplicated.sort_values("utt_id"), ("utt_id", "path")))
    bad_gender = frame[~frame["gender"].isin(GENDERS)]
    if len(bad_gender):
        problems.append(
            _rows_message(f"gender must be one of {sorted(GENDERS)}", bad_gender, ("utt_id", "gender"))
        )
    if labels is not None:
        allowed = set(labels)
        unknown = frame[~frame["label"].isin(allowed)]
        if len(unknown):
            problems.append(
                _rows_message(f"unknown label (allowed: {sorted(allowed)})", unknown, ("utt_id", "label"))
            )
    duration = pd.to_numeric(frame["duration"], errors="coerce")
    bad_duration = frame[~(duration > 0)]
    if len(bad_duration):
        problems.append(_rows_message("duration must be a positive number of seconds", bad_duration, ("utt_id", "duration")))
    frame["duration"] = duration.astype(float)
    if check_files:
        exists = frame["path"].map(os.path.isfile)
        absent = frame[~exists]
        if len(absent):
            problems.append(_rows_message("missing audio file", absent, ("utt_id", "path")))
    if problems:
        raise ManifestError("invalid manifest:\n" + "\n".join(problems))
    order = list(COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in frame.columns]
    extra = [c for c in frame.columns if c not in order]
    return frame[order + extra].reset_index(drop=True)


def read_manifest(path: str | os.PathLike, *, check_files: bool = True, labels: Iterable[str] | None = None) -> pd.DataFrame:
    """Read and validate a manifest CSV; relative paths are resolved against its folder.

    Args:
        path: The CSV file.
        check_files: Also check that every audio file exists.
        labels: The allowed label set; None accepts any label.

    Returns:
        The validated manifest with absolute paths.

    Raises:
        ManifestError: The file is missing or breaks the schema.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not a readable CSV manifest ({exc})") from None
    base = path.resolve().parent
    if "path" in frame.columns:
        frame["path"] = [p if os.path.isabs(p) else str(base / p) for p in frame["path"]]
    try:
        return validate_manifest(frame, labels=labels, check_files=check_files)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None


def write_manifest(manifest: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Validate (without touching the audio) and write a manifest CSV atomically.

    Args:
        manifest: The table to write.
        path: Destination CSV; its folder is created.

    Returns:
        The path written.
    """
    frame = validate_manifest(manifest, check_files=False)
    path = Path(path)
    with atomic_write(path, "w", newline="", encoding="utf-8") as stream:
        frame.to_csv(stream, index=False, float_format="%.4f")
    return path


def summarize(manifest: pd.DataFrame) -> dict[str, Any]:
    """Counts and hours of a manifest, overall and per label, speaker and gender.

    Args:
        manifest: A validated manifest.

    Returns:
        ``{"utterances", "hours", "corpora", "speakers", "label", "speaker", "gender"}``,
        where each of the last three maps a value to ``{"count", "hours"}``.
    """
    def table(column: str) -> dict[str, dict[str, float]]:
        grouped = manifest.groupby(column, sort=True)["duration"].agg(["count", "sum"])
        return {str(k): {"count": int(r["count"]), "hours": float(r["sum"]) / 3600} for k, r in grouped.iterrows()}

    return {
        "utterances": int(len(manifest)),
        "hours": float(manifest["duration"].sum()) / 3600,
        "corpora": sorted(manifest["corpus"].unique().tolist()),
        "speakers": int(manifest["speaker"].nunique()),
        "label": table("label"),
        "speaker": table("speaker"),
        "gender": table("gender"),
    }

"""The tables splitting reads and writes: the manifest columns it needs, speaker identity, and the folds table.

A folds table is the long table ``utt_id, fold, split``: one row per utterance a fold uses,
``fold`` counting from 0 and ``split`` one of `SPLITS`. This module checks a manifest for
splitting (`check_manifest`), tells speakers apart across corpora (`speaker_keys`: codes such
as ``03`` recur across corpora), builds and validates folds tables, and reads and writes them
as ``folds.csv`` (`write_folds`, `read_folds`); the protocols that fill the table live in
`serkit.evaluation.splits`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from serkit.atomic import atomic_write

__all__ = [
    "FOLD_COLUMNS",
    "SPLITS",
    "check_fold_table",
    "check_manifest",
    "folds_frame",
    "listing",
    "read_folds",
    "speaker_keys",
    "write_folds",
]

FOLD_COLUMNS: tuple[str, ...] = ("utt_id", "fold", "split")
#: ``enroll``: a test speaker's utterances set aside to describe that speaker (speaker
#: normalisation by enrolment); never trained on, never scored (`set_aside_enrollment`).
SPLITS: tuple[str, ...] = ("train", "val", "enroll", "test")
_MANIFEST_COLUMNS = ("utt_id", "speaker", "label", "corpus")
_MAX_LISTED = 10


def listing(items: Iterable[Any], limit: int = _MAX_LISTED) -> str:
    """``a, b, c ... and 7 more`` for error and log messages.

    Args:
        items: What to list (shown with ``str``).
        limit: How many to show before ``... and N more``.
    """
    items = list(items)
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")


def speaker_keys(manifest: pd.DataFrame) -> pd.Series:
    """One identity per speaker: the ``speaker`` column, prefixed ``corpus/`` when corpora mix.

    Args:
        manifest: A table with ``speaker`` (and ``corpus``) columns.

    Returns:
        A string Series aligned with ``manifest``.
    """
    speaker = manifest["speaker"].astype(str)
    if "corpus" in manifest.columns and manifest["corpus"].nunique() > 1:
        return manifest["corpus"].astype(str) + "/" + speaker
    return speaker


def check_manifest(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest columns splitting needs, as strings, with unique ids and a clean index.

    Args:
        manifest: The utterances; needs ``utt_id, speaker, label, corpus``.

    Returns:
        A copy with those columns as strings and a 0-based index.

    Raises:
        ValueError: A missing column, no rows, or a duplicate ``utt_id``.
    """
    missing = [c for c in _MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks column(s) {missing}; splitting needs {list(_MANIFEST_COLUMNS)}")
    if manifest.empty:
        raise ValueError("manifest is empty: nothing to split")
    frame = manifest.reset_index(drop=True).copy()
    for column in _MANIFEST_COLUMNS:
        frame[column] = frame[column].astype(str)
    duplicated = frame.loc[frame["utt_id"].duplicated(), "utt_id"]
    if len(duplicated):
        raise ValueError(f"manifest has duplicate utt_id: {listing(duplicated.unique())}")
    return frame


def folds_frame(utt_ids: Iterable[str], folds: Iterable[int], splits: Iterable[str]) -> pd.DataFrame:
    """The folds table from three parallel sequences, with the canonical dtypes.

    Returns:
        ``utt_id`` (str), ``fold`` (int64), ``split`` (str).
    """
    return pd.DataFrame(
        {
            "utt_id": pd.Series(list(utt_ids), dtype=str),
            "fold": pd.Series(list(folds), dtype="int64"),
            "split": pd.Series(list(splits), dtype=str),
        }
    )


def check_fold_table(folds: pd.DataFrame) -> None:
    """Refuse a table without the `FOLD_COLUMNS` or with a split value outside `SPLITS`.

    Raises:
        ValueError: A missing column or an unknown split value.
    """
    missing = [c for c in FOLD_COLUMNS if c not in folds.columns]
    if missing:
        raise ValueError(f"folds table lacks column(s) {missing}; expected {list(FOLD_COLUMNS)}")
    bad_split = sorted(set(folds["split"].astype(str)) - set(SPLITS))
    if bad_split:
        raise ValueError(f"folds table has unknown split value(s) {bad_split}; allowed: {list(SPLITS)}")



def write_folds(folds: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the folds table as CSV atomically (a temporary file, then ``os.replace``).

    Args:
        folds: The folds table.
        path: Destination; its folder is created.

    Returns:
        The path written.
    """
    check_fold_table(folds)
    path = Path(path)
    with atomic_write(path, "w", newline="", encoding="utf-8") as stream:
        folds[list(FOLD_COLUMNS)].to_csv(stream, index=False)
    return path


def read_folds(path: str | os.PathLike) -> pd.DataFrame:
    """Read a folds CSV written by `write_folds` (or by hand: ``utt_id, fold, split``).

    Args:
        path: The CSV file.

    Returns:
        The folds table with ``utt_id`` and ``split`` as strings and ``fold`` as int64.

    Raises:
        ValueError: Missing file, columns, non-integer folds or unknown split values.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: folds file not found")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    try:
        check_fold_table(frame)
        folds = pd.to_numeric(frame["fold"], errors="raise")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if (folds != folds.round()).any() or (folds < 0).any():
        raise ValueError(f"{path}: fold must be a non-negative integer")
    return folds_frame(frame["utt_id"].str.strip(), folds.astype("int64"), frame["split"].str.strip())

"""The user's own corpus, listed in a CSV file.

``root`` is the CSV file itself. Column names are matched case-insensitively, with aliases:

- ``path`` (required; aliases ``file``, ``filename``, ``wav``, ``audio``): the audio file;
  relative paths are relative to the CSV's folder.
- ``label`` (required; alias ``emotion``): the class, kept as written (surrounding spaces
  removed).
- ``utt_id`` (optional): defaults to the file stem; duplicates are a validation error.
- ``speaker`` (optional): defaults to ``unknown``, with a warning, since speaker-independent
  evaluation is then impossible.
- ``gender`` (optional): normalised to female/male/unknown from the usual spellings (F, M,
  female, Male, w, ...); empty cells are unknown, other values an error listing the rows.
- ``session``, ``transcript`` (optional): copied as they are.
- ``corpus`` (optional): defaults to option ``corpus_name``, else the CSV's file stem.

Other columns are ignored (durations are always read from the audio headers). Only one
spelling of a column may be present: ``path`` and ``file`` together are an error.

Options:
    labels: The allowed label set, as a list or a comma-separated string; rows with other
        labels are a validation error. None (default) accepts every label.
    corpus_name: The corpus name for rows without a ``corpus`` cell (default: the CSV's stem).
        (Not called ``corpus``: `serkit.data.datasets.prepare` takes that name itself.)

The reference listings ``manifest.csv`` beside the real corpora (path, speaker, gender,
emotion) load through this adapter.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from serkit.data.datasets._common import existing_file, finish, normalize_gender, shorten

__all__ = ["LABELS", "NAME", "list_utterances", "prepare"]

log = logging.getLogger(__name__)

NAME = "csv"
LABELS: tuple[str, ...] | None = None

#: Canonical column -> accepted spellings (lower-case), canonical first.
ALIASES: dict[str, tuple[str, ...]] = {
    "path": ("path", "file", "filename", "wav", "audio"),
    "label": ("label", "emotion"),
    "utt_id": ("utt_id",),
    "speaker": ("speaker",),
    "gender": ("gender",),
    "session": ("session",),
    "transcript": ("transcript",),
    "corpus": ("corpus",),
}
REQUIRED: tuple[str, ...] = ("path", "label")


def list_utterances(
    root: str | os.PathLike,
    *,
    labels: Sequence[str] | str | None = None,
    corpus_name: str | None = None,
) -> pd.DataFrame:
    """Read a CSV listing into manifest rows.

    Args:
        root: The CSV file.
        labels: The allowed labels (checked by `prepare`; accepted here so the option is known).
        corpus_name: Corpus name for rows without one (default: the CSV's file stem).

    Returns:
        Rows with utt_id, path (absolute), speaker, gender, label, corpus and whichever of
        session / transcript the CSV has.

    Raises:
        FileNotFoundError: The CSV does not exist.
        ValueError: Unreadable CSV, missing or doubled columns, empty paths, unknown genders.
    """
    label_set(labels)  # reject a malformed option before reading anything
    source = existing_file(root, "CSV listing")
    table = _read_table(source)
    columns = _resolve_columns(table, source)
    paths = table[columns["path"]].str.strip()
    empty = paths.index[paths == ""]
    if len(empty):
        raise ValueError(f"{source}: empty path on line(s) {shorten(int(i) + 2 for i in empty)}")
    frame = pd.DataFrame({"path": [_absolute(p, source.parent) for p in paths]}, index=table.index)
    stems = frame["path"].map(lambda p: Path(p).stem)
    frame["utt_id"] = _filled(table, columns, "utt_id", stems)
    frame["speaker"] = _speakers(table, columns, source)
    frame["gender"] = _genders(table, columns, source)
    frame["label"] = _column(table, columns, "label")
    name = "" if corpus_name is None else str(corpus_name).strip()  # the CLI may pass a number
    frame["corpus"] = _filled(table, columns, "corpus", name or source.stem)
    for optional in ("session", "transcript"):
        if optional in columns:
            frame[optional] = _column(table, columns, optional)
    ignored = [c for c in table.columns if c not in columns.values()]
    if ignored:
        log.info("%s: ignoring column(s) %s of %s", NAME, ignored, source)
    order = ["utt_id", "path", "speaker", "gender", "label", "corpus", "session", "transcript"]
    return frame[[c for c in order if c in frame.columns]].reset_index(drop=True)


def prepare(root: str | os.PathLike, **options) -> pd.DataFrame:
    """`list_utterances` plus durations and validation (see `serkit.data.datasets.prepare`)."""
    return finish(list_utterances(root, **options), NAME, label_set(options.get("labels")))


def label_set(labels: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """The ``labels`` option as a tuple: a list, or a comma-separated string (from the CLI)."""
    if labels is None:
        return None
    if isinstance(labels, str):
        labels = labels.split(",")
    if not isinstance(labels, Sequence) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{NAME}: labels must be a list of strings or a comma-separated string, got {labels!r}")
    cleaned = tuple(x.strip() for x in labels if x.strip())
    if not cleaned:
        raise ValueError(f"{NAME}: labels is empty")
    return cleaned


def _read_table(source: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(source, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{source}: not a readable CSV listing ({exc})") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    return table


def _resolve_columns(table: pd.DataFrame, source: Path) -> dict[str, str]:
    """Canonical name -> the CSV's column, for every canonical column the CSV has."""
    found: dict[str, str] = {}
    for name, spellings in ALIASES.items():
        present = [s for s in spellings if s in table.columns]
        if len(present) > 1:
            raise ValueError(f"{source}: columns {present} all mean {name!r}; keep one")
        if present:
            found[name] = present[0]
        elif name in REQUIRED:
            raise ValueError(
                f"{source}: no {name!r} column (accepted: {list(spellings)}); columns are {list(table.columns)}"
            )
    return found


def _column(table: pd.DataFrame, columns: dict[str, str], name: str) -> pd.Series:
    return table[columns[name]].str.strip()


def _filled(table: pd.DataFrame, columns: dict[str, str], name: str, default: pd.Series | str) -> pd.Series | str:
    """Column `name` with empty cells set to `default`; just `default` when the CSV lacks it."""
    if name not in columns:
        return default
    values = _column(table, columns, name)
    return values.where(values != "", default)


def _absolute(path: str, base: Path) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _speakers(table: pd.DataFrame, columns: dict[str, str], source: Path) -> pd.Series:
    if "speaker" not in columns:
        log.warning("%s: %s has no speaker column; every speaker is 'unknown', so speaker-independent "
                    "evaluation is impossible", NAME, source)
        return pd.Series("unknown", index=table.index)
    speakers = _column(table, columns, "speaker")
    empty = int((speakers == "").sum())
    if empty:
        log.warning("%s: %d row(s) of %s have no speaker; they are 'unknown', which speaker-independent "
                    "evaluation treats as one speaker", NAME, empty, source)
    return speakers.replace("", "unknown")


def _genders(table: pd.DataFrame, columns: dict[str, str], source: Path) -> pd.Series:
    if "gender" not in columns:
        return pd.Series("unknown", index=table.index)
    raw = _column(table, columns, "gender")
    genders = raw.map(normalize_gender)
    bad = genders.isna()
    if bad.any():
        lines = [f"line {int(i) + 2}: {raw[i]!r}" for i in raw.index[bad]]
        raise ValueError(f"{source}: unrecognised gender (use female/male/unknown) on {shorten(lines, 20)}")
    return genders

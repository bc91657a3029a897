"""What every adapter shares: finding audio files, parsing names, adding durations, validating."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from serkit.audio import AudioError, probe
from serkit.schema import COLUMNS, OPTIONAL_COLUMNS, validate_manifest

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".mp3", ".au", ".w64", ".caf"}
)


def existing_dir(root: str | os.PathLike) -> Path:
    """`root` as a resolved Path, or FileNotFoundError naming it."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: corpus folder not found")
    return path.resolve()


def audio_files(root: Path, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """Every audio file below `root` (recursively, by extension, case-insensitive), sorted."""
    wanted = {e.lower() for e in extensions}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in wanted and not p.name.startswith("._"))


def finish(
    rows: pd.DataFrame | list[dict],
    corpus: str,
    labels: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Add ``corpus`` and ``duration`` (from each file's header) and validate.

    Files whose header cannot be read are dropped and listed in ``attrs["skipped"]``, so one
    bad file does not stop a whole corpus.

    Args:
        rows: Manifest rows without duration (``utt_id, path, speaker, gender, label`` and
            optional columns).
        corpus: The corpus name written in every row unless the rows carry their own.
        labels: The allowed label set, or None.

    Returns:
        The validated manifest sorted by ``utt_id``.
    """
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=[c for c in COLUMNS if c != "duration"])
    if "corpus" not in frame.columns:
        frame["corpus"] = corpus
    durations: list[float] = []
    skipped: list[dict[str, str]] = []
    for path in frame["path"]:
        try:
            durations.append(probe(path).duration)
        except AudioError as exc:
            durations.append(float("nan"))
            if Path(path).exists():
                skipped.append({"path": str(path), "reason": exc.reason})
            else:  # a missing file is a manifest error, reported with its row below
                durations[-1] = 1.0
    frame["duration"] = durations
    frame = frame[frame["duration"].notna()]
    order = [c for c in (*COLUMNS, *OPTIONAL_COLUMNS) if c in frame.columns]
    frame = frame[order].sort_values("utt_id", kind="stable").reset_index(drop=True)
    manifest = validate_manifest(frame, labels=labels)
    manifest.attrs["skipped"] = skipped
    return manifest


# --- helpers shared by the adapters (file naming, options, small readers) ------------------

_SHOWN = 5  # how many offending names a log line or error message shows before "... and N more"

#: Spellings of gender met in corpus metadata and user listings, lower-cased.
_GENDER_SPELLINGS: dict[str, str] = {
    **dict.fromkeys(("f", "female", "w", "woman", "weiblich"), "female"),  # w: German corpora
    **dict.fromkeys(("m", "male", "man", "männlich"), "male"),
    **dict.fromkeys(("", "u", "?", "na", "n/a", "nan", "none", "unknown", "unspecified"), "unknown"),
}


def shorten(items: Iterable[object], limit: int = _SHOWN) -> str:
    """`items` joined by commas, cut after `limit` with "... and N more"."""
    items = [str(i) for i in items]
    shown = ", ".join(items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")


def existing_file(path: str | os.PathLike, what: str = "file") -> Path:
    """`path` as a resolved Path, or FileNotFoundError naming it and what it should be."""
    candidate = Path(path).expanduser()
    if not candidate.is_file():
        raise FileNotFoundError(f"{candidate}: {what} not found")
    return candidate.resolve()


def warn_skipped(
    logger: logging.Logger, corpus: str, paths: Sequence[Path], why: str, root: Path | None = None
) -> None:
    """Log (warning) how many files were left out and why, naming the first few."""
    if not paths:
        return
    names = [p.relative_to(root) if root is not None and p.is_relative_to(root) else p for p in paths]
    logger.warning("%s: skipped %d file(s) that %s: %s", corpus, len(paths), why, shorten(names))


def match_names(
    files: Iterable[Path],
    pattern: re.Pattern[str],
    corpus: str,
    logger: logging.Logger,
    convention: str,
    root: Path | None = None,
) -> list[tuple[Path, re.Match[str]]]:
    """Pair each file with `pattern`'s full match on its stem; log and drop the others.

    Args:
        files: Candidate audio files.
        pattern: Compiled regex matched against the whole file stem.
        corpus: Corpus name for the log message.
        logger: The adapter's logger.
        convention: The official naming, e.g. ``"03a01Fa.wav"``, quoted in the log message.
        root: Shown paths are relative to it.

    Returns:
        ``(path, match)`` for every file whose stem follows the naming, in input order.
    """
    matched: list[tuple[Path, re.Match[str]]] = []
    foreign: list[Path] = []
    for path in files:
        found = pattern.fullmatch(path.stem)
        if found:
            matched.append((path, found))
        else:
            foreign.append(path)
    warn_skipped(logger, corpus, foreign, f"do not follow the naming {convention!r}", root)
    return matched


def gender_from_letter(letter: str) -> str:
    """``F``/``f`` -> female, ``M``/``m`` -> male (the convention of every corpus here)."""
    return {"f": "female", "m": "male"}[letter.lower()]


def normalize_gender(value: object) -> str | None:
    """A free-form gender value as ``female``/``male``/``unknown``, or None if unrecognised."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return "unknown"
    return _GENDER_SPELLINGS.get(str(value).strip().lower())


def check_classes(corpus: str, classes: object, choices: Sequence[int]) -> int:
    """Validate a ``classes`` option (an int, as JSON from the CLI gives it)."""
    if isinstance(classes, bool) or not isinstance(classes, int) or classes not in choices:
        raise ValueError(f"{corpus}: classes must be one of {list(choices)}, got {classes!r}")
    return classes


def read_json(path: str | os.PathLike, what: str) -> object:
    """Parse a JSON file; missing or malformed files raise errors naming the file."""
    source = existing_file(path, what)
    try:
        return json.loads(source.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{source}: not a readable JSON {what} ({exc})") from None


def decode_text(data: bytes, source: str) -> str:
    """UTF-8 text (BOM dropped, surrounding whitespace stripped); anything else names `source`."""
    try:
        return data.decode("utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source}: transcript is not UTF-8 text ({exc})") from None


def frame_of(rows: list[dict], optional: Iterable[str] = ()) -> pd.DataFrame:
    """Rows as a DataFrame that has the manifest's listing columns even when `rows` is empty."""
    columns = ["utt_id", "path", "speaker", "gender", "label", *optional]
    return pd.DataFrame(rows, columns=columns)

"""What every adapter shares: finding audio files, adding durations, validating."""

from __future__ import annotations

import os
from collections.abc import Iterable
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

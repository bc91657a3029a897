"""Any corpus stored as one folder per label: ``root/<label>/**/<audio>``.

The label is the name of the top-level folder a file sits in. Every audio-looking file is
used or listed in ``attrs["skipped"]`` (so in ``manifest.errors.csv``) with its reason: files
directly in ``root`` (no label), audio under an unknown extension (see
`serkit.data.datasets._common.scan_audio`), unreadable audio, names that are not UTF-8. The utt_id is the path relative to ``root`` without its extension,
with ``/`` replaced by ``__`` (``angry/s01/take1.wav`` -> ``angry__s01__take1``), so it is
unique within the corpus. Gender is ``unknown``.

Options:
    speaker_pattern: A regular expression with a named group ``speaker``, searched in each
        file stem (``(?P<speaker>spk\\d+)``); a file it does not match is an error listing
        those files. Without it every speaker is ``unknown``, which rules out
        speaker-independent evaluation.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pandas as pd

from serkit.data.datasets._common import existing_dir, finish, frame_of, scan_audio, shorten, warn_skipped

__all__ = ["LABELS", "NAME", "list_utterances", "prepare"]

log = logging.getLogger(__name__)

NAME = "folder"
LABELS: tuple[str, ...] | None = None


def list_utterances(root: str | os.PathLike, *, speaker_pattern: str | None = None) -> pd.DataFrame:
    """List ``root/<label>/**/<audio>`` as manifest rows.

    Args:
        root: The corpus folder, one sub-folder per label.
        speaker_pattern: Regex with a named group ``speaker``, searched in each file stem.

    Returns:
        Rows with utt_id, path, speaker, gender (unknown), label; ``attrs["skipped"]`` lists
        the audio-looking files left out, with their reasons.

    Raises:
        FileNotFoundError: `root` does not exist.
        ValueError: A bad `speaker_pattern`, or files it does not match (listed).
    """
    pattern = _compile(speaker_pattern)
    folder = existing_dir(root)
    rows: list[dict] = []
    loose: list[Path] = []
    unmatched: list[str] = []
    files, left_out = scan_audio(folder)
    for path in files:
        relative = path.relative_to(folder)
        if len(relative.parts) < 2:
            loose.append(path)
            continue
        speaker = "unknown"
        if pattern is not None:
            found = pattern.search(path.stem)
            if found is None or not found["speaker"]:
                unmatched.append(relative.as_posix())
                continue
            speaker = found["speaker"]
        rows.append(
            {
                "utt_id": relative.with_suffix("").as_posix().replace("/", "__"),
                "path": str(path),
                "speaker": speaker,
                "gender": "unknown",
                "label": relative.parts[0],
            }
        )
    warn_skipped(log, NAME, loose, "are not inside a label folder", folder, left_out=left_out,
                 reason="not inside a label folder (ROOT/<label>/...), so nothing gives its label")
    if left_out:
        log.warning("%s: %d audio-looking file(s) left out; they are listed with the reasons", NAME, len(left_out))
    if unmatched:
        raise ValueError(
            f"{folder}: speaker_pattern {speaker_pattern!r} does not match {len(unmatched)} file name(s): "
            f"{shorten(unmatched, 20)}"
        )
    if pattern is None and rows:
        log.warning("%s: no speaker_pattern; every speaker is 'unknown', so speaker-independent evaluation "
                    "is impossible", NAME)
    return frame_of(rows, left_out=left_out)


def prepare(root: str | os.PathLike, **options) -> pd.DataFrame:
    """`list_utterances` plus durations and validation (see `serkit.data.datasets.prepare`)."""
    return finish(list_utterances(root, **options), NAME, LABELS)


def _compile(speaker_pattern: str | None) -> re.Pattern[str] | None:
    if speaker_pattern is None:
        return None
    if not isinstance(speaker_pattern, str):
        raise ValueError(f"{NAME}: speaker_pattern must be a string, got {speaker_pattern!r}")
    try:
        pattern = re.compile(speaker_pattern)
    except re.error as exc:
        raise ValueError(f"{NAME}: speaker_pattern {speaker_pattern!r} is not a valid regex ({exc})") from None
    if "speaker" not in pattern.groupindex:
        raise ValueError(f"{NAME}: speaker_pattern {speaker_pattern!r} needs a named group (?P<speaker>...)")
    return pattern

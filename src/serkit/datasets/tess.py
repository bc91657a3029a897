"""TESS, the Toronto Emotional Speech Set (English).

2800 stimuli: two actresses, aged 64 (``OAF``, older adult female) and 26 (``YAF``, younger
adult female), say "Say the word ___" with 200 target words of the NU-6 test in seven emotions;
24.4 kHz WAV (Dupuis and Pichora-Fuller, University of Toronto, 2010;
doi.org/10.5683/SP2/E8H2MF).

Layout: one folder per speaker and emotion, e.g. ``OAF_angry/OAF_back_angry.wav``; files are
found at any depth below the root.

File naming: ``<speaker>_<word>_<emotion>.wav``. The label is taken from the file name's last
token, case-insensitively, because the folders are spelled inconsistently in the official
release (``OAF_Fear`` next to ``YAF_fear``, ``OAF_Pleasant_surprise`` next to
``YAF_pleasant_surprised``) while the files use the short codes.

Emotion tokens -> labels: angry, disgust, fear, happy, neutral, sad, and ``ps`` (pleasant
surprise) -> surprised. Speakers: OAF and YAF, both female. The utt_id is the file stem, as
written (unique in the corpus because it starts with the speaker).
"""

from __future__ import annotations

import logging
import os
import re

import pandas as pd

from serkit.datasets._common import audio_files, existing_dir, finish, frame_of, match_names

__all__ = ["LABELS", "NAME", "list_utterances", "prepare"]

log = logging.getLogger(__name__)

NAME = "tess"

EMOTIONS: dict[str, str] = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "surprised",
    "sad": "sad",
}
LABELS: tuple[str, ...] = tuple(sorted(EMOTIONS.values()))
SPEAKERS: tuple[str, ...] = ("OAF", "YAF")

_NAMING = re.compile(
    rf"(?P<speaker>{'|'.join(SPEAKERS)})_(?P<word>[^_]+)_(?P<emotion>{'|'.join(EMOTIONS)})", re.IGNORECASE
)


def list_utterances(root: str | os.PathLike) -> pd.DataFrame:
    """Read TESS's file names into manifest rows.

    Args:
        root: The corpus folder (holding ``OAF_angry/`` ...).

    Returns:
        Rows with utt_id (the file stem), path, speaker (``OAF``/``YAF``), gender (female), label.

    Raises:
        FileNotFoundError: `root` does not exist.
    """
    folder = existing_dir(root)
    rows = [
        {
            "utt_id": path.stem,
            "path": str(path),
            "speaker": found["speaker"].upper(),
            "gender": "female",
            "label": EMOTIONS[found["emotion"].lower()],
        }
        for path, found in match_names(audio_files(folder), _NAMING, NAME, log, "OAF_back_angry.wav", folder)
    ]
    return frame_of(rows)


def prepare(root: str | os.PathLike, **options) -> pd.DataFrame:
    """`list_utterances` plus durations and validation (see `serkit.datasets.prepare`)."""
    return finish(list_utterances(root, **options), NAME, LABELS)

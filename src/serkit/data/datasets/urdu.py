"""URDU, an emotional speech dataset of Urdu talk shows.

400 natural utterances from Urdu TV talk shows, 100 per emotion, 44.1 kHz mono WAV (Latif et
al., "Cross Lingual Speech Emotion Recognition: Urdu vs. Western Languages", FIT 2018,
arXiv:1812.10411; github.com/siddiquelatif/URDU-Dataset; research use only).

Layout: one folder per emotion, ``Angry/ Happy/ Neutral/ Sad/``.

File naming, e.g. ``SM1_F10_A010.wav``: ``S`` + gender letter (``M``/``F``) + speaker number,
then ``F`` + file (talk-show clip) number, then the emotion letter (``A``/``H``/``N``/``S``) +
utterance number. The speaker column is the first token as written (``SM1``); its second letter
gives the gender. The README counts 38 speakers but the names hold 29 codes (male ids seem to
be reused across talk shows), so "speakers" here are name codes.

Labels: angry, happy, neutral, sad. The label is the folder name (lower-cased); it must agree
with the letter in the file name, and any disagreement is an error listing the files. Files
outside an emotion folder are skipped like foreign names.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pandas as pd

from serkit.data.datasets._common import (
    audio_files,
    existing_dir,
    finish,
    frame_of,
    gender_from_letter,
    match_names,
    shorten,
    warn_skipped,
)

__all__ = ["LABELS", "NAME", "SHARED_4", "list_utterances", "prepare"]

log = logging.getLogger(__name__)

NAME = "urdu"

#: Emotion letter in the file name -> label (= lower-cased folder name).
EMOTIONS: dict[str, str] = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}
LABELS: tuple[str, ...] = tuple(sorted(EMOTIONS.values()))
#: Native label -> shared label (see the package docstring), matched by meaning to URDU's folders (Latif et al. 2018).
SHARED_4: dict[str, str] = {"angry": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad"}

_NAMING = re.compile(r"(?P<speaker>S(?P<gender>[MF])\d+)_F\d+_(?P<emotion>[AHNS])\d+")


def list_utterances(root: str | os.PathLike) -> pd.DataFrame:
    """Read URDU's folder and file names into manifest rows.

    Args:
        root: The corpus folder (holding ``Angry/ Happy/ Neutral/ Sad/``).

    Returns:
        Rows with utt_id (the file stem), path, speaker (``SM1``), gender, label.

    Raises:
        FileNotFoundError: `root` does not exist.
        ValueError: A file's emotion letter disagrees with its folder (all such files listed).
    """
    folder = existing_dir(root)
    left_out: list[dict[str, str]] = []
    rows: list[dict] = []
    outside: list[Path] = []
    disagree: list[str] = []
    for path, found in match_names(audio_files(folder), _NAMING, NAME, log, "SM1_F10_A010.wav", folder, left_out=left_out):
        label = path.parent.name.lower()
        if label not in LABELS:
            outside.append(path)
            continue
        if EMOTIONS[found["emotion"]] != label:
            disagree.append(str(path.relative_to(folder)))
            continue
        rows.append(
            {
                "utt_id": path.stem,
                "path": str(path),
                "speaker": found["speaker"],
                "gender": gender_from_letter(found["gender"]),
                "label": label,
            }
        )
    folders = ", ".join(label.title() for label in LABELS)
    warn_skipped(log, NAME, outside, f"are not in an emotion folder ({folders})", folder, left_out=left_out,
                 reason=f"not in an emotion folder ({folders})")
    if disagree:
        raise ValueError(
            f"{folder}: {len(disagree)} file(s) whose emotion letter disagrees with their folder: "
            f"{shorten(disagree, 20)}"
        )
    return frame_of(rows, left_out=left_out)


def prepare(root: str | os.PathLike, **options) -> pd.DataFrame:
    """`list_utterances` plus durations and validation (see `serkit.data.datasets.prepare`)."""
    return finish(list_utterances(root, **options), NAME, LABELS)

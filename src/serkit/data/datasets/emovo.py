"""EMOVO, an Italian emotional speech corpus.

588 acted utterances: 6 actors (3 female, 3 male) x 14 sentences x 7 emotional states,
recorded at 48 kHz (Costantini et al., LREC 2014; Fondazione Ugo Bordoni).

Layout: one folder per speaker, ``f1/ f2/ f3/ m1/ m2/ m3/``; files are found at any depth
below the root (any audio extension, so converted copies such as FLAC work too).

File naming, e.g. ``dis-f1-b1.wav``: ``<emotion>-<speaker>-<sentence>``. Speakers ``f1``-``f3``
are female, ``m1``-``m3`` male. Sentences: ``b1``-``b3`` (short), ``l1``-``l4`` (long),
``n1``-``n5`` (nonsense), ``d1``-``d2`` (questions).

Emotion codes (Italian) -> labels: ``dis`` disgust (disgusto), ``gio`` joy (gioia), ``neu``
neutral, ``pau`` fear (paura), ``rab`` anger (rabbia), ``sor`` surprise (sorpresa), ``tri``
sadness (tristezza). The utt_id is the file stem.
"""

from __future__ import annotations

import logging
import os
import re

import pandas as pd

from serkit.data.datasets._common import audio_files, existing_dir, finish, frame_of, gender_from_letter, match_names

__all__ = ["LABELS", "NAME", "SHARED_4", "list_utterances", "prepare"]

log = logging.getLogger(__name__)

NAME = "emovo"

#: Italian emotion code in the file name -> label (Costantini et al., LREC 2014, and the corpus README).
EMOTIONS: dict[str, str] = {
    "dis": "disgust",
    "gio": "joy",
    "neu": "neutral",
    "pau": "fear",
    "rab": "anger",
    "sor": "surprise",
    "tri": "sadness",
}
LABELS: tuple[str, ...] = tuple(sorted(EMOTIONS.values()))
#: Native label -> shared label (see the package docstring), matched by meaning to EMOVO's emotions (Costantini et al., LREC 2014).
SHARED_4: dict[str, str] = {"anger": "angry", "joy": "happy", "neutral": "neutral", "sadness": "sad"}

_NAMING = re.compile(rf"(?P<emotion>{'|'.join(EMOTIONS)})-(?P<speaker>(?P<gender>[fm])[1-3])-(?P<sentence>[a-z]\d)")


def list_utterances(root: str | os.PathLike) -> pd.DataFrame:
    """Read EMOVO's file names into manifest rows.

    Args:
        root: The corpus folder (holding ``f1/`` ... ``m3/``).

    Returns:
        Rows with utt_id (the file stem), path, speaker (``f1``), gender, label.

    Raises:
        FileNotFoundError: `root` does not exist.
    """
    folder = existing_dir(root)
    left_out: list[dict[str, str]] = []
    rows = [
        {
            "utt_id": path.stem,
            "path": str(path),
            "speaker": found["speaker"],
            "gender": gender_from_letter(found["gender"]),
            "label": EMOTIONS[found["emotion"]],
        }
        for path, found in match_names(audio_files(folder), _NAMING, NAME, log, "dis-f1-b1.wav", folder, left_out=left_out)
    ]
    return frame_of(rows, left_out=left_out)


def prepare(root: str | os.PathLike, **options) -> pd.DataFrame:
    """`list_utterances` plus durations and validation (see `serkit.data.datasets.prepare`)."""
    return finish(list_utterances(root, **options), NAME, LABELS)

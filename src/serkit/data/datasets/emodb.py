"""Berlin EmoDB, the Berlin Database of Emotional Speech (German).

535 acted utterances by 10 speakers (5 female, 5 male), 10 sentences each spoken in up to seven
emotions, 16 kHz mono WAV (Burkhardt et al., Interspeech 2005; emodb.bilderbar.info).

Layout: the official ``download.zip`` unpacks to ``wav/``, ``lablaut/``, ``silb/``; audio is
found anywhere below the root.

File naming, e.g. ``03a01Fa.wav``: 2-digit speaker (``03``), 3-character text code (``a01``),
emotion letter (``F``), version letter (``a``; several takes of one sentence and emotion).
The speaker column is the 2-digit code; gender comes from the official speaker list:
03 m, 08 f, 09 f, 10 m, 11 m, 12 m, 13 f, 14 f, 15 m, 16 f. Files of other speaker codes do not
belong to the corpus and are skipped like any other foreign name.

Emotion letters (German initials) -> labels: ``W`` anger (Ärger/Wut), ``L`` boredom
(Langeweile), ``E`` disgust (Ekel), ``A`` fear (Angst), ``F`` happiness (Freude), ``T``
sadness (Trauer), ``N`` neutral.
"""

from __future__ import annotations

import logging
import os
import re

import pandas as pd

from serkit.data.datasets._common import audio_files, existing_dir, finish, frame_of, match_names

__all__ = ["LABELS", "NAME", "SHARED_4", "list_utterances", "prepare"]

log = logging.getLogger(__name__)

NAME = "emodb"

#: Emotion letter in the file name (the German name's initial: Wut, Langeweile, Ekel, Angst,
#: Freude, Trauer, Neutral) -> label (Burkhardt et al., Interspeech 2005; emodb.bilderbar.info).
EMOTIONS: dict[str, str] = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
LABELS: tuple[str, ...] = tuple(sorted(EMOTIONS.values()))
#: Native label -> shared label (see the package docstring), matched by meaning to EmoDB's emotions (Burkhardt et al., Interspeech 2005).
SHARED_4: dict[str, str] = {"anger": "angry", "happiness": "happy", "neutral": "neutral", "sadness": "sad"}

#: The official speaker list: code -> gender.
SPEAKERS: dict[str, str] = {
    "03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
    "12": "male", "13": "female", "14": "female", "15": "male", "16": "female",
}

_NAMING = re.compile(
    rf"(?P<speaker>{'|'.join(SPEAKERS)})(?P<text>[ab]\d{{2}})(?P<emotion>[{''.join(EMOTIONS)}])(?P<version>[a-z])"
)


def list_utterances(root: str | os.PathLike) -> pd.DataFrame:
    """Read EmoDB's file names into manifest rows.

    Args:
        root: The corpus folder (holding ``wav/``).

    Returns:
        Rows with utt_id (the file stem), path, speaker (``"03"``), gender, label.

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
            "gender": SPEAKERS[found["speaker"]],
            "label": EMOTIONS[found["emotion"]],
        }
        for path, found in match_names(audio_files(folder), _NAMING, NAME, log, "03a01Fa.wav", folder, left_out=left_out)
    ]
    return frame_of(rows, left_out=left_out)


def prepare(root: str | os.PathLike, **options) -> pd.DataFrame:
    """`list_utterances` plus durations and validation (see `serkit.data.datasets.prepare`)."""
    return finish(list_utterances(root, **options), NAME, LABELS)

"""RAVDESS, the Ryerson Audio-Visual Database of Emotional Speech and Song (English).

24 professional actors (12 female, 12 male); this adapter keeps the audio-only speech part:
1440 files, 60 per actor, 48 kHz WAV (Livingstone and Russo, PLoS ONE 13(5), 2018;
zenodo.org/record/1188976, ``Audio_Speech_Actors_01-24.zip``).

Layout: ``Actor_01/ ... Actor_24/``; files are found at any depth below the root.

File naming: seven 2-digit fields, e.g. ``03-01-06-01-02-01-12.wav``:

1. modality: 01 full audio-video, 02 video-only, 03 audio-only;
2. vocal channel: 01 speech, 02 song;
3. emotion: 01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust,
   08 surprised;
4. intensity: 01 normal, 02 strong (neutral has no strong take);
5. statement: 01 "Kids are talking by the door", 02 "Dogs are sitting by the door";
6. repetition: 01 or 02;
7. actor: 01-24; odd-numbered actors are male, even-numbered female.

Only audio-only speech (modality 03, vocal channel 01) is kept; other well-formed RAVDESS
files (song, video) are counted in an info log. The speaker column uses the official folder
name of the actor, ``Actor_12``, so it reads the same as the distribution's folders.

Labels: neutral, calm, happy, sad, angry, fearful, disgust, surprised.
"""

from __future__ import annotations

import logging
import os
import re

import pandas as pd

from serkit.data.datasets._common import audio_files, existing_dir, finish, frame_of, match_names

__all__ = ["LABELS", "NAME", "SHARED_4", "list_utterances", "prepare"]

log = logging.getLogger(__name__)

NAME = "ravdess"

#: Emotion field (the third) of the file name -> label (Livingstone and Russo 2018; the zenodo README).
EMOTIONS: dict[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
LABELS: tuple[str, ...] = tuple(EMOTIONS.values())
#: Native label -> shared label (see the package docstring), matched by meaning to RAVDESS's emotions (Livingstone and Russo 2018; calm is left out).
SHARED_4: dict[str, str] = {"angry": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad"}

_NAMING = re.compile(
    r"(?P<modality>0[123])-(?P<channel>0[12])-(?P<emotion>0[1-8])-(?P<intensity>0[12])"
    r"-(?P<statement>0[12])-(?P<repetition>0[12])-(?P<actor>0[1-9]|1\d|2[0-4])"
)


def list_utterances(root: str | os.PathLike) -> pd.DataFrame:
    """Read RAVDESS's file names into manifest rows (audio-only speech only).

    Args:
        root: The corpus folder (holding ``Actor_01/`` ...).

    Returns:
        Rows with utt_id (the file stem), path, speaker (``Actor_12``), gender, label.

    Raises:
        FileNotFoundError: `root` does not exist.
    """
    folder = existing_dir(root)
    left_out: list[dict[str, str]] = []
    rows: list[dict] = []
    other = 0
    for path, found in match_names(audio_files(folder), _NAMING, NAME, log, "03-01-06-01-02-01-12.wav", folder,
                                   left_out=left_out):
        if (found["modality"], found["channel"]) != ("03", "01"):
            other += 1  # song or video files of the same corpus: left out by design
            continue
        actor = int(found["actor"])
        rows.append(
            {
                "utt_id": path.stem,
                "path": str(path),
                "speaker": f"Actor_{actor:02d}",
                "gender": "male" if actor % 2 else "female",
                "label": EMOTIONS[found["emotion"]],
            }
        )
    if other:
        log.info("%s: left out %d song or video file(s); only audio-only speech (03-01-...) is kept", NAME, other)
    return frame_of(rows, left_out=left_out)


def prepare(root: str | os.PathLike, **options) -> pd.DataFrame:
    """`list_utterances` plus durations and validation (see `serkit.data.datasets.prepare`)."""
    return finish(list_utterances(root, **options), NAME, LABELS)

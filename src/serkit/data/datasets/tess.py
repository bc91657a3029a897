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

A file whose name is off only in its speaker code (the release has ``OAF_neutral/OA_bite_neutral.wav``)
takes its speaker and label from its folder, with a warning; a name that disagrees with its
folder keeps the name's, with a warning; a file named by neither is listed in
``manifest.errors.csv``.

Emotion tokens -> labels: angry, disgust, fear, happy, neutral, sad, and ``ps`` (pleasant
surprise) -> surprised. Speakers: OAF and YAF, both female. The utt_id is the file stem, as
written (unique in the corpus because it starts with the speaker).
"""

from __future__ import annotations

import logging
import os
import re

import pandas as pd

from serkit.data.datasets._common import audio_files, existing_dir, finish, frame_of, shorten, warn_skipped

__all__ = ["LABELS", "NAME", "SHARED_4", "list_utterances", "prepare"]

log = logging.getLogger(__name__)

NAME = "tess"

#: Emotion token at the end of the file name -> label (TESS documentation, doi.org/10.5683/SP2/E8H2MF).
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
#: Native label -> shared label (see the package docstring), matched by meaning to TESS's emotions (Dupuis and Pichora-Fuller 2010).
SHARED_4: dict[str, str] = {"angry": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad"}
SPEAKERS: tuple[str, ...] = ("OAF", "YAF")

_NAMING = re.compile(
    rf"(?P<speaker>{'|'.join(SPEAKERS)})_(?P<word>[^_]+)_(?P<emotion>{'|'.join(EMOTIONS)})", re.IGNORECASE
)

#: A name off only in its speaker code, like the release's ``OAF_neutral/OA_bite_neutral.wav``.
_LOOSE_NAMING = re.compile(rf"[A-Za-z]+_(?P<word>[^_]+)_(?P<emotion>{'|'.join(EMOTIONS)})", re.IGNORECASE)

#: The release's folder names: ``OAF_angry``, ``OAF_Fear``, ``OAF_Pleasant_surprise``,
#: ``YAF_pleasant_surprised`` ...
_FOLDER = re.compile(rf"(?P<speaker>{'|'.join(SPEAKERS)})_(?P<emotion>[A-Za-z_]+)", re.IGNORECASE)
_FOLDER_EMOTIONS: dict[str, str] = {
    **{token: label for token, label in EMOTIONS.items() if token != "ps"},
    "pleasant_surprise": "surprised",
    "pleasant_surprised": "surprised",
    "surprise": "surprised",
    "surprised": "surprised",
}


def _from_folder(path) -> tuple[str, str] | None:
    """(speaker, label) named by the folder a file sits in, or None."""
    found = _FOLDER.fullmatch(path.parent.name)
    if found is None:
        return None
    label = _FOLDER_EMOTIONS.get(found["emotion"].lower())
    return None if label is None else (found["speaker"].upper(), label)


def list_utterances(root: str | os.PathLike) -> pd.DataFrame:
    """Read TESS's file names into manifest rows.

    The speaker and label come from the file name. A name that follows the naming except for
    its speaker code (the release's ``OAF_neutral/OA_bite_neutral.wav``) takes both from its
    folder, with a warning; a name whose label disagrees with its folder keeps the name's, with
    a warning. Files named by neither are left out and listed (``attrs["skipped"]``).

    Args:
        root: The corpus folder (holding ``OAF_angry/`` ...).

    Returns:
        Rows with utt_id (the file stem), path, speaker (``OAF``/``YAF``), gender (female), label.

    Raises:
        FileNotFoundError: `root` does not exist.
    """
    folder = existing_dir(root)
    rows: list[dict] = []
    left_out: list[dict[str, str]] = []
    by_folder: list[str] = []
    disagree: list[str] = []
    for path in audio_files(folder):
        found = _NAMING.fullmatch(path.stem)
        from_folder = _from_folder(path)
        relative = path.relative_to(folder).as_posix()
        if found is not None:
            speaker, label = found["speaker"].upper(), EMOTIONS[found["emotion"].lower()]
            if from_folder is not None and from_folder != (speaker, label):
                disagree.append(f"{relative} (folder: {from_folder[0]} {from_folder[1]})")
        elif from_folder is not None and _LOOSE_NAMING.fullmatch(path.stem):
            speaker, label = from_folder
            by_folder.append(relative)
        else:
            left_out.append(path)
            continue
        rows.append({"utt_id": path.stem, "path": str(path), "speaker": speaker, "gender": "female", "label": label})
    if by_folder:
        log.warning("%s: %d file name(s) do not follow the naming 'OAF_back_angry.wav'; speaker and label taken "
                    "from their folder: %s", NAME, len(by_folder), shorten(by_folder))
    if disagree:
        log.warning("%s: %d file name(s) disagree with their folder; the name's speaker and label are kept: %s",
                    NAME, len(disagree), shorten(disagree))
    skipped: list[dict[str, str]] = []
    warn_skipped(log, NAME, left_out, "follow neither the naming 'OAF_back_angry.wav' nor sit in a speaker_emotion "
                 "folder", folder, left_out=skipped,
                 reason="neither the name (OAF_back_angry.wav) nor the folder (OAF_angry/) gives its label")
    return frame_of(rows, left_out=skipped)


def prepare(root: str | os.PathLike, **options) -> pd.DataFrame:
    """`list_utterances` plus durations and validation (see `serkit.data.datasets.prepare`)."""
    return finish(list_utterances(root, **options), NAME, LABELS)

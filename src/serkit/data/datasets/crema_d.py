"""CREMA-D, the Crowd-sourced Emotional Multimodal Actors Dataset (English).

7442 clips by 91 actors (48 male, 43 female, aged 20-74) speaking 12 sentences in six
emotions, 16 kHz mono WAV (Cao et al., IEEE Trans. Affective Computing 5(4), 2014;
github.com/CheyneyComputerScience/CREMA-D).

Layout: audio in ``AudioWAV/`` (found anywhere below the root); the actors' demographics in
``VideoDemographics.csv`` (columns ActorID, Age, Sex, Race, Ethnicity; Sex is Male/Female).

File naming, e.g. ``1001_DFA_ANG_XX.wav``: 4-digit actor id, sentence code, emotion code,
intensity code.

- Sentences: IEO, TIE, IOM, IWW, TAI, MTI, IWL, ITH, DFA, ITS, TSI, WSI.
- Emotions -> labels: ``ANG`` anger, ``DIS`` disgust, ``FEA`` fear, ``HAP`` happy,
  ``NEU`` neutral, ``SAD`` sad.
- Intensity: ``LO`` low, ``MD`` medium, ``HI`` high, ``XX`` unspecified. Older copies name one
  file ``1040_ITH_SAD_X.wav`` (fixed upstream to ``_XX``); ``X`` is accepted as ``XX``.

The speaker column is the actor id. Gender comes from ``VideoDemographics.csv`` when it is found
below the root or given as ``demographics``; without it every gender is ``unknown``. The labels
are the intended (acted) emotions, not the crowd-sourced perceived ones.
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
    existing_file,
    finish,
    frame_of,
    match_names,
    normalize_gender,
    shorten,
)

__all__ = ["LABELS", "NAME", "SHARED_4", "list_utterances", "prepare"]

log = logging.getLogger(__name__)

NAME = "crema_d"

#: Emotion code in the file name -> label (Cao et al. 2014; the CREMA-D repository README).
EMOTIONS: dict[str, str] = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
LABELS: tuple[str, ...] = tuple(EMOTIONS.values())
#: Native label -> shared label (see the package docstring), matched by meaning to CREMA-D's emotions (Cao et al. 2014).
SHARED_4: dict[str, str] = {"anger": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad"}
SENTENCES: tuple[str, ...] = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
DEMOGRAPHICS_FILE = "VideoDemographics.csv"

_NAMING = re.compile(
    rf"(?P<actor>\d{{4}})_(?P<sentence>{'|'.join(SENTENCES)})_(?P<emotion>{'|'.join(EMOTIONS)})"
    r"_(?P<intensity>LO|MD|HI|XX|X)"
)


def list_utterances(root: str | os.PathLike, *, demographics: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read CREMA-D's file names (and the actors' sex) into manifest rows.

    Args:
        root: The corpus folder (holding ``AudioWAV/``).
        demographics: ``VideoDemographics.csv``; by default it is looked for below `root`.

    Returns:
        Rows with utt_id (the file stem), path, speaker (actor id), gender, label.

    Raises:
        FileNotFoundError: `root` or the given `demographics` does not exist.
        ValueError: The demographics file lacks ActorID/Sex or has unknown Sex values.
    """
    folder = existing_dir(root)
    left_out: list[dict[str, str]] = []
    table = _find_demographics(folder, demographics)
    genders = read_demographics(table) if table is not None else {}
    rows = [
        {
            "utt_id": path.stem,
            "path": str(path),
            "speaker": found["actor"],
            "gender": genders.get(found["actor"], "unknown"),
            "label": EMOTIONS[found["emotion"]],
        }
        for path, found in match_names(_wav_first(folder), _NAMING, NAME, log, "1001_DFA_ANG_XX.wav", folder,
                                       left_out=left_out)
    ]
    frame = frame_of(rows, left_out=left_out)
    if table is None:
        log.warning("%s: %s not found below %s; every gender is 'unknown'", NAME, DEMOGRAPHICS_FILE, folder)
    else:
        absent = sorted(set(frame["speaker"]) - set(genders))
        if absent:
            log.warning("%s: actor(s) %s are not in %s; their gender is 'unknown'", NAME, shorten(absent), table)
    return frame


def _wav_first(folder: Path) -> list[Path]:
    """The audio files, without the release's copies of WAV clips in other formats.

    The full release also holds every clip as ``AudioMP3/*.mp3`` and ``VideoMP4/*.mp4``; those
    with a WAV of the same name are the same utterances and are not listed twice.
    """
    files = audio_files(folder)
    wav = {p.stem for p in files if p.suffix.lower() == ".wav"}
    copies = [p for p in files if p.suffix.lower() != ".wav" and p.stem in wav]
    if copies:
        log.info("%s: %d copies of WAV clips in other formats (AudioMP3/, VideoMP4/) not listed again", NAME, len(copies))
    return [p for p in files if p.suffix.lower() == ".wav" or p.stem not in wav]


def prepare(root: str | os.PathLike, **options) -> pd.DataFrame:
    """`list_utterances` plus durations and validation (see `serkit.data.datasets.prepare`)."""
    return finish(list_utterances(root, **options), NAME, LABELS)


def read_demographics(path: str | os.PathLike) -> dict[str, str]:
    """``{actor id: gender}`` from ``VideoDemographics.csv``.

    Raises:
        ValueError: Missing ActorID/Sex columns or unrecognised Sex values (listed).
    """
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable demographics CSV ({exc})") from None
    table.columns = [c.strip() for c in table.columns]
    missing = {"ActorID", "Sex"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: lacks column(s) {sorted(missing)}; found {list(table.columns)}")
    genders = {actor.strip(): normalize_gender(sex) for actor, sex in zip(table["ActorID"], table["Sex"])}
    bad = sorted(actor for actor, gender in genders.items() if gender is None)
    if bad:
        raise ValueError(f"{path}: unrecognised Sex for actor(s) {shorten(bad)}")
    return genders  # type: ignore[return-value]  # None values were rejected above


def _find_demographics(folder: Path, given: str | os.PathLike | None) -> Path | None:
    if given is not None:
        return existing_file(given, "CREMA-D demographics file")
    found = sorted(folder.rglob(DEMOGRAPHICS_FILE))
    return found[0] if found else None

"""IEMOCAP, the Interactive Emotional Dyadic Motion Capture database (English).

About 12 h of dyadic sessions (improvised and scripted) by 10 actors, one woman and one man
per session, 5 sessions, segmented into about 10k utterances of 16 kHz WAV (Busso et al.,
Language Resources and Evaluation 42(4), 2008; sail.usc.edu/iemocap, licence on request).

Layout (as released, ``IEMOCAP_full_release/``)::

    Session1/dialog/EmoEvaluation/<dialog>.txt         consensus labels, one file per dialog
    Session1/dialog/transcriptions/<dialog>.txt        transcripts (optional here)
    Session1/sentences/wav/<dialog>/<utt_id>.wav       one file per utterance

Only the ``*.txt`` files directly in ``EmoEvaluation/`` are read (its subfolders hold the
individual annotators' ratings). A label line looks like
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``.

Utterance naming, e.g. ``Ses01F_impro01_F000`` or ``Ses01M_script01_1_M012``: ``Ses01`` is the
session, the letter after it says who wore the markers (not who speaks), the middle part is
the dialog, and the letter of the last token (``F000``) is the gender of the utterance's
speaker. Each session has one female and one male actor, so the speaker column is the session
plus that letter (``Ses01F``), the gender follows the letter, and ``session`` is
``Session1`` ... ``Session5``.

Labels (option ``classes``, only 4 is supported): the usual 4-class setup, ``neu`` neutral,
``hap`` and ``exc`` (excited) merged into happy, ``sad`` sad, ``ang`` angry. Utterances with
other consensus labels (``fru``, ``sur``, ``fea``, ``dis``, ``oth``, ``xxx`` = no majority) are
left out, with their counts logged.

Transcripts: when ``dialog/transcriptions/<dialog>.txt`` files exist, lines like
``Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.`` fill a ``transcript`` column.

The label files, not the audio folders, list the corpus: a labelled utterance whose WAV is
missing is reported by validation as a missing audio file.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from serkit.data.datasets._common import check_classes, existing_dir, finish, frame_of, shorten

__all__ = ["LABELS", "NAME", "SHARED_4", "list_utterances", "prepare"]

log = logging.getLogger(__name__)

NAME = "iemocap"

#: Consensus code -> label of the 4-class setup.
EMOTIONS_4: dict[str, str] = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
LABELS: tuple[str, ...] = ("angry", "happy", "neutral", "sad")
#: Native label -> shared label (see the package docstring), matched by meaning to the 4-class IEMOCAP labels above (already the shared four).
SHARED_4: dict[str, str] = {"angry": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad"}

_LABEL_LINE = re.compile(r"\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(?P<utt>\S+)\s+(?P<code>\S+)\s+\[.*")
_UTTERANCE = re.compile(r"(?P<dialog>Ses(?P<session>0[1-5])[FM]_\S+)_(?P<gender>[FM])\d{3}")
_TRANSCRIPT_LINE = re.compile(r"(?P<utt>\S+)\s+\[[\d.]+\s*-\s*[\d.]+\]:\s?(?P<text>.*)")


def list_utterances(root: str | os.PathLike, *, classes: int = 4) -> pd.DataFrame:
    """Read IEMOCAP's consensus labels (and transcripts) into manifest rows.

    Args:
        root: The release folder (holding ``Session1/`` ... ``Session5/``).
        classes: The class setup; only 4 (neutral, happy+excited, sad, angry) is supported.

    Returns:
        Rows with utt_id, path, speaker (``Ses01F``), gender, label, session (and transcript).

    Raises:
        FileNotFoundError: `root` does not exist or holds no ``SessionN/dialog/EmoEvaluation``.
        ValueError: ``classes`` other than 4.
    """
    check_classes(NAME, classes, (4,))
    folder = existing_dir(root)
    sessions = sorted(p for p in folder.glob("Session[1-5]") if (p / "dialog" / "EmoEvaluation").is_dir())
    if not sessions:
        raise FileNotFoundError(
            f"{folder}: no Session1..Session5/dialog/EmoEvaluation folders (not an IEMOCAP release?)"
        )
    rows: list[dict] = []
    left_out: Counter[str] = Counter()
    foreign: list[str] = []
    for session in sessions:
        for utt_id, code in _read_labels(session / "dialog" / "EmoEvaluation"):
            found = _UTTERANCE.fullmatch(utt_id)
            if found is None:
                foreign.append(utt_id)
                continue
            if code not in EMOTIONS_4:
                left_out[code] += 1
                continue
            rows.append(
                {
                    "utt_id": utt_id,
                    "path": str(session / "sentences" / "wav" / found["dialog"] / f"{utt_id}.wav"),
                    "speaker": f"Ses{found['session']}{found['gender']}",
                    "gender": "female" if found["gender"] == "F" else "male",
                    "label": EMOTIONS_4[code],
                    "session": f"Session{int(found['session'])}",
                }
            )
    if foreign:
        log.warning("%s: skipped %d label(s) of utterance ids not named like 'Ses01F_impro01_F000': %s",
                    NAME, len(foreign), shorten(foreign))
    if left_out:
        log.info("%s: left out %d utterance(s) outside the %d classes: %s",
                 NAME, sum(left_out.values()), classes, dict(sorted(left_out.items())))
    frame = frame_of(rows, ("session",))
    texts = _read_transcripts(sessions)
    if texts:
        frame["transcript"] = [texts.get(utt, "") for utt in frame["utt_id"]]
    return frame


def prepare(root: str | os.PathLike, **options) -> pd.DataFrame:
    """`list_utterances` plus durations and validation (see `serkit.data.datasets.prepare`)."""
    return finish(list_utterances(root, **options), NAME, LABELS)


def _text_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.txt") if p.is_file() and not p.name.startswith("._"))


def _read_lines(path: Path) -> list[str]:
    # The release is ASCII; Latin-1 keeps a stray byte from stopping a whole corpus.
    data = path.read_bytes()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return data.decode("latin-1").splitlines()


def _read_labels(folder: Path) -> list[tuple[str, str]]:
    """``(utt_id, code)`` of every label line in one session's EmoEvaluation folder."""
    pairs: list[tuple[str, str]] = []
    bad: list[str] = []
    for path in _text_files(folder):
        for number, line in enumerate(_read_lines(path), start=1):
            if not line.startswith("["):
                continue  # header, blank and per-annotator lines
            found = _LABEL_LINE.fullmatch(line.strip())
            if found:
                pairs.append((found["utt"], found["code"]))
            else:
                bad.append(f"{path.name}:{number}")
    if bad:
        log.warning("%s: skipped %d unreadable label line(s) in %s: %s", NAME, len(bad), folder, shorten(bad))
    return pairs


def _read_transcripts(sessions: list[Path]) -> dict[str, str]:
    """``{utt_id: text}`` from every session's ``dialog/transcriptions``; empty when absent."""
    texts: dict[str, str] = {}
    for session in sessions:
        for path in _text_files(session / "dialog" / "transcriptions"):
            for line in _read_lines(path):
                found = _TRANSCRIPT_LINE.fullmatch(line.strip())
                if found:
                    texts[found["utt"]] = found["text"].strip()
    return texts

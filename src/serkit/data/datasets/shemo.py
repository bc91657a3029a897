"""ShEMO, the Sharif Emotional Speech Database (Persian).

3000 semi-natural utterances from Persian radio plays, 87 speakers (31 female, 56 male), about
3 h 25 min of 44.1 kHz mono WAV (Mohamad Nezami, Jamshid Lou and Karami, Language Resources
and Evaluation 53(1), 2019; github.com/pariajm/sharif-emotional-speech-dataset).

Layout: ``female.zip`` and ``male.zip`` unpack to ``female/F01A01.wav ...`` and
``male/M01A01.wav ...``; files are found at any depth below the root.

File naming, e.g. ``F03S02.wav``: gender letter (``F``/``M``), 2-digit speaker number, emotion
letter, 2-digit index. The speaker is the first three characters (``F03``); speaker numbers
restart per gender, so ``F03`` and ``M03`` are different people.

Emotion letters -> labels: ``A`` angry, ``F`` fearful, ``H`` happy, ``N`` neutral, ``S`` sad,
``W`` surprised. The corpus is unbalanced (neutral 1160, angry 1042, sad 362, happy 203,
surprised 201, fearful 32), which is why the original paper's experiments use 5 classes
without fearful (option ``classes=5``).

Options:
    classes: 6 (all labels) or 5 (drops fearful).
    relabel: A JSON file of corrected labels, such as ``modified_shemo.json`` of the Modified
        ShEMO release (github.com/aliyzd95/modified_shemo, arXiv 2211.09956), which fixes 163
        labels. Its top level maps an utterance (``"F01A01"`` or ``"F01A01.wav"``) either to a
        label, or to an object whose ``"emotion"`` is the label. A label may be any of this
        module's label names, the names that release uses (anger, fear, happiness, sadness,
        surprise, neutral) or an emotion letter. Only labels are taken from it.
    transcripts: The official transcript archive (``transcript.zip``) or its unpacked folder;
        every ``<utt_id>.ort`` in it (orthographic, UTF-8, found at any depth) fills a
        ``transcript`` column.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from serkit.data.datasets._common import (
    Archive,
    audio_files,
    check_classes,
    decode_text,
    existing_dir,
    finish,
    frame_of,
    gender_from_letter,
    match_names,
    read_json,
    shorten,
)

__all__ = ["ARCHIVES", "ARCHIVE_FOLDERS", "LABELS", "NAME", "SHARED_4", "download_hint", "list_utterances", "prepare"]

log = logging.getLogger(__name__)

NAME = "shemo"

#: Emotion letter in the file name -> label.
EMOTIONS: dict[str, str] = {
    "A": "angry",
    "F": "fearful",
    "H": "happy",
    "N": "neutral",
    "S": "sad",
    "W": "surprised",
}
LABELS: tuple[str, ...] = tuple(sorted(EMOTIONS.values()))
#: Labels of the paper's 5-class setup (fearful has only 32 utterances).
LABELS_5: tuple[str, ...] = tuple(label for label in LABELS if label != "fearful")
#: Native label -> shared label (see the package docstring), matched by meaning to the labels of the ShEMO paper (Mohamad Nezami et al. 2019).
SHARED_4: dict[str, str] = {"angry": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad"}

#: Every accepted spelling of a label in a relabel file, lower-cased.
_LABEL_SPELLINGS: dict[str, str] = {
    **{letter.lower(): label for letter, label in EMOTIONS.items()},
    **{label: label for label in LABELS},
    "anger": "angry",
    "fear": "fearful",
    "happiness": "happy",
    "sadness": "sad",
    "surprise": "surprised",
}

#: The official ShEMO repository and its mirror; both keep the audio archives in Git LFS.
REPOSITORY = "https://github.com/mansourehk/ShEMO"
MIRROR = "https://github.com/pariajm/sharif-emotional-speech-dataset"


def _lfs_url(owner_repo: str, name: str, branch: str = "master") -> str:
    # media.githubusercontent.com serves the LFS object itself; github.com/<repo>/raw/...
    # only redirects there (and may hand out the small pointer file instead).
    return f"https://media.githubusercontent.com/media/{owner_repo}/{branch}/{name}"


#: ShEMO's two audio archives; sizes and SHA-256 are those of the Git LFS pointers in the
#: official repository.
ARCHIVES: tuple[Archive, ...] = (
    Archive(
        "female.zip",
        _lfs_url("mansourehk/ShEMO", "female.zip"),
        374_368_830,
        "663d8d7dceb44adbbf87d84be3a080fb691d169fbd972f6941e6302bc39f71e6",
        mirrors=(_lfs_url("pariajm/sharif-emotional-speech-dataset", "female.zip"),),
    ),
    Archive(
        "male.zip",
        _lfs_url("mansourehk/ShEMO", "male.zip"),
        496_606_401,
        "747670d0d918e59d5e5020cf66610242890b093d42968c467c4f02eb5e6a6b1a",
        mirrors=(_lfs_url("pariajm/sharif-emotional-speech-dataset", "male.zip"),),
    ),
)
#: The folders the archives unpack to (one per archive, see the module docstring): the corpus
#: root is the folder that holds them.
ARCHIVE_FOLDERS: tuple[str, ...] = ("female", "male")


def download_hint(archives: Sequence[Archive], dest: Path) -> str:
    """How to get `archives` into `dest` by hand, for errors on a machine without network."""
    names = " and ".join(a.name for a in archives)
    direct = ", ".join(a.url for a in archives)
    return (
        f"To do it by hand: on a connected machine download {names} from the official "
        f"repository {REPOSITORY} (Git LFS files: {direct}; mirror: {MIRROR}), put them in "
        f"{dest}, and run the same command again: archives already present are checked "
        f"(size and SHA-256) and used as they are. Or unzip them and run "
        f"`serkit prepare shemo DIR` on the folder holding female/ and male/."
    )


_NAMING = re.compile(r"(?P<speaker>(?P<gender>[FM])\d{2})(?P<emotion>[AFHNSW])\d{2}")


def labels_for(classes: int = 6) -> tuple[str, ...]:
    """The label set of a ``classes`` setting."""
    return LABELS if check_classes(NAME, classes, (6, 5)) == 6 else LABELS_5


def list_utterances(
    root: str | os.PathLike,
    *,
    classes: int = 6,
    relabel: str | os.PathLike | None = None,
    transcripts: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Read ShEMO's file names into manifest rows.

    Args:
        root: The corpus folder (holding ``female/`` and ``male/``).
        classes: 6, or 5 to drop fearful (after any relabelling).
        relabel: JSON file of corrected labels (see the module docstring).
        transcripts: ``transcript.zip`` or its unpacked folder; adds a ``transcript`` column.

    Returns:
        Rows with utt_id, path, speaker, gender, label (and transcript).

    Raises:
        FileNotFoundError: `root`, `relabel` or `transcripts` does not exist.
        ValueError: Bad ``classes``; a relabel file with ids absent from the corpus or with
            unknown labels; a transcript that is not UTF-8.
    """
    allowed = labels_for(classes)
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
        for path, found in match_names(audio_files(folder), _NAMING, NAME, log, "F03S02.wav", folder, left_out=left_out)
    ]
    frame = frame_of(rows)
    if relabel is not None:
        frame = _apply_relabel(frame, relabel)
    if transcripts is not None:
        texts = read_transcripts(transcripts)
        frame["transcript"] = [texts.get(utt, "") for utt in frame["utt_id"]]
        missing = int((frame["transcript"] == "").sum())
        if missing:
            log.warning("%s: %d utterance(s) have no transcript in %s", NAME, missing, transcripts)
    dropped = ~frame["label"].isin(allowed)
    if dropped.any():
        log.info("%s: classes=%d leaves out %d utterance(s) labelled %s",
                 NAME, classes, int(dropped.sum()), sorted(set(frame.loc[dropped, "label"])))
    frame = frame[~dropped].reset_index(drop=True)
    frame.attrs["skipped"] = left_out
    return frame


def prepare(root: str | os.PathLike, **options) -> pd.DataFrame:
    """`list_utterances` plus durations and validation (see `serkit.data.datasets.prepare`)."""
    return finish(list_utterances(root, **options), NAME, labels_for(options.get("classes", 6)))


def read_relabel(path: str | os.PathLike) -> dict[str, str]:
    """A relabel JSON as ``{utt_id: label}`` with labels in this module's names.

    Raises:
        ValueError: Not a JSON object, an entry without a label, or unknown label names
            (all listed, with the file).
    """
    data = read_json(path, "ShEMO relabel file")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a relabel file must be a JSON object mapping utterance ids to labels")
    labels: dict[str, str] = {}
    unknown: list[str] = []
    for key, value in data.items():
        raw = value.get("emotion") if isinstance(value, dict) else value
        if not isinstance(raw, str):
            raise ValueError(f"{path}: entry {key!r} has no label (expected a string or an object with 'emotion')")
        utt_id = Path(str(key)).stem  # keys may be "F01A01", "F01A01.wav" or a path
        label = _LABEL_SPELLINGS.get(raw.strip().lower())
        if label is None:
            unknown.append(f"{key}={raw!r}")
        else:
            labels[utt_id] = label
    if unknown:
        raise ValueError(
            f"{path}: unknown label(s) for {len(unknown)} utterance(s): {shorten(unknown)}; "
            f"known: {sorted(_LABEL_SPELLINGS)}"
        )
    return labels


def _apply_relabel(frame: pd.DataFrame, path: str | os.PathLike) -> pd.DataFrame:
    labels = read_relabel(path)
    absent = sorted(set(labels) - set(frame["utt_id"]))
    if absent:
        raise ValueError(f"{path}: {len(absent)} utterance id(s) are not in the corpus: {shorten(absent, 20)}")
    new = frame["utt_id"].map(labels).fillna(frame["label"])
    log.info("%s: %s changes %d label(s)", NAME, path, int((new != frame["label"]).sum()))
    return frame.assign(label=new)


def read_transcripts(source: str | os.PathLike) -> dict[str, str]:
    """Orthographic transcripts ``{utt_id: text}`` from ``transcript.zip`` or a folder.

    Every ``*.ort`` file counts, wherever it sits (the official zip keeps them in
    ``final text/``, the phonetic ``.tra`` files in ``final script/``).

    Raises:
        FileNotFoundError: `source` does not exist.
        ValueError: Not a zip archive or folder, or a transcript is not UTF-8.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return {p.stem: decode_text(p.read_bytes(), str(p)) for p in sorted(path.rglob("*.ort"))}
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ShEMO transcripts (zip or folder) not found")
    try:
        with zipfile.ZipFile(path) as archive:
            return {
                Path(name).stem: decode_text(archive.read(name), f"{path}:{name}")
                for name in archive.namelist()
                if name.lower().endswith(".ort") and not Path(name).name.startswith("._")
            }
    except zipfile.BadZipFile:
        raise ValueError(f"{path}: not a zip archive (expected ShEMO's transcript.zip or its folder)") from None

"""What every adapter shares: finding audio files, parsing names, adding durations, validating.

Nothing is dropped silently: every audio-looking file an adapter does not list (a name outside
the corpus's naming, an unknown extension, unreadable audio, a name a UTF-8 manifest cannot
hold) ends up in ``manifest.attrs["skipped"]`` with its reason, which `serkit prepare` writes to
``manifest.errors.csv``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from serkit.data.audio import AudioError, display_name, probe
from serkit.data.schema import COLUMNS, OPTIONAL_COLUMNS, validate_manifest

#: Extensions read as audio: libsndfile's (WAV, FLAC, OGG, AIFF, AU, CAF, ...) and the
#: compressed and container formats FFmpeg decodes (MP3, M4A/AAC, MP4, WebM, Opus, AMR, ...).
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".mp3", ".au", ".w64", ".caf", ".snd",
     ".rf64", ".m4a", ".m4b", ".aac", ".mp4", ".3gp", ".webm", ".weba", ".mka", ".amr", ".wma", ".mp2", ".mpga",
     ".ac3", ".spx", ".wv", ".ape"}
)

#: Companions of audio in corpora (transcripts, alignments, metadata, pictures, video): never
#: opened by the scan. Files with any other extension are sniffed for audio content.
NOT_AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".txt", ".csv", ".tsv", ".json", ".jsonl", ".xml", ".yaml", ".yml", ".toml", ".md", ".rst", ".html", ".pdf",
     ".doc", ".docx", ".xls", ".xlsx", ".lab", ".textgrid", ".trn", ".wrd", ".phn", ".wdseg", ".phseg", ".syseg",
     ".eaf", ".rttm", ".ctm", ".stm", ".srt", ".vtt", ".jpg", ".jpeg", ".png", ".gif", ".svg", ".avi", ".mov",
     ".mkv", ".py", ".sh", ".zip", ".tar", ".gz", ".7z", ".rar", ".npy", ".npz", ".pt", ".pkl", ".h5", ".log"}
)

#: Leading bytes of audio containers -> what they are, for files whose extension says nothing.
_AUDIO_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (8, b"WAVE", "WAV"), (0, b"RF64", "WAV (RF64)"), (0, b"fLaC", "FLAC"), (0, b"OggS", "OGG"),
    (0, b"ID3", "MP3"), (8, b"AIFF", "AIFF"), (8, b"AIFC", "AIFF-C"), (0, b"caff", "CAF"), (0, b".snd", "AU"),
    (0, b"#!AMR", "AMR"), (4, b"ftypM4A", "M4A"), (4, b"ftyp", "MP4"), (0, b"\x1a\x45\xdf\xa3", "WebM/Matroska"),
    (0, b"version https://git-lfs", "a Git LFS pointer"),
)



@dataclass(frozen=True)
class Archive:
    """One official file of a corpus to download (`serkit.data.download` fetches and checks it).

    Attributes:
        name: The file name in the destination folder, e.g. ``female.zip``.
        url: Where to get it first.
        size: Its exact size in bytes.
        sha256: Its SHA-256, lowercase hex.
        mirrors: Further URLs tried in order when `url` fails.
    """

    name: str
    url: str
    size: int
    sha256: str
    mirrors: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        """`url` then the mirrors."""
        return (self.url, *self.mirrors)

def existing_dir(root: str | os.PathLike) -> Path:
    """`root` as a resolved Path, or FileNotFoundError naming it."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{display_name(path)}: corpus folder not found")
    return path.resolve()


def audio_files(root: Path, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """Every audio file below `root` (recursively, by extension, case-insensitive), sorted."""
    wanted = {e.lower() for e in extensions}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in wanted and not p.name.startswith("._"))


def sniff_audio(path: Path) -> str | None:
    """What kind of audio `path` holds judging by its first bytes (``"WAV"``, ``"M4A"``, ...), or None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(32)
    except OSError:
        return None
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and len(head) >= 4 and head[2] & 0xF0 != 0xF0:
        return "MPEG audio"  # an MP3/AAC frame sync with a valid bit-rate field
    for offset, magic, kind in _AUDIO_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return None


def scan_audio(root: Path) -> tuple[list[Path], list[dict[str, str]]]:
    """Every audio-looking file below `root`: those to use, and those left out with the reason.

    A file with an audio extension is used (whether it decodes is checked later). A file
    with another extension (or none) whose first bytes are audio is left out, with its
    reason: serkit goes by the extension, so the fix is to rename it. Known companions
    (transcripts, metadata, pictures) are not opened.

    Returns:
        ``(files, left_out)``: sorted paths, and ``{"path", "reason"}`` dicts.
    """
    files: list[Path] = []
    left_out: list[dict[str, str]] = []
    for path in _walk_files(root):
        suffix = path.suffix.lower()
        if suffix in AUDIO_EXTENSIONS:
            files.append(path)
        elif suffix not in NOT_AUDIO_EXTENSIONS:
            kind = sniff_audio(path)
            if kind is not None:
                shown = f"{suffix!r}" if suffix else "no extension"
                left_out.append({"path": display_name(path), "reason": _unknown_extension_reason(shown, kind)})
    return files, left_out


def _walk_files(root: Path) -> list[Path]:
    """Regular files below `root`, sorted, leaving out hidden folders (``.git``, whose LFS
    objects are audio without extensions), ``__MACOSX`` and AppleDouble ``._*`` files."""
    found: list[Path] = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d != "__MACOSX"]
        base = Path(folder)
        found.extend(base / n for n in names if not n.startswith("._") and (base / n).is_file())
    return sorted(found)


def _unknown_extension_reason(shown: str, kind: str) -> str:
    if kind == "a Git LFS pointer":
        return (f"unknown extension ({shown}), and the file is a Git LFS pointer, not audio: "
                "run `git lfs pull` to fetch it")
    return f"unknown extension ({shown}) but the content is {kind} audio: rename it with an audio extension to use it"


def finish(
    rows: pd.DataFrame | list[dict],
    corpus: str,
    labels: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Add ``corpus`` and ``duration`` (from each file's header) and validate.

    Files whose audio cannot be read, and rows a UTF-8 manifest cannot hold (file or folder
    names that are not UTF-8), are dropped and listed in ``attrs["skipped"]`` after whatever
    the adapter already left out (``rows.attrs["skipped"]``, see `frame_of`), so one bad file
    does not stop a whole corpus and none goes unreported.

    Args:
        rows: Manifest rows without duration (``utt_id, path, speaker, gender, label`` and
            optional columns).
        corpus: The corpus name written in every row unless the rows carry their own.
        labels: The allowed label set, or None.

    Returns:
        The validated manifest sorted by ``utt_id``; ``attrs["skipped"]`` lists
        ``{"path", "reason"}`` dicts whose paths are printable UTF-8.
    """
    skipped: list[dict[str, str]] = list(getattr(rows, "attrs", {}).get("skipped", []))
    if not isinstance(rows, pd.DataFrame):
        rows = _writable_rows(rows, skipped)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=[c for c in COLUMNS if c != "duration"])
    if "corpus" not in frame.columns:
        frame["corpus"] = corpus
    durations: list[float] = []
    for index, path in zip(frame.index, frame["path"]):
        unwritable = _not_utf8(frame.loc[index])
        if unwritable is not None:
            durations.append(float("nan"))
            skipped.append({"path": display_name(path), "reason": unwritable})
            continue
        try:
            durations.append(probe(path).duration)
        except AudioError as exc:
            durations.append(float("nan"))
            if Path(path).exists():
                skipped.append({"path": display_name(path), "reason": exc.reason})
            else:  # a missing file is a manifest error, reported with its row below
                durations[-1] = 1.0
    frame["duration"] = durations
    frame = frame[frame["duration"].notna()]
    order = [c for c in (*COLUMNS, *OPTIONAL_COLUMNS) if c in frame.columns]
    frame = frame[order].sort_values("utt_id", kind="stable").reset_index(drop=True)
    manifest = validate_manifest(frame, labels=labels)
    manifest.attrs["skipped"] = skipped
    return manifest


def _writable_rows(rows: Iterable[dict], left_out: list[dict[str, str]]) -> list[dict]:
    """The rows a UTF-8 manifest can hold; the others are appended to `left_out` with the reason.

    This runs before any DataFrame is built: pandas' Arrow-backed strings refuse the surrogate
    escapes by which Python carries file names that are not UTF-8.
    """
    kept: list[dict] = []
    for row in rows:
        reason = _not_utf8(row)
        if reason is None:
            kept.append(row)
        else:
            left_out.append({"path": display_name(row.get("path", "?")), "reason": reason})
    return kept


def _not_utf8(row: pd.Series | dict) -> str | None:
    """Why `row` cannot be written into a UTF-8 manifest (a name that is not UTF-8), or None."""
    items = sorted(row.items(), key=lambda item: item[0] != "path")  # the file name first
    for column, value in items:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                what = "file name" if column == "path" else f"{column} (from a file or folder name)"
                return (f"{what} is not valid UTF-8 ({display_name(value)}), so a UTF-8 manifest cannot hold it: "
                        "rename it, e.g. `convmv -f latin1 -t utf-8 --notest FILE` or re-extract the archive "
                        "with UTF-8 names")
    return None


# --- helpers shared by the adapters (file naming, options, small readers) ------------------

_SHOWN = 5  # how many offending names a log line or error message shows before "... and N more"

#: Spellings of gender met in corpus metadata and user listings, lower-cased.
_GENDER_SPELLINGS: dict[str, str] = {
    **dict.fromkeys(("f", "female", "w", "woman", "weiblich"), "female"),  # w: German corpora
    **dict.fromkeys(("m", "male", "man", "männlich"), "male"),
    **dict.fromkeys(("", "u", "?", "na", "n/a", "nan", "none", "unknown", "unspecified"), "unknown"),
}


def shorten(items: Iterable[object], limit: int = _SHOWN) -> str:
    """`items` joined by commas, cut after `limit` with "... and N more"."""
    items = [str(i) for i in items]
    shown = ", ".join(items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")


def existing_file(path: str | os.PathLike, what: str = "file") -> Path:
    """`path` as a resolved Path, or FileNotFoundError naming it and what it should be."""
    candidate = Path(path).expanduser()
    if not candidate.is_file():
        raise FileNotFoundError(f"{candidate}: {what} not found")
    return candidate.resolve()


def warn_skipped(
    logger: logging.Logger,
    corpus: str,
    paths: Sequence[Path],
    why: str,
    root: Path | None = None,
    *,
    left_out: list[dict[str, str]] | None = None,
    reason: str | None = None,
) -> None:
    """Log (warning) how many files were left out and why, naming the first few.

    Args:
        logger: The adapter's logger.
        corpus: Corpus name for the message.
        paths: The files left out.
        why: Completes "skipped N file(s) that ...".
        root: Shown paths are relative to it.
        left_out: When given, each file is appended to it as ``{"path", "reason"}``.
        reason: The reason recorded in `left_out` (default: `why`).
    """
    if not paths:
        return
    names = [p.relative_to(root) if root is not None and p.is_relative_to(root) else p for p in paths]
    logger.warning("%s: skipped %d file(s) that %s: %s", corpus, len(paths), why,
                   shorten(display_name(n) for n in names))
    if left_out is not None:
        left_out.extend({"path": display_name(p), "reason": reason or why} for p in paths)


def match_names(
    files: Iterable[Path],
    pattern: re.Pattern[str],
    corpus: str,
    logger: logging.Logger,
    convention: str,
    root: Path | None = None,
    *,
    left_out: list[dict[str, str]] | None = None,
) -> list[tuple[Path, re.Match[str]]]:
    """Pair each file with `pattern`'s full match on its stem; log and drop the others.

    Args:
        files: Candidate audio files.
        pattern: Compiled regex matched against the whole file stem.
        corpus: Corpus name for the log message.
        logger: The adapter's logger.
        convention: The official naming, e.g. ``"03a01Fa.wav"``, quoted in the log message.
        root: Shown paths are relative to it.
        left_out: When given, the files dropped are appended to it as ``{"path", "reason"}``.

    Returns:
        ``(path, match)`` for every file whose stem follows the naming, in input order.
    """
    matched: list[tuple[Path, re.Match[str]]] = []
    foreign: list[Path] = []
    for path in files:
        found = pattern.fullmatch(path.stem)
        if found:
            matched.append((path, found))
        else:
            foreign.append(path)
    warn_skipped(logger, corpus, foreign, f"do not follow the naming {convention!r}", root, left_out=left_out,
                 reason=f"the name does not follow {corpus}'s naming ({convention}), so nothing gives its label")
    return matched


def gender_from_letter(letter: str) -> str:
    """``F``/``f`` -> female, ``M``/``m`` -> male (the convention of every corpus here)."""
    return {"f": "female", "m": "male"}[letter.lower()]


def normalize_gender(value: object) -> str | None:
    """A free-form gender value as ``female``/``male``/``unknown``, or None if unrecognised."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return "unknown"
    return _GENDER_SPELLINGS.get(str(value).strip().lower())


def check_classes(corpus: str, classes: object, choices: Sequence[int]) -> int:
    """Validate a ``classes`` option (an int, as JSON from the CLI gives it)."""
    if isinstance(classes, bool) or not isinstance(classes, int) or classes not in choices:
        raise ValueError(f"{corpus}: classes must be one of {list(choices)}, got {classes!r}")
    return classes


def read_json(path: str | os.PathLike, what: str) -> object:
    """Parse a JSON file; missing or malformed files raise errors naming the file."""
    source = existing_file(path, what)
    try:
        return json.loads(source.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{source}: not a readable JSON {what} ({exc})") from None


def decode_text(data: bytes, source: str) -> str:
    """UTF-8 text (BOM dropped, surrounding whitespace stripped); anything else names `source`."""
    try:
        return data.decode("utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source}: transcript is not UTF-8 text ({exc})") from None


def frame_of(
    rows: list[dict], optional: Iterable[str] = (), left_out: list[dict[str, str]] | None = None
) -> pd.DataFrame:
    """Rows as a DataFrame that has the manifest's listing columns even when `rows` is empty.

    `left_out` (files the adapter did not list, as ``{"path", "reason"}``) travels in
    ``attrs["skipped"]`` to `finish`, joined by the rows a UTF-8 manifest cannot hold (file or
    folder names that are not UTF-8), which are left out here with a rename hint.
    """
    columns = ["utt_id", "path", "speaker", "gender", "label", *optional]
    skipped = list(left_out or [])
    frame = pd.DataFrame(_writable_rows(rows, skipped), columns=columns)
    frame.attrs["skipped"] = skipped
    return frame

"""The ``predefined`` protocol: fold membership read from files instead of drawn.

The files are folds CSVs (the format `serkit.evaluation.fold_table.write_folds` writes) or
EmoBox ``*_{train,test}_fold_N.jsonl`` lists, given one by one or as a folder; EmoBox's
1-based fold numbers are renumbered from 0 and its ``<dataset>-`` key prefix is cut. A fold
listing only test (and val) utterances trains on every other manifest utterance; listed ids
missing from the manifest, repeated listings and labels that disagree with the manifest are
logged, not fatal. `serkit.evaluation.splits` registers `predefined` in `PROTOCOLS`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serkit.evaluation.fold_table import SPLITS, folds_frame, listing, read_folds

__all__ = ["predefined"]

log = logging.getLogger(__name__)

_EMOBOX_NAME = re.compile(r"(?P<split>train|test|valid|val|dev)_fold_?(?P<fold>\d+)$", re.IGNORECASE)
_SPLIT_ALIASES = {"train": "train", "test": "test", "val": "val", "valid": "val", "dev": "val"}


def _fold_file_list(fold_files: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The files behind ``fold_files``: a list of files, or every ``*.csv``/``*.jsonl`` under a folder."""
    if isinstance(fold_files, (str, os.PathLike)):
        fold_files = [fold_files]
    files: list[Path] = []
    for item in fold_files:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".csv", ".jsonl") and p.is_file())
            if not found:
                raise ValueError(f"predefined: no *.csv or *.jsonl fold file under {path}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"predefined: fold file {path} not found")
    if not files:
        raise ValueError("predefined: fold_files is empty")
    return files


def _emobox_utt_id(record: Mapping[str, Any], known: set[str]) -> str:
    """EmoBox's ``key`` (``shemo-M32S01``) without its ``<dataset>-`` prefix."""
    key = str(record["key"])
    dataset = record.get("dataset")
    if dataset and key.startswith(f"{dataset}-"):
        return key[len(dataset) + 1:]
    if key in known:
        return key
    return key.split("-", 1)[1] if "-" in key else key


def _read_jsonl_members(path: Path, known: set[str]) -> pd.DataFrame:
    """utt_id, raw fold number, split and EmoBox label of one EmoBox ``*.jsonl`` list."""
    match = _EMOBOX_NAME.search(path.stem)
    if not match:
        raise ValueError(
            f"predefined: cannot tell split and fold from the file name {path.name}; "
            "expected EmoBox names such as shemo_train_fold_1.jsonl / shemo_test_fold_1.jsonl"
        )
    rows = []
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"predefined: {path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict) or "key" not in record:
                raise ValueError(f"predefined: {path}:{number}: a JSON object with a 'key' was expected")
            rows.append((_emobox_utt_id(record, known), record.get("emo")))
    frame = pd.DataFrame(rows, columns=["utt_id", "emo"], dtype=object)
    frame["raw_fold"] = int(match["fold"])
    frame["split"] = _SPLIT_ALIASES[match["split"].lower()]
    return frame


def _read_csv_members(path: Path) -> pd.DataFrame:
    """utt_id, fold, split of one folds CSV (the format `write_folds` writes)."""
    frame = read_folds(path)
    return frame.assign(emo=None, raw_fold=frame["fold"])[["utt_id", "emo", "raw_fold", "split"]]


def _read_members(files: list[Path], known: set[str]) -> pd.DataFrame:
    """Membership of every file, with EmoBox's 1-based fold numbers renumbered from 0."""
    jsonl = [_read_jsonl_members(p, known) for p in files if p.suffix.lower() == ".jsonl"]
    csv = [_read_csv_members(p) for p in files if p.suffix.lower() == ".csv"]
    if jsonl:
        emobox = pd.concat(jsonl, ignore_index=True)
        numbers = sorted(int(n) for n in emobox["raw_fold"].unique())
        renumber = {n: i for i, n in enumerate(numbers)}
        emobox["fold"] = emobox["raw_fold"].map(renumber)
        log.info("predefined: EmoBox fold(s) %s -> fold(s) %s", numbers, list(renumber.values()))
        jsonl = [emobox]
    csv = [c.assign(fold=c["raw_fold"]) for c in csv]
    members = pd.concat(jsonl + csv, ignore_index=True)
    return members[["utt_id", "fold", "split", "emo"]]


def _warn_label_disagreement(members: pd.DataFrame, manifest: pd.DataFrame) -> None:
    """Log how many EmoBox labels differ from the manifest's (e.g. after a relabelling)."""
    with_emo = members.dropna(subset=["emo"])
    if with_emo.empty:
        return
    mine = with_emo["utt_id"].map(manifest.set_index("utt_id")["label"])
    differ = with_emo["emo"].astype(str).str.lower() != mine.astype(str).str.lower()
    if differ.any():
        log.warning(
            "predefined: %d listed utterance(s) carry a label different from the manifest's (kept the manifest's)",
            int(differ.sum()),
        )


def predefined(
    manifest: pd.DataFrame, *, fold_files: str | os.PathLike | Sequence[str | os.PathLike]
) -> pd.DataFrame:
    """Fold membership read from files: folds CSVs, or EmoBox ``*_{train,test}_fold_N.jsonl`` lists.

    A fold listing only test (and val) utterances trains on every other manifest utterance; a fold
    that lists its training utterances leaves unlisted ones out, with a logged count.

    Args:
        manifest: The checked manifest (`serkit.evaluation.fold_table.check_manifest`).
        fold_files: A fold file, a list of them, or a folder searched for ``*.csv`` / ``*.jsonl``.

    Returns:
        The folds table as listed (train, test and any val rows), fold by fold.

    Raises:
        ValueError: No or missing files, an unreadable file or name, a fold without test rows,
            or no listed utterance in the manifest.
    """
    ids = manifest["utt_id"].to_numpy()
    known = set(ids)
    files = _fold_file_list(fold_files)
    members = _read_members(files, known)
    outside = ~members["utt_id"].isin(known)
    if outside.any():
        log.warning(
            "predefined: %d listed utterance id(s) are not in the manifest and are ignored (e.g. %s)",
            int(outside.sum()), listing(members.loc[outside, "utt_id"].unique(), 5),
        )
    members = members[~outside]
    repeated = members.duplicated(subset=["utt_id", "fold", "split"])
    if repeated.any():
        log.warning("predefined: %d repeated listing(s) dropped", int(repeated.sum()))
        members = members[~repeated]
    _warn_label_disagreement(members, manifest)
    pieces = []
    for fold, rows in members.groupby("fold", sort=True):
        pieces.append(_predefined_fold(manifest, int(fold), rows))
    if not pieces:
        raise ValueError(f"predefined: none of the utterances listed in {listing(files, 5)} is in the manifest")
    return pd.concat(pieces, ignore_index=True)


def _predefined_fold(manifest: pd.DataFrame, fold: int, rows: pd.DataFrame) -> pd.DataFrame:
    """One fold of the predefined protocol, completing the training side when it is not listed."""
    if not (rows["split"] == "test").any():
        raise ValueError(f"predefined: fold {fold} lists no test utterance")
    listed = rows[["utt_id", "split"]]
    if not (rows["split"] == "train").any():
        rest = manifest.loc[~manifest["utt_id"].isin(set(rows["utt_id"])), "utt_id"]
        log.info("predefined: fold %d lists no training utterances; training on the other %d", fold, len(rest))
        listed = pd.concat([listed, pd.DataFrame({"utt_id": rest, "split": "train"})], ignore_index=True)
    left_out = len(manifest) - listed["utt_id"].nunique()
    if left_out:
        log.warning("predefined: fold %d leaves out %d of %d manifest utterance(s) not listed in any file",
                    fold, left_out, len(manifest))
    # Manifest order inside each split keeps the table stable across runs.
    order = pd.Series(np.arange(len(manifest)), index=manifest["utt_id"])
    listed = listed.assign(_split=listed["split"].map(SPLITS.index), _order=listed["utt_id"].map(order))
    listed = listed.sort_values(["_split", "_order"], kind="stable")
    return folds_frame(listed["utt_id"], [fold] * len(listed), listed["split"])

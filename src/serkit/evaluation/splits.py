"""Evaluation protocols: folds of train / validation / test utterances, and the leakage guard.

A protocol turns a manifest into the long table ``folds`` with columns ``utt_id, fold, split``:
one row per utterance a fold uses, ``fold`` counting from 0 and ``split`` one of ``train``,
``val``, ``test``. Utterances a fold does not use are absent from it.

Protocols (`PROTOCOLS`, chosen by name in `make_folds`):

- ``stratified_kfold``: k folds stratified by label that IGNORE speakers. Published ShEMO
  numbers (78.29 %, the paper's 81.7 %) come from this protocol; it is offered for comparability
  and is speaker-dependent: the same voices are in training and test.
- ``speaker_kfold``: k folds with disjoint speakers, stratified by label as far as whole
  speakers allow (scikit-learn's ``StratifiedGroupKFold``).
- ``loso``: leave one speaker out (or one session, ``group="session"``, IEMOCAP-style).
- ``holdout``: the named test speakers against all others.
- ``predefined``: membership read from files: a folds CSV, or EmoBox ``*.jsonl`` lists.
- ``cross_corpus``: train on one corpus, test on another (labels mapped beforehand with
  `map_labels`, e.g. to `SHARED_4`).

Every protocol can carve a validation set out of each fold's TRAINING part (``val_fraction``,
default 0.2): by whole speakers when the protocol is speaker-independent, stratified by label
otherwise (`draw_validation`, the only place serkit draws validation rows; a fold with a single
training speaker gets rows of that speaker, with a warning). Test rows never feed validation, so checkpoints and hyper-parameters are never chosen
on the test fold. `check_folds` enforces this before `make_folds` returns.

Speakers are told apart by ``corpus`` and ``speaker`` together when a manifest mixes corpora
(speaker codes such as ``03`` recur across corpora).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serkit.atomic import atomic_write

__all__ = [
    "FOLD_COLUMNS",
    "PROTOCOLS",
    "SHARED_4",
    "SPLITS",
    "check_folds",
    "draw_validation",
    "set_aside_enrollment",
    "is_speaker_independent",
    "make_folds",
    "map_labels",
    "read_folds",
    "speaker_keys",
    "speaker_overlap",
    "write_folds",
]

log = logging.getLogger(__name__)

FOLD_COLUMNS: tuple[str, ...] = ("utt_id", "fold", "split")
#: ``enroll``: a test speaker's utterances set aside to describe that speaker (speaker
#: normalisation by enrolment); never trained on, never scored (`set_aside_enrollment`).
SPLITS: tuple[str, ...] = ("train", "val", "enroll", "test")
_MANIFEST_COLUMNS = ("utt_id", "speaker", "label", "corpus")
_MAX_LISTED = 10
#: Random speaker orders tried when drawing a speaker-disjoint validation set.
_VAL_TRIES = 64


def _shared_4() -> dict[str, dict[str, str]]:
    """Every corpus adapter's ``SHARED_4`` table, by corpus name (the facts live in datasets/<corpus>.py)."""
    from serkit.data.datasets import ADAPTERS, adapter

    tables = {name: getattr(adapter(name), "SHARED_4", None) for name in ADAPTERS}
    return {name: dict(table) for name, table in tables.items() if table is not None}


#: Four emotions shared by the corpora serkit reads: corpus name -> {native label: shared label}.
SHARED_4: dict[str, dict[str, str]] = _shared_4()


# --------------------------------------------------------------------------- small helpers


def _listing(items: Iterable[Any], limit: int = _MAX_LISTED) -> str:
    """``a, b, c ... and 7 more`` for error messages."""
    items = list(items)
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")


def speaker_keys(manifest: pd.DataFrame) -> pd.Series:
    """One identity per speaker: the ``speaker`` column, prefixed ``corpus/`` when corpora mix.

    Args:
        manifest: A table with ``speaker`` (and ``corpus``) columns.

    Returns:
        A string Series aligned with ``manifest``.
    """
    speaker = manifest["speaker"].astype(str)
    if "corpus" in manifest.columns and manifest["corpus"].nunique() > 1:
        return manifest["corpus"].astype(str) + "/" + speaker
    return speaker


def _check_manifest(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest columns splitting needs, as strings, with unique ids and a clean index."""
    missing = [c for c in _MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks column(s) {missing}; splitting needs {list(_MANIFEST_COLUMNS)}")
    if manifest.empty:
        raise ValueError("manifest is empty: nothing to split")
    frame = manifest.reset_index(drop=True).copy()
    for column in _MANIFEST_COLUMNS:
        frame[column] = frame[column].astype(str)
    duplicated = frame.loc[frame["utt_id"].duplicated(), "utt_id"]
    if len(duplicated):
        raise ValueError(f"manifest has duplicate utt_id: {_listing(duplicated.unique())}")
    return frame


def _folds_frame(utt_ids: Iterable[str], folds: Iterable[int], splits: Iterable[str]) -> pd.DataFrame:
    """The folds table from three parallel sequences, with the canonical dtypes."""
    return pd.DataFrame(
        {
            "utt_id": pd.Series(list(utt_ids), dtype=str),
            "fold": pd.Series(list(folds), dtype="int64"),
            "split": pd.Series(list(splits), dtype=str),
        }
    )


def _train_test(manifest: pd.DataFrame, fold: int, test: np.ndarray, train: np.ndarray | None = None) -> pd.DataFrame:
    """One fold's rows: ``test`` (a boolean mask) and ``train`` (default: everything else)."""
    train = ~test if train is None else train
    ids = manifest["utt_id"].to_numpy()
    n_train, n_test = int(train.sum()), int(test.sum())
    return _folds_frame(
        np.concatenate([ids[train], ids[test]]),
        [fold] * (n_train + n_test),
        ["train"] * n_train + ["test"] * n_test,
    )


def _quiet_sklearn_split(splitter: Any, *args: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run a scikit-learn splitter; its small-class warning is logged by us instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return list(splitter.split(*args))


def _warn_small_classes(labels: pd.Series, n_folds: int, protocol: str) -> None:
    counts = labels.value_counts()
    small = counts[counts < n_folds]
    if len(small):
        log.warning(
            "%s: class(es) with fewer utterances than n_folds=%d: %s; some test folds will lack them",
            protocol, n_folds, _listing(f"{k} ({v})" for k, v in small.items()),
        )


def _check_n_folds(n_folds: Any, protocol: str) -> int:
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"{protocol}: n_folds must be an integer >= 2, got {n_folds!r}")
    return int(n_folds)


# --------------------------------------------------------------------------- protocols


def _stratified_kfold(manifest: pd.DataFrame, *, n_folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """k folds stratified by label, ignoring speakers (speaker-dependent; the paper's protocol)."""
    from sklearn.model_selection import StratifiedKFold

    n_folds = _check_n_folds(n_folds, "stratified_kfold")
    if len(manifest) < n_folds:
        raise ValueError(f"stratified_kfold: {len(manifest)} utterances cannot fill n_folds={n_folds}")
    _warn_small_classes(manifest["label"], n_folds, "stratified_kfold")
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    pieces = []
    for fold, (_, test_index) in enumerate(_quiet_sklearn_split(splitter, np.zeros(len(manifest)), manifest["label"])):
        test = np.zeros(len(manifest), dtype=bool)
        test[test_index] = True
        pieces.append(_train_test(manifest, fold, test))
    return pd.concat(pieces, ignore_index=True)


def _speaker_kfold(manifest: pd.DataFrame, *, n_folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """k folds with disjoint speakers, stratified by label as far as whole speakers allow."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_folds = _check_n_folds(n_folds, "speaker_kfold")
    speakers = speaker_keys(manifest)
    if speakers.nunique() < n_folds:
        raise ValueError(
            f"speaker_kfold: {speakers.nunique()} speaker(s) cannot fill n_folds={n_folds}; "
            "lower n_folds or use loso"
        )
    _warn_small_classes(manifest["label"], n_folds, "speaker_kfold")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    pieces = []
    split_indices = _quiet_sklearn_split(splitter, np.zeros(len(manifest)), manifest["label"], speakers)
    for fold, (_, test_index) in enumerate(split_indices):
        test = np.zeros(len(manifest), dtype=bool)
        test[test_index] = True
        pieces.append(_train_test(manifest, fold, test))
    return pd.concat(pieces, ignore_index=True)


def _loso(manifest: pd.DataFrame, *, group: str = "speaker") -> pd.DataFrame:
    """Leave one speaker (or one session) out: one fold per group, in sorted order."""
    if group == "speaker":
        groups = speaker_keys(manifest)
    elif group == "session":
        if "session" not in manifest.columns:
            raise ValueError("loso: group='session' needs a 'session' column in the manifest")
        groups = manifest["session"].fillna("").astype(str)
        if (groups.str.strip() == "").any():
            raise ValueError(f"loso: {int((groups.str.strip() == '').sum())} utterance(s) have no session")
        if "corpus" in manifest.columns and manifest["corpus"].nunique() > 1:
            groups = manifest["corpus"].astype(str) + "/" + groups
    else:
        raise ValueError(f"loso: group must be 'speaker' or 'session', got {group!r}")
    values = sorted(groups.unique())
    if len(values) < 2:
        raise ValueError(f"loso: needs at least 2 {group}s, found {len(values)}")
    pieces = [_train_test(manifest, fold, (groups == value).to_numpy()) for fold, value in enumerate(values)]
    log.info("loso: %d folds, one per %s", len(values), group)
    return pd.concat(pieces, ignore_index=True)


def _holdout(manifest: pd.DataFrame, *, test_speakers: Sequence[str]) -> pd.DataFrame:
    """One fold: the named speakers are the test set, every other speaker trains."""
    if isinstance(test_speakers, str):
        test_speakers = [test_speakers]
    wanted = [str(s) for s in test_speakers]
    if not wanted:
        raise ValueError("holdout: test_speakers is empty")
    keys = speaker_keys(manifest)
    speakers = manifest["speaker"].astype(str)
    known = set(keys) | set(speakers)
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise ValueError(
            f"holdout: unknown test speaker(s) {unknown}; the manifest has {keys.nunique()} speakers: "
            f"{_listing(sorted(keys.unique()), 30)}"
        )
    test = (keys.isin(wanted) | speakers.isin(wanted)).to_numpy()
    if test.all():
        raise ValueError("holdout: the test speakers are every speaker; nothing is left to train on")
    return _train_test(manifest, 0, test)


def _cross_corpus(manifest: pd.DataFrame, *, train_corpus: str, test_corpus: str) -> pd.DataFrame:
    """One fold: train on one corpus of the manifest, test on another; other corpora are left out."""
    corpora = sorted(manifest["corpus"].unique())
    for name, value in (("train_corpus", train_corpus), ("test_corpus", test_corpus)):
        if value not in corpora:
            raise ValueError(f"cross_corpus: {name}={value!r} is not in the manifest; corpora present: {corpora}")
    if train_corpus == test_corpus:
        raise ValueError(f"cross_corpus: train_corpus and test_corpus are both {train_corpus!r}")
    train = (manifest["corpus"] == train_corpus).to_numpy()
    test = (manifest["corpus"] == test_corpus).to_numpy()
    unseen = sorted(set(manifest.loc[test, "label"]) - set(manifest.loc[train, "label"]))
    if unseen:
        raise ValueError(
            f"cross_corpus: test label(s) {unseen} never occur in {train_corpus!r}; map both corpora to a "
            "shared label set first (serkit.evaluation.splits.map_labels, e.g. with SHARED_4)"
        )
    return _train_test(manifest, 0, test, train)


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


def _predefined(
    manifest: pd.DataFrame, *, fold_files: str | os.PathLike | Sequence[str | os.PathLike]
) -> pd.DataFrame:
    """Fold membership read from files: folds CSVs, or EmoBox ``*_{train,test}_fold_N.jsonl`` lists.

    A fold listing only test (and val) utterances trains on every other manifest utterance; a fold
    that lists its training utterances leaves unlisted ones out, with a logged count.
    """
    ids = manifest["utt_id"].to_numpy()
    known = set(ids)
    files = _fold_file_list(fold_files)
    members = _read_members(files, known)
    outside = ~members["utt_id"].isin(known)
    if outside.any():
        log.warning(
            "predefined: %d listed utterance id(s) are not in the manifest and are ignored (e.g. %s)",
            int(outside.sum()), _listing(members.loc[outside, "utt_id"].unique(), 5),
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
        raise ValueError(f"predefined: none of the utterances listed in {_listing(files, 5)} is in the manifest")
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
    return _folds_frame(listed["utt_id"], [fold] * len(listed), listed["split"])


#: Protocol name -> builder. Each builder takes the manifest and its own keyword options and
#: returns the train/test (possibly val) rows; `make_folds` adds validation and checks leakage.
PROTOCOLS: dict[str, Callable[..., pd.DataFrame]] = {
    "stratified_kfold": _stratified_kfold,
    "speaker_kfold": _speaker_kfold,
    "loso": _loso,
    "holdout": _holdout,
    "predefined": _predefined,
    "cross_corpus": _cross_corpus,
}

#: Whether a protocol keeps test speakers out of training by construction (None: depends on data).
_SPEAKER_INDEPENDENT: dict[str, bool | None] = {
    "stratified_kfold": False,
    "speaker_kfold": True,
    "loso": True,
    "holdout": True,
    "predefined": None,
    "cross_corpus": True,
}

#: Options every protocol accepts (used by `make_folds` itself).
_COMMON_OPTIONS = ("seed", "val_fraction")


def _builder(protocol: str) -> Callable[..., pd.DataFrame]:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def protocol_options(protocol: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options meant for the protocol's builder; unknown or missing ones are errors.

    `serkit.experiment.config` calls it when a recipe is loaded, so a bad option fails before any work.

    Raises:
        ValueError: Unknown protocol, unknown option, or a missing required one.
    """
    parameters = {
        name: p for name, p in inspect.signature(_builder(protocol)).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    allowed = sorted(set(parameters) | set(_COMMON_OPTIONS))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{protocol}: unknown option(s) {unknown}; allowed: {allowed}")
    required = sorted(n for n, p in parameters.items() if p.default is inspect.Parameter.empty)
    missing = [n for n in required if n not in options]
    if missing:
        raise ValueError(f"{protocol}: missing required option(s) {missing}; allowed: {allowed}")
    if "n_folds" in options:  # a value that needs no data to be wrong
        _check_n_folds(options["n_folds"], protocol)
    return {k: v for k, v in options.items() if k in parameters}


# --------------------------------------------------------------------------- validation sets


def _check_val_fraction(val_fraction: Any) -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    return float(val_fraction)


def _stratified_val(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A mask drawing about ``fraction`` of each class (largest-remainder quotas, one kept for training)."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = fraction * counts
    take = np.floor(quota).astype(int)
    extra = int(round(fraction * len(labels))) - int(take.sum())
    if extra > 0:
        # Ties in the remainders are broken at random so no class is favoured systematically.
        order = np.lexsort((rng.random(len(classes)), -(quota - take)))
        take[order[:extra]] += 1
    take = np.minimum(take, np.maximum(counts - 1, 0))
    mask = np.zeros(len(labels), dtype=bool)
    for index in range(len(classes)):
        members = np.flatnonzero(inverse == index)
        mask[rng.permutation(members)[: take[index]]] = True
    return mask


def _score_prefixes(cumulative: np.ndarray, total: np.ndarray, target: float) -> np.ndarray:
    """Badness of each candidate validation set (rows of class counts); lower is better.

    Priorities: training keeps every class, then validation has every class, then size close to
    the target and a class mix close to the training part's.
    """
    present = total > 0
    rest = total - cumulative
    train_missing = ((rest == 0) & present).sum(axis=1)
    val_missing = ((cumulative == 0) & present).sum(axis=1)
    size = cumulative.sum(axis=1)
    size_error = np.abs(size - target) / max(target, 1.0)
    mix = np.abs(cumulative / np.maximum(size, 1)[:, None] - total / total.sum()).sum(axis=1)
    return 100.0 * train_missing + 10.0 * val_missing + size_error + 0.5 * mix


def _speaker_val(labels: np.ndarray, speakers: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray | None:
    """A mask of whole speakers making about ``fraction`` of the rows, class mix kept; None if impossible."""
    speaker_ids, speaker_index = np.unique(speakers, return_inverse=True)
    if len(speaker_ids) < 2:
        return None
    _, label_index = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(speaker_ids), label_index.max() + 1))
    np.add.at(counts, (speaker_index, label_index), 1)
    total = counts.sum(axis=0)
    target = fraction * len(labels)
    best_score, best_speakers = np.inf, None
    for _ in range(_VAL_TRIES):
        order = rng.permutation(len(speaker_ids))
        # Candidates: the first k speakers of this order, k = 1 .. n-1 (one speaker always trains).
        cumulative = np.cumsum(counts[order], axis=0)[:-1]
        scores = _score_prefixes(cumulative, total, target)
        k = int(np.argmin(scores))
        if scores[k] < best_score:
            best_score, best_speakers = scores[k], order[: k + 1]
    return np.isin(speaker_index, best_speakers)


def kfold_validation(
    labels: Sequence[Any] | np.ndarray, speakers: Sequence[Any] | None, fraction: float, seed: int
) -> np.ndarray:
    """The validation draw of a neural classifier fitted without validation rows (Python API).

    One fold of `StratifiedGroupKFold` with ``round(1 / fraction)`` folds (at most one per
    speaker), so a corpus with few speakers gives one speaker to validation; without speakers,
    or with a single one, a label-stratified random draw with a warning (early stopping is then
    speaker-dependent). Kept apart from `draw_validation`, which experiments use: switching the
    estimator to it moved the synthetic CNN must-learn check (tests/test_models_torch.py, 8
    training speakers) from UA 0.95 to 0.738, because it validates on 2 other speakers and early
    stopping on 2 of 8 speakers depends on which two; that sensitivity is not yet understood.

    Returns:
        A boolean mask over the rows, True for validation.

    Raises:
        ValueError: `fraction` outside [0, 1), or speakers of the wrong length.
    """
    from sklearn.model_selection import ShuffleSplit, StratifiedGroupKFold, StratifiedShuffleSplit

    fraction = _check_val_fraction(fraction)
    labels = np.asarray(labels)
    rows = np.arange(len(labels))
    mask = np.zeros(len(labels), dtype=bool)
    if fraction == 0.0:
        return mask
    if speakers is not None:
        groups = np.asarray(speakers)
        if len(groups) != len(labels):
            raise ValueError(f"groups has {len(groups)} entries for {len(labels)} rows")
        if len(np.unique(groups)) >= 2:
            n_splits = min(max(2, round(1.0 / fraction)), len(np.unique(groups)))
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            with warnings.catch_warnings(record=True) as caught:  # e.g. a class rarer than the folds
                warnings.simplefilter("always")
                _, val = next(splitter.split(rows, labels, groups))
            for item in caught:
                log.warning("validation split: %s", item.message)
            mask[val] = True
            return mask
        log.warning("only one speaker in the training data: the validation split is random, not by speaker")
    try:
        _, val = next(StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(rows, labels))
    except ValueError:  # a class with one row, or fewer validation rows than classes
        _, val = next(ShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(rows))
    mask[val] = True
    return mask


def draw_validation(
    labels: Sequence[Any] | np.ndarray,
    speakers: Sequence[Any] | np.ndarray | None,
    fraction: float,
    seed: int | Sequence[int],
) -> np.ndarray:
    """Which rows to hold out for validation: whole speakers when `speakers` is given.

    The one validation draw of serkit: `make_folds` uses it for each fold's ``val`` rows and
    `serkit.models.data.validation_split` for a neural classifier fitted without validation rows.

    With speakers, random speaker orders are searched for the set of whole speakers that
    (in this order of priority) leaves every class in training, gives validation every
    class, and comes closest to ``fraction`` of the rows with the training part's class mix.
    This beats k-fold rounding (``StratifiedGroupKFold`` with ``round(1 / fraction)`` folds,
    serkit's former second draw): 0.3 there meant a third of the speakers, and a fold could
    take a class's only speakers out of training. With a single speaker no speaker-disjoint
    set exists; the rows are then drawn stratified by label, as without speakers, and a
    warning says validation is speaker-dependent. Drawing rows rather than none keeps early
    stopping (the estimator drew such rows itself before), and `make_folds` lists them in
    folds.csv, so the file says which rows trained.

    Args:
        labels: The label (or class code) of each row.
        speakers: The speaker of each row, or None for a row-wise draw stratified by label.
        fraction: Share of the rows for validation, in [0, 1); 0 draws none.
        seed: Seed of the draw (an int, or ints such as ``[seed, fold]``); the same inputs
            and seed give the same rows.

    Returns:
        A boolean mask over the rows, True for validation.

    Raises:
        ValueError: `fraction` outside [0, 1), or `speakers` of another length than `labels`.
    """
    fraction = _check_val_fraction(fraction)
    labels = np.asarray(labels)
    if fraction == 0 or len(labels) == 0:
        return np.zeros(len(labels), dtype=bool)
    rng = np.random.default_rng(seed)
    if speakers is None:
        return _stratified_val(labels, fraction, rng)
    speakers = np.asarray(speakers)
    if len(speakers) != len(labels):
        raise ValueError(f"speakers has {len(speakers)} entries for {len(labels)} rows")
    mask = _speaker_val(labels, speakers, fraction, rng)
    if mask is None:
        log.warning("a single training speaker: validation rows are drawn from that speaker, so early "
                    "stopping is speaker-dependent (optimistic)")
        return _stratified_val(labels, fraction, rng)
    log.debug("validation: %d of %d rows, %d of %d speakers", int(mask.sum()), len(mask),
              len(np.unique(speakers[mask])), len(np.unique(speakers)))
    return mask


def _add_validation(
    manifest: pd.DataFrame, base: pd.DataFrame, fraction: float, seed: int, *, by_speaker: bool
) -> pd.DataFrame:
    """Relabel part of each fold's training rows as ``val``; test rows are never touched."""
    if fraction == 0:
        return base
    lookup = manifest.assign(_speaker=speaker_keys(manifest)).set_index("utt_id")
    pieces = []
    for fold, rows in base.groupby("fold", sort=True):
        rows = rows.copy()
        train = (rows["split"] == "train").to_numpy()
        if (rows["split"] == "val").any() or not train.any():
            pieces.append(rows)  # a predefined validation set is kept as given
            continue
        ids = rows.loc[train, "utt_id"]
        speakers = lookup.loc[ids, "_speaker"].to_numpy() if by_speaker else None
        mask = draw_validation(lookup.loc[ids, "label"].to_numpy(), speakers, fraction, [int(seed), int(fold)])
        split = rows["split"].to_numpy(dtype=object)
        split[np.flatnonzero(train)[mask]] = "val"
        rows["split"] = pd.Series(split, index=rows.index, dtype=str)
        pieces.append(rows)
    return pd.concat(pieces, ignore_index=True)


def _sort_folds(folds: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Fold, then train/val/test, then manifest order."""
    order = pd.Series(np.arange(len(manifest)), index=manifest["utt_id"])
    keyed = folds.assign(_split=folds["split"].map(SPLITS.index), _order=folds["utt_id"].map(order))
    keyed = keyed.sort_values(["fold", "_split", "_order"], kind="stable")
    return keyed[list(FOLD_COLUMNS)].reset_index(drop=True)


# --------------------------------------------------------------------------- public API


def make_folds(manifest: pd.DataFrame, protocol: str, **options: Any) -> pd.DataFrame:
    """Split a manifest into folds of train / val / test utterances under a named protocol.

    Args:
        manifest: The utterances (needs ``utt_id, speaker, label, corpus``; ``session`` for
            ``loso`` by session).
        protocol: A name in `PROTOCOLS`.
        **options: The protocol's options (``n_folds``, ``group``, ``test_speakers``,
            ``fold_files``, ``train_corpus``, ``test_corpus``) and, for every protocol,
            ``seed`` (default 0) and ``val_fraction`` (default 0.2; 0 draws no validation set).

    Returns:
        The folds table: ``utt_id, fold, split``, one row per utterance a fold uses. Its
        ``attrs`` hold ``protocol`` and ``speaker_independent``.

    Raises:
        ValueError: Unknown protocol or option, impossible settings, or leaking folds.
    """
    options = dict(options)
    fraction = _check_val_fraction(options.pop("val_fraction", 0.2))
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    frame = _check_manifest(manifest)
    builder_options = protocol_options(protocol, options)
    base = _builder(protocol)(frame, **builder_options)
    independent = _SPEAKER_INDEPENDENT[protocol]
    if independent is None:
        independent = _no_shared_speakers(frame, base)
        log.info("%s: folds are speaker-%s", protocol, "independent" if independent else "dependent")
    elif not independent:
        log.warning("%s: speakers are shared between training and test; results are speaker-dependent", protocol)
    folds = _sort_folds(_add_validation(frame, base, fraction, int(seed), by_speaker=independent), frame)
    check_folds(frame, folds, speaker_independent=independent)
    folds.attrs.update(protocol=protocol, speaker_independent=bool(independent))
    _log_summary(protocol, folds)
    return folds


def set_aside_enrollment(folds: pd.DataFrame, manifest: pd.DataFrame, per_speaker: int, seed: int = 0) -> pd.DataFrame:
    """Mark `per_speaker` random test utterances of each test speaker of each fold as ``enroll``.

    Enrolment utterances stand for the few recordings a deployed system gets from a new
    speaker before predicting: their features give that speaker's statistics (labels unused)
    and they are left out of scoring. A speaker keeps at least one test utterance.

    Args:
        folds: The folds table (`make_folds`).
        manifest: The utterances (``utt_id, speaker``, and ``corpus``).
        per_speaker: Enrolment utterances per test speaker (positive).
        seed: Seed of the draw (the same speakers and seed give the same utterances).

    Returns:
        A copy of `folds` with those rows' split set to ``enroll`` (attrs kept).

    Raises:
        ValueError: `per_speaker` not a positive integer.
    """
    if isinstance(per_speaker, bool) or not isinstance(per_speaker, (int, np.integer)) or per_speaker < 1:
        raise ValueError(f"enrolment utterances per speaker must be a positive integer, got {per_speaker!r}")
    speaker = dict(zip(manifest["utt_id"].astype(str), speaker_keys(manifest)))
    out = folds.copy()
    rng = np.random.default_rng(seed)
    for fold in sorted(out["fold"].unique()):
        test = out[(out["fold"] == fold) & (out["split"] == "test")]
        by_speaker = test.groupby(test["utt_id"].astype(str).map(speaker), sort=True)
        for who, rows in by_speaker:
            take = min(int(per_speaker), len(rows) - 1)
            if take < int(per_speaker):
                log.warning("fold %s: speaker %s has %d test utterance(s); %d set aside for enrolment",
                            fold, who, len(rows), take)
            if take > 0:
                chosen = rng.choice(rows.index.to_numpy(), size=take, replace=False)
                out.loc[chosen, "split"] = "enroll"
    out.attrs.update(folds.attrs)
    return out


def _log_summary(protocol: str, folds: pd.DataFrame) -> None:
    counts = folds.groupby(["fold", "split"]).size().unstack(fill_value=0)
    log.info("%s: %d fold(s); mean utterances per fold: %s", protocol, len(counts),
             ", ".join(f"{c} {counts[c].mean():.0f}" for c in counts.columns))


def _no_shared_speakers(manifest: pd.DataFrame, folds: pd.DataFrame) -> bool:
    return bool((speaker_overlap(manifest, folds)["n_shared_speakers"] == 0).all())


def is_speaker_independent(
    protocol: str, manifest: pd.DataFrame | None = None, folds: pd.DataFrame | None = None
) -> bool:
    """Whether a protocol keeps every test speaker out of training and validation.

    Args:
        protocol: A name in `PROTOCOLS`.
        manifest: Needed for ``predefined``, whose answer depends on the files.
        folds: Needed for ``predefined``.

    Returns:
        False for ``stratified_kfold``; True for ``speaker_kfold``, ``loso``, ``holdout``,
        ``cross_corpus``; for ``predefined``, whether no fold shares a speaker across sides.

    Raises:
        ValueError: Unknown protocol, or ``predefined`` without ``manifest`` and ``folds``.
    """
    _builder(protocol)
    answer = _SPEAKER_INDEPENDENT[protocol]
    if answer is not None:
        return answer
    if manifest is None or folds is None:
        raise ValueError(f"{protocol}: speaker independence depends on the fold files; pass manifest and folds")
    return _no_shared_speakers(_check_manifest(manifest), folds)


def speaker_overlap(manifest: pd.DataFrame, folds: pd.DataFrame) -> pd.DataFrame:
    """How many test speakers of each fold are also heard in its training or validation part.

    Args:
        manifest: The utterances (``utt_id, speaker``, and ``corpus``).
        folds: The folds table.

    Returns:
        One row per fold: ``fold, n_test_utterances, n_test_speakers, n_shared_speakers,
        shared_fraction`` (the share of test utterances whose speaker is also in train/val).
    """
    speakers = pd.Series(speaker_keys(manifest).to_numpy(), index=manifest["utt_id"].astype(str))
    table = folds.assign(_speaker=folds["utt_id"].astype(str).map(speakers))
    rows = []
    for fold, part in table.groupby("fold", sort=True):
        test = part[part["split"] == "test"]
        seen = set(part.loc[part["split"].isin(["train", "val"]), "_speaker"])  # enrolment is the test speaker's own
        shared_rows = test["_speaker"].isin(seen)
        rows.append(
            {
                "fold": int(fold),
                "n_test_utterances": len(test),
                "n_test_speakers": int(test["_speaker"].nunique()),
                "n_shared_speakers": int(test.loc[shared_rows, "_speaker"].nunique()),
                "shared_fraction": float(shared_rows.mean()) if len(test) else 0.0,
            }
        )
    return pd.DataFrame(rows, columns=["fold", "n_test_utterances", "n_test_speakers", "n_shared_speakers", "shared_fraction"])


def _check_fold_table(folds: pd.DataFrame) -> None:
    missing = [c for c in FOLD_COLUMNS if c not in folds.columns]
    if missing:
        raise ValueError(f"folds table lacks column(s) {missing}; expected {list(FOLD_COLUMNS)}")
    bad_split = sorted(set(folds["split"].astype(str)) - set(SPLITS))
    if bad_split:
        raise ValueError(f"folds table has unknown split value(s) {bad_split}; allowed: {list(SPLITS)}")


def check_folds(manifest: pd.DataFrame, folds: pd.DataFrame, *, speaker_independent: bool | None = None) -> None:
    """The leakage guard: refuse folds in which test data could reach training or model choice.

    Args:
        manifest: The utterances the folds refer to.
        folds: The folds table.
        speaker_independent: Whether the protocol claims disjoint speakers; None reads
            ``folds.attrs["speaker_independent"]`` (False when absent).

    Raises:
        ValueError: Malformed table; unknown utterance ids; an utterance listed twice in a fold
            (in particular both train/val and test); a fold without test or training rows; or,
            for a speaker-independent claim, a test speaker who is also in train or val.
    """
    _check_fold_table(folds)
    if speaker_independent is None:
        speaker_independent = bool(folds.attrs.get("speaker_independent", False))
    known = set(manifest["utt_id"].astype(str))
    unknown = folds.loc[~folds["utt_id"].astype(str).isin(known), "utt_id"]
    if len(unknown):
        raise ValueError(f"folds name {len(unknown)} utterance(s) not in the manifest: {_listing(unknown.unique())}")
    _check_duplicates(folds)
    for fold, part in folds.groupby("fold", sort=True):
        present = set(part["split"])
        if "test" not in present or "train" not in present:
            raise ValueError(f"fold {fold} needs both train and test rows; it has {sorted(present)}")
    if speaker_independent:
        _check_speakers(manifest, folds)


def _check_duplicates(folds: pd.DataFrame) -> None:
    repeated = folds[folds.duplicated(subset=["fold", "utt_id"], keep=False)]
    if repeated.empty:
        return
    splits = repeated.groupby(["fold", "utt_id"])["split"].agg(lambda s: frozenset(s))
    leaking = splits[splits.map(lambda s: "test" in s and len(s) > 1)]
    if len(leaking):
        examples = [f"fold {f}: {u} ({'+'.join(sorted(s))})" for (f, u), s in leaking.items()]
        raise ValueError(f"leakage: {len(leaking)} utterance(s) are both train/val and test: {_listing(examples)}")
    examples = [f"fold {f}: {u}" for f, u in splits.index]
    raise ValueError(f"{len(splits)} utterance(s) are listed more than once in a fold: {_listing(examples)}")


def _check_speakers(manifest: pd.DataFrame, folds: pd.DataFrame) -> None:
    speakers = pd.Series(speaker_keys(manifest).to_numpy(), index=manifest["utt_id"].astype(str))
    table = folds.assign(_speaker=folds["utt_id"].astype(str).map(speakers))
    for fold, part in table.groupby("fold", sort=True):
        test = set(part.loc[part["split"] == "test", "_speaker"])
        for split in ("val", "train"):
            shared = sorted(test & set(part.loc[part["split"] == split, "_speaker"]))
            if shared:
                raise ValueError(
                    f"leakage: fold {fold} of a speaker-independent protocol has test speaker(s) in {split}: "
                    f"{_listing(shared)}"
                )


def map_labels(manifest: pd.DataFrame, mapping: Mapping[str, Mapping[str, str] | str]) -> pd.DataFrame:
    """Rename each corpus's labels into a shared set and drop rows whose label has no shared name.

    Args:
        manifest: The utterances (``label`` and ``corpus`` columns).
        mapping: Per-corpus tables, ``{corpus: {native label: shared label}}`` (e.g. `SHARED_4`),
            and/or flat entries ``{native label: shared label}`` used for every corpus without
            a table of its own.

    Returns:
        A copy with the mapped labels, unmapped rows dropped (their count is logged), and a
        fresh index.

    Raises:
        ValueError: A mapping value that is neither a dict nor a string.
    """
    per_corpus: dict[str, Mapping[str, str]] = {}
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            per_corpus[str(key)] = value
        elif isinstance(value, str):
            flat[str(key)] = value
        else:
            raise ValueError(f"map_labels: mapping[{key!r}] must be a dict (per corpus) or a str (a label), got {value!r}")
    frame = manifest.copy()
    mapped = pd.Series(pd.NA, index=frame.index, dtype=object)
    for corpus, rows in frame.groupby(frame["corpus"].astype(str), sort=True):
        table = per_corpus.get(corpus, flat)
        if not table:
            log.warning("map_labels: no label mapping for corpus %r; its %d row(s) are dropped", corpus, len(rows))
        mapped.loc[rows.index] = rows["label"].astype(str).map(dict(table)).to_numpy()
    dropped = frame[mapped.isna()]
    if len(dropped):
        counts = dropped.groupby(["corpus", "label"]).size()
        log.warning("map_labels: dropped %d of %d row(s) whose label has no shared name: %s", len(dropped), len(frame),
                    _listing((f"{c}:{lab} {n}" for (c, lab), n in counts.items()), 20))
    keep = mapped.notna()
    result = frame[keep].copy()
    result["label"] = mapped[keep].astype(str)
    return result.reset_index(drop=True)


def write_folds(folds: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the folds table as CSV atomically (a temporary file, then ``os.replace``).

    Args:
        folds: The folds table.
        path: Destination; its folder is created.

    Returns:
        The path written.
    """
    _check_fold_table(folds)
    path = Path(path)
    with atomic_write(path, "w", newline="", encoding="utf-8") as stream:
        folds[list(FOLD_COLUMNS)].to_csv(stream, index=False)
    return path


def read_folds(path: str | os.PathLike) -> pd.DataFrame:
    """Read a folds CSV written by `write_folds` (or by hand: ``utt_id, fold, split``).

    Args:
        path: The CSV file.

    Returns:
        The folds table with ``utt_id`` and ``split`` as strings and ``fold`` as int64.

    Raises:
        ValueError: Missing file, columns, non-integer folds or unknown split values.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: folds file not found")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    try:
        _check_fold_table(frame)
        folds = pd.to_numeric(frame["fold"], errors="raise")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    if (folds != folds.round()).any() or (folds < 0).any():
        raise ValueError(f"{path}: fold must be a non-negative integer")
    return _folds_frame(frame["utt_id"].str.strip(), folds.astype("int64"), frame["split"].str.strip())

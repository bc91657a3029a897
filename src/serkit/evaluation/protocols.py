"""The fold builders of the computed protocols: stratified k-fold, speaker k-fold, leave-one-out, holdout, cross-corpus.

Each builder takes a checked manifest (`serkit.evaluation.fold_table.check_manifest`) and its
own keyword options and returns the train/test rows of every fold; `serkit.evaluation.splits`
names them in `PROTOCOLS`, adds validation rows and runs the leakage guard. The file-based
``predefined`` protocol lives in `serkit.evaluation.predefined`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from serkit.evaluation.fold_table import folds_frame, listing, speaker_keys

__all__ = ["check_n_folds", "cross_corpus", "holdout", "loso", "speaker_kfold", "stratified_kfold"]

log = logging.getLogger(__name__)


def _train_test(manifest: pd.DataFrame, fold: int, test: np.ndarray, train: np.ndarray | None = None) -> pd.DataFrame:
    """One fold's rows: ``test`` (a boolean mask) and ``train`` (default: everything else)."""
    train = ~test if train is None else train
    ids = manifest["utt_id"].to_numpy()
    n_train, n_test = int(train.sum()), int(test.sum())
    return folds_frame(
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
            protocol, n_folds, listing(f"{k} ({v})" for k, v in small.items()),
        )


def check_n_folds(n_folds: Any, protocol: str) -> int:
    """``n_folds`` as an int; the protocol name prefixes the error.

    Raises:
        ValueError: Not an integer >= 2 (a bool is refused too).
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"{protocol}: n_folds must be an integer >= 2, got {n_folds!r}")
    return int(n_folds)


def stratified_kfold(manifest: pd.DataFrame, *, n_folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """k folds stratified by label, ignoring speakers (speaker-dependent; the paper's protocol).

    Args:
        manifest: The checked manifest (`serkit.evaluation.fold_table.check_manifest`).
        n_folds: Number of folds (>= 2).
        seed: Seed of the shuffle.

    Returns:
        The folds table of the train and test rows (no validation yet).

    Raises:
        ValueError: Bad `n_folds`, or fewer utterances than folds.
    """
    from sklearn.model_selection import StratifiedKFold

    n_folds = check_n_folds(n_folds, "stratified_kfold")
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


def speaker_kfold(manifest: pd.DataFrame, *, n_folds: int = 5, seed: int = 0) -> pd.DataFrame:
    """k folds with disjoint speakers, stratified by label as far as whole speakers allow.

    Args:
        manifest: The checked manifest (`serkit.evaluation.fold_table.check_manifest`).
        n_folds: Number of folds (>= 2).
        seed: Seed of the shuffle.

    Returns:
        The folds table of the train and test rows (no validation yet).

    Raises:
        ValueError: Bad `n_folds`, or fewer speakers than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_folds = check_n_folds(n_folds, "speaker_kfold")
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


def loso(manifest: pd.DataFrame, *, group: str = "speaker") -> pd.DataFrame:
    """Leave one speaker (or one session) out: one fold per group, in sorted order.

    Args:
        manifest: The checked manifest (`serkit.evaluation.fold_table.check_manifest`).
        group: ``speaker`` or ``session`` (needs a ``session`` column).

    Returns:
        The folds table of the train and test rows (no validation yet).

    Raises:
        ValueError: Unknown group, missing sessions, or fewer than 2 groups.
    """
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


def holdout(manifest: pd.DataFrame, *, test_speakers: Sequence[str]) -> pd.DataFrame:
    """One fold: the named speakers are the test set, every other speaker trains.

    Args:
        manifest: The checked manifest (`serkit.evaluation.fold_table.check_manifest`).
        test_speakers: Speaker codes (or ``corpus/speaker`` keys) of the test set.

    Returns:
        The folds table of the train and test rows (no validation yet).

    Raises:
        ValueError: No, unknown, or every speaker named.
    """
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
            f"{listing(sorted(keys.unique()), 30)}"
        )
    test = (keys.isin(wanted) | speakers.isin(wanted)).to_numpy()
    if test.all():
        raise ValueError("holdout: the test speakers are every speaker; nothing is left to train on")
    return _train_test(manifest, 0, test)


def cross_corpus(manifest: pd.DataFrame, *, train_corpus: str, test_corpus: str) -> pd.DataFrame:
    """One fold: train on one corpus of the manifest, test on another; other corpora are left out.

    Args:
        manifest: The checked manifest (`serkit.evaluation.fold_table.check_manifest`).
        train_corpus: The corpus that trains.
        test_corpus: The corpus that tests.

    Returns:
        The folds table of the train and test rows (no validation yet).

    Raises:
        ValueError: A corpus not in the manifest, the same corpus twice, or test labels unseen in training.
    """
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
            "shared label set first (serkit.evaluation.label_map.map_labels, e.g. with SHARED_4)"
        )
    return _train_test(manifest, 0, test, train)

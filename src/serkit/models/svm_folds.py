"""The SVM's inner cross-validation folds: by speaker when possible (see `serkit.models.svm`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

__all__ = ["Split", "calibration_splits", "check_training_folds", "inner_splits"]

#: Logged under the SVM's name: the messages are about its fit.
logger = logging.getLogger("serkit.models.svm")

Split = tuple[np.ndarray, np.ndarray]


def _stratified_splits(y: np.ndarray, folds: int, seed: int, smallest: int) -> tuple[list[Split], dict[str, Any]]:
    k = min(folds, smallest)
    if k < folds:
        logger.warning(
            "svm: only %d sample(s) in the smallest class; inner CV uses %d folds, not %d", smallest, k, folds
        )
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(y)), y))
    return splits, {"splitter": "StratifiedKFold", "n_splits": k, "grouped": False}


def inner_splits(
    y: np.ndarray, groups: Sequence[Any] | None, folds: int, seed: int
) -> tuple[list[Split], dict[str, Any]]:
    """Inner cross-validation folds over the training rows, by speaker when possible.

    Args:
        y: Labels of the training rows.
        groups: Speaker of each row, or None.
        folds: Requested number of folds.
        seed: Shuffling seed (the folds are deterministic for a given seed).

    Returns:
        ``[(train_idx, val_idx), ...]`` (validation parts partition the rows) and a JSON-able
        description: ``splitter``, ``n_splits``, ``grouped`` (and ``n_groups``).

    Raises:
        ValueError: A class with a single sample, so that no fold can both train and validate it.
    """
    y = np.asarray(y)
    _, counts = np.unique(y, return_counts=True)
    smallest = int(counts.min())
    if smallest < 2:
        raise ValueError("svm: every class needs at least 2 training samples for the inner cross-validation")
    if groups is None:
        logger.warning("svm: no speaker groups given; C/gamma are selected on speaker-DEPENDENT inner folds")
        return _stratified_splits(y, folds, seed, smallest)
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        logger.warning("svm: a single speaker in the training part; inner folds are stratified, not by speaker")
        return _stratified_splits(y, folds, seed, smallest)
    # More folds than the smallest class makes StratifiedGroupKFold warn and leave folds without it.
    k = min(folds, n_groups, smallest)
    if k < folds:
        logger.warning(
            "svm: %d speaker(s), smallest class %d sample(s); inner CV uses %d speaker-grouped folds, not %d",
            n_groups, smallest, k, folds,
        )
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    splits = [(tr, va) for tr, va in splitter.split(np.zeros(len(y)), y, groups) if len(tr) and len(va)]
    return splits, {"splitter": "StratifiedGroupKFold", "n_splits": len(splits), "grouped": True, "n_groups": n_groups}


def check_training_folds(splits: list[Split], y: np.ndarray) -> None:
    """An SVC cannot train on a single class: say so before the grid search fails obscurely."""
    for number, (train, _) in enumerate(splits):
        if len(np.unique(y[train])) < 2:
            raise ValueError(
                f"svm: inner training fold {number} holds a single class; use more speakers or fewer inner_folds"
            )


def calibration_splits(splits: list[Split], y: np.ndarray, seed: int) -> list[Split]:
    """The inner folds, if each training part sees every class (out-of-fold decision values need it)."""
    n_classes = len(np.unique(y))
    if all(len(np.unique(y[train])) == n_classes for train, _ in splits):
        return splits
    logger.warning("svm: a speaker-grouped inner training fold lacks a class; calibrating on stratified folds")
    _, counts = np.unique(y, return_counts=True)
    return _stratified_splits(y, len(splits), seed, int(counts.min()))[0]

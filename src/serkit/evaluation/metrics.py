"""Scores of emotion predictions: WA, UA, macro-F1, per class, confusion, bootstrap intervals.

ShEMO is imbalanced (anger and neutral make about 73 % of its 5-class set), so plain accuracy
(WA, the number published papers report) is always reported beside UA (unweighted average
recall: the mean of the per-class recalls) and macro-F1.

Conventions, where a test set lacks a class (common in leave-one-speaker-out folds):

- UA is the mean recall over the classes PRESENT in ``y_true``; a class with no true utterance
  has no recall to average, and counting it as 0 would punish the model for the test set.
- Macro-F1 is the mean F1 over the classes present in ``y_true`` or ``y_pred`` (scikit-learn's
  default label set): predicting an absent class costs F1, a class never seen anywhere does not.
- Per-class rows cover every label; absent classes have support 0 and scores 0.

The bootstrap computes the same three scores from resampled confusion matrices, so intervals
and point estimates share one definition.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["bootstrap_ci", "classification_metrics", "evaluate_run"]

log = logging.getLogger(__name__)

_SCORES = ("wa", "ua", "macro_f1")
#: Bootstrap resamples x groups handled in one matrix product (bounds memory).
_BOOT_CELLS = 4_000_000


def _as_array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=object)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _check_inputs(y_true: Any, y_pred: Any, labels: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Arrays of equal, non-zero length whose values are all in ``labels`` (unique, non-empty)."""
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels has duplicates: {labels}")
    y_true, y_pred = _as_array(y_true, "y_true"), _as_array(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} values but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("no predictions to score")
    allowed = set(labels)
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        unknown = sorted({str(v) for v in values if v not in allowed})
        if unknown:
            raise ValueError(f"{name} has value(s) {unknown[:10]} outside labels {labels}")
    return y_true, y_pred, labels


def classification_metrics(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any]) -> dict[str, Any]:
    """WA, UA, macro-F1, per-class scores and the confusion matrix of one set of predictions.

    Args:
        y_true: True labels.
        y_pred: Predicted labels.
        labels: Every class, in the order used for ``per_class`` and ``confusion``.

    Returns:
        ``{"wa", "ua", "macro_f1", "per_class": {label: {"precision", "recall", "f1",
        "support"}}, "confusion", "labels", "n"}``; ``confusion[i][j]`` counts utterances of
        class ``labels[i]`` predicted as ``labels[j]`` (rows true, columns predicted). UA
        averages recall over the classes present in ``y_true``; macro-F1 averages F1 over the
        classes present in ``y_true`` or ``y_pred`` (see the module docstring).

    Raises:
        ValueError: Empty or mismatched inputs, or values outside ``labels``.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support, recall_score

    y_true, y_pred, labels = _check_inputs(y_true, y_pred, labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    in_true = [label for label, count in zip(labels, support) if count > 0]
    predicted = set(y_pred)
    seen = [label for label in labels if label in set(in_true) or label in predicted]
    return {
        "wa": float(accuracy_score(y_true, y_pred)),
        "ua": float(recall_score(y_true, y_pred, labels=in_true, average="macro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=seen, average="macro", zero_division=0)),
        "per_class": {
            str(label): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).astype(int).tolist(),
        "labels": [str(label) for label in labels],
        "n": int(len(y_true)),
    }


def _scores_from_confusions(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """WA, UA and macro-F1 of a stack of confusion matrices (shape ``(B, K, K)``), as above."""
    diagonal = np.diagonal(confusions, axis1=1, axis2=2)
    rows = confusions.sum(axis=2)  # true counts
    columns = confusions.sum(axis=1)  # predicted counts
    present = rows > 0
    seen = (rows + columns) > 0
    recall = np.divide(diagonal, rows, out=np.zeros_like(diagonal), where=present)
    f1 = np.divide(2 * diagonal, rows + columns, out=np.zeros_like(diagonal), where=seen)
    return {
        "wa": diagonal.sum(axis=1) / rows.sum(axis=1),
        "ua": recall.sum(axis=1) / present.sum(axis=1),
        "macro_f1": f1.sum(axis=1) / seen.sum(axis=1),
    }


def _group_confusions(true_index: np.ndarray, pred_index: np.ndarray, group_index: np.ndarray,
                      n_groups: int, n_classes: int) -> np.ndarray:
    """One flattened confusion matrix per group: shape ``(G, K*K)``."""
    cells = (group_index * n_classes + true_index) * n_classes + pred_index
    counts = np.bincount(cells, minlength=n_groups * n_classes * n_classes)
    return counts.reshape(n_groups, n_classes * n_classes).astype(float)


def _draw_counts(rng: np.random.Generator, n_boot: int, n_groups: int) -> np.ndarray:
    """How often each group is drawn in each of ``n_boot`` resamples of ``n_groups`` draws."""
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    offsets = (np.arange(n_boot) * n_groups)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=n_boot * n_groups).reshape(n_boot, n_groups)


def bootstrap_ci(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    labels: Sequence[Any],
    groups: Sequence[Any] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of WA, UA and macro-F1.

    Args:
        y_true: True labels.
        y_pred: Predicted labels.
        labels: Every class.
        groups: A group per utterance (speakers): whole groups are resampled, all their
            utterances together, as speaker-independent results call for. None resamples
            single utterances.
        n_boot: Number of resamples.
        seed: Seed of the resampling.
        level: Coverage of the interval, in (0, 1).

    Returns:
        ``{"wa": [lo, hi], "ua": [lo, hi], "macro_f1": [lo, hi]}``.

    Raises:
        ValueError: Bad inputs, ``n_boot < 1`` or ``level`` outside (0, 1).
    """
    y_true, y_pred, labels = _check_inputs(y_true, y_pred, labels)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    index = {label: i for i, label in enumerate(labels)}
    true_index = np.fromiter((index[v] for v in y_true), dtype=np.int64, count=len(y_true))
    pred_index = np.fromiter((index[v] for v in y_pred), dtype=np.int64, count=len(y_pred))
    if groups is None:
        group_index = np.arange(len(y_true))
    else:
        groups = _as_array(groups, "groups")
        if len(groups) != len(y_true):
            raise ValueError(f"groups has {len(groups)} values but y_true has {len(y_true)}")
        group_index = np.unique(groups.astype(str), return_inverse=True)[1].ravel()
    n_groups, n_classes = int(group_index.max()) + 1, len(labels)
    per_group = _group_confusions(true_index, pred_index, group_index, n_groups, n_classes)
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CELLS // n_groups)
    scores: dict[str, list[np.ndarray]] = {name: [] for name in _SCORES}
    for start in range(0, n_boot, chunk):
        counts = _draw_counts(rng, min(chunk, n_boot - start), n_groups)
        confusions = (counts @ per_group).reshape(-1, n_classes, n_classes)
        for name, values in _scores_from_confusions(confusions).items():
            scores[name].append(values)
    tail = (1 - level) / 2
    return {
        name: [float(q) for q in np.quantile(np.concatenate(parts), [tail, 1 - tail])]
        for name, parts in scores.items()
    }


# --------------------------------------------------------------------------- evaluate_run


def _check_predictions(predictions: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """The predictions with ``seed`` (default 0) and integer fold/seed; errors name what is wrong."""
    missing = [c for c in ("utt_id", "fold", "label", "pred") if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack column(s) {missing}; expected utt_id, fold, seed, label, pred, p_<label>...")
    if predictions.empty:
        raise ValueError("predictions table is empty")
    frame = predictions.copy()
    if "seed" not in frame.columns:
        frame["seed"] = 0
    frame["utt_id"] = frame["utt_id"].astype(str)
    frame["fold"] = frame["fold"].astype("int64")
    frame["seed"] = frame["seed"].astype("int64")
    repeated = frame.duplicated(subset=["utt_id", "fold", "seed"])
    if repeated.any():
        raise ValueError(f"predictions repeat {int(repeated.sum())} (utt_id, fold, seed) row(s)")
    _check_inputs(frame["label"], frame["pred"], labels)
    return frame


def _check_against_folds(predictions: pd.DataFrame, folds: pd.DataFrame) -> None:
    """Every prediction must be of a test utterance of its fold; missing test rows are logged."""
    test = folds.loc[folds["split"] == "test", ["utt_id", "fold"]].astype({"utt_id": str, "fold": "int64"})
    keys = pd.MultiIndex.from_frame(test)
    predicted = pd.MultiIndex.from_frame(predictions[["utt_id", "fold"]])
    outside = ~predicted.isin(keys)
    if outside.any():
        examples = [f"fold {f}: {u}" for u, f in predicted[outside][:5]]
        raise ValueError(
            f"{int(outside.sum())} prediction(s) are not of test utterances of their fold "
            f"(scoring training or validation data?): {', '.join(examples)}"
        )
    used_folds = set(predictions["fold"])
    expected = test[test["fold"].isin(used_folds)]
    for seed, rows in predictions.groupby("seed"):
        unscored = len(expected) - len(rows)
        if unscored > 0:
            log.warning("seed %s: %d test utterance(s) of the scored folds have no prediction", seed, unscored)


def _speaker_of(predictions: pd.DataFrame, manifest: pd.DataFrame) -> pd.Series:
    from serkit.evaluation.fold_table import speaker_keys

    lookup = pd.Series(speaker_keys(manifest).to_numpy(), index=manifest["utt_id"].astype(str))
    speakers = predictions["utt_id"].map(lookup)
    if speakers.isna().any():
        unknown = predictions.loc[speakers.isna(), "utt_id"].unique()
        raise ValueError(f"{len(unknown)} predicted utterance(s) are not in the manifest, e.g. {list(unknown[:5])}")
    return speakers


def _summary(values: list[float], interval: list[float]) -> dict[str, Any]:
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=0)), "ci95": interval}


def _per_speaker(predictions: pd.DataFrame) -> dict[str, dict[str, Any]]:
    correct = (predictions["label"] == predictions["pred"]).groupby(predictions["_speaker"], sort=True)
    return {str(s): {"n": int(c.size), "accuracy": float(c.mean())} for s, c in correct}


def evaluate_run(
    predictions: pd.DataFrame,
    manifest: pd.DataFrame,
    folds: pd.DataFrame,
    labels: list[str],
    *,
    speaker_independent: bool,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The content of a run's ``metrics.json``: scores per (fold, seed) run, overall, per speaker.

    Args:
        predictions: ``utt_id, fold, seed, label, pred, p_<label>...``, one row per test
            utterance per fold per seed (``seed`` defaults to 0 when absent).
        manifest: The run's utterances (for speakers).
        folds: The run's folds table (to check that only test utterances are scored and to
            measure speaker overlap).
        labels: Every class, in display order.
        speaker_independent: Whether the protocol is speaker-independent; it chooses what the
            bootstrap resamples (speakers if True, utterances if False).
        n_boot: Bootstrap resamples for the 95 % intervals.
        seed: Seed of the bootstrap.

    Returns:
        ``{"labels", "speaker_independent", "folds": [...], "overall": {"wa", "ua", "macro_f1"
        (each {"mean", "std", "ci95"}), "pooled", "ci_resampling"}, "speaker_overlap",
        "per_speaker"}``; mean and std (ddof=0) run over (fold, seed) runs, the intervals come
        from a bootstrap over all predictions pooled.

    Raises:
        ValueError: Malformed predictions, unknown utterances, or predictions of utterances
            that are not in their fold's test set.
    """
    from serkit.evaluation.leakage import speaker_overlap

    frame = _check_predictions(predictions, labels)
    _check_against_folds(frame, folds)
    frame["_speaker"] = _speaker_of(frame, manifest)
    used_folds = sorted(set(frame["fold"]))
    overlap = speaker_overlap(manifest, folds[folds["fold"].isin(used_folds)]).set_index("fold")
    runs = []
    for (fold, run_seed), rows in frame.groupby(["fold", "seed"], sort=True):
        scores = classification_metrics(rows["label"], rows["pred"], labels)
        shared = overlap.loc[fold]
        runs.append({
            "fold": int(fold), "seed": int(run_seed), "n_test": int(len(rows)),
            "wa": scores["wa"], "ua": scores["ua"], "macro_f1": scores["macro_f1"],
            "per_class": scores["per_class"], "confusion": scores["confusion"],
            "speaker_overlap": {
                "n_test_speakers": int(shared["n_test_speakers"]),
                "n_shared_speakers": int(shared["n_shared_speakers"]),
                "shared_fraction": float(shared["shared_fraction"]),
            },
        })
    # Resampling units: speakers for speaker-independent protocols; else utterances, with all
    # seeds' predictions of one utterance kept together.
    groups = frame["_speaker"] if speaker_independent else frame["utt_id"]
    intervals = bootstrap_ci(frame["label"], frame["pred"], labels, groups=groups, n_boot=n_boot, seed=seed)
    overall: dict[str, Any] = {name: _summary([r[name] for r in runs], intervals[name]) for name in _SCORES}
    overall["pooled"] = classification_metrics(frame["label"], frame["pred"], labels)
    overall["ci_resampling"] = "speaker" if speaker_independent else "utterance"
    max_shared = float(overlap["shared_fraction"].max())
    if speaker_independent and max_shared > 0:
        log.warning("run claimed speaker-independent, but up to %.0f %% of a fold's test utterances come from "
                    "speakers also in training", 100 * max_shared)
    return {
        "labels": [str(label) for label in labels],
        "speaker_independent": bool(speaker_independent),
        "folds": runs,
        "overall": overall,
        "speaker_overlap": {
            "max_shared_fraction": max_shared,
            "folds_with_shared_speakers": int((overlap["n_shared_speakers"] > 0).sum()),
            "n_folds": int(len(overlap)),
        },
        "per_speaker": _per_speaker(frame),
    }

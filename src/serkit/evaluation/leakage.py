"""The leakage guard: whether test utterances or test speakers reach a fold's training or validation part.

`check_folds` refuses a folds table in which test data could feed training or model choice
(an utterance both train/val and test, a fold without test or training rows, or, for a
speaker-independent protocol, a test speaker heard in train or val); `speaker_overlap`
measures per fold how many test speakers are also heard in training, which every run
reports. Speakers are told apart with `serkit.evaluation.fold_table.speaker_keys`.
"""

from __future__ import annotations

import pandas as pd

from serkit.evaluation.fold_table import check_fold_table, listing, speaker_keys

__all__ = ["check_folds", "no_shared_speakers", "speaker_overlap"]


def no_shared_speakers(manifest: pd.DataFrame, folds: pd.DataFrame) -> bool:
    """Whether no fold's test speaker is also heard in its train or val part (`speaker_overlap`)."""
    return bool((speaker_overlap(manifest, folds)["n_shared_speakers"] == 0).all())


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
    check_fold_table(folds)
    if speaker_independent is None:
        speaker_independent = bool(folds.attrs.get("speaker_independent", False))
    known = set(manifest["utt_id"].astype(str))
    unknown = folds.loc[~folds["utt_id"].astype(str).isin(known), "utt_id"]
    if len(unknown):
        raise ValueError(f"folds name {len(unknown)} utterance(s) not in the manifest: {listing(unknown.unique())}")
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
        raise ValueError(f"leakage: {len(leaking)} utterance(s) are both train/val and test: {listing(examples)}")
    examples = [f"fold {f}: {u}" for f, u in splits.index]
    raise ValueError(f"{len(splits)} utterance(s) are listed more than once in a fold: {listing(examples)}")


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
                    f"{listing(shared)}"
                )

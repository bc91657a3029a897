"""Evaluation protocols: folds of train / validation / test utterances, chosen by name.

A protocol turns a manifest into the long table ``folds`` with columns ``utt_id, fold, split``
(`serkit.evaluation.fold_table`): one row per utterance a fold uses, ``fold`` counting from 0
and ``split`` one of ``train``, ``val``, ``test``. Utterances a fold does not use are absent from it.

Protocols (`PROTOCOLS`, chosen by name in `make_folds`; builders in `serkit.evaluation.protocols`
and `serkit.evaluation.predefined`):

- ``stratified_kfold``: k folds stratified by label that IGNORE speakers. Published ShEMO
  numbers (78.29 %, the paper's 81.7 %) come from this protocol; it is offered for comparability
  and is speaker-dependent: the same voices are in training and test.
- ``speaker_kfold``: k folds with disjoint speakers, stratified by label as far as whole
  speakers allow (scikit-learn's ``StratifiedGroupKFold``).
- ``loso``: leave one speaker out (or one session, ``group="session"``, IEMOCAP-style).
- ``holdout``: the named test speakers against all others.
- ``predefined``: membership read from files: a folds CSV, or EmoBox ``*.jsonl`` lists.
- ``cross_corpus``: train on one corpus, test on another (labels mapped beforehand with
  `serkit.evaluation.label_map.map_labels`, e.g. to ``SHARED_4``).

Every protocol can carve a validation set out of each fold's TRAINING part (``val_fraction``,
default 0.2): by whole speakers when the protocol is speaker-independent, stratified by label
otherwise (`serkit.evaluation.validation.draw_validation`, the only place serkit draws
validation rows; a fold with a single training speaker gets rows of that speaker, with a
warning). Test rows never feed validation, so checkpoints and hyper-parameters are never chosen
on the test fold. The leakage guard (`serkit.evaluation.leakage.check_folds`) enforces this
before `make_folds` returns.

Speakers are told apart by ``corpus`` and ``speaker`` together when a manifest mixes corpora
(speaker codes such as ``03`` recur across corpora).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from serkit.evaluation.fold_table import FOLD_COLUMNS, SPLITS, check_manifest
from serkit.evaluation.leakage import check_folds, no_shared_speakers
from serkit.evaluation.predefined import predefined
from serkit.evaluation.protocols import check_n_folds, cross_corpus, holdout, loso, speaker_kfold, stratified_kfold
from serkit.evaluation.validation import add_validation, check_val_fraction

__all__ = ["PROTOCOLS", "is_speaker_independent", "make_folds", "protocol_options"]

log = logging.getLogger(__name__)


#: Protocol name -> builder. Each builder takes the manifest and its own keyword options and
#: returns the train/test (possibly val) rows; `make_folds` adds validation and checks leakage.
PROTOCOLS: dict[str, Callable[..., pd.DataFrame]] = {
    "stratified_kfold": stratified_kfold,
    "speaker_kfold": speaker_kfold,
    "loso": loso,
    "holdout": holdout,
    "predefined": predefined,
    "cross_corpus": cross_corpus,
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
        check_n_folds(options["n_folds"], protocol)
    return {k: v for k, v in options.items() if k in parameters}



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
    fraction = check_val_fraction(options.pop("val_fraction", 0.2))
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    frame = check_manifest(manifest)
    builder_options = protocol_options(protocol, options)
    base = _builder(protocol)(frame, **builder_options)
    independent = _SPEAKER_INDEPENDENT[protocol]
    if independent is None:
        independent = no_shared_speakers(frame, base)
        log.info("%s: folds are speaker-%s", protocol, "independent" if independent else "dependent")
    elif not independent:
        log.warning("%s: speakers are shared between training and test; results are speaker-dependent", protocol)
    folds = _sort_folds(add_validation(frame, base, fraction, int(seed), by_speaker=independent), frame)
    check_folds(frame, folds, speaker_independent=independent)
    folds.attrs.update(protocol=protocol, speaker_independent=bool(independent))
    _log_summary(protocol, folds)
    return folds


def _log_summary(protocol: str, folds: pd.DataFrame) -> None:
    counts = folds.groupby(["fold", "split"]).size().unstack(fill_value=0)
    log.info("%s: %d fold(s); mean utterances per fold: %s", protocol, len(counts),
             ", ".join(f"{c} {counts[c].mean():.0f}" for c in counts.columns))


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
    return no_shared_speakers(check_manifest(manifest), folds)

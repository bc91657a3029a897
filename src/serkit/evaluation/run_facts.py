"""What a finished run directory says, read for its report and for the run comparison.

The files are ``metrics.json`` (required: `read_metrics` names a run without it), and the
optional ``config.json``, ``history.json`` and CSVs (`read_optional_json`, `read_optional_csv`:
absent or broken files give a default, ids stay strings). From them come the names shown for
the corpus, model and features, and the verdict on speaker overlap (`overlap_summary`): a run
counts as speaker-independent only when it says so and no fold measured a shared speaker,
because speaker-dependent numbers are not comparable to speaker-independent ones.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from serkit.evaluation.report_format import fmt_pct, is_number

__all__ = [
    "corpus_name",
    "features_kind",
    "is_speaker_independent_run",
    "model_name",
    "overlap_counts",
    "overlap_summary",
    "read_metrics",
    "read_optional_csv",
    "read_optional_json",
]

log = logging.getLogger(__name__)


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """The parsed ``<run_dir>/metrics.json``.

    Raises:
        ValueError: The file is missing (an unfinished run) or not valid JSON; the message names it.
    """
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise ValueError(f"run directory {run_dir} has no metrics.json (was the run finished?)")
    try:
        return _read_json(path)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def read_optional_json(path: Path, default: Any) -> Any:
    """The parsed JSON file, or ``default`` when it is absent or not valid JSON (logged)."""
    if not path.is_file():
        return default
    try:
        return _read_json(path)
    except json.JSONDecodeError:
        log.warning("ignoring %s: not valid JSON", path)
        return default


def read_optional_csv(path: Path) -> pd.DataFrame | None:
    """The CSV file with every column as strings (empty cells stay ``""``), or None when absent."""
    if not path.is_file():
        return None
    # ids such as speaker "1001" must stay strings to match the keys of metrics.json
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def corpus_name(config: Mapping[str, Any], manifest: pd.DataFrame | None) -> str:
    """The corpus shown for a run: ``config.json``'s ``corpus`` (a name, table or list), else the manifest's corpora joined by ``+``, else ``?``."""
    corpus = config.get("corpus")
    if isinstance(corpus, str) and corpus:
        return corpus
    if isinstance(corpus, Mapping) and corpus.get("name"):
        return str(corpus["name"])
    if isinstance(corpus, Sequence) and not isinstance(corpus, str) and corpus:
        return "+".join(str(c) for c in corpus)
    if manifest is not None and "corpus" in manifest.columns and len(manifest):
        return "+".join(sorted(manifest["corpus"].unique()))
    return "?"


def model_name(config: Mapping[str, Any]) -> str:
    """The model name from ``config.json`` (``model.name`` or a bare ``model``), ``?`` when absent."""
    model = config.get("model")
    if isinstance(model, Mapping):
        return str(model.get("name", "?"))
    return str(model) if model else "?"


def features_kind(config: Mapping[str, Any]) -> str:
    """The feature kind from ``config.json`` (``features.kind`` or a bare ``features``), ``?`` when absent."""
    features = config.get("features")
    if isinstance(features, Mapping):
        return str(features.get("kind", "?"))
    return str(features) if features else "?"


def overlap_counts(metrics: Mapping[str, Any]) -> tuple[int, int, float | None]:
    """(folds sharing speakers, folds, max shared fraction) from metrics.json."""
    overlap = metrics.get("speaker_overlap") or {}
    folds = metrics.get("folds") or []
    shared_folds = overlap.get("folds_with_shared_speakers")
    if shared_folds is None:  # older files: derive from the per-fold entries
        shared_folds = sum(1 for f in folds if (f.get("speaker_overlap") or {}).get("n_shared_speakers", 0) > 0)
    n_folds = overlap.get("n_folds")
    if n_folds is None:
        n_folds = len({f.get("fold") for f in folds})
    max_shared = overlap.get("max_shared_fraction")
    if max_shared is None:
        fractions = [(f.get("speaker_overlap") or {}).get("shared_fraction") for f in folds]
        fractions = [x for x in fractions if is_number(x)]
        max_shared = max(fractions) if fractions else None
    return int(shared_folds), int(n_folds), max_shared


def is_speaker_independent_run(metrics: Mapping[str, Any]) -> bool:
    """Independent only when the run says so *and* no fold actually shares a speaker."""
    shared_folds, _, max_shared = overlap_counts(metrics)
    measured_clean = shared_folds == 0 and not (is_number(max_shared) and max_shared > 0)
    return bool(metrics.get("speaker_independent", measured_clean)) and measured_clean


def overlap_summary(metrics: Mapping[str, Any]) -> str:
    """The one-line verdict on speaker overlap between training and test.

    Args:
        metrics: The parsed ``metrics.json``.

    Returns:
        ``"Speaker-independent: no test speaker appears in training (0 of N folds share
        speakers)"`` or ``"Speaker-DEPENDENT: K of N folds share speakers with training (up
        to P % of test utterances); numbers are not comparable to speaker-independent
        results"``. The measured overlap wins over the ``speaker_independent`` flag.
    """
    shared_folds, n_folds, max_shared = overlap_counts(metrics)
    flag = metrics.get("speaker_independent")
    if is_speaker_independent_run(metrics):
        return f"Speaker-independent: no test speaker appears in training (0 of {n_folds} folds share speakers)"
    if shared_folds == 0 and not (is_number(max_shared) and max_shared > 0):
        # flagged dependent although no overlap was measured: say so rather than guess
        return (
            f"Speaker-DEPENDENT protocol: no overlap was measured (0 of {n_folds} folds share speakers), "
            "but the run is not declared speaker-independent; treat numbers as speaker-dependent"
        )
    line = (
        f"Speaker-DEPENDENT: {shared_folds} of {n_folds} folds share speakers with training "
        f"(up to {fmt_pct(max_shared)} of test utterances); numbers are not comparable to "
        "speaker-independent results"
    )
    if flag is True:
        line += " (the run claims to be speaker-independent, but the folds say otherwise)"
    return line

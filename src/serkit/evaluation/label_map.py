"""Shared label sets for cross-corpus runs: `SHARED_4` and `map_labels`.

Corpora name the same emotion differently (``anger``, ``angry``); each corpus adapter in
`serkit.data.datasets` states how its native labels map onto four shared ones, and `SHARED_4`
gathers those tables by corpus name. `map_labels` renames a manifest's labels with such
tables and drops rows whose label has no shared name, so a ``cross_corpus`` protocol trains
and tests on one label set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pandas as pd

from serkit.evaluation.fold_table import listing

__all__ = ["SHARED_4", "map_labels"]

log = logging.getLogger(__name__)


def _shared_4() -> dict[str, dict[str, str]]:
    """Every corpus adapter's ``SHARED_4`` table, by corpus name (the facts live in datasets/<corpus>.py)."""
    from serkit.data.datasets import ADAPTERS, adapter

    tables = {name: getattr(adapter(name), "SHARED_4", None) for name in ADAPTERS}
    return {name: dict(table) for name, table in tables.items() if table is not None}


#: Four emotions shared by the corpora serkit reads: corpus name -> {native label: shared label}.
SHARED_4: dict[str, dict[str, str]] = _shared_4()


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
                    listing((f"{c}:{lab} {n}" for (c, lab), n in counts.items()), 20))
    keep = mapped.notna()
    result = frame[keep].copy()
    result["label"] = mapped[keep].astype(str)
    return result.reset_index(drop=True)

"""Corpus adapters: a corpus folder in, a validated manifest out.

Each adapter is a module ``serkit.data.datasets.<name>`` with ``NAME``, ``LABELS`` (its native label
set, or None when the user's data decides), ``list_utterances(root, **options)`` that reads the
corpus's official file naming into manifest rows (no audio decoding), and
``prepare(root, **options)``, which adds durations and validates. Adapters are imported only
when used.

Corpus facts live in the corpus's module, each constant naming its source (the corpus's paper
or documentation): its label codes (e.g. ShEMO's emotion letters, EMOVO's Italian codes), the
paper's class setups (ShEMO's 5 classes), and, for corpora serkit downloads, ``ARCHIVES`` (URLs,
sizes, SHA-256), ``ARCHIVE_FOLDERS`` (what they unpack to) and ``download_hint`` (how to fetch
them by hand), which `serkit.data.download` reads. ``SHARED_4`` maps a corpus's native labels to the
four emotions every corpus here has (angry, happy, neutral, sad): serkit's own choice, by
meaning, for cross-corpus runs; `serkit.evaluation.label_map.SHARED_4` gathers these tables.
"""

from __future__ import annotations

import importlib
import inspect
import os
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI lists ADAPTERS on every command: pandas only where a manifest is built
    import pandas as pd

__all__ = ["ADAPTERS", "adapter", "adapter_options", "prepare"]

#: Corpus name -> module; modules are imported lazily.
ADAPTERS: dict[str, str] = {
    name: f"serkit.data.datasets.{name}"
    for name in ("shemo", "emodb", "ravdess", "crema_d", "tess", "iemocap", "emovo", "urdu", "csv", "folder")
}


def adapter(corpus: str) -> ModuleType:
    """The adapter module for `corpus`.

    Raises:
        ValueError: Unknown corpus name; the message lists the known ones.
    """
    if corpus not in ADAPTERS:
        raise ValueError(f"unknown corpus {corpus!r}; known: {', '.join(sorted(ADAPTERS))}")
    return importlib.import_module(ADAPTERS[corpus])


def adapter_options(corpus: str) -> dict[str, inspect.Parameter]:
    """The keyword options an adapter's ``prepare`` takes, by name."""
    params = inspect.signature(adapter(corpus).list_utterances).parameters
    return {n: p for n, p in params.items() if n != "root" and p.kind is not inspect.Parameter.VAR_KEYWORD}


def prepare(corpus: str, root: str | os.PathLike, /, **options) -> pd.DataFrame:
    """Build the manifest of a corpus found under `root`.

    Args:
        corpus: Adapter name (see `ADAPTERS`).
        root: The corpus folder (for ``csv``: the CSV file).
        **options: Adapter options (see each adapter's ``list_utterances``).

    Returns:
        The validated manifest. Files whose header could not be read are left out and listed
        in ``manifest.attrs["skipped"]`` as ``{"path", "reason"}`` dicts.

    Raises:
        ValueError: Unknown corpus or option.
        FileNotFoundError: `root` does not exist.
        serkit.data.schema.ManifestError: Duplicate ids, unknown labels, missing files.
    """
    allowed = adapter_options(corpus)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"{corpus}: unknown option(s) {unknown}; allowed: {sorted(allowed) or 'none'}")
    return adapter(corpus).prepare(root, **options)

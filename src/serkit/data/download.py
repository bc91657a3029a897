"""Fetch a corpus's official archives, verify them, unpack them and write its manifest.

`serkit download shemo DEST` ends in ``DEST/manifest.csv``. Each step can be interrupted and
run again:

* downloads go to ``<name>.part`` and resume with an HTTP ``Range`` request;
* an archive is renamed to its final name only once its size and SHA-256 match, and a final
  archive already in DEST (downloaded earlier, or put there by hand) is checked and used as
  it is;
* unpacking goes through a temporary folder and leaves a ``.unpacked-<name>`` marker when
  done, so a finished archive is not unpacked twice and a killed one is unpacked again.

What to fetch is a fact of the corpus: its adapter module (``serkit.data.datasets.<corpus>``) names
its ``ARCHIVES``, the ``ARCHIVE_FOLDERS`` they unpack to and a ``download_hint``; this module
only chains the steps: `serkit.data.download_fetch` fetches, `serkit.data.download_archive`
checks and unpacks. ``SHEMO_ARCHIVES`` and ``Archive`` are re-exported from the adapters.

Only the standard library talks to the network (`urllib.request`), so proxies set in the
usual environment variables apply. ``SERKIT_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) forbids
any network access.
"""


from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from serkit.data.datasets._common import Archive
from serkit.data.datasets.shemo import ARCHIVES as SHEMO_ARCHIVES
from serkit.data.download_archive import DownloadError, is_unpacked, scratch_folder, unpack
from serkit.data.download_fetch import fetch

__all__ = [
    "SHEMO_ARCHIVES",
    "Archive",
    "download_corpus",
]

log = logging.getLogger(__name__)


def _corpus_root(dest: Path, folders: Sequence[str]) -> Path:
    """The folder holding the archives' `folders` (one of them suffices): DEST or one folder below it."""
    for candidate in (dest, *sorted(p for p in dest.iterdir() if p.is_dir() and not p.name.startswith("."))):
        if any((candidate / folder).is_dir() for folder in folders):
            return candidate
    listed = " or ".join(f"{folder}/" for folder in folders)
    raise DownloadError(f"{dest}: no {listed} folder after unpacking the archives")


def _downloadable(corpus: str) -> ModuleType | None:
    """The adapter module of `corpus` when it names archives to download, else None."""
    from serkit.data.datasets import ADAPTERS, adapter

    if corpus not in ADAPTERS:
        return None
    module = adapter(corpus)
    return module if getattr(module, "ARCHIVES", None) else None


def download_corpus(
    corpus: str,
    dest: str | os.PathLike,
    *,
    archives: Sequence[Archive] | None = None,
    timeout: float = 30,
    progress: bool = True,
) -> Path:
    """Download, verify and unpack a corpus into `dest`, then write ``dest/manifest.csv``.

    Safe to run again: verified archives and finished unpacks are reused, so after a manual
    download (archives put in `dest`) the same call works without network.

    Args:
        corpus: The corpus name: one whose adapter names ``ARCHIVES`` (only ``shemo`` for now).
        dest: The destination folder; created when missing.
        archives: Archives to use instead of the official ones (tests, mirrors).
        timeout: Seconds to wait for a connection or for data.
        progress: Show progress bars on stderr when it is a terminal.

    Returns:
        The manifest path.

    Raises:
        ValueError: Unknown corpus.
        DownloadError: A download, check or unpack failed; offline errors say how to fetch
            the archives by hand.
    """
    facts = _downloadable(corpus)
    if facts is None:
        from serkit.data.datasets import ADAPTERS

        known = [name for name in ADAPTERS if _downloadable(name) is not None]
        raise ValueError(f"cannot download corpus {corpus!r}; known: {', '.join(sorted(known))}")
    from serkit.data.datasets import prepare
    from serkit.data.schema import write_manifest

    chosen = tuple(archives) if archives is not None else tuple(facts.ARCHIVES)
    dest = Path(dest).expanduser().resolve()
    dest.mkdir(parents=True, exist_ok=True)
    hint = facts.download_hint(chosen, dest)
    for archive in chosen:
        if is_unpacked(dest, archive.name, archive.sha256):
            # no need for the archive any more (it may have been deleted to save space)
            log.info("%s: already downloaded and unpacked", archive.name)
            shutil.rmtree(scratch_folder(dest, Path(archive.name)), ignore_errors=True)
            continue
        path = fetch(archive, dest, timeout=timeout, progress=progress, manual_hint=hint)
        unpack(path, dest, sha256=archive.sha256)
    root = _corpus_root(dest, facts.ARCHIVE_FOLDERS)
    manifest = prepare(corpus, root)
    skipped = manifest.attrs.get("skipped", [])
    if skipped:
        log.warning("%d file(s) could not be read and were left out, e.g. %s", len(skipped), skipped[0])
    out = write_manifest(manifest, dest / "manifest.csv")
    log.info("wrote %s: %d utterances", out, len(manifest))
    return out

"""The feature cache: one folder per extractor fingerprint, one file per utterance.

Layout::

    <root>/<fingerprint>/
        meta.json                   what is inside: extractor identity, outputs, versions
        items/<2 hex>/<key>.npz     one utterance's named arrays (numpy, no pickle)
        errors/<key>.json           one failed utterance each: utt_id, path, reason
        errors.csv                  the failures gathered at the end of a run
        claims/<key>.claim          an utterance being computed right now (see claims.py)

Every file is written to a temporary name in its own folder and moved into place with
`os.replace` (`serkit.atomic`), so a process killed at any moment (SIGKILL included) leaves
either the whole file or none; files get the user's umask. Several processes can fill the
same cache at once: each claims an utterance before computing it and skips those claimed by
others, and should two ever compute the same one, the second identical file replaces the first.
A killed writer's temporary file is removed by `FeatureCache.clean` on a later run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from serkit.atomic import atomic_write, remove_stale_temps
from serkit.features.base import CACHE_FORMAT_VERSION, Extractor
from serkit.features.claims import Claim, release_abandoned, try_claim

__all__ = ["STALE_TEMP_SECONDS", "FeatureCache", "atomic_write", "default_cache_root"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]")

# A temporary file this old has no live writer: an item is written in well under a second, so
# this only has to outlast a stalled disk, while the space of a killed run comes back soon.
STALE_TEMP_SECONDS = 10 * 60


def default_cache_root() -> Path:
    """``$SERKIT_CACHE`` or ``~/.cache/serkit/features``."""
    env = os.environ.get("SERKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "serkit" / "features"


def _key(utt_id: str) -> str:
    """A file-system-safe, collision-free file stem for an utterance id."""
    safe = _SAFE.sub("_", utt_id)[:100]
    if safe != utt_id:  # sanitising may merge ids: keep them apart with a hash
        safe += "-" + hashlib.sha1(utt_id.encode()).hexdigest()[:10]
    return safe


class FeatureCache:
    """Cached features of one extractor configuration.

    Args:
        root: The cache root; the extractor's fingerprint names the folder under it.
        extractor: The extractor whose outputs are stored.
    """

    def __init__(self, root: str | os.PathLike, extractor: Extractor) -> None:
        self.extractor = extractor
        self.fingerprint = extractor.fingerprint()
        self.dir = Path(root).expanduser().resolve() / self.fingerprint

    # -- paths -------------------------------------------------------------------------
    def item_path(self, utt_id: str) -> Path:
        """Where the features of `utt_id` live."""
        digest = hashlib.sha1(utt_id.encode()).hexdigest()[:2]
        return self.dir / "items" / digest / f"{_key(utt_id)}.npz"

    def error_path(self, utt_id: str) -> Path:
        """Where the failure record of `utt_id` lives."""
        return self.dir / "errors" / f"{_key(utt_id)}.json"

    def claim_path(self, utt_id: str) -> Path:
        """The file a process locks while it computes `utt_id`."""
        return self.dir / "claims" / f"{_key(utt_id)}.claim"

    # -- sharing the work --------------------------------------------------------------
    def claim(self, utt_id: str) -> Claim | None:
        """Claim `utt_id` for this process, or None when another live process holds it."""
        return try_claim(self.claim_path(utt_id))

    def clean(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Remove what killed processes left: old temporary files and unheld claim files.

        Args:
            older_than: Temporary files younger than this (seconds) are kept: a live
                concurrent writer may still be filling them.

        Returns:
            How many temporary files were removed.
        """
        removed = remove_stale_temps(self.dir, older_than)
        release_abandoned(self.dir / "claims")
        return removed

    # -- metadata ----------------------------------------------------------------------
    def write_meta(self, outputs: dict[str, dict[str, Any]] | None = None) -> Path:
        """Write ``meta.json`` (identity, fingerprint, outputs, versions); keeps known outputs."""
        from serkit import __version__

        path = self.dir / "meta.json"
        meta = self.read_meta() if path.exists() else {}
        meta.update(
            {
                "fingerprint": self.fingerprint,
                "cache_format": CACHE_FORMAT_VERSION,
                "extractor": self.extractor.identity(),
                "serkit_version": __version__,
                "numpy_version": np.__version__,
                "layout": "items/<2 hex>/<utt key>.npz, one per utterance; numpy arrays, no pickle",
            }
        )
        if outputs:
            meta["outputs"] = outputs
        meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        with atomic_write(path, "w") as stream:
            json.dump(meta, stream, indent=2, sort_keys=True, default=str)
        return path

    def read_meta(self) -> dict[str, Any]:
        """The parsed ``meta.json``."""
        return json.loads((self.dir / "meta.json").read_text())

    # -- items -------------------------------------------------------------------------
    def has(self, utt_id: str) -> bool:
        """Whether features of `utt_id` are stored (a stored file is always whole)."""
        return self.item_path(utt_id).is_file()

    def missing(self, utt_ids: Iterable[str]) -> list[str]:
        """The ids of `utt_ids` not yet stored, in their order."""
        return [u for u in utt_ids if not self.has(u)]

    def save(self, utt_id: str, features: dict[str, np.ndarray], source: str = "") -> Path:
        """Store one utterance's named arrays atomically and clear any earlier failure.

        Args:
            utt_id: The utterance id.
            features: Output name -> array.
            source: The audio path, kept inside the file for inspection.

        Returns:
            The file written.
        """
        reserved = {"__utt_id__", "__source__"} & set(features)
        if reserved:
            raise ValueError(f"feature names {sorted(reserved)} are reserved")
        path = self.item_path(utt_id)
        arrays = {name: np.asarray(value) for name, value in features.items()}
        with atomic_write(path) as stream:
            np.savez(stream, __utt_id__=np.array(utt_id), __source__=np.array(source), **arrays)
        self.error_path(utt_id).unlink(missing_ok=True)
        return path

    def load(self, utt_id: str, outputs: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """The stored arrays of `utt_id` (all, or only `outputs`).

        Raises:
            KeyError: Not cached, or an output name that was not stored.
        """
        path = self.item_path(utt_id)
        if not path.is_file():
            raise KeyError(f"{utt_id!r} is not in the feature cache {self.dir}")
        with np.load(path, allow_pickle=False) as data:
            stored = str(data["__utt_id__"])
            if stored != utt_id:  # cannot happen unless files were moved by hand
                raise KeyError(f"{path} holds {stored!r}, not {utt_id!r}")
            names = [n for n in data.files if not n.startswith("__")] if outputs is None else list(outputs)
            absent = [n for n in names if n not in data.files]
            if absent:
                raise KeyError(f"{path}: no output(s) {absent}; stored: {[n for n in data.files if not n.startswith('__')]}")
            return {n: data[n] for n in names}

    def stack(self, utt_ids: Iterable[str], output: str) -> np.ndarray:
        """One output of many utterances stacked along a new first axis (equal shapes)."""
        return np.stack([self.load(u, [output])[output] for u in utt_ids])

    # -- failures ----------------------------------------------------------------------
    def record_error(self, utt_id: str, path: str, reason: str) -> None:
        """Remember why `utt_id` failed; written atomically, one file per utterance."""
        with atomic_write(self.error_path(utt_id), "w") as stream:
            json.dump({"utt_id": utt_id, "path": path, "reason": reason}, stream)

    def errors(self) -> list[dict[str, str]]:
        """Every recorded failure whose utterance is still not cached, sorted by id."""
        folder = self.dir / "errors"
        if not folder.is_dir():
            return []
        records = []
        for file in folder.glob("*.json"):
            try:
                record = json.loads(file.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if not self.has(record["utt_id"]):
                records.append(record)
        return sorted(records, key=lambda r: r["utt_id"])

    def write_errors_csv(self) -> Path | None:
        """Gather the failures into ``errors.csv`` (removed when there are none)."""
        import csv

        path = self.dir / "errors.csv"
        records = self.errors()
        if not records:
            path.unlink(missing_ok=True)
            return None
        with atomic_write(path, "w") as stream:
            writer = csv.DictWriter(stream, fieldnames=["utt_id", "path", "reason"], lineterminator="\n")
            writer.writeheader()
            writer.writerows(records)
        return path

"""Check and unpack downloaded corpus archives: size and SHA-256, then a safe, resumable unzip.

An archive at its final name is trusted only once its size and SHA-256 match the corpus's
facts; the hash is cached in a ``<name>.sha256`` sidecar keyed by size and modification time so
a rerun does not hash gigabytes again. `unpack` checks every member name before writing (no
absolute or ``..`` paths), extracts through a scratch folder inside the destination and writes
a ``.unpacked-<name>`` marker last, so a killed unpack is redone and a finished one skipped.
`DownloadError` is the one error of the download path (`serkit.data.download_fetch` raises it
too); `serkit.data.download` chains fetching, these checks and the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from serkit.data.datasets._common import Archive

__all__ = [
    "CHUNK",
    "DownloadError",
    "finish_part",
    "is_unpacked",
    "scratch_folder",
    "unpack",
    "verify_final",
]

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes per read when hashing, copying and downloading


class DownloadError(OSError):
    """A download, verification or unpacking failure; the message names the file and why.

    Attributes:
        offline: True when no server could be reached (or network access is switched off),
            so the message explains how to fetch the files by hand.
    """

    def __init__(self, message: str, *, offline: bool = False) -> None:
        super().__init__(message)
        self.offline = offline

    def __str__(self) -> str:
        return str(self.args[0])



# --------------------------------------------------------------------------- verification


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _cached_hash(path: Path) -> str | None:
    """The hash recorded for `path` when its size and mtime have not changed since."""
    try:
        record = json.loads(_sidecar(path).read_text(encoding="utf-8"))
        stat = path.stat()
        if record["size"] == stat.st_size and record["mtime_ns"] == stat.st_mtime_ns:
            return str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _remember_hash(path: Path, sha256: str) -> None:
    # Best effort: a read-only folder just means the next run hashes again.
    stat = path.stat()
    record = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    tmp = _sidecar(path).with_suffix(".sha256.tmp")
    try:
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        os.replace(tmp, _sidecar(path))
    except OSError as exc:
        log.debug("could not write %s: %s", _sidecar(path), exc)


def verify_final(archive: Archive, path: Path) -> None:
    """Check an archive already at its final name; raise DownloadError when it is not right."""
    size = path.stat().st_size
    if size != archive.size:
        raise DownloadError(
            f"{path}: size mismatch: expected {archive.size} bytes, found {size}; "
            f"delete it and run again to download it afresh"
        )
    if _cached_hash(path) == archive.sha256:
        log.info("%s: already verified", path)
        return
    log.info("%s: checking SHA-256", path)
    actual = _sha256(path)
    if actual != archive.sha256:
        raise DownloadError(
            f"{path}: SHA-256 mismatch: expected {archive.sha256}, found {actual}; "
            f"delete it and run again to download it afresh"
        )
    _remember_hash(path, actual)


def finish_part(archive: Archive, part: Path, final: Path, source: str) -> None:
    """Verify a complete .part and rename it; a mismatch deletes it."""
    size = part.stat().st_size
    if size != archive.size:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{archive.name}: size mismatch ({source}): expected {archive.size} bytes, got {size}; "
            f"the partial file was deleted"
        )
    actual = _sha256(part)
    if actual != archive.sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{archive.name}: SHA-256 mismatch ({source}): expected {archive.sha256}, got {actual}; "
            f"the partial file was deleted, run again to download it afresh"
        )
    os.replace(part, final)
    _remember_hash(final, actual)
    log.info("%s: verified", final)


# --------------------------------------------------------------------------- unpacking


def _member_path(name: str, archive: Path) -> PurePosixPath | None:
    """A member's safe relative path, None for entries to skip; DownloadError when unsafe."""
    clean = name.replace("\\", "/")
    path = PurePosixPath(clean)
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean) or ".." in path.parts:
        raise DownloadError(f"{archive}: unsafe member {name!r} (absolute or '..' path); nothing was unpacked")
    if not path.parts or path.parts[0] == "__MACOSX" or path.name == ".DS_Store":
        return None
    return path


def _marker(dest: Path, archive: Path) -> Path:
    return dest / f".unpacked-{archive.name}"


def scratch_folder(dest: Path, archive: Path) -> Path:
    """The temporary folder `unpack` extracts `archive` into (removed when done or on the next run)."""
    # Inside dest so the final moves are renames on one file system.
    return dest / f".unpacking-{archive.name}"


def is_unpacked(dest: Path, name: str, sha256: str | None = None) -> bool:
    """Whether archive `name` was fully unpacked into `dest` (and its folders are still there)."""
    try:
        record = json.loads(_marker(dest, Path(name)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or (sha256 is not None and record.get("sha256") != sha256):
        return False
    return all((dest / entry).exists() for entry in record.get("entries", []))


def _merge(src: Path, dest: Path) -> None:
    """Move every file under `src` to the same place under `dest` (same file system)."""
    for folder, _, files in os.walk(src):
        target_dir = dest / Path(folder).relative_to(src)
        target_dir.mkdir(parents=True, exist_ok=True)
        for name in files:
            os.replace(Path(folder) / name, target_dir / name)


def unpack(archive: str | os.PathLike, dest: str | os.PathLike, *, sha256: str | None = None) -> list[Path]:
    """Extract a zip archive into `dest` safely and once.

    Every member name is checked before anything is written (absolute and ``..`` paths are
    refused); ``__MACOSX/`` entries are skipped. Files are extracted to a temporary folder in
    `dest`, moved into place, and a ``.unpacked-<name>`` marker is written last, so an
    interrupted run is redone and a finished one is skipped.

    Args:
        archive: The zip file.
        dest: The folder to unpack into.
        sha256: The archive's hash, recorded in the marker (a changed archive is unpacked again).

    Returns:
        The top-level paths the archive unpacked to (e.g. ``[dest / "female"]``).

    Raises:
        DownloadError: Not a valid zip, or an unsafe member name.
    """
    archive, dest = Path(archive), Path(dest)
    marker = _marker(dest, archive)
    tmp = scratch_folder(dest, archive)
    shutil.rmtree(tmp, ignore_errors=True)  # leftovers of a killed run
    if is_unpacked(dest, archive.name, sha256):
        log.info("%s: already unpacked", archive)
        entries = json.loads(marker.read_text(encoding="utf-8"))["entries"]
        return [dest / e for e in entries]
    log.info("%s: unpacking into %s", archive, dest)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [(info, path) for info in zf.infolist() if (path := _member_path(info.filename, archive))]
            tmp.mkdir(parents=True)
            for info, path in members:
                target = tmp.joinpath(*path.parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"{archive}: not a valid zip archive ({exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    entries = sorted({path.parts[0] for _, path in members})
    _merge(tmp, dest)
    shutil.rmtree(tmp, ignore_errors=True)
    record = {"archive": archive.name, "sha256": sha256, "entries": entries}
    marker_tmp = marker.with_name(marker.name + ".tmp")
    marker_tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
    os.replace(marker_tmp, marker)
    return [dest / e for e in entries]



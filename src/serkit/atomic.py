"""Atomic file writes that honour the umask, and removal of temporary files left by a kill.

Every file serkit writes "atomically" is first written under a temporary name in the target's
own folder (``.<name>.<random>.tmp``), flushed to disk and moved onto the target with
`os.replace`: a reader, or a process killed at any moment (SIGKILL included), sees either the
whole old file or the whole new one.

Temporary files are created with ``os.open(..., 0o666)`` and folders with ``os.mkdir(...,
0o777)``, so the kernel applies the umask (and any default ACL) exactly as for an ordinary
``open()``: a team sharing a cache or run folder with umask 002 can read each other's files.
`tempfile.mkstemp` would make every file 0600 whatever the umask.

A process killed while writing leaves its temporary file behind; `remove_stale_temps`
removes those older than a given age (young ones may belong to a live writer).
"""

from __future__ import annotations

import io
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TEMP_NAME",
    "atomic_path",
    "atomic_write",
    "make_temp_dir",
    "make_temp_file",
    "remove_stale_temps",
]

# `.<target name>.<random>.tmp`; the random part has no dot. tempfile.mkstemp's names (and
# older serkit versions') have the same shape, so their leftovers are recognised too.
TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")

_ATTEMPTS = 100


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")


def make_temp_file(target: str | os.PathLike) -> Path:
    """Create an empty temporary file beside `target`, mode ``0o666 & ~umask``.

    For writers that need a path rather than a stream (soundfile, onnx); the caller moves it
    onto `target` with `os.replace` or removes it.

    Args:
        target: The file that will eventually be written; its folder must exist.

    Returns:
        The temporary file's path, in `target`'s folder (same file system, so the rename is
        atomic).
    """
    target = Path(target)
    for _ in range(_ATTEMPTS):
        path = _temp_name(target)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{target.parent}: no free temporary name for {target.name}")


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """Create a fresh folder ``<parent>/<prefix><random>``, mode ``0o777 & ~umask``.

    A replacement for `tempfile.mkdtemp` (always 0700) for folders that are later renamed
    into place and so must be readable like any other folder the user makes.
    """
    parent = Path(parent)
    for _ in range(_ATTEMPTS):
        path = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{parent}: no free temporary folder name with prefix {prefix!r}")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success fsync it and move it onto `target`.

    The folder of `target` is created. On any exception the temporary file is removed and
    `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_file(target)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(target: str | os.PathLike, mode: str = "wb", **open_args: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside `target` for writing; on success move it onto `target`.

    Args:
        target: The file to (re)write; its folder is created.
        mode: ``"wb"`` or ``"w"`` (text).
        **open_args: Passed to `open` for text mode (``encoding``, ``newline``).

    Yields:
        The open stream. It is flushed and fsynced before the rename; on any exception the
        temporary file is removed and `target` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes new files only (mode 'w' or 'wb'), not {mode!r}")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(_ATTEMPTS):
        tmp = _temp_name(target)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        break
    else:
        raise FileExistsError(f"{target.parent}: no free temporary name for {target.name}")
    try:
        if mode == "w":
            open_args.setdefault("encoding", "utf-8")
        with io.open(fd, mode, **open_args) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: str | os.PathLike, older_than: float) -> int:
    """Remove serkit temporary files (``.<name>.<random>.tmp``) under `folder`, recursively.

    Only files last modified more than `older_than` seconds ago are removed, so a writer that
    is still alive (a concurrent process) keeps its file; a file that vanishes meanwhile (its
    writer finished) is skipped.

    Args:
        folder: The folder to clean; a missing folder holds nothing.
        older_than: Minimum age in seconds.

    Returns:
        How many files were removed.
    """
    cutoff = time.time() - older_than
    removed = 0
    for parent, _dirs, files in os.walk(folder):
        for name in files:
            if not TEMP_NAME.match(name):
                continue
            path = os.path.join(parent, name)
            try:
                if os.lstat(path).st_mtime < cutoff:
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed

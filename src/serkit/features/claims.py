"""Per-item claims, so that processes filling one cache share the work instead of repeating it.

A claim is an exclusive, non-blocking `fcntl.flock` on a small file (``claims/<key>``) held
while the item is computed. The kernel drops the lock when its holder exits, however it exits
(SIGKILL included), so a crashed process never blocks the item: the next process to try takes
it. There is no expiry to tune and no pid to check, and it works for processes on other hosts
wherever the file system supports flock (local disks; NFS emulates it with byte-range locks).

The file itself is only a name to lock: its text (pid, host, time) is for people looking at a
busy cache. The holder removes it when done. Because a file can be removed while another
process has it open, a lock is only trusted when the path still names the inode that was
locked; otherwise the attempt starts over on the new file.

Where `fcntl` is missing (Windows) every claim succeeds: processes then only avoid work by
re-checking the cache, as before.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["Claim", "release_abandoned", "try_claim"]


class Claim:
    """A held claim on one item; `release` it when the item is done (or has failed)."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @property
    def held(self) -> bool:
        """False once released."""
        return self._fd is not None

    def release(self) -> None:
        """Remove the claim file, then drop the lock (in that order: see the module notes)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:  # a folder we may not write to: the lock alone still ends below
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's claim file: a read handle can still be locked
        return os.open(path, os.O_RDONLY)


def try_claim(path: str | os.PathLike) -> Claim | None:
    """Claim the item named by `path`, or return None when a live process holds it.

    Args:
        path: The claim file; its folder is created.

    Returns:
        The held claim, or None when another process (or another handle in this process)
        holds it now.
    """
    path = Path(path)
    if fcntl is None:  # pragma: no cover - Windows
        return Claim(path, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current != os.fstat(fd).st_ino:  # the holder removed it between our open and lock
            os.close(fd)
            continue
        _describe(fd)
        return Claim(path, fd)


def _describe(fd: int) -> None:
    """Write who holds the claim, for people inspecting the cache; best effort."""
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
    except OSError:  # read-only handle: the lock is what counts
        pass


def release_abandoned(folder: str | os.PathLike) -> int:
    """Remove claim files under `folder` that no live process holds (left by crashes).

    Returns:
        How many were removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        claim = try_claim(path) if path.is_file() else None
        if claim is not None:
            claim.release()
            removed += 1
    return removed

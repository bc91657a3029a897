"""Fetch one corpus archive over HTTP: resumable, verified, and refused when offline.

`fetch` downloads to ``<name>.part``, resumes a broken transfer with an HTTP ``Range``
request, tries the archive's URLs in turn (an unreachable host is not waited for twice) and
renames the file to its final name only after its size and SHA-256 match
(`serkit.data.download_archive`). Only the standard library talks to the network
(`urllib.request`), so proxies set in the usual environment variables apply; an offline
variable (`OFFLINE_VARIABLES`) forbids any network access, and the error then says how to
fetch the file by hand.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from serkit import __version__
from serkit.data.datasets._common import Archive
from serkit.data.download_archive import CHUNK, DownloadError, finish_part, verify_final

__all__ = ["OFFLINE_VARIABLES", "fetch", "offline_requested"]

log = logging.getLogger(__name__)

#: Environment variables that, set to 1/true/yes/on, forbid network access.
OFFLINE_VARIABLES: tuple[str, ...] = ("SERKIT_OFFLINE", "HF_HUB_OFFLINE")

_USER_AGENT = f"serkit/{__version__} (Python urllib)"
_TRUE = frozenset({"1", "true", "yes", "on"})


# --------------------------------------------------------------------------- offline switch


def offline_requested() -> str | None:
    """The name of the set offline variable (see `OFFLINE_VARIABLES`), or None."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return name
    return None


def _default_hint(archive: Archive, dest_dir: Path) -> str:
    return (
        f"To do it by hand: on a connected machine download {archive.name} from {archive.url}, "
        f"put it in {dest_dir} and run again; an archive already there is checked "
        f"(size and SHA-256) and used as it is."
    )


# --------------------------------------------------------------------------- transfer


class _SourceFailed(Exception):
    """This URL cannot deliver the file; another URL might."""

    def __init__(self, reason: str, *, offline: bool = False) -> None:
        super().__init__(reason)
        self.offline = offline


class _Interrupted(Exception):
    """The transfer broke off; resuming may work."""


class _Restart(_Interrupted):
    """The server cannot continue the partial file; start it over."""


def _unreachable(reason: object) -> bool:
    """Whether a connection failure means the host cannot be reached at all."""
    return isinstance(reason, OSError) and not isinstance(reason, ssl.SSLError)


def _content_range(header: str | None) -> tuple[int, int | None] | None:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None)."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", header or "")
    if not match:
        return None
    total = None if match.group(2) == "*" else int(match.group(2))
    return int(match.group(1)), total


def _open(opener: urllib.request.OpenerDirector, url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    """Send the GET (with a Range from `offset`) and return the response, or raise."""
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            raise _Restart("the server refused the range request") from None
        raise _SourceFailed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _SourceFailed(str(exc.reason), offline=_unreachable(exc.reason)) from None
    except TimeoutError as exc:  # connected, but no answer within the timeout
        raise _SourceFailed(f"no answer within {timeout:g} s ({exc})", offline=True) from None
    except (http.client.HTTPException, ConnectionError) as exc:
        raise _Interrupted(f"{type(exc).__name__}: {exc}") from None


def _start_offset(response: http.client.HTTPResponse, archive: Archive, offset: int, part: Path) -> int:
    """Check the response headers; return where its body starts in the file (0 or `offset`)."""
    if response.status == 206:
        parsed = _content_range(response.headers.get("Content-Range"))
        if parsed is not None and parsed[1] is not None and parsed[1] != archive.size:
            part.unlink(missing_ok=True)
            raise _SourceFailed(
                f"size mismatch: the server has {parsed[1]} bytes, expected {archive.size}"
            )
        if parsed is None or parsed[0] != offset:
            raise _Restart(f"unexpected Content-Range {response.headers.get('Content-Range')!r}")
        return offset
    if response.status != 200:
        raise _SourceFailed(f"unexpected HTTP status {response.status}")
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) != archive.size:
        # e.g. a Git LFS pointer or an error page instead of the archive
        part.unlink(missing_ok=True)
        raise _SourceFailed(f"size mismatch: the server sends {length} bytes, expected {archive.size}")
    if offset:
        log.info("%s: the server ignored the range request; starting over", archive.name)
    return 0


def _transfer(
    opener: urllib.request.OpenerDirector,
    url: str,
    archive: Archive,
    part: Path,
    timeout: float,
    bar: tqdm,
) -> None:
    """One GET appending to (or rewriting) `part`; returns when the body ends."""
    offset = part.stat().st_size if part.exists() else 0
    with _open(opener, url, offset, timeout) as response:
        start = _start_offset(response, archive, offset, part)
        bar.n = start
        bar.refresh()
        written = start
        with open(part, "ab" if start else "wb") as out:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Interrupted(f"{type(exc).__name__}: {exc}") from None
                if not chunk:
                    break
                written += len(chunk)
                if written > archive.size:
                    out.close()
                    part.unlink(missing_ok=True)
                    raise _SourceFailed(f"size mismatch: the server sent more than {archive.size} bytes")
                out.write(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())


def _from_url(
    opener: urllib.request.OpenerDirector,
    url: str,
    archive: Archive,
    part: Path,
    timeout: float,
    retries: int,
    bar: tqdm,
) -> None:
    """Fill `part` up to the archive's size from `url`, resuming after breaks."""
    breaks = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        if before == archive.size:
            return
        restart = False
        try:
            _transfer(opener, url, archive, part, timeout, bar)
            reason = f"the transfer stopped at {part.stat().st_size} of {archive.size} bytes"
        except _Interrupted as exc:
            reason, restart = str(exc), isinstance(exc, _Restart)
            if restart:
                part.unlink(missing_ok=True)
        after = part.stat().st_size if part.exists() else 0
        if after == archive.size:
            return
        breaks += 1
        if breaks > retries:
            kept = "the partial download is kept, run again to resume" if after else "run again to retry"
            raise _SourceFailed(f"{reason}; {kept}")
        log.warning("%s: %s; resuming from byte %d", archive.name, reason, after)
        if after <= before and not restart:
            time.sleep(min(0.5 * 2**breaks, 10))  # no progress: give the network a moment


def fetch(
    archive: Archive,
    dest_dir: str | os.PathLike,
    *,
    timeout: float = 30,
    progress: bool = True,
    retries: int = 5,
    manual_hint: str | None = None,
) -> Path:
    """Download `archive` into `dest_dir` (resumably) and verify it.

    A file already at the final name is verified and used as it is (its hash is cached in a
    ``<name>.sha256`` sidecar keyed by size and modification time). Otherwise the bytes go to
    ``<name>.part``, continuing an existing one with a Range request, and the file is renamed
    to its final name only after its size and SHA-256 match.

    Args:
        archive: What to fetch.
        dest_dir: The folder for the archive; created when missing.
        timeout: Seconds to wait for a connection or for data.
        progress: Show a progress bar on stderr (only when stderr is a terminal).
        retries: How many times a broken transfer is resumed before giving up on a URL (the
            ``.part`` stays, so a later call resumes it too).
        manual_hint: Text appended to "offline" errors telling how to get the file by hand;
            the default names the archive's URL.

    Returns:
        The verified archive's path.

    Raises:
        DownloadError: No URL could deliver the file (``offline`` set when no host could be
            reached or an offline variable is set), or its size or SHA-256 is wrong.
    """
    dest_dir = Path(dest_dir).expanduser()
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / archive.name
    part = dest_dir / f"{archive.name}.part"
    hint = manual_hint or _default_hint(archive, dest_dir)
    if final.is_file():
        verify_final(archive, final)
        return final
    if part.is_file() and part.stat().st_size > archive.size:
        log.warning("%s is larger than %s should be; discarding it", part, archive.name)
        part.unlink()
    if part.is_file() and part.stat().st_size == archive.size:
        finish_part(archive, part, final, str(part))  # finished earlier, killed before the rename
        return final
    switch = offline_requested()
    if switch:
        raise DownloadError(
            f"{archive.name}: not in {dest_dir} and network access is switched off ({switch} is set). {hint}",
            offline=True,
        )
    _download(archive, part, final, timeout=timeout, progress=progress, retries=retries, hint=hint)
    return final


def _download(
    archive: Archive, part: Path, final: Path, *, timeout: float, progress: bool, retries: int, hint: str
) -> None:
    """Try each URL in turn until `part` is complete, then verify and rename it."""
    opener = urllib.request.build_opener()  # built now so current proxy variables apply
    failures: list[tuple[str, _SourceFailed]] = []
    dead_hosts: dict[str, _SourceFailed] = {}
    show = progress and sys.stderr.isatty()
    offset = part.stat().st_size if part.exists() else 0
    with tqdm(total=archive.size, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
              desc=archive.name, file=sys.stderr, disable=not show, leave=False) as bar:
        for url in archive.urls:
            host = urlsplit(url).netloc
            if host in dead_hosts:  # same unreachable host: do not wait for it twice
                failures.append((url, dead_hosts[host]))
                continue
            log.info("%s: downloading from %s", archive.name, url)
            try:
                _from_url(opener, url, archive, part, timeout, retries, bar)
            except _SourceFailed as exc:
                log.log(logging.INFO if exc.offline else logging.WARNING, "%s: %s: %s", archive.name, url, exc)
                failures.append((url, exc))
                if exc.offline:
                    dead_hosts[host] = exc
                continue
            finish_part(archive, part, final, url)
            return
    raise _failure(archive, failures, hint)


def _failure(archive: Archive, failures: list[tuple[str, _SourceFailed]], hint: str) -> DownloadError:
    """One DownloadError summing up why every URL failed."""
    tried = "; ".join(f"{url} ({exc})" for url, exc in failures)
    if all(exc.offline for _, exc in failures):
        return DownloadError(
            f"{archive.name}: could not reach {tried}. This machine seems to be offline. {hint}", offline=True
        )
    return DownloadError(f"{archive.name}: download failed: {tried}. {hint}")



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
only fetches, checks and unpacks. ``SHEMO_ARCHIVES`` and ``Archive`` are re-exported from there.

Only the standard library talks to the network (`urllib.request`), so proxies set in the
usual environment variables apply. ``SERKIT_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) forbids
any network access.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from types import ModuleType
from urllib.parse import urlsplit

from tqdm import tqdm

from serkit import __version__
from serkit.data.datasets._common import Archive
from serkit.data.datasets.shemo import ARCHIVES as SHEMO_ARCHIVES

__all__ = [
    "OFFLINE_VARIABLES",
    "SHEMO_ARCHIVES",
    "Archive",
    "DownloadError",
    "download_corpus",
    "fetch",
    "is_unpacked",
    "offline_requested",
    "unpack",
]

log = logging.getLogger(__name__)

#: Environment variables that, set to 1/true/yes/on, forbid network access.
OFFLINE_VARIABLES: tuple[str, ...] = ("SERKIT_OFFLINE", "HF_HUB_OFFLINE")

_CHUNK = 1 << 20
_USER_AGENT = f"serkit/{__version__} (Python urllib)"
_TRUE = frozenset({"1", "true", "yes", "on"})


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


# --------------------------------------------------------------------------- verification


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(_CHUNK):
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


def _verify_final(archive: Archive, path: Path) -> None:
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


def _finish_part(archive: Archive, part: Path, final: Path, source: str) -> None:
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
                    chunk = response.read(_CHUNK)
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
        _verify_final(archive, final)
        return final
    if part.is_file() and part.stat().st_size > archive.size:
        log.warning("%s is larger than %s should be; discarding it", part, archive.name)
        part.unlink()
    if part.is_file() and part.stat().st_size == archive.size:
        _finish_part(archive, part, final, str(part))  # finished earlier, killed before the rename
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
            _finish_part(archive, part, final, url)
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


def _scratch(dest: Path, archive: Path) -> Path:
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
    tmp = _scratch(dest, archive)
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
                    shutil.copyfileobj(src, out, _CHUNK)
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


# --------------------------------------------------------------------------- the whole path


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
            shutil.rmtree(_scratch(dest, Path(archive.name)), ignore_errors=True)
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

"""`serkit download`: resumable, verified downloads from a real local HTTP server, safe unpacking.

Every request goes to a `ThreadingHTTPServer` on 127.0.0.1 started by the `server` fixture; the
official URLs are never contacted (tests that use them set the offline switch).
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest

from serkit.data import download_archive
from serkit.data.download import SHEMO_ARCHIVES, Archive, download_corpus
from serkit.data.download_archive import DownloadError, unpack
from serkit.data.download_fetch import fetch
from tests import audio_factory

FEMALE = ("F01A01", "F01N02", "F02H01", "F02F01")
MALE = ("M01S01", "M02W01", "M02N03")
LABELS = {"A": "angry", "N": "neutral", "H": "happy", "F": "fearful", "S": "sad", "W": "surprised"}


# --------------------------------------------------------------------------- the local server


@dataclass
class ServerState:
    """What the handler serves and what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> bytes, first request only
    ignore_range: bool = False
    requests: list[dict[str, str | None]] = field(default_factory=list)
    bytes_sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class RangeHandler(BaseHTTPRequestHandler):
    """GET with Range support (206 + Content-Range), redirects, and cut-off transfers."""

    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:
        state = self.server.state
        path = urlsplit(self.path).path
        with state.lock:
            state.requests.append({"path": path, "range": self.headers.get("Range")})
        if path in state.redirects:
            self.send_response(302)
            self.send_header("Location", state.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = state.files.get(path)
        if data is None:
            self.send_error(404)
            return
        start = self._range_start(len(data), state)
        if start is None:
            return
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with state.lock:
            cut = state.cut_after.pop(path, None)
        if cut is not None:  # send part of the body, then drop the connection
            body = body[:cut]
            self.close_connection = True
        with state.lock:  # counted before writing: the client may finish reading (and the test assert) first
            state.bytes_sent += len(body)
        self.wfile.write(body)

    def _range_start(self, size: int, state: ServerState) -> int | None:
        """Send the status line for a (possibly ranged) GET; None when already answered."""
        header = self.headers.get("Range")
        match = re.fullmatch(r"bytes=(\d+)-", header or "")
        if match is None or state.ignore_range:
            self.send_response(200)
            return 0
        start = int(match.group(1))
        if start >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        return start


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ServerState

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up early is part of these tests


@dataclass
class LocalServer:
    state: ServerState
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str | None]:
        return [r["path"] for r in self.state.requests]


@pytest.fixture
def server() -> Iterator[LocalServer]:
    """A real HTTP server on an ephemeral 127.0.0.1 port, shut down after the test."""
    httpd = _Server(("127.0.0.1", 0), RangeHandler)
    httpd.state = ServerState()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield LocalServer(httpd.state, httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _online_and_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """No inherited offline switch, and no proxy between the client and 127.0.0.1."""
    for name in ("SERKIT_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


# --------------------------------------------------------------------------- tiny ShEMO archives


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """female.zip and male.zip laid out like the real ones (plus a __MACOSX entry)."""
    wavs = tmp_path_factory.mktemp("wavs")
    built: dict[str, bytes] = {}
    for folder, ids in (("female", FEMALE), ("male", MALE)):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{folder}/", b"")
            for seed, utt in enumerate(ids):
                wav = audio_factory.write(wavs / f"{utt}.wav", seconds=0.25, seed=seed)
                zf.write(wav, f"{folder}/{utt}.wav")
            zf.writestr(f"__MACOSX/{folder}/._{ids[0]}.wav", b"\x00\x05\x16\x07 apple double")
        built[f"{folder}.zip"] = buffer.getvalue()
    return built


def archive_for(name: str, data: bytes, url: str, **changes: object) -> Archive:
    fields: dict = {"name": name, "url": url, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    fields.update(changes)
    return Archive(**fields)


@pytest.fixture
def served(server: LocalServer, zips: dict[str, bytes]) -> list[Archive]:
    """Both archives on the server under /files/, their Archive records pointing there."""
    for name, data in zips.items():
        server.state.files[f"/files/{name}"] = data
    return [archive_for(name, data, server.url(f"/files/{name}")) for name, data in zips.items()]


def closed_port() -> int:
    """A 127.0.0.1 port with nothing listening (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --------------------------------------------------------------------------- the official list


def test_shemo_archives_are_the_official_lfs_files() -> None:
    by_name = {a.name: a for a in SHEMO_ARCHIVES}
    assert by_name["female.zip"].size == 374_368_830
    assert by_name["female.zip"].sha256 == "663d8d7dceb44adbbf87d84be3a080fb691d169fbd972f6941e6302bc39f71e6"
    assert by_name["male.zip"].size == 496_606_401
    assert by_name["male.zip"].sha256 == "747670d0d918e59d5e5020cf66610242890b093d42968c467c4f02eb5e6a6b1a"
    for archive in SHEMO_ARCHIVES:
        assert archive.url == f"https://media.githubusercontent.com/media/mansourehk/ShEMO/master/{archive.name}"
        assert archive.mirrors and all("pariajm/sharif-emotional-speech-dataset" in m for m in archive.mirrors)
    with pytest.raises(AttributeError):
        SHEMO_ARCHIVES[0].size = 1  # type: ignore[misc]


def test_the_archives_are_facts_of_the_corpus_module() -> None:
    from serkit.data.datasets import shemo

    assert SHEMO_ARCHIVES is shemo.ARCHIVES and Archive is type(shemo.ARCHIVES[0])
    hint = shemo.download_hint(SHEMO_ARCHIVES, Path("/data/shemo"))
    assert shemo.REPOSITORY in hint and shemo.MIRROR in hint and "serkit prepare shemo" in hint


def test_unknown_corpus_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="known: shemo"):
        download_corpus("emodb", tmp_path)


# --------------------------------------------------------------------------- the whole path


@pytest.mark.network
def test_download_verify_unpack_and_manifest(server: LocalServer, served: list[Archive], tmp_path: Path) -> None:
    # female.zip through a redirect, as github.com/.../raw/... does
    server.state.redirects["/raw/female.zip"] = "/files/female.zip"
    archives = [Archive(**{**served[0].__dict__, "url": server.url("/raw/female.zip")}), served[1]]
    dest = tmp_path / "shemo"

    out = download_corpus("shemo", dest, archives=archives, timeout=5, progress=False)

    assert out == dest.resolve() / "manifest.csv"
    manifest = pd.read_csv(out)
    assert sorted(manifest["utt_id"]) == sorted(FEMALE + MALE)
    for row in manifest.itertuples():
        assert row.label == LABELS[row.utt_id[3]]
        assert row.speaker == row.utt_id[:3]
        assert row.gender == ("female" if row.utt_id[0] == "F" else "male")
        assert row.corpus == "shemo"
        assert row.duration == pytest.approx(0.25, abs=1e-3)
    assert manifest["speaker"].nunique() == 4
    assert server.paths() == ["/raw/female.zip", "/files/female.zip", "/files/male.zip"]
    for name in ("female.zip", "male.zip"):
        assert (dest / name).read_bytes() == server.state.files[f"/files/{name}"]
        assert not (dest / f"{name}.part").exists()
        assert (dest / f".unpacked-{name}").is_file()
        assert not (dest / f".unpacking-{name}").exists()
    assert not (dest / "__MACOSX").exists()


@pytest.mark.network
def test_second_run_makes_no_request(server: LocalServer, served: list[Archive], tmp_path: Path) -> None:
    first = download_corpus("shemo", tmp_path, archives=served, timeout=5, progress=False)
    before = first.read_text()
    server.state.requests.clear()

    second = download_corpus("shemo", tmp_path, archives=served, timeout=5, progress=False)

    assert server.state.requests == []
    assert second.read_text() == before


@pytest.mark.network
def test_archives_put_by_hand_are_used_offline(
    server: LocalServer, served: list[Archive], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connected = tmp_path / "connected"
    download_corpus("shemo", connected, archives=served, timeout=5, progress=False)
    by_hand = tmp_path / "by_hand"
    by_hand.mkdir()
    for archive in served:  # the manual route: only the two zips, copied into DEST
        shutil.copy(connected / archive.name, by_hand / archive.name)
    server.state.requests.clear()
    monkeypatch.setenv("SERKIT_OFFLINE", "1")

    out = download_corpus("shemo", by_hand, archives=served, timeout=5, progress=False)

    assert server.state.requests == []
    assert len(pd.read_csv(out)) == len(FEMALE + MALE)
    assert (by_hand / "female.zip.sha256").is_file()  # the hash is cached for the next run


@pytest.mark.network
def test_verified_hash_is_cached_by_size_and_mtime(
    served: list[Archive], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = fetch(served[0], tmp_path, timeout=5, progress=False)
    calls: list[Path] = []
    real = download_archive._sha256
    monkeypatch.setattr(download_archive, "_sha256", lambda p: calls.append(p) or real(p))

    assert fetch(served[0], tmp_path, timeout=5, progress=False) == path
    assert calls == []  # sidecar matched: no rehash
    path.touch()  # a changed mtime invalidates the cache
    fetch(served[0], tmp_path, timeout=5, progress=False)
    assert calls == [path]


# --------------------------------------------------------------------------- resuming


@pytest.mark.network
def test_broken_transfer_resumes_with_a_range_request(
    server: LocalServer, served: list[Archive], tmp_path: Path
) -> None:
    archive = served[0]
    cut = archive.size // 3
    server.state.cut_after["/files/female.zip"] = cut

    path = fetch(archive, tmp_path, timeout=5, progress=False)

    assert hashlib.sha256(path.read_bytes()).hexdigest() == archive.sha256
    assert [r["range"] for r in server.state.requests] == [None, f"bytes={cut}-"]
    assert server.state.bytes_sent == archive.size  # resumed, not downloaded twice


@pytest.mark.network
def test_interrupted_run_keeps_the_part_and_the_next_run_resumes(
    server: LocalServer, served: list[Archive], tmp_path: Path
) -> None:
    archive = served[1]
    cut = archive.size // 2
    server.state.cut_after["/files/male.zip"] = cut

    with pytest.raises(DownloadError, match="run again to resume"):
        fetch(archive, tmp_path, timeout=5, progress=False, retries=0)
    part = tmp_path / "male.zip.part"
    assert part.stat().st_size == cut
    assert not (tmp_path / "male.zip").exists()

    fetch(archive, tmp_path, timeout=5, progress=False, retries=0)

    assert not part.exists()
    assert server.state.requests[-1]["range"] == f"bytes={cut}-"
    assert server.state.bytes_sent == archive.size
    assert (tmp_path / "male.zip").read_bytes() == server.state.files["/files/male.zip"]


@pytest.mark.network
def test_server_ignoring_range_restarts_from_zero(server: LocalServer, served: list[Archive], tmp_path: Path) -> None:
    archive = served[0]
    server.state.ignore_range = True
    (tmp_path / "female.zip.part").write_bytes(b"stale bytes that must not survive")

    path = fetch(archive, tmp_path, timeout=5, progress=False)

    assert server.state.requests[0]["range"] == "bytes=33-"  # asked to resume, got 200
    assert hashlib.sha256(path.read_bytes()).hexdigest() == archive.sha256


@pytest.mark.network
def test_part_larger_than_the_archive_is_discarded(server: LocalServer, served: list[Archive], tmp_path: Path) -> None:
    archive = served[0]
    (tmp_path / "female.zip.part").write_bytes(b"x" * (archive.size + 10))

    path = fetch(archive, tmp_path, timeout=5, progress=False)

    assert server.state.requests[0]["range"] is None
    assert path.read_bytes() == server.state.files["/files/female.zip"]


@pytest.mark.network
def test_mirror_is_tried_when_the_first_url_fails(server: LocalServer, served: list[Archive], tmp_path: Path) -> None:
    archive = Archive(served[0].name, server.url("/gone/female.zip"), served[0].size, served[0].sha256,
                      mirrors=(served[0].url,))

    path = fetch(archive, tmp_path, timeout=5, progress=False)

    assert server.paths() == ["/gone/female.zip", "/files/female.zip"]
    assert path.stat().st_size == archive.size


# --------------------------------------------------------------------------- verification failures


@pytest.mark.network
def test_wrong_sha256_leaves_nothing(served: list[Archive], tmp_path: Path) -> None:
    archive = Archive(**{**served[0].__dict__, "sha256": "0" * 64})

    with pytest.raises(DownloadError) as caught:
        fetch(archive, tmp_path, timeout=5, progress=False)

    message = str(caught.value)
    assert "female.zip" in message and "0" * 64 in message and served[0].sha256 in message
    assert not (tmp_path / "female.zip").exists()
    assert not (tmp_path / "female.zip.part").exists()


@pytest.mark.network
@pytest.mark.parametrize("delta", [-7, 7])
def test_wrong_size_leaves_nothing(served: list[Archive], tmp_path: Path, delta: int) -> None:
    expected = served[1].size + delta
    archive = Archive(**{**served[1].__dict__, "size": expected})

    with pytest.raises(DownloadError) as caught:
        fetch(archive, tmp_path, timeout=5, progress=False)

    message = str(caught.value)
    assert "male.zip" in message and str(expected) in message and str(served[1].size) in message
    assert not (tmp_path / "male.zip").exists()
    assert not (tmp_path / "male.zip.part").exists()


def test_corrupt_archive_in_dest_is_reported_not_replaced(tmp_path: Path) -> None:
    data = b"not the archive"
    archive = Archive("female.zip", f"http://127.0.0.1:{closed_port()}/female.zip", len(data), "f" * 64)
    (tmp_path / "female.zip").write_bytes(data)

    with pytest.raises(DownloadError, match=r"female\.zip: SHA-256 mismatch: expected f{64}, found [0-9a-f]{64}"):
        fetch(archive, tmp_path, timeout=5, progress=False)
    assert (tmp_path / "female.zip").read_bytes() == data


# --------------------------------------------------------------------------- unpacking


@pytest.mark.parametrize("member", ["../evil.wav", "female/../../evil.wav", "/tmp/evil.wav", "C:/evil.wav"])
def test_zip_slip_member_is_rejected(tmp_path: Path, member: str) -> None:
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("female/F01A01.wav", b"fine")
        zf.writestr(member, b"escape")
    dest = tmp_path / "dest"
    dest.mkdir()

    with pytest.raises(DownloadError, match=r"bad\.zip: unsafe member"):
        unpack(bad, dest)

    assert list(dest.iterdir()) == []  # nothing extracted, not even the safe member
    assert not (tmp_path / "evil.wav").exists()


def test_unpack_runs_once_and_redoes_a_killed_run(tmp_path: Path, zips: dict[str, bytes]) -> None:
    archive = tmp_path / "female.zip"
    archive.write_bytes(zips["female.zip"])
    dest = tmp_path / "dest"
    # what a kill mid-unpack leaves: a scratch folder and a partial tree, no marker
    (dest / ".unpacking-female.zip" / "female").mkdir(parents=True)
    (dest / "female").mkdir()
    (dest / "female" / "F01A01.wav").write_bytes(b"truncated")

    assert unpack(archive, dest, sha256="abc") == [dest / "female"]

    assert sorted(p.stem for p in (dest / "female").iterdir()) == sorted(FEMALE)
    assert (dest / "female" / "F01A01.wav").stat().st_size > 1000
    assert not (dest / ".unpacking-female.zip").exists()
    archive.write_bytes(b"not read again")  # a finished unpack does not open the zip
    assert unpack(archive, dest, sha256="abc") == [dest / "female"]
    with pytest.raises(DownloadError, match="not a valid zip"):
        unpack(archive, dest, sha256="changed")  # another archive hash: unpacked again


# --------------------------------------------------------------------------- offline


def shemo_like(port: int) -> list[Archive]:
    return [Archive(name, f"http://127.0.0.1:{port}/{name}", 100, "0" * 64,
                    mirrors=(f"http://127.0.0.1:{port}/mirror/{name}",)) for name in ("female.zip", "male.zip")]


def assert_manual_route(message: str, dest: Path) -> None:
    assert "female.zip and male.zip" in message
    assert "github.com/mansourehk/ShEMO" in message
    assert str(dest) in message and "run the same command again" in message
    assert "serkit prepare shemo" in message


@pytest.mark.network
def test_unreachable_host_fails_fast_with_the_manual_route(tmp_path: Path) -> None:
    port = closed_port()
    started = time.monotonic()

    with pytest.raises(DownloadError) as caught:
        download_corpus("shemo", tmp_path, archives=shemo_like(port), timeout=5, progress=False)

    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert caught.value.offline
    assert f"http://127.0.0.1:{port}/female.zip" in message and "offline" in message
    assert_manual_route(message, tmp_path.resolve())
    assert not (tmp_path / "female.zip.part").exists()


@pytest.mark.network
def test_silent_server_times_out_as_offline(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        archive = Archive("female.zip", f"http://127.0.0.1:{silent.getsockname()[1]}/female.zip", 100, "0" * 64)
        started = time.monotonic()
        with pytest.raises(DownloadError, match="offline") as caught:
            fetch(archive, tmp_path, timeout=0.5, progress=False)
    assert time.monotonic() - started < 5
    assert "female.zip" in str(caught.value) and "0.5 s" in str(caught.value)


@pytest.mark.network
@pytest.mark.parametrize("variable", ["SERKIT_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_switch_makes_no_request(
    server: LocalServer, served: list[Archive], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "1")

    with pytest.raises(DownloadError) as caught:
        download_corpus("shemo", tmp_path, archives=served, timeout=5, progress=False)

    assert server.state.requests == []
    assert caught.value.offline and variable in str(caught.value)
    assert_manual_route(str(caught.value), tmp_path.resolve())


def test_cli_offline_prints_the_guidance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from serkit.cli import main

    monkeypatch.setenv("SERKIT_OFFLINE", "1")  # the real URLs: must not be contacted
    dest = tmp_path / "shemo"

    assert main(["download", "shemo", str(dest)]) == 2

    err = capsys.readouterr().err
    assert err.startswith("serkit download: error: female.zip")
    assert "SERKIT_OFFLINE" in err
    assert_manual_route(err, dest.resolve())

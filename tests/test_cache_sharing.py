"""Processes sharing one feature cache: claims, stale temporary files, and file modes."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from serkit.atomic import atomic_path, atomic_write, make_temp_dir, remove_stale_temps
from serkit.data.audio import AudioSpec
from serkit.features.cache import STALE_TEMP_SECONDS, FeatureCache
from serkit.features.claims import try_claim
from serkit.features.extract import extract_manifest
from serkit.data.schema import write_manifest
from tests.test_extract import SERKIT, EnvelopeExtractor, _all_items, _assert_same_items, make_manifest


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


# --- file modes ----------------------------------------------------------------------------

@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_atomic_writes_honour_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    with atomic_write(tmp_path / "a.json", "w") as stream:
        stream.write("{}")
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    manifest = write_manifest(make_manifest(tmp_path / "audio", 2), tmp_path / "manifest.csv")
    cache = FeatureCache(tmp_path / "cache", EnvelopeExtractor(spec=AudioSpec(duration=None)))
    item = cache.save("u1", {"x": np.zeros(3)})
    meta = cache.write_meta()
    folder = make_temp_dir(tmp_path, ".model.saving-")
    for path in (tmp_path / "a.json", tmp_path / "b.bin", manifest, item, meta):
        assert _mode(path) == file_mode, path
    assert _mode(folder) == dir_mode


def test_a_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as stream:
        stream.write("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


@pytest.mark.slow
def test_serkit_extract_writes_the_cache_with_the_users_umask(tmp_path):
    manifest = write_manifest(make_manifest(tmp_path / "audio", 3), tmp_path / "manifest.csv")
    cmd = SERKIT + ["extract", str(manifest), "-f", "mfcc", "--cache", str(tmp_path / "cache"), "--no-progress"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120, preexec_fn=lambda: os.umask(0o027))
    (folder,) = (tmp_path / "cache").iterdir()
    items = list(folder.glob("items/*/*.npz"))
    assert len(items) == 3
    for path in [folder / "meta.json", *items]:
        assert _mode(path) == 0o640, path
    assert _mode(items[0].parent) == 0o750


# --- stale temporary files -----------------------------------------------------------------

_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from serkit.atomic import atomic_write
with atomic_write(Path(sys.argv[1]), "wb") as stream:
    stream.write(b"half an item")
    stream.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_next_run_removes_the_temporary_file_of_a_killed_writer(tmp_path):
    manifest = make_manifest(tmp_path / "audio", 3)
    extractor = EnvelopeExtractor(spec=AudioSpec(duration=None))
    cache = FeatureCache(tmp_path / "cache", extractor)
    target = cache.item_path("u001")
    target.parent.mkdir(parents=True)
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target)], capture_output=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (leftover,) = target.parent.glob(".*.tmp")
    assert not target.exists()
    an_hour_ago = time.time() - 3600
    os.utime(leftover, (an_hour_ago, an_hour_ago))
    live = target.with_name(f".{target.name}.0123abcd.tmp")  # as a concurrent writer's would be now
    live.write_bytes(b"being written")

    result = extract_manifest(manifest, extractor, tmp_path / "cache", progress=False)

    assert result.stale_temps_removed == 1 and result.computed == 3
    assert not leftover.exists() and live.exists()
    assert cache.load("u001")["pooled"].shape == (1,)


def test_stale_temporary_files_are_recognised_by_name_and_age(tmp_path):
    old = time.time() - 2 * STALE_TEMP_SECONDS
    names = [".a.npz.k3j_x9.tmp", ".meta.json.1234.ab12cd34.tmp", "a.npz", "notes.tmp", ".hidden"]
    for name in names:
        (tmp_path / "sub").mkdir(exist_ok=True)
        (tmp_path / "sub" / name).write_text("x")
        os.utime(tmp_path / "sub" / name, (old, old))
    assert remove_stale_temps(tmp_path, STALE_TEMP_SECONDS) == 2
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [".hidden", "a.npz", "notes.tmp"]
    assert remove_stale_temps(tmp_path / "missing", 0) == 0


# --- claims --------------------------------------------------------------------------------

def test_a_claim_is_exclusive_until_released(tmp_path):
    path = tmp_path / "claims" / "u1.claim"
    first = try_claim(path)
    assert first is not None and json.loads(path.read_text())["pid"] == os.getpid()
    assert try_claim(path) is None  # another handle, as another process would have
    first.release()
    assert not path.exists()
    second = try_claim(path)
    assert second is not None
    second.release()


_CLAIM_AND_DIE = """
import os, signal, sys
from serkit.features.claims import try_claim
claim = try_claim(sys.argv[1])
print("held" if claim else "busy", flush=True)
sys.stdin.readline()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_claim_of_a_killed_process_is_taken_over(tmp_path):
    path = tmp_path / "claims" / "u1.claim"
    with subprocess.Popen([sys.executable, "-c", _CLAIM_AND_DIE, str(path)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout.readline().strip() == "held"
            assert try_claim(path) is None
            child.stdin.write("die\n")
            child.stdin.flush()
            assert child.wait(timeout=30) == -signal.SIGKILL
        finally:
            child.kill()
    assert path.exists()  # left behind by the crash, but nobody holds it any more
    claim = try_claim(path)
    assert claim is not None
    claim.release()


def _wait_until(condition, what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("other_finishes", [True, False])
def test_extract_leaves_held_items_to_their_holder_and_waits_for_them(tmp_path, other_finishes):
    manifest = make_manifest(tmp_path / "audio", 6)
    extractor = EnvelopeExtractor(spec=AudioSpec(duration=None))
    cache = FeatureCache(tmp_path / "cache", extractor)
    held = cache.claim("u002")  # as another live process computing u002 would
    assert held is not None
    results = []
    worker = threading.Thread(target=lambda: results.append(
        extract_manifest(manifest, extractor, tmp_path / "cache", progress=False, batch_size=2)))
    worker.start()
    try:
        _wait_until(lambda: all(cache.has(u) for u in manifest["utt_id"] if u != "u002"), "the free items are cached")
        assert worker.is_alive() and not cache.has("u002")  # it waits for the item it does not hold
        if other_finishes:
            cache.save("u002", {"frames": np.zeros((1, 1), np.float16), "pooled": np.zeros(1, np.float32)})
    finally:
        held.release()  # finished, or died without a result
        worker.join(timeout=30)
    (result,) = results
    assert result.total == 6 and result.already_cached == 0 and not result.failed
    assert (result.computed, result.by_others) == ((5, 1) if other_finishes else (6, 0))
    assert not list((cache.dir / "claims").iterdir())


def _fill(cache_root: str, manifest, barrier, out) -> None:
    """One of two processes: both hold claims and compute at the same time before going on."""

    class Meeting(EnvelopeExtractor):
        met = False

        def extract_batch(self, signals, sampling_rate):
            if not Meeting.met:
                barrier.wait()
                Meeting.met = True
            return super().extract_batch(signals, sampling_rate)

    result = extract_manifest(manifest, Meeting(spec=AudioSpec(duration=None)), cache_root, progress=False,
                              batch_size=2)
    out.put((result.computed, result.by_others, result.already_cached, len(result.failed)))


def test_two_processes_at_once_compute_each_item_once(tmp_path):
    manifest = make_manifest(tmp_path / "audio", 20)
    context = multiprocessing.get_context("fork")
    barrier, out = context.Barrier(2, timeout=60), context.Queue()
    procs = [context.Process(target=_fill, args=(str(tmp_path / "shared"), manifest, barrier, out)) for _ in range(2)]
    for proc in procs:
        proc.start()
    counts = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    computed = [c[0] for c in counts]
    assert sum(computed) == 20 and min(computed) > 0, counts  # both worked, no item twice
    assert all(c[0] + c[1] + c[2] + c[3] == 20 for c in counts), counts

    clean = extract_manifest(manifest, EnvelopeExtractor(spec=AudioSpec(duration=None)), tmp_path / "clean",
                             progress=False, batch_size=2)
    assert clean.computed == 20
    _assert_same_items(_all_items(tmp_path / "shared"), _all_items(tmp_path / "clean"))

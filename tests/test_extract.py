"""The feature cache and the extraction pipeline: resumable, crash-safe, shardable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serkit.data.audio import AudioSpec, load
from serkit.features import build_extractor
from serkit.features.base import Extractor
from serkit.features.cache import FeatureCache
from serkit.features.extract import extract_manifest, finish_run, load_feature_config, shard
from serkit.data.schema import write_manifest
from tests.audio_factory import write

SERKIT = [sys.executable, "-m", "serkit"]


@dataclass(frozen=True)
class EnvelopeConfig:
    frame: int = 400
    fail_on_length: int = -1  # a signal of this many samples makes the batch call fail
    batch_size: int = 3


class EnvelopeExtractor(Extractor):
    """A small real feature (frame RMS envelope and its mean) with a switch to fail."""

    name = "envelope"
    config_class = EnvelopeConfig

    def extract(self, signal: np.ndarray, sampling_rate: int) -> dict[str, np.ndarray]:
        if signal.size == self.config.fail_on_length:
            raise RuntimeError("model rejected this clip")
        n = signal.size // self.config.frame
        frames = signal[: n * self.config.frame].reshape(n, self.config.frame)
        rms = np.sqrt((frames**2).mean(axis=1)).astype(np.float16)
        return {"frames": rms[:, None], "pooled": np.array([rms.mean()], dtype=np.float32)}

    def extract_batch(self, signals, sampling_rate):
        if any(s.size == self.config.fail_on_length for s in signals):
            raise RuntimeError("batch contains a clip the model rejects")
        return [self.extract(s, sampling_rate) for s in signals]


def make_manifest(folder: Path, count: int, *, bad: int = 0, seconds: float = 0.5) -> pd.DataFrame:
    """`count` readable clips of varied length plus `bad` files that are not audio."""
    rows = []
    for i in range(count):
        path = write(folder / f"u{i:03d}.wav", seconds=seconds + 0.05 * (i % 5), seed=i)
        rows.append({"utt_id": f"u{i:03d}", "path": str(path), "speaker": f"s{i % 3}", "gender": "female",
                     "label": ["a", "b"][i % 2], "corpus": "t", "duration": seconds + 0.05 * (i % 5)})
    for j in range(bad):
        path = folder / f"bad{j}.wav"
        path.write_text("this is not audio")
        rows.append({"utt_id": f"bad{j}", "path": str(path), "speaker": "s0", "gender": "male",
                     "label": "a", "corpus": "t", "duration": 1.0})
    return pd.DataFrame(rows)


def test_extract_fills_cache_records_failures_and_resumes(tmp_path):
    manifest = make_manifest(tmp_path / "audio", 7, bad=1)
    extractor = EnvelopeExtractor(spec=AudioSpec(duration=None))
    first = extract_manifest(manifest, extractor, tmp_path / "cache", progress=False)
    assert (first.total, first.already_cached, first.computed) == (8, 0, 7)
    assert [f["utt_id"] for f in first.failed] == ["bad0"]
    assert "not a readable audio file" in first.failed[0]["reason"]

    cache = FeatureCache(tmp_path / "cache", extractor)
    assert cache.dir == first.cache_dir and cache.dir.name == extractor.fingerprint()
    meta = json.loads((cache.dir / "meta.json").read_text())
    assert meta["extractor"]["kind"] == "envelope"
    assert meta["outputs"]["frames"]["dtype"] == "float16"
    # stored values are exactly what the extractor gives for the preprocessed audio
    path = manifest.loc[manifest.utt_id == "u004", "path"].item()
    direct = extractor.extract(load(path, extractor.spec), 16000)
    stored = cache.load("u004")
    np.testing.assert_array_equal(stored["frames"], direct["frames"])
    np.testing.assert_array_equal(stored["pooled"], direct["pooled"])

    failures = finish_run(cache.dir, extractor)
    assert [f["utt_id"] for f in failures] == ["bad0"]
    errors = pd.read_csv(cache.dir / "errors.csv")
    assert errors["utt_id"].tolist() == ["bad0"] and errors["path"].str.endswith("bad0.wav").all()

    again = extract_manifest(manifest, extractor, tmp_path / "cache", progress=False)
    assert (again.already_cached, again.computed, len(again.failed)) == (7, 0, 1)


def test_fixed_clip_then_failure_record_is_cleared(tmp_path):
    manifest = make_manifest(tmp_path / "audio", 2, bad=1)
    extractor = EnvelopeExtractor(spec=AudioSpec(duration=None))
    extract_manifest(manifest, extractor, tmp_path / "cache", progress=False)
    write(Path(manifest.loc[2, "path"]), seconds=0.5)  # the user repairs the file
    result = extract_manifest(manifest, extractor, tmp_path / "cache", progress=False)
    assert (result.computed, result.failed) == (1, [])
    assert finish_run(result.cache_dir, extractor) == []
    assert not (result.cache_dir / "errors.csv").exists()


def test_a_clip_that_breaks_the_batch_fails_alone(tmp_path):
    manifest = make_manifest(tmp_path / "audio", 6, seconds=0.5)
    # 0.6 s at 16 kHz = 9600 samples: the clips with i % 5 == 2 (u002) make the model fail
    extractor = EnvelopeExtractor(EnvelopeConfig(fail_on_length=9600, batch_size=6), AudioSpec(duration=None))
    result = extract_manifest(manifest, extractor, tmp_path / "cache", progress=False)
    assert [f["utt_id"] for f in result.failed] == ["u002"]
    assert "clip the model rejects" in result.failed[0]["reason"]
    assert result.computed == 5


def test_settings_change_the_cache_folder(tmp_path):
    a = EnvelopeExtractor(EnvelopeConfig(frame=400), AudioSpec(duration=None))
    b = EnvelopeExtractor(EnvelopeConfig(frame=320), AudioSpec(duration=None))
    c = EnvelopeExtractor(EnvelopeConfig(frame=400), AudioSpec(duration=7.0))
    same = EnvelopeExtractor(EnvelopeConfig(frame=400), AudioSpec(duration=None))
    folders = {FeatureCache(tmp_path, e).dir for e in (a, b, c)}
    assert len(folders) == 3
    assert FeatureCache(tmp_path, same).dir == FeatureCache(tmp_path, a).dir


def test_cache_keys_are_safe_and_distinct(tmp_path):
    cache = FeatureCache(tmp_path, EnvelopeExtractor(spec=AudioSpec(duration=None)))
    ids = ["a/b", "a_b", "../x", "spk 1:utt", "é"]
    for i, utt_id in enumerate(ids):
        cache.save(utt_id, {"x": np.array([i])})
    for i, utt_id in enumerate(ids):
        assert cache.load(utt_id)["x"].item() == i
        assert cache.item_path(utt_id).resolve().is_relative_to(cache.dir)
    with pytest.raises(KeyError, match="not in the feature cache"):
        cache.load("never")
    with pytest.raises(KeyError, match="no output"):
        cache.load("a/b", ["y"])


def test_shards_partition_the_manifest(tmp_path):
    manifest = make_manifest(tmp_path, 10)
    parts = [shard(manifest, r, 3) for r in range(3)]
    ids = [u for p in parts for u in p["utt_id"]]
    assert sorted(ids) == sorted(manifest["utt_id"]) and len(set(ids)) == 10
    assert [len(p) for p in parts] == [4, 3, 3]
    with pytest.raises(ValueError, match="outside world"):
        shard(manifest, 3, 3)


def test_feature_config_from_kind_file_and_overrides(tmp_path):
    assert load_feature_config("logmel", [("n_mels", 40)]) == {"kind": "logmel", "n_mels": 40}
    toml = tmp_path / "f.toml"
    toml.write_text('[features]\nkind = "ssl"\nframe_layers = [12]\n')
    assert load_feature_config(str(toml)) == {"kind": "ssl", "frame_layers": [12]}
    assert load_feature_config(str(toml), [("frame_layers", [6, 12])])["frame_layers"] == (6, 12)
    with pytest.raises(FileNotFoundError):
        load_feature_config(str(tmp_path / "missing.toml"))
    with pytest.raises(ValueError, match="unknown"):
        build_extractor({"kind": "nope"})


# --- the command line, in real processes ---------------------------------------------------

def _cli_manifest(tmp_path: Path, count: int, seconds: float = 1.0) -> Path:
    manifest = make_manifest(tmp_path / "audio", count, seconds=seconds)
    return write_manifest(manifest, tmp_path / "manifest.csv")


def _all_items(cache_root: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted(cache_root.glob("*/items/*/*.npz")):
        with np.load(path, allow_pickle=False) as data:
            out[str(data["__utt_id__"])] = {k: data[k] for k in data.files if not k.startswith("__")}
    return out


def _assert_same_items(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for utt_id in a:
        assert a[utt_id].keys() == b[utt_id].keys()
        for name in a[utt_id]:
            np.testing.assert_array_equal(a[utt_id][name], b[utt_id][name], err_msg=f"{utt_id}/{name}")


@pytest.mark.slow
def test_sigkill_then_rerun_computes_only_the_rest(tmp_path):
    manifest = _cli_manifest(tmp_path, 40)
    cache = tmp_path / "cache"
    cmd = SERKIT + ["extract", str(manifest), "-f", "mfcc", "--cache", str(cache), "--batch-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(cache.glob("*/items/*/*.npz"))) < 5:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "extraction did not start"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    partial = _all_items(cache)  # every file left behind loads whole
    assert 5 <= len(partial) < 40

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(partial)} already cached, {40 - len(partial)} computed" in rerun.stdout
    resumed = _all_items(cache)

    fresh = tmp_path / "fresh"
    subprocess.run(cmd[:-4] + ["--cache", str(fresh)], check=True, capture_output=True, timeout=300)
    _assert_same_items(resumed, _all_items(fresh))


@pytest.mark.slow
def test_two_processes_fill_one_cache_at_once(tmp_path):
    manifest = _cli_manifest(tmp_path, 24, seconds=0.5)
    cache = tmp_path / "cache"
    cmd = SERKIT + ["extract", str(manifest), "-f", "mfcc", "--cache", str(cache), "--batch-size", "1", "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    # each item computed by exactly one of them; the other counted it as done elsewhere
    assert sum(r["computed"] for r in reports) == 24, reports
    for r in reports:
        assert r["total"] == r["already_cached"] + r["computed"] + r["failed"] + r["by_others"] == 24, r
    items = _all_items(cache)
    assert len(items) == 24
    assert not list(cache.glob("*/items/*/.*.tmp")) and not list(cache.glob("*/claims/*"))
    clean = tmp_path / "clean"
    subprocess.run(cmd[:-5] + ["--cache", str(clean), "--batch-size", "1"], check=True, capture_output=True, timeout=300)
    _assert_same_items(items, _all_items(clean))


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process(tmp_path):
    manifest = _cli_manifest(tmp_path, 10, seconds=0.5)
    single, multi = tmp_path / "single", tmp_path / "multi"
    args = ["extract", str(manifest), "-f", "mfcc", "--batch-size", "2"]
    # one BLAS thread in both runs: thread counts change float summation order
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(SERKIT + args + ["--cache", str(single)], check=True, capture_output=True, timeout=300, env=env)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "serkit", *args, "--cache", str(multi)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "features:" in run.stdout
    _assert_same_items(_all_items(single), _all_items(multi))


def test_cli_reports_failures_and_exits_nonzero(tmp_path, capsys):
    from serkit.cli import main

    manifest = make_manifest(tmp_path / "audio", 3, bad=1)
    path = write_manifest(manifest, tmp_path / "m.csv")
    code = main(["extract", str(path), "-f", "mfcc", "--cache", str(tmp_path / "c"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "features:" in captured.out and "1 utterance(s) failed" in captured.err
    assert "bad0" in captured.err
    code = main(["extract", str(path), "-f", "mfcc", "--cache", str(tmp_path / "c"), "--set", "bogus=1"])
    assert code == 2 and "bogus" in capsys.readouterr().err

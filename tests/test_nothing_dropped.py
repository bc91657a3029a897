"""Nothing dropped silently (issue #12): prepare, predict and extract use every audio-looking file
or list it with its reason, go on with the rest and exit non-zero; names that are not UTF-8 too."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from serkit.data import datasets
from serkit.data.audio import AudioSpec, load
from serkit.cli import main
from serkit.data.schema import read_manifest
from tests.audio_factory import voiced
from tests.encoded_audio import FORMATS, encode, tone

pytest.importorskip("av")

LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 48213\n"
)


def _clip(path: Path, kind: str, seconds: float = 0.6, f0: float = 140.0) -> Path:
    """Write a voiced clip as WAV or one of the compressed formats (by `kind`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "wav":
        sf.write(path, voiced(seconds, 16000, f0=f0), 16000)
        return path
    codec, container, rate = FORMATS[kind]
    return encode(path, voiced(seconds, rate, f0=f0), rate, codec, container)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``{happy,sad}/{a.wav,b.m4a,c.webm}`` (the issue's tree) plus every kind of file to account for."""
    root = tmp_path_factory.mktemp("nothing_dropped") / "corpus"
    for label, f0 in (("happy", 220.0), ("sad", 110.0)):
        _clip(root / label / "a.wav", "wav", f0=f0)
        _clip(root / label / "b.m4a", "m4a", f0=f0)
        _clip(root / label / "c.webm", "webm", f0=f0)
    _clip(root / "happy" / "d.mp4", "mp4")
    (root / "happy" / "e.wav").write_text(LFS_POINTER)  # a clone without `git lfs pull`
    shutil.copy(root / "happy" / "a.wav", root / "happy" / "take.dat")  # WAV under an unknown extension
    (root / "happy" / "notes.txt").write_text("recorded on a phone\n")  # not audio-looking: ignored
    (root / "sad" / "f.m4a").write_text("<html>download failed</html>\n")  # not audio at all
    _clip(root / "loose.wav", "wav")  # no label folder
    return root


def test_prepare_folder_uses_every_audio_file_and_lists_the_rest(corpus, tmp_path, capsys):
    out = tmp_path / "manifest.csv"
    assert main(["prepare", "folder", str(corpus), "-o", str(out)]) == 1
    manifest = read_manifest(out)
    assert sorted(manifest["utt_id"]) == [
        "happy__a", "happy__b", "happy__c", "happy__d", "sad__a", "sad__b", "sad__c",
    ]
    assert (manifest["duration"] > 0.55).all() and (manifest["duration"] < 0.7).all()
    errors = pd.read_csv(tmp_path / "manifest.errors.csv")
    reasons = {Path(p).relative_to(corpus).as_posix(): r for p, r in zip(errors["path"], errors["reason"])}
    assert sorted(reasons) == ["happy/e.wav", "happy/take.dat", "loose.wav", "sad/f.m4a"]
    assert "Git LFS pointer" in reasons["happy/e.wav"] and "git lfs pull" in reasons["happy/e.wav"]
    assert "unknown extension ('.dat')" in reasons["happy/take.dat"] and "WAV" in reasons["happy/take.dat"]
    assert "not inside a label folder" in reasons["loose.wav"]
    assert "not a readable audio file" in reasons["sad/f.m4a"]
    err = capsys.readouterr().err
    assert "4 file(s) were left out" in err and "manifest.errors.csv" in err


def test_clean_folder_of_compressed_files_prepares_with_exit_0(corpus, tmp_path):
    root = tmp_path / "clean"
    for label in ("happy", "sad"):
        for name in ("a.wav", "b.m4a", "c.webm"):
            (root / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(corpus / label / name, root / label / name)
    out = tmp_path / "clean.csv"
    assert main(["prepare", "folder", str(root), "-o", str(out)]) == 0
    assert len(read_manifest(out)) == 6
    assert not (tmp_path / "clean.errors.csv").exists()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SVM on MFCC statistics of 16 voiced clips (two 'emotions' by pitch)."""
    pytest.importorskip("sklearn")
    from serkit.features import build_extractor
    from serkit.models import build_model
    from serkit.models.io import save_model

    extractor = build_extractor({"kind": "mfcc", "outputs": ["stats"]}, AudioSpec(duration=1.0))
    extractor.setup(None)
    X, y, speakers = [], [], []
    for i in range(16):
        label = "happy" if i % 2 else "sad"
        signal = voiced(0.8, 16000, f0=(220.0 if label == "happy" else 110.0) + 3 * i, seed=i)
        X.append(extractor.extract(load(_wav_bytes(signal), extractor.spec, name="x.wav"), 16000)["stats"])
        y.append(label)
        speakers.append(f"spk{i % 4}")
    svm = build_model("svm", C_grid=[1.0], gamma_grid=["scale"], inner_folds=2, input_kind="stats")
    svm.fit(np.stack(X), np.array(y), np.array(speakers))
    dest = tmp_path_factory.mktemp("model") / "svm"
    return save_model(svm, dest, audio_spec=extractor.spec, features=extractor.identity(),
                      fingerprint=extractor.fingerprint())


def _wav_bytes(signal: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, signal, 16000, format="WAV")
    return buffer.getvalue()


def test_predict_folder_answers_every_file_and_lists_the_rest(corpus, model, capsys):
    code = main(["predict", str(model), str(corpus / "happy"), "--format", "json", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    rows = json.loads(captured.out)
    rows = rows["predictions"] if isinstance(rows, dict) else rows
    by_name = {Path(r["source"]).name: r for r in rows}
    assert sorted(by_name) == ["a.wav", "b.m4a", "c.webm", "d.mp4", "e.wav"]
    for name in ("a.wav", "b.m4a", "c.webm", "d.mp4"):
        assert by_name[name]["label"] in ("happy", "sad") and not by_name[name]["error"], by_name[name]
    assert "git lfs pull" in by_name["e.wav"]["error"]
    assert "take.dat: unknown extension ('.dat')" in captured.err
    assert "notes.txt" not in captured.err


def test_predict_clean_folder_of_phone_and_browser_recordings_exits_0(corpus, model, tmp_path, capsys):
    root = tmp_path / "recordings"
    root.mkdir()
    for name in ("a.wav", "b.m4a", "c.webm"):
        shutil.copy(corpus / "sad" / name, root / name)
    assert main(["predict", str(model), str(root), "--format", "csv", "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4  # header + one row per file


def test_extract_lists_what_it_cannot_read_and_exits_1(corpus, tmp_path, capsys):
    manifest = pd.DataFrame({
        "utt_id": ["memo", "browser", "pointer"],
        "path": [str(corpus / "happy" / "b.m4a"), str(corpus / "happy" / "c.webm"), str(corpus / "happy" / "e.wav")],
        "speaker": ["s1", "s1", "s2"], "gender": "unknown", "label": ["happy", "happy", "sad"],
        "corpus": "mine", "duration": [0.6, 0.6, 0.6],
    })
    listing = tmp_path / "manifest.csv"
    manifest.to_csv(listing, index=False)
    code = main(["extract", str(listing), "-f", "mfcc", "--cache", str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "1 utterance(s) failed" in err and "pointer" in err and "git lfs pull" in err
    errors = pd.read_csv(next((tmp_path / "cache").rglob("errors.csv")))
    assert errors["utt_id"].tolist() == ["pointer"]


# --------------------------------------------------------------------------------------------
# File names that are not UTF-8 (a Windows zip unpacked on Linux)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def latin1_corpus(corpus, tmp_path) -> Path:
    root = tmp_path / "latin1"
    raw = os.fsencode(root)
    for label in ("happy", "sad"):
        (root / label).mkdir(parents=True)
        shutil.copy(corpus / label / "a.wav", root / label / "a.wav")
    shutil.copy(corpus / "happy" / "b.m4a", os.path.join(raw, b"happy", b"caf\xe9.m4a"))
    os.mkdir(os.path.join(raw, b"s\xe4d"))
    shutil.copy(corpus / "sad" / "a.wav", os.path.join(raw, b"s\xe4d", b"b.wav"))
    return root


def test_prepare_lists_names_a_utf8_manifest_cannot_hold_and_goes_on(latin1_corpus, tmp_path, capsys):
    out = tmp_path / "m.csv"
    assert main(["prepare", "folder", str(latin1_corpus), "-o", str(out)]) == 1
    assert sorted(read_manifest(out)["utt_id"]) == ["happy__a", "sad__a"]
    errors = pd.read_csv(tmp_path / "m.errors.csv", encoding="utf-8")
    reasons = dict(zip(errors["path"], errors["reason"]))
    assert sorted(Path(p).name for p in reasons) == ["b.wav", "caf\\xe9.m4a"]
    for reason in reasons.values():
        assert "not valid UTF-8" in reason and "rename" in reason
    assert "caf\\xe9.m4a" in capsys.readouterr().err


def test_predict_reads_names_that_are_not_utf8(latin1_corpus, model, capsys):
    code = main(["predict", str(model), str(latin1_corpus), "--format", "json", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "caf\\\\xe9.m4a" in out or "caf\\xe9.m4a" in out
    rows = json.loads(out)
    rows = rows["predictions"] if isinstance(rows, dict) else rows
    assert len(rows) == 4 and all(r["label"] in ("happy", "sad") for r in rows)


# --------------------------------------------------------------------------------------------
# Real corpora as released: TESS's OA_ file
# --------------------------------------------------------------------------------------------


def test_tess_file_misnamed_in_the_release_takes_speaker_and_label_from_its_folder(tmp_path, caplog):
    for relative in ("OAF_neutral/OAF_back_neutral.wav", "OAF_neutral/OA_bite_neutral.wav",
                     "YAF_angry/YAF_back_angry.wav", "YAF_angry/notes_copy.wav"):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(0.3, 16000), 16000)
    with caplog.at_level(logging.WARNING, logger="serkit"):
        manifest = datasets.prepare("tess", tmp_path)
    row = manifest.set_index("utt_id").loc["OA_bite_neutral"]
    assert (row["speaker"], row["label"]) == ("OAF", "neutral")
    assert "taken from their folder: OAF_neutral/OA_bite_neutral.wav" in caplog.text
    assert [Path(i["path"]).name for i in manifest.attrs["skipped"]] == ["notes_copy.wav"]
    assert "gives its label" in manifest.attrs["skipped"][0]["reason"]


# --------------------------------------------------------------------------------------------
# serkit run: what the run could not use is listed and the exit status says so
# --------------------------------------------------------------------------------------------

RUN_RECIPE = """
name = "small"
[corpus]
name = "csv"
root = "{root}/corpus/metadata.csv"
[features]
kind = "mfcc"
[model]
name = "svm"
params = {{ input_kind = "stats", C_grid = [1.0], gamma_grid = ["scale"], inner_folds = 2 }}
[protocol]
name = "speaker_kfold"
options = {{ n_folds = 2 }}
[run]
output = "{root}/runs"
cache = "{root}/cache"
bootstrap = 50
report = false
final_model = false
"""


def test_run_lists_files_it_left_out_and_exits_1(tmp_path, capsys):
    from serkit.data.synth import write_corpus

    listing = write_corpus(tmp_path / "corpus", speakers=4, per_emotion=2, seed=1, voice="source-filter")
    (tmp_path / "corpus" / "pointer.wav").write_text(LFS_POINTER)
    meta = pd.read_csv(listing)
    extra = meta.iloc[[0]].assign(path="pointer.wav", **({"utt_id": "pointer"} if "utt_id" in meta else {}))
    pd.concat([meta, extra], ignore_index=True).to_csv(listing, index=False)
    recipe = tmp_path / "small.toml"
    recipe.write_text(RUN_RECIPE.format(root=tmp_path))
    assert main(["run", str(recipe), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "1 file(s) were left out of small" in err and "git lfs pull" in err
    left_out = pd.read_csv(tmp_path / "runs" / "small" / "left_out.csv")
    assert [Path(p).name for p in left_out["path"]] == ["pointer.wav"]
    assert "Git LFS pointer" in left_out["reason"][0]


def test_predict_max_duration_is_a_setting(corpus, model, tmp_path, capsys):
    path = _clip(tmp_path / "long.m4a", "m4a", seconds=3.0)
    assert main(["predict", str(model), str(path), "--format", "json", "--max-duration", "2"]) == 1
    captured = capsys.readouterr()
    assert "long.m4a: too long: decoding passed the maximum of 2 s" in captured.err
    assert main(["predict", str(model), str(path), "--format", "json", "--max-duration", "10"]) == 0
    assert main(["predict", str(model), str(path), "--max-duration", "0"]) == 2


def test_crema_d_release_copies_in_mp3_and_mp4_are_not_listed_twice(tmp_path):
    """The full CREMA-D release holds each clip as AudioWAV/, AudioMP3/ and VideoMP4/ files."""
    _clip(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav", "wav", 0.3)
    _clip(tmp_path / "AudioMP3" / "1001_DFA_ANG_XX.mp3", "mp3", 0.3)
    _clip(tmp_path / "VideoMP4" / "1001_DFA_ANG_XX.mp4", "mp4", 0.3)
    _clip(tmp_path / "AudioMP3" / "1002_DFA_SAD_XX.mp3", "mp3", 0.3)  # only as MP3: used
    manifest = datasets.prepare("crema_d", tmp_path)
    assert [Path(p).relative_to(tmp_path).as_posix() for p in manifest["path"]] == [
        "AudioWAV/1001_DFA_ANG_XX.wav", "AudioMP3/1002_DFA_SAD_XX.mp3",
    ]
    assert manifest.attrs["skipped"] == []


def test_folder_scan_skips_git_internals_and_macos_artifacts(tmp_path):
    _clip(tmp_path / "calm" / "a.wav", "wav", 0.3)
    lfs_object = tmp_path / ".git" / "lfs" / "objects" / "4d" / "7a" / "4d7a2146"  # real audio, no extension
    lfs_object.parent.mkdir(parents=True)
    shutil.copy(tmp_path / "calm" / "a.wav", lfs_object)
    (tmp_path / "__MACOSX" / "calm").mkdir(parents=True)
    shutil.copy(tmp_path / "calm" / "a.wav", tmp_path / "__MACOSX" / "calm" / "._a.wav")
    shutil.copy(tmp_path / "calm" / "a.wav", tmp_path / "calm" / ".hidden take.wav")  # a dot file is still audio
    manifest = datasets.prepare("folder", tmp_path)
    assert sorted(manifest["utt_id"]) == ["calm__.hidden take", "calm__a"]
    assert manifest.attrs["skipped"] == []


# --------------------------------------------------------------------------------------------
# Long recordings stream through the predictor window by window
# --------------------------------------------------------------------------------------------


def _long_wav(path: Path, seconds: float, rate: int = 16000, channels: int = 1, silent: bool = False) -> Path:
    """A long WAV written block by block: voiced syllables with pauses (or zeros)."""
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16") as out:
        for start in range(0, int(seconds), 10):
            block = np.zeros(int(min(10, seconds - start) * rate), dtype=np.float32)
            if not silent:
                block[: min(block.size, 6 * rate)] = voiced(min(block.size, 6 * rate) / rate, rate, seed=start)
            out.write(np.stack([block] * channels, axis=1) if channels > 1 else block)
    return path


def test_long_file_streams_to_the_same_prediction(model, tmp_path):
    from serkit.inference.predictor import Predictor

    path = _long_wav(tmp_path / "meeting.wav", 45.0, 44100, 2)
    predictor = Predictor.load(model)
    predictor.stream_above = float("inf")
    [whole] = predictor.predict_files([path], segments=True)
    predictor.stream_above = 30.0
    [streamed] = predictor.predict_files([path], segments=True)
    assert whole.error is None and streamed.error is None
    assert streamed.duration == pytest.approx(whole.duration, abs=1e-4)
    assert [(s.start, s.end) for s in streamed.segments] == [(s.start, s.end) for s in whole.segments]
    assert len(streamed.segments) == 12  # 0, 3.5, ..., 35 and one aligned to the end
    for a, b in zip(streamed.segments, whole.segments):
        assert a.probabilities == pytest.approx(b.probabilities, abs=2e-3)
    assert streamed.probabilities == pytest.approx(whole.probabilities, abs=2e-3)
    assert [w.code for w in streamed.warnings] == [w.code for w in whole.warnings]


def test_long_file_memory_does_not_grow_with_its_length(model, tmp_path):
    """Streamed, 10 minutes need no more memory than 5; in memory, 10 minutes take about 3x more."""
    import tracemalloc

    from serkit.inference.predictor import Predictor
    from serkit.inference.windows import segment_bounds

    predictor = Predictor.load(model)
    peaks = {}
    for label, seconds, above in (("5 min", 300.0, 60.0), ("10 min", 600.0, 60.0), ("10 min whole", 600.0, np.inf)):
        path = tmp_path / f"lecture{int(seconds)}.wav"
        if not path.exists():
            _long_wav(path, seconds)
        predictor.stream_above = above
        tracemalloc.start()
        try:
            [prediction] = predictor.predict_files([path])
            peaks[label] = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
        assert prediction.error is None and prediction.duration == pytest.approx(seconds)
        assert len(prediction.segments) == len(segment_bounds(int(seconds * 16000), 7 * 16000, 56000))
    assert peaks["10 min"] < 1.15 * peaks["5 min"], peaks
    # In memory, the 10 minutes themselves show up: 600 s x 16 kHz float32 = 36.6 MiB more than
    # streamed. (A ratio to the streamed peak failed in the full suite: its fixed part, about
    # 25 MiB alone, was 31.5 MiB there.)
    assert peaks["10 min whole"] - peaks["10 min"] > 0.75 * 600 * 16000 * 4 / 2**20, peaks


def test_long_silent_file_is_refused_after_streaming(model, tmp_path):
    from serkit.inference.predictor import Predictor

    path = _long_wav(tmp_path / "muted.wav", 70.0, silent=True)
    predictor = Predictor.load(model)
    predictor.stream_above = 60.0
    [prediction] = predictor.predict_files([path])
    assert prediction.label is None and "no sound" in prediction.error
    assert [w.code for w in prediction.warnings][0] == "silent"

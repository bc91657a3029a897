"""serkit.data.quality and the warnings it adds to predictions: Python results, `serkit predict` JSON / CSV / table.

The recordings are made here: a synthetic voice at speech level (clean), the same voice 45 dB
quieter (near-silent), 12 dB too loud and cut at full scale (clipped), all-zero audio (a muted
microphone), one sample, and 50 ms (below openSMILE's 60 ms window). The model is an eGeMAPS SVM
trained on serkit's synthetic corpus, as in tests/test_service.py.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from serkit.data.audio import AudioError, AudioSpec, load
from serkit.cli import main
from serkit.features import build_extractor
from serkit.data.quality import (
    ANALYSIS_WINDOW_S,
    CLIPPED_FRACTION,
    NEAR_SILENT_DBFS,
    AudioQualityError,
    assess,
    check,
    measure,
    model_min_duration,
)

SR = 16000


def _codes(findings) -> list[str]:
    return [f.code for f in findings]


def _tone(seconds: float, dbfs_rms: float, f0: float = 220.0) -> np.ndarray:
    """A sine whose RMS level is `dbfs_rms`."""
    t = np.arange(int(round(seconds * SR))) / SR
    return (math.sqrt(2) * 10 ** (dbfs_rms / 20) * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


# --------------------------------------------------------------------------- measurements


def test_levels_of_known_signals() -> None:
    sine = _tone(1.0, -20.0)
    levels = measure(sine)
    assert levels.rms_dbfs == pytest.approx(-20.0, abs=0.01)
    assert levels.peak_dbfs == pytest.approx(-20.0 + 20 * math.log10(math.sqrt(2)), abs=0.05)
    assert levels.clipped_fraction == 0.0 and levels.frames == SR
    # A full-scale tone peaks at 0 dBFS but is not flat there: not clipping.
    assert measure(_tone(1.0, -3.0103)).clipped_fraction == 0.0
    # Driven 12 dB past full scale and cut: every sample where |sin| >= 1/4 sits on a flat top.
    clipped = np.clip(4 * _tone(1.0, -3.0103), -1.0, 1.0)
    assert measure(clipped).clipped_fraction == pytest.approx(1 - 2 / math.pi * math.asin(0.25), abs=0.01)
    # Stereo: every channel counts.
    assert measure(np.stack([sine, np.zeros_like(sine)], axis=1)).rms_dbfs == pytest.approx(-23.0, abs=0.02)
    silent = measure(np.zeros((100, 2), dtype=np.float32))
    assert silent.silent and silent.rms_dbfs == -math.inf


def test_thresholds_decide_the_codes() -> None:
    assert assess(_tone(2.0, -30.0), SR) == []
    assert _codes(assess(_tone(2.0, NEAR_SILENT_DBFS + 1), SR)) == []
    assert _codes(assess(_tone(2.0, NEAR_SILENT_DBFS - 1), SR)) == ["near_silent"]
    # Clipping: one flat run of 3 samples per this many samples is just under / over the limit.
    for share, expected in ((0.5 * CLIPPED_FRACTION, []), (2 * CLIPPED_FRACTION, ["clipped"])):
        signal = _tone(2.0, -30.0)
        step = int(3 / share)
        for start in range(0, signal.size - 3, step):
            signal[start : start + 3] = 1.0
        assert _codes(assess(signal, SR)) == expected, share
    assert _codes(assess(_tone(0.5, -30.0), SR)) == ["short"]
    assert _codes(assess(_tone(0.02, -30.0), SR)) == ["too_short"]  # under one 25 ms window
    assert _codes(assess(_tone(0.5, -30.0), SR, min_duration=0.6)) == ["too_short"]
    # Refusals first; a silent stub is both silent and too short.
    assert _codes(assess(np.zeros(10, np.float32), SR)) == ["silent", "too_short"]
    assert _codes(assess(np.zeros(3 * SR, np.float32), SR)) == ["silent"]
    # What the reader refuses on its own (no samples, NaN) gives no findings here.
    assert assess(np.zeros(0, np.float32), SR) == [] and assess(np.full(SR, np.nan, np.float32), SR) == []


def test_check_refuses_with_the_source_and_a_code() -> None:
    with pytest.raises(AudioQualityError, match=r"^mic\.wav: no sound in this recording .*microphone") as caught:
        check(np.zeros(3 * SR, np.float32), SR, name="mic.wav")
    assert caught.value.code == "silent" and caught.value.source == "mic.wav"
    assert isinstance(caught.value, AudioError)  # every caller that handles bad audio handles this
    with pytest.raises(AudioQualityError, match=r"one\.wav: too short to analyse: 0\.000 s \(1 sample\)") as caught:
        check(np.full(1, 0.1, np.float32), SR, name="one.wav")
    assert caught.value.code == "too_short"
    warnings = check(_tone(0.5, -70.0), SR)
    assert _codes(warnings) == ["short", "near_silent"] and not any(w.refusal for w in warnings)
    assert warnings[1].to_dict() == {"code": "near_silent", "message": warnings[1].message}


def test_model_minimum_follows_the_features() -> None:
    pytest.importorskip("opensmile")
    assert model_min_duration(build_extractor({"kind": "mfcc"})) == ANALYSIS_WINDOW_S
    smile = build_extractor({"kind": "opensmile"})
    assert smile.min_samples() == 960  # openSMILE's 60 ms F0 window at 16 kHz
    assert model_min_duration(smile) == pytest.approx(0.060)
    assert model_min_duration(build_extractor({"kind": "mfcc"}, AudioSpec(duration=None, min_duration=0.5))) == 0.5


# --------------------------------------------------------------------------- a model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """(model folder, a clean 16 kHz voice): an SVM on eGeMAPS of a small synthetic corpus."""
    pytest.importorskip("opensmile")
    pytest.importorskip("sklearn")
    from serkit.data import synth
    from serkit.models import build_model
    from serkit.models.io import save_model

    root = tmp_path_factory.mktemp("quality")
    table = pd.read_csv(synth.write_corpus(root / "corpus", speakers=3, per_emotion=2, voice="source-filter"))
    extractor = build_extractor({"kind": "opensmile"})
    native = [load(root / "corpus" / p, extractor.spec) for p in table["path"]]
    X = np.stack([extractor.extract(signal, SR)["functionals"] for signal in native])
    svm = build_model("svm", C_grid=[1.0, 10.0], gamma_grid=["scale"], inner_folds=3)
    svm.fit(X, table["label"], groups=table["speaker"])
    folder = save_model(svm, root / "model", audio_spec=extractor.spec, features=extractor.identity(),
                        fingerprint=extractor.fingerprint())
    return folder, native[0]


@pytest.fixture(scope="module")
def predictor(model):
    from serkit.inference.predictor import Predictor

    return Predictor.load(model[0])


@pytest.fixture(scope="module")
def recordings(model, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """16-bit WAV files of each situation, by name."""
    voice = model[1]
    folder = tmp_path_factory.mktemp("recordings")
    level = measure(voice).rms_dbfs
    signals = {
        "clean": voice,
        "quiet": voice * 10 ** ((-75.0 - level) / 20),  # about -75 dBFS: a muted microphone's hiss
        "clipped": np.clip(voice * 10 ** ((-3.0 - level) / 20) * 4, -1.0, 1.0),
        "silent": np.zeros(3 * SR, dtype=np.float32),
        "one_sample": np.full(1, 0.25, dtype=np.float32),
        "50ms": voice[: SR // 20],
    }
    paths = {}
    for name, signal in signals.items():
        paths[name] = folder / f"{name}.wav"
        sf.write(paths[name], signal, SR, subtype="PCM_16")
    return paths


def test_python_result_carries_warnings(predictor, recordings) -> None:
    clean = predictor.predict_file(recordings["clean"])
    assert clean.error is None and clean.warnings == [] and clean.to_dict()["warnings"] == []
    for name, code in (("quiet", "near_silent"), ("clipped", "clipped")):
        prediction = predictor.predict_file(recordings[name])
        assert prediction.label in predictor.labels and prediction.error is None, name
        assert _codes(prediction.warnings) == [code]
        data = json.loads(json.dumps(prediction.to_dict()))
        assert [w["code"] for w in data["warnings"]] == [code] and data["warnings"][0]["message"]


def test_python_refuses_silence_and_clips_below_the_minimum(predictor, recordings) -> None:
    assert predictor.min_duration == pytest.approx(0.060)
    for name, code, reason in (
        ("silent", "silent", "no sound in this recording"),
        ("one_sample", "too_short", "0.000 s (1 sample) of audio, this model needs at least 0.060 s"),
        ("50ms", "too_short", "0.050 s (800 samples) of audio, this model needs at least 0.060 s"),
    ):
        with pytest.raises(AudioQualityError) as caught:
            predictor.predict_file(recordings[name])
        assert caught.value.code == code and str(caught.value).startswith(f"{recordings[name]}: ")
        assert reason in str(caught.value)
    with pytest.raises(AudioQualityError, match="^mic: no sound"):
        predictor.predict_signal(np.zeros((SR, 2), np.float32), SR, name="mic")


def test_batches_mark_refusals_and_answer_the_rest(predictor, recordings) -> None:
    names = ["clean", "silent", "quiet", "one_sample"]
    results = predictor.predict_files([recordings[n] for n in names])
    assert [r.error is None for r in results] == [True, False, True, False]
    assert [_codes(r.warnings) for r in results] == [[], ["silent"], ["near_silent"], ["too_short"]]
    assert "no sound in this recording" in results[1].error and str(recordings["silent"]) in results[1].error
    signals = [(np.zeros(SR, np.float32), SR), (sf.read(recordings["clipped"], dtype="float32")[0], SR)]
    mixed = predictor.predict_signals(signals, names=["zeros", "loud"])
    assert mixed[0].error.startswith("zeros: no sound") and _codes(mixed[1].warnings) == ["clipped"]


def test_extractor_errors_name_the_source(predictor, recordings, monkeypatch) -> None:
    from opensmile.core.lib import OpenSmileException

    predictor.min_duration  # measured before openSMILE is broken below
    smile = predictor.extractor._get_smile()

    def broken(*args, **kwargs):
        raise OpenSmileException(1)

    monkeypatch.setattr(smile, "process_signal", broken)
    with pytest.raises(ValueError, match=r"clean\.wav: openSMILE eGeMAPSv02 failed on a signal of \d+ samples"):
        predictor.predict_file(recordings["clean"])
    [failed] = predictor.predict_files([recordings["clean"]])
    assert failed.error.startswith(f"{recordings['clean']}: openSMILE eGeMAPSv02 failed")


# --------------------------------------------------------------------------- serkit predict


def test_cli_json_lists_warnings_and_refusals_and_exits_1(model, recordings, capsys) -> None:
    names = ["clean", "quiet", "silent", "clipped", "one_sample"]
    assert main(["predict", str(model[0]), *(str(recordings[n]) for n in names), "--format", "json"]) == 1
    captured = capsys.readouterr()
    predictions = json.loads(captured.out)["predictions"]
    assert [p["source"] for p in predictions] == [str(recordings[n]) for n in names]  # every file answered
    assert [p["label"] is not None for p in predictions] == [True, True, False, True, False]
    codes = [[w["code"] for w in p["warnings"]] for p in predictions]
    assert codes == [[], ["near_silent"], ["silent"], ["clipped"], ["too_short"]]
    assert "2 of 5 file(s) could not be predicted" in captured.err
    assert f"{recordings['silent']}: no sound in this recording" in captured.err
    assert f"{recordings['one_sample']}: too short to analyse" in captured.err


def test_cli_csv_and_table_show_warnings(model, recordings, capsys) -> None:
    files = [str(recordings[n]) for n in ("clean", "quiet", "clipped")]
    assert main(["predict", str(model[0]), *files, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0])[-2:] == ["error", "warnings"]
    assert [r["warnings"] for r in rows] == ["", "near_silent", "clipped"]
    assert all(r["label"] for r in rows)
    assert main(["predict", str(model[0]), *files]) == 0
    table = capsys.readouterr().out.splitlines()
    quiet = next(i for i, line in enumerate(table) if line.startswith(files[1]))
    assert table[quiet + 1].startswith("  warning (near_silent): almost no sound")


def test_decoding_findings_travel_with_predictions(model, tmp_path, capsys) -> None:
    """A WAV whose header lied (sizes 0) is predicted with a ``header`` warning, not only a log line.

    Collected per thread (`serkit.data.audio_notes.collect_notes`), so concurrent reads keep their own.
    """
    import struct
    from concurrent.futures import ThreadPoolExecutor

    from serkit.inference.predictor import Predictor

    voice = model[1]
    pcm = (voice * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, SR, 2 * SR, 2, 16)
    killed = tmp_path / "killed.wav"
    killed.write_bytes(b"RIFF" + bytes(4) + b"WAVE" + b"fmt " + fmt + b"data" + bytes(4) + pcm)
    clean = tmp_path / "clean.wav"
    sf.write(clean, voice, SR, subtype="PCM_16")
    predictor = Predictor.load(model[0])
    with pytest.warns(UserWarning, match="header lied"):
        prediction = predictor.predict_file(killed)
    assert prediction.error is None and _codes(prediction.warnings) == ["header"]
    assert "header lied" in prediction.warnings[0].message
    with pytest.warns(UserWarning, match="header lied"):
        both = predictor.predict_files([killed, clean])
    assert [_codes(p.warnings) for p in both] == [["header"], []]
    with pytest.warns(UserWarning, match="header lied"), ThreadPoolExecutor(4) as pool:
        results = list(pool.map(predictor.predict_file, [killed, clean] * 4))
    assert [_codes(p.warnings) for p in results] == [["header"], []] * 4
    with warnings.catch_warnings():
        assert main(["predict", str(model[0]), str(killed), "--format", "json"]) == 0
    captured = capsys.readouterr()
    [row] = json.loads(captured.out)["predictions"]
    assert [w["code"] for w in row["warnings"]] == ["header"]
    assert "HeaderWarning" not in captured.err  # in the result, not also as a Python warning

"""serkit.data.synth: the synthetic corpus's listing and files, determinism, and its emotion cues."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr

from serkit.data import synth
from serkit.cli import main
from serkit.data.schema import read_manifest

RATE = 16000
HAS_ESPEAK = shutil.which("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng is not installed")


# --------------------------------------------------------------------------- measuring helpers


def load(path: str | Path) -> np.ndarray:
    """A file as 16 kHz mono float64 (mixdown and resampling as any reader would)."""
    audio, rate = sf.read(path, dtype="float64", always_2d=True)
    mono = audio.mean(axis=1)
    return soxr.resample(mono, rate, RATE) if rate != RATE else mono


def frames(x: np.ndarray, size: int = 640, hop: int = 160) -> np.ndarray:
    """Hann-windowed 40 ms frames every 10 ms, one per row."""
    starts = np.arange(0, max(x.size - size, 1), hop)
    return np.stack([np.pad(x[s:s + size], (0, max(0, s + size - x.size))) for s in starts]) * np.hanning(size)


def pitch(x: np.ndarray, fmin: float = 60.0, fmax: float = 500.0) -> np.ndarray:
    """f0 (Hz) of the voiced frames by normalised autocorrelation.

    The shortest-lag peak within 90 % of the best one is taken, which avoids octave-down errors;
    frames more than an octave from the median (octave-up errors on formant ringing) are dropped.
    """
    block = frames(x)
    size = block.shape[1]
    energy = np.mean(block**2, axis=1)
    acf = np.fft.irfft(np.abs(np.fft.rfft(block, 2 * size, axis=1)) ** 2, axis=1)[:, :size]
    window = np.hanning(size)
    window_acf = np.fft.irfft(np.abs(np.fft.rfft(window, 2 * size)) ** 2)[:size]
    acf = acf / np.maximum(acf[:, :1], 1e-12) / (window_acf / window_acf[0])
    lo, hi = int(RATE / fmax), int(RATE / fmin)
    band = acf[:, lo:hi]
    best = band.max(axis=1)
    inner = band[:, 1:-1]
    peaks = (inner >= band[:, :-2]) & (inner >= band[:, 2:]) & (inner >= 0.9 * best[:, None])
    lag = lo + 1 + np.argmax(peaks, axis=1)
    voiced = peaks.any(axis=1) & (best > 0.5) & (energy > energy.max() * 10 ** -3.5)
    f0 = RATE / lag[voiced]
    return f0[np.abs(np.log2(f0 / np.median(f0))) < 1.0] if f0.size else f0


def features(x: np.ndarray) -> dict[str, float]:
    """Utterance-level cues: f0 level and range, loudness, energy spread, duration, spectrum."""
    block = frames(x)
    energy_db = 10 * np.log10(np.mean(block**2, axis=1) + 1e-12)
    loud = energy_db > energy_db.max() - 30  # speech frames, not the pauses
    f0 = pitch(x)
    semitones = 12 * np.log2(f0)
    power = np.abs(np.fft.rfft(block[loud], axis=1)) ** 2
    freqs = np.fft.rfftfreq(block.shape[1], 1 / RATE)
    return {
        "log_f0": float(np.log(np.median(f0))),
        "f0_range": float(np.subtract(*np.percentile(semitones, [90, 10]))),
        "rms_db": float(10 * np.log10(np.mean(10 ** (energy_db[loud] / 10)))),
        "energy_sd": float(energy_db[loud].std()),
        "duration": x.size / RATE,
        "voiced_share": f0.size / len(energy_db),
        "centroid": float((power * freqs).sum() / power.sum()),
        "high_low_db": float(10 * np.log10(power[:, freqs > 2000].sum() / power[:, freqs < 1000].sum())),
    }


def measure(root: Path) -> pd.DataFrame:
    """The listing of the corpus at `root` with `features` of every file."""
    listing = pd.read_csv(root / "metadata.csv")
    rows = [features(load(root / path)) for path in listing["path"]]
    return pd.concat([listing, pd.DataFrame(rows)], axis=1)


def nearest_centroid_accuracy(table: pd.DataFrame, test_speakers: list[str]) -> float:
    """Train on the other speakers, test on `test_speakers`; features z-scored per speaker."""
    columns = ["log_f0", "f0_range", "rms_db", "energy_sd", "duration", "voiced_share", "centroid", "high_low_db"]
    z = table.groupby("speaker")[columns].transform(lambda c: (c - c.mean()) / (c.std() + 1e-9)).to_numpy()
    test = table["speaker"].isin(test_speakers).to_numpy()
    labels = table["label"].to_numpy()
    classes = sorted(set(labels[~test]))
    centroids = np.stack([z[~test & (labels == c)].mean(axis=0) for c in classes])
    distances = ((z[test][:, None, :] - centroids[None]) ** 2).sum(axis=2)
    predicted = np.array(classes)[distances.argmin(axis=1)]
    return float(np.mean(predicted == labels[test]))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 speakers x 4 emotions x 4 takes with the built-in voice."""
    root = tmp_path_factory.mktemp("synth") / "corpus"
    synth.write_corpus(root, speakers=6, per_emotion=4, seed=0, voice="source-filter")
    return root


@pytest.fixture(scope="module")
def measured(corpus: Path) -> pd.DataFrame:
    return measure(corpus)


def check_listing(root: Path, speakers: int, per_emotion: int) -> pd.DataFrame:
    """The checks every corpus must pass: columns, names, files, formats, durations."""
    listing = pd.read_csv(root / "metadata.csv", dtype=str)
    assert list(listing.columns) == ["utt_id", "path", "speaker", "gender", "label", "corpus"]
    assert len(listing) == speakers * len(synth.EMOTIONS) * per_emotion
    assert listing["utt_id"].is_unique
    assert set(listing["label"]) == set(synth.EMOTIONS)
    assert set(listing["corpus"]) == {"synth"}
    assert sorted(listing["speaker"].unique()) == [f"spk{n:02d}" for n in range(1, speakers + 1)]
    genders = listing.drop_duplicates("speaker")["gender"].value_counts()
    assert set(genders.index) <= {"female", "male"}
    assert abs(genders.get("female", 0) - genders.get("male", 0)) <= 1
    assert listing["utt_id"].str.fullmatch(r"spk\d\d_[a-z]+_\d{3}").all()
    infos = []
    for path in listing["path"]:
        assert not Path(path).is_absolute()
        infos.append(sf.info(root / path))
    assert {(i.samplerate, i.channels) for i in infos} == {(16000, 1), (44100, 2)}
    assert {i.format for i in infos} == {"WAV", "FLAC"}
    assert {i.subtype for i in infos} == {"PCM_16"}
    durations = np.array([i.duration for i in infos])
    assert durations.min() >= 1.0 and durations.max() <= 6.0
    assert not [p for p in root.rglob(".*")], "temporary files left behind"
    return listing


def audio_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.suffix in (".wav", ".flac")}


# --------------------------------------------------------------------------- source-filter corpus


def test_listing_files_and_formats(corpus: Path) -> None:
    listing = check_listing(corpus, speakers=6, per_emotion=4)
    assert (listing.loc[listing["speaker"] == "spk01", "gender"] == "female").all()
    assert (listing.loc[listing["speaker"] == "spk02", "gender"] == "male").all()
    stereo = [sf.info(corpus / p).channels == 2 for p in listing["path"]]
    assert sum(stereo) == len(listing) // 5


def test_listing_reads_as_manifest_once_durations_are_added(corpus: Path) -> None:
    listing = pd.read_csv(corpus / "metadata.csv", dtype=str)
    listing["duration"] = [sf.info(corpus / p).duration for p in listing["path"]]
    listing.to_csv(corpus / "with_durations.csv", index=False)
    manifest = read_manifest(corpus / "with_durations.csv")
    assert len(manifest) == len(listing)
    assert (manifest["duration"] > 1.0).all()


def test_listing_reads_through_the_csv_adapter(corpus: Path) -> None:
    pytest.importorskip("serkit.data.datasets.csv", reason="the csv adapter is not in this checkout yet")
    from serkit.data.datasets import prepare

    manifest = prepare("csv", corpus / "metadata.csv")
    assert len(manifest) == 6 * 4 * 4
    assert set(manifest["corpus"]) == {"synth"}
    assert set(manifest["label"]) == set(synth.EMOTIONS)


def test_readme_says_synthetic_and_how(corpus: Path) -> None:
    text = (corpus / "README.txt").read_text(encoding="utf-8")
    assert "SYNTHETIC" in text
    assert "source-filter" in text
    assert "seed: 0" in text
    for emotion in synth.EMOTIONS:
        assert f"\n{emotion} " in text


def test_documented_table_is_the_profile_table() -> None:
    rows = {line.split()[0]: line.split()[1:] for line in (synth.__doc__ or "").splitlines()
            if line.split() and line.split()[0] in synth.PROFILES}
    assert set(rows) == set(synth.SUPPORTED_EMOTIONS)
    for emotion, values in rows.items():
        assert [float(v) for v in values] == pytest.approx(list(vars(synth.PROFILES[emotion]).values())), emotion


def test_same_seed_same_bytes_other_seed_other_audio(tmp_path: Path) -> None:
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        synth.write_corpus(tmp_path / name, speakers=2, per_emotion=1, seed=seed, voice="source-filter")
    first, second, other = (audio_bytes(tmp_path / n) for n in "abc")
    assert len(first) == 8 and first == second
    assert (tmp_path / "a" / "metadata.csv").read_bytes() == (tmp_path / "b" / "metadata.csv").read_bytes()
    assert all(first[name] != other[name] for name in first)


def test_emotion_cues_per_speaker(measured: pd.DataFrame) -> None:
    """The documented differences hold within every speaker (medians over takes)."""
    per = measured.groupby(["speaker", "label"])[["log_f0", "f0_range", "rms_db", "duration", "centroid"]].median()
    for speaker in measured["speaker"].unique():
        cue = per.loc[speaker]
        assert cue.loc["angry", "log_f0"] > cue.loc["neutral", "log_f0"] > cue.loc["sad", "log_f0"], speaker
        assert cue.loc["happy", "log_f0"] > cue.loc["neutral", "log_f0"], speaker
        assert min(cue.loc["angry", "f0_range"], cue.loc["happy", "f0_range"]) > cue.loc["sad", "f0_range"], speaker
        assert cue.loc["angry", "rms_db"] > cue.loc["neutral", "rms_db"] > cue.loc["sad", "rms_db"], speaker
        assert cue.loc["sad", "duration"] > cue.loc["neutral", "duration"] > cue.loc["angry", "duration"], speaker
        assert cue.loc["angry", "centroid"] > cue.loc["sad", "centroid"], speaker  # pressed vs breathy


def test_sad_is_slower_for_the_same_sentence(measured: pd.DataFrame) -> None:
    """Take k of a speaker is the same sentence in every emotion: sad takes longer than angry."""
    take = measured["utt_id"].str[-3:]
    duration = measured.assign(take=take).pivot_table(index=["speaker", "take"], columns="label", values="duration")
    assert (duration["sad"] > duration["angry"]).mean() >= 0.9


def test_emotions_are_learnable_on_held_out_speakers(measured: pd.DataFrame) -> None:
    """Speaker-normalised utterance features + nearest centroid, three folds of two unseen speakers."""
    speakers = sorted(measured["speaker"].unique())
    folds = [speakers[i:i + 2] for i in range(0, len(speakers), 2)]
    accuracy = np.mean([nearest_centroid_accuracy(measured, fold) for fold in folds])
    assert accuracy >= 0.8
    assert accuracy < 1.0, "per-utterance variation should make the task less than trivial"


def test_other_emotions_and_bad_arguments(tmp_path: Path) -> None:
    metadata = synth.write_corpus(tmp_path / "more", speakers=1, per_emotion=1,
                                  emotions=("fearful", "surprised"), voice="source-filter")
    assert sorted(pd.read_csv(metadata)["label"]) == ["fearful", "surprised"]
    with pytest.raises(ValueError, match="unknown emotion"):
        synth.write_corpus(tmp_path / "x", emotions=("bored",), voice="source-filter")
    with pytest.raises(ValueError, match="unknown voice"):
        synth.write_corpus(tmp_path / "x", voice="festival")
    with pytest.raises(ValueError, match="at least 1"):
        synth.write_corpus(tmp_path / "x", speakers=0, voice="source-filter")
    assert not (tmp_path / "x").exists()


def test_cli_writes_a_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "cli"
    code = main(["synth", str(dest), "--speakers", "2", "--per-emotion", "1", "--voice", "source-filter"])
    assert code == 0
    assert len(pd.read_csv(dest / "metadata.csv")) == 2 * 4
    assert "SYNTHETIC" in capsys.readouterr().out


def test_speaker_prefix_names_new_voices_apart(tmp_path: Path) -> None:
    """Same voices and audio, other names: the demo's unseen voices must not read as spk01/spk02."""
    main(["synth", str(tmp_path / "new"), "--speakers", "2", "--per-emotion", "1", "--voice", "source-filter",
          "--speaker-prefix", "new"])
    synth.write_corpus(tmp_path / "spk", speakers=2, per_emotion=1, voice="source-filter")
    named = pd.read_csv(tmp_path / "new" / "metadata.csv")
    assert sorted(named["speaker"].unique()) == ["new01", "new02"]
    assert all(p.startswith(s + "/" + s + "_") for p, s in zip(named["path"], named["speaker"]))
    renamed = {k.replace("spk", "new"): v for k, v in audio_bytes(tmp_path / "spk").items()}
    assert audio_bytes(tmp_path / "new") == renamed
    with pytest.raises(ValueError, match="speaker_prefix"):
        synth.write_corpus(tmp_path / "bad", speakers=1, per_emotion=1, voice="source-filter", speaker_prefix="../x")


# --------------------------------------------------------------------------- espeak-ng


def test_espeak_missing_is_a_clear_error_and_auto_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="espeak-ng"):
        synth.write_corpus(tmp_path / "espeak", voice="espeak")
    assert not (tmp_path / "espeak").exists()
    synth.write_corpus(tmp_path / "auto", speakers=2, per_emotion=1, voice="auto")
    assert "source-filter" in (tmp_path / "auto" / "README.txt").read_text(encoding="utf-8")


@needs_espeak
def test_espeak_corpus(tmp_path: Path) -> None:
    synth.write_corpus(tmp_path / "a", speakers=2, per_emotion=3, seed=1, voice="espeak")
    synth.write_corpus(tmp_path / "b", speakers=2, per_emotion=3, seed=1, voice="espeak")
    check_listing(tmp_path / "a", speakers=2, per_emotion=3)
    assert audio_bytes(tmp_path / "a") == audio_bytes(tmp_path / "b")
    readme = (tmp_path / "a" / "README.txt").read_text(encoding="utf-8")
    assert "SYNTHETIC" in readme and "espeak-ng" in readme
    per = measure(tmp_path / "a").groupby(["speaker", "label"])[["log_f0", "rms_db", "duration"]].median()
    for speaker in ("spk01", "spk02"):
        cue = per.loc[speaker]
        assert cue.loc["angry", "log_f0"] > cue.loc["sad", "log_f0"], speaker
        assert cue.loc["happy", "log_f0"] > cue.loc["neutral", "log_f0"], speaker
        assert cue.loc["angry", "rms_db"] > cue.loc["sad", "rms_db"], speaker
        assert cue.loc["sad", "duration"] > cue.loc["angry", "duration"], speaker


@needs_espeak
def test_auto_prefers_espeak(tmp_path: Path) -> None:
    synth.write_corpus(tmp_path, speakers=1, per_emotion=1, emotions=("neutral",), voice="auto")
    lines = (tmp_path / "README.txt").read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if line.startswith("voice engine: espeak-ng")]

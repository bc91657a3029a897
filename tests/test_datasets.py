"""Corpus adapters: official naming in, exact validated manifests out."""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from serkit.data import datasets
from serkit.cli import main
from serkit.data.datasets import shemo as shemo_adapter
from serkit.data.schema import ManifestError, read_manifest
from tests import audio_factory, corpus_trees

CORPORA = sorted(corpus_trees.BUILDERS)


@pytest.fixture
def tmp_path(tmp_path: Path) -> Path:
    """The built-in `tmp_path`, resolved: adapters list resolved paths (macOS /var -> /private/var)."""
    return tmp_path.resolve()


def _rows(manifest: pd.DataFrame, columns: list[str]) -> list[dict]:
    return manifest[columns].sort_values("utt_id").to_dict("records")


def _expected(tree: corpus_trees.Tree, columns: list[str]) -> list[dict]:
    return sorted(({c: row[c] for c in columns} for row in tree.rows), key=lambda r: r["utt_id"])


# --- every adapter on a tiny tree with the official naming --------------------------------


@pytest.mark.parametrize("corpus", CORPORA)
def test_adapter_reads_official_naming(corpus: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tree = corpus_trees.BUILDERS[corpus](tmp_path / corpus)
    with caplog.at_level(logging.WARNING, logger="serkit"):
        manifest = datasets.prepare(corpus, tree.root)

    optional = [c for c in ("session", "transcript") if c in tree.rows[0]]
    columns = ["utt_id", "path", "speaker", "gender", "label", *optional]
    assert _rows(manifest, columns) == _expected(tree, columns)
    assert list(manifest.columns) == ["utt_id", "path", "speaker", "gender", "label", "corpus", "duration", *optional]
    assert (manifest["corpus"] == corpus).all()
    durations = dict(zip(manifest["utt_id"], manifest["duration"]))
    for row in tree.rows:
        assert durations[row["utt_id"]] == pytest.approx(row["duration"], abs=1e-6)
    assert all(os.path.isabs(p) for p in manifest["path"])
    # Nothing is dropped silently (issue #12): the unreadable file and the foreign names are
    # left out of the manifest and listed with their reasons (manifest.errors.csv); foreign
    # names also get a warning.
    skipped = {item["path"]: item["reason"] for item in manifest.attrs["skipped"]}
    assert sorted(skipped) == sorted(str(p) for p in tree.foreign + tree.broken)
    assert all(skipped.values())
    for path in tree.foreign:
        assert "naming" in skipped[str(path)] or "folder" in skipped[str(path)], skipped[str(path)]
    listed = set(manifest["path"])
    assert not listed & {str(p) for p in tree.foreign + tree.broken}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "skipped" in r.getMessage()]
    for path in tree.foreign:
        assert any(path.relative_to(tree.root).as_posix() in message for message in warnings), path


@pytest.mark.parametrize("corpus", CORPORA)
def test_adapter_declares_its_labels(corpus: str, tmp_path: Path) -> None:
    module = datasets.adapter(corpus)
    assert module.NAME == corpus
    assert module.__doc__ and len(module.__doc__) > 200
    tree = corpus_trees.BUILDERS[corpus](tmp_path / corpus, broken=False)
    manifest = module.prepare(tree.root)
    assert set(manifest["label"]) <= set(module.LABELS)
    assert sorted(item["path"] for item in manifest.attrs["skipped"]) == sorted(str(p) for p in tree.foreign)


@pytest.mark.parametrize("corpus", [*CORPORA, "folder"])
def test_missing_root_is_file_not_found(corpus: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        datasets.prepare(corpus, tmp_path / "nowhere")


def test_missing_csv_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="listing.csv"):
        datasets.prepare("csv", tmp_path / "listing.csv")


def test_unknown_option_lists_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"clases.*allowed: \['classes', 'relabel', 'transcripts'\]"):
        datasets.prepare("shemo", tmp_path, clases=5)
    with pytest.raises(ValueError, match="allowed: none"):
        datasets.prepare("emodb", tmp_path, classes=5)


def test_empty_corpus_folder_gives_empty_manifest(tmp_path: Path) -> None:
    manifest = datasets.prepare("emovo", tmp_path)
    assert len(manifest) == 0
    assert list(manifest.columns)[:7] == ["utt_id", "path", "speaker", "gender", "label", "corpus", "duration"]


# --- ShEMO options -------------------------------------------------------------------------


def test_shemo_classes(tmp_path: Path) -> None:
    tree = corpus_trees.shemo(tmp_path, broken=False)
    five = datasets.prepare("shemo", tree.root, classes=5)
    assert "fearful" not in set(five["label"])
    assert len(five) == len(tree.rows) - 1
    assert len(datasets.prepare("shemo", tree.root, classes=6)) == len(tree.rows)
    for bad in (7, "5", 5.0, True):
        with pytest.raises(ValueError, match=r"classes must be one of \[6, 5\]"):
            datasets.prepare("shemo", tree.root, classes=bad)


def test_shemo_relabel(tmp_path: Path) -> None:
    tree = corpus_trees.shemo(tmp_path / "shemo", broken=False)
    relabel = tmp_path / "modified_shemo.json"
    relabel.write_text(json.dumps({
        # the Modified ShEMO release's layout: "<id>.wav" -> {"emotion": ..., ...}
        "F03S02.wav": {"path": "shemo/F03S02.wav", "gender": "female", "emotion": "happiness"},
        "M01A01": "N",  # a plain mapping, with an emotion letter
        "F21N37": "Surprise",
        "M32H05": "fear",
        "F01F01": "fearful",  # unchanged
    }))
    manifest = datasets.prepare("shemo", tree.root, relabel=str(relabel))
    labels = dict(zip(manifest["utt_id"], manifest["label"]))
    assert labels == {"F03S02": "happy", "M01A01": "neutral", "F21N37": "surprised", "M32H05": "fearful",
                      "F01F01": "fearful", "M05W12": "surprised"}
    # classes=5 drops fearful after relabelling.
    five = datasets.prepare("shemo", tree.root, relabel=str(relabel), classes=5)
    assert sorted(five["utt_id"]) == ["F03S02", "F21N37", "M01A01", "M05W12"]


def test_shemo_relabel_errors(tmp_path: Path) -> None:
    tree = corpus_trees.shemo(tmp_path / "shemo", broken=False)
    relabel = tmp_path / "relabel.json"
    relabel.write_text(json.dumps({"F03S02": "happy", "F99A01": "angry", "M77N02.wav": "neutral"}))
    with pytest.raises(ValueError, match=r"relabel.json: 2 utterance id\(s\) are not in the corpus: F99A01, M77N02"):
        datasets.prepare("shemo", tree.root, relabel=str(relabel))
    relabel.write_text(json.dumps({"F03S02": "happy", "M01A01": "contempt"}))
    with pytest.raises(ValueError, match=r"relabel.json: unknown label.*M01A01='contempt'"):
        datasets.prepare("shemo", tree.root, relabel=str(relabel))
    relabel.write_text(json.dumps(["F03S02", "happy"]))
    with pytest.raises(ValueError, match="must be a JSON object"):
        datasets.prepare("shemo", tree.root, relabel=str(relabel))
    relabel.write_text("{not json")
    with pytest.raises(ValueError, match="relabel.json: not a readable JSON"):
        datasets.prepare("shemo", tree.root, relabel=str(relabel))
    with pytest.raises(FileNotFoundError, match="absent.json"):
        datasets.prepare("shemo", tree.root, relabel=str(tmp_path / "absent.json"))


def test_shemo_transcripts_from_folder_and_zip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tree = corpus_trees.shemo(tmp_path / "shemo", broken=False)
    texts = {"F03S02": "سلام، چطوری؟", "M01A01": "دیگه نمی‌تونم تحمل کنم.", "F21N37": "چرا به این زودی میرین؟"}
    folder = tmp_path / "transcript" / "final text"
    folder.mkdir(parents=True)
    for utt, text in texts.items():
        # like the official files: some with a BOM, lines ending in a carriage return
        (folder / f"{utt}.ort").write_bytes(("\ufeff" if utt == "F03S02" else "").encode() + f"{text}\r".encode())
    (tmp_path / "transcript" / "final script").mkdir()
    (tmp_path / "transcript" / "final script" / "F03S02.tra").write_text("salɑm tʃetori\r")
    archive = tmp_path / "transcript.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((tmp_path / "transcript").rglob("*.*")):
            zf.write(path, path.relative_to(tmp_path / "transcript").as_posix())
    for source in (tmp_path / "transcript", archive):
        with caplog.at_level(logging.WARNING, logger="serkit"):
            manifest = datasets.prepare("shemo", tree.root, transcripts=str(source))
        got = dict(zip(manifest["utt_id"], manifest["transcript"]))
        assert {u: got[u] for u in texts} == texts
        assert got["M05W12"] == ""
        assert "3 utterance(s) have no transcript" in caplog.text
        caplog.clear()


def test_shemo_transcript_errors(tmp_path: Path) -> None:
    tree = corpus_trees.shemo(tmp_path / "shemo", broken=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "F03S02.ort").write_bytes("سلام".encode("utf-16"))
    with pytest.raises(ValueError, match=r"F03S02.ort: transcript is not UTF-8"):
        datasets.prepare("shemo", tree.root, transcripts=str(tmp_path / "bad"))
    (tmp_path / "fake.zip").write_text("not a zip")
    with pytest.raises(ValueError, match="fake.zip: not a zip archive"):
        datasets.prepare("shemo", tree.root, transcripts=str(tmp_path / "fake.zip"))
    with pytest.raises(FileNotFoundError, match="absent.zip"):
        datasets.prepare("shemo", tree.root, transcripts=str(tmp_path / "absent.zip"))


# --- ShEMO against the real label list (3000 ids, one hard-linked clip) --------------------


@pytest.fixture(scope="module")
def shemo_full(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A ShEMO-shaped tree of all 3000 real ids (female/, male/) sharing one tiny clip."""
    reference = pd.read_csv(shared_data / "shemo-meta" / "labels_no_audio.csv", dtype=str)
    root = tmp_path_factory.mktemp("shemo_full")
    clip = audio_factory.write(root / "clip.wav", 0.05, 16000)
    for gender in ("female", "male"):
        (root / gender).mkdir()
    for utt in reference["utterance_id"]:
        target = root / ("female" if utt.startswith("F") else "male") / f"{utt}.wav"
        try:
            os.link(clip, target)
        except OSError:  # file systems without hard links
            target.write_bytes(clip.read_bytes())
    clip.unlink()
    return root, reference


@pytest.mark.realdata
def test_shemo_agrees_with_official_labels(shemo_full: tuple[Path, pd.DataFrame]) -> None:
    root, reference = shemo_full
    manifest = datasets.prepare("shemo", root)
    assert len(manifest) == 3000
    got = manifest.set_index("utt_id")[["speaker", "gender", "label"]].sort_index()
    want = reference.set_index("utterance_id")[["speaker", "gender", "emotion"]].sort_index()
    want.index.name, want.columns = "utt_id", ["speaker", "gender", "label"]
    pd.testing.assert_frame_equal(got, want)
    assert manifest["speaker"].nunique() == 87
    assert manifest["duration"].gt(0).all()

    five = datasets.prepare("shemo", root, classes=5)
    assert len(five) == 2968
    assert "fearful" not in set(five["label"])


@pytest.mark.realdata
def test_shemo_labels_match_shemo_json(shared_data: Path) -> None:
    meta = json.loads((shared_data / "shemo-meta" / "shemo.json").read_text(encoding="utf-8"))
    reference = pd.read_csv(shared_data / "shemo-meta" / "labels_no_audio.csv", dtype=str)
    assert set(meta) == set(reference["utterance_id"])
    assert set(shemo_adapter.LABELS) == {entry["emotion"] for entry in meta.values()} == set(reference["emotion"])


@pytest.mark.realdata
def test_shemo_official_transcripts(shemo_full: tuple[Path, pd.DataFrame], shared_data: Path) -> None:
    root, _ = shemo_full
    archive = shared_data / "shemo-meta" / "transcript.zip"
    meta = json.loads((shared_data / "shemo-meta" / "shemo.json").read_text(encoding="utf-8"))
    manifest = datasets.prepare("shemo", root, transcripts=str(archive))
    got = dict(zip(manifest["utt_id"], manifest["transcript"]))
    # shemo.json copies the .ort text, keeping the byte-order mark 244 files start with.
    want = {utt: entry["transcript"].lstrip("\ufeff").strip() for utt, entry in meta.items()}
    assert got == want
    assert got["F21N37"] == "مگه من به تو نگفته بودم که باید راجع به دورانت سکوت کنی؟"
    assert all(text and "\ufeff" not in text[:1] for text in got.values())


# --- EMOVO and URDU: the real corpora against their reference listings ---------------------


def _against_reference(manifest: pd.DataFrame, corpus_root: Path) -> None:
    corpus_root = corpus_root.resolve()  # adapters write resolved paths; ../shared may be a symlink
    reference = pd.read_csv(corpus_root / "manifest.csv", dtype=str)
    got = pd.DataFrame({
        "path": [Path(p).relative_to(corpus_root).as_posix() for p in manifest["path"]],
        "speaker": manifest["speaker"],
        "gender": manifest["gender"],
        "emotion": manifest["label"],
    }).sort_values("path").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, reference.sort_values("path").reset_index(drop=True))
    assert manifest["duration"].gt(0).all()
    assert manifest.attrs["skipped"] == []


@pytest.mark.realdata
def test_emovo_real_corpus(shared_data: Path) -> None:
    root = shared_data / "emovo"
    manifest = datasets.prepare("emovo", root)
    _against_reference(manifest, root)
    assert len(manifest) == 588
    assert manifest["speaker"].nunique() == 6
    assert manifest["label"].value_counts().to_dict() == dict.fromkeys(datasets.adapter("emovo").LABELS, 84)


@pytest.mark.realdata
def test_urdu_real_corpus(shared_data: Path) -> None:
    root = shared_data / "urdu"
    manifest = datasets.prepare("urdu", root)
    _against_reference(manifest, root)
    assert len(manifest) == 400
    assert manifest["speaker"].nunique() == 29
    assert manifest["gender"].value_counts().to_dict() == {"male": 344, "female": 56}


@pytest.mark.realdata
@pytest.mark.parametrize("corpus", ["emovo", "urdu"])
def test_reference_listing_loads_through_csv(corpus: str, shared_data: Path) -> None:
    listing = datasets.prepare("csv", shared_data / corpus / "manifest.csv", corpus_name=corpus)
    native = datasets.prepare(corpus, shared_data / corpus)
    columns = ["utt_id", "path", "speaker", "gender", "label", "corpus", "duration"]
    pd.testing.assert_frame_equal(listing[columns], native[columns])


# --- adapter-specific rules ----------------------------------------------------------------


def test_crema_d_demographics(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tree = corpus_trees.crema_d(tmp_path / "crema", broken=False, demographics=False)
    with caplog.at_level(logging.WARNING, logger="serkit"):
        manifest = datasets.prepare("crema_d", tree.root)
    assert set(manifest["gender"]) == {"unknown"}
    assert "VideoDemographics.csv not found" in caplog.text
    table = tmp_path / "elsewhere" / "demo.csv"
    table.parent.mkdir()
    table.write_text(corpus_trees.DEMOGRAPHICS)
    manifest = datasets.prepare("crema_d", tree.root, demographics=str(table))
    assert _rows(manifest, ["utt_id", "gender"]) == _expected(tree, ["utt_id", "gender"])
    table.write_text("ActorID,Sex\n1001,Robot\n")
    with pytest.raises(ValueError, match=r"demo.csv: unrecognised Sex for actor\(s\) 1001"):
        datasets.prepare("crema_d", tree.root, demographics=str(table))
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        datasets.prepare("crema_d", tree.root, demographics=str(tmp_path / "absent.csv"))


def test_ravdess_keeps_only_audio_only_speech(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tree = corpus_trees.ravdess(tmp_path / "ravdess", broken=False)
    with caplog.at_level(logging.INFO, logger="serkit"):
        manifest = datasets.prepare("ravdess", tree.root)
    assert all(u.startswith("03-01-") for u in manifest["utt_id"])
    assert "left out 2 song or video file(s)" in caplog.text


def test_iemocap_classes_and_left_out_labels(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tree = corpus_trees.iemocap(tmp_path / "iemocap", broken=False)
    with caplog.at_level(logging.INFO, logger="serkit"):
        manifest = datasets.prepare("iemocap", tree.root)
    assert sorted(manifest["utt_id"]) == sorted(r["utt_id"] for r in tree.rows)
    assert "left out 2 utterance(s) outside the 4 classes: {'fru': 1, 'xxx': 1}" in caplog.text
    assert "Badly_named" in caplog.text
    with pytest.raises(ValueError, match=r"classes must be one of \[4\]"):
        datasets.prepare("iemocap", tree.root, classes=6)


def test_iemocap_missing_wav_is_a_manifest_error(tmp_path: Path) -> None:
    tree = corpus_trees.iemocap(tmp_path / "iemocap", broken=False)
    Path(tree.rows[0]["path"]).unlink()
    with pytest.raises(ManifestError, match=r"(?s)missing audio file.*Ses01F_impro01_F000"):
        datasets.prepare("iemocap", tree.root)


def test_iemocap_without_sessions(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no Session1..Session5"):
        datasets.prepare("iemocap", tmp_path)


def test_urdu_folder_and_letter_must_agree(tmp_path: Path) -> None:
    tree = corpus_trees.urdu(tmp_path / "urdu", broken=False)
    tree.audio("Happy/SM5_F2_S003.wav")
    tree.audio("Sad/SF1_F1_A002.wav")
    disagree = r"2 file\(s\) whose emotion letter disagrees.*Happy/SM5_F2_S003.wav, Sad/SF1_F1_A002.wav"
    with pytest.raises(ValueError, match=disagree):
        datasets.prepare("urdu", tree.root)


# --- csv ------------------------------------------------------------------------------------


def _listing(tmp_path: Path, text: str, name: str = "my_corpus.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_aliases_defaults_and_relative_paths(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("a.wav", "sub/b.flac", "c.wav"):
        audio_factory.write(tmp_path / "audio" / name, 0.3, 16000)
    (tmp_path / "lists").mkdir()
    listing = _listing(
        tmp_path / "lists",
        "File,Emotion,Gender,Extra\n../audio/a.wav,angry,F,x\n../audio/sub/b.flac,happy,male,y\n"
        f"{tmp_path / 'audio' / 'c.wav'},sad,,z\n",
    )
    with caplog.at_level(logging.WARNING, logger="serkit"):
        manifest = datasets.prepare("csv", listing)
    assert manifest[["utt_id", "speaker", "gender", "label", "corpus"]].to_dict("records") == [
        {"utt_id": "a", "speaker": "unknown", "gender": "female", "label": "angry", "corpus": "my_corpus"},
        {"utt_id": "b", "speaker": "unknown", "gender": "male", "label": "happy", "corpus": "my_corpus"},
        {"utt_id": "c", "speaker": "unknown", "gender": "unknown", "label": "sad", "corpus": "my_corpus"},
    ]
    assert list(manifest["path"]) == [str(tmp_path / "audio" / n) for n in ("a.wav", "sub/b.flac", "c.wav")]
    assert "speaker-independent evaluation is impossible" in caplog.text
    assert manifest["duration"].tolist() == pytest.approx([0.3, 0.3, 0.3])


def test_csv_optional_columns(tmp_path: Path) -> None:
    audio_factory.write(tmp_path / "x.wav", 0.3, 16000)
    audio_factory.write(tmp_path / "y.wav", 0.2, 16000)
    listing = _listing(
        tmp_path,
        "utt_id,path,speaker,gender,label,session,transcript,corpus\n"
        "u1,x.wav,s1,w,calm,S1,hello there,mine\n,y.wav,s2,Female,calm,S2,,\n",
    )
    manifest = datasets.prepare("csv", listing, corpus_name="fallback")
    columns = ["utt_id", "speaker", "gender", "session", "transcript", "corpus"]
    assert manifest[columns].values.tolist() == [
        ["u1", "s1", "female", "S1", "hello there", "mine"],
        ["y", "s2", "female", "S2", "", "fallback"],
    ]


@pytest.mark.parametrize(
    ("spelling", "gender"),
    [("F", "female"), ("f", "female"), ("Female", "female"), ("w", "female"), ("M", "male"), ("male", "male"),
     ("Male", "male"), ("", "unknown"), ("unknown", "unknown"), ("U", "unknown")],
)
def test_csv_gender_spellings(spelling: str, gender: str, tmp_path: Path) -> None:
    audio_factory.write(tmp_path / "a.wav", 0.3, 16000)
    listing = _listing(tmp_path, f"path,label,speaker,gender\na.wav,calm,s1,{spelling}\n")
    assert datasets.prepare("csv", listing)["gender"].tolist() == [gender]


def test_csv_errors(tmp_path: Path) -> None:
    audio_factory.write(tmp_path / "a.wav", 0.3, 16000)
    audio_factory.write(tmp_path / "sub" / "a.wav", 0.3, 16000)
    # duplicate ids (both default to the stem "a"): both rows listed
    listing = _listing(tmp_path, "path,label,speaker\na.wav,calm,s1\nsub/a.wav,sad,s2\n")
    with pytest.raises(ManifestError, match=r"(?s)duplicate utt_id \(2 rows\).*'a'.*a.wav.*'a'.*sub/a.wav"):
        datasets.prepare("csv", listing)
    # a label outside the allowed set
    listing = _listing(tmp_path, "utt_id,path,label,speaker\nx,a.wav,calm,s1\ny,sub/a.wav,bored,s2\n", "labels.csv")
    with pytest.raises(ManifestError, match=r"(?s)unknown label.*'y'.*'bored'"):
        datasets.prepare("csv", listing, labels=["calm", "sad"])
    with pytest.raises(ManifestError, match="unknown label"):
        datasets.prepare("csv", listing, labels="calm, sad")
    assert len(datasets.prepare("csv", listing, labels="calm,bored")) == 2
    with pytest.raises(ValueError, match="labels must be a list of strings"):
        datasets.prepare("csv", listing, labels=5)
    # a missing audio file
    listing = _listing(tmp_path, "path,label,speaker\na.wav,calm,s1\nghost.wav,sad,s2\n", "missing.csv")
    with pytest.raises(ManifestError, match=r"(?s)missing audio file.*ghost.wav"):
        datasets.prepare("csv", listing)
    # structural problems
    with pytest.raises(ValueError, match=r"no 'label' column \(accepted: \['label', 'emotion'\]\)"):
        datasets.prepare("csv", _listing(tmp_path, "path,speaker\na.wav,s1\n", "nolabel.csv"))
    with pytest.raises(ValueError, match=r"columns \['path', 'wav'\] all mean 'path'"):
        datasets.prepare("csv", _listing(tmp_path, "path,wav,label\na.wav,a.wav,calm\n", "twice.csv"))
    with pytest.raises(ValueError, match=r"empty path on line\(s\) 3"):
        datasets.prepare("csv", _listing(tmp_path, "path,label\na.wav,calm\n,sad\n", "empty.csv"))
    with pytest.raises(ValueError, match=r"unrecognised gender.*line 2: 'robot'"):
        datasets.prepare("csv", _listing(tmp_path, "path,label,gender\na.wav,calm,robot\n", "gender.csv"))
    with pytest.raises(FileNotFoundError, match="CSV listing not found"):
        datasets.prepare("csv", tmp_path)


def test_csv_unreadable_audio_is_skipped(tmp_path: Path) -> None:
    audio_factory.write(tmp_path / "a.wav", 0.3, 16000)
    (tmp_path / "b.wav").write_text("not audio")
    manifest = datasets.prepare("csv", _listing(tmp_path, "path,label,speaker\na.wav,calm,s1\nb.wav,sad,s1\n"))
    assert manifest["utt_id"].tolist() == ["a"]
    assert [item["path"] for item in manifest.attrs["skipped"]] == [str(tmp_path / "b.wav")]


# --- folder ---------------------------------------------------------------------------------


def test_folder_labels_ids_and_speakers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for relative in ("angry/spk01_take1.wav", "angry/s/spk02_take1.flac", "calm/spk01_take2.wav"):
        audio_factory.write(tmp_path / relative, 0.3, 16000)
    audio_factory.write(tmp_path / "loose.wav", 0.3, 16000)
    (tmp_path / "calm" / "broken.wav").write_text("not audio")
    with caplog.at_level(logging.WARNING, logger="serkit"):
        manifest = datasets.prepare("folder", tmp_path)
    assert manifest[["utt_id", "speaker", "gender", "label"]].to_dict("records") == [
        {"utt_id": "angry__s__spk02_take1", "speaker": "unknown", "gender": "unknown", "label": "angry"},
        {"utt_id": "angry__spk01_take1", "speaker": "unknown", "gender": "unknown", "label": "angry"},
        {"utt_id": "calm__spk01_take2", "speaker": "unknown", "gender": "unknown", "label": "calm"},
    ]
    assert "skipped 1 file(s) that are not inside a label folder: loose.wav" in caplog.text
    assert [item["path"] for item in manifest.attrs["skipped"]] == [str(tmp_path / "loose.wav"),
                                                                     str(tmp_path / "calm" / "broken.wav")]
    assert "not inside a label folder" in manifest.attrs["skipped"][0]["reason"]
    (tmp_path / "calm" / "broken.wav").unlink()
    with_speakers = datasets.prepare("folder", tmp_path, speaker_pattern=r"(?P<speaker>spk\d+)")
    assert with_speakers["speaker"].tolist() == ["spk02", "spk01", "spk01"]


def test_folder_speaker_pattern_errors(tmp_path: Path) -> None:
    audio_factory.write(tmp_path / "angry" / "spk01_a.wav", 0.3, 16000)
    audio_factory.write(tmp_path / "calm" / "anon.wav", 0.3, 16000)
    with pytest.raises(ValueError, match=r"does not match 1 file name\(s\): calm/anon.wav"):
        datasets.prepare("folder", tmp_path, speaker_pattern=r"(?P<speaker>spk\d+)")
    with pytest.raises(ValueError, match="needs a named group"):
        datasets.prepare("folder", tmp_path, speaker_pattern=r"spk\d+")
    with pytest.raises(ValueError, match="not a valid regex"):
        datasets.prepare("folder", tmp_path, speaker_pattern=r"(?P<speaker>spk")


# --- command line ---------------------------------------------------------------------------


def test_cli_prepare_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = corpus_trees.emovo(tmp_path / "emovo", broken=False)
    for path in tree.foreign:  # a clean corpus: every audio file used, exit 0
        path.unlink()
    out = tmp_path / "out" / "emovo.csv"
    assert main(["prepare", "emovo", str(tree.root), "-o", str(out)]) == 0
    assert f"wrote {out}: 7 utterances, 6 speakers" in capsys.readouterr().out
    written = read_manifest(out)
    assert sorted(written["utt_id"]) == sorted(r["utt_id"] for r in tree.rows)
    assert set(written["corpus"]) == {"emovo"}
    assert main(["info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "utterances: 7   speakers: 6" in printed
    for label in ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"):
        assert any(line.split()[:2] == [label, "1"] for line in printed.splitlines())


def test_cli_prepare_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = corpus_trees.shemo(tmp_path / "shemo", broken=False)
    for path in tree.foreign:  # a clean corpus: every audio file used, exit 0
        path.unlink()
    out = tmp_path / "shemo5.csv"
    assert main(["prepare", "shemo", str(tree.root), "-o", str(out), "-O", "classes=5"]) == 0
    assert "fearful" not in set(pd.read_csv(out)["label"])
    assert len(pd.read_csv(out)) == len(tree.rows) - 1
    assert main(["prepare", "shemo", str(tree.root), "-o", str(out), "-O", "classes=7"]) == 2
    assert "classes must be one of [6, 5], got 7" in capsys.readouterr().err
    assert main(["prepare", "shemo", str(tree.root), "-o", str(out), "-O", "nope=1"]) == 2
    assert "allowed: ['classes', 'relabel', 'transcripts']" in capsys.readouterr().err


def test_cli_prepare_reports_unreadable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = corpus_trees.emovo(tmp_path / "emovo")
    out = tmp_path / "emovo.csv"
    assert main(["prepare", "emovo", str(tree.root), "-o", str(out)]) == 1
    assert "neu-m2-b2.wav" in capsys.readouterr().err
    assert len(read_manifest(out)) == len(tree.rows)

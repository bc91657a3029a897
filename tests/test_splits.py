"""Protocols, validation sets, speaker overlap and the leakage guard of `serkit.evaluation` (splits and its helper modules)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sklearn")

from serkit.evaluation import fold_table, validation  # noqa: E402
from serkit.evaluation.fold_table import read_folds, write_folds  # noqa: E402
from serkit.evaluation.label_map import SHARED_4, map_labels  # noqa: E402
from serkit.evaluation.leakage import check_folds, speaker_overlap  # noqa: E402
from serkit.evaluation.splits import PROTOCOLS, is_speaker_independent, make_folds  # noqa: E402

#: Utterances per class and speaker: imbalanced like ShEMO (two big classes, two small).
PER_CLASS = {"angry": 6, "neutral": 5, "sad": 2, "happy": 2}


def toy_manifest(n_speakers: int = 12, corpus: str = "toy", per_class: dict[str, int] = PER_CLASS,
                 prefix: str = "S", sessions: int = 0) -> pd.DataFrame:
    """A manifest of ``n_speakers`` speakers, each with ``per_class`` utterances of every class."""
    rows = []
    for s in range(n_speakers):
        speaker = f"{prefix}{s:02d}"
        for label, count in per_class.items():
            for i in range(count):
                row = {
                    "utt_id": f"{corpus}-{speaker}-{label}-{i}", "path": f"{speaker}/{label}{i}.wav",
                    "speaker": speaker, "gender": "female" if s % 2 else "male", "label": label,
                    "corpus": corpus, "duration": 1.0 + i / 10,
                }
                if sessions:
                    row["session"] = f"Ses{s % sessions + 1}"
                rows.append(row)
    return pd.DataFrame(rows)


def shemo_manifest(shared_data: Path) -> pd.DataFrame:
    """ShEMO's 3000 utterances from the label listing (no audio needed to split)."""
    listing = pd.read_csv(shared_data / "shemo-meta" / "labels_no_audio.csv", dtype=str)
    return pd.DataFrame({
        "utt_id": listing["utterance_id"], "path": listing["utterance_id"] + ".wav", "speaker": listing["speaker"],
        "gender": listing["gender"], "label": listing["emotion"], "corpus": "shemo", "duration": 1.0,
    })


def speakers_of(manifest: pd.DataFrame, folds: pd.DataFrame, fold: int, split: str) -> set[str]:
    ids = folds.loc[(folds["fold"] == fold) & (folds["split"] == split), "utt_id"]
    return set(manifest.set_index("utt_id").loc[ids, "speaker"])


def ids_of(folds: pd.DataFrame, fold: int, split: str) -> set[str]:
    return set(folds.loc[(folds["fold"] == fold) & (folds["split"] == split), "utt_id"])


@pytest.fixture
def manifest() -> pd.DataFrame:
    return toy_manifest()


# --------------------------------------------------------------------------- registry and options


def test_registry_lists_every_protocol() -> None:
    assert set(PROTOCOLS) == {"stratified_kfold", "speaker_kfold", "loso", "holdout", "predefined", "cross_corpus"}


def test_unknown_protocol_names_it_and_the_allowed(manifest: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"unknown protocol 'random'.*speaker_kfold"):
        make_folds(manifest, "random")


def test_unknown_option_names_it_and_the_allowed(manifest: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['folds'\].*n_folds.*val_fraction"):
        make_folds(manifest, "speaker_kfold", folds=3)


def test_missing_required_option(manifest: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"holdout: missing required option\(s\) \['test_speakers'\]"):
        make_folds(manifest, "holdout")


@pytest.mark.parametrize("fraction", [-0.1, 1.0, "0.2", True])
def test_bad_val_fraction(manifest: pd.DataFrame, fraction: object) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        make_folds(manifest, "speaker_kfold", val_fraction=fraction)


def test_too_few_speakers_for_speaker_kfold() -> None:
    with pytest.raises(ValueError, match=r"3 speaker\(s\) cannot fill n_folds=5"):
        make_folds(toy_manifest(3), "speaker_kfold")


def test_is_speaker_independent() -> None:
    assert is_speaker_independent("stratified_kfold") is False
    for protocol in ("speaker_kfold", "loso", "holdout", "cross_corpus"):
        assert is_speaker_independent(protocol) is True
    with pytest.raises(ValueError, match="depends on the fold files"):
        is_speaker_independent("predefined")
    with pytest.raises(ValueError, match="unknown protocol"):
        is_speaker_independent("nope")


# --------------------------------------------------------------------------- partitions


KFOLD_CASES = [
    ("stratified_kfold", {"n_folds": 5}),
    ("speaker_kfold", {"n_folds": 4}),
    ("loso", {}),
]


@pytest.mark.parametrize(("protocol", "options"), KFOLD_CASES)
def test_kfold_protocols_partition_every_fold(manifest: pd.DataFrame, protocol: str, options: dict) -> None:
    folds = make_folds(manifest, protocol, seed=3, **options)
    assert list(folds.columns) == ["utt_id", "fold", "split"]
    all_ids = set(manifest["utt_id"])
    for fold, part in folds.groupby("fold"):
        assert not part["utt_id"].duplicated().any(), f"fold {fold} lists an utterance twice"
        assert set(part["utt_id"]) == all_ids, f"fold {fold} must use every utterance"
        assert set(part["split"]) == {"train", "val", "test"}
    test = folds[folds["split"] == "test"]
    assert sorted(test["utt_id"]) == sorted(all_ids), "test sets must cover every utterance exactly once"
    assert sorted(folds["fold"].unique()) == list(range(folds["fold"].nunique()))


def test_fold_counts(manifest: pd.DataFrame) -> None:
    assert make_folds(manifest, "stratified_kfold")["fold"].nunique() == 5
    assert make_folds(manifest, "speaker_kfold", n_folds=3)["fold"].nunique() == 3
    assert make_folds(manifest, "loso")["fold"].nunique() == manifest["speaker"].nunique()


@pytest.mark.parametrize(("protocol", "options"), [
    ("speaker_kfold", {"n_folds": 4}), ("loso", {}), ("holdout", {"test_speakers": ["S00", "S05"]}),
])
def test_speaker_independent_protocols_share_no_speaker(manifest: pd.DataFrame, protocol: str, options: dict) -> None:
    folds = make_folds(manifest, protocol, **options)
    overlap = speaker_overlap(manifest, folds)
    assert (overlap["n_shared_speakers"] == 0).all()
    assert (overlap["shared_fraction"] == 0).all()
    assert folds.attrs["speaker_independent"] is True


def test_stratified_kfold_shares_speakers(manifest: pd.DataFrame) -> None:
    folds = make_folds(manifest, "stratified_kfold", seed=0)
    overlap = speaker_overlap(manifest, folds)
    assert list(overlap.columns) == ["fold", "n_test_utterances", "n_test_speakers", "n_shared_speakers", "shared_fraction"]
    assert (overlap["n_shared_speakers"] > 0).all()
    assert (overlap["shared_fraction"] > 0.9).all()  # 12 speakers in every split: nearly all shared
    assert overlap["n_test_utterances"].sum() == len(manifest)
    assert folds.attrs["speaker_independent"] is False


def test_stratified_kfold_warns_it_is_speaker_dependent(manifest: pd.DataFrame, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="serkit.evaluation.splits"):
        make_folds(manifest, "stratified_kfold")
    assert "speaker-dependent" in caplog.text


def test_stratified_kfold_keeps_class_proportions(manifest: pd.DataFrame) -> None:
    folds = make_folds(manifest, "stratified_kfold", n_folds=4, val_fraction=0)
    labels = manifest.set_index("utt_id")["label"]
    for _, part in folds[folds["split"] == "test"].groupby("fold"):
        counts = labels.loc[part["utt_id"]].value_counts()
        for label, per_speaker in PER_CLASS.items():
            expected = per_speaker * 12 / 4
            assert abs(counts.get(label, 0) - expected) <= 1


def test_speaker_kfold_roughly_stratified(manifest: pd.DataFrame) -> None:
    folds = make_folds(manifest, "speaker_kfold", n_folds=4, val_fraction=0)
    labels = manifest.set_index("utt_id")["label"]
    for _, part in folds[folds["split"] == "test"].groupby("fold"):
        share = labels.loc[part["utt_id"]].value_counts(normalize=True)
        assert abs(share["angry"] - 6 / 15) < 0.05  # every toy speaker has the same mix


def test_loso_one_speaker_per_test_fold(manifest: pd.DataFrame) -> None:
    folds = make_folds(manifest, "loso")
    for fold in range(12):
        assert speakers_of(manifest, folds, fold, "test") == {f"S{fold:02d}"}


def test_loso_by_session() -> None:
    manifest = toy_manifest(8, sessions=4)
    folds = make_folds(manifest, "loso", group="session")
    assert folds["fold"].nunique() == 4
    sessions = manifest.set_index("utt_id")["session"]
    for fold in range(4):
        assert set(sessions.loc[list(ids_of(folds, fold, "test"))]) == {f"Ses{fold + 1}"}
        assert not speakers_of(manifest, folds, fold, "val") & speakers_of(manifest, folds, fold, "test")


def test_loso_session_errors(manifest: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="needs a 'session' column"):
        make_folds(manifest, "loso", group="session")
    with pytest.raises(ValueError, match="group must be 'speaker' or 'session'"):
        make_folds(manifest, "loso", group="gender")


def test_holdout(manifest: pd.DataFrame) -> None:
    folds = make_folds(manifest, "holdout", test_speakers=["S01", "S02"])
    assert folds["fold"].unique().tolist() == [0]
    assert speakers_of(manifest, folds, 0, "test") == {"S01", "S02"}
    assert len(folds) == len(manifest)


def test_holdout_unknown_speakers_listed(manifest: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"unknown test speaker\(s\) \['X1', 'X2'\]"):
        make_folds(manifest, "holdout", test_speakers=["S01", "X1", "X2"])


# --------------------------------------------------------------------------- validation sets


@pytest.mark.parametrize(("protocol", "options"), [
    ("speaker_kfold", {"n_folds": 4}), ("loso", {}), ("holdout", {"test_speakers": ["S03"]}),
])
def test_val_is_drawn_by_training_speakers(manifest: pd.DataFrame, protocol: str, options: dict) -> None:
    folds = make_folds(manifest, protocol, seed=7, **options)
    for fold in folds["fold"].unique():
        test, val, train = (speakers_of(manifest, folds, fold, s) for s in ("test", "val", "train"))
        assert val, "a validation set is drawn"
        assert not val & test, "validation speakers never come from the test side"
        assert not val & train, "validation takes whole speakers"
        assert not ids_of(folds, fold, "val") & ids_of(folds, fold, "test")
        n_val, n_train = len(ids_of(folds, fold, "val")), len(ids_of(folds, fold, "train"))
        assert 0.1 <= n_val / (n_val + n_train) <= 0.3  # aims at 0.2 in whole speakers of 15 utterances
        val_labels = set(manifest.set_index("utt_id").loc[list(ids_of(folds, fold, "val")), "label"])
        assert val_labels == set(PER_CLASS), "every class is represented in validation"


def test_val_by_speaker_keeps_classes_when_speakers_differ() -> None:
    # Only speakers S00 and S01 have sad: validation must not take both (training would lose sad).
    frames = [toy_manifest(8, per_class={"angry": 5, "neutral": 5})]
    frames.append(toy_manifest(2, per_class={"sad": 3}).assign(utt_id=lambda f: f["utt_id"] + "-x"))
    manifest = pd.concat(frames, ignore_index=True)
    folds = make_folds(manifest, "holdout", test_speakers=["S07"], val_fraction=0.3, seed=1)
    labels = manifest.set_index("utt_id")["label"]
    assert "sad" in set(labels.loc[list(ids_of(folds, 0, "train"))])


def test_stratified_val_from_training_utterances(manifest: pd.DataFrame) -> None:
    folds = make_folds(manifest, "stratified_kfold", n_folds=5, val_fraction=0.25, seed=2)
    labels = manifest.set_index("utt_id")["label"]
    for fold in range(5):
        val, train = ids_of(folds, fold, "val"), ids_of(folds, fold, "train")
        assert not val & ids_of(folds, fold, "test")
        assert abs(len(val) / (len(val) + len(train)) - 0.25) < 0.02
        share_val = labels.loc[list(val)].value_counts(normalize=True)
        share_train = labels.loc[list(train)].value_counts(normalize=True)
        assert (share_val - share_train).abs().max() < 0.06


def test_val_fraction_zero_draws_no_validation(manifest: pd.DataFrame) -> None:
    folds = make_folds(manifest, "speaker_kfold", val_fraction=0)
    assert set(folds["split"]) == {"train", "test"}


@pytest.mark.parametrize(("protocol", "options"), KFOLD_CASES + [("holdout", {"test_speakers": ["S00"]})])
def test_deterministic_given_seed(manifest: pd.DataFrame, protocol: str, options: dict) -> None:
    first = make_folds(manifest, protocol, seed=11, **options)
    again = make_folds(manifest, protocol, seed=11, **options)
    pd.testing.assert_frame_equal(first, again)
    others = [make_folds(manifest, protocol, seed=seed, **options) for seed in (12, 13, 14)]
    assert any(not first.equals(other) for other in others), "other seeds draw other folds or validation sets"


# --------------------------------------------------------------------------- draw_validation (the one validation draw)


def _rows(manifest: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return manifest["label"].to_numpy(), manifest["speaker"].to_numpy()


@pytest.mark.parametrize(("fraction", "n_val_speakers"), [(0.2, 2), (0.3, 3), (0.5, 5)])
def test_draw_validation_takes_whole_speakers_near_the_fraction(fraction: float, n_val_speakers: int) -> None:
    labels, speakers = _rows(toy_manifest(10))  # 10 alike speakers: the fraction is exact in whole speakers
    mask = validation.draw_validation(labels, speakers, fraction, seed=3)
    assert set(speakers[mask]).isdisjoint(speakers[~mask])
    assert len(set(speakers[mask])) == n_val_speakers  # not 1 / round(1 / fraction) of them
    assert mask.mean() == pytest.approx(fraction)
    assert set(labels[mask]) == set(labels[~mask]) == set(PER_CLASS)


def test_draw_validation_is_deterministic_given_seed() -> None:
    labels, speakers = _rows(toy_manifest(12))
    first = validation.draw_validation(labels, speakers, 0.25, seed=[5, 0])
    np.testing.assert_array_equal(first, validation.draw_validation(labels, speakers, 0.25, seed=[5, 0]))
    others = [validation.draw_validation(labels, speakers, 0.25, seed=[5, fold]) for fold in (1, 2, 3)]
    assert any((other != first).any() for other in others)


def test_draw_validation_with_one_speaker_draws_rows_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    labels, speakers = _rows(toy_manifest(1, per_class={"angry": 10, "sad": 10}))
    with caplog.at_level(logging.WARNING, logger="serkit.evaluation.validation"):
        mask = validation.draw_validation(labels, speakers, 0.2, seed=0)
    assert "single training speaker" in caplog.text and "speaker-dependent" in caplog.text
    assert sorted(np.unique(labels[mask], return_counts=True)[1]) == [2, 2]  # stratified: 20 % of each class


def test_draw_validation_without_speakers_is_stratified(caplog: pytest.LogCaptureFixture) -> None:
    labels = np.repeat(["a", "b", "c"], [30, 20, 1])
    with caplog.at_level(logging.WARNING, logger="serkit.evaluation.validation"):
        mask = validation.draw_validation(labels, None, 0.2, seed=0)
    assert not caplog.text  # a row-wise draw asked for is no fallback
    counts = dict(zip(*np.unique(labels[mask], return_counts=True)))
    assert counts["a"] == 6 and counts["b"] == 4 and "c" not in counts  # a single row stays in training


def test_draw_validation_refuses_bad_input() -> None:
    labels, speakers = _rows(toy_manifest(4))
    assert not validation.draw_validation(labels, speakers, 0.0, seed=0).any()
    with pytest.raises(ValueError, match="val_fraction"):
        validation.draw_validation(labels, speakers, 1.0, seed=0)
    with pytest.raises(ValueError, match="speakers has 3 entries"):
        validation.draw_validation(labels, speakers[:3], 0.2, seed=0)


def test_make_folds_with_one_training_speaker_draws_its_rows() -> None:
    manifest = toy_manifest(2)
    folds = make_folds(manifest, "holdout", test_speakers=["S01"], seed=4)
    val = ids_of(folds, 0, "val")
    assert val and speakers_of(manifest, folds, 0, "val") == {"S00"}
    assert len(val) == 3  # 20 % of 15 utterances, stratified: one angry, one neutral, one more
    check_folds(manifest, folds)  # the test speaker stays out of training and validation


def test_the_estimators_own_validation_is_drawn_in_splits_by_speaker() -> None:
    """Fitted without validation rows, a neural classifier validates on whole speakers drawn in validation.py."""
    pytest.importorskip("torch")
    from serkit.models.data import validation_split

    labels, speakers = _rows(toy_manifest(9))
    codes = np.unique(labels, return_inverse=True)[1]
    train, val = validation_split(codes, speakers, 0.3, seed=8)
    mask = validation.kfold_validation(codes, speakers, 0.3, seed=8)
    np.testing.assert_array_equal(val, np.flatnonzero(mask))
    np.testing.assert_array_equal(train, np.flatnonzero(~mask))
    assert set(speakers[val]).isdisjoint(speakers[train]) and len(set(speakers[val])) == 3  # round(1 / 0.3) folds


# --------------------------------------------------------------------------- predefined


def test_predefined_csv_with_test_only_trains_on_the_rest(manifest: pd.DataFrame, tmp_path: Path) -> None:
    ids = manifest["utt_id"].tolist()
    listed = pd.DataFrame({"utt_id": ids[:10] + ids[10:20], "fold": [0] * 10 + [1] * 10, "split": "test"})
    path = write_folds(listed, tmp_path / "folds.csv")
    folds = make_folds(manifest, "predefined", fold_files=[path], val_fraction=0)
    assert ids_of(folds, 0, "test") == set(ids[:10])
    assert ids_of(folds, 0, "train") == set(ids[10:])
    assert ids_of(folds, 1, "train") == set(ids[:10] + ids[20:])


def test_predefined_csv_roundtrip_is_kept_exactly(manifest: pd.DataFrame, tmp_path: Path) -> None:
    made = make_folds(manifest, "speaker_kfold", n_folds=3, seed=5)
    path = write_folds(made, tmp_path / "folds.csv")
    again = make_folds(manifest, "predefined", fold_files=path)
    pd.testing.assert_frame_equal(made, again, check_like=False)
    assert again.attrs["speaker_independent"] is True
    assert is_speaker_independent("predefined", manifest, again) is True


def write_emobox(folder: Path, dataset: str, fold: int, split: str, keys: list[str]) -> Path:
    path = folder / f"{dataset}_{split}_fold_{fold}.jsonl"
    with path.open("w", encoding="utf-8") as stream:
        for key in keys:
            stream.write(json.dumps({"key": f"{dataset}-{key}", "dataset": dataset, "emo": None, "wav": f"{key}.wav"}) + "\n")
    return path


def test_predefined_emobox_jsonl(manifest: pd.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ids = manifest["utt_id"].tolist()  # ids contain '-': only the "<dataset>-" prefix is cut
    write_emobox(tmp_path, "toy", 1, "train", ids[:100] + ["ghost-1", "ghost-2"])
    write_emobox(tmp_path, "toy", 1, "test", ids[100:150])
    (tmp_path / "label_map.json").write_text("{}", encoding="utf-8")  # ignored: not a fold file
    with caplog.at_level(logging.WARNING, logger="serkit.evaluation.predefined"):
        folds = make_folds(manifest, "predefined", fold_files=tmp_path, val_fraction=0)
    assert folds["fold"].unique().tolist() == [0]  # EmoBox fold_1 -> fold 0
    assert ids_of(folds, 0, "train") == set(ids[:100])
    assert ids_of(folds, 0, "test") == set(ids[100:150])
    assert "2 listed utterance id(s) are not in the manifest" in caplog.text
    assert f"leaves out {len(ids) - 150} of {len(ids)}" in caplog.text


def test_predefined_bad_file_name(manifest: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "whatever.jsonl"
    path.write_text('{"key": "toy-a"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="cannot tell split and fold"):
        make_folds(manifest, "predefined", fold_files=[path])
    with pytest.raises(ValueError, match="not found"):
        make_folds(manifest, "predefined", fold_files=[tmp_path / "missing.csv"])


def test_predefined_leaking_files_are_refused(manifest: pd.DataFrame, tmp_path: Path) -> None:
    ids = manifest["utt_id"].tolist()
    write_emobox(tmp_path, "toy", 1, "train", ids[:50])
    write_emobox(tmp_path, "toy", 1, "test", ids[40:60])
    with pytest.raises(ValueError, match=r"leakage: 10 utterance\(s\) are both train/val and test"):
        make_folds(manifest, "predefined", fold_files=tmp_path)


@pytest.mark.realdata
def test_predefined_emobox_shemo_split(shared_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    manifest = shemo_manifest(shared_data)
    folder = shared_data / "shemo-meta" / "emobox_fold_1"
    with caplog.at_level(logging.WARNING, logger="serkit.evaluation.predefined"):
        folds = make_folds(manifest, "predefined", fold_files=folder, val_fraction=0)
    counts = folds["split"].value_counts()
    assert counts["train"] == 2131 and counts["test"] == 707
    assert "leaves out 162 of 3000" in caplog.text  # EmoBox keeps 2838 of ShEMO's 3000
    overlap = speaker_overlap(manifest, folds).iloc[0]
    # A random split: nearly every test speaker is also a training speaker.
    assert overlap["n_test_speakers"] >= 70
    assert overlap["n_shared_speakers"] >= 0.9 * overlap["n_test_speakers"]
    assert overlap["shared_fraction"] > 0.9
    assert is_speaker_independent("predefined", manifest, folds) is False
    assert folds.attrs["speaker_independent"] is False
    with_val = make_folds(manifest, "predefined", fold_files=folder, seed=0)
    assert ids_of(with_val, 0, "test") == ids_of(folds, 0, "test")
    assert ids_of(with_val, 0, "val") <= ids_of(folds, 0, "train")
    assert abs(len(ids_of(with_val, 0, "val")) / 2131 - 0.2) < 0.01


# --------------------------------------------------------------------------- cross-corpus and labels


def two_corpora() -> pd.DataFrame:
    # Both corpora use speaker codes S00.. : speakers are told apart by corpus.
    emovo = toy_manifest(6, "emovo", {"anger": 3, "joy": 2, "neutral": 3, "sadness": 2, "disgust": 2})
    emodb = toy_manifest(5, "emodb", {"anger": 3, "happiness": 2, "neutral": 3, "sadness": 2, "boredom": 2})
    return pd.concat([emovo, emodb], ignore_index=True)


def test_map_labels_shared_4(caplog: pytest.LogCaptureFixture) -> None:
    manifest = two_corpora()
    with caplog.at_level(logging.WARNING, logger="serkit.evaluation.label_map"):
        mapped = map_labels(manifest, SHARED_4)
    assert set(mapped["label"]) == {"angry", "happy", "neutral", "sad"}
    assert len(mapped) == len(manifest) - 6 * 2 - 5 * 2
    assert "dropped 22 of 132" in caplog.text
    assert mapped.index.tolist() == list(range(len(mapped)))
    assert set(manifest["label"]) >= {"anger", "joy"}, "the input is not modified"


def test_map_labels_flat_and_per_corpus() -> None:
    manifest = two_corpora()
    mapped = map_labels(manifest, {"anger": "angry", "neutral": "neutral", "emodb": {"boredom": "neutral"}})
    emovo = mapped[mapped["corpus"] == "emovo"]
    emodb = mapped[mapped["corpus"] == "emodb"]
    assert set(emovo["label"]) == {"angry", "neutral"}
    assert set(emodb["label"]) == {"neutral"} and len(emodb) == 5 * 2
    with pytest.raises(ValueError, match="must be a dict"):
        map_labels(manifest, {"anger": 1})


def test_shared_4_covers_the_corpora() -> None:
    assert set(SHARED_4) == {"shemo", "emovo", "urdu", "emodb", "ravdess", "crema_d", "tess", "iemocap"}
    for table in SHARED_4.values():
        assert sorted(set(table.values())) == ["angry", "happy", "neutral", "sad"]


def test_shared_4_is_read_from_each_corpus_module() -> None:
    from serkit.data.datasets import adapter

    for corpus, table in SHARED_4.items():
        module = adapter(corpus)
        assert table == module.SHARED_4
        assert set(table) <= set(module.LABELS), f"{corpus}: SHARED_4 maps labels the corpus does not have"


def test_cross_corpus() -> None:
    manifest = map_labels(two_corpora(), SHARED_4)
    folds = make_folds(manifest, "cross_corpus", train_corpus="emovo", test_corpus="emodb", seed=0)
    corpus = manifest.set_index("utt_id")["corpus"]
    assert set(corpus.loc[list(ids_of(folds, 0, "test"))]) == {"emodb"}
    assert set(corpus.loc[list(ids_of(folds, 0, "train") | ids_of(folds, 0, "val"))]) == {"emovo"}
    assert ids_of(folds, 0, "val"), "validation comes from the training corpus"
    assert (speaker_overlap(manifest, folds)["n_shared_speakers"] == 0).all()


def test_cross_corpus_errors() -> None:
    raw = two_corpora()
    with pytest.raises(ValueError, match=r"never occur in 'emovo'.*map_labels"):
        make_folds(raw, "cross_corpus", train_corpus="emovo", test_corpus="emodb")
    with pytest.raises(ValueError, match=r"test_corpus='ravdess' is not in the manifest.*emodb"):
        make_folds(raw, "cross_corpus", train_corpus="emovo", test_corpus="ravdess")


# --------------------------------------------------------------------------- leakage guard and files


def test_check_folds_refuses_train_test_overlap(manifest: pd.DataFrame) -> None:
    folds = make_folds(manifest, "speaker_kfold", n_folds=3)
    leaked = folds[(folds["fold"] == 1) & (folds["split"] == "test")].iloc[:2].assign(split="train")
    bad = pd.concat([folds, leaked], ignore_index=True)
    with pytest.raises(ValueError, match=r"leakage: 2 utterance\(s\) are both train/val and test"):
        check_folds(manifest, bad)


def test_check_folds_refuses_val_speaker_in_test(manifest: pd.DataFrame) -> None:
    folds = make_folds(manifest, "holdout", test_speakers=["S00"], val_fraction=0)
    # Move a test utterance of S00 into validation: no utterance is shared, but the speaker is.
    moved = folds.copy()
    first_test = moved.index[moved["split"] == "test"][0]
    moved.loc[first_test, "split"] = "val"
    with pytest.raises(ValueError, match=r"fold 0 of a speaker-independent protocol has test speaker\(s\) in val: S00"):
        check_folds(manifest, moved, speaker_independent=True)
    check_folds(manifest, moved, speaker_independent=False)  # allowed when no independence is claimed


def test_check_folds_other_problems(manifest: pd.DataFrame) -> None:
    good = make_folds(manifest, "holdout", test_speakers=["S00"], val_fraction=0)
    with pytest.raises(ValueError, match="not in the manifest"):
        check_folds(manifest, pd.concat([good, pd.DataFrame({"utt_id": ["zz"], "fold": [0], "split": ["train"]})]))
    with pytest.raises(ValueError, match="unknown split"):
        check_folds(manifest, good.assign(split="dev"))
    with pytest.raises(ValueError, match="needs both train and test"):
        check_folds(manifest, good[good["split"] == "train"])
    with pytest.raises(ValueError, match="listed more than once"):
        check_folds(manifest, pd.concat([good, good.iloc[:1]]))


def test_write_and_read_folds(manifest: pd.DataFrame, tmp_path: Path) -> None:
    folds = make_folds(manifest, "loso")
    path = write_folds(folds, tmp_path / "run" / "folds.csv")
    assert [p.name for p in path.parent.iterdir()] == ["folds.csv"], "no temporary file is left"
    again = read_folds(path)
    pd.testing.assert_frame_equal(folds, again)
    assert again["fold"].dtype == np.int64


def test_read_folds_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        read_folds(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("utt_id,fold\na,0\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['split'\]"):
        read_folds(bad)
    bad.write_text("utt_id,fold,split\na,x,test\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.csv"):
        read_folds(bad)


def test_speaker_keys_tell_corpora_apart() -> None:
    keys = fold_table.speaker_keys(two_corpora())
    assert {"emovo/S00", "emodb/S00"} <= set(keys)
    assert set(fold_table.speaker_keys(toy_manifest(2))) == {"S00", "S01"}

"""serkit.models.transforms: per-speaker normalisation, in experiments, saved models and prediction."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

from serkit.experiment.runner import RecipeError, run_recipe
from tests.test_experiment import RECIPE as SMALL_RECIPE
from serkit.evaluation.leakage import check_folds, speaker_overlap
from serkit.evaluation.splits import make_folds
from serkit.evaluation.validation import set_aside_enrollment
from serkit.models.transforms import SpeakerNorm, build_transform

# --------------------------------------------------------------------------- synthetic speakers


def speaker_data(n_speakers: int = 6, per_class: int = 15, dims: int = 8, seed: int = 0):
    """Two emotions whose difference (1.2 on dim 0) is small next to each speaker's own offset and scale."""
    rng = np.random.default_rng(seed)
    rows, labels, speakers = [], [], []
    for s in range(n_speakers):
        offset, scale = rng.normal(scale=3.0, size=dims), rng.uniform(0.5, 2.0, size=dims)
        for label in ("calm", "tense"):
            shift = np.zeros(dims)
            shift[0] = 1.2 if label == "tense" else 0.0
            rows.append((rng.normal(size=(per_class, dims)) * 0.3 + shift) * scale + offset)
            labels += [label] * per_class
            speakers += [f"s{s}"] * per_class
    return np.concatenate(rows).astype(np.float32), np.array(labels), np.array(speakers)


def test_each_training_speaker_ends_up_zero_mean_unit_variance() -> None:
    X, _, speakers = speaker_data()
    norm = SpeakerNorm().fit(X, speakers)
    Z = norm.transform(X, speakers)
    assert Z.dtype == np.float32 and Z.shape == X.shape
    for s in np.unique(speakers):
        rows = Z[speakers == s]
        np.testing.assert_allclose(rows.mean(axis=0), 0.0, atol=1e-4)
        np.testing.assert_allclose(rows.std(axis=0), 1.0, atol=1e-3)
    assert sorted(norm.speakers_) == sorted(set(speakers)) and norm.global_.count == len(X)


def test_unseen_speakers_are_recognised_after_their_own_normalisation() -> None:
    """The point of it: unseen speakers' offsets hide the emotion unless removed (transductive stats)."""
    X, y, g = speaker_data()
    test = np.isin(g, ["s4", "s5"])
    raw = LogisticRegression(max_iter=2000).fit(X[~test], y[~test])
    raw_ua = balanced_accuracy_score(y[test], raw.predict(X[test]))
    norm = SpeakerNorm().fit(X[~test], g[~test])
    own = {s: norm.speaker_statistics(X[g == s]) for s in ("s4", "s5")}
    model = LogisticRegression(max_iter=2000).fit(norm.transform(X[~test], g[~test]), y[~test])
    ua = balanced_accuracy_score(y[test], model.predict(norm.transform(X[test], g[test], own)))
    assert ua >= 0.9 and ua > raw_ua + 0.2, (raw_ua, ua)


def test_frame_maps_are_normalised_per_dimension_and_padding_stays_zero() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(loc=5.0, scale=2.0, size=(4, 10, 3)).astype(np.float32)
    X[:, 7:] = 0.0  # the last 3 frames of every map are padding
    norm = SpeakerNorm(frame_axis=-2).fit(X, ["a"] * 4)
    real = X[:, :7].reshape(-1, 3)
    np.testing.assert_allclose(norm.global_.mean, real.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(norm.global_.std, real.std(axis=0), rtol=1e-5)
    Z = norm.transform(X, ["a"] * 4)
    assert np.all(Z[:, 7:] == 0.0)
    np.testing.assert_allclose(Z[:, :7].reshape(-1, 3).mean(axis=0), 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="frame maps need at least 3 axes"):
        norm.transform(X[:, 0], ["a"] * 4)


def test_unknown_speakers_fall_back_to_global_statistics_with_a_warning(caplog) -> None:
    X, _, g = speaker_data()
    norm = SpeakerNorm().fit(X, g)
    with caplog.at_level(logging.WARNING, logger="serkit.models.transforms"):
        Z = norm.transform(X[:3], ["stranger"] * 3)
    np.testing.assert_allclose(Z, (X[:3] - norm.global_.mean) / norm.global_.std, rtol=1e-5)
    assert "no statistics for speaker 'stranger'" in caplog.text


def test_a_few_utterances_borrow_the_typical_within_speaker_spread(caplog) -> None:
    """Five copies of one utterance have no spread: the training speakers' typical spread fills in.

    Three random enrolment utterances once took a synthetic corpus to chance: dimensions that
    happened to vary little in them were blown up. The variance is now pooled with the training
    speakers' within-speaker variance as if that came from 10 utterances.
    """
    X, _, g = speaker_data()
    norm = SpeakerNorm().fit(X, g)
    constant = np.repeat(X[:1], 5, axis=0)
    stats = norm.speaker_statistics(constant)
    floored = 0.01 * norm.global_.std.astype(np.float64)  # no spread of its own: the 1 % floor
    np.testing.assert_allclose(stats.std, np.sqrt((5 * floored**2 + 10 * norm.within_std_.astype(np.float64) ** 2) / 15),
                               rtol=1e-5)
    assert np.all(np.isfinite(norm.apply(constant, stats)))
    many = norm.speaker_statistics(X[g == "s0"])  # 30 utterances: mostly their own spread
    own = X[g == "s0"].std(axis=0)
    assert np.all(np.abs(many.std - own) <= np.abs(norm.within_std_ - own) + 1e-6)
    with caplog.at_level(logging.WARNING, logger="serkit.models.transforms"):
        norm.speaker_statistics(X[:3])
    assert "only 3 utterance(s)" in caplog.text


def test_saved_statistics_give_the_same_output(tmp_path: Path) -> None:
    X, _, g = speaker_data()
    norm = SpeakerNorm(test_statistics="enrollment", enrollment_utterances=4).fit(X, g)
    description = norm.save(tmp_path)
    json.dumps(description)
    again = SpeakerNorm.load(tmp_path, description)
    assert again.settings() == norm.settings()
    np.testing.assert_array_equal(again.transform(X, g), norm.transform(X, g))


@pytest.mark.parametrize(
    ("settings", "kind", "message"),
    [
        ({"whiten": {}}, "pooled", r"unknown transform\(s\) \['whiten'\]"),
        ({"speaker_norm": {"test": "x"}}, "pooled", r"unknown setting\(s\) \['test'\]"),
        ({"speaker_norm": {"test_statistics": "oracle"}}, "pooled", "test_statistics must be one of"),
        ({"speaker_norm": {"enrollment_utterances": 0}}, "pooled", "enrollment_utterances must be a positive integer"),
        ({"speaker_norm": {}}, "image", "not images"),
    ],
)
def test_bad_settings_are_named(settings, kind, message) -> None:
    with pytest.raises(ValueError, match=message):
        build_transform(settings, kind)


def test_build_transform_reads_the_models_input() -> None:
    assert build_transform(None, "pooled") is None
    assert build_transform({"speaker_norm": True}, "frames").frame_axis == -2
    assert build_transform({"speaker_norm": {}}, "functionals").frame_axis is None


# --------------------------------------------------------------------------- enrolment split


def test_enrollment_rows_are_set_aside_per_test_speaker() -> None:
    _, y, g = speaker_data(n_speakers=4, per_class=6)
    manifest = pd.DataFrame({"utt_id": [f"u{i:03d}" for i in range(len(y))], "speaker": g, "label": y, "corpus": "c"})
    folds = make_folds(manifest, "loso")
    marked = set_aside_enrollment(folds, manifest, 5, seed=3)
    check_folds(manifest, marked, speaker_independent=True)
    assert (speaker_overlap(manifest, marked)["n_shared_speakers"] == 0).all()  # enrolment is not training
    speaker = manifest.set_index("utt_id")["speaker"]
    for fold, part in marked.groupby("fold"):
        enroll, test = part[part.split == "enroll"], part[part.split == "test"]
        assert len(enroll) == 5 and len(test) == 12 - 5
        assert set(speaker[enroll.utt_id]) == set(speaker[test.utt_id])  # the test speaker's own
    assert set_aside_enrollment(folds, manifest, 5, seed=3).equals(marked)  # the same draw again
    few = set_aside_enrollment(folds, manifest, 50)
    assert (few[few.fold == 0].split == "test").sum() == 1  # one utterance is always left to score
    with pytest.raises(ValueError, match="positive integer"):
        set_aside_enrollment(folds, manifest, 0)


# --------------------------------------------------------------------------- experiments and prediction

#: test_experiment's small LOSO recipe (4 speakers, MFCC statistics, SVM) with 4 clips per
#: emotion, so 4 can be set aside for enrolment, and the two ways of describing test speakers.
RECIPE = SMALL_RECIPE.replace('name = "small"', 'name = "norm"').replace("per_emotion = 3", "per_emotion = 4") + """
[[variant]]
name = "transductive"
transforms = {{ speaker_norm = {{ test_statistics = "transductive" }} }}
[[variant]]
name = "enrollment"
transforms = {{ speaker_norm = {{ test_statistics = "enrollment", enrollment_utterances = 4 }} }}
"""


@pytest.fixture(scope="module")
def norm_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("norm")
    recipe = root / "norm.toml"
    recipe.write_text(RECIPE.format(root=root))
    return {r.run_dir.name: r.run_dir for r in run_recipe(recipe, progress=False)}


def test_runs_state_the_normalisation_and_score_no_enrolment_utterance(norm_runs) -> None:
    for name, run in norm_runs.items():
        folds, predictions = pd.read_csv(run / "folds.csv"), pd.read_csv(run / "predictions.csv")
        report = (run / "report" / "report.md").read_text()
        assert "**Normalisation:** speaker_norm" in report and name.replace("enrollment", "enrolment") in report
        scored = set(predictions.utt_id)
        assert scored == set(folds.loc[folds.split == "test", "utt_id"])
        enroll = folds[folds.split == "enroll"]
        if name == "enrollment":
            assert len(enroll) == 4 * 4 and not scored & set(enroll.utt_id)  # 4 per test speaker, 4 folds
            assert (folds.split == "test").sum() == 4 * (16 - 4)
        else:
            assert enroll.empty
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["speaker_independent"] is True
        assert metrics["transform"].startswith("speaker_norm") and metrics["overall"]["ua"]["mean"] > 0.25


def test_the_saved_model_normalises_in_prediction_as_in_the_experiment(norm_runs, tmp_path, caplog) -> None:
    from serkit.data.audio import AudioSpec, load
    from serkit.inference.export import export_onnx
    from serkit.features import build_extractor
    from serkit.inference.predictor import Predictor
    from serkit.models.io import load_model, read_model_json

    model_dir = norm_runs["transductive"] / "model"
    meta = read_model_json(model_dir)
    assert meta["transform"]["name"] == "speaker_norm" and (model_dir / "speaker_norm.npz").is_file()
    manifest = pd.read_csv(norm_runs["transductive"] / "manifest.csv")
    corpus = Path(manifest.path[0]).parent if Path(manifest.path[0]).is_absolute() else None
    paths = [Path(p) if corpus else norm_runs["transductive"].parents[1] / "corpus" / p for p in manifest.path]
    speaker = manifest.speaker.iloc[0]
    mine = [p for p, s in zip(paths, manifest.speaker) if s == speaker][:6]

    # the experiment's way: features, the stored speaker's statistics, the classifier
    identity = meta["features"]
    extractor = build_extractor({"kind": identity["kind"], **identity["config"]}, AudioSpec.from_dict(identity["audio_spec"]))
    features = np.stack([extractor.extract(load(p, extractor.spec), extractor.spec.sampling_rate)["stats"] for p in mine])
    norm = SpeakerNorm.load(model_dir, meta["transform"])
    expected = load_model(model_dir).model.predict_proba(norm.transform(features, [speaker] * len(mine)))

    predictor = Predictor.load(model_dir)
    assert speaker in predictor.known_speakers()
    got = np.array([list(p.probabilities.values()) for p in predictor.predict_files(mine, speaker=speaker)])
    np.testing.assert_allclose(got, expected, atol=1e-6)

    # enrolment: the same recordings give that speaker's statistics again
    stats = predictor.enroll("new voice", mine)
    np.testing.assert_allclose(stats.mean, norm.speaker_statistics(features).mean, rtol=1e-5)
    enrolled = np.array([list(p.probabilities.values()) for p in predictor.predict_files(mine, speaker="new voice")])
    np.testing.assert_allclose(enrolled, load_model(model_dir).model.predict_proba(
        norm.transform(features, ["x"] * len(mine), {"x": stats})), atol=1e-6)

    # no speaker: global statistics, one log line however many calls, and a finding in each result
    with caplog.at_level(logging.WARNING, logger="serkit.inference.speakers"):
        predictor.predict_files(mine[:2])
        unnamed = predictor.predict_files(mine[:2])
    assert caplog.text.count("no speaker given") == 1
    assert [[w.code for w in p.warnings] for p in unnamed] == [["no_speaker_statistics"]] * 2
    assert all(p.warnings == [] for p in predictor.predict_files(mine[:2], speaker=speaker))

    export_onnx(model_dir)
    onnx = Predictor.load(model_dir, backend="onnx")
    via_onnx = np.array([list(p.probabilities.values()) for p in onnx.predict_files(mine, speaker=speaker)])
    np.testing.assert_allclose(via_onnx, expected, atol=1e-4)


def test_a_bad_transform_fails_before_extraction(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.toml"
    text = RECIPE.format(root=tmp_path).split("[[variant]]")[0]
    recipe.write_text(text + '[transforms]\nspeaker_norm = { test_statistics = "oracle" }\n')
    with pytest.raises(RecipeError, match="test_statistics must be one of"):
        run_recipe(recipe, progress=False)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()


def test_predict_cli_enrols_or_names_a_speaker(norm_runs, capsys) -> None:
    from serkit.cli import main
    from serkit.inference.predictor import Predictor

    run = norm_runs["transductive"]
    model_dir = run / "model"
    manifest = pd.read_csv(run / "manifest.csv")
    paths = [str(run.parents[1] / "corpus" / p) for p in manifest.path]
    voice = [p for p, s in zip(paths, manifest.speaker) if s == manifest.speaker.iloc[-1]]
    enroll, inputs = voice[:5], voice[5:8]

    predictor = Predictor.load(model_dir)
    predictor.enroll("them", enroll)
    expected = [p.probabilities for p in predictor.predict_files(inputs, speaker="them")]
    assert main(["predict", str(model_dir), *inputs, "--enroll", *enroll, "--format", "json"]) == 0
    got = [row["probabilities"] for row in json.loads(capsys.readouterr().out)["predictions"]]
    for g, e in zip(got, expected):
        assert g == pytest.approx(e, abs=1e-6)

    assert main(["predict", str(model_dir), *inputs, "--speaker", "nobody"]) != 0
    assert "no statistics for this speaker" in capsys.readouterr().err
    assert main(["predict", str(model_dir), *inputs, "--speaker", str(manifest.speaker.iloc[0]), "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + len(inputs)


@pytest.mark.network
def test_service_normalises_with_a_named_speaker(norm_runs) -> None:
    pytest.importorskip("uvicorn")
    import httpx

    from serkit.inference.predictor import Predictor
    from serkit.serving import create_app
    from tests.test_service import serving

    run = norm_runs["transductive"]
    manifest = pd.read_csv(run / "manifest.csv")
    speaker = str(manifest.speaker.iloc[0])
    path = run.parents[1] / "corpus" / manifest.path.iloc[0]
    predictor = Predictor.load(run / "model")
    expected = predictor.predict_file(path, speaker=speaker).probabilities
    with serving(create_app(predictor)) as url, httpx.Client(base_url=url, timeout=30) as client:
        health = client.get("/health").json()
        assert health["speaker_norm"] is True and speaker in health["speakers"]
        body = path.read_bytes()
        answer = client.post("/predict", params={"speaker": speaker}, content=body, headers={"Content-Type": "audio/wav"})
        assert answer.status_code == 200
        assert answer.json()["probabilities"] == pytest.approx(expected, abs=1e-6)
        unknown = client.post("/predict", params={"speaker": "nobody"}, content=body, headers={"Content-Type": "audio/wav"})
        assert unknown.status_code == 422 and "unknown speaker" in unknown.json()["detail"]


def test_global_test_statistics_use_nothing_of_the_test_speaker() -> None:
    from serkit.experiment.runner import _normalised

    X, _, g = speaker_data()
    ids = [f"u{i}" for i in range(len(X))]

    class Table:
        def take(self, rows):
            return X[[int(u[1:]) for u in rows]]

    train = [u for u, s in zip(ids, g) if s != "s5"]
    test = [u for u, s in zip(ids, g) if s == "s5"]
    for mode, expected in (("global", None), ("transductive", "own")):
        norm = SpeakerNorm(test_statistics=mode)
        out = _normalised(norm, Table(), dict(zip(ids, g)), train, {"test": test}, test)
        stats = norm.global_ if expected is None else norm.speaker_statistics(X[g == "s5"])
        np.testing.assert_allclose(out["test"], norm.apply(X[g == "s5"], stats), rtol=1e-5)

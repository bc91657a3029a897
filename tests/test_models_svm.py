"""serkit.models.svm (the eGeMAPS SVM baseline) and the generic model folder format (serkit.models.io)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from serkit.data.audio import AudioSpec
from serkit.models import build_model, svm
from serkit.models.io import FORMAT_VERSION, ModelFormatError, load_model, save_model
from serkit.models.svm import SVMClassifier

log = logging.getLogger(__name__)

FAST = {"C_grid": [1.0, 10.0], "gamma_grid": ["scale"]}  # small grids keep the unit tests quick


# --------------------------------------------------------------------------- data


def speaker_blobs(
    speakers: int = 6,
    per_class: int = 8,
    classes: tuple[str, ...] = ("angry", "neutral", "sad"),
    dims: int = 6,
    separation: float = 3.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian classes with a per-speaker offset: (X, labels, speakers)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=separation, size=(len(classes), dims))
    X, y, g = [], [], []
    for s in range(speakers):
        offset = rng.normal(scale=0.5, size=dims)
        for c, label in enumerate(classes):
            X.append(centres[c] + offset + rng.normal(size=(per_class, dims)))
            y += [label] * per_class
            g += [f"spk{s}"] * per_class
    return np.concatenate(X), np.asarray(y), np.asarray(g)


def layered(X: np.ndarray, layers: int, informative: int, seed: int = 1) -> np.ndarray:
    """(N, layers, F): `X` at layer `informative`, label-free noise elsewhere."""
    rng = np.random.default_rng(seed)
    out = rng.normal(size=(len(X), layers, X.shape[1]))
    out[:, informative, :] = X
    return out


@pytest.fixture(scope="session")
def synth_egemaps(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """eGeMAPS functionals of serkit's synthetic corpus (6 speakers), extracted once."""
    pytest.importorskip("opensmile")
    from serkit.data import audio
    from serkit.data import synth
    from serkit.features import build_extractor

    root = tmp_path_factory.mktemp("synth")
    table = pd.read_csv(synth.write_corpus(root, speakers=6, per_emotion=6, voice="source-filter", seed=0))
    extractor = build_extractor({"kind": "opensmile"})
    rate = extractor.spec.sampling_rate
    table["x"] = [extractor.extract(audio.load(root / p, extractor.spec), rate)["functionals"] for p in table["path"]]
    return table


# --------------------------------------------------------------------------- learning


def test_learns_speaker_independently_on_synthetic_speech(synth_egemaps: pd.DataFrame) -> None:
    """Train on 4 speakers, test on the 2 others (the corpus gives about 0.96 UA; chance 0.25)."""
    table = synth_egemaps
    X = np.stack(table["x"])
    assert X.shape[1] == 88
    train = table["speaker"].isin(sorted(table["speaker"].unique())[:4]).to_numpy()
    model = build_model("svm").fit(X[train], table["label"][train], groups=table["speaker"][train])
    ua = balanced_accuracy_score(table["label"][~train], model.predict(X[~train]))
    log.info("synthetic corpus, 2 held-out speakers: UA %.3f with %s", ua, model.best_params_)
    assert model.inner_cv_["grouped"] and model.inner_cv_["n_splits"] == 4  # 4 training speakers < 5 folds
    assert ua >= 0.9


class _SpyGridSearch(svm.GridSearchCV):
    """Records the folds and the rows every grid search is given."""

    seen: list[tuple[list, np.ndarray]] = []

    def fit(self, X, y=None, **params):  # noqa: ANN001 - scikit-learn's signature
        _SpyGridSearch.seen.append((list(self.cv), np.array(X, copy=True)))
        return super().fit(X, y, **params)


def test_inner_cv_is_grouped_by_speaker_and_sees_training_rows_only(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y, g = speaker_blobs(speakers=6)
    train = np.isin(g, ["spk0", "spk1", "spk2", "spk3", "spk4"])
    _SpyGridSearch.seen = []
    monkeypatch.setattr(svm, "GridSearchCV", _SpyGridSearch)
    model = SVMClassifier(**FAST, inner_folds=5).fit(X[train], y[train], groups=g[train])

    ((splits, rows),) = _SpyGridSearch.seen
    np.testing.assert_array_equal(rows, X[train])  # the held-out speaker never reaches the search
    calibration_splits = model.pipeline_.named_steps["svm"].cv
    for folds in (splits, calibration_splits):
        assert len(folds) == 5
        for fit_idx, val_idx in folds:
            assert not set(g[train][fit_idx]) & set(g[train][val_idx])
        assert sorted(np.concatenate([val for _, val in folds])) == list(range(train.sum()))
    assert model.inner_cv_ == {"splitter": "StratifiedGroupKFold", "n_splits": 5, "grouped": True, "n_groups": 5}


def test_inner_cv_fallbacks_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    X, y, g = speaker_blobs(speakers=3, per_class=6)
    with caplog.at_level(logging.WARNING, logger="serkit.models.svm"):
        few = SVMClassifier(**FAST, inner_folds=5).fit(X, y, groups=g)
    assert few.inner_cv_["grouped"] and few.inner_cv_["n_splits"] == 3
    assert "3 speaker-grouped folds, not 5" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="serkit.models.svm"):
        none = SVMClassifier(**FAST, inner_folds=3).fit(X, y)
    assert none.inner_cv_ == {"splitter": "StratifiedKFold", "n_splits": 3, "grouped": False}
    assert "speaker-DEPENDENT" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="serkit.models.svm"):
        one = SVMClassifier(**FAST, inner_folds=3).fit(X, y, groups=np.full(len(y), "solo"))
    assert one.inner_cv_["grouped"] is False and "single speaker" in caplog.text


def test_layer_auto_picks_the_informative_layer() -> None:
    X, y, g = speaker_blobs(speakers=4, per_class=6, separation=2.0)
    stacked = layered(X, layers=4, informative=2)
    model = SVMClassifier(C_grid=[1.0], gamma_grid=["scale"], layer="auto", inner_folds=4).fit(stacked, y, groups=g)
    assert model.best_params_["layer"] == 2 and model.layer_ == 2
    by_layer = {row["layer"]: row["mean_score"] for row in model.cv_results_}
    assert by_layer[2] > 0.9 and max(v for k, v in by_layer.items() if k != 2) < 0.7
    assert model.predict_proba(stacked).shape == (len(y), 3)
    with pytest.raises(ValueError, match=r"expected features of shape \(N, 4, 6\)"):
        model.predict_proba(stacked[:, :3])

    fixed = SVMClassifier(**FAST, layer=-2, inner_folds=4).fit(stacked, y, groups=g)
    assert fixed.layer_ == 2
    with pytest.raises(ValueError, match="set layer"):
        SVMClassifier(**FAST).fit(stacked, y, groups=g)
    with pytest.raises(ValueError, match="out of range"):
        SVMClassifier(**FAST, layer=4).fit(stacked, y, groups=g)


def test_a_single_hidden_state_needs_no_layer() -> None:
    """(N, 1, F), as CTranslate2's Whisper gives: the one row is used, as if (N, F) were given."""
    X, y, g = speaker_blobs(speakers=4, per_class=6, separation=2.0)
    single = SVMClassifier(**FAST, inner_folds=4).fit(X[:, None, :], y, groups=g)
    flat = SVMClassifier(**FAST, inner_folds=4).fit(X, y, groups=g)
    assert single.layer_ == 0 and single.n_layers_ == 1
    np.testing.assert_allclose(single.predict_proba(X[:, None, :]), flat.predict_proba(X))


def test_overfits_a_tiny_set_with_proper_probabilities() -> None:
    X, y, g = speaker_blobs(speakers=2, per_class=3, classes=("sad", "angry", "happy"), dims=4, separation=2.0)
    model = SVMClassifier(C_grid=[100.0], gamma_grid=[0.5], inner_folds=2).fit(X, y, groups=g)
    assert list(model.classes_) == ["angry", "happy", "sad"] and model.classes_.dtype.kind == "U"
    assert list(model.predict(X)) == list(y)
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], y)  # columns follow classes_


def test_fit_is_deterministic_and_clonable() -> None:
    X, y, g = speaker_blobs(speakers=4, per_class=5, separation=1.0)
    first = SVMClassifier(**FAST, inner_folds=4, seed=3).fit(X, y, groups=g)
    again = clone(first).fit(X, y, groups=g)
    np.testing.assert_array_equal(first.predict_proba(X), again.predict_proba(X))
    assert first.cv_results_ == again.cv_results_


def test_inputs_are_cast_and_checked() -> None:
    X, y, g = speaker_blobs(speakers=3, per_class=4)
    model = SVMClassifier(**FAST, inner_folds=3).fit(X.astype(np.float16), y, groups=g)
    assert model.predict_proba(X.astype(np.float16)).dtype == np.float64
    bad = X.copy()
    bad[0, 1] = np.nan
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf in 2 of 6 feature column"):
        SVMClassifier(**FAST).fit(bad, y, groups=g)
    with pytest.raises(ValueError, match="rows"):
        SVMClassifier(**FAST).fit(X, y[:-1], groups=g)
    with pytest.raises(ValueError, match="at least 2 classes"):
        SVMClassifier(**FAST).fit(X, np.full(len(y), "sad"))


def test_build_model_and_hyperparameter_checks() -> None:
    model = build_model("svm", C_grid=[1])
    assert isinstance(model, SVMClassifier) and model.C_grid == [1] and model.input_kind == "functionals"
    assert build_model("svm", input_kind="pooled").input_kind == "pooled"
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['bogus'\]; allowed: \[.*'C_grid'"):
        build_model("svm", bogus=1)
    X, y, g = speaker_blobs(speakers=3, per_class=4)
    for bad in ({"C_grid": []}, {"gamma_grid": ["wide"]}, {"inner_folds": 1}, {"class_weight": "x"},
                {"layer": "top"}, {"calibration": "isotonic"}, {"input_kind": "frames"}, {"scoring": "nope"}):
        with pytest.raises(ValueError):
            SVMClassifier(**bad).fit(X, y, groups=g)


def test_gamma_relative_to_scale_is_scikit_learns_scale_times_the_factor():
    X, y, g = speaker_blobs(speakers=4, per_class=6)
    X = X * np.linspace(0.5, 3.0, X.shape[1])  # unequal column scales: standardisation matters
    for bad in ("scale*", "scale*-1", "scale*x", "scale*inf", "auto*2"):
        with pytest.raises(ValueError, match="scale\\*F"):
            SVMClassifier(gamma_grid=[bad]).check_params()
    relative = SVMClassifier(C_grid=[1.0], gamma_grid=["scale*1"], inner_folds=2).fit(X, y, groups=g)
    plain = SVMClassifier(C_grid=[1.0], gamma_grid=["scale"], inner_folds=2).fit(X, y, groups=g)
    scaled = (X - X.mean(0)) / X.std(0)
    assert relative.best_params_["gamma"] == pytest.approx(1.0 / (X.shape[1] * scaled.var()))
    np.testing.assert_allclose(relative.predict_proba(X), plain.predict_proba(X), atol=1e-9)
    doubled = SVMClassifier(C_grid=[1.0], gamma_grid=["scale*2"], inner_folds=2).fit(X, y, groups=g)
    assert doubled.best_params_["gamma"] == pytest.approx(2 * relative.best_params_["gamma"])


def test_the_default_gamma_grid_spans_one_eighth_to_twice_scale():
    model = SVMClassifier()
    model.check_params()
    factors = [svm._scale_factor(g) or 1.0 for g in model.gamma_grid]
    assert factors == [0.125, 0.25, 0.5, 1.0, 2.0]


# --------------------------------------------------------------------------- save / load


@pytest.fixture(scope="module")
def fitted() -> tuple[SVMClassifier, np.ndarray]:
    X, y, g = speaker_blobs(speakers=4, per_class=5)
    return SVMClassifier(**FAST, inner_folds=4, class_weight="balanced").fit(X, y, groups=g), X


def _save(model: SVMClassifier, folder: Path) -> Path:
    return save_model(
        model, folder, audio_spec=AudioSpec(duration=None), features={"kind": "opensmile"}, fingerprint="opensmile-abc"
    )


def test_save_load_round_trip(fitted: tuple[SVMClassifier, np.ndarray], tmp_path: Path) -> None:
    model, X = fitted
    folder = _save(model, tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["estimator.skops", "model.json"]  # no pickle anywhere
    meta = json.loads((folder / "model.json").read_text())
    expected = {"format_version", "model", "params", "labels", "audio_spec", "features", "fingerprint", "versions"}
    assert expected <= set(meta)
    assert meta["model"] == "svm" and meta["input_kind"] == "functionals" and meta["labels"] == list(model.classes_)
    assert meta["state"]["best_params"] == model.best_params_ and "scikit-learn" in meta["versions"]

    loaded = load_model(folder)
    np.testing.assert_array_equal(loaded.model.predict_proba(X), model.predict_proba(X))
    assert loaded.model.get_params() == json.loads(json.dumps(model.get_params()))
    assert loaded.model.best_params_ == model.best_params_
    assert loaded.audio_spec == AudioSpec(duration=None) and loaded.fingerprint == "opensmile-abc"


_RAN: list[str] = []


class Evil(TransformerMixin, BaseEstimator):
    """Stands for code an attacker wants run: records any call that reaches it."""

    def __setstate__(self, state: dict) -> None:
        _RAN.append("setstate")
        self.__dict__.update(state)

    def fit(self, X, y=None):  # noqa: ANN001
        return self

    def transform(self, X):  # noqa: ANN001
        _RAN.append("transform")
        return X


def test_tampered_estimator_is_refused(fitted: tuple[SVMClassifier, np.ndarray], tmp_path: Path) -> None:
    import skops.io as sio

    model, _ = fitted
    folder = _save(model, tmp_path / "model")
    target = folder / "estimator.skops"

    sio.dump(Pipeline([("evil", Evil()), ("svm", SVC())]), target)
    with pytest.raises(ModelFormatError, match=r"untrusted type\(s\) \['tests.test_models_svm.Evil'\]") as error:
        load_model(folder)
    assert str(folder) in str(error.value) and not _RAN

    # skops trusts scikit-learn's estimators by default; as serkit imports it, only ALLOWED_TYPES pass
    sio.dump(LogisticRegression(), target)
    with pytest.raises(ModelFormatError, match=r"untrusted type\(s\) \['sklearn.linear_model._logistic.LogisticRegression'\]"):
        load_model(folder)

    sio.dump(Pipeline([("scale", StandardScaler()), ("svm", SVC())]), target)  # allowed types, not this model
    with pytest.raises(ModelFormatError, match="not a serkit SVM pipeline"):
        load_model(folder)

    target.write_bytes(b"not a zip file")
    with pytest.raises(ModelFormatError, match="not a readable skops file"):
        load_model(folder)

    target.unlink()
    with pytest.raises(ModelFormatError, match="missing"):
        load_model(folder)


# --------------------------------------------------------------------------- serkit.models.io


def _rewrite(folder: Path, **changes: object) -> None:
    meta = json.loads((folder / "model.json").read_text())
    meta.update(changes)
    (folder / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda f: (f / "model.json").unlink(), "no model.json"),
        (lambda f: (f / "model.json").write_text("{not json"), "not valid JSON"),
        (lambda f: (f / "model.json").write_text("[1, 2]"), "expected a JSON object"),
        (lambda f: _rewrite(f, format_version=FORMAT_VERSION + 1), "upgrade serkit"),
        (lambda f: _rewrite(f, model="os.system"), "unknown model 'os.system'"),
        (lambda f: _rewrite(f, model="evil"), "unknown model 'evil'"),
        (
            lambda f: _rewrite(f, params={"C_grid": [1.0], "__class__": "os.system"}),
            r"unknown hyper-parameter\(s\) \['__class__'\]",
        ),
        (lambda f: _rewrite(f, audio_spec={"sampling_rate": -1}), "bad audio_spec"),
    ],
    ids=["no-json", "bad-json", "not-object", "newer", "os-system", "evil", "unknown-param", "bad-spec"],
)
def test_load_model_rejects_bad_folders(fitted, tmp_path: Path, tamper, reason: str) -> None:  # noqa: ANN001
    folder = _save(fitted[0], tmp_path / "model")
    tamper(folder)
    with pytest.raises(ModelFormatError, match=reason) as error:
        load_model(folder)
    assert str(folder) in str(error.value)


def test_save_model_needs_a_fitted_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not fitted"):
        save_model(SVMClassifier(), tmp_path / "model")
    assert not any(tmp_path.iterdir())


def test_save_model_replaces_a_folder_atomically(fitted: tuple[SVMClassifier, np.ndarray], tmp_path: Path) -> None:
    folder = _save(fitted[0], tmp_path / "model")
    (folder / "stale.txt").write_text("from the old model")
    _save(fitted[0], folder)
    assert sorted(p.name for p in folder.iterdir()) == ["estimator.skops", "model.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or old folders left


# --------------------------------------------------------------------------- real speech


@pytest.fixture(scope="session")
def emovo_egemaps(shared_data: Path) -> pd.DataFrame:
    """eGeMAPS functionals of all 588 EMOVO clips (about 35 s on 1 core; extracted once per session)."""
    pytest.importorskip("opensmile")
    from serkit.data.datasets import prepare

    if not (shared_data / "emovo").is_dir():
        pytest.skip("EMOVO not in the shared data")
    manifest = prepare("emovo", shared_data / "emovo")
    started = time.perf_counter()
    paths = [str(p) for p in manifest["path"]]
    halves = [paths[: len(paths) // 2], paths[len(paths) // 2 :]]
    # openSMILE runs on one core: two processes halve the wait on a 2-core machine
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        manifest["x"] = [row for part in pool.map(_egemaps_of, halves) for row in part]
    log.info("EMOVO eGeMAPS: %d clips in %.1f s", len(manifest), time.perf_counter() - started)
    return manifest


def _egemaps_of(paths: list[str]) -> list[np.ndarray]:
    """eGeMAPS functionals of each file (run in a worker process)."""
    from serkit.data import audio
    from serkit.features import build_extractor

    extractor = build_extractor({"kind": "opensmile"})
    rate = extractor.spec.sampling_rate
    return [extractor.extract(audio.load(p, extractor.spec), rate)["functionals"] for p in paths]


@pytest.mark.slow
@pytest.mark.realdata
def test_emovo_leave_one_speaker_out(emovo_egemaps: pd.DataFrame, record_property) -> None:  # noqa: ANN001
    """eGeMAPS + SVM across speakers on EMOVO: about 0.35 UA in the literature (chance 1/7)."""
    table = emovo_egemaps
    assert len(table) == 588 and table["label"].nunique() == 7
    X, y, g = np.stack(table["x"]), table["label"].to_numpy(), table["speaker"].to_numpy()
    per_fold = {}
    for speaker in sorted(set(g)):
        test = g == speaker
        model = build_model("svm").fit(X[~test], y[~test], groups=g[~test])
        per_fold[speaker] = float(balanced_accuracy_score(y[test], model.predict(X[test])))
    mean = float(np.mean(list(per_fold.values())))
    record_property("emovo_loso_ua", {"per_fold": per_fold, "mean": mean})
    print(f"EMOVO LOSO UA per speaker {per_fold}; mean {mean:.3f}")  # shown with -s / -rP
    assert len(per_fold) == 6 and mean > 0.25


@pytest.mark.slow
@pytest.mark.realdata
def test_emovo_speaker_normalisation_lifts_unseen_speakers(emovo_egemaps: pd.DataFrame) -> None:
    """Each speaker z-scored with their own statistics (transductive, label-free): 0.321 -> 0.447 UA.

    The recipe variant `egemaps_svm_speaker_norm` of recipes/emovo_baselines.toml measured 0.447
    (folds 0.245-0.663; 0.435 with the earlier gamma grid); the bound leaves room for the SVM's
    inner-CV draw.
    """
    from serkit.models.transforms import SpeakerNorm

    table = emovo_egemaps
    X, y, g = np.stack(table["x"]), table["label"].to_numpy(), table["speaker"].to_numpy().astype(str)
    per_fold = []
    for speaker in sorted(set(g)):
        test = g == speaker
        norm = SpeakerNorm().fit(X[~test], g[~test])
        own = {speaker: norm.speaker_statistics(X[test])}
        model = build_model("svm").fit(norm.transform(X[~test], g[~test]), y[~test], groups=g[~test])
        per_fold.append(balanced_accuracy_score(y[test], model.predict(norm.transform(X[test], g[test], own))))
    assert float(np.mean(per_fold)) >= 0.42, per_fold

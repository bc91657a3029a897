"""Prediction (serkit.inference.predictor and its modules), ONNX export (serkit.inference.export) and `serkit predict` / `serkit export`.

Models are trained once per session, without the experiment runner, on a small synthetic
corpus: an SVM on openSMILE functionals, a CNN and an attention-pooled head on MFCC frames, an
EfficientNet on log-mel images, and (for the encoder export) a pooled head on the features of
a tiny random wav2vec 2.0 model saved to disk.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serkit.data.audio import AudioError, AudioSpec, load, read
from serkit.cli import main
from serkit.inference.export import CLASSIFIER_FILE, EXPORT_DIR, RECORD_FILE, OnnxClassifier, export_onnx, read_export_record
from serkit.features import build_extractor
from serkit.inference.formatting import format_predictions
from serkit.inference.predictor import Predictor
from serkit.inference.results import Prediction
from serkit.inference.windows import segment_bounds
from serkit.models import build_model
from serkit.models.io import ModelFormatError, load_model, save_model

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

SR = 16000
#: torch / scikit-learn vs onnxruntime probabilities.
ONNX_TOLERANCE = 1e-4
TORCH_FAST = {"max_epochs": 2, "accelerator": "cpu", "batch_size": 8, "seed": 0}
MODELS = ("svm", "cnn", "pooled", "efficientnet")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """48 synthetic utterances: 4 speakers x 4 emotions x 3, with absolute paths."""
    from serkit.data.synth import write_corpus

    root = tmp_path_factory.mktemp("corpus")
    meta = pd.read_csv(write_corpus(root, speakers=4, per_emotion=3, voice="source-filter"))
    meta["file"] = [root / p for p in meta["path"]]
    return root, meta


def _features(extractor, output: str, files) -> np.ndarray:
    """`output` of every file, extracted by hand (no cache, no pipeline)."""
    extractor.setup(None)
    rate = extractor.spec.sampling_rate
    return np.stack([extractor.extract(load(f, extractor.spec), rate)[output] for f in files])


def _train(extractor, X: np.ndarray, name: str, params: dict, meta: pd.DataFrame, dest: Path) -> Path:
    """Fit `name` on `X`, save it with the extractor's identity, as the experiment runner would."""
    model = build_model(name, **params).fit(X, meta["label"].to_numpy(), meta["speaker"].to_numpy())
    return save_model(model, dest, audio_spec=extractor.spec, features=extractor.identity(), fingerprint=extractor.fingerprint())


@pytest.fixture(scope="session")
def models(corpus, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model folders by name, each trained on its own features."""
    _, meta = corpus
    root = tmp_path_factory.mktemp("models")
    files = meta["file"]
    smile = build_extractor({"kind": "opensmile"}, AudioSpec(duration=None))
    mfcc = build_extractor({"kind": "mfcc", "outputs": ["frames"]}, AudioSpec(duration=3.0))
    logmel = build_extractor({"kind": "logmel", "outputs": ["image"], "image_size": [32, 32]}, AudioSpec(duration=3.0))
    frames = _features(mfcc, "frames", files)
    svm = {"C_grid": [1.0, 10.0], "gamma_grid": ["scale"], "inner_folds": 3}
    cnn = {"depth": 3, "input_mode": "resize", "input_size": 32, **TORCH_FAST}
    pooled = {"pooling": "attention", "hidden": 32, "attention_hidden": 16, **TORCH_FAST}
    # trained with augmentation and a schedule: prediction and export must not see either
    efficientnet = {**TORCH_FAST, "augment": True, "lr_schedule": "cosine"}
    return {
        "svm": _train(smile, _features(smile, "functionals", files), "svm", svm, meta, root / "svm"),
        "cnn": _train(mfcc, frames, "cnn", cnn, meta, root / "cnn"),
        "pooled": _train(mfcc, frames, "pooled", pooled, meta, root / "pooled"),
        "efficientnet": _train(logmel, _features(logmel, "image", files), "efficientnet", efficientnet, meta, root / "efficientnet"),
    }


@pytest.fixture(scope="session")
def predictors(models) -> dict[str, Predictor]:
    """The saved models themselves (explicitly: once `exported` ran, "auto" would pick the export)."""
    return {name: Predictor.load(folder, backend="torch") for name, folder in models.items()}


@pytest.fixture(scope="session")
def exported(models) -> dict[str, list[Path]]:
    """Every model exported to ONNX once."""
    return {name: export_onnx(folder) for name, folder in models.items()}


def _probs(prediction: Prediction) -> np.ndarray:
    return np.asarray(list(prediction.probabilities.values()))


def _native(path: Path) -> np.ndarray:
    """A file at 16 kHz mono, native length."""
    return load(path, AudioSpec(duration=None))


# --------------------------------------------------------------------------- loading and single inputs


@pytest.mark.parametrize("name", MODELS)
def test_load_rebuilds_features_and_matches_manual_prediction(name, models, predictors, corpus):
    _, meta = corpus
    saved = load_model(models[name])
    predictor = predictors[name]
    assert predictor.labels == saved.labels
    assert json.loads(json.dumps(predictor.extractor.identity())) == saved.features
    assert predictor.extractor.fingerprint() == saved.fingerprint
    assert predictor.audio_spec == saved.audio_spec
    assert predictor.input_kind == saved.meta["input_kind"]
    files = list(meta["file"][[0, 4, 17, 30]])  # WAV and FLAC, 16 kHz mono and 44.1 kHz stereo
    extractor = predictor.extractor
    by_hand = saved.model.predict_proba(
        np.stack([extractor.extract(load(f, extractor.spec), extractor.spec.sampling_rate)[predictor.input_kind] for f in files])
    )
    for path, expected in zip(files, by_hand):
        prediction = predictor.predict_file(path)
        assert prediction.error is None and prediction.segments is None
        assert prediction.source == str(path)
        np.testing.assert_allclose(_probs(prediction), expected, atol=1e-6)
        assert prediction.label == saved.labels[int(np.argmax(expected))]
        assert prediction.duration == pytest.approx(len(_native(path)) / SR, abs=1e-6)


def test_predict_signal_equals_predict_file_at_any_rate(predictors, corpus):
    _, meta = corpus
    predictor = predictors["cnn"]
    for path in meta["file"][[3, 4]]:  # one 16 kHz mono, one 44.1 kHz stereo
        signal, rate = read(path)
        from_file = predictor.predict_file(path)
        from_signal = predictor.predict_signal(signal, rate, name="x")
        assert from_signal.source == "x"
        np.testing.assert_allclose(_probs(from_signal), _probs(from_file), atol=1e-7)
        assert from_signal.label == from_file.label


def test_bytes_and_file_object_sources(predictors, corpus):
    _, meta = corpus
    predictor = predictors["svm"]
    path = meta["file"][5]
    expected = _probs(predictor.predict_file(path))
    data = Path(path).read_bytes()
    from_bytes = predictor.predict_file(data)
    assert from_bytes.source == "<bytes>"
    np.testing.assert_allclose(_probs(from_bytes), expected, atol=1e-9)
    with open(path, "rb") as handle:
        from_handle = predictor.predict_file(handle)
    assert from_handle.source == str(path)
    np.testing.assert_allclose(_probs(from_handle), expected, atol=1e-9)
    named = predictor.predict_file(io.BytesIO(data), name="upload.wav")
    assert named.source == "upload.wav"
    np.testing.assert_allclose(_probs(named), expected, atol=1e-9)


def test_bad_audio_raises_audio_error_naming_the_input(predictors, tmp_path):
    predictor = predictors["svm"]
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00" + bytes(range(200)))
    with pytest.raises(AudioError, match="corrupt.wav"):
        predictor.predict_file(corrupt)
    with pytest.raises(AudioError, match="upload"):
        predictor.predict_file(b"not audio at all", name="upload")
    with pytest.raises(AudioError, match="NaN"):
        predictor.predict_signal(np.full(SR, np.nan, dtype=np.float32), SR)


def test_predict_files_marks_unreadable_files_and_goes_on(predictors, corpus, tmp_path):
    _, meta = corpus
    predictor = predictors["cnn"]
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(300))
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    good = list(meta["file"][:3])
    paths = [good[0], corrupt, good[1], tmp_path / "missing.wav", empty, good[2]]
    results = predictor.predict_files(paths)
    assert [r.source for r in results] == [str(p) for p in paths]
    for index in (1, 3, 4):
        assert results[index].error and results[index].label is None and results[index].probabilities == {}
    assert "missing.wav" in results[3].error and "not found" in results[3].error
    assert "empty" in results[4].error
    for index, path in zip((0, 2, 5), good):
        assert results[index].error is None
        np.testing.assert_allclose(_probs(results[index]), _probs(predictor.predict_file(path)), atol=1e-6)


def test_load_refuses_models_without_features(corpus, tmp_path):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=40, centers=2, n_features=4, random_state=0)
    model = build_model("svm", C_grid=[1.0], gamma_grid=["scale"], inner_folds=2).fit(X, np.array(["a", "b"])[y])
    folder = save_model(model, tmp_path / "bare")
    with pytest.raises(ModelFormatError, match="feature extractor"):
        Predictor.load(folder)
    with pytest.raises(ModelFormatError, match="not a serkit model folder"):
        Predictor.load(tmp_path / "nothing")


def test_load_checks_its_settings(models):
    with pytest.raises(ValueError, match="backend"):
        Predictor.load(models["svm"], backend="tensorflow")
    with pytest.raises(ValueError, match="window"):
        Predictor.load(models["svm"], window=0)
    with pytest.raises(ValueError, match="hop"):
        Predictor.load(models["svm"], window=2.0, hop=3.0)


def test_frame_maps_are_fitted_to_the_trained_frame_count(models, corpus, tmp_path):
    """A model saved by the experiment runner records extra.input_frames; native-length maps are padded/cut to it."""
    _, meta = corpus
    frames = build_extractor({"kind": "mfcc", "outputs": ["frames"]}, AudioSpec(duration=None))
    files = list(meta["file"][:8])
    maps = [frames.extract(_native(f), SR)["frames"] for f in files]
    target = 200
    fitted = np.stack([np.pad(m, ((0, max(0, target - len(m))), (0, 0)))[:target] for m in maps])
    model = build_model("cnn", depth=2, input_size=16, **TORCH_FAST).fit(fitted, meta["label"][:8].to_numpy())
    folder = save_model(model, tmp_path / "runner", audio_spec=frames.spec, features=frames.identity(),
                        fingerprint=frames.fingerprint(), extra={"input_frames": target})
    predictor = Predictor.load(folder, window=30.0)
    results = predictor.predict_files(files)
    np.testing.assert_allclose(np.stack([_probs(r) for r in results]), model.predict_proba(fitted), atol=1e-6)


# --------------------------------------------------------------------------- long recordings


def test_segment_bounds():
    assert segment_bounds(100, 200, 50) == [(0, 100)]
    assert segment_bounds(200, 200, 50) == [(0, 200)]
    assert segment_bounds(300, 200, 50) == [(0, 200), (50, 250), (100, 300)]
    assert segment_bounds(320, 200, 100) == [(0, 200), (100, 300), (120, 320)]  # last aligned to the end
    assert segment_bounds(400, 100, 100) == [(0, 100), (100, 200), (200, 300), (300, 400)]


def _twenty_seconds(meta: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
    """Four utterances of speaker spk01 in four emotions, each tiled to 5 s, concatenated."""
    emotions = ["angry", "sad", "happy", "neutral"]
    pieces = []
    for emotion in emotions:
        row = meta[(meta["speaker"] == "spk01") & (meta["label"] == emotion)].iloc[0]
        pieces.append(np.resize(_native(row["file"]), 5 * SR))  # np.resize repeats the clip
    return np.concatenate(pieces), pieces, emotions


def test_segments_follow_the_emotions_of_a_long_recording(models, corpus):
    _, meta = corpus
    recording, pieces, emotions = _twenty_seconds(meta)
    predictor = Predictor.load(models["svm"], window=5.0, hop=5.0)
    result = predictor.predict_signal(recording, SR, name="long")
    assert result.duration == pytest.approx(20.0)
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 5.0), (5.0, 10.0), (10.0, 15.0), (15.0, 20.0)]
    for segment, piece in zip(result.segments, pieces):
        alone = predictor.predict_signal(piece, SR)
        np.testing.assert_allclose(list(segment.probabilities.values()), _probs(alone), atol=1e-9)
        assert segment.label == alone.label
    means = np.mean([list(s.probabilities.values()) for s in result.segments], axis=0)
    np.testing.assert_allclose(_probs(result), means, atol=1e-12)
    assert result.label == predictor.labels[int(np.argmax(means))]
    hits = sum(s.label == e for s, e in zip(result.segments, emotions))
    assert hits >= 2, [s.label for s in result.segments]


def test_default_windows_of_a_long_recording(predictors, corpus):
    _, meta = corpus
    recording, _, _ = _twenty_seconds(meta)
    predictor = predictors["cnn"]  # window 7 s, hop 3.5 s; the model's spec cuts each window to 3 s
    result = predictor.predict_signal(recording, SR)  # longer than the window: windowed without asking
    starts = [0.0, 3.5, 7.0, 10.5, 13.0]
    assert [(s.start, s.end) for s in result.segments] == [(t, t + 7.0) for t in starts]
    np.testing.assert_allclose(_probs(result), np.mean([list(s.probabilities.values()) for s in result.segments], axis=0))
    first = predictor.predict_signal(recording[: 7 * SR], SR)
    np.testing.assert_allclose(list(result.segments[0].probabilities.values()), _probs(first), atol=1e-6)


def test_short_recordings_are_one_segment_when_asked(predictors, corpus):
    _, meta = corpus
    predictor = predictors["cnn"]
    path = meta["file"][0]
    plain = predictor.predict_file(path)
    windowed = predictor.predict_file(path, segments=True)
    assert plain.segments is None
    assert len(windowed.segments) == 1
    assert (windowed.segments[0].start, windowed.segments[0].end) == (0.0, pytest.approx(plain.duration, abs=1e-6))
    np.testing.assert_allclose(_probs(windowed), _probs(plain), atol=1e-9)


# --------------------------------------------------------------------------- batches


def test_predict_signals_batch_equals_one_by_one(predictors, corpus, monkeypatch):
    _, meta = corpus
    predictor = predictors["cnn"]
    recording, _, _ = _twenty_seconds(meta)
    signals = [read(f) for f in meta["file"][[0, 4, 9, 22]]] + [(recording, SR)]
    alone = [predictor.predict_signal(s, r) for s, r in signals]
    calls = {"extract": 0, "model": 0}
    extract, predict = predictor.extractor.extract_batch, predictor.model.predict_proba

    def count(key, function):
        def wrapper(*args, **kwargs):
            calls[key] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(predictor.extractor, "extract_batch", count("extract", extract))
    monkeypatch.setattr(predictor.model, "predict_proba", count("model", predict))
    batch = predictor.predict_signals(signals + [(np.full(100, np.nan, dtype=np.float32), SR)])
    assert calls == {"extract": 1, "model": 1}  # 4 clips + 5 windows in one call each
    for one, together in zip(alone, batch):
        np.testing.assert_allclose(_probs(together), _probs(one), atol=1e-6)
        assert together.label == one.label
    assert len(batch[4].segments) == 5
    assert batch[5].error and "NaN" in batch[5].error and batch[5].label is None


def test_a_clip_the_extractor_rejects_fails_alone(predictors, corpus):
    _, meta = corpus
    predictor = predictors["svm"]
    good = read(meta["file"][1])
    results = predictor.predict_signals([good, (np.full(80, 0.1, dtype=np.float32), SR)], names=["good", "tiny"])
    assert results[0].error is None
    np.testing.assert_allclose(_probs(results[0]), _probs(predictor.predict_file(meta["file"][1])), atol=1e-9)
    assert results[1].source == "tiny" and "too short" in results[1].error


def test_prediction_to_dict_is_json(predictors, corpus):
    _, meta = corpus
    prediction = predictors["svm"].predict_file(meta["file"][0], segments=True)
    data = json.loads(json.dumps(prediction.to_dict()))
    assert set(data) == {"source", "label", "probabilities", "duration", "segments", "error", "warnings"}
    assert data["segments"][0]["label"] == prediction.segments[0].label
    assert Prediction.failed("x", "boom").to_dict()["error"] == "boom"


# --------------------------------------------------------------------------- ONNX


@pytest.mark.parametrize("name", MODELS)
def test_onnx_backend_matches_torch(name, models, predictors, exported, corpus):
    _, meta = corpus
    folder = models[name]
    assert exported[name] == [folder / EXPORT_DIR / CLASSIFIER_FILE, folder / EXPORT_DIR / RECORD_FILE]
    record = read_export_record(folder)
    saved = load_model(folder)
    assert record["fingerprint"] == saved.fingerprint and record["labels"] == saved.labels
    assert record["classifier"]["max_abs_diff"] <= ONNX_TOLERANCE
    onnx_predictor = Predictor.load(folder, backend="onnx")
    assert isinstance(onnx_predictor.model, OnnxClassifier)
    files = list(meta["file"][::6])
    torch_results = predictors[name].predict_files(files)
    onnx_results = onnx_predictor.predict_files(files)
    difference = max(np.abs(_probs(a) - _probs(b)).max() for a, b in zip(torch_results, onnx_results))
    assert difference <= ONNX_TOLERANCE, difference
    assert [r.label for r in onnx_results] == [r.label for r in torch_results]


def test_onnx_backend_refuses_missing_or_stale_exports(models, exported, tmp_path):
    import shutil

    copy = Path(shutil.copytree(models["cnn"], tmp_path / "cnn"))
    record_path = copy / EXPORT_DIR / RECORD_FILE
    record = json.loads(record_path.read_text())
    record["fingerprint"] = "mfcc-0000000000000000"
    record_path.write_text(json.dumps(record))
    with pytest.raises(ModelFormatError, match="another version"):
        Predictor.load(copy, backend="onnx")
    shutil.rmtree(copy / EXPORT_DIR)
    with pytest.raises(ModelFormatError, match="serkit export"):
        Predictor.load(copy, backend="onnx")


def test_auto_backend_runs_the_export_only_when_it_was_made_from_these_model_files(models, exported, tmp_path, monkeypatch,
                                                                                     caplog):
    import shutil

    from serkit.inference import loading

    copy = Path(shutil.copytree(models["cnn"], tmp_path / "cnn"))
    chosen = Predictor.load(copy)
    assert chosen.backend == "onnx" and isinstance(chosen.model, OnnxClassifier)
    # onnxruntime missing: the saved model
    real_find_spec = loading.importlib.util.find_spec
    monkeypatch.setattr(loading.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
    assert Predictor.load(copy).backend == "torch"
    monkeypatch.undo()
    # the model saved again into its folder (same features and labels, other files): the export is stale
    meta_path = copy / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["created"] = "2000-01-01T00:00:00+0000"
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    info = loading._model_info(copy, meta)
    assert loading.resolve_backend(copy, info) == (
        "torch", "the ONNX export was made from other model files (the model was saved again after it)")
    caplog.clear()
    with caplog.at_level("INFO", logger="serkit.inference.loading"):
        stale = Predictor.load(copy)
    assert stale.backend == "torch" and not isinstance(stale.model, OnnxClassifier)
    [record] = [r for r in caplog.records if r.name == "serkit.inference.loading"]
    assert record.levelname == "WARNING" and "saved again" in record.getMessage()  # the user expected the export
    with pytest.raises(ModelFormatError, match="saved again"):
        Predictor.load(copy, backend="onnx")
    # no export at all: the saved model, said at INFO only
    shutil.rmtree(copy / EXPORT_DIR)
    assert loading.resolve_backend(copy, info)[0] == "torch"
    caplog.clear()
    with caplog.at_level("INFO", logger="serkit.inference.loading"):
        assert Predictor.load(copy).backend == "torch"
    assert [r.levelname for r in caplog.records if r.name == "serkit.inference.loading"] == ["INFO"]


def test_encoder_export_needs_ssl_features(models):
    with pytest.raises(ValueError, match="SSL"):
        export_onnx(models["svm"], encoder=True)


def _svm_blobs(classes: int, layers: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.array(["angry", "happy", "neutral", "sad"][:classes])
    y = np.repeat(labels, 12)
    speakers = np.tile(np.repeat(["a", "b", "c"], 4), classes)
    X = rng.normal(size=(len(y), 5)) + 1.5 * (np.searchsorted(labels, y)[:, None] == np.arange(5) % classes)
    if layers is not None:
        X = np.stack([rng.normal(size=X.shape)] * (layers - 1) + [X], axis=1)
    return X, y, speakers


@pytest.mark.parametrize(
    ("classes", "calibration", "layers"),
    [(2, "temperature", None), (2, "sigmoid", None), (3, "sigmoid", None), (4, "temperature", 3)],
)
def test_svm_export_reproduces_every_calibration(classes, calibration, layers, tmp_path):
    X, y, speakers = _svm_blobs(classes, layers)
    params = {"C_grid": [1.0], "gamma_grid": ["scale"], "inner_folds": 3, "calibration": calibration}
    if layers is not None:
        params["layer"] = "auto"
    model = build_model("svm", **params).fit(X, y, speakers)
    folder = save_model(model, tmp_path / "svm")
    export_onnx(folder)
    record = read_export_record(folder)
    runner = OnnxClassifier(folder / EXPORT_DIR / CLASSIFIER_FILE, record["classifier"], record["labels"])
    rows = np.concatenate([X, 3 * np.random.default_rng(1).normal(size=X.shape)]).astype(np.float32)
    np.testing.assert_allclose(runner.predict_proba(rows), model.predict_proba(rows), atol=1e-9)


# --------------------------------------------------------------------------- SSL encoder


@pytest.fixture(scope="session")
def ssl_model(corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pooled head on the pooled statistics of a tiny random wav2vec 2.0 model (saved to disk)."""
    transformers = pytest.importorskip("transformers")
    import torch

    root = tmp_path_factory.mktemp("ssl")
    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
    )
    torch.manual_seed(0)
    transformers.AutoModel.from_config(config).save_pretrained(root / "encoder")
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(root / "encoder")
    extractor = build_extractor(
        {"kind": "ssl", "model": str(root / "encoder"), "frame_layers": [], "mode": "native", "device": "cpu"},
        AudioSpec(duration=3.0),
    )
    meta = corpus[1].iloc[::3]  # one utterance per speaker and emotion
    X = _features(extractor, "pooled", meta["file"])
    return _train(extractor, X, "pooled", {"hidden": 16, **TORCH_FAST}, meta, root / "model")


@pytest.mark.slow
def test_encoder_export_runs_the_whole_chain_in_onnxruntime(ssl_model, corpus, capsys):
    _, meta = corpus
    assert main(["export", str(ssl_model), "--onnx", "--encoder"]) == 0
    written = capsys.readouterr().out
    assert "classifier.onnx" in written and "encoder.onnx" in written
    record = read_export_record(ssl_model)
    assert (ssl_model / EXPORT_DIR / record["encoder"]["file"]).is_file()
    onnx_predictor = Predictor.load(ssl_model, backend="onnx")
    assert onnx_predictor.extractor.config.backend == "onnx"
    torch_predictor = Predictor.load(ssl_model)
    files = list(meta["file"][::8])
    torch_results = torch_predictor.predict_files(files)
    onnx_results = onnx_predictor.predict_files(files)
    # The encoders' float32 outputs agree closely; the features are stored as float16.
    difference = max(np.abs(_probs(a) - _probs(b)).max() for a, b in zip(torch_results, onnx_results))
    assert difference <= 1e-3, difference
    export_onnx(ssl_model)  # exporting the classifier again keeps the encoder entry
    assert read_export_record(ssl_model)["encoder"] == record["encoder"]


# --------------------------------------------------------------------------- CLI


def test_cli_predict_json(models, corpus, capsys):
    _, meta = corpus
    files = [str(f) for f in meta["file"][:3]]
    assert main(["predict", str(models["svm"]), *files, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["labels"] == load_model(models["svm"]).labels
    assert [p["source"] for p in document["predictions"]] == files
    assert all(p["error"] is None and abs(sum(p["probabilities"].values()) - 1) < 1e-6 for p in document["predictions"])


def test_cli_predict_csv_with_segments(models, corpus, capsys):
    _, meta = corpus
    path = str(meta["file"][0])
    assert main(["predict", str(models["cnn"]), path, "--format", "csv", "--segments", "--window", "1", "--hop", "0.5"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    labels = load_model(models["cnn"]).labels
    assert list(rows[0]) == ["source", "segment", "start", "end", "label", *[f"prob_{l}" for l in labels], "error", "warnings"]
    assert rows[0]["segment"] == "" and rows[0]["source"] == path
    segments = rows[1:]
    assert [int(r["segment"]) for r in segments] == list(range(1, len(segments) + 1))
    assert float(segments[0]["start"]) == 0.0 and float(segments[1]["start"]) == 0.5
    assert float(segments[-1]["end"]) == pytest.approx(float(rows[0]["end"]), abs=1e-3)
    means = np.mean([[float(r[f"prob_{l}"]) for l in labels] for r in segments], axis=0)
    np.testing.assert_allclose([float(rows[0][f"prob_{l}"]) for l in labels], means, atol=1e-5)


def test_cli_predict_directory_table_and_output_file(models, corpus, capsys, tmp_path):
    root, meta = corpus
    out = tmp_path / "predictions.txt"
    assert main(["predict", str(models["svm"]), str(root / "spk02"), "-o", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out == ""
    lines = out.read_text().splitlines()
    expected = sorted(str(f) for f in meta["file"] if "spk02" in str(f))
    assert lines[0].split()[:2] == ["file", "label"]
    assert [line.split()[0] for line in lines[1:]] == expected


def test_cli_predict_bad_file_exits_1_and_reports_it(models, corpus, capsys, tmp_path):
    _, meta = corpus
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"garbage" * 10)
    good = str(meta["file"][0])
    assert main(["predict", str(models["svm"]), good, str(bad), "--format", "json"]) == 1
    captured = capsys.readouterr()
    predictions = json.loads(captured.out)["predictions"]
    assert predictions[0]["error"] is None and predictions[0]["label"]
    assert "bad.wav" in predictions[1]["error"] and predictions[1]["label"] is None
    assert "1 of 2 file(s) could not be predicted" in captured.err and "bad.wav" in captured.err
    assert main(["predict", str(models["svm"]), good, str(bad)]) == 1
    assert "ERROR: " in capsys.readouterr().out


def test_cli_predict_usage_errors_exit_2(models, corpus, capsys, tmp_path):
    _, meta = corpus
    good = str(meta["file"][0])
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(models["svm"]), str(tmp_path / "empty")]) == 2
    assert "no audio files" in capsys.readouterr().err
    assert main(["predict", str(models["svm"]), good, "--window", "0"]) == 2
    assert main(["predict", str(tmp_path), good]) == 2
    assert "not a serkit model folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(models["svm"]), good, "--format", "xml"])
    assert exit_info.value.code == 2


def test_cli_export_and_onnx_backend(models, corpus, capsys):
    _, meta = corpus
    assert main(["export", str(models["pooled"])]) == 2
    assert "--onnx" in capsys.readouterr().err
    assert main(["export", str(models["pooled"]), "--onnx"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {models['pooled'] / EXPORT_DIR / CLASSIFIER_FILE}" in out and RECORD_FILE in out
    path = str(meta["file"][2])
    assert main(["predict", str(models["pooled"]), path, "--backend", "onnx", "--format", "json"]) == 0
    onnx_probs = json.loads(capsys.readouterr().out)["predictions"][0]["probabilities"]
    assert main(["predict", str(models["pooled"]), path, "--format", "json"]) == 0
    torch_probs = json.loads(capsys.readouterr().out)["predictions"][0]["probabilities"]
    assert onnx_probs == pytest.approx(torch_probs, abs=ONNX_TOLERANCE)


def test_format_predictions_rejects_unknown_formats():
    with pytest.raises(ValueError, match="format"):
        format_predictions([], ["a", "b"], "xml")


@pytest.mark.parametrize("input_mode", ["resize", "crop_pool", "none"])
def test_cnn_input_adapters_export_exactly(input_mode, tmp_path):
    """Antialiased resizing and crop-and-pool have no ONNX operator; the export rewrites them as matrix products."""
    import torch

    from serkit.models.cnn import CNNClassifier

    model = CNNClassifier(depth=2, input_mode=input_mode, input_size=16, channels=[4, 8], hidden=8)
    torch.manual_seed(0)
    model.network_ = model.build_network(3, (2, 50, 20)).eval()
    model.input_shape_ = (2, 50, 20)
    model.classes_ = np.array(["a", "b", "c"])
    model.history_, model.best_epoch_, model.class_weights_ = [], None, None
    folder = save_model(model, tmp_path / "cnn")
    export_onnx(folder)
    record = read_export_record(folder)
    assert record["classifier"]["input_shape"] == [2, 50, 20]
    runner = OnnxClassifier(folder / EXPORT_DIR / CLASSIFIER_FILE, record["classifier"], record["labels"])
    rows = np.random.default_rng(3).normal(size=(5, 2, 50, 20)).astype(np.float32)
    np.testing.assert_allclose(runner.predict_proba(rows), model.predict_proba(rows), atol=1e-5)


def test_predict_files_progress_bar_goes_to_stderr(predictors, corpus, capsys):
    _, meta = corpus
    results = predictors["svm"].predict_files(list(meta["file"][:2]), progress=True)
    assert len(results) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "predict" in captured.err


def test_a_failed_export_check_leaves_no_file(models, tmp_path, monkeypatch):
    """The graph is moved into place only after onnxruntime reproduced the model; else nothing stays."""
    import shutil

    from serkit.inference import export

    folder = tmp_path / "svm"
    shutil.copytree(models["svm"], folder)
    shutil.rmtree(folder / EXPORT_DIR, ignore_errors=True)  # other tests may have exported it already

    def disagree(*args, **kwargs):
        raise ValueError("onnxruntime disagrees")

    monkeypatch.setattr(export, "_check_export", disagree)
    with pytest.raises(ValueError, match="disagrees"):
        export_onnx(folder)
    left = sorted(p.name for p in (folder / EXPORT_DIR).iterdir())
    assert left == []  # no classifier.onnx, no export.json, no temporary file

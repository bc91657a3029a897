"""Neural classifiers learn emotions of unseen speakers of the synthetic corpus (must-learn checks).

The synthetic corpus (serkit.data.synth, source-filter voice) is rendered and its log-mel and
MFCC features extracted once; each network trains on 8 speakers and is scored on 2 others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from serkit.models import build_model

# --------------------------------------------------------------------------- (b) learns the synthetic corpus

TEST_SPEAKERS = ("spk09", "spk10")


@dataclass
class SynthFeatures:
    """Features of the synthetic corpus (not normalised per speaker) and its split."""

    features: dict[str, np.ndarray]
    labels: np.ndarray
    speakers: np.ndarray
    test: np.ndarray


@pytest.fixture(scope="session")
def synth_features(tmp_path_factory: pytest.TempPathFactory) -> SynthFeatures:
    """10 speakers x the 4 default emotions x 10 clips (3 s), log-mel and MFCC features, extracted once.

    No speaker normalisation: the synthesiser's emotions differ more than its speakers do, so the
    networks must learn them from raw features of unseen speakers.
    """
    import pandas as pd

    from serkit.data.audio import AudioSpec, load
    from serkit.features import build_extractor
    from serkit.data.synth import write_corpus

    root = tmp_path_factory.mktemp("synth")
    listing = write_corpus(root, speakers=10, per_emotion=10, voice="source-filter", seed=0)
    meta = pd.read_csv(listing)
    spec = AudioSpec(duration=3.0)
    logmel = build_extractor({"kind": "logmel", "image_size": [64, 64], "outputs": ["frames", "image"]}, spec)
    mfcc = build_extractor({"kind": "mfcc", "outputs": ["frames", "stats"]}, spec)
    outputs: dict[str, list[np.ndarray]] = {"logmel_frames": [], "logmel_image": [], "mfcc_frames": [], "mfcc_stats": []}
    for path in meta["path"]:
        signal = load(root / path, spec)
        for prefix, extractor in (("logmel", logmel), ("mfcc", mfcc)):
            for name, value in extractor.extract(signal, spec.sampling_rate).items():
                outputs[f"{prefix}_{name}"].append(value)
    speakers = meta["speaker"].to_numpy()
    features = {k: np.stack(v).astype(np.float32) for k, v in outputs.items()}
    return SynthFeatures(features, meta["label"].to_numpy(), speakers, np.isin(speakers, TEST_SPEAKERS))


#: (model, hyper-parameters, feature, minimum UA on the held-out speakers). Chance is 0.25.
#: Measured on CPU (seed 0, all four default emotions, no speaker normalisation): cnn 0.938,
#: layer_sum 0.962, attention 1.000, efficientnet 0.950 (0.988 / 0.950 with seeds 1 / 2).
#: The CNN's training is chaotic (validation UA jumps 0.29-0.89 between epochs): after the MFCCs
#: moved to numpy (features/spectral_dsp.py, equal to librosa's within 1.1e-4) it reached 0.900,
#: 0.988, 0.963, 0.838 with seeds 0-3, so its bound is 0.8 (3.2x chance), not 0.9.
LEARNERS = {
    "cnn": ("cnn", {"depth": 3, "input_size": 64, "max_epochs": 30}, "mfcc_frames", 0.8),
    # EfficientNet-B0 (4 M parameters) from scratch -- no ImageNet weights offline -- on 320
    # 64 x 64 images needs time shifts and SpecAugment masks and a cosine schedule to reach
    # unseen speakers. Its cost is about 15 ms per image pass on 2 cores whatever the image size
    # (32 x 32 is no faster), so the test trains 10 epochs of batch 32 at lr 3e-3 (UA 0.800 /
    # 0.838 with seeds 0 / 1; 76-84 s on the one thread a test worker has, 12 epochs took 90 s
    # for UA 0.81) instead of 35 of batch 16 (199 s, UA 0.95): the bound is "learns unseen
    # speakers", 3x chance, not the best it can do.
    "efficientnet": (
        "efficientnet",
        {"max_epochs": 10, "batch_size": 32, "lr": 3e-3, "patience": None, "augment": True, "lr_schedule": "cosine"},
        "logmel_image",
        0.75,
    ),
    "pooled-layer_sum": ("pooled", {"pooling": "layer_sum"}, "mfcc_stats", 0.9),
    "pooled-attention": ("pooled", {"pooling": "attention"}, "logmel_frames", 0.9),
}


@pytest.mark.slow
@pytest.mark.parametrize("key", list(LEARNERS))
def test_learns_synthetic_emotions_on_held_out_speakers(key: str, synth_features: SynthFeatures) -> None:
    name, params, feature, minimum = LEARNERS[key]
    data = synth_features
    X, train = data.features[feature], ~data.test
    model = build_model(name, **params).fit(X[train], data.labels[train], groups=data.speakers[train])
    ua = balanced_accuracy_score(data.labels[data.test], model.predict(X[data.test]))
    logging.getLogger(__name__).info("%s: UA %.3f on %s", key, ua, TEST_SPEAKERS)
    assert ua >= minimum, f"{key}: UA {ua:.3f} on held-out speakers (history {model.history_})"
    assert model.best_epoch_ is not None and len(model.history_) >= model.best_epoch_

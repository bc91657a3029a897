"""Neural classifiers (cnn, efficientnet, pooled) and their shared Lightning training core.

Fast tests use tiny class-separable random arrays; the slow ones run 2-process DDP. Learning
unseen speakers of the synthetic corpus is in test_models_torch_learning.py (its own file, so
the parallel test run can give it its own worker).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch.utils.data import WeightedRandomSampler

from serkit.models import build_model
from serkit.models import training
from serkit.models.cnn import CNNClassifier, adapt_map, adapted_shape, pool_kernels
from serkit.models.efficientnet import EfficientNetClassifier
from serkit.models.io import load_model, save_model
from serkit.models.pooled import PooledClassifier
from serkit.models.training import class_weights, make_train_loader, sample_weights, validation_split

# --------------------------------------------------------------------------- tiny data

#: Small settings per model for the fast tests: (model name, hyper-parameters, data kind).
TINY = {
    "cnn": ("cnn", {"depth": 3, "input_size": 32, "dropout": 0.0, "dense_dropout": 0.0}, "maps"),
    "efficientnet": ("efficientnet", {"drop_rate": 0.0}, "images"),
    "pooled-layer_sum": ("pooled", {"pooling": "layer_sum", "dropout": 0.0}, "stats"),
    "pooled-attention": ("pooled", {"pooling": "attention", "dropout": 0.0}, "frames"),
}
_SHAPES = {"maps": (40, 13), "images": (32, 32), "stats": (3, 20), "frames": (30, 16)}


def tiny_data(kind: str, n: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` rows of two classes ("a", "b") with a class offset on the first half of each row."""
    rng = np.random.default_rng(seed)
    labels = np.array(["a", "b"] * (n // 2))
    X = rng.normal(size=(n, *_SHAPES[kind])).astype(np.float32)
    half = _SHAPES[kind][0] // 2
    X[labels == "b", :half] += 1.5
    speakers = np.array([f"s{i % 4}" for i in range(n)])
    return X, labels, speakers


def tiny_model(key: str, **params: object):
    name, base, kind = TINY[key]
    settings = {"max_epochs": 2, "val_fraction": 0.0, **base, **params}
    return build_model(name, **settings), kind


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", ["cnn", "efficientnet", "pooled"])
def test_registry_params_and_clone(name: str) -> None:
    model = build_model(name, lr=5e-4)
    params = model.get_params()
    for key in ("lr", "batch_size", "max_epochs", "patience", "val_fraction", "class_weight", "balanced_sampling",
                "seed", "deterministic", "accelerator", "devices", "strategy", "precision", "checkpoint_dir",
                "progress", "num_threads", "monitor"):
        assert key in params
    assert params["lr"] == 5e-4 and params["batch_size"] == 4
    json.dumps(params)  # JSON-able, as model.json needs
    assert clone(model).get_params() == params
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        build_model(name, nonsense=1)


def test_importing_the_registry_stays_light() -> None:
    code = "import sys, serkit.models; print(sorted(m for m in ('torch', 'lightning', 'timm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_input_kinds() -> None:
    assert CNNClassifier().input_kind == "frames"
    assert EfficientNetClassifier().input_kind == "image"
    assert PooledClassifier().input_kind == "pooled"
    assert PooledClassifier(pooling="attention").input_kind == "frames"


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("cnn", {"depth": 0}, r"depth must be an integer in 1\.\.7"),
        ("cnn", {"depth": 8}, r"depth must be an integer in 1\.\.7"),
        ("cnn", {"input_mode": "stretch"}, r"input_mode must be one of \['resize', 'crop_pool', 'none'\]"),
        ("cnn", {"depth": 3, "channels": [8, 16]}, "channels must be 3 positive integers"),
        ("pooled", {"pooling": "max"}, r"pooling must be one of \['layer_sum', 'attention'\]"),
        ("pooled", {"class_weight": "inverse"}, "class_weight must be one of"),
        ("pooled", {"monitor": "accuracy"}, "monitor must be one of"),
        ("pooled", {"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ("pooled", {"batch_size": 0}, "batch_size must be a positive integer"),
        ("efficientnet", {"drop_rate": 1.5}, "drop_rate"),
        ("cnn", {"augment": {"width": 0.1}}, r"augment: unknown setting\(s\) \['width'\]"),
        ("efficientnet", {"augment": {"time_mask": 1.5}}, r"augment\.time_mask must be a fraction in \[0, 1\)"),
        ("cnn", {"augment": {"masks": -1}}, "augment.masks must be a non-negative integer"),
        ("cnn", {"augment": "yes"}, "augment must be true, false, null or a table"),
        ("pooled", {"augment": True}, "augment needs frame maps"),
        ("cnn", {"lr_schedule": "step"}, r"lr_schedule must be one of \[None, 'constant', 'cosine'\]"),
        ("pooled", {"input_kind": "frames"}, r"pooled \(layer_sum\) reads one of \['pooled', 'stats', 'functionals'\]"),
        ("pooled", {"pooling": "attention", "input_kind": "stats"}, r"pooled \(attention\) reads one of \['frames'\]"),
    ],
)
def test_bad_hyperparameters_are_clear_errors(name: str, params: dict, message: str) -> None:
    X, y, _ = tiny_data("stats")
    with pytest.raises(ValueError, match=message):
        build_model(name, **params).fit(X, y)


def test_not_fitted_and_wrong_shape() -> None:
    model, kind = tiny_model("pooled-layer_sum")
    X, y, _ = tiny_data(kind)
    with pytest.raises(ValueError, match="not fitted"):
        model.predict_proba(X)
    model.fit(X, y)
    with pytest.raises(ValueError, match="trained on"):
        model.predict_proba(X[:, :, :5])


def test_spawned_strategies_are_refused() -> None:
    X, y, _ = tiny_data("stats")
    model = build_model("pooled", max_epochs=1, accelerator="cpu", devices=2, strategy="ddp_spawn")
    with pytest.raises(ValueError, match="use strategy='ddp'"):
        model.fit(X, y)


def test_float16_multichannel_input() -> None:
    X, y, _ = tiny_data("maps")
    ssl_like = np.stack([X, -X, 2 * X], axis=1).astype(np.float16)  # (8, 3 layers, 40, 13)
    cnn = CNNClassifier(depth=2, input_mode="crop_pool", input_size=16, max_epochs=1, val_fraction=0.0).fit(ssl_like, y)
    assert cnn.input_shape_ == (3, 40, 13) and cnn.network_.conv_input_shape == (3, 16, 16)
    assert cnn.predict_proba(ssl_like).dtype == np.float64
    pooled = PooledClassifier(max_epochs=1, val_fraction=0.0).fit(ssl_like[:, :, 0], y)  # (8, 3, 13)
    assert pooled.layer_weights_.shape == (3,)


# --------------------------------------------------------------------------- CNN shapes


def test_cnn_input_modes_on_an_xlsr_map() -> None:
    x = torch.randn(2, 1, 349, 1024)
    assert adapt_map(x, "resize", 300).shape == (2, 1, 300, 300)
    assert adapt_map(x, "crop_pool", 300).shape == (2, 1, 300, 300)
    assert adapt_map(x, "none", 300).shape == (2, 1, 349, 1024)
    assert adapted_shape((1, 349, 1024), "resize", 300) == (1, 300, 300)
    assert adapted_shape((1, 349, 1024), "crop_pool", 300) == (1, 300, 300)
    assert adapted_shape((1, 349, 1024), "none", 300) == (1, 349, 1024)
    # crop_pool keeps the first frames and averages groups of dims
    ramp = torch.arange(1024.0).expand(1, 1, 349, 1024)
    pooled = adapt_map(ramp, "crop_pool", 300)
    assert torch.allclose(pooled[0, 0, 0], pooled[0, 0, -1])  # every frame alike
    assert pooled[0, 0, 0, 0] < 2 and pooled[0, 0, 0, -1] > 1021
    # fewer frames than input_size: zero-padded at the end
    short = adapt_map(torch.ones(1, 1, 250, 1024), "crop_pool", 300)
    assert short.shape == (1, 1, 300, 300) and short[0, 0, 249].min() == 1 and short[0, 0, 250:].abs().max() == 0
    with pytest.raises(ValueError, match="input_mode must be one of"):
        adapt_map(x, "stretch", 300)
    # several SSL layers are channels
    model = CNNClassifier()
    assert tuple(model.prepare_input(np.zeros((2, 349, 1024), np.float16)).shape) == (2, 1, 349, 1024)
    assert tuple(model.prepare_input(np.zeros((2, 3, 349, 1024), np.float16)).shape) == (2, 3, 349, 1024)


@pytest.mark.parametrize("depth", [3, 5, 7])
def test_cnn_depths_build_and_run(depth: int) -> None:
    model = CNNClassifier(depth=depth)
    network = model.build_network(4, (1, 349, 1024)).eval()
    assert network.conv_input_shape == (1, 300, 300)
    assert len(network.blocks) == depth
    convs = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 64, 128, 128, 256][:depth]
    with torch.no_grad():
        assert network(torch.randn(1, 1, 349, 1024)).shape == (1, 4)


def test_cnn_small_map_skips_pooling() -> None:
    assert pool_kernels(50, 13, 7) == [(2, 2), (2, 2), (2, 2), (2, 1), (2, 1), (1, 1), (1, 1)]
    X, y, _ = tiny_data("maps", n=8)
    X = X[:, :, :13]  # (8, 40, 13): an MFCC-sized map
    X = np.concatenate([X, X[:, :10]], axis=1)  # 50 x 13
    model = CNNClassifier(depth=7, input_mode="none", max_epochs=1, val_fraction=0.0).fit(X, y)
    assert model.network_.kernels[-1] == (1, 1)
    assert model.predict_proba(X).shape == (8, 2)


# --------------------------------------------------------------------------- (a) overfit


@pytest.mark.parametrize("key", list(TINY))
def test_overfits_a_tiny_set(key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # Lightning must not write into the working directory
    if key == "efficientnet":
        # 32 rows in batches of 8: on 8 rows in batches of 4, B0's last batch norms (1 x 1 maps)
        # memorise in train mode with statistics that their eval-mode running averages miss.
        model, kind = tiny_model(key, max_epochs=20, batch_size=8)
        X, y, _ = tiny_data(kind, n=32)
    else:
        model, kind = tiny_model(key, max_epochs=30)
        X, y, _ = tiny_data(kind)
    model.fit(X, y)
    assert (model.predict(X) == y).mean() == 1.0
    assert len(model.history_) == model.max_epochs
    assert model.history_[-1]["train_loss"] < model.history_[0]["train_loss"]
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- (c) save / load


@pytest.mark.parametrize("key", list(TINY))
def test_save_load_round_trip(key: str, tmp_path: Path) -> None:
    model, kind = tiny_model(key, val_fraction=0.25)
    X, y, speakers = tiny_data(kind)
    model.fit(X, y, groups=speakers)
    folder = save_model(model, tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "weights.safetensors"]
    loaded = load_model(folder).model
    assert type(loaded) is type(model)
    assert loaded.get_params() == json.loads(json.dumps(model.get_params()))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=0, atol=1e-6)
    assert loaded.history_ == model.history_ and len(loaded.history_) == 2
    assert list(loaded.classes_) == ["a", "b"]
    if isinstance(model, PooledClassifier):
        np.testing.assert_allclose(loaded.layer_weights_, model.layer_weights_)
        assert model.layer_weights_.sum() == pytest.approx(1.0)


# --------------------------------------------------------------------------- (d) resume


@pytest.mark.parametrize("key", ["pooled-layer_sum", "cnn"])
def test_checkpoint_resume_continues(key: str, tmp_path: Path) -> None:
    X, y, speakers = tiny_data(TINY[key][2], n=16)
    folder = tmp_path / "ckpt"
    first, _ = tiny_model(key, max_epochs=2, val_fraction=0.25, patience=None, checkpoint_dir=str(folder))
    first.fit(X, y, groups=speakers)
    assert (folder / "last.ckpt").is_file() and len(first.history_) == 2
    again = clone(first).set_params(max_epochs=4)
    again.fit(X, y, groups=speakers)
    assert [h["epoch"] for h in again.history_] == [1, 2, 3, 4]
    assert again.history_[:2] == first.history_  # epochs 1-2 restored, not retrained
    # A finished run refit with the same folder and max_epochs trains nothing more.
    done = clone(again)
    done.fit(X, y, groups=speakers)
    assert done.history_ == again.history_
    np.testing.assert_allclose(done.predict_proba(X), again.predict_proba(X), atol=1e-6)
    # Another data set must not silently continue from this checkpoint.
    with pytest.raises(ValueError, match="different training run"):
        clone(again).fit(X[:12], y[:12], groups=speakers[:12])


# --------------------------------------------------------------------------- (e) determinism


@pytest.mark.parametrize("augment", [None, True], ids=["plain", "augmented"])
@pytest.mark.parametrize("key", ["cnn", "efficientnet", "pooled-attention"])
def test_same_seed_same_probabilities(key: str, augment: bool | None) -> None:
    X, y, speakers = tiny_data(TINY[key][2])
    runs = []
    dropout = {"drop_rate": 0.3} if key == "efficientnet" else {"dropout": 0.3}
    for seed in (3, 3, 4):
        model, _ = tiny_model(key, seed=seed, max_epochs=1, augment=augment, **dropout)
        runs.append(model.fit(X, y, groups=speakers).predict_proba(X))
    np.testing.assert_array_equal(runs[0], runs[1])  # augmentation draws are seeded too
    assert not np.array_equal(runs[0], runs[2])


# --------------------------------------------------------------------------- (f) augmentation, schedule


def _rolled_by(row: np.ndarray, source: np.ndarray, axis: int, largest: int) -> int:
    """The circular shift along `axis` that turns `source` into `row` where `row` is not masked (0)."""
    kept = row != 0
    for shift in range(-largest, largest + 1):
        if np.array_equal(row[kept], np.roll(source, shift, axis=axis)[kept]):
            return shift
    raise AssertionError("the row is not a shifted copy of its input")


def _masked_spans(masked: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a 1-D boolean array."""
    edges = np.diff(np.concatenate([[0], masked.astype(int), [0]]))
    return list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))


@pytest.mark.parametrize(("layout", "time_axis", "freq_axis"), [("frames", -2, -1), ("image", -1, -2)])
def test_spec_augment_shifts_in_time_and_masks_bands(layout: str, time_axis: int, freq_axis: int) -> None:
    frames, dims = 40, 16
    rng = np.random.default_rng(0)
    base = rng.uniform(1.0, 2.0, size=(64, 1, frames, dims)).astype(np.float32)  # never 0: zeros are masks
    x = base if layout == "frames" else base[:, 0].transpose(0, 2, 1).copy()  # images: (N, D, T)
    augment = training.SpecAugment(time_axis, freq_axis, time_shift=0.25, time_mask=0.25, freq_mask=0.25, masks=1)
    torch.manual_seed(0)
    out = augment.train()(torch.from_numpy(x)).numpy()
    shifts = []
    for row_in, row_out in zip(x, out):
        grid_in = row_in.reshape(frames, dims) if layout == "frames" else row_in.T
        grid_out = row_out.reshape(frames, dims) if layout == "frames" else row_out.T
        shifts.append(_rolled_by(grid_out, grid_in, axis=0, largest=10))  # at most 0.25 x 40 frames
        zero = grid_out == 0
        time_masked, freq_masked = zero.all(axis=1), zero.all(axis=0)
        assert np.array_equal(zero, time_masked[:, None] | freq_masked[None, :])  # whole frames and whole bands
        assert all(span <= 10 for span in _masked_spans(time_masked))
        assert all(span <= 4 for span in _masked_spans(freq_masked))
    assert len(set(shifts)) > 10 and min(shifts) < 0 < max(shifts)  # each row its own shift, both ways
    assert (out.reshape(len(out), -1) == 0).any(axis=1).mean() > 0.5  # most rows got a mask of non-zero width
    # eval mode: untouched, so validation, prediction and exported graphs never see it
    np.testing.assert_array_equal(augment.eval()(torch.from_numpy(x)).numpy(), x)


def test_augment_settings() -> None:
    assert training.resolve_augment(None) is None and training.resolve_augment(False) is None
    assert training.resolve_augment(True) == training.AUGMENT_DEFAULTS
    assert training.resolve_augment({"masks": 2})["masks"] == 2
    assert isinstance(CNNClassifier().augmenter(-2, -1), torch.nn.Identity)
    assert isinstance(CNNClassifier(augment=True).augmenter(-2, -1), training.SpecAugment)
    # no parameters or buffers: weights saved with or without augmentation are interchangeable
    with_aug = CNNClassifier(depth=2, input_size=16, augment=True).build_network(2, (1, 40, 13))
    without = CNNClassifier(depth=2, input_size=16).build_network(2, (1, 40, 13))
    assert with_aug.state_dict().keys() == without.state_dict().keys()


def test_augmented_model_saves_and_predicts_deterministically(tmp_path: Path) -> None:
    model, kind = tiny_model("efficientnet", augment={"time_mask": 0.2, "masks": 2}, lr_schedule="cosine")
    X, y, speakers = tiny_data(kind)
    model.fit(X, y, groups=speakers)
    first = model.predict_proba(X)
    np.testing.assert_array_equal(model.predict_proba(X), first)  # no augmentation at prediction
    loaded = load_model(save_model(model, tmp_path / "model")).model
    assert loaded.get_params()["augment"] == {"time_mask": 0.2, "masks": 2}
    assert loaded.get_params()["lr_schedule"] == "cosine"
    np.testing.assert_allclose(loaded.predict_proba(X), first, atol=1e-6)


def test_warmup_cosine_factor() -> None:
    factor = training._warmup_cosine(200, 0.05)  # 10 warm-up steps
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    decay = [factor(s) for s in range(10, 201)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert factor(105) == pytest.approx(0.5, abs=0.01) and factor(200) == pytest.approx(0.0, abs=1e-9)


def test_cosine_schedule_reaches_zero_and_resumes(tmp_path: Path) -> None:
    X, y, speakers = tiny_data("stats", n=16)  # 16 rows, batch 4: 4 steps per epoch
    folder = tmp_path / "ckpt"
    settings = {"max_epochs": 3, "patience": None, "checkpoint_dir": str(folder), "lr_schedule": "cosine"}
    model, _ = tiny_model("pooled-layer_sum", **settings)
    model.fit(X, y, groups=speakers)
    checkpoint = torch.load(folder / "last.ckpt", weights_only=True)
    [scheduler] = checkpoint["lr_schedulers"]
    assert scheduler["last_epoch"] == 12  # every step of the 3 epochs
    assert scheduler["_last_lr"][0] == pytest.approx(0.0, abs=1e-12)  # the cosine ended at zero
    for schedule in (None, "constant"):  # "constant" switches a recipe's schedule off from --set (TOML has no null)
        folder = tmp_path / f"plain-{schedule}"
        plain, _ = tiny_model("pooled-layer_sum", max_epochs=1, patience=None, checkpoint_dir=str(folder), lr_schedule=schedule)
        plain.fit(X, y)
        assert torch.load(folder / "last.ckpt", weights_only=True)["lr_schedulers"] == []


def test_efficientnet_head_starts_at_chance() -> None:
    network = EfficientNetClassifier().build_network(4, (64, 64)).train()
    images = torch.from_numpy(np.random.default_rng(0).normal(size=(16, 64, 64)).astype(np.float32))
    with torch.no_grad():
        logits = network(images)
    loss = torch.nn.functional.cross_entropy(logits, torch.zeros(16, dtype=torch.long))
    # timm's own head (uniform +-1/sqrt(4)) starts at logits of std ~5 and a loss near 4
    assert float(logits.std()) < 0.5 and float(loss) == pytest.approx(np.log(4), abs=0.2)


def test_pooled_reads_the_output_it_is_told(tmp_path: Path) -> None:
    X, y, speakers = tiny_data("stats")
    functionals = X[:, 0]  # (8, 20): one vector per clip, e.g. eGeMAPS
    model = PooledClassifier(input_kind="functionals", max_epochs=2, val_fraction=0.0).fit(functionals, y)
    assert model.input_kind == "functionals" and model.layer_weights_.shape == (1,)
    assert PooledClassifier().input_kind == "pooled" and PooledClassifier(pooling="attention").input_kind == "frames"
    saved = json.loads((save_model(model, tmp_path / "model") / "model.json").read_text())
    assert saved["input_kind"] == "functionals"
    assert load_model(tmp_path / "model").model.input_kind == "functionals"


# --------------------------------------------------------------------------- (g) imbalance


def test_class_weights_and_sampler_weights() -> None:
    codes = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    np.testing.assert_allclose(class_weights(codes, 3, "balanced"), [9 / 18, 9 / 6, 9 / 3])
    assert class_weights(codes, 3, None) is None
    np.testing.assert_allclose(class_weights(np.array([0, 0, 2]), 3, "balanced"), [0.75, 0.0, 1.5])
    np.testing.assert_allclose(sample_weights(codes, 3), [1 / 6] * 6 + [1 / 2] * 2 + [1.0])
    dataset = torch.utils.data.TensorDataset(torch.zeros(9, 2), torch.as_tensor(codes))
    loader = make_train_loader(dataset, codes, 3, batch_size=4, balanced=True, seed=0)
    assert isinstance(loader.sampler, WeightedRandomSampler)
    np.testing.assert_allclose(loader.sampler.weights.numpy(), sample_weights(codes, 3))
    draws = [make_train_loader(dataset, codes, 3, batch_size=4, balanced=True, seed=s).sampler for s in range(300)]
    drawn = np.bincount([int(codes[i]) for sampler in draws for i in sampler], minlength=3)
    assert drawn.min() / drawn.max() > 0.8  # about equally often, although class 0 has 6x the rows
    plain = make_train_loader(dataset, codes, 3, batch_size=4, balanced=False, seed=0)
    assert not isinstance(plain.sampler, WeightedRandomSampler) and plain.drop_last


def test_balanced_options_reach_the_trainer(monkeypatch: pytest.MonkeyPatch) -> None:
    built = []

    def spy(*args, **kwargs):
        loader = make_train_loader(*args, **kwargs)
        built.append(loader)
        return loader

    monkeypatch.setattr(training, "make_train_loader", spy)
    X, y, _ = tiny_data("stats", n=12)
    y = np.array(["a"] * 9 + ["b"] * 3)
    model, _ = tiny_model("pooled-layer_sum", max_epochs=1, class_weight="balanced", balanced_sampling=True)
    model.fit(X, y)
    np.testing.assert_allclose(model.class_weights_, [12 / 18, 12 / 6])
    assert isinstance(built[-1].sampler, WeightedRandomSampler)
    model.set_params(class_weight=None, balanced_sampling=False).fit(X, y)
    assert model.class_weights_ is None and not isinstance(built[-1].sampler, WeightedRandomSampler)


# --------------------------------------------------------------------------- validation split


def test_validation_split_is_by_speaker(caplog: pytest.LogCaptureFixture) -> None:
    codes = np.tile(np.arange(4), 30)
    speakers = np.repeat(np.arange(10), 12)
    train, val = validation_split(codes, speakers, 0.2, seed=0)
    assert set(speakers[train]).isdisjoint(speakers[val])
    assert len(set(speakers[val])) == 2 and len(train) + len(val) == 120
    few = validation_split(codes[:48], speakers[:48], 0.2, seed=0)  # 4 speakers: one to validation
    assert len(set(speakers[:48][few[1]])) == 1
    train0, val0 = validation_split(codes, speakers, 0.0, seed=0)
    assert len(val0) == 0 and len(train0) == 120
    with caplog.at_level(logging.WARNING, logger="serkit.models.training"):
        train, val = validation_split(codes, None, 0.2, seed=0)
    assert "speaker-dependent" in caplog.text and len(val) == 24
    assert sorted(np.bincount(codes[val])) == [6, 6, 6, 6]  # stratified


# --------------------------------------------------------------------------- EfficientNet weights


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_efficientnet_loads_local_imagenet_weights(suffix: str, tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(123)
    imagenet = timm.create_model("efficientnet_b0", pretrained=False).state_dict()  # 3 channels, 1000 classes
    path = tmp_path / f"b0{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in imagenet.items()}, str(path))
    else:
        torch.save(imagenet, path)
    model = EfficientNetClassifier(pretrained=str(path), freeze_backbone=True, max_epochs=1, val_fraction=0.0)
    network = model.build_network(2, (32, 32))
    model.initialize_network(network)
    state = network.backbone.state_dict()
    torch.testing.assert_close(state["conv_stem.weight"], imagenet["conv_stem.weight"].sum(dim=1, keepdim=True))
    for key in ("blocks.3.1.conv_pw.weight", "bn2.running_var", "conv_head.weight"):
        torch.testing.assert_close(state[key], imagenet[key])
    assert state["classifier.weight"].shape == (2, 1280)  # a new head
    # Training with a frozen backbone changes the head only (batch-norm statistics included).
    X, y, _ = tiny_data("images")
    model.fit(X, y)
    trained = model.network_.backbone.state_dict()
    for key, value in trained.items():
        if key.startswith("classifier."):
            continue
        expected = imagenet[key].sum(dim=1, keepdim=True) if key == "conv_stem.weight" else imagenet[key]
        torch.testing.assert_close(value, expected, msg=key)
    assert not torch.equal(trained["classifier.weight"], state["classifier.weight"])


def test_efficientnet_rejects_foreign_weights(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"conv_stem.weight": torch.zeros(8, 3, 3, 3)}, str(path))
    model = EfficientNetClassifier(pretrained=str(path))
    with pytest.raises(ValueError, match="does not fit efficientnet_b0"):
        model.initialize_network(model.build_network(2, (32, 32)))


# --------------------------------------------------------------------------- (h) DDP

_DDP_SCRIPT = """
import json, os, sys
import numpy as np
from sklearn.metrics import balanced_accuracy_score
from serkit.models import build_model

mode, out = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
n_speakers, per_class, classes = 6, 20, 4
centres = rng.normal(size=(classes, 1, 16))  # the same class centre in every "layer"
labels, speakers, rows = [], [], []
for s in range(n_speakers):
    offset = 0.5 * rng.normal(size=(1, 16))  # each speaker shifts every feature
    for c in range(classes):
        for _ in range(per_class):
            rows.append(centres[c] + offset + rng.normal(size=(3, 16)))
            labels.append(f"c{c}")
            speakers.append(f"s{s}")
X = np.asarray(rows, dtype=np.float32)
y, g = np.asarray(labels), np.asarray(speakers)
test = np.isin(g, ["s4", "s5"])
extra = {"devices": 2, "strategy": "ddp", "accelerator": "cpu"} if mode == "ddp" else {"devices": 1, "accelerator": "cpu"}
model = build_model("pooled", max_epochs=8, patience=None, seed=0, num_threads=1, **extra)
model.fit(X[~test], y[~test], groups=g[~test])
if int(os.environ.get("LOCAL_RANK", "0")) == 0:
    ua = balanced_accuracy_score(y[test], model.predict(X[test]))
    with open(out, "w") as f:
        json.dump({"ua": ua, "epochs": len(model.history_), "history": model.history_}, f)
"""


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path: Path) -> None:
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(_DDP_SCRIPT))
    env = {**os.environ, "PYTHONWARNINGS": "error"}  # children inherit it: DDP must run warning-free
    env.pop("MASTER_PORT", None)
    results = {}
    for mode in ("single", "ddp"):
        out = tmp_path / f"{mode}.json"
        proc = subprocess.run(
            [sys.executable, str(script), mode, str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        results[mode] = json.loads(out.read_text())
    assert results["single"]["epochs"] == results["ddp"]["epochs"] == 8
    assert results["single"]["ua"] >= 0.95 and results["ddp"]["ua"] >= 0.95, results
    assert abs(results["single"]["ua"] - results["ddp"]["ua"]) <= 0.05, results
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.json", "ddp_run.py", "single.json"]


# --------------------------------------------------------------------------- caller's validation rows


def test_validation_rows_given_by_the_caller_are_used() -> None:
    model, kind = tiny_model("cnn", max_epochs=4, patience=None)
    X, y, _ = tiny_data(kind, n=8)
    X_val, y_val, _ = tiny_data(kind, n=4, seed=1)
    model.fit(X, y, validation=(X_val, y_val))
    assert len(model.history_) == 4
    assert all("val_loss" in entry for entry in model.history_)
    assert model.best_epoch_ is not None
    with pytest.raises(ValueError, match="do not occur in the training labels"):
        tiny_model("cnn", max_epochs=1)[0].fit(X, y, validation=(X_val, np.array(["zzz"] * len(X_val))))
    with pytest.raises(ValueError, match="validation rows have shape"):
        tiny_model("cnn", max_epochs=1)[0].fit(X, y, validation=(X_val[:, :-1], y_val))


def test_models_declare_whether_they_use_validation_rows() -> None:
    from serkit.models import model_class

    assert {name: model_class(name).uses_validation for name in ("cnn", "efficientnet", "pooled", "svm")} == {
        "cnn": True, "efficientnet": True, "pooled": True, "svm": False}


def test_model_json_keeps_hyper_parameters_not_runtime_settings(tmp_path: Path) -> None:
    """checkpoint folder, devices and progress once went into model.json as hyper-parameters."""
    from serkit.data.audio import AudioSpec
    from serkit.features import build_extractor

    model, kind = tiny_model("pooled-layer_sum", checkpoint_dir=str(tmp_path / "ckpt"), progress=False, num_threads=1)
    X, y, _ = tiny_data(kind)
    model.fit(X, y)
    extractor = build_extractor({"kind": "mfcc"}, AudioSpec(duration=3.0))
    folder = save_model(model, tmp_path / "m", audio_spec=extractor.spec, features=extractor.identity())
    meta = json.loads((folder / "model.json").read_text())
    assert not set(meta["params"]) & {"checkpoint_dir", "progress", "num_threads", "devices", "accelerator", "strategy"}
    assert meta["params"]["lr"] == model.lr and meta["params"]["max_epochs"] == 2
    assert meta["audio_spec"] is None and meta["features"]["audio_spec"]["duration"] == 3.0  # stored once
    saved = load_model(folder)
    assert saved.audio_spec == extractor.spec and saved.model.checkpoint_dir is None
    np.testing.assert_allclose(saved.model.predict_proba(X), model.predict_proba(X), atol=1e-6)

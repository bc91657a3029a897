"""SSL encoder features on tiny random models saved to disk (no downloads).

Every architecture the extractor serves gets a tiny randomly initialised model with the real
wav2vec 2.0 convolution geometry (so 7 s still gives 349 frames), saved with its feature
extractor to a session folder and loaded back by path, exactly as a local checkpoint would be.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from serkit.data.audio import AudioSpec
from serkit.features import build_extractor
from serkit.features.ssl import (
    ModelNotAvailableError,
    SSLConfig,
    SSLExtractor,
    conv_output_length,
    measure_quantization_error,
    pool_hidden_states,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SR = 16000
HIDDEN = 32
LAYERS = 2
REAL_KERNELS = (10, 3, 3, 3, 3, 2, 2)
REAL_STRIDES = (5, 2, 2, 2, 2, 2, 2)
WITH_MASK = ["w2v2_layer", "wavlm", "data2vec"]
ALL_ARCHS = ["w2v2_layer", "w2v2_group", "hubert", "wavlm", "data2vec"]


def _common(kernels=REAL_KERNELS, strides=REAL_STRIDES) -> dict:
    return dict(
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(8,) * len(kernels),
        conv_kernel=kernels,
        conv_stride=strides,
    )


def _configs() -> dict:
    """name -> (model config, feature extractor with the preprocessing such a model ships with)."""
    from transformers import (
        Data2VecAudioConfig,
        HubertConfig,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        WavLMConfig,
    )

    pos = dict(num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    large_fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    base_fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    stable = dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    return {
        # XLSR-53-like: layer-norm front end, stable layer norm, attention mask.
        "w2v2_layer": (Wav2Vec2Config(**stable, **pos, **_common()), large_fe),
        # wav2vec2-base-like: group norm, no mask.
        "w2v2_group": (Wav2Vec2Config(feat_extract_norm="group", **pos, **_common()), base_fe),
        "hubert": (HubertConfig(feat_extract_norm="group", **pos, **_common()), base_fe),
        "wavlm": (WavLMConfig(**stable, num_buckets=16, max_bucket_distance=64, **pos, **_common()), large_fe),
        "data2vec": (
            Data2VecAudioConfig(
                num_conv_pos_embeddings=5, num_conv_pos_embedding_groups=2, conv_pos_kernel_size=5, **_common()
            ),
            large_fe,
        ),
        # A different conv stack, for the frame-count formula.
        "w2v2_short": (Wav2Vec2Config(**stable, **pos, **_common((10, 3), (5, 4))), large_fe),
    }


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random encoders saved with their feature extractors, by name."""
    from transformers import AutoModel

    root = tmp_path_factory.mktemp("ssl-models")
    paths = {}
    for seed, (name, (config, feature_extractor)) in enumerate(_configs().items()):
        torch.manual_seed(seed)
        folder = root / name
        AutoModel.from_config(config).save_pretrained(folder)
        feature_extractor.save_pretrained(folder)
        paths[name] = folder
    return paths


@pytest.fixture(scope="session")
def signals() -> list[np.ndarray]:
    """Speech-like noise of 1 s, 1.5 s and 2.5 s + 123 samples (different frame counts)."""
    rng = np.random.default_rng(7)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 24000, 40123)]


def _extractor(path: Path, **settings) -> SSLExtractor:
    return SSLExtractor(SSLConfig(model=str(path), **settings))


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("arch", ALL_ARCHS)
@pytest.mark.parametrize("stats", [("mean",), ("mean", "std")])
def test_output_shapes_and_dtype(tiny_models, signals, arch, stats):
    extractor = _extractor(tiny_models[arch], mode="native", pooling_stats=stats, frames_length=None)
    outputs = extractor.extract_batch(signals, SR)
    assert len(outputs) == len(signals)
    for signal, out in zip(signals, outputs):
        assert set(out) == {"pooled", "frames"}
        assert out["pooled"].shape == (LAYERS + 1, HIDDEN * len(stats))
        frames = conv_output_length(len(signal), REAL_KERNELS, REAL_STRIDES)
        assert out["frames"].shape == (1, frames, HIDDEN)
        assert out["pooled"].dtype == np.float16 and out["frames"].dtype == np.float16
        assert np.isfinite(out["pooled"]).all() and np.isfinite(out["frames"]).all()


def test_frame_count_follows_conv_formula(tiny_models):
    assert [conv_output_length(n, REAL_KERNELS, REAL_STRIDES) for n in (400, 16000, 7 * SR)] == [1, 49, 349]
    extractor = _extractor(tiny_models["w2v2_short"], mode="native", frames_length=None)
    for n in (16000, 17777):
        expected = ((n - 10) // 5 + 1 - 3) // 4 + 1
        assert extractor.num_frames(n) == expected
        assert extractor.extract(np.ones(n, np.float32) * 0.01, SR)["frames"].shape == (1, expected, HIDDEN)


def test_pooled_statistics_are_over_true_frames(tiny_models, signals):
    extractor = _extractor(tiny_models["w2v2_layer"], mode="native")
    hidden = extractor.hidden_states(signals[:1], SR)[0]
    pooled = extractor.extract(signals[0], SR)["pooled"]
    expected = np.concatenate([hidden.mean(axis=1), hidden.std(axis=1)], axis=-1)
    np.testing.assert_allclose(pooled, expected, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(pool_hidden_states(hidden, ("mean",)), hidden.mean(axis=1), rtol=1e-6)


def test_last_hidden_state_is_encoder_output(tiny_models, signals):
    """Index num_layers is last_hidden_state (after the final layer norm of stable-layer-norm models)."""
    from transformers import AutoFeatureExtractor, AutoModel

    path = tiny_models["w2v2_layer"]
    model = AutoModel.from_pretrained(path).eval()
    inputs = AutoFeatureExtractor.from_pretrained(path)(signals[1], sampling_rate=SR, return_tensors="pt")
    with torch.inference_mode():
        reference = model(**inputs, output_hidden_states=True)
    hidden = _extractor(path, mode="native").hidden_states(signals[1:2], SR)[0]
    np.testing.assert_allclose(hidden[-1], reference.last_hidden_state[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(hidden[0], reference.hidden_states[0][0].numpy(), atol=1e-5)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_batch_independence(tiny_models, signals, arch):
    """A clip's features alone equal those inside a batch with longer clips."""
    extractor = _extractor(tiny_models[arch], mode="native", frames_length=None)
    alone = extractor.hidden_states([signals[0]], SR)[0]
    batched = extractor.hidden_states([signals[2], signals[0], signals[1]], SR)
    assert batched[1].shape == alone.shape
    np.testing.assert_allclose(batched[1], alone, atol=1e-4)
    np.testing.assert_allclose(batched[0], extractor.hidden_states([signals[2]], SR)[0], atol=1e-4)


def test_padding_is_used_only_when_safe(tiny_models):
    lengths = [16000, 24000, 16000, 40123]
    masked = _extractor(tiny_models["w2v2_layer"], mode="native", batch_size=8)
    masked.setup()
    assert masked._batches(lengths) == [[0, 2, 1, 3]]
    pairs = _extractor(tiny_models["w2v2_layer"], mode="native", batch_size=2)
    pairs.setup()
    assert pairs._batches(lengths) == [[0, 2], [1, 3]]
    grouped = _extractor(tiny_models["w2v2_group"], mode="native", batch_size=8)
    grouped.setup()
    assert grouped._batches(lengths) == [[0, 2], [1], [3]]


# --------------------------------------------------------------------------- modes and frames


def test_default_spec_follows_mode(tiny_models):
    assert _extractor(tiny_models["w2v2_layer"]).spec.duration == 7.0
    assert _extractor(tiny_models["w2v2_layer"], mode="native").spec.duration is None
    custom = AudioSpec(duration=3.0)
    assert SSLExtractor(SSLConfig(model=str(tiny_models["w2v2_layer"])), custom).spec == custom


def test_paper_mode_pads_before_the_encoder(tiny_models, signals):
    path = tiny_models["w2v2_layer"]
    paper = _extractor(path, mode="paper").extract(signals[0], SR)
    padded = np.zeros(7 * SR, np.float32)
    padded[: len(signals[0])] = signals[0]
    native_padded = _extractor(path, mode="native").extract(padded, SR)
    native = _extractor(path, mode="native").extract(signals[0], SR)
    assert paper["frames"].shape == native["frames"].shape == (1, 349, HIDDEN)
    # Paper mode is the encoder run on the clip padded to 7 s ...
    np.testing.assert_array_equal(paper["pooled"], native_padded["pooled"])
    # ... which normalises and encodes the padding, so it differs from the clip alone.
    assert np.abs(paper["pooled"].astype(np.float32) - native["pooled"]).max() > 1e-2
    assert np.abs(paper["frames"][0, :49].astype(np.float32) - native["frames"][0, :49]).max() > 1e-2


def test_native_frames_padded_and_cut(tiny_models, signals):
    path = tiny_models["w2v2_layer"]
    long_clip = np.tile(signals[0], 10)  # 10 s -> 499 frames
    free = _extractor(path, mode="native", frames_length=None)
    fixed = _extractor(path, mode="native", frames_length=349)
    short_free, long_free = free.extract(signals[0], SR)["frames"], free.extract(long_clip, SR)["frames"]
    short_fixed, long_fixed = fixed.extract(signals[0], SR)["frames"], fixed.extract(long_clip, SR)["frames"]
    assert short_free.shape[1] == 49 and long_free.shape[1] == 499
    assert short_fixed.shape == long_fixed.shape == (1, 349, HIDDEN)
    np.testing.assert_array_equal(short_fixed[:, :49], short_free)
    assert not short_fixed[:, 49:].any()
    np.testing.assert_array_equal(long_fixed, long_free[:, :349])


def test_frame_layers_selection(tiny_models, signals):
    path = tiny_models["w2v2_layer"]
    extractor = _extractor(path, mode="native", frame_layers=(0, -1, 1), frames_length=None)
    hidden = extractor.hidden_states(signals[:1], SR)[0]
    frames = extractor.extract(signals[0], SR)["frames"]
    assert frames.shape == (3, 49, HIDDEN)
    np.testing.assert_allclose(frames, hidden[[0, LAYERS, 1]], rtol=1e-3, atol=1e-3)
    assert "frames" not in _extractor(path, frame_layers=()).extract(signals[0], SR)
    with pytest.raises(ValueError, match="out of range"):
        _extractor(path, frame_layers=(LAYERS + 1,)).setup()


def test_rejects_wrong_rate_and_shape(tiny_models, signals):
    extractor = _extractor(tiny_models["w2v2_layer"], mode="native")
    with pytest.raises(ValueError, match="16000 Hz"):
        extractor.extract(signals[0], 8000)
    with pytest.raises(ValueError, match="1-D"):
        extractor.extract(np.zeros((2, 16000), np.float32), SR)
    with pytest.raises(ValueError, match="shorter than one encoder frame"):
        extractor.extract(np.zeros(100, np.float32), SR)


# --------------------------------------------------------------------------- config and fingerprint


def test_fingerprint_equal_for_equal_configs_and_differs_per_setting(tiny_models):
    path = str(tiny_models["w2v2_layer"])
    base = SSLConfig(model=path)
    assert SSLExtractor(base).fingerprint() == SSLExtractor(SSLConfig(model=path)).fingerprint()
    changes = {
        "model": str(tiny_models["wavlm"]),
        "revision": "v2",
        "mode": "native",
        "pooling_stats": ("mean",),
        "frame_layers": (-2,),
        "frames_length": None,
        "backend": "onnx",
        "quantize": "int8",
        "dtype": "float16",
        "device": "cpu",
        "batch_size": 3,
        "num_threads": 1,
    }
    assert set(changes) == {f.name for f in dataclasses.fields(SSLConfig)}
    prints = {SSLExtractor(base).fingerprint()}
    for name, value in changes.items():
        prints.add(SSLExtractor(dataclasses.replace(base, **{name: value})).fingerprint())
    assert len(prints) == len(changes) + 1


def test_fingerprint_tracks_local_weights(tiny_models, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_models["w2v2_layer"], copy)
    before = SSLExtractor(SSLConfig(model=str(copy)))
    revision = before.resolved_revision()
    assert revision.startswith("local:")
    for weights in copy.glob("*.safetensors"):
        shutil.copyfile(tiny_models["wavlm"] / weights.name, weights)
    after = SSLExtractor(SSLConfig(model=str(copy)))
    assert after.resolved_revision() != revision and after.fingerprint() != before.fingerprint()


def test_config_lists_become_tuples_and_bad_settings_fail():
    config = SSLConfig(pooling_stats=["mean"], frame_layers=[-1, 3])
    assert config.pooling_stats == ("mean",) and config.frame_layers == (-1, 3)
    bad = [
        {"mode": "fast"},
        {"pooling_stats": ("max",)},
        {"pooling_stats": ()},
        {"frames_length": 0},
        {"frame_layers": (1.5,)},
        {"backend": "tensorrt"},
        {"backend": "onnx", "device": "cuda"},
        {"quantize": "int8", "device": "cuda"},
        {"dtype": "int8"},
        {"device": "tpu"},
        {"batch_size": 0},
        {"num_threads": 0},
    ]
    for settings in bad:
        with pytest.raises(ValueError, match="SSLConfig"):
            SSLConfig(**settings)


def test_build_extractor(tiny_models, signals):
    extractor = build_extractor(
        {"kind": "ssl", "model": str(tiny_models["w2v2_layer"]), "mode": "native", "frame_layers": [-1]}
    )
    assert isinstance(extractor, SSLExtractor) and extractor.spec.duration is None
    assert extractor.extract(signals[0], SR)["frames"].shape == (1, 349, HIDDEN)
    with pytest.raises(ValueError, match="layer_index"):
        build_extractor({"kind": "ssl", "model": str(tiny_models["w2v2_layer"]), "layer_index": 3})


def test_float16_on_cpu_warns_and_uses_float32(tiny_models, signals, caplog):
    extractor = _extractor(tiny_models["w2v2_layer"], mode="native", dtype="float16", device="cpu")
    with caplog.at_level(logging.WARNING, logger="serkit.features.ssl_loading"):
        extractor.setup()
    assert "not used on cpu" in caplog.text
    assert extractor.precision_in_use() == "float32"
    assert next(extractor._encoder.model.parameters()).dtype == torch.float32
    reference = _extractor(tiny_models["w2v2_layer"], mode="native", dtype="float32").extract(signals[0], SR)
    np.testing.assert_array_equal(extractor.extract(signals[0], SR)["pooled"], reference["pooled"])


def test_bfloat16_on_cpu_runs_autocast_close_to_float32(tiny_models, signals):
    extractor = _extractor(tiny_models["w2v2_layer"], mode="native", dtype="bfloat16", device="cpu")
    extractor.setup()
    assert extractor._encoder.autocast and next(extractor._encoder.model.parameters()).dtype == torch.float32
    guard = extractor.precision_deviation()
    assert guard["precision"] == "bfloat16" and len(guard["per_layer"]) == extractor.num_layers + 1
    # bfloat16 keeps 8 bits of mantissa (relative rounding 0.4 %); through a few layers of a random model
    assert 0 < guard["max"] < 0.05, guard
    float32 = _extractor(tiny_models["w2v2_layer"], mode="native", dtype="float32")
    assert float32.precision_deviation() == {"precision": "float32", "per_layer": [], "max": 0.0}


def test_auto_dtype_resolves_into_the_fingerprint(tiny_models, monkeypatch):
    """"auto" that resolves to float32 shares float32's cache; resolving to bfloat16 does not."""
    from serkit.features import ssl as ssl_module
    from serkit.precision import PrecisionChoice

    path = str(tiny_models["w2v2_layer"])
    float32 = SSLExtractor(SSLConfig(model=path, dtype="float32", device="cpu")).fingerprint()
    assert SSLExtractor(SSLConfig(model=path, device="cpu")).fingerprint() == float32  # the suite pins float32
    monkeypatch.setattr(ssl_module, "auto_dtype", lambda config, device: PrecisionChoice("bfloat16", "faked"))
    auto = SSLExtractor(SSLConfig(model=path, device="cpu"))
    assert auto.precision_in_use() == "bfloat16"
    assert auto.fingerprint() == SSLExtractor(SSLConfig(model=path, dtype="bfloat16", device="cpu")).fingerprint()
    assert auto.fingerprint() != float32
    auto.setup()
    assert auto._encoder.autocast


def test_float16_overflow_is_clipped(caplog):
    from serkit.features.encoder import to_float16

    with caplog.at_level(logging.WARNING, logger="serkit.features.encoder"):
        out = to_float16(np.array([1.0, -1e6, 1e6], np.float32), "m")
    assert np.isfinite(out).all() and "exceed float16" in caplog.text


def test_import_is_cheap():
    heavy = "('torch', 'transformers', 'onnxruntime', 'onnx')"
    code = f"import sys, serkit.features.ssl, serkit.features.whisper; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- offline behaviour


def _fake_hub_cache(root: Path, repo: str, source: Path, commit: str) -> None:
    """Lay out `source` as the cached snapshot of `repo` at `commit`, with refs/main -> commit."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    shutil.copytree(source, repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)


def test_cached_hub_model_loads_offline_with_commit_revision(tiny_models, signals, tmp_path, monkeypatch):
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    _fake_hub_cache(tmp_path, "serkit-test/tiny-w2v2", tiny_models["w2v2_layer"], commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    extractor = SSLExtractor(SSLConfig(model="serkit-test/tiny-w2v2", mode="native"))
    assert extractor.resolved_revision() == commit
    assert extractor.identity()["model_revision"] == commit
    local = _extractor(tiny_models["w2v2_layer"], mode="native").extract(signals[0], SR)
    np.testing.assert_array_equal(extractor.extract(signals[0], SR)["pooled"], local["pooled"])
    pinned = SSLExtractor(SSLConfig(model="serkit-test/tiny-w2v2", mode="native", revision=commit))
    assert pinned.resolved_revision() == commit
    # Not cached: the configured revision itself is recorded.
    assert SSLExtractor(SSLConfig(model="serkit-test/other")).resolved_revision() == "main"


def test_offline_mode_fails_at_once_naming_the_model(monkeypatch):
    from huggingface_hub import try_to_load_from_cache

    model = "facebook/wav2vec2-large-xlsr-53"
    if isinstance(try_to_load_from_cache(model, "config.json"), str):
        pytest.skip(f"{model} is cached on this machine")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    extractor = SSLExtractor(SSLConfig(model=model))
    start = time.monotonic()
    with pytest.raises(ModelNotAvailableError) as info:
        extractor.setup()
    assert time.monotonic() - start < 10
    assert isinstance(info.value, OSError)
    assert model in str(info.value) and "hf download" in str(info.value) and "offline" in str(info.value)
    assert extractor.resolved_revision() == "main"  # fingerprint still computable


def test_unreachable_hub_fails_at_once(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    start = time.monotonic()
    with pytest.raises(ModelNotAvailableError, match="cannot be reached") as info:
        SSLExtractor(SSLConfig(model="serkit-test/never-cached-model")).setup()
    assert time.monotonic() - start < 10
    assert "serkit-test/never-cached-model" in str(info.value)


def test_missing_folder_is_named(tmp_path):
    missing = tmp_path / "no" / "such" / "model"
    with pytest.raises(ModelNotAvailableError, match="no such folder") as info:
        SSLExtractor(SSLConfig(model=str(missing))).setup()
    assert str(missing) in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match="not a complete model"):
        SSLExtractor(SSLConfig(model=str(tmp_path / "empty"))).setup()


# --------------------------------------------------------------------------- ONNX and int8


@pytest.mark.parametrize("arch", ["w2v2_layer", "w2v2_group", "wavlm"])
def test_onnx_matches_torch(tiny_models, signals, tmp_path, arch):
    settings = dict(mode="native", frames_length=None)
    torch_ext = _extractor(tiny_models[arch], **settings)
    onnx_ext = _extractor(tiny_models[arch], backend="onnx", **settings)
    onnx_ext.setup(tmp_path)
    # Batch sizes and lengths differ from the traced ones (2 x 1 s).
    batch = [signals[2], signals[0], signals[1]]
    expected, got = torch_ext.hidden_states(batch, SR), onnx_ext.hidden_states(batch, SR)
    for e, g in zip(expected, got):
        assert g.shape == e.shape
        assert np.abs(g - e).max() < 1e-4
    for e, g in zip(torch_ext.extract_batch(batch, SR), onnx_ext.extract_batch(batch, SR)):
        np.testing.assert_allclose(g["pooled"], e["pooled"], rtol=5e-3, atol=5e-3)


def test_onnx_export_is_reused_and_keyed_by_model(tiny_models, signals, tmp_path, monkeypatch):
    from serkit.features import onnx_backend

    first = _extractor(tiny_models["w2v2_layer"], backend="onnx", mode="native")
    first.setup(tmp_path)
    exports = sorted(tmp_path.glob("ssl-onnx-*"))
    assert len(exports) == 1 and not list(tmp_path.glob(".tmp-*"))
    source = json.loads((exports[0] / "source.json").read_text())
    assert source["model"] == str(tiny_models["w2v2_layer"]) and source["revision"].startswith("local:")

    def no_export(*args, **kwargs):
        raise AssertionError("export should have been reused")

    monkeypatch.setattr(onnx_backend, "_trace_to_onnx", no_export)
    again = _extractor(tiny_models["w2v2_layer"], backend="onnx", mode="native", batch_size=2)
    again.setup(tmp_path)
    np.testing.assert_array_equal(again.extract(signals[0], SR)["pooled"], first.extract(signals[0], SR)["pooled"])
    other = _extractor(tiny_models["wavlm"], backend="onnx", mode="native")
    with pytest.raises(AssertionError, match="reused"):
        other.setup(tmp_path)  # a different model never reuses the export
    assert not list(tmp_path.glob(".tmp-*"))


def test_onnx_without_workdir_uses_a_temporary_folder(tiny_models, signals):
    extractor = _extractor(tiny_models["w2v2_group"], backend="onnx", mode="native")
    assert extractor.extract(signals[0], SR)["pooled"].shape == (LAYERS + 1, 2 * HIDDEN)
    folder = extractor._tempdir
    assert folder is not None and any(folder.glob("ssl-onnx-*/encoder.onnx"))
    del extractor
    assert not folder.exists()


@pytest.mark.parametrize(("arch", "backend"), [("w2v2_layer", "torch"), ("w2v2_layer", "onnx"), ("wavlm", "torch")])
def test_int8_runs_and_stays_close(tiny_models, signals, arch, backend):
    config = SSLConfig(model=str(tiny_models[arch]), mode="native", backend=backend)
    report = measure_quantization_error(config, signals, SR)
    logging.getLogger(__name__).info("int8 vs float32 (%s, %s, tiny model): %s", arch, backend, report)
    assert report["min_cosine"] > 0.9
    assert report["relative_error"] < 0.3
    out = SSLExtractor(dataclasses.replace(config, quantize="int8")).extract(signals[0], SR)
    assert out["pooled"].dtype == np.float16 and out["frames"].shape == (1, 349, HIDDEN)


# --------------------------------------------------------------------------- full-size architecture


@pytest.mark.slow
def test_xlsr53_architecture_gives_349_by_1024(tmp_path):
    """XLSR-53's architecture (random weights, built from its configuration) on 7 s of audio."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        conv_dim=(512,) * 7,
        conv_kernel=REAL_KERNELS,
        conv_stride=REAL_STRIDES,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_bias=True,
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
    )
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(tmp_path)
    extractor = SSLExtractor(SSLConfig(model=str(tmp_path)))  # paper mode, last layer
    clip = (0.1 * np.random.default_rng(0).standard_normal(5 * SR)).astype(np.float32)  # padded to 7 s
    out = extractor.extract(clip, SR)
    assert out["frames"].shape == (1, 349, 1024)
    assert out["pooled"].shape == (25, 2048)
    assert np.isfinite(out["frames"]).all()


def test_accuracy_guard_compares_int8_quantisation_with_float32(tiny_models):
    quantized = _extractor(tiny_models["w2v2_layer"], mode="native", quantize="int8", dtype="float32")
    guard = quantized.precision_deviation()
    assert 0 < guard["max"] < 0.5 and len(guard["per_layer"]) == quantized.num_layers + 1
    assert guard["max"] == pytest.approx(max(guard["per_layer"]), abs=1e-6)  # the largest layer's deviation

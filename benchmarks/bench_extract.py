"""Benchmark: SSL feature extraction, serkit's path against the loop a user writes by hand.

XLSR-53's architecture with random weights (speed does not depend on the values), on 7 s clips
and on a length mix like ShEMO's (1 to 10 s, mean about 4 s). Reports clips per second,
real-time factor and useful GFLOP/s (only the work of the true, unpadded audio counts), next to
a large float32 matrix product's GFLOP/s measured in the same run.

The hand-written loop: one file at a time, padded to 7 s, the model called with gradients
enabled (no inference mode). serkit's path: `extract_manifest` in native mode (true lengths,
batches of similar lengths), with the torch and the onnxruntime backend, writing the cache.

Run: .venv/bin/python benchmarks/bench_extract.py [--mix 12] [--fixed 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

SAMPLING_RATE = 16000
CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)
HIDDEN, LAYERS, FFN, CONV_DIM, POS_KERNEL, POS_GROUPS = 1024, 24, 4096, 512, 128, 16


def xlsr_config():
    """XLSR-53's architecture (facebook/wav2vec2-large-xlsr-53), without its weights."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=16, intermediate_size=FFN,
        conv_dim=(CONV_DIM,) * 7, conv_kernel=CONV_KERNELS, conv_stride=CONV_STRIDES, conv_bias=True,
        feat_extract_norm="layer", do_stable_layer_norm=True, num_conv_pos_embeddings=POS_KERNEL,
        num_conv_pos_embedding_groups=POS_GROUPS, feat_proj_dropout=0.0, hidden_dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0,
    )


def save_random_xlsr(folder: Path) -> Path:
    """A randomly initialised XLSR-53-sized model and its feature extractor, saved locally."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    Wav2Vec2Model(xlsr_config()).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLING_RATE, padding_value=0.0,
                             do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


def conv_lengths(samples: int) -> list[int]:
    """Frames after each layer of the convolutional feature encoder."""
    lengths, n = [], samples
    for k, s in zip(CONV_KERNELS, CONV_STRIDES):
        n = (n - k) // s + 1
        lengths.append(n)
    return lengths


def xlsr_flops(samples: int) -> float:
    """Multiply-adds x 2 of one XLSR-53 forward pass on `samples` of audio."""
    lengths = conv_lengths(samples)
    flops = 2.0 * CONV_KERNELS[0] * 1 * CONV_DIM * lengths[0]
    for k, t in zip(CONV_KERNELS[1:], lengths[1:]):
        flops += 2.0 * k * CONV_DIM * CONV_DIM * t
    t = lengths[-1]
    flops += 2.0 * t * CONV_DIM * HIDDEN  # feature projection
    flops += 2.0 * t * HIDDEN * (HIDDEN // POS_GROUPS) * POS_KERNEL  # positional convolution
    per_layer = 2.0 * t * HIDDEN * HIDDEN * 4 + 2.0 * 2 * t * t * HIDDEN + 2.0 * 2 * t * HIDDEN * FFN
    return flops + LAYERS * per_layer


def matmul_gflops(n: int = 4096, repeats: int = 5) -> float:
    """float32 matrix-product rate of this machine (torch, current thread count)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def write_clips(folder: Path, durations: list[float], prefix: str) -> pd.DataFrame:
    """Voiced, speech-like clips of the given durations and their manifest."""
    rng = np.random.default_rng(0)
    rows = []
    for i, seconds in enumerate(durations):
        t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
        f0 = 120 + 60 * rng.random()
        phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / SAMPLING_RATE
        signal = sum(np.sin(k * phase) / k for k in range(1, 10)) * (0.55 - 0.45 * np.cos(2 * np.pi * 4 * t))
        signal = (0.3 * signal / np.abs(signal).max() + 0.005 * rng.standard_normal(t.size)).astype(np.float32)
        path = folder / f"{prefix}{i:03d}.wav"
        sf.write(path, signal, SAMPLING_RATE, subtype="PCM_16")
        rows.append({"utt_id": path.stem, "path": str(path), "speaker": "s0", "gender": "unknown",
                     "label": "x", "corpus": "bench", "duration": signal.size / SAMPLING_RATE})
    return pd.DataFrame(rows)


def shemo_like_durations(count: int, seed: int = 1) -> list[float]:
    """Lengths between 1 and 10 s with a mean near 4 s, like ShEMO's."""
    rng = np.random.default_rng(seed)
    return [float(np.clip(rng.gamma(shape=3.0, scale=1.35), 1.0, 10.0)) for _ in range(count)]


def hand_loop(model_dir: Path, manifest: pd.DataFrame) -> float:
    """What a user writes: each file padded to 7 s, gradients left on. Returns seconds."""
    from transformers import AutoFeatureExtractor, AutoModel

    processor = AutoFeatureExtractor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    start = time.perf_counter()
    for path in manifest["path"]:
        audio, rate = sf.read(path, dtype="float32")
        audio = np.pad(audio, (0, max(0, 7 * rate - audio.size)))[: 7 * rate]
        inputs = processor(audio, sampling_rate=rate, return_tensors="pt")
        out = model(inputs.input_values, output_hidden_states=True)
        out.last_hidden_state.detach().numpy()
    return time.perf_counter() - start


def serkit_path(model_dir: Path, manifest: pd.DataFrame, cache: Path, backend: str, batch_size: int,
                threads: int) -> tuple[float, float]:
    """serkit's native-length extraction into a fresh cache. Returns (setup s, extraction s)."""
    from serkit.features.extract import extract_manifest
    from serkit.features.ssl import SSLConfig, SSLExtractor

    config = SSLConfig(model=str(model_dir), mode="native", backend=backend, batch_size=batch_size,
                       num_threads=threads, frame_layers=(-1,), frames_length=349)
    extractor = SSLExtractor(config)
    start = time.perf_counter()
    extractor.setup(cache / "setup")  # model load, and the one-time ONNX export
    setup = time.perf_counter() - start
    start = time.perf_counter()
    result = extract_manifest(manifest, extractor, cache, progress=False)
    assert result.ok and result.computed == len(manifest), result.failed
    return setup, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", type=int, default=12, help="clips in the ShEMO-like length mix")
    parser.add_argument("--fixed", type=int, default=3, help="clips of exactly 7 s")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="serkit-bench-") as tmp:
        tmp = Path(tmp)
        model_dir = save_random_xlsr(tmp / "xlsr53-random")
        (tmp / "audio").mkdir()
        sets = {
            "7 s clips": write_clips(tmp / "audio", [7.0] * args.fixed, "fixed"),
            "ShEMO-like mix": write_clips(tmp / "audio", shemo_like_durations(args.mix), "mix"),
        }
        peak = matmul_gflops()
        rows = []
        for set_name, manifest in sets.items():
            audio_s = float(manifest["duration"].sum())
            useful = sum(xlsr_flops(int(round(d * SAMPLING_RATE))) for d in manifest["duration"]) / 1e9
            timings = {"hand loop (pad 7 s, grads on)": (0.0, hand_loop(model_dir, manifest))}
            for backend in ("torch", "onnx"):
                timings[f"serkit native, {backend}"] = serkit_path(
                    model_dir, manifest, tmp / f"cache-{set_name[:3]}-{backend}", backend, args.batch_size, args.threads)
            hand = timings["hand loop (pad 7 s, grads on)"][1]
            for path_name, (setup, seconds) in timings.items():
                rows.append({
                    "clips": set_name, "path": path_name, "n": len(manifest), "audio s": round(audio_s, 1),
                    "wall s": round(seconds, 1), "clips/s": round(len(manifest) / seconds, 3),
                    "RTF": round(seconds / audio_s, 3), "useful GFLOP/s": round(useful / seconds, 1),
                    "% of matmul": round(100 * useful / seconds / peak, 1),
                    "x hand loop": round(hand / seconds, 2), "setup s": round(setup, 1),
                })
        print(f"\nfloat32 4096x4096 matmul: {peak:.1f} GFLOP/s on {args.threads} threads; "
              f"XLSR-53 on a 7 s clip: {xlsr_flops(7 * SAMPLING_RATE) / 1e9:.1f} GFLOP\n")
        print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()

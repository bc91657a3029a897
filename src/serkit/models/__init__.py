"""Classifiers with one contract (scikit-learn's), and their save / load.

``build_model("cnn", depth=5)`` makes a classifier by name; every one has ``fit(X, y,
groups=None)``, ``predict``, ``predict_proba`` and ``classes_``, and its constructor only
stores hyper-parameters. Modules are imported only when used.
"""

from serkit.models.base import MODELS, Classifier, build_model, model_class

__all__ = ["MODELS", "Classifier", "build_model", "model_class"]

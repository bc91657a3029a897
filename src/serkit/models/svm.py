"""An RBF support vector machine on one vector per utterance: the paper's eGeMAPS baseline.

`SVMClassifier` is a scikit-learn pipeline, ``StandardScaler -> SVC(kernel="rbf")``, whose
``C`` and ``gamma`` (and, for per-layer SSL statistics, the layer) are chosen by an inner
cross-validation on the training part only.

Inputs. Any fixed-size vector per utterance: openSMILE ``functionals`` (88 for eGeMAPS),
spectral ``stats``, or SSL ``pooled`` statistics. The ``input_kind`` hyper-parameter records
which cached output the model was trained on (it goes into ``model.json`` so that serving
feeds the same output); the class attribute keeps the contract's default, ``"functionals"``.
Per-layer arrays of shape (N, L, F) need ``layer``: an index, or ``"auto"`` to let the inner
cross-validation pick the layer (with L = 1, as from CTranslate2's Whisper, that one is used). float16 inputs are cast to float64 (libsvm computes in
float64 anyway); NaN or Inf anywhere is an error.

Inner cross-validation. Folds are drawn by speaker (`sklearn.model_selection.StratifiedGroupKFold`
on ``groups``) so that the chosen hyper-parameters are those that generalise to unseen
speakers, which is what the outer evaluation measures. Fewer speakers than ``inner_folds``
reduce the number of folds (with a logged warning); one speaker, or no ``groups`` at all,
falls back to `StratifiedKFold`, with a warning that selection is then speaker-dependent.
Every candidate is scored on the same folds (``scoring``, balanced accuracy = UA by default);
ties go to the earlier candidate (lower layer, then grid order). Folds are shuffled with
``seed``, so a fit is deterministic.

Probabilities. ``SVC(probability=True)`` is deprecated in scikit-learn 1.9; its internal
5-fold Platt scaling also draws folds that ignore speakers. Instead the chosen SVC is wrapped
in `sklearn.calibration.CalibratedClassifierCV` with ``ensemble=False``: the SVC is trained on
all training rows, and the calibration map is fitted on its out-of-fold decision values over
the SAME speaker-grouped inner folds, so it is calibrated for unseen speakers. ``calibration=
"temperature"`` (default) fits one temperature on the multi-class decision values; it keeps
their order, so ``predict`` agrees with the SVM's own decision and a tiny training set cannot
flip it. ``"sigmoid"`` is Platt scaling per class (one-vs-rest, renormalised).

Persistence. The fitted pipeline is written with skops (``estimator.skops``); loading first
lists the types the file would build that skops does not trust by itself, refuses any that
are not in `ALLOWED_TYPES`, and checks the loaded object's structure. No pickle, and no code
named by the file ever runs (`serkit.models.svm_io`; the inner folds: `serkit.models.svm_folds`).
"""

from __future__ import annotations

import logging
import numbers
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted

from serkit.models.base import Classifier, OnnxGraph
from serkit.models.svm_folds import Split, calibration_splits, check_training_folds, inner_splits
from serkit.models.svm_io import ALLOWED_TYPES, ESTIMATOR_FILE, load_estimator

__all__ = ["ALLOWED_TYPES", "ESTIMATOR_FILE", "SVMClassifier", "inner_splits", "load_estimator"]

logger = logging.getLogger(__name__)

#: Feature outputs an SVM can read (one vector, or one vector per layer, per utterance).
INPUT_KINDS: tuple[str, ...] = ("functionals", "stats", "pooled")
#: Probability calibrations (see the module docstring).
CALIBRATIONS: tuple[str, ...] = ("temperature", "sigmoid")
_GAMMA_WORDS = ("scale", "auto")

# --------------------------------------------------------------------------- inputs


def _labels(y: Any) -> np.ndarray:
    labels = np.asarray([str(v) for v in np.asarray(y, dtype=object).ravel()])
    if len(np.unique(labels)) < 2:
        raise ValueError(f"svm: need at least 2 classes, got {sorted(set(labels.tolist()))}")
    return labels


def _finite_float(X: Any) -> np.ndarray:
    """`X` as float64; NaN or Inf is an error naming how many feature columns hold them."""
    arr = np.asarray(X)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"svm: features must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)  # float16 (SSL caches) -> float64: libsvm's precision
    bad = ~np.isfinite(arr).reshape(len(arr), -1)
    if bad.any():
        where = np.flatnonzero(bad.any(axis=0))
        raise ValueError(
            f"svm: NaN or Inf in {where.size} of {bad.shape[1]} feature column(s) (flattened indices, "
            f"first: {where[:5].tolist()}) over {int(bad.any(axis=1).sum())} row(s)"
        )
    return arr


def _is_list(value: Any) -> bool:
    """A list or tuple of values (a bare number or string is not a grid)."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _scale_factor(gamma: Any) -> float | None:
    """F of a ``"scale*F"`` grid entry (F > 0), else None."""
    if not isinstance(gamma, str) or not gamma.startswith("scale*"):
        return None
    try:
        factor = float(gamma.removeprefix("scale*"))
    except ValueError:
        return None
    return factor if factor > 0 and np.isfinite(factor) else None


def _gamma_value(gamma: float | str, X: np.ndarray) -> float | str:
    """What SVC gets for a grid entry: ``"scale*F"`` as a number from the standardised `X`."""
    factor = _scale_factor(gamma)
    if factor is None:
        return gamma if isinstance(gamma, str) else float(gamma)
    variance = float(StandardScaler().fit_transform(X).var())
    return factor / (X.shape[1] * variance) if variance > 0 else factor / X.shape[1]


class SVMClassifier(Classifier):
    """RBF SVM with speaker-grouped inner selection of C, gamma (and layer), calibrated.

    Args:
        C_grid: Candidate ``C`` values.
        gamma_grid: Candidate ``gamma`` values: positive numbers, ``"scale"``, ``"auto"``, or
            ``"scale*F"``: F times scikit-learn's ``"scale"`` value, 1 / (features x variance of
            the standardised training rows), so that one grid fits 88 eGeMAPS functionals and
            768 Whisper statistics alike. The default spans 1/8 to 2 times ``"scale"`` on a log2
            grid (the earlier (``"scale"``, 1e-3, 1e-2) held two near-equal values for both
            feature sets, and the inner CV picked the lower end on Whisper statistics).
        inner_folds: Inner cross-validation folds (reduced when there are fewer speakers).
        scoring: scikit-learn scorer name for the selection; ``"balanced_accuracy"`` is UA.
        class_weight: None or ``"balanced"`` (weights inverse to class frequency).
        layer: For (N, L, F) inputs: a layer index, or ``"auto"`` to select it by the inner
            CV; None when inputs are already (N, F).
        calibration: ``"temperature"`` or ``"sigmoid"`` (see the module docstring).
        input_kind: Which feature output the model reads: ``functionals``, ``stats`` or
            ``pooled``; recorded in ``model.json``.
        seed: Seed of the fold shuffling.
        n_jobs: Parallel jobs of the grid search.

    Attributes (after fit):
        classes_: Sorted label strings.
        best_params_: ``{"C", "gamma", "layer"}`` chosen by the inner CV.
        best_score_: Mean inner validation score of that choice.
        layer_: The layer used (None for 2-D inputs).
        cv_results_: One dict per candidate: layer, C, gamma, mean_score, std_score.
        inner_cv_: How the inner folds were drawn (splitter, n_splits, grouped).
        pipeline_: The fitted ``StandardScaler -> CalibratedClassifierCV(SVC)``.
    """

    name: ClassVar[str] = "svm"
    input_kind: ClassVar[str] = "functionals"  # the default; instances keep their hyper-parameter
    runtime_params: ClassVar[tuple[str, ...]] = ("n_jobs",)

    def __init__(
        self,
        C_grid: Sequence[float] = (0.1, 1.0, 10.0, 100.0),
        gamma_grid: Sequence[float | str] = ("scale*0.125", "scale*0.25", "scale*0.5", "scale", "scale*2"),
        inner_folds: int = 5,
        scoring: str = "balanced_accuracy",
        class_weight: str | None = None,
        layer: int | str | None = None,
        calibration: str = "temperature",
        input_kind: str = "functionals",
        seed: int = 0,
        n_jobs: int | None = 1,
    ) -> None:
        self.C_grid = C_grid
        self.gamma_grid = gamma_grid
        self.inner_folds = inner_folds
        self.scoring = scoring
        self.class_weight = class_weight
        self.layer = layer
        self.calibration = calibration
        self.input_kind = input_kind  # type: ignore[misc]  # per-instance value of the contract's ClassVar
        self.seed = seed
        self.n_jobs = n_jobs

    # ----------------------------------------------------------------- validation

    def check_params(self) -> None:
        if not _is_list(self.C_grid) or not list(self.C_grid):
            raise ValueError(f"svm: C_grid must be a non-empty list of positive numbers, got {self.C_grid!r}")
        for c in self.C_grid:
            if isinstance(c, bool) or not isinstance(c, numbers.Real) or not c > 0:
                raise ValueError(f"svm: C_grid values must be positive numbers, got {c!r}")
        if not _is_list(self.gamma_grid) or not list(self.gamma_grid):
            raise ValueError(f"svm: gamma_grid must be a non-empty list, got {self.gamma_grid!r}")
        for g in self.gamma_grid:
            number = isinstance(g, numbers.Real) and not isinstance(g, bool) and g > 0
            if not (number or g in _GAMMA_WORDS or _scale_factor(g) is not None):
                raise ValueError(
                    f"svm: gamma_grid values must be positive numbers, one of {_GAMMA_WORDS} or 'scale*F' "
                    f"(F > 0), got {g!r}"
                )
        if not _is_int(self.inner_folds) or self.inner_folds < 2:
            raise ValueError(f"svm: inner_folds must be an integer >= 2, got {self.inner_folds!r}")
        if not isinstance(self.scoring, str):
            raise ValueError(f"svm: scoring must be a scikit-learn scorer name, got {self.scoring!r}")
        get_scorer(self.scoring)  # raises ValueError listing the valid names
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"svm: class_weight must be None or 'balanced', got {self.class_weight!r}")
        if not (self.layer is None or self.layer == "auto" or _is_int(self.layer)):
            raise ValueError(f"svm: layer must be None, an integer or 'auto', got {self.layer!r}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"svm: calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"svm: input_kind must be one of {INPUT_KINDS}, got {self.input_kind!r}")

    def _candidate_layers(self, X: np.ndarray) -> list[int | None]:
        """Layers to try: [None] for (N, F) inputs, one index, or all of them for "auto"."""
        if self.layer is None:
            if X.ndim == 3 and X.shape[1] == 1:  # one hidden state (e.g. CTranslate2's Whisper): no choice to make
                return [0]
            if X.ndim != 2:
                raise ValueError(f"svm: expected (N, F) features, got shape {X.shape}; for (N, L, F) set layer")
            return [None]
        if X.ndim != 3:
            raise ValueError(f"svm: layer={self.layer!r} needs (N, L, F) features, got shape {X.shape}")
        if self.layer == "auto":
            return list(range(X.shape[1]))
        if not -X.shape[1] <= int(self.layer) < X.shape[1]:
            raise ValueError(f"svm: layer {self.layer} out of range for {X.shape[1]} layers")
        return [int(self.layer) % X.shape[1]]

    # ----------------------------------------------------------------- training

    def _search_pipeline(self) -> Pipeline:
        svc = SVC(kernel="rbf", class_weight=self.class_weight)
        return Pipeline([("scale", StandardScaler()), ("svm", svc)])

    def _final_pipeline(self, C: float, gamma: float | str, splits: list[Split]) -> Pipeline:
        svc = SVC(kernel="rbf", C=C, gamma=gamma, class_weight=self.class_weight)
        calibrated = CalibratedClassifierCV(svc, method=self.calibration, cv=splits, ensemble=False, n_jobs=self.n_jobs)
        return Pipeline([("scale", StandardScaler()), ("svm", calibrated)])

    def _search(self, X: np.ndarray, y: np.ndarray, splits: list[Split], layer: int | None) -> list[dict[str, Any]]:
        """Score every (C, gamma) on the inner folds for one layer."""
        grid = {
            "svm__C": [float(c) for c in self.C_grid],
            "svm__gamma": [_gamma_value(g, _select(X, layer)) for g in self.gamma_grid],
        }
        search = GridSearchCV(
            self._search_pipeline(),
            grid,
            scoring=self.scoring,
            cv=splits,
            refit=False,  # the chosen SVC is refitted below, calibrated
            n_jobs=self.n_jobs,
            error_score="raise",
        )
        with warnings.catch_warnings():
            # A speaker may lack a class, so a validation fold can miss one the SVM predicts;
            # balanced accuracy then warns but is still the right score for that fold.
            warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true", category=UserWarning)
            search.fit(_select(X, layer), y)
        results = search.cv_results_
        return [
            {
                "layer": layer,
                "C": params["svm__C"],
                "gamma": params["svm__gamma"],
                "mean_score": float(mean),
                "std_score": float(std),
            }
            for params, mean, std in zip(results["params"], results["mean_test_score"], results["std_test_score"])
        ]

    def fit(self, X: Any, y: Any, groups: Any = None) -> "SVMClassifier":
        """Select C, gamma (and layer) by speaker-grouped inner CV, then train on all of `X`.

        Args:
            X: (N, F) features, or (N, L, F) with ``layer`` set.
            y: N labels (kept as strings).
            groups: N speaker ids for the inner folds; None makes selection speaker-dependent.

        Returns:
            self.

        Raises:
            ValueError: Bad hyper-parameters, shapes, lengths, NaN/Inf, or too few samples.
        """
        self.check_params()
        X = _finite_float(X)
        y = _labels(y)
        if len(X) != len(y) or (groups is not None and len(groups) != len(y)):
            raise ValueError(f"svm: {len(X)} rows, {len(y)} labels, {None if groups is None else len(groups)} groups")
        layers = self._candidate_layers(X)
        splits, self.inner_cv_ = inner_splits(y, groups, int(self.inner_folds), int(self.seed))
        check_training_folds(splits, y)
        rows = [row for layer in layers for row in self._search(X, y, splits, layer)]
        best = max(rows, key=lambda row: row["mean_score"])  # max keeps the first of ties
        self.cv_results_ = rows
        self.best_score_ = best["mean_score"]
        self.best_params_ = {"C": best["C"], "gamma": best["gamma"], "layer": best["layer"]}
        self.layer_ = best["layer"]
        logger.info(
            "svm: chose %s (inner %s %.3f, %s)", self.best_params_, self.scoring, self.best_score_, self.inner_cv_
        )
        chosen = _select(X, self.layer_)
        self.pipeline_ = self._final_pipeline(best["C"], best["gamma"], calibration_splits(splits, y, int(self.seed)))
        self.pipeline_.fit(chosen, y)
        self._set_shape(X)
        self.classes_ = np.asarray(self.pipeline_.classes_)
        return self

    def _set_shape(self, X: np.ndarray) -> None:
        self.n_layers_ = None if X.ndim == 2 else int(X.shape[1])
        self.n_features_in_ = int(X.shape[-1])

    # ----------------------------------------------------------------- inference

    def _prepare(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        X = _finite_float(X)
        expected = (self.n_features_in_,) if self.n_layers_ is None else (self.n_layers_, self.n_features_in_)
        if X.shape[1:] != expected:
            raise ValueError(f"svm: expected features of shape (N, {', '.join(map(str, expected))}), got {X.shape}")
        return _select(X, self.layer_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated class probabilities, shape (N, len(classes_)), columns in ``classes_`` order."""
        return np.asarray(self.pipeline_.predict_proba(self._prepare(X)), dtype=np.float64)

    # ----------------------------------------------------------------- persistence

    def save_state(self, folder: Path) -> dict[str, Any]:
        """Write the pipeline to ``folder/estimator.skops``; return the selection as JSON-able data."""
        from serkit.models.skops_io import import_skops_io

        sio = import_skops_io()

        check_is_fitted(self, "pipeline_")
        sio.dump(self.pipeline_, Path(folder) / ESTIMATOR_FILE)
        return {
            "estimator": ESTIMATOR_FILE,
            "classes": [str(c) for c in self.classes_],
            "best_params": self.best_params_,
            "best_score": self.best_score_,
            "layer": self.layer_,
            "n_layers": self.n_layers_,
            "n_features": self.n_features_in_,
            "inner_cv": self.inner_cv_,
            "cv_results": self.cv_results_,
        }

    @classmethod
    def load_state(cls, params: dict[str, Any], state: dict[str, Any], folder: Path) -> "SVMClassifier":
        """Rebuild a fitted SVM from `save_state`'s dict and the skops file (no code from it runs).

        Raises:
            ValueError: Untrusted or malformed estimator file, or labels that disagree with it.
            KeyError: `state` lacks an entry.
        """
        model = cls(**params)
        pipeline = load_estimator(Path(folder) / ESTIMATOR_FILE)
        classes = [str(c) for c in state["classes"]]
        if [str(c) for c in pipeline.classes_] != classes:
            raise ValueError(
                f"svm: model.json labels {classes} disagree with the estimator's {list(pipeline.classes_)}"
            )
        model.pipeline_ = pipeline
        model.classes_ = np.asarray(pipeline.classes_)
        model.best_params_ = dict(state["best_params"])
        model.best_score_ = state.get("best_score")
        model.layer_ = state["layer"]
        model.n_layers_ = state["n_layers"]
        model.n_features_in_ = int(state["n_features"])
        model.inner_cv_ = state.get("inner_cv", {})
        model.cv_results_ = state.get("cv_results", [])
        return model

    def to_onnx(self, opset: int) -> OnnxGraph:
        """The fitted pipeline as a float64 ONNX graph (see `serkit.models.svm_onnx`)."""
        from serkit.models.svm_onnx import svm_graph

        check_is_fitted(self, "pipeline_")
        return svm_graph(self, opset)

def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _select(X: np.ndarray, layer: int | None) -> np.ndarray:
    """The (N, F) matrix of one layer, or `X` itself for 2-D inputs."""
    return X if layer is None else np.ascontiguousarray(X[:, layer, :])

"""scikit-learn's estimator conventions without importing scikit-learn (issue #14).

`EstimatorParams` gives a class scikit-learn's hyper-parameter API - ``get_params`` /
``set_params`` read from the ``__init__`` signature, what `sklearn.base.clone` needs, a
``repr`` of the changed parameters, the classifier tags ``__sklearn_tags__`` and ``score`` -
with the same semantics as `sklearn.base.BaseEstimator` and `sklearn.base.ClassifierMixin`.
scikit-learn is imported only by the methods that are scikit-learn's own business (the tags,
``score``): ``import sklearn.base`` pulls in scipy.stats and pandas, seconds of a cold
`serkit predict` with a CNN that never uses them. Loading a model calls ``get_params``, so it
must not import scikit-learn.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from typing import Any

__all__ = ["EstimatorParams"]


class EstimatorParams:
    """Mixin: scikit-learn's estimator and classifier API, scikit-learn imported on demand.

    Subclasses store each ``__init__`` argument unchanged under its own name (scikit-learn's
    rule); ``__init__`` takes no ``*args``.
    """

    #: scikit-learn < 1.6 read the kind of estimator from here (1.6+ reads the tags).
    _estimator_type = "classifier"

    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The sorted ``__init__`` argument names (as `sklearn.base.BaseEstimator._get_param_names`).

        Raises:
            RuntimeError: ``__init__`` takes ``*args``.
        """
        init = cls.__init__
        if init is object.__init__:
            return []
        parameters = [p for p in inspect.signature(init).parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD]
        if any(p.kind == p.VAR_POSITIONAL for p in parameters):
            raise RuntimeError(f"{cls.__name__}: estimators specify their parameters in __init__'s signature (no *args)")
        return sorted(p.name for p in parameters)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyper-parameter name -> value; with `deep`, nested estimators' as ``name__sub``."""
        out: dict[str, Any] = {}
        for key in self._get_param_names():
            value = getattr(self, key)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{key}__{k}", v) for k, v in value.get_params().items())
            out[key] = value
        return out

    def set_params(self, **params: Any) -> "EstimatorParams":
        """Set hyper-parameters (``name__sub`` reaches into a nested estimator); returns self.

        Raises:
            ValueError: A name that is not a hyper-parameter (the message lists the valid ones).
        """
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested: dict[str, dict[str, Any]] = defaultdict(dict)
        for key, value in params.items():
            key, delim, sub_key = key.partition("__")
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for estimator {self}. "
                                 f"Valid parameters are: {self._get_param_names()!r}.")
            if delim:
                nested[key][sub_key] = value
            else:
                setattr(self, key, value)
                valid[key] = value
        for key, sub_params in nested.items():
            valid[key].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        """``Name(param=value, ...)`` with the parameters that differ from their defaults."""
        defaults: dict[str, Any] = {}  # a subclass's ``**kwargs`` reach its bases' arguments
        for cls in reversed(type(self).__mro__):
            if "__init__" in vars(cls) and cls is not object:
                defaults.update((name, p.default) for name, p in inspect.signature(cls.__init__).parameters.items())
        changed = []
        for key, value in self.get_params(deep=False).items():
            default = defaults.get(key, inspect.Parameter.empty)
            try:
                same = default is not inspect.Parameter.empty and bool(value == default) and type(value) is type(default)
            except (TypeError, ValueError):  # arrays and the like compare element-wise
                same = False
            if not same:
                changed.append(f"{key}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags of a classifier (as `sklearn.base.ClassifierMixin`'s); imports scikit-learn."""
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    transformer_tags=None, regressor_tags=None, classifier_tags=ClassifierTags())

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy of ``predict(X)`` against `y` (as `sklearn.base.ClassifierMixin.score`)."""
        from sklearn.metrics import accuracy_score

        return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))  # type: ignore[attr-defined]

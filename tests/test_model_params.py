"""serkit classifiers keep scikit-learn's estimator API without importing scikit-learn (issue #14)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from serkit.models.params import EstimatorParams

#: Run in a fresh process: build, read, change and print a model; scikit-learn must stay out.
_NO_SKLEARN = """
import sys
from serkit.models.base import build_model
from serkit.models.io import load_model  # what a prediction imports to load a model
model = build_model("pooled", hidden=32)
params = model.get_params()
model.set_params(hidden=16)
text = repr(model)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy", "pandas")), text)
"""


class _Inner(EstimatorParams):
    def __init__(self, a: int = 1, b: tuple = ()) -> None:
        self.a = a
        self.b = b


class _Outer(EstimatorParams):
    def __init__(self, inner: _Inner | None = None, c: float = 0.5) -> None:
        self.inner = inner
        self.c = c

    def predict(self, X):  # noqa: ANN001 - scikit-learn's signature
        return np.asarray(X)[:, 0]


def test_a_model_is_built_and_configured_without_scikit_learn() -> None:
    done = subprocess.run([sys.executable, "-c", _NO_SKLEARN], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    imported, _, text = done.stdout.strip().partition(" ")
    assert imported == "[]" and text.startswith("PooledClassifier(") and "hidden=16" in text and "lr=" not in text


def test_params_follow_scikit_learn() -> None:
    from sklearn.base import BaseEstimator

    class Reference(BaseEstimator):
        def __init__(self, inner=None, c=0.5):  # noqa: ANN001
            self.inner = inner
            self.c = c

    ours = _Outer(_Inner(a=2), c=1.0)
    reference = Reference(_Inner(a=2), c=1.0)
    assert ours.get_params(deep=True).keys() == reference.get_params(deep=True).keys()
    assert ours.set_params(c=2.0, inner__a=3) is ours and ours.c == 2.0 and ours.inner.a == 3
    with pytest.raises(ValueError, match="Invalid parameter 'd'.*Valid parameters are: \\['c', 'inner'\\]"):
        ours.set_params(d=1)
    assert repr(_Outer(c=0.5)) == "_Outer()" and repr(_Outer(c=1)) == "_Outer(c=1)"


def test_clone_tags_and_score_come_from_scikit_learn() -> None:
    from sklearn.base import clone, is_classifier

    model = _Outer(_Inner(a=2, b=(1, 2)), c=1.0)
    copy = clone(model)
    assert copy is not model and copy.inner is not model.inner and copy.get_params(deep=True) == {
        **model.get_params(deep=True), "inner": copy.inner}
    assert is_classifier(model)
    assert model.score(np.array([[0], [1], [1]]), np.array([0, 1, 0])) == pytest.approx(2 / 3)

"""Loading the SVM's skops file: only `ALLOWED_TYPES`, only serkit's pipeline (see `serkit.models.svm`).

``skops.io`` is imported through `serkit.models.skops_io.import_skops_io`, without skops's own
default listing of trusted types: the file's types are checked against `ALLOWED_TYPES` here.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

__all__ = ["ALLOWED_TYPES", "ESTIMATOR_FILE", "load_estimator"]

#: The skops file written into the model folder.
ESTIMATOR_FILE = "estimator.skops"

#: Types an ``estimator.skops`` file may hold beyond builtins, containers and numpy dtypes,
#: which skops trusts by itself (as serkit imports it, skops trusts no scikit-learn estimator
#: by default: `serkit.models.skops_io`). Anything else is refused before loading.
ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.svm._classes.SVC",
        "sklearn.calibration.CalibratedClassifierCV",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._TemperatureScaling",
        "sklearn.calibration._SigmoidCalibration",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.float64",
        "numpy.int64",
        "numpy.int32",
        "numpy.str_",
    }
)


def _check_structure(estimator: Any, path: Path) -> Pipeline:
    steps = getattr(estimator, "steps", None) if type(estimator) is Pipeline else None
    ok = (
        isinstance(steps, list)
        and [name for name, _ in steps] == ["scale", "svm"]
        and type(steps[0][1]) is StandardScaler
        and type(steps[1][1]) is CalibratedClassifierCV
        and type(steps[1][1].estimator) is SVC
    )
    if not ok:
        raise ValueError(
            f"{path}: not a serkit SVM pipeline (StandardScaler -> calibrated SVC); got {type(estimator).__name__}"
        )
    return estimator


def load_estimator(path: str | Path) -> Pipeline:
    """Load a pipeline written by `SVMClassifier.save_state` without running code from the file.

    Raises:
        ValueError: Unreadable file, a type outside `ALLOWED_TYPES`, or the wrong structure.
        OSError: The file cannot be opened.
    """
    from serkit.models.skops_io import import_skops_io

    sio = import_skops_io()

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    try:
        untrusted = sio.get_untrusted_types(file=path)
        refused = sorted(set(untrusted) - ALLOWED_TYPES)
        if refused:
            raise ValueError(f"{path}: refusing to load untrusted type(s) {refused}; allowed: {sorted(ALLOWED_TYPES)}")
        estimator = sio.load(path, trusted=list(untrusted))
    except (zipfile.BadZipFile, KeyError, AttributeError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable skops file ({type(exc).__name__}: {exc})") from None
    return _check_structure(estimator, path)

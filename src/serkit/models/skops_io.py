"""Importing ``skops.io`` for serkit's SVM files without its costly start (issue #14).

When ``skops.io`` is imported, its module ``skops.io._trusted_types`` computes the types skops
trusts by default: every scikit-learn estimator (`sklearn.utils.all_estimators`, which imports
every scikit-learn package, and through ``sklearn.externals.array_api_compat.torch``, torch)
and every scipy.special ufunc (each looked up by a scan of all loaded modules: 928 scans, the
longer the more modules are loaded). On a cold `serkit predict` with an SVM that was seconds
for types no serkit file holds.

serkit does not rely on those defaults: `serkit.models.svm_io.load_estimator` lists the file's
types with ``skops.io.get_untrusted_types``, refuses any outside its own `ALLOWED_TYPES` and
passes the rest as ``trusted``. So `import_skops_io` gives skops, in place of that module, one
with the cheap lists computed as skops computes them (builtins, containers, numpy dtypes,
numpy ufuncs, numpy bit generators) and empty lists of scikit-learn estimators, scikit-learn
internals and scipy ufuncs: skops then reports those types as untrusted and serkit decides
about them, so a file can only be stricter-checked, never looser. The replacement holds for
the process: another ``skops.io.load`` in it trusts only the cheap defaults plus what it is
given. A skops version that imports a name the replacement lacks is imported as usual (with
its own listing, torch's array-API adapter refused while it runs, as before).
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
import warnings
from types import ModuleType
from typing import Any

__all__ = ["TRUSTED_TYPES_MODULE", "cheap_trusted_types", "import_skops_io"]

logger = logging.getLogger(__name__)

#: The skops module whose import-time listing is replaced.
TRUSTED_TYPES_MODULE = "skops.io._trusted_types"
#: Library -> the scikit-learn package that imports it only to adapt its arrays (the array API),
#: which no saved serkit model uses.
_ARRAY_API_ADAPTERS = {"torch": "sklearn.externals.array_api_compat.torch"}


class _Refuse(importlib.abc.MetaPathFinder):
    """A finder that makes importing the named modules fail (ModuleNotFoundError)."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name in self.names:
            raise ModuleNotFoundError(f"{name} is not imported while skops.io starts", name=name)
        return None


def _type_name(obj: Any) -> str | None:
    """skops's ``get_type_name`` for objects that say their module (None for the others)."""
    module = getattr(obj, "__module__", None)
    return None if module is None else f"{module}.{obj.__name__}"


def cheap_trusted_types() -> ModuleType:
    """A stand-in for ``skops.io._trusted_types``: skops's cheap default lists, no estimator or scipy listing.

    The lists of builtins, containers, numpy dtypes, numpy ufuncs and numpy bit generators are
    computed as skops 0.16 computes them (a test compares them with skops's own); the
    scikit-learn and scipy lists are empty (see the module docstring).
    """
    import numpy as np

    module = ModuleType(TRUSTED_TYPES_MODULE, "serkit's stand-in: skops's cheap default type lists only")
    module.PRIMITIVES_TYPES = [int, float, str, bool]  # type: ignore[attr-defined]
    module.PRIMITIVE_TYPE_NAMES = ["builtins." + t.__name__ for t in module.PRIMITIVES_TYPES]  # type: ignore[attr-defined]
    module.CONTAINER_TYPES = [list, set, map, tuple]  # type: ignore[attr-defined]
    module.CONTAINER_TYPE_NAMES = ["builtins." + t.__name__ for t in module.CONTAINER_TYPES]  # type: ignore[attr-defined]
    with warnings.catch_warnings():  # dir(numpy) reaches deprecated aliases
        warnings.simplefilter("ignore", DeprecationWarning)
        ufuncs = {name for attr in dir(np) if isinstance(obj := getattr(np, attr), np.ufunc) and (name := _type_name(obj))}
    module.NUMPY_UFUNC_TYPE_NAMES = sorted(ufuncs)  # type: ignore[attr-defined]
    module.NUMPY_DTYPE_TYPE_NAMES = sorted(  # type: ignore[attr-defined]
        {name for dtype in np.sctypeDict.values() if (name := _type_name(dtype)) and name.startswith("numpy")}
    )
    module.NUMPY_RANDOM_BIT_GENERATOR_TYPE_NAMES = sorted(  # type: ignore[attr-defined]
        f"numpy.random.{attr}" for attr in dir(np.random)
        if isinstance(obj := getattr(np.random, attr), type) and issubclass(obj, np.random.BitGenerator)
        and obj is not np.random.BitGenerator
    )
    module.SKLEARN_ESTIMATOR_TYPE_NAMES = []  # type: ignore[attr-defined]
    module.SKLEARN_INTERNAL_TYPE_NAMES = []  # type: ignore[attr-defined]
    module.SCIPY_UFUNC_TYPE_NAMES = []  # type: ignore[attr-defined]
    return module


def _forget_skops_io() -> None:
    for name in [n for n in sys.modules if n == "skops.io" or n.startswith("skops.io.")]:
        del sys.modules[name]


def import_skops_io() -> ModuleType:
    """``skops.io``, imported without its default type listing (see the module docstring) and without torch."""
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    refused = _Refuse({adapter for library, adapter in _ARRAY_API_ADAPTERS.items() if library not in sys.modules})
    sys.meta_path.insert(0, refused)
    try:
        sys.modules[TRUSTED_TYPES_MODULE] = cheap_trusted_types()
        try:
            import skops.io
        except ImportError as exc:  # a skops that wants a list the stand-in lacks: its own listing
            logger.debug("skops.io with its own type listing (%s)", exc)
            _forget_skops_io()
            import skops.io
    finally:
        sys.meta_path.remove(refused)
    return skops.io

"""skops.io as serkit imports it: no default type listing, skops's cheap lists unchanged (issue #14)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("skops")

#: Run in a fresh process: skops's own default lists (skops.io imported as it comes).
_SKOPS_OWN = """
import json
import skops.io._trusted_types as t
print(json.dumps({name: getattr(t, name) for name in %r}))
"""
_CHEAP = ("PRIMITIVE_TYPE_NAMES", "CONTAINER_TYPE_NAMES", "NUMPY_UFUNC_TYPE_NAMES", "NUMPY_DTYPE_TYPE_NAMES",
          "NUMPY_RANDOM_BIT_GENERATOR_TYPE_NAMES")
#: Run in a fresh process: serkit's import of skops.io; what it trusts and which listing ran.
_SERKIT = """
import json, sys
from serkit.models.skops_io import import_skops_io
sio = import_skops_io()
t = sys.modules["skops.io._trusted_types"]
print(json.dumps({"estimators": t.SKLEARN_ESTIMATOR_TYPE_NAMES, "scipy": t.SCIPY_UFUNC_TYPE_NAMES,
                  "listed": "sklearn.ensemble" in sys.modules, "torch": "torch" in sys.modules,
                  "load": callable(sio.load)}))
"""


def _run(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_cheap_lists_are_skops_own() -> None:
    from serkit.models.skops_io import cheap_trusted_types

    ours = cheap_trusted_types()
    own = _run(_SKOPS_OWN % (_CHEAP,))
    for name in _CHEAP:
        assert getattr(ours, name) == own[name], name


def test_serkit_imports_skops_io_without_its_estimator_listing() -> None:
    report = _run(_SERKIT)
    assert report == {"estimators": [], "scipy": [], "listed": False, "torch": False, "load": True}


def test_a_skops_that_wants_more_is_imported_with_its_own_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in that lacks a name skops imports: skops.io comes in as usual, its own lists in place."""
    from serkit.models import skops_io

    saved = {name: module for name, module in sys.modules.items() if name == "skops.io" or name.startswith("skops.io.")}
    lacking = skops_io.cheap_trusted_types()
    del lacking.SCIPY_UFUNC_TYPE_NAMES
    monkeypatch.setattr(skops_io, "cheap_trusted_types", lambda: lacking)
    try:
        skops_io._forget_skops_io()
        sio = skops_io.import_skops_io()
        assert callable(sio.load)
        assert sys.modules["skops.io._trusted_types"] is not lacking
        assert sys.modules["skops.io._trusted_types"].SKLEARN_ESTIMATOR_TYPE_NAMES  # skops's own listing
    finally:
        skops_io._forget_skops_io()
        sys.modules.update(saved)

"""Old import paths of modules that moved into the stage packages keep working.

serkit's stage modules sat side by side in ``serkit/`` until they were grouped by stage
(``data``, ``evaluation``, ``experiment``, ``inference``). Code written against the old paths
(``import serkit.audio``, ``from serkit.splits import ...``, ``serkit.datasets.emovo``) gets the
moved module itself, not a copy, with a `DeprecationWarning` naming the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: Old module path -> where it lives now.
MOVED = {
    "serkit.audio": "serkit.data.audio",
    "serkit.audio_av": "serkit.data.audio_av",
    "serkit.quality": "serkit.data.quality",
    "serkit.schema": "serkit.data.schema",
    "serkit.synth": "serkit.data.synth",
    "serkit.download": "serkit.data.download",
    "serkit.datasets": "serkit.data.datasets",
    "serkit.splits": "serkit.evaluation.splits",
    "serkit.metrics": "serkit.evaluation.metrics",
    "serkit.report": "serkit.evaluation.report",
    "serkit.transforms": "serkit.models.transforms",
    "serkit.config": "serkit.experiment.config",
    "serkit.export": "serkit.inference.export",
    "serkit.service": "serkit.serving",
}


def new_name(fullname: str) -> str | None:
    """The current path of ``fullname`` if it (or a package above it) moved, else None."""
    for old, new in MOVED.items():
        if fullname == old or fullname.startswith(old + "."):
            return new + fullname[len(old):]
    return None


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module: ModuleType) -> None:
        warnings.warn(f"{module.__name__} moved to {self.target}; import it from there", DeprecationWarning, stacklevel=2)
        # The import system returns whatever sys.modules holds for the name after exec_module,
        # so the old name becomes the moved module itself (one object, one set of globals).
        sys.modules[module.__name__] = importlib.import_module(self.target)


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        moved = new_name(fullname)
        if moved is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedLoader(moved))


def install() -> None:
    """Put the finder first on `sys.meta_path` (once): before the path finder would load a second copy."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())

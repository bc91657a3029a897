"""Experiments: the typed run configuration parsed from a recipe (`config`) and the runner that extracts, splits, trains and reports (`runner`).

`run_recipe`, `load_recipe` and `RunResult` are importable from here; they are loaded on first
use, so importing the package does not import the training stack.
"""

from importlib import import_module
from typing import Any

_LAZY = {"run_recipe": "runner", "load_recipe": "runner", "RunResult": "runner", "load_config": "config", "RunConfig": "config", "RecipeError": "config"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

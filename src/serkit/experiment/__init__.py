"""Experiments: the typed run configuration parsed from a recipe (`config`) and the runner that extracts, splits, trains and reports (`runner`).

`run_recipe`, `load_recipe` and `RunResult` are importable from here; they are loaded on first
use, so importing the package does not import the training stack.
"""

from serkit._lazy import lazy_attributes

_LAZY = {
    "run_recipe": "serkit.experiment.runner",
    "load_recipe": "serkit.experiment.runner",
    "RunResult": "serkit.experiment.runner",
    "load_config": "serkit.experiment.config",
    "RunConfig": "serkit.experiment.config",
    "RecipeError": "serkit.experiment.config",
}

__all__ = sorted(_LAZY)
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

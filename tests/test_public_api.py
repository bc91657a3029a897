"""The names a user needs are at the top of the package, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import serkit

PUBLIC = {
    "PAPER_SPEC", "AudioError", "AudioSpec", "ManifestError", "__version__", "read_manifest",
    "Predictor", "Prediction", "run_recipe", "load_recipe", "RunResult", "RecipeError",
    "load_model", "save_model", "build_model", "build_extractor", "SpeakerNorm", "load_config", "RunConfig",
}


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert set(serkit.__all__) == PUBLIC
    from serkit.experiment.runner import run_recipe
    from serkit.inference.predictor import Predictor
    from serkit.inference.results import Prediction

    assert serkit.Predictor is Predictor and serkit.run_recipe is run_recipe
    assert serkit.Prediction is Prediction and serkit.inference.Prediction is Prediction
    for name in PUBLIC:
        assert getattr(serkit, name) is not None
    assert "Predictor" in dir(serkit)


def test_importing_serkit_imports_no_heavy_library() -> None:
    code = ("import sys, serkit; heavy = ('torch', 'lightning', 'transformers', 'sklearn', 'pandas', 'fastapi', 'av', 'ctranslate2');"
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_names_are_attribute_errors_and_submodules_still_import() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        serkit.nonsense  # noqa: B018
    from serkit.evaluation import splits

    assert splits.make_folds


def test_the_stage_packages_say_their_job_and_hold_the_moved_modules() -> None:
    import importlib
    import pkgutil

    stages = ("data", "features", "models", "evaluation", "experiment", "inference", "serving")
    for stage in stages:
        package = importlib.import_module(f"serkit.{stage}")
        assert package.__doc__ and package.__doc__.strip(), stage
    top_level = {info.name for info in pkgutil.iter_modules(serkit.__path__)}
    # Only the stage packages and cross-cutting helpers sit at the top, not stage modules.
    assert top_level == {*stages, "__main__", "_lazy", "_moved", "atomic", "cli", "commands", "precision"}


def test_old_module_paths_give_the_moved_module_itself_with_a_deprecation_warning() -> None:
    import pytest

    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "import serkit.data.datasets.emovo as new_emovo, serkit.evaluation.splits as new_splits\n"
            "for old, new in (('serkit.splits', new_splits), ('serkit.datasets.emovo', new_emovo)):\n"
            "    try:\n"
            "        __import__(old)\n"
            "    except DeprecationWarning as warning:\n"
            "        print(warning)\n"
            "warnings.simplefilter('ignore', DeprecationWarning)\n"
            "import serkit.splits, serkit.datasets.emovo, serkit.service, serkit.serving\n"
            "from serkit.transforms import SpeakerNorm\n"
            "import serkit.models.transforms as t\n"
            "print(serkit.splits is new_splits, serkit.datasets.emovo is new_emovo, serkit.service is serkit.serving, SpeakerNorm is t.SpeakerNorm)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "serkit.splits moved to serkit.evaluation.splits; import it from there"
    assert out[1].startswith("serkit.datasets moved to serkit.data.datasets")
    assert out[-1] == "True True True True"
    with pytest.raises(ModuleNotFoundError):
        __import__("serkit.splits_that_never_existed")


def test_stage_packages_offer_their_names_lazily_and_refuse_unknown_ones() -> None:
    import pytest

    code = ("import sys, serkit.experiment, serkit.inference\n"
            "print(sorted(m for m in ('torch', 'sklearn', 'pandas') if m in sys.modules))\n"
            "import serkit.experiment.runner as runner, serkit.inference.predictor as predictor\n"
            "print(serkit.experiment.run_recipe is runner.run_recipe, serkit.inference.Predictor is predictor.Predictor,"
            " 'run_recipe' in dir(serkit.experiment))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["[]", "True True True"]
    import serkit.inference

    with pytest.raises(AttributeError, match="module 'serkit.inference' has no attribute 'nonsense'"):
        serkit.inference.nonsense  # noqa: B018

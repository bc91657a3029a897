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
    from serkit.experiment import run_recipe
    from serkit.inference import Predictor

    assert serkit.Predictor is Predictor and serkit.run_recipe is run_recipe
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
    from serkit import splits

    assert splits.make_folds

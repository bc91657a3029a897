"""Every shipped recipe parses, and each of its runs builds its extractor, model and protocol."""

from __future__ import annotations

from pathlib import Path

import pytest

from serkit.experiment import _model_for, build_run_extractor, load_recipe, resolve_variants
from serkit.splits import PROTOCOLS

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.toml"))


def test_the_paper_its_baselines_and_ablations_ship():
    names = {p.stem for p in RECIPES}
    assert {"shemo_paper", "shemo_svm_egemaps", "shemo_efficientnet", "shemo_speaker_independent",
            "shemo_emobox", "cross_corpus", "demo", "ablation_features", "ablation_depth",
            "ablation_efficientnet_pretrained", "ablation_layers", "ablation_ssl_models"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_builds(path: Path):
    for config in resolve_variants(load_recipe(path)):
        extractor = build_run_extractor(config)  # settings are checked; no model is loaded
        model = _model_for(config, seed=0)
        assert config["protocol"]["name"] in PROTOCOLS
        assert model.input_kind, f"{path.stem}: model without input kind"
        if config["features"]["kind"] != "ssl":
            assert extractor.spec.sampling_rate == 16000


def test_the_paper_recipe_is_the_papers_setup():
    [config] = resolve_variants(load_recipe(next(p for p in RECIPES if p.stem == "shemo_paper")))
    extractor = build_run_extractor(config)
    assert config["corpus"]["options"] == {"classes": 5}
    assert extractor.config.model == "facebook/wav2vec2-large-xlsr-53" and extractor.config.mode == "paper"
    assert extractor.spec.duration == 7.0 and extractor.spec.sampling_rate == 16000
    model = _model_for(config, seed=0)
    assert (model.depth, model.lr, model.batch_size, model.input_size) == (7, 1e-3, 4, 300)
    assert config["protocol"]["name"] == "stratified_kfold" and config["protocol"]["options"]["n_folds"] == 5

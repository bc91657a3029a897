"""Every shipped recipe parses, and each of its runs builds its extractor, model and protocol."""

from __future__ import annotations

from pathlib import Path

import pytest

from serkit.experiment.runner import _model_for, build_run_extractor, load_recipe, resolve_variants
from serkit.evaluation.splits import PROTOCOLS

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


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_extract_with_a_recipe_fills_the_cache_its_runs_read(path: Path):
    """`serkit extract -f RECIPE` builds what `serkit run RECIPE` builds ([audio] included).

    It once read only [features]: shemo_efficientnet's cache had duration None, not 7 s, and
    was never reused by the run.
    """
    import argparse

    from serkit.commands.extract import _extractors_for

    run_fingerprints = []
    for config in resolve_variants(load_recipe(path)):
        fingerprint = build_run_extractor(config).fingerprint()
        run_fingerprints.append(fingerprint)
        args = argparse.Namespace(features=str(path), set=[], variant=[config["variant"]] if "variant" in config else [])
        assert [e.fingerprint() for e in _extractors_for(args)] == [fingerprint], config.get("variant")
    whole = argparse.Namespace(features=str(path), set=[], variant=[])
    assert [e.fingerprint() for e in _extractors_for(whole)] == list(dict.fromkeys(run_fingerprints))


def test_extract_after_run_finds_every_utterance_cached(tmp_path: Path, capsys):
    import json

    from serkit.cli import main

    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
name = "r"
[corpus]
name = "csv"
root = "{tmp_path}/corpus/metadata.csv"
synth = {{ speakers = 3, per_emotion = 2, seed = 0, voice = "source-filter" }}
[audio]
duration = 2.0
[features]
kind = "mfcc"
[model]
name = "svm"
params = {{ input_kind = "stats", C_grid = [1.0], gamma_grid = ["scale"] }}
[protocol]
name = "loso"
[run]
output = "{tmp_path}/runs"
cache = "{tmp_path}/cache"
bootstrap = 50
final_model = false
report = false
""")
    assert main(["run", str(recipe), "--no-progress"]) == 0
    manifest = tmp_path / "runs" / "r" / "manifest.csv"
    capsys.readouterr()
    assert main(["extract", str(manifest), "-f", str(recipe), "--cache", str(tmp_path / "cache"), "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["computed"] == 0 and done["already_cached"] == 3 * 4 * 2
    assert len([d for d in (tmp_path / "cache").iterdir() if d.is_dir()]) == 1
    assert main(["extract", str(manifest), "-f", str(recipe), "--json"]) == 0  # no --cache: the recipe's run.cache
    assert json.loads(capsys.readouterr().out)["already_cached"] == 3 * 4 * 2
    assert main(["extract", str(manifest), "-f", "mfcc", "--cache", str(tmp_path / "cache"), "--variant", "x"]) != 0

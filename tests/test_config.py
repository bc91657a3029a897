"""The typed configuration: recipes parsed once, every section checked at load, before any work."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from serkit.data.audio import AudioSpec
from serkit.experiment.config import RecipeError, RunConfig, load_config, load_recipe, parse_value, resolve_variants
from serkit.experiment.runner import run_recipe

from tests.test_experiment import RECIPE

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.toml"))


def _write(tmp_path: Path, replace: tuple[str, str] | None = None, extra: str = "") -> Path:
    text = RECIPE.format(root=tmp_path)
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    path = tmp_path / "r.toml"
    path.write_text(text + extra)
    return path


def test_every_shipped_recipe_loads_typed_and_round_trips():
    for path in RECIPES:
        for config in load_config(path):
            assert isinstance(config, RunConfig) and config.features.kind and config.model.name
            assert RunConfig.from_dict(config.to_dict()) == config
            assert config.run_dir.name == (config.variant or config.name)


def test_sections_are_typed(tmp_path: Path):
    [config] = load_config(_write(tmp_path), ["audio.duration=3.0", "run.seeds=[0, 1]"])
    assert config.audio == AudioSpec(duration=3.0)
    assert config.run.seeds == (0, 1) and config.run.bootstrap == 200 and config.run.final_model is True
    assert config.protocol.name == "loso" and config.protocol.val_fraction == 0.2
    assert config.model.params["C_grid"] == [1.0, 10.0]
    assert config.corpora[0].synth == {"speakers": 4, "per_emotion": 3, "seed": 1, "voice": "source-filter"}
    assert config.cache_root == tmp_path / "cache" and config.run_name == "small"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.name = "other"  # type: ignore[misc]
    assert config.build_extractor().spec.duration == 3.0  # the recipe's [audio] reaches the extractor


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("name = \"loso\"", "name = \"leave_one_out\""), r"protocol: unknown protocol 'leave_one_out'"),
        (("name = \"loso\"", "name = \"speaker_kfold\"\noptions = { n_fold = 3 }"), r"unknown option\(s\) \['n_fold'\]"),
        (("name = \"loso\"", "name = \"holdout\""), r"missing required option\(s\) \['test_speakers'\]"),
        (("name = \"loso\"", "name = \"loso\"\nval_fraction = 1.5"), r"val_fraction must be in \[0, 1\)"),
        (("bootstrap = 200", "bootstrap = 0"), r"run.bootstrap must be >= 1"),
        (("bootstrap = 200", "bootstrap = 200\nseeds = [\"a\"]"), r"run.seeds must be a non-empty list of integers"),
        (("kind = \"mfcc\"", "kind = \"mfcc\"\nn_mfccs = 13"), r"features: .*n_mfccs"),
        (("kind = \"mfcc\"", "kind = \"spectrogram\""), r"features: feature kind 'spectrogram' unknown"),
        (("root = ", "folder = "), r"unknown key 'folder'"),
        (("name = \"loso\"", "name = \"speaker_kfold\"\noptions = { n_folds = 1 }"), r"n_folds must be an integer >= 2, got 1"),
        (("C_grid = [1.0, 10.0]", "C_grid = 5"), r"model: svm: C_grid must be a non-empty list"),
    ],
)
def test_bad_values_are_named_at_load_before_any_work(tmp_path: Path, change, message):
    path = _write(tmp_path, change)
    with pytest.raises(RecipeError, match=message):
        load_config(path)
    with pytest.raises(RecipeError, match=message):
        run_recipe(path, progress=False)
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_audio_and_transform_errors_are_named(tmp_path: Path):
    with pytest.raises(RecipeError, match="audio: "):
        load_config(_write(tmp_path, extra="[audio]\nduration = -1.0\n"))
    with pytest.raises(RecipeError, match="speaker_norm: unknown setting"):
        load_config(_write(tmp_path, extra="[transforms]\nspeaker_norm = { test_stats = \"global\" }\n"))


def test_a_bad_variant_is_named_with_the_file_and_variant(tmp_path: Path):
    path = _write(tmp_path, extra='[[variant]]\nname = "good"\n[[variant]]\nname = "bad"\nmodel = { name = "svm", params = { C_grid = [0.0] } }\n')
    with pytest.raises(RecipeError, match=r"r.toml variant 'bad': model: svm: C_grid values must be positive"):
        load_config(path)
    [good] = load_config(path, variants=["good"])
    assert good.variant == "good"
    with pytest.raises(RecipeError, match=r"unknown variant\(s\) \['ugly'\]"):
        load_config(path, variants=["ugly"])


def test_one_override_parser():
    assert parse_value("7.0") == 7.0 and parse_value("[0, 1]") == [0, 1] and parse_value("true") is True
    assert parse_value("whisper-tiny.en") == "whisper-tiny.en" and parse_value('"a b"') == "a b"


def test_a_plain_resolved_dict_is_typed_the_same_way(tmp_path: Path):
    [raw] = resolve_variants(load_recipe(_write(tmp_path)))
    assert RunConfig.from_dict(raw) == load_config(_write(tmp_path))[0]


def test_a_run_folder_written_from_the_dict_form_resumes(tmp_path: Path):
    """config.json keeps the resolved recipe as plain data; the typed config compares equal to it."""
    [result] = run_recipe(_write(tmp_path), progress=False)
    stored = json.loads((result.run_dir / "config.json").read_text())
    assert stored["recipe"] == json.loads(json.dumps(load_config(_write(tmp_path))[0].to_dict()))
    [again] = run_recipe(_write(tmp_path), progress=False)  # finished: nothing recomputed, no refusal
    assert again.metrics["overall"]["ua"]["mean"] == result.metrics["overall"]["ua"]["mean"]


def test_an_unknown_key_names_the_file_path_and_the_key_path_apart(tmp_path: Path) -> None:
    """A fresh-clone check read ``unknown_run.toml.run: unknown key 'bootstarp'``: the file name and
    the section ran together, and the folder was left out."""
    path = _write(tmp_path, ("bootstrap = 200", "bootstarp = 200"))
    with pytest.raises(RecipeError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: run: unknown key 'bootstarp'; allowed: ")
    path.write_text(path.read_text().replace("bootstarp = 200", "bootstrap = \"many\""))
    with pytest.raises(RecipeError, match=rf"^{re.escape(str(path))}: run\.bootstrap must be int, got str$"):
        load_config(path)

"""Recipes end to end: the run directory's files and numbers, resuming, strict keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serkit.cli import main
from serkit.experiment.runner import RecipeError, load_recipe, resolve_variants, run_recipe

RECIPE = """
name = "small"
[corpus]
name = "csv"
root = "{root}/corpus/metadata.csv"
synth = {{ speakers = 4, per_emotion = 3, seed = 1, voice = "source-filter" }}
[features]
kind = "mfcc"
[model]
name = "svm"
params = {{ input_kind = "stats", C_grid = [1.0, 10.0], gamma_grid = ["scale"] }}
[protocol]
name = "loso"
[run]
output = "{root}/runs"
cache = "{root}/cache"
bootstrap = 200
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(RECIPE.format(root=tmp_path))
    return path


def test_recipe_runs_end_to_end_and_resumes(recipe: Path, tmp_path: Path):
    [result] = run_recipe(recipe, progress=False)
    run = result.run_dir
    assert run == tmp_path / "runs" / "small"
    for name in ("config.json", "manifest.csv", "folds.csv", "predictions.csv", "metrics.json",
                 "model/model.json", "report/report.md", "report/confusion_matrix.png"):
        assert (run / name).is_file(), name

    manifest = pd.read_csv(run / "manifest.csv")
    folds = pd.read_csv(run / "folds.csv")
    predictions = pd.read_csv(run / "predictions.csv")
    assert len(manifest) == 4 * 4 * 3
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3]  # leave one of 4 speakers out
    assert set(folds["split"]) == {"train", "test"}  # the SVM selects by inner CV: no validation rows
    # every utterance is tested exactly once, by the fold that left its speaker out
    assert sorted(predictions["utt_id"]) == sorted(manifest["utt_id"])
    speakers = manifest.set_index("utt_id")["speaker"]
    for fold, part in folds.groupby("fold"):
        train = set(speakers[part.loc[part.split == "train", "utt_id"]])
        test = set(speakers[part.loc[part.split == "test", "utt_id"]])
        assert len(test) == 1 and not train & test

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["speaker_independent"] is True
    assert metrics["speaker_overlap"]["max_shared_fraction"] == 0
    # the reported numbers are those of the predictions file
    correct = predictions["label"] == predictions["pred"]
    assert metrics["overall"]["pooled"]["wa"] == pytest.approx(correct.mean())
    per_fold = [correct[predictions.fold == f].mean() for f in range(4)]
    assert metrics["overall"]["wa"]["mean"] == pytest.approx(np.mean(per_fold))
    assert metrics["overall"]["ua"]["mean"] > 0.4  # well above chance (0.25) on held-out voices
    lo, hi = metrics["overall"]["ua"]["ci95"]
    assert lo <= metrics["overall"]["pooled"]["ua"] <= hi

    config = json.loads((run / "config.json").read_text())
    assert config["protocol"] == "loso" and config["corpus"] == "synth" and config["model"]["name"] == "svm"
    model_json = json.loads((run / "model" / "model.json").read_text())
    assert model_json["features"]["kind"] == "mfcc" and model_json["labels"] == ["angry", "happy", "neutral", "sad"]
    assert "Speaker-independent" in (run / "report" / "report.md").read_text()
    # the final model comes with its checked ONNX export, which prediction then runs by default
    from serkit.inference.predictor import Predictor

    export = json.loads((run / "model" / "onnx" / "export.json").read_text())
    assert export["labels"] == model_json["labels"] and export["classifier"]["max_abs_diff"] <= 1e-4
    assert Predictor.load(run / "model").backend == "onnx"
    exported_at = (run / "model" / "onnx" / "export.json").stat().st_mtime_ns

    # resume: finished folds are not trained again; a lost fold is redone alone
    stamps = {p.name: p.stat().st_mtime_ns for p in (run / "predictions").glob("*.csv")}
    (run / "predictions" / "fold2-seed0.csv").unlink()
    run_recipe(recipe, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in (run / "predictions").glob("*.csv")}
    assert after.keys() == stamps.keys()
    assert all(after[n] == stamps[n] for n in stamps if n != "fold2-seed0.csv")
    again = pd.read_csv(run / "predictions.csv")
    pd.testing.assert_frame_equal(again.sort_values("utt_id").reset_index(drop=True),
                                  predictions.sort_values("utt_id").reset_index(drop=True))
    assert (run / "model" / "onnx" / "export.json").stat().st_mtime_ns == exported_at  # current: not redone


def test_a_failed_export_only_warns_and_export_onnx_false_writes_none(recipe: Path, monkeypatch, caplog):
    """The export is a faster way to run the final model: losing it must not lose the run."""
    from serkit.inference import export

    def fail(model_dir, **kwargs):
        raise ValueError("the ONNX export differs from the model by up to 0.5 in probability")

    monkeypatch.setattr(export, "export_onnx", fail)
    with caplog.at_level("WARNING", logger="serkit.experiment.runner"):
        [result] = run_recipe(recipe, ["run.report=false"], progress=False)
    model = result.run_dir / "model"
    assert (model / "model.json").is_file() and not (model / "onnx").exists()
    assert "no ONNX export written (the ONNX export differs" in caplog.text
    monkeypatch.undo()
    [result] = run_recipe(recipe, ["run.report=false", "run.export_onnx=false", "run.output=" + repr(str(recipe.parent / "other"))],
                          progress=False)
    assert (result.run_dir / "model" / "model.json").is_file() and not (result.run_dir / "model" / "onnx").exists()


def test_changed_recipe_in_the_same_run_directory_is_refused(recipe: Path):
    run_recipe(recipe, progress=False)
    with pytest.raises(RecipeError, match="another configuration"):
        run_recipe(recipe, ["protocol.name=speaker_kfold"], progress=False)


def test_unknown_and_mistyped_keys_name_the_key(tmp_path: Path, recipe: Path):
    with pytest.raises(RecipeError, match=r"unknown key 'modle'.*allowed"):
        load_recipe(recipe, ["modle.name=cnn"])
    with pytest.raises(RecipeError, match=r"unknown key 'seed'.*allowed"):
        load_recipe(recipe, ["run.seed=1"])
    with pytest.raises(RecipeError, match="run.seeds must be list"):
        load_recipe(recipe, ["run.seeds=3"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nname=1")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.toml")


def test_overrides_and_variants(recipe: Path):
    text = recipe.read_text() + '\n[[variant]]\nname = "a"\n[[variant]]\nname = "b"\nmodel = { params = { C_grid = [5.0] } }\n'
    recipe.write_text(text)
    loaded = load_recipe(recipe, ["model.params.inner_folds=2", "protocol.options.group='speaker'"])
    runs = resolve_variants(loaded)
    assert [r["variant"] for r in runs] == ["a", "b"]
    assert runs[1]["model"]["params"]["C_grid"] == [5.0] and runs[1]["model"]["params"]["input_kind"] == "stats"
    assert runs[0]["model"]["params"]["inner_folds"] == 2
    assert runs[0]["protocol"]["options"] == {"group": "speaker"}
    with pytest.raises(RecipeError, match="unknown variant"):
        resolve_variants(loaded, ["c"])


def test_command_line_overrides_beat_what_a_variant_sets(recipe: Path):
    text = recipe.read_text() + '\n[[variant]]\nname = "b"\nmodel = { params = { C_grid = [5.0], inner_folds = 4 } }\n'
    recipe.write_text(text)
    [run] = resolve_variants(load_recipe(recipe, ["model.params.C_grid=[0.5, 2.0]"]), ["b"])
    assert run["model"]["params"]["C_grid"] == [0.5, 2.0]  # the variant's [5.0] was silently kept before
    assert run["model"]["params"]["inner_folds"] == 4 and run["model"]["params"]["input_kind"] == "stats"
    assert "_overrides" not in run


def test_bad_settings_inside_tables_are_reported(recipe: Path):
    with pytest.raises(RecipeError, match="bogus"):
        run_recipe(recipe, ["model.params.bogus=1"], progress=False)
    with pytest.raises(RecipeError, match="protocol"):
        run_recipe(recipe, ["protocol.name=nope"], progress=False)


def test_cli_run_report_and_compare(recipe: Path, tmp_path: Path, capsys):
    assert main(["run", str(recipe), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "small" in out and "loso" in out and "report:" in out
    run = tmp_path / "runs" / "small"
    (run / "report" / "report.md").unlink()
    assert main(["report", str(run)]) == 0
    assert (run / "report" / "report.md").is_file()
    assert main(["compare", str(run), "--format", "markdown"]) == 0
    table = capsys.readouterr().out
    assert "| small" in table or "small |" in table
    assert main(["run", str(recipe), "--set", "modle.name=x"]) == 2
    assert "unknown key 'modle'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ('name = "svm"\nparams = { C_grid = [-1.0] }', "C_grid values must be positive"),
        ('name = "cnn"\nparams = { depth = 9 }', r"depth must be an integer in 1\.\.7"),
        ('name = "pooled"\nparams = { lr = "fast" }', "lr"),
        ('name = "pooled"\nparams = { pooling = "max" }', "pooling must be one of"),
    ],
)
def test_a_bad_model_parameter_fails_before_any_work(tmp_path: Path, model: str, message: str):
    recipe = tmp_path / "bad.toml"
    text = RECIPE.format(root=tmp_path)
    start = text.index("[model]")
    end = text.index("[protocol]")
    recipe.write_text(text[:start] + "[model]\n" + model + "\n" + text[end:])
    with pytest.raises(RecipeError, match=message):
        run_recipe(recipe, progress=False)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "corpus").exists()


def test_a_neural_final_model_stops_on_validation_speakers_drawn_like_the_folds(recipe: Path, monkeypatch):
    """The final model's early-stopping rows are validation.draw_validation's, as every fold's are."""
    from serkit.experiment import runner as experiment
    from serkit.evaluation import validation

    draws, fits = [], []
    real_draw, real_fit = validation.draw_validation, experiment._fit

    def draw(labels, speakers, fraction, seed):
        mask = real_draw(labels, speakers, fraction, seed)
        draws.append((len(labels), int(mask.sum())))
        return mask

    def fit(model, X, y, groups, X_val, y_val):
        fits.append((len(X), None if X_val is None else len(X_val)))
        return real_fit(model, X, y, groups, X_val, y_val)

    monkeypatch.setattr(validation, "draw_validation", draw)
    monkeypatch.setattr(experiment, "_fit", fit)
    overrides = ["model.name=pooled", 'model.params={ input_kind = "stats", max_epochs = 2, batch_size = 16 }',
                 "run.report=false", "protocol.val_fraction=0.25"]
    [result] = run_recipe(recipe, overrides, progress=False)
    n = len(pd.read_csv(result.run_dir / "manifest.csv"))
    [(rows, held)] = [d for d in draws if d[0] == n]  # one draw over every utterance: the final model's
    assert 0 < held < n and fits[-1] == (n - held, held)
    assert (result.run_dir / "model" / "model.json").is_file()

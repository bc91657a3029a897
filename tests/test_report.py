"""serkit.evaluation.report: the Markdown report with plots, and the comparison of runs.

Run directories are built by hand here (manifest, folds, predictions, history, metrics),
with metrics.json computed from the predictions by a tiny helper so every number in the
report can be checked against its source.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serkit.evaluation.compare import compare_runs, format_comparison
from serkit.evaluation.report import write_report
from serkit.evaluation.report_plots import PLOT_FILES, normalize_confusion
from serkit.evaluation.run_facts import overlap_summary

LABELS = ("angry", "happy", "neutral", "sad")
SPEAKERS = {"spk01": "female", "spk02": "male", "spk03": "female", "spk04": "male"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- building a run


def _scores(true: list[str], pred: list[str]) -> dict:
    """WA, UA, macro-F1, per-class scores and confusion, as metrics.json stores them."""
    index = {lab: i for i, lab in enumerate(LABELS)}
    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=int)
    for t, p in zip(true, pred):
        confusion[index[t], index[p]] += 1
    per_class = {}
    for i, lab in enumerate(LABELS):
        tp, support, predicted = confusion[i, i], confusion[i].sum(), confusion[:, i].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[lab] = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(support)}
    present = [lab for lab in LABELS if per_class[lab]["support"]]
    return {
        "wa": float(np.trace(confusion) / confusion.sum()),
        "ua": float(np.mean([per_class[lab]["recall"] for lab in present])),
        "macro_f1": float(np.mean([per_class[lab]["f1"] for lab in present])),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def _summary(values: list[float]) -> dict:
    mean, std = float(np.mean(values)), float(np.std(values))  # ddof=0, as serkit.evaluation.metrics does
    half = 1.96 * std / np.sqrt(len(values))  # stands in for the bootstrap; only consistency matters here
    return {"mean": mean, "std": std, "ci95": [max(0.0, mean - half), min(1.0, mean + half)]}


def make_run(
    root: Path,
    name: str,
    *,
    accuracy: float = 0.7,
    dependent: bool = False,
    history: bool = True,
    seed: int = 0,
) -> Path:
    """A 4-fold leave-one-speaker-out run on 40 utterances (4 speakers, 4 labels)."""
    rng = np.random.default_rng(seed)
    run = root / name
    run.mkdir(parents=True)
    speakers = list(SPEAKERS)
    rows = []
    for s, speaker in enumerate(speakers):
        for k in range(10):
            label = LABELS[(k + s) % len(LABELS)]
            rows.append(
                {
                    "utt_id": f"{speaker}_{k:02d}",
                    "path": f"wav/{speaker}_{k:02d}.wav",
                    "speaker": speaker,
                    "gender": SPEAKERS[speaker],
                    "label": label,
                    "corpus": "toy",
                    "duration": round(1.5 + 0.1 * k, 2),
                }
            )
    manifest = pd.DataFrame(rows)
    manifest.to_csv(run / "manifest.csv", index=False)

    fold_rows, pred_rows, fold_metrics = [], [], []
    for fold, test_speaker in enumerate(speakers):
        val_speaker = speakers[(fold + 1) % len(speakers)]
        for utt, speaker in zip(manifest["utt_id"], manifest["speaker"]):
            split = "test" if speaker == test_speaker else "val" if speaker == val_speaker else "train"
            fold_rows.append({"utt_id": utt, "fold": fold, "split": split})
        test = manifest[manifest["speaker"] == test_speaker]
        # each speaker is a little harder than the last, so folds differ
        p_right = accuracy - 0.08 * fold
        true, pred = [], []
        for utt, label in zip(test["utt_id"], test["label"]):
            logits = rng.normal(0, 0.5, len(LABELS))
            if rng.random() < p_right:
                logits[LABELS.index(label)] += 3.0
            else:
                logits[rng.integers(len(LABELS))] += 3.0
            probs = np.exp(logits) / np.exp(logits).sum()
            guess = LABELS[int(np.argmax(probs))]
            true.append(label)
            pred.append(guess)
            pred_rows.append(
                {"utt_id": utt, "fold": fold, "seed": 0, "label": label, "pred": guess}
                | {f"p_{lab}": round(float(p), 4) for lab, p in zip(LABELS, probs)}
            )
        scores = _scores(true, pred)
        fold_metrics.append(
            {
                "fold": fold,
                "seed": 0,
                "n_test": len(test),
                **scores,
                "speaker_overlap": {
                    "n_test_speakers": 1,
                    "n_shared_speakers": 1 if dependent else 0,
                    "shared_fraction": 1.0 if dependent else 0.0,
                },
            }
        )
    pd.DataFrame(fold_rows).to_csv(run / "folds.csv", index=False)
    predictions = pd.DataFrame(pred_rows)
    predictions.to_csv(run / "predictions.csv", index=False)

    pooled = _scores(list(predictions["label"]), list(predictions["pred"]))
    per_speaker = {}
    for speaker, group in predictions.assign(speaker=predictions["utt_id"].str[:5]).groupby("speaker"):
        per_speaker[speaker] = {"n": len(group), "accuracy": float((group["label"] == group["pred"]).mean())}
    metrics = {
        "labels": list(LABELS),
        "speaker_independent": not dependent,
        "folds": fold_metrics,
        "overall": {
            **{key: _summary([f[key] for f in fold_metrics]) for key in ("wa", "ua", "macro_f1")},
            "ci_resampling": "utterance" if dependent else "speaker",
            "pooled": {**pooled, "labels": list(LABELS), "n": len(predictions)},
        },
        "speaker_overlap": {
            "max_shared_fraction": 1.0 if dependent else 0.0,
            "folds_with_shared_speakers": 4 if dependent else 0,
            "n_folds": 4,
        },
        "per_speaker": per_speaker,
    }
    (run / "metrics.json").write_text(json.dumps(metrics, indent=1))
    config = {
        "name": name,
        "protocol": "random-split" if dependent else "loso",
        "model": {"name": "cnn", "params": {"epochs": 8, "lr": 0.001, "hidden": [128, 64]}},
        "features": {"kind": "ssl", "model": "wavlm-base-plus", "layer": 6, "pooling": "mean"},
        "labels": list(LABELS),
        "seeds": [0],
        "corpus": "toy",
    }
    (run / "config.json").write_text(json.dumps(config, indent=1))
    if history:
        curves = {}
        for fold in range(4):
            curves[f"{fold}-0"] = [
                {
                    "epoch": e,
                    "train_loss": 1.4 * np.exp(-0.3 * e) + 0.05 * fold,
                    "val_loss": 1.3 * np.exp(-0.2 * e) + 0.1 + 0.02 * e,
                    "val_ua": min(1.0, 0.3 + 0.06 * e - 0.02 * fold),
                }
                for e in range(1, 9)
            ]
        (run / "history.json").write_text(json.dumps(curves))
    (run / "model").mkdir()
    return run


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    """One speaker-independent run with its report written (shared: plotting takes time)."""
    run = make_run(tmp_path_factory.mktemp("runs"), "toy-loso")
    report = write_report(run)
    return report, report.read_text(encoding="utf-8"), json.loads((run / "metrics.json").read_text())


def _assert_valid_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    height, width = imread(path).shape[:2]
    assert height > 100 and width > 100, f"{path.name} is only {width}x{height}"


# --------------------------------------------------------------------------- report contents


def test_report_starts_with_protocol_and_overlap_line(reported: tuple[Path, str, dict]) -> None:
    report, text, _ = reported
    assert report == report.parent.parent / "report" / "report.md"
    lines = text.splitlines()
    assert lines[0] == "# Evaluation report: toy-loso"
    head = "\n".join(lines[:6])
    assert "**Protocol:** `loso` on `toy`, 4 folds × 1 seed" in head
    assert "Speaker-independent: no test speaker appears in training (0 of 4 folds share speakers)" in head
    assert "DEPENDENT" not in text


def test_results_table_formats_metrics_json(reported: tuple[Path, str, dict]) -> None:
    _, text, metrics = reported
    overall = metrics["overall"]
    for key, name in (("wa", "WA"), ("ua", "UA"), ("macro_f1", "Macro-F1")):
        stat = overall[key]
        lo, hi = stat["ci95"]
        assert f"| {name} | {stat['mean']:.3f} ± {stat['std']:.3f} | [{lo:.3f}, {hi:.3f}] |" in text
    assert "resampling unit: **speaker**" in text
    assert f"Pooled over all 40 test predictions: WA {overall['pooled']['wa']:.3f}" in text


def test_per_fold_and_per_class_tables(reported: tuple[Path, str, dict]) -> None:
    _, text, metrics = reported
    for fold in metrics["folds"]:
        # fold, seed, 20 train, 10 val, 10 test, 1 test speaker, 0 shared, 0 %, WA, UA, F1
        row = f"| {fold['fold']} | 0 | 20 | 10 | 10 | 1 | 0 | 0 % | {fold['wa']:.3f} | {fold['ua']:.3f} | {fold['macro_f1']:.3f} |"
        assert row in text
    assert "| Class | Precision | Recall | F1 | Support |" in text
    for label, stats in metrics["overall"]["pooled"]["per_class"].items():
        row = f"| {label} | {stats['precision']:.3f} | {stats['recall']:.3f} | {stats['f1']:.3f} | {stats['support']} |"
        assert row in text


def test_summary_of_model_features_and_counts(reported: tuple[Path, str, dict]) -> None:
    _, text, _ = reported
    assert "- Model: `cnn`; parameters: `epochs=8`, `lr=0.001`, `hidden=[128, 64]`" in text
    assert "- Features: `ssl`; settings:" in text and '`model="wavlm-base-plus"`' in text and "`layer=6`" in text
    assert "- Utterances: 40" in text
    assert "- Speakers: 4 (2 female, 2 male)" in text
    assert "- Labels: 4" in text
    assert "| angry | 10 | 25 % |" in text


def test_plots_are_linked_and_valid_pngs(reported: tuple[Path, str, dict]) -> None:
    report, text, _ = reported
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(PLOT_FILES.values())
    for link in links:
        assert not Path(link).is_absolute()
        _assert_valid_png(report.parent / link)
    assert not [p.name for p in report.parent.iterdir() if p.name.endswith(".tmp")]


def test_normalize_confusion_rows_sum_to_one() -> None:
    counts = np.array([[8, 2, 0], [1, 1, 2], [0, 0, 0]])
    shares = normalize_confusion(counts)
    np.testing.assert_allclose(shares.sum(axis=1), [1.0, 1.0, 0.0])  # empty row stays zero, no NaN
    np.testing.assert_allclose(shares[0], [0.8, 0.2, 0.0])
    np.testing.assert_allclose(shares[1], [0.25, 0.25, 0.5])
    assert counts.dtype.kind == "i" and counts[0, 0] == 8  # input untouched
    with pytest.raises(ValueError, match="square"):
        normalize_confusion([[1, 2, 3]])


# --------------------------------------------------------------------------- variants


def test_speaker_dependent_run_is_flagged(tmp_path: Path) -> None:
    run = make_run(tmp_path, "toy-random", dependent=True, history=False)
    text = write_report(run).read_text(encoding="utf-8")
    head = "\n".join(text.splitlines()[:6])
    assert (
        "Speaker-DEPENDENT: 4 of 4 folds share speakers with training (up to 100 % of test utterances); "
        "numbers are not comparable to speaker-independent results"
    ) in head
    assert "resampling unit: **utterance**" in text


def test_measured_overlap_overrides_the_flag() -> None:
    metrics = {
        "speaker_independent": True,
        "folds": [],
        "speaker_overlap": {"max_shared_fraction": 0.004, "folds_with_shared_speakers": 1, "n_folds": 5},
    }
    line = overlap_summary(metrics)
    assert line.startswith("Speaker-DEPENDENT: 1 of 5 folds share speakers with training (up to <1 % of test utterances)")
    assert "claims to be speaker-independent" in line


def test_run_without_history_still_reports_and_is_idempotent(tmp_path: Path) -> None:
    run = make_run(tmp_path, "toy-svm")
    first = write_report(run)
    assert (first.parent / PLOT_FILES["learning_curves"]).is_file()
    # the same run without epochs: the old curve must not linger beside the new report
    (run / "history.json").unlink()
    text = write_report(run).read_text(encoding="utf-8")
    assert "No learning curves: history.json is absent or empty" in text
    assert PLOT_FILES["learning_curves"] not in text
    assert not (first.parent / PLOT_FILES["learning_curves"]).exists()
    for name in (PLOT_FILES["confusion"], PLOT_FILES["per_class"], PLOT_FILES["per_speaker"]):
        assert f"]({name})" in text
    (run / "history.json").write_text("{}")
    assert write_report(run).read_text(encoding="utf-8") == text
    assert sorted(p.name for p in first.parent.iterdir()) == sorted(
        ["report.md", PLOT_FILES["confusion"], PLOT_FILES["per_class"], PLOT_FILES["per_speaker"]]
    )


def test_missing_metrics_raises_value_error_naming_the_run(tmp_path: Path) -> None:
    run = make_run(tmp_path, "unfinished", history=False)
    (run / "metrics.json").unlink()
    with pytest.raises(ValueError, match="unfinished.*metrics.json"):
        write_report(run)
    with pytest.raises(ValueError, match="unfinished.*metrics.json"):
        compare_runs([run])


# --------------------------------------------------------------------------- comparison


def test_compare_runs_sorts_by_ua_and_shows_protocol_and_overlap(tmp_path: Path) -> None:
    weak = make_run(tmp_path, "weak", accuracy=0.45, history=False, seed=1)
    strong = make_run(tmp_path, "strong", accuracy=0.95, dependent=True, history=False, seed=2)
    table = compare_runs([weak, strong])
    assert list(table["run"]) == ["strong", "weak"]
    assert table["ua_mean"].is_monotonic_decreasing
    assert list(table["protocol"]) == ["random-split", "loso"]
    assert list(table["speaker_independent"]) == [False, True]
    assert list(table["max_speaker_overlap"]) == [1.0, 0.0]
    assert set(table[["model", "features", "corpus"]].itertuples(index=False, name=None)) == {("cnn", "ssl", "toy")}
    assert list(table["n_folds"]) == [4, 4]

    markdown = format_comparison(table)
    lines = markdown.splitlines()
    assert lines[0].startswith("| Run | Corpus | Protocol | Speaker-indep. | Max overlap |")
    strong_ua = json.loads((strong / "metrics.json").read_text())["overall"]["ua"]
    assert lines[2].startswith("| strong | toy | random-split | no | 100 % | cnn | ssl | 4 |")
    assert f"{strong_ua['mean']:.3f} ± {strong_ua['std']:.3f} [{strong_ua['ci95'][0]:.3f}," in lines[2]
    assert lines[3].startswith("| weak | toy | loso | yes | 0 % |")
    assert "not comparable" in markdown

    text = format_comparison(table, fmt="text")
    assert "|" not in text.splitlines()[0]
    assert text.index("strong") < text.index("weak")
    with pytest.raises(ValueError, match="fmt"):
        format_comparison(table, fmt="html")  # type: ignore[arg-type]


def test_importing_report_does_not_import_matplotlib() -> None:
    code = "import sys, serkit.evaluation.report; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

"""WA / UA / macro-F1, confusion orientation, bootstrap intervals and metrics.json of `serkit.evaluation.metrics`."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sklearn")

from serkit.evaluation.metrics import bootstrap_ci, classification_metrics, evaluate_run  # noqa: E402

LABELS = ["a", "b", "c"]
# 6 a, 2 b, 2 c; one b and one c are called a: WA = 8/10 but UA = (1 + 1/2 + 1/2) / 3.
Y_TRUE = ["a"] * 6 + ["b", "b", "c", "c"]
Y_PRED = ["a"] * 6 + ["a", "b", "a", "c"]


# --------------------------------------------------------------------------- classification_metrics


def test_wa_differs_from_ua_on_imbalanced_data() -> None:
    scores = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert scores["wa"] == pytest.approx(0.8)
    assert scores["ua"] == pytest.approx(2 / 3)
    f1_a = 2 * 0.75 * 1.0 / 1.75  # precision 6/8, recall 1
    assert scores["macro_f1"] == pytest.approx((f1_a + 2 / 3 + 2 / 3) / 3)
    assert scores["n"] == 10
    assert scores["labels"] == LABELS


def test_per_class_values() -> None:
    per_class = classification_metrics(Y_TRUE, Y_PRED, LABELS)["per_class"]
    assert per_class["a"] == pytest.approx({"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "support": 6})
    assert per_class["b"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert per_class["c"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert isinstance(per_class["a"]["support"], int)


def test_confusion_rows_are_true_columns_predicted() -> None:
    scores = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert scores["confusion"] == [[6, 0, 0], [1, 1, 0], [1, 0, 1]]
    one_way = classification_metrics(["a", "a", "a"], ["c", "c", "c"], LABELS)["confusion"]
    assert one_way == [[0, 0, 3], [0, 0, 0], [0, 0, 0]]
    reordered = classification_metrics(Y_TRUE, Y_PRED, ["c", "b", "a"])["confusion"]
    assert reordered == [[1, 0, 1], [0, 1, 1], [0, 0, 6]]


def test_absent_class_does_not_break_ua() -> None:
    # No true c: UA averages recall over a and b only; c is a 0-support row.
    scores = classification_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"], LABELS)
    assert scores["ua"] == pytest.approx((0.5 + 1.0) / 2)
    assert scores["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)  # c neither true nor predicted: not averaged
    predicted_c = classification_metrics(["a", "a", "b", "b"], ["a", "c", "b", "b"], LABELS)
    assert predicted_c["ua"] == pytest.approx(0.75)
    assert predicted_c["macro_f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)  # predicting c costs F1


def test_perfect_and_json_ready() -> None:
    scores = classification_metrics(LABELS, LABELS, LABELS)
    assert scores["wa"] == scores["ua"] == scores["macro_f1"] == 1.0
    json.dumps(scores)


@pytest.mark.parametrize(("y_true", "y_pred", "match"), [
    (["a"], ["a", "b"], "1 values but y_pred has 2"),
    ([], [], "no predictions"),
    (["a", "z"], ["a", "a"], r"y_true has value\(s\) \['z'\] outside labels"),
    (["a", "b"], ["a", "q"], r"y_pred has value\(s\) \['q'\]"),
])
def test_bad_inputs(y_true: list, y_pred: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        classification_metrics(y_true, y_pred, LABELS)


# --------------------------------------------------------------------------- bootstrap_ci


def noisy_predictions(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_true = rng.choice(LABELS, size=n, p=[0.6, 0.25, 0.15])
    wrong = rng.choice(LABELS, size=n)
    return y_true, np.where(rng.random(n) < 0.7, y_true, wrong)


def test_interval_contains_point_estimate() -> None:
    y_true, y_pred = noisy_predictions(400)
    point = classification_metrics(y_true, y_pred, LABELS)
    intervals = bootstrap_ci(y_true, y_pred, LABELS, n_boot=500, seed=1)
    assert set(intervals) == {"wa", "ua", "macro_f1"}
    for name, (low, high) in intervals.items():
        assert low < point[name] < high, name
        assert high - low < 0.2


def test_interval_narrows_with_more_data() -> None:
    small = bootstrap_ci(*noisy_predictions(100), LABELS, n_boot=500)
    large = bootstrap_ci(*noisy_predictions(2000), LABELS, n_boot=500)
    for name in ("wa", "ua", "macro_f1"):
        assert np.diff(large[name])[0] < 0.5 * np.diff(small[name])[0], name


def test_interval_is_deterministic_and_level_matters() -> None:
    y_true, y_pred = noisy_predictions(300)
    assert bootstrap_ci(y_true, y_pred, LABELS, seed=4) == bootstrap_ci(y_true, y_pred, LABELS, seed=4)
    wide = bootstrap_ci(y_true, y_pred, LABELS, level=0.99)["wa"]
    narrow = bootstrap_ci(y_true, y_pred, LABELS, level=0.5)["wa"]
    assert wide[0] < narrow[0] and narrow[1] < wide[1]


def test_groups_resample_whole_speakers() -> None:
    # Speaker x is always right, speaker y always wrong: 100 utterances pin WA near 0.5, but
    # with two speakers a resample holds x twice (WA 1), y twice (WA 0) or one of each.
    y_true = ["a", "b"] * 50
    y_pred = y_true[:50] + ["c"] * 50
    groups = ["x"] * 50 + ["y"] * 50
    by_utterance = bootstrap_ci(y_true, y_pred, LABELS, n_boot=400)["wa"]
    by_speaker = bootstrap_ci(y_true, y_pred, LABELS, groups=groups, n_boot=400)["wa"]
    assert 0.35 < by_utterance[0] < 0.5 < by_utterance[1] < 0.65
    assert by_speaker == [0.0, 1.0]


def test_one_group_gives_the_point_estimate_everywhere() -> None:
    # Every resample of a single group is the data itself: the interval collapses onto the
    # point estimate, so intervals and classification_metrics share their definitions.
    y_true, y_pred = ["a", "a", "b", "b", "b"], ["a", "c", "b", "b", "a"]
    point = classification_metrics(y_true, y_pred, LABELS)
    intervals = bootstrap_ci(y_true, y_pred, LABELS, groups=["s"] * 5, n_boot=20)
    for name, (low, high) in intervals.items():
        assert low == pytest.approx(point[name]) and high == pytest.approx(point[name]), name


def test_bootstrap_is_fast() -> None:
    y_true, y_pred = noisy_predictions(3000)
    speakers = np.random.default_rng(0).integers(0, 87, size=3000)
    start = time.perf_counter()
    bootstrap_ci(y_true, y_pred, LABELS, n_boot=1000)
    bootstrap_ci(y_true, y_pred, LABELS, groups=speakers, n_boot=1000)
    assert time.perf_counter() - start < 3.0


def test_bootstrap_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(Y_TRUE, Y_PRED, LABELS, n_boot=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(Y_TRUE, Y_PRED, LABELS, level=95)
    with pytest.raises(ValueError, match="groups has 3 values"):
        bootstrap_ci(Y_TRUE, Y_PRED, LABELS, groups=["x", "y", "z"])


# --------------------------------------------------------------------------- evaluate_run


def run_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Four speakers p, q, r, s with 4 utterances each; fold 0 tests p+q, fold 1 tests r+s; 2 seeds."""
    speakers = ["p", "q", "r", "s"]
    labels = ["a", "a", "b", "c"]
    manifest = pd.DataFrame([
        {"utt_id": f"{s}{i}", "path": f"{s}{i}.wav", "speaker": s, "gender": "female", "label": labels[i],
         "corpus": "toy", "duration": 1.0}
        for s in speakers for i in range(4)
    ])
    folds = []
    for fold, test in ((0, {"p", "q"}), (1, {"r", "s"})):
        for row in manifest.itertuples():
            folds.append({"utt_id": row.utt_id, "fold": fold, "split": "test" if row.speaker in test else "train"})
    folds = pd.DataFrame(folds)
    # Seed 0: p, q, r right everywhere; s calls everything a (right on s0 and s1 only).
    # Seed 1: like seed 0, but q also calls everything a.
    rows = []
    for seed in (0, 1):
        for row in folds[folds["split"] == "test"].itertuples():
            speaker, index = row.utt_id[0], int(row.utt_id[1])
            wrong = speaker == "s" or (seed == 1 and speaker == "q")
            pred = "a" if wrong else labels[index]
            rows.append({"utt_id": row.utt_id, "fold": row.fold, "seed": seed, "label": labels[index], "pred": pred,
                         "p_a": 1.0 if pred == "a" else 0.0, "p_b": float(pred == "b"), "p_c": float(pred == "c")})
    return pd.DataFrame(rows), manifest, folds


def test_evaluate_run_schema_and_values() -> None:
    predictions, manifest, folds = run_tables()
    result = evaluate_run(predictions, manifest, folds, LABELS, speaker_independent=True, n_boot=200)
    assert list(result) == ["labels", "speaker_independent", "folds", "overall", "speaker_overlap", "per_speaker"]
    assert result["labels"] == LABELS and result["speaker_independent"] is True
    assert [(r["fold"], r["seed"]) for r in result["folds"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    first = result["folds"][0]
    assert set(first) == {"fold", "seed", "n_test", "wa", "ua", "macro_f1", "per_class", "confusion", "speaker_overlap"}
    assert first["n_test"] == 8 and first["wa"] == 1.0
    assert first["speaker_overlap"] == {"n_test_speakers": 2, "n_shared_speakers": 0, "shared_fraction": 0.0}
    wa = [1.0, 6 / 8, 6 / 8, 6 / 8]  # fold 0 seed 1: q misses 2; fold 1: s misses 2
    ua = [1.0, (1 + 0.5 + 0.5) / 3, (1 + 0.5 + 0.5) / 3, (1 + 0.5 + 0.5) / 3]
    assert [r["wa"] for r in result["folds"]] == pytest.approx(wa)
    assert [r["ua"] for r in result["folds"]] == pytest.approx(ua)
    overall = result["overall"]
    assert set(overall) == {"wa", "ua", "macro_f1", "pooled", "ci_resampling"}
    assert overall["wa"]["mean"] == pytest.approx(np.mean(wa))
    assert overall["wa"]["std"] == pytest.approx(np.std(wa))
    assert overall["ua"]["mean"] == pytest.approx(np.mean(ua))
    assert overall["ci_resampling"] == "speaker"
    pooled = overall["pooled"]
    assert pooled["n"] == 32 and pooled["wa"] == pytest.approx(26 / 32)
    assert pooled["confusion"] == [[16, 0, 0], [3, 5, 0], [3, 0, 5]]
    for name in ("wa", "ua", "macro_f1"):
        low, high = overall[name]["ci95"]
        assert low <= pooled[name] <= high
    assert result["speaker_overlap"] == {"max_shared_fraction": 0.0, "folds_with_shared_speakers": 0, "n_folds": 2}
    assert result["per_speaker"] == {
        "p": {"n": 8, "accuracy": 1.0}, "q": {"n": 8, "accuracy": 0.75},
        "r": {"n": 8, "accuracy": 1.0}, "s": {"n": 8, "accuracy": 0.5},
    }
    json.dumps(result)


def test_evaluate_run_one_run_and_utterance_resampling() -> None:
    predictions, manifest, folds = run_tables()
    one = predictions[(predictions["fold"] == 0) & (predictions["seed"] == 0)].drop(columns="seed")
    result = evaluate_run(one, manifest, folds, LABELS, speaker_independent=False, n_boot=50)
    assert len(result["folds"]) == 1 and result["folds"][0]["seed"] == 0
    assert result["overall"]["wa"]["std"] == 0.0
    assert result["overall"]["ci_resampling"] == "utterance"
    assert result["speaker_overlap"]["n_folds"] == 1


def test_evaluate_run_reports_shared_speakers() -> None:
    predictions, manifest, folds = run_tables()
    # Move p0 into fold 1's test set while p1..p3 still train there: speaker p is on both sides.
    folds = folds.copy()
    folds.loc[(folds["fold"] == 1) & (folds["utt_id"] == "p0"), "split"] = "test"
    extra = pd.DataFrame([{"utt_id": "p0", "fold": 1, "seed": 0, "label": "a", "pred": "a"}])
    scored = pd.concat([predictions[predictions["seed"] == 0], extra], ignore_index=True)
    result = evaluate_run(scored, manifest, folds, LABELS, speaker_independent=False, n_boot=50)
    assert result["speaker_overlap"]["folds_with_shared_speakers"] == 1
    assert result["speaker_overlap"]["max_shared_fraction"] == pytest.approx(1 / 9)
    fold_1 = next(r for r in result["folds"] if r["fold"] == 1)
    assert fold_1["speaker_overlap"] == {"n_test_speakers": 3, "n_shared_speakers": 1, "shared_fraction": pytest.approx(1 / 9)}


def test_evaluate_run_refuses_non_test_predictions() -> None:
    predictions, manifest, folds = run_tables()
    on_train = predictions.copy()
    on_train.loc[0, "fold"] = 1  # p0 is a training utterance of fold 1
    with pytest.raises(ValueError, match=r"not of test utterances of their fold.*fold 1: p0"):
        evaluate_run(on_train, manifest, folds, LABELS, speaker_independent=True, n_boot=10)


def test_evaluate_run_input_errors() -> None:
    predictions, manifest, folds = run_tables()
    with pytest.raises(ValueError, match=r"lack column\(s\) \['pred'\]"):
        evaluate_run(predictions.drop(columns="pred"), manifest, folds, LABELS, speaker_independent=True)
    with pytest.raises(ValueError, match="repeat"):
        evaluate_run(pd.concat([predictions, predictions.iloc[:1]]), manifest, folds, LABELS, speaker_independent=True)
    with pytest.raises(ValueError, match="outside labels"):
        evaluate_run(predictions, manifest, folds, ["a", "b"], speaker_independent=True)

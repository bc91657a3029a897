"""Experiments: a recipe in, a run directory out (prepare -> extract -> folds -> train -> evaluate -> report).

A recipe is a TOML file. Every key is checked: a mistyped key is an error that names it and
the allowed ones. A recipe may hold ``[[variant]]`` tables (ablations, baselines side by
side): each variant is the base recipe with its own overrides and gets its own run directory.

Run directory (the contract between stages; each file can be opened by a person)::

    runs/<name>[/<variant>]/
      config.json        resolved configuration
      manifest.csv       utterances used
      folds.csv          utt_id, fold, split (train / val / test)
      predictions/       one CSV per finished (fold, seed): what makes a run resumable
      predictions.csv    utt_id, fold, seed, label, pred, p_<class> ...
      history.json       per (fold, seed) learning curves of torch models
      metrics.json       per fold and overall: WA, UA, macro-F1, per-class, confusion, intervals
      model/             final model trained on every utterance (model.json + weights)
      report/            report.md + PNG plots, made only from the files above

Running the same recipe again skips every finished (fold, seed) and the finished final model,
so a crashed run resumes where it stopped. A changed configuration in an existing run directory
is refused (name a new run, or delete the old directory).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serkit.audio import AudioSpec
from serkit.features.cache import FeatureCache, atomic_write

__all__ = ["RecipeError", "RunResult", "load_recipe", "resolve_variants", "run_experiment", "run_recipe"]

log = logging.getLogger(__name__)

#: Every key a recipe may hold, by section; None marks a free-form table (settings passed on).
SCHEMA: dict[str, Any] = {
    "name": str,
    "description": str,
    "corpus": {"name": str, "root": str, "manifest": str, "options": None, "labels": list,
               "label_map": None, "synth": None},
    "corpora": list,  # several corpora (cross-corpus): a list of corpus tables
    "audio": {"sampling_rate": int, "duration": float, "crop": str, "min_duration": float, "max_duration": float},
    "features": None,  # kind + the extractor's own settings (checked by the extractor)
    "model": {"name": str, "params": None},
    "transforms": None,  # e.g. speaker_norm = { test_statistics = "transductive" } (serkit.transforms)
    "protocol": {"name": str, "options": None, "val_fraction": float},
    "run": {"seeds": list, "output": str, "cache": str, "final_model": bool, "report": bool,
            "bootstrap": int, "max_frames": int, "batch_size": int},
    "variant": list,
}

DEFAULTS: dict[str, Any] = {
    "protocol": {"name": "speaker_kfold", "options": {}, "val_fraction": 0.2},
    "run": {"seeds": [0], "output": "runs", "cache": "features", "final_model": True, "report": True,
            "bootstrap": 1000},
    "model": {"params": {}},
}


#: Key under which `load_recipe` keeps the ``--set`` overrides for `resolve_variants`.
_OVERRIDES = "_overrides"


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the key or file and the reason."""


@dataclass
class RunResult:
    """Where a run went and its headline numbers.

    ``left_out`` lists the files the run did not use (unreadable at prepare time, failed
    feature extraction), as ``{"path", "reason"}``; they are also in ``left_out.csv``.
    """

    run_dir: Path
    metrics: dict[str, Any]
    left_out: list[dict[str, str]] = field(default_factory=list)


# --- recipes ------------------------------------------------------------------------------

def _check_keys(data: dict[str, Any], schema: dict[str, Any], where: str) -> None:
    for key, value in data.items():
        if key not in schema:
            raise RecipeError(f"{where}: unknown key {key!r}; allowed: {sorted(schema)}")
        sub = schema[key]
        if isinstance(sub, dict):
            if not isinstance(value, dict):
                raise RecipeError(f"{where}.{key} must be a table")
            _check_keys(value, sub, f"{where}.{key}")
        elif sub is not None and not isinstance(value, sub) and not (sub is float and isinstance(value, int)):
            raise RecipeError(f"{where}.{key} must be {sub.__name__}, got {type(value).__name__}")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(recipe: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values in TOML syntax; bare words are strings)."""
    out = copy.deepcopy(recipe)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"--set {item!r} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise RecipeError(f"--set {dotted}: {key!r} is not a table")
        node[keys[-1]] = _parse_value(raw.strip())
    return out


def load_recipe(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a recipe, apply overrides and check every key.

    Raises:
        RecipeError: Missing file, bad TOML, unknown or mistyped keys.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe not found")
    try:
        recipe = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc})") from None
    recipe = apply_overrides(recipe, overrides)
    _check_keys(recipe, SCHEMA, path.name)
    for i, variant in enumerate(recipe.get("variant", [])):
        if not isinstance(variant, dict) or "name" not in variant:
            raise RecipeError(f"{path.name}: variant {i} needs a name")
        _check_keys({k: v for k, v in variant.items() if k != "name"}, SCHEMA, f"{path.name}.variant[{variant['name']}]")
    recipe.setdefault("name", path.stem)
    # Kept to be applied again over each variant: what the user typed beats what a variant sets.
    recipe[_OVERRIDES] = list(overrides)
    return recipe


def resolve_variants(recipe: dict[str, Any], only: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The recipe's runs: the base alone, or the base merged with each variant.

    ``--set`` overrides given to `load_recipe` are applied last, over each variant's own values.
    """
    overrides = recipe.get(_OVERRIDES, [])
    base = _merge(DEFAULTS, {k: v for k, v in recipe.items() if k not in ("variant", _OVERRIDES)})
    variants = recipe.get("variant", [])
    if not variants:
        return [base]
    names = [v["name"] for v in variants]
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise RecipeError(f"unknown variant(s) {unknown}; this recipe has {names}")
    runs = []
    for variant in variants:
        if only and variant["name"] not in only:
            continue
        config = apply_overrides(_merge(base, {k: v for k, v in variant.items() if k != "name"}), overrides)
        config["variant"] = variant["name"]
        runs.append(config)
    return runs


# --- stages -------------------------------------------------------------------------------

def _resolve_path(config: dict[str, Any], value: str) -> Path:
    """Paths in recipes may use $VARIABLES and ~; relative ones start at the working directory."""
    return Path(os.path.expandvars(value)).expanduser()


def _prepare_one(config: dict[str, Any], corpus: dict[str, Any]) -> pd.DataFrame:
    from serkit.datasets import prepare
    from serkit.schema import read_manifest

    if "manifest" in corpus:
        manifest = read_manifest(_resolve_path(config, corpus["manifest"]))
    else:
        if "name" not in corpus or "root" not in corpus:
            raise RecipeError("corpus needs either manifest = FILE, or name = ADAPTER and root = PATH")
        root = _resolve_path(config, corpus["root"])
        if "synth" in corpus and not root.exists():
            from serkit.synth import write_corpus

            folder = root.parent if root.suffix == ".csv" else root
            write_corpus(folder, **corpus["synth"])
        manifest = prepare(corpus["name"], root, **corpus.get("options", {}))
        skipped = manifest.attrs.get("skipped", [])
        if skipped:
            log.warning("%d unreadable file(s) left out of %s, e.g. %s", len(skipped), root, skipped[0])
    if "label_map" in corpus:
        mapping = corpus["label_map"]
        manifest = manifest.assign(label=manifest["label"].map(lambda x: mapping.get(x, x if mapping.get("*") == "keep" else None)))
        dropped = manifest["label"].isna().sum()
        if dropped:
            log.info("label_map dropped %d utterance(s) of %s", dropped, corpus.get("name", "corpus"))
        manifest = manifest.dropna(subset=["label"])
    if "labels" in corpus:
        wanted = set(corpus["labels"])
        absent = sorted(wanted - set(manifest["label"]))
        if absent:
            raise RecipeError(f"corpus.labels {absent} do not occur; present: {sorted(set(manifest['label']))}")
        manifest = manifest[manifest["label"].isin(wanted)]
    return manifest.reset_index(drop=True)


def prepare_manifest(config: dict[str, Any]) -> pd.DataFrame:
    """The run's manifest: one corpus, or several (``corpora``) concatenated."""
    from serkit.schema import validate_manifest

    corpora = config.get("corpora") or [config.get("corpus", {})]
    frames = [_prepare_one(config, c) for c in corpora]
    left_out = [item for frame in frames for item in frame.attrs.get("skipped", [])]
    manifest = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if manifest.empty:
        raise RecipeError("the corpus has no utterances left after label selection")
    manifest = validate_manifest(manifest)
    manifest.attrs["skipped"] = left_out  # files the adapters left out, with their reasons
    return manifest


def build_run_extractor(config: dict[str, Any]):
    """The recipe's feature extractor, with the recipe's AudioSpec when it gives one."""
    from serkit.features import build_extractor

    features = config.get("features")
    if not features or "kind" not in features:
        raise RecipeError("the recipe needs a [features] table with kind = ssl | whisper | logmel | mfcc | opensmile")
    spec = None
    if "audio" in config:
        spec = AudioSpec(**config["audio"])
    try:
        return build_extractor(dict(features), spec)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"features: {exc}") from None


#: Top-level tables that make a TOML file a recipe rather than a bare feature configuration.
_RECIPE_TABLES = ("corpus", "corpora", "audio", "model", "protocol", "run", "variant", "transforms")


def is_recipe(path: str | os.PathLike) -> bool:
    """Whether a TOML file is a recipe (it has a recipe table beside ``[features]``)."""
    path = Path(path)
    if path.suffix != ".toml" or not path.is_file():
        return False
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError:
        return False
    return any(key in data for key in _RECIPE_TABLES)


def recipe_extractors(path: str | os.PathLike, overrides: Sequence[str] = (), variants: Sequence[str] = ()) -> list:
    """The distinct feature extractors of a recipe's runs, built as `run_experiment` builds them.

    `serkit extract -f RECIPE` uses this, so the cache it fills is the one `serkit run RECIPE`
    reads: the same ``[audio]`` spec, variant settings and overrides, hence the same fingerprint.

    Args:
        path: The recipe.
        overrides: ``--set`` overrides, as for `load_recipe`.
        variants: Only these variants (default: all).

    Returns:
        One extractor per distinct fingerprint, in the recipe's order.

    Raises:
        RecipeError: A bad recipe, variant or feature table.
    """
    extractors: dict[str, Any] = {}
    for config in resolve_variants(load_recipe(path, overrides), variants):
        extractor = build_run_extractor(config)
        extractors.setdefault(extractor.fingerprint(), extractor)
    return list(extractors.values())


def recipe_cache(path: str | os.PathLike, overrides: Sequence[str] = ()) -> Path:
    """The feature cache folder a recipe's runs read (``run.cache``, resolved as `serkit run` does)."""
    [config, *_] = resolve_variants(load_recipe(path, overrides))
    return _resolve_path(config, config["run"]["cache"])


def _fixed_length(arrays: list[np.ndarray], max_frames: int | None) -> list[np.ndarray]:
    """Pad with zeros / cut along the time axis (-2) so frame maps stack; None = longest."""
    from serkit.audio import fix_length

    lengths = [a.shape[-2] for a in arrays]
    target = min(max(lengths), max_frames) if max_frames else max(lengths)
    return [a if a.shape[-2] == target else fix_length(a, target, axis=-2) for a in arrays]


def load_features(cache: FeatureCache, utt_ids: Sequence[str], output: str, max_frames: int | None = None) -> np.ndarray:
    """Stack one cached output of many utterances; frame maps of unequal length are padded or cut."""
    arrays = [cache.load(u, [output])[output] for u in utt_ids]
    if len({a.shape for a in arrays}) > 1:
        if arrays[0].ndim < 2:
            raise RecipeError(f"feature output {output!r} has unequal shapes and is not a frame map")
        arrays = _fixed_length(arrays, max_frames)
    return np.stack(arrays)


def _model_for(config: dict[str, Any], seed: int, fold_dir: Path | None = None):
    from serkit.models import build_model, model_class

    name = config.get("model", {}).get("name")
    if not name:
        raise RecipeError("the recipe needs [model] name = cnn | svm | efficientnet | pooled")
    params = dict(config["model"].get("params", {}))
    allowed = model_class(name)().get_params(deep=False)
    if "seed" in allowed:
        params.setdefault("seed", seed)
    if "checkpoint_dir" in allowed and fold_dir is not None:
        params["checkpoint_dir"] = str(fold_dir)
    try:
        model = build_model(name, **params)
        model.check_params()  # values too, before any feature is extracted
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"model: {exc}") from None
    return model


def _transform_for(config: dict[str, Any]):
    """The recipe's transform (serkit.transforms), checked against the model's input; None when absent."""
    from serkit.transforms import build_transform

    try:
        return build_transform(config.get("transforms"), _input_kind(_model_for(config, 0)))
    except ValueError as exc:
        raise RecipeError(str(exc)) from None


def _normalised(norm, table: "FeatureTable", speaker_of: dict[str, str], fitted_on: list[str],
                parts: dict[str, list[str]], own_statistics: list[str]) -> dict[str, np.ndarray | None]:
    """Fit `norm` on the `fitted_on` rows and normalise each part with its speakers' statistics.

    Args:
        norm: A `SpeakerNorm`.
        table: The features.
        speaker_of: utt_id -> speaker.
        fitted_on: Rows whose speakers' statistics are their own (the training rows).
        parts: Name -> utt_ids to normalise.
        own_statistics: utt_ids of speakers not in `fitted_on` whose statistics are taken from
            these rows (validation speakers, test speakers' enrolment or test rows); label-free.

    Returns:
        Name -> normalised features (None for an empty part).
    """
    norm.fit(table.take(fitted_on), [speaker_of[u] for u in fitted_on])
    by_speaker: dict[str, list[str]] = {}
    for u in own_statistics:
        by_speaker.setdefault(speaker_of[u], []).append(u)
    if norm.test_statistics == "global":  # nothing of these speakers is used
        stats = {who: norm.global_ for who in by_speaker}
    else:
        stats = {who: norm.speaker_statistics(table.take(rows)) for who, rows in by_speaker.items()}
    return {name: norm.transform(table.take(rows), [speaker_of[u] for u in rows], stats) if rows else None
            for name, rows in parts.items()}


def _input_kind(model) -> str:
    return str(getattr(model, "input_kind", ""))


def _takes_validation(model) -> bool:
    return bool(getattr(model, "uses_validation", False))


def _fit(model, X: np.ndarray, y: np.ndarray, groups: np.ndarray, X_val: np.ndarray | None, y_val: np.ndarray | None):
    """Fit with the run's own validation rows when the model takes them, else on train + val."""
    if X_val is not None and len(X_val) and _takes_validation(model):
        return model.fit(X, y, groups=groups, validation=(X_val, y_val))
    if X_val is not None and len(X_val):
        raise RuntimeError("internal: _fit got validation rows for a model that cannot use them")
    return model.fit(X, y, groups=groups)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_write(path, "w") as stream:
        frame.to_csv(stream, index=False)


def _write_json(data: Any, path: Path) -> None:
    with atomic_write(path, "w") as stream:
        json.dump(data, stream, indent=2, sort_keys=True, default=str)


def _public_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def _run_dir(config: dict[str, Any]) -> Path:
    out = _resolve_path(config, config["run"]["output"]) / config["name"]
    return out / config["variant"] if "variant" in config else out


def _run_name(config: dict[str, Any]) -> str:
    return f"{config['name']}/{config['variant']}" if "variant" in config else config["name"]


def _claim_run_dir(run_dir: Path, config: dict[str, Any]) -> None:
    """Check that an existing run used the same recipe (config.json's ``recipe``)."""
    path = run_dir / "config.json"
    wanted = json.loads(json.dumps(_public_config(config), default=str))
    if path.exists():
        existing = json.loads(path.read_text()).get("recipe", {})
        if existing != wanted:
            changed = sorted(k for k in set(existing) | set(wanted) if existing.get(k) != wanted.get(k))
            raise RecipeError(
                f"{run_dir} holds a run with another configuration (differs in {changed}); "
                "give the run another name or delete that directory"
            )
        log.info("resuming %s", run_dir)
        return
    run_dir.mkdir(parents=True, exist_ok=True)


def _precision_facts(config: dict[str, Any], extractor: Any) -> dict[str, str]:
    """The precisions this run computes in ("auto" resolved by measurement on this machine)."""
    facts = {}
    if getattr(extractor, "precision_field", None):  # pretrained encoders
        facts["features"] = extractor.precision_in_use()
    model = _model_for(config, 0)
    if hasattr(model, "precision") and hasattr(model, "accelerator"):  # the torch estimator
        from serkit.models.training import resolve_precision

        facts["training"] = resolve_precision(model.precision, model.accelerator)
    return facts


def _write_config(run_dir: Path, config: dict[str, Any], manifest: pd.DataFrame, precision: dict[str, str]) -> None:
    """config.json: the resolved recipe, plus the flat facts reports and comparisons read."""
    _write_json({
        "precision": precision,
        "name": _run_name(config),
        "corpus": "+".join(sorted(manifest["corpus"].unique())),
        "protocol": config["protocol"]["name"],
        "protocol_options": config["protocol"].get("options", {}),
        "val_fraction": config["protocol"].get("val_fraction", 0.2),
        "model": config["model"],
        "features": config["features"],
        "audio": config.get("audio"),
        "seeds": config["run"]["seeds"],
        "labels": sorted(manifest["label"].unique()),
        "recipe": json.loads(json.dumps(_public_config(config), default=str)),
    }, run_dir / "config.json")


def _fold_rows(folds: pd.DataFrame, fold: int, split: str) -> list[str]:
    part = folds[(folds["fold"] == fold) & (folds["split"] == split)]
    return part["utt_id"].tolist()


def speaker_lookup(manifest: pd.DataFrame) -> dict[str, str]:
    """utt_id -> speaker identity (corpus-prefixed when corpora mix; `serkit.splits.speaker_keys`)."""
    from serkit.splits import speaker_keys

    return dict(zip(manifest["utt_id"].astype(str), speaker_keys(manifest)))


class FeatureTable:
    """One cached output of every utterance of the run, stacked once and indexed by utt_id."""

    def __init__(self, cache: FeatureCache, utt_ids: Sequence[str], output: str, max_frames: int | None) -> None:
        self.output = output
        self.X = load_features(cache, utt_ids, output, max_frames)
        self.row = {u: i for i, u in enumerate(utt_ids)}

    @property
    def frames(self) -> int | None:
        """The common number of frames of a frame-map output (None for vectors)."""
        return int(self.X.shape[-2]) if self.X.ndim >= 3 else None

    def take(self, utt_ids: Sequence[str]) -> np.ndarray:
        return self.X[[self.row[u] for u in utt_ids]]


def _train_fold(config, table: FeatureTable, manifest, folds, fold, seed, run_dir) -> tuple[pd.DataFrame, list[dict]]:
    by_id = manifest.set_index("utt_id")
    model = _model_for(config, seed, run_dir / "checkpoints" / f"fold{fold}-seed{seed}")
    train, val, test = (_fold_rows(folds, fold, s) for s in ("train", "val", "test"))
    norm = _transform_for(config)
    if norm is None:
        X = {"train": table.take(train), "val": table.take(val) if val else None, "test": table.take(test)}
    else:
        # validation speakers, like test speakers, are described by their own label-free rows
        enroll = _fold_rows(folds, fold, "enroll")
        described = val + (enroll if norm.test_statistics == "enrollment" else test)
        X = _normalised(norm, table, speaker_lookup(manifest), train, {"train": train, "val": val, "test": test},
                        described)
    y_val = by_id.loc[val, "label"].to_numpy() if val else None
    _fit(model, X["train"], by_id.loc[train, "label"].to_numpy(), by_id.loc[train, "speaker"].to_numpy(),
         X["val"], y_val)
    proba = model.predict_proba(X["test"])
    classes = [str(c) for c in model.classes_]
    frame = pd.DataFrame({"utt_id": test, "fold": fold, "seed": seed,
                          "label": by_id.loc[test, "label"].to_numpy(),
                          "pred": np.asarray(classes)[proba.argmax(axis=1)]})
    for j, label in enumerate(classes):
        frame[f"p_{label}"] = proba[:, j]
    return frame, list(getattr(model, "history_", []) or [])


def run_experiment(config: dict[str, Any], *, progress: bool = True) -> RunResult:
    """Run one resolved configuration end to end into its run directory (resumable).

    Args:
        config: One entry of `resolve_variants`.
        progress: Show progress bars.

    Returns:
        The run directory and its metrics.
    """
    from serkit.features.extract import extract_manifest
    from serkit.metrics import evaluate_run
    from serkit.schema import write_manifest
    from serkit.splits import make_folds, set_aside_enrollment, speaker_overlap, write_folds

    norm = _transform_for(config)  # a bad transform setting fails before any work
    run_dir = _run_dir(config)
    _claim_run_dir(run_dir, config)
    manifest = prepare_manifest(config)
    left_out = list(manifest.attrs.get("skipped", []))
    extractor = build_run_extractor(config)
    _write_config(run_dir, config, manifest, _precision_facts(config, extractor))
    write_manifest(manifest, run_dir / "manifest.csv")

    protocol = config["protocol"]
    folds_path = run_dir / "folds.csv"
    # models without early stopping (the SVM selects by inner CV) get no validation rows
    val_fraction = protocol.get("val_fraction", 0.2) if _takes_validation(_model_for(config, 0)) else 0.0
    try:
        folds = make_folds(manifest, protocol["name"], val_fraction=val_fraction, **protocol.get("options", {}))
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"protocol: {exc}") from None
    if norm is not None and norm.test_statistics == "enrollment":
        folds = set_aside_enrollment(folds, manifest, norm.enrollment_utterances, seed=int(config["run"]["seeds"][0]))
    write_folds(folds, folds_path)

    cache_root = _resolve_path(config, config["run"]["cache"])
    extraction = extract_manifest(manifest, extractor, cache_root, progress=progress,
                                  batch_size=config["run"].get("batch_size"))
    if extraction.failed:
        bad = {f["utt_id"] for f in extraction.failed}
        log.warning("%d utterance(s) failed feature extraction and are left out: %s", len(bad), sorted(bad)[:5])
        left_out += [{"path": f["path"], "reason": f["reason"]} for f in extraction.failed]
        manifest = manifest[~manifest["utt_id"].isin(bad)].reset_index(drop=True)
        folds = folds[~folds["utt_id"].isin(bad)].reset_index(drop=True)
        write_manifest(manifest, run_dir / "manifest.csv")
        write_folds(folds, folds_path)
    cache = FeatureCache(cache_root, extractor)
    output = _input_kind(_model_for(config, 0))
    table = FeatureTable(cache, manifest["utt_id"].tolist(), output, config["run"].get("max_frames"))

    pred_dir = run_dir / "predictions"
    pred_dir.mkdir(exist_ok=True)
    histories: dict[str, list] = {}
    history_path = run_dir / "history.json"
    if history_path.exists():
        histories = json.loads(history_path.read_text())
    parts = []
    for seed in config["run"]["seeds"]:
        for fold in sorted(folds["fold"].unique()):
            part_path = pred_dir / f"fold{fold}-seed{seed}.csv"
            if part_path.exists():
                parts.append(pd.read_csv(part_path, dtype={"utt_id": str, "label": str, "pred": str}))
                continue
            log.info("training fold %s seed %s", fold, seed)
            frame, history = _train_fold(config, table, manifest, folds, int(fold), int(seed), run_dir)
            if history:
                histories[f"{fold}-{seed}"] = history
                _write_json(histories, history_path)
            _write_csv(frame, part_path)
            parts.append(frame)
    predictions = pd.concat(parts, ignore_index=True)
    _write_csv(predictions, run_dir / "predictions.csv")
    if not history_path.exists():
        _write_json(histories, history_path)

    labels = sorted(manifest["label"].unique())
    overlap = speaker_overlap(manifest, folds)
    independent = bool((overlap["n_shared_speakers"] == 0).all())
    metrics = evaluate_run(predictions, manifest, folds, labels, speaker_independent=independent,
                           n_boot=config["run"]["bootstrap"], seed=int(config["run"]["seeds"][0]))
    metrics["protocol"] = protocol["name"]
    metrics["model"] = config["model"]["name"]
    metrics["features"] = config["features"]["kind"]
    if norm is not None:
        from serkit.transforms import describe

        metrics["transform"] = describe(norm)
    _write_json(metrics, run_dir / "metrics.json")

    if config["run"]["final_model"]:
        _final_model(config, table, manifest, extractor, run_dir, metrics)
    if config["run"]["report"]:
        from serkit.report import write_report

        write_report(run_dir)
    if left_out:
        _write_csv(pd.DataFrame(left_out, columns=["path", "reason"]), run_dir / "left_out.csv")
    return RunResult(run_dir, metrics, left_out)


def _final_model(config, table: FeatureTable, manifest, extractor, run_dir: Path, metrics: dict) -> Path:
    """Train on every utterance (validation speakers for early stopping) and save it."""
    from serkit.models.io import save_model
    from serkit.splits import make_folds

    model_dir = run_dir / "model"
    if (model_dir / "model.json").exists():
        return model_dir
    seed = int(config["run"]["seeds"][0])
    model = _model_for(config, seed, run_dir / "checkpoints" / "final")
    by_id = manifest.set_index("utt_id")
    val: list[str] = []
    fraction = config["protocol"].get("val_fraction", 0.2)
    if _takes_validation(model) and fraction > 0 and manifest["speaker"].nunique() > 1:
        # the test part of one speaker fold serves as validation; nothing is tested here
        n_folds = min(manifest["speaker"].nunique(), max(2, round(1 / fraction)))
        split = make_folds(manifest, "speaker_kfold", n_folds=n_folds, val_fraction=0.0, seed=seed)
        val = _fold_rows(split, 0, "test")
    held = set(val)
    train = [u for u in manifest["utt_id"] if u not in held]
    norm = _transform_for(config)
    if norm is None:
        X = {"train": table.take(train), "val": table.take(val) if val else None}
    else:  # every speaker's statistics are kept with the model (the service can name them)
        X = _normalised(norm, table, speaker_lookup(manifest), list(manifest["utt_id"]), {"train": train, "val": val}, [])
    _fit(model, X["train"], by_id.loc[train, "label"].to_numpy(), by_id.loc[train, "speaker"].to_numpy(),
         X["val"], by_id.loc[val, "label"].to_numpy() if val else None)
    overall = {k: metrics["overall"][k]["mean"] for k in ("wa", "ua", "macro_f1")}
    return save_model(model, model_dir, audio_spec=extractor.spec, features=extractor.identity(),
                      fingerprint=extractor.fingerprint(), transform=norm,
                      extra={"run": _run_name(config), "protocol": config["protocol"]["name"], "cv_metrics": overall,
                             "input_frames": table.frames})


def run_recipe(path: str | os.PathLike, overrides: Sequence[str] = (), variants: Sequence[str] = (),
               *, progress: bool = True) -> list[RunResult]:
    """Run every variant of a recipe (see `run_experiment`)."""
    recipe = load_recipe(path, overrides)
    return [run_experiment(config, progress=progress) for config in resolve_variants(recipe, variants)]

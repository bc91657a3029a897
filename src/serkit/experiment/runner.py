"""Experiments: a recipe in, a run directory out (prepare -> extract -> folds -> train -> evaluate -> report).

A recipe is a TOML file, parsed and checked once into a typed `serkit.experiment.config.RunConfig` per
run (a mistyped key or a bad value, model parameters included, is an error that names it
before any work). A recipe may hold ``[[variant]]`` tables (ablations, baselines side by
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

from serkit.experiment.config import CorpusConfig, RecipeError, RunConfig, load_config, load_recipe, resolve_path, resolve_variants
from serkit.features.cache import FeatureCache, atomic_write

__all__ = ["RecipeError", "RunResult", "load_recipe", "resolve_variants", "run_experiment", "run_recipe"]

log = logging.getLogger(__name__)

@dataclass
class RunResult:
    """Where a run went and its headline numbers.

    ``left_out`` lists the files the run did not use (unreadable at prepare time, failed
    feature extraction), as ``{"path", "reason"}``; they are also in ``left_out.csv``.
    """

    run_dir: Path
    metrics: dict[str, Any]
    left_out: list[dict[str, str]] = field(default_factory=list)


# --- stages -------------------------------------------------------------------------------

def _prepare_one(corpus: CorpusConfig) -> pd.DataFrame:
    from serkit.data.datasets import prepare
    from serkit.data.schema import read_manifest

    if corpus.manifest is not None:
        manifest = read_manifest(resolve_path(corpus.manifest))
    else:
        root = resolve_path(str(corpus.root))
        if corpus.synth is not None and not root.exists():
            from serkit.data.synth import write_corpus

            folder = root.parent if root.suffix == ".csv" else root
            write_corpus(folder, **corpus.synth)
        manifest = prepare(str(corpus.name), root, **corpus.options)
        skipped = manifest.attrs.get("skipped", [])
        if skipped:
            log.warning("%d unreadable file(s) left out of %s, e.g. %s", len(skipped), root, skipped[0])
    if corpus.label_map is not None:
        mapping = corpus.label_map
        manifest = manifest.assign(label=manifest["label"].map(lambda x: mapping.get(x, x if mapping.get("*") == "keep" else None)))
        dropped = manifest["label"].isna().sum()
        if dropped:
            log.info("label_map dropped %d utterance(s) of %s", dropped, corpus.name or "corpus")
        manifest = manifest.dropna(subset=["label"])
    if corpus.labels is not None:
        wanted = set(corpus.labels)
        absent = sorted(wanted - set(manifest["label"]))
        if absent:
            raise RecipeError(f"corpus.labels {absent} do not occur; present: {sorted(set(manifest['label']))}")
        manifest = manifest[manifest["label"].isin(wanted)]
    return manifest.reset_index(drop=True)


def _typed(config: RunConfig | dict[str, Any]) -> RunConfig:
    """A `RunConfig`; a plain resolved dict (one entry of `resolve_variants`) is typed and checked."""
    return config if isinstance(config, RunConfig) else RunConfig.from_dict(config)


def prepare_manifest(config: RunConfig | dict[str, Any]) -> pd.DataFrame:
    """The run's manifest: one corpus, or several (``corpora``) concatenated."""
    from serkit.data.schema import validate_manifest

    frames = [_prepare_one(c) for c in _typed(config).corpora]
    left_out = [item for frame in frames for item in frame.attrs.get("skipped", [])]
    manifest = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if manifest.empty:
        raise RecipeError("the corpus has no utterances left after label selection")
    manifest = validate_manifest(manifest)
    manifest.attrs["skipped"] = left_out  # files the adapters left out, with their reasons
    return manifest


def build_run_extractor(config: RunConfig | dict[str, Any]):
    """The recipe's feature extractor, with the recipe's AudioSpec when it gives one (`RunConfig.build_extractor`)."""
    return _typed(config).build_extractor()


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
    for config in load_config(path, overrides, variants):
        extractor = config.build_extractor()
        extractors.setdefault(extractor.fingerprint(), extractor)
    return list(extractors.values())


def recipe_cache(path: str | os.PathLike, overrides: Sequence[str] = ()) -> Path:
    """The feature cache folder a recipe's runs read (``run.cache``, resolved as `serkit run` does)."""
    return load_config(path, overrides)[0].cache_root


def _fixed_length(arrays: list[np.ndarray], max_frames: int | None) -> list[np.ndarray]:
    """Pad with zeros / cut along the time axis (-2) so frame maps stack; None = longest."""
    from serkit.data.audio import fix_length

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


def _model_for(config: RunConfig | dict[str, Any], seed: int, fold_dir: Path | None = None):
    """A fresh, checked classifier for one (fold, seed) (`RunConfig.build_model`)."""
    return _typed(config).build_model(seed, fold_dir)


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


def _claim_run_dir(run_dir: Path, config: RunConfig) -> None:
    """Check that an existing run used the same recipe (config.json's ``recipe``)."""
    path = run_dir / "config.json"
    wanted = json.loads(json.dumps(config.to_dict(), default=str))
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


def _precision_facts(config: RunConfig, extractor: Any) -> dict[str, str]:
    """The precisions this run computes in ("auto" resolved by measurement on this machine)."""
    facts = {}
    if getattr(extractor, "precision_field", None):  # pretrained encoders
        facts["features"] = extractor.precision_in_use()
    model = config.build_model()
    if hasattr(model, "precision") and hasattr(model, "accelerator"):  # the torch estimator
        from serkit.models.training import resolve_precision

        facts["training"] = resolve_precision(model.precision, model.accelerator)
    return facts


def _write_config(run_dir: Path, config: RunConfig, manifest: pd.DataFrame, precision: dict[str, str]) -> None:
    """config.json: the resolved recipe, plus the flat facts reports and comparisons read."""
    recipe = config.to_dict()
    _write_json({
        "precision": precision,
        "name": config.run_name,
        "corpus": "+".join(sorted(manifest["corpus"].unique())),
        "protocol": config.protocol.name,
        "protocol_options": config.protocol.options,
        "val_fraction": config.protocol.val_fraction,
        "model": recipe["model"],
        "features": recipe["features"],
        "audio": recipe.get("audio"),
        "seeds": list(config.run.seeds),
        "labels": sorted(manifest["label"].unique()),
        "recipe": json.loads(json.dumps(recipe, default=str)),
    }, run_dir / "config.json")


def _fold_rows(folds: pd.DataFrame, fold: int, split: str) -> list[str]:
    part = folds[(folds["fold"] == fold) & (folds["split"] == split)]
    return part["utt_id"].tolist()


def speaker_lookup(manifest: pd.DataFrame) -> dict[str, str]:
    """utt_id -> speaker identity (corpus-prefixed when corpora mix; `serkit.evaluation.fold_table.speaker_keys`)."""
    from serkit.evaluation.fold_table import speaker_keys

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


def _train_fold(config: RunConfig, table: FeatureTable, manifest, folds, fold, seed, run_dir) -> tuple[pd.DataFrame, list[dict]]:
    by_id = manifest.set_index("utt_id")
    model = config.build_model(seed, run_dir / "checkpoints" / f"fold{fold}-seed{seed}")
    train, val, test = (_fold_rows(folds, fold, s) for s in ("train", "val", "test"))
    norm = config.build_transform()
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


def run_experiment(config: RunConfig | dict[str, Any], *, progress: bool = True) -> RunResult:
    """Run one resolved configuration end to end into its run directory (resumable).

    Args:
        config: One `RunConfig` of `serkit.experiment.config.load_config` (or a plain entry of
            `resolve_variants`, typed and checked here).
        progress: Show progress bars.

    Returns:
        The run directory and its metrics.
    """
    from serkit.features.extract import extract_manifest
    from serkit.evaluation.metrics import evaluate_run
    from serkit.data.schema import write_manifest
    from serkit.evaluation.fold_table import write_folds
    from serkit.evaluation.leakage import speaker_overlap
    from serkit.evaluation.splits import make_folds
    from serkit.evaluation.validation import set_aside_enrollment

    config = _typed(config)  # every setting is checked before any work
    norm = config.build_transform()
    run_dir = config.run_dir
    _claim_run_dir(run_dir, config)
    manifest = prepare_manifest(config)
    left_out = list(manifest.attrs.get("skipped", []))
    extractor = config.build_extractor()
    _write_config(run_dir, config, manifest, _precision_facts(config, extractor))
    write_manifest(manifest, run_dir / "manifest.csv")

    protocol, settings = config.protocol, config.run
    folds_path = run_dir / "folds.csv"
    # models without early stopping (the SVM selects by inner CV) get no validation rows
    val_fraction = protocol.val_fraction if _takes_validation(config.build_model()) else 0.0
    try:
        folds = make_folds(manifest, protocol.name, val_fraction=val_fraction, **protocol.options)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"protocol: {exc}") from None
    if norm is not None and norm.test_statistics == "enrollment":
        folds = set_aside_enrollment(folds, manifest, norm.enrollment_utterances, seed=int(settings.seeds[0]))
    write_folds(folds, folds_path)

    cache_root = config.cache_root
    extraction = extract_manifest(manifest, extractor, cache_root, progress=progress, batch_size=settings.batch_size)
    if extraction.failed:
        bad = {f["utt_id"] for f in extraction.failed}
        log.warning("%d utterance(s) failed feature extraction and are left out: %s", len(bad), sorted(bad)[:5])
        left_out += [{"path": f["path"], "reason": f["reason"]} for f in extraction.failed]
        manifest = manifest[~manifest["utt_id"].isin(bad)].reset_index(drop=True)
        folds = folds[~folds["utt_id"].isin(bad)].reset_index(drop=True)
        write_manifest(manifest, run_dir / "manifest.csv")
        write_folds(folds, folds_path)
    cache = FeatureCache(cache_root, extractor)
    output = _input_kind(config.build_model())
    table = FeatureTable(cache, manifest["utt_id"].tolist(), output, settings.max_frames)

    pred_dir = run_dir / "predictions"
    pred_dir.mkdir(exist_ok=True)
    histories: dict[str, list] = {}
    history_path = run_dir / "history.json"
    if history_path.exists():
        histories = json.loads(history_path.read_text())
    parts = []
    for seed in settings.seeds:
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
                           n_boot=settings.bootstrap, seed=int(settings.seeds[0]))
    metrics["protocol"] = protocol.name
    metrics["model"] = config.model.name
    metrics["features"] = config.features.kind
    if norm is not None:
        from serkit.models.transforms import describe

        metrics["transform"] = describe(norm)
    _write_json(metrics, run_dir / "metrics.json")

    if settings.final_model:
        model_dir = _final_model(config, table, manifest, extractor, run_dir, metrics)
        if settings.export_onnx:  # the same model, faster to start; a kind without an export is kept as is
            from serkit.inference.export import ensure_export

            try:
                ensure_export(model_dir)
            except (ImportError, ValueError, RuntimeError, OSError) as exc:
                log.warning("%s: no ONNX export written (%s); prediction runs the saved model", model_dir, exc)
    if settings.report:
        from serkit.evaluation.report import write_report

        write_report(run_dir)
    if left_out:
        _write_csv(pd.DataFrame(left_out, columns=["path", "reason"]), run_dir / "left_out.csv")
    return RunResult(run_dir, metrics, left_out)


def _final_model(config: RunConfig, table: FeatureTable, manifest, extractor, run_dir: Path, metrics: dict) -> Path:
    """Train on every utterance (validation speakers for early stopping) and save it."""
    from serkit.models.io import save_model
    from serkit.evaluation.fold_table import speaker_keys
    from serkit.evaluation.validation import draw_validation

    model_dir = run_dir / "model"
    if (model_dir / "model.json").exists():
        return model_dir
    seed = int(config.run.seeds[0])
    model = config.build_model(seed, run_dir / "checkpoints" / "final")
    by_id = manifest.set_index("utt_id")
    val: list[str] = []
    fraction = config.protocol.val_fraction
    if _takes_validation(model) and fraction > 0 and manifest["speaker"].nunique() > 1:
        # validation speakers for early stopping, drawn as every fold's are (nothing is tested here)
        mask = draw_validation(manifest["label"].to_numpy(), speaker_keys(manifest), fraction, seed)
        val = manifest.loc[mask, "utt_id"].tolist()
    held = set(val)
    train = [u for u in manifest["utt_id"] if u not in held]
    norm = config.build_transform()
    if norm is None:
        X = {"train": table.take(train), "val": table.take(val) if val else None}
    else:  # every speaker's statistics are kept with the model (the service can name them)
        X = _normalised(norm, table, speaker_lookup(manifest), list(manifest["utt_id"]), {"train": train, "val": val}, [])
    _fit(model, X["train"], by_id.loc[train, "label"].to_numpy(), by_id.loc[train, "speaker"].to_numpy(),
         X["val"], by_id.loc[val, "label"].to_numpy() if val else None)
    overall = {k: metrics["overall"][k]["mean"] for k in ("wa", "ua", "macro_f1")}
    return save_model(model, model_dir, audio_spec=extractor.spec, features=extractor.identity(),
                      fingerprint=extractor.fingerprint(), transform=norm,
                      extra={"run": config.run_name, "protocol": config.protocol.name, "cv_metrics": overall,
                             "input_frames": table.frames})


def run_recipe(path: str | os.PathLike, overrides: Sequence[str] = (), variants: Sequence[str] = (),
               *, progress: bool = True) -> list[RunResult]:
    """Run every variant of a recipe (see `run_experiment`)."""
    return [run_experiment(config, progress=progress) for config in load_config(path, overrides, variants)]

"""The typed configuration of a run: a recipe (TOML) parsed once into frozen dataclasses, checked at load.

A recipe has one table per stage (``[corpus]`` or ``[[corpora]]``, ``[audio]``, ``[features]``,
``[transforms]``, ``[model]``, ``[protocol]``, ``[run]``) and may hold ``[[variant]]`` tables,
each the base recipe with its own values. `load_config` reads the file, applies ``--set``
overrides (`parse_value` is the one parser of their values: TOML syntax, bare words are
strings), resolves the variants and turns each into a `RunConfig`. Everything is checked there,
before any file is read or written: unknown keys and wrong types (named with their path), the
audio spec, the feature extractor's settings, the model's hyper-parameters (values included,
through `Classifier.check_params`), the transform against the model's input, the protocol's
name and options, and the run settings.

`RunConfig.build_extractor` is the one way a run's extractor is made, by `serkit run`
(`serkit.experiment.runner`) and by `serkit extract -f RECIPE`, so both fill and read one cache.
`RunConfig.to_dict` gives the resolved recipe as plain data (what ``config.json`` stores and
compares when a run resumes).
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serkit.data.audio import AudioSpec

__all__ = [
    "CorpusConfig",
    "FeaturesConfig",
    "ModelConfig",
    "ProtocolConfig",
    "RecipeError",
    "RunConfig",
    "RunSettings",
    "apply_overrides",
    "load_config",
    "load_recipe",
    "parse_value",
    "resolve_variants",
]

#: Every key a recipe may hold, by section; None marks a free-form table (checked by its stage).
SCHEMA: dict[str, Any] = {
    "name": str,
    "description": str,
    "corpus": {"name": str, "root": str, "manifest": str, "options": None, "labels": list,
               "label_map": None, "synth": None},
    "corpora": list,  # several corpora (cross-corpus): a list of corpus tables
    "audio": {"sampling_rate": int, "duration": float, "crop": str, "min_duration": float, "max_duration": float},
    "features": None,  # kind + the extractor's own settings (checked by the extractor)
    "model": {"name": str, "params": None},
    "transforms": None,  # e.g. speaker_norm = { test_statistics = "transductive" } (serkit.models.transforms)
    "protocol": {"name": str, "options": None, "val_fraction": float},
    "run": {"seeds": list, "output": str, "cache": str, "final_model": bool, "export_onnx": bool, "report": bool,
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


# --------------------------------------------------------------------------- raw recipes


def _check_keys(data: dict[str, Any], schema: dict[str, Any], source: str, where: str = "") -> None:
    """Refuse unknown keys and wrong types; errors read ``recipe.toml: run.bootstrap ...``.

    Args:
        data: A recipe table.
        schema: Its allowed keys: a nested dict for a sub-table, a type, or None for any value.
        source: The recipe file, as the error names it.
        where: The table's key path inside the file ("" at the top).

    Raises:
        RecipeError: An unknown key or a value of the wrong type.
    """
    for key, value in data.items():
        if key not in schema:
            raise RecipeError(f"{source}: {where + ': ' if where else ''}unknown key {key!r}; allowed: {sorted(schema)}")
        sub = schema[key]
        path = f"{where}.{key}" if where else key
        if isinstance(sub, dict):
            if not isinstance(value, dict):
                raise RecipeError(f"{source}: {path} must be a table")
            _check_keys(value, sub, source, path)
        elif sub is not None and not isinstance(value, sub) and not (sub is float and isinstance(value, int)):
            raise RecipeError(f"{source}: {path} must be {sub.__name__}, got {type(value).__name__}")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_value(raw: str) -> Any:
    """An override's value in TOML syntax (``7.0``, ``[0, 1]``, ``true``, ``"x"``); a bare word is a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(recipe: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed by `parse_value`)."""
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
        node[keys[-1]] = parse_value(raw.strip())
    return out


def load_recipe(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a recipe, apply overrides and check every key (the raw form; `load_config` types it).

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
    _check_keys(recipe, SCHEMA, str(path))
    for i, variant in enumerate(recipe.get("variant", [])):
        if not isinstance(variant, dict) or "name" not in variant:
            raise RecipeError(f"{path.name}: variant {i} needs a name")
        _check_keys({k: v for k, v in variant.items() if k != "name"}, SCHEMA, str(path), f"variant[{variant['name']}]")
    recipe.setdefault("name", path.stem)
    # Kept to be applied again over each variant: what the user typed beats what a variant sets.
    recipe[_OVERRIDES] = list(overrides)
    return recipe


def resolve_variants(recipe: dict[str, Any], only: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The recipe's runs as plain dicts: the base alone, or the base merged with each variant.

    ``--set`` overrides given to `load_recipe` are applied last, over each variant's own values.
    """
    overrides = recipe.get(_OVERRIDES, [])
    base = _merge(DEFAULTS, {k: v for k, v in recipe.items() if k not in ("variant", _OVERRIDES)})
    variants = recipe.get("variant", [])
    if not variants:
        if only:
            raise RecipeError(f"unknown variant(s) {sorted(only)}; this recipe has none")
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


# --------------------------------------------------------------------------- typed sections


def resolve_path(value: str) -> Path:
    """Paths in recipes may use $VARIABLES and ~; relative ones start at the working directory."""
    return Path(os.path.expandvars(value)).expanduser()


@dataclass(frozen=True)
class CorpusConfig:
    """One corpus: a manifest file, or an adapter name and its root folder.

    Attributes:
        name: Adapter (`serkit.data.datasets`), e.g. ``"emovo"``; with `root`.
        root: The corpus folder (or a metadata file for ``csv``).
        manifest: A ready manifest CSV instead of `name` + `root`.
        options: The adapter's own options.
        labels: Keep only these labels.
        label_map: Rename labels (``"*" = "keep"`` keeps unmapped ones; others are dropped).
        synth: Write a synthetic corpus at `root` first when it is absent (`serkit.data.synth.write_corpus`).
    """

    name: str | None = None
    root: str | None = None
    manifest: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] | None = None
    label_map: dict[str, Any] | None = None
    synth: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.manifest is None and not (self.name and self.root):
            raise RecipeError("corpus needs either manifest = FILE, or name = ADAPTER and root = PATH")
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(self.labels))


@dataclass(frozen=True)
class FeaturesConfig:
    """The feature extractor: its kind and its own settings (checked by building it)."""

    kind: str
    settings: dict[str, Any] = field(default_factory=dict)

    def build(self, spec: AudioSpec | None = None) -> Any:
        """The extractor (no model is loaded yet).

        Raises:
            RecipeError: Unknown kind or setting, or a bad value.
        """
        from serkit.features import build_extractor

        try:
            return build_extractor({"kind": self.kind, **self.settings}, spec)
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"features: {exc}") from None


@dataclass(frozen=True)
class ModelConfig:
    """The classifier: its registered name and hyper-parameters (checked by building it)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def build(self, seed: int = 0, checkpoint_dir: Path | None = None) -> Any:
        """A fresh, checked classifier; the run's seed and checkpoint folder are filled in where it takes them.

        Raises:
            RecipeError: Unknown model or hyper-parameter, or a value out of range.
        """
        from serkit.models import build_model, model_class

        params = dict(self.params)
        try:
            allowed = model_class(self.name)().get_params(deep=False)
            if "seed" in allowed:
                params.setdefault("seed", seed)
            if "checkpoint_dir" in allowed and checkpoint_dir is not None:
                params["checkpoint_dir"] = str(checkpoint_dir)
            model = build_model(self.name, **params)
            model.check_params()  # values too, before any feature is extracted
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"model: {exc}") from None
        return model


@dataclass(frozen=True)
class ProtocolConfig:
    """How folds are drawn (`serkit.evaluation.splits.make_folds`): protocol name, its options, validation share."""

    name: str = "speaker_kfold"
    options: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.2

    def __post_init__(self) -> None:
        from serkit.evaluation.splits import protocol_options

        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise RecipeError(f"protocol.val_fraction must be in [0, 1), got {self.val_fraction!r}")
        try:
            protocol_options(self.name, self.options)
        except ValueError as exc:
            raise RecipeError(f"protocol: {exc}") from None


@dataclass(frozen=True)
class RunSettings:
    """Where and how a run goes.

    Attributes:
        seeds: Training seeds; each (fold, seed) is one model.
        output: Folder of run directories.
        cache: Feature cache root.
        final_model: Train and save a model on every utterance at the end.
        export_onnx: Also write the final model's checked ONNX export (`serkit.inference.export`),
            which `serkit predict` and `serkit serve` then run by default (no torch or
            scikit-learn at start); a model kind without an export is saved without one.
        report: Write report/report.md.
        bootstrap: Speaker-bootstrap resamples for the intervals (at least 1).
        max_frames: Cut or pad frame maps to this many frames (None = longest).
        batch_size: Clips per extractor call (None = the extractor's own).
    """

    seeds: tuple[int, ...] = (0,)
    output: str = "runs"
    cache: str = "features"
    final_model: bool = True
    export_onnx: bool = True
    report: bool = True
    bootstrap: int = 1000
    max_frames: int | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in self.seeds):
            raise RecipeError(f"run.seeds must be a non-empty list of integers, got {list(self.seeds)!r}")
        if self.bootstrap < 1:  # serkit.evaluation.metrics draws at least one resample
            raise RecipeError(f"run.bootstrap must be >= 1, got {self.bootstrap}")
        for name in ("max_frames", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise RecipeError(f"run.{name} must be a positive integer, got {value}")


@dataclass(frozen=True)
class RunConfig:
    """One resolved run of a recipe (the base, or one variant), every section typed and checked.

    Attributes:
        name: The recipe's name (run folder).
        variant: The variant's name, or None for a recipe without variants.
        corpora: One corpus, or several concatenated (cross-corpus).
        audio: The recipe's ``[audio]`` spec, or None for the extractor's own.
        features, model, protocol, run: The sections above.
        transforms: The ``[transforms]`` table (`serkit.models.transforms.build_transform`), or None.
        source: The resolved recipe as plain data (`to_dict`).
    """

    name: str
    variant: str | None
    corpora: tuple[CorpusConfig, ...]
    audio: AudioSpec | None
    features: FeaturesConfig
    model: ModelConfig
    transforms: dict[str, Any] | None
    protocol: ProtocolConfig
    run: RunSettings
    source: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_dict(cls, resolved: dict[str, Any]) -> RunConfig:
        """Type and check one entry of `resolve_variants`.

        Raises:
            RecipeError: Anything that would fail later, named by its section.
        """
        data = copy.deepcopy(resolved)
        corpora = data.get("corpora") or [data.get("corpus", {})]
        features = dict(data.get("features") or {})
        if "kind" not in features:
            raise RecipeError("the recipe needs a [features] table with kind = ssl | whisper | logmel | mfcc | opensmile")
        if not data.get("model", {}).get("name"):
            raise RecipeError("the recipe needs [model] name = cnn | svm | efficientnet | pooled")
        try:
            audio = AudioSpec(**data["audio"]) if "audio" in data else None
        except (TypeError, ValueError) as exc:
            raise RecipeError(f"audio: {exc}") from None
        config = cls(
            name=str(data["name"]),
            variant=data.get("variant"),
            corpora=tuple(_corpus(c) for c in corpora),
            audio=audio,
            features=FeaturesConfig(str(features.pop("kind")), features),
            model=ModelConfig(str(data["model"]["name"]), dict(data["model"].get("params", {}))),
            transforms=data.get("transforms"),
            protocol=ProtocolConfig(**data.get("protocol", {})),
            run=RunSettings(**data.get("run", {})),
            source={k: v for k, v in data.items() if not k.startswith("_")},
        )
        config.build_extractor()  # settings are checked when the extractor is made (no model load)
        config.build_transform()  # builds and checks the model too
        return config

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain data (what ``config.json`` keeps under ``recipe``)."""
        return copy.deepcopy(self.source)

    def build_extractor(self) -> Any:
        """The run's feature extractor, with the recipe's AudioSpec when it gives one."""
        return self.features.build(self.audio)

    def build_model(self, seed: int = 0, checkpoint_dir: Path | None = None) -> Any:
        """A fresh classifier for one (fold, seed)."""
        return self.model.build(seed, checkpoint_dir)

    def build_transform(self) -> Any:
        """The recipe's transform (`serkit.models.transforms`) checked against the model's input; None when absent."""
        from serkit.models.transforms import build_transform

        try:
            return build_transform(self.transforms, str(getattr(self.build_model(), "input_kind", "")))
        except ValueError as exc:
            raise RecipeError(str(exc)) from None

    @property
    def run_name(self) -> str:
        """``name/variant``, or the name alone."""
        return f"{self.name}/{self.variant}" if self.variant else self.name

    @property
    def run_dir(self) -> Path:
        """The run directory under ``run.output``."""
        out = resolve_path(self.run.output) / self.name
        return out / self.variant if self.variant else out

    @property
    def cache_root(self) -> Path:
        """The feature cache root (``run.cache``)."""
        return resolve_path(self.run.cache)


def _corpus(table: Mapping[str, Any]) -> CorpusConfig:
    if not isinstance(table, Mapping):
        raise RecipeError(f"corpora entries must be tables, got {type(table).__name__}")
    unknown = sorted(set(table) - set(SCHEMA["corpus"]))
    if unknown:
        raise RecipeError(f"corpus: unknown key(s) {unknown}; allowed: {sorted(SCHEMA['corpus'])}")
    return CorpusConfig(**table)


def load_config(path: str | os.PathLike, overrides: Sequence[str] = (), variants: Sequence[str] = ()) -> list[RunConfig]:
    """A recipe's runs, typed and checked: what `serkit run` and `serkit extract -f` start from.

    Args:
        path: The recipe (TOML).
        overrides: ``--set section.key=value`` overrides.
        variants: Only these variants (default: all).

    Raises:
        RecipeError: The first problem found, named by file, variant and key.
    """
    runs = []
    for resolved in resolve_variants(load_recipe(path, overrides), variants):
        try:
            runs.append(RunConfig.from_dict(resolved))
        except RecipeError as exc:
            where = f"{Path(path).name}" + (f" variant {resolved['variant']!r}" if "variant" in resolved else "")
            raise RecipeError(f"{where}: {exc}") from None
    return runs

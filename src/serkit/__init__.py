"""serkit: speech emotion recognition on self-supervised speech representations.

The few names a user needs are here. Everything else lives in the stage packages, in the
order data flows: `serkit.data` (audio, manifests, corpora) -> `serkit.features` (extractors,
cache) -> `serkit.models` (transforms, classifiers) -> `serkit.evaluation` (splits, metrics,
report); `serkit.experiment` runs a recipe through them, `serkit.inference` predicts with and
exports a saved model, and `serkit.serving` puts it behind HTTP. Names from heavy modules are
imported on first use, so ``import serkit`` stays fast.

Example::

    import serkit

    predictor = serkit.Predictor.load("runs/demo/whisper_svm/model")
    print(predictor.predict_file("clip.wav").label)
    [config] = serkit.load_config("recipes/emovo_baselines.toml", variants=["whisper_svm"])
    print(config.model.name, config.features.kind, config.protocol.name)  # typed, checked
    [result] = serkit.run_recipe("recipes/emovo_baselines.toml", variants=["whisper_svm"])
    print(result.metrics["overall"]["ua"]["mean"])
"""


__version__ = "0.1.0"

from serkit import _moved  # noqa: E402
from serkit._lazy import lazy_attributes  # noqa: E402
from serkit.data.audio import PAPER_SPEC, AudioError, AudioSpec  # noqa: E402

_moved.install()

#: Public name -> the module that defines it (imported when the name is first used).
_LAZY = {
    "ManifestError": "serkit.data.schema",  # pandas: imported when first used
    "read_manifest": "serkit.data.schema",
    "Predictor": "serkit.inference.predictor",
    "Prediction": "serkit.inference.results",
    "run_recipe": "serkit.experiment.runner",
    "load_recipe": "serkit.experiment.runner",
    "RunResult": "serkit.experiment.runner",
    "RecipeError": "serkit.experiment.config",
    "load_config": "serkit.experiment.config",
    "RunConfig": "serkit.experiment.config",
    "load_model": "serkit.models.io",
    "save_model": "serkit.models.io",
    "build_model": "serkit.models.base",
    "build_extractor": "serkit.features.base",
    "SpeakerNorm": "serkit.models.transforms",
}

__all__ = ["PAPER_SPEC", "AudioError", "AudioSpec", "__version__", *_LAZY]
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

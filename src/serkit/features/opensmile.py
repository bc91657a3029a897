"""openSMILE features (eGeMAPS, ComParE, ...) through the `opensmile` Python package.

``feature_level="functionals"`` gives one vector per utterance, output ``"functionals"``:
(88,) for eGeMAPSv02, (6373,) for ComParE_2016; ``"lld"`` (and ``"lld_deltas"``, ComParE only)
give the low-level descriptors as ``"frames"`` (T, n_lld), 10 ms apart. All float32.

Signals should keep their native length (the default AudioSpec, ``duration=None``): zero
padding to a fixed duration would enter every functional as silence.

openSMILE converts float samples to 16-bit integers without clipping, so a sample at +1.0 would
wrap to -32768; samples are clipped to the int16 range first. Features depend on the openSMILE
build, so the package version is part of `OpenSmileExtractor.identity`.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from serkit.data.audio import AudioSpec
from serkit.features.base import Extractor

__all__ = ["FEATURE_LEVELS", "OpenSmileConfig", "OpenSmileExtractor"]

logger = logging.getLogger(__name__)

#: Setting value -> `opensmile.FeatureLevel` member name.
FEATURE_LEVELS: dict[str, str] = {
    "functionals": "Functionals",
    "lld": "LowLevelDescriptors",
    "lld_deltas": "LowLevelDescriptors_Deltas",
}

#: openSMILE's longest analysis window in eGeMAPSv02 and ComParE_2016, seconds: the 60 ms F0
#: window. Measured with opensmile 2.6 at 16 kHz, both sets, both levels: 959 samples give no
#: frame ("Segment too short"), 960 give one.
_LONGEST_WINDOW_S = 0.060

#: Largest float sample that survives openSMILE's ``x * 32768 -> int16`` conversion.
_INT16_MAX = 32767 / 32768


@dataclass(frozen=True)
class OpenSmileConfig:
    """Which openSMILE feature set and level to extract.

    Attributes:
        feature_set: Name of an `opensmile.FeatureSet` member, e.g. ``"eGeMAPSv02"`` or
            ``"ComParE_2016"``.
        feature_level: ``"functionals"`` (one vector per utterance), ``"lld"`` (frames) or
            ``"lld_deltas"`` (ComParE_2016 only).
    """

    feature_set: str = "eGeMAPSv02"
    feature_level: str = "functionals"

    def __post_init__(self) -> None:
        if self.feature_level not in FEATURE_LEVELS:
            raise ValueError(f"unknown openSMILE feature_level {self.feature_level!r}; allowed: {list(FEATURE_LEVELS)}")


def _feature_set(name: str) -> Any:
    """The `opensmile.FeatureSet` member called `name`, or a ValueError listing them."""
    import opensmile

    members = opensmile.FeatureSet.__members__
    if name not in members:
        raise ValueError(f"unknown openSMILE feature_set {name!r}; allowed: {list(members)}")
    return members[name]


class OpenSmileExtractor(Extractor):
    """openSMILE functionals (``"functionals"``) or low-level descriptors (``"frames"``).

    The `opensmile.Smile` object is built once, in `setup` or on first use, and reused.
    """

    name: ClassVar[str] = "opensmile"
    config_class: ClassVar[type] = OpenSmileConfig

    def __init__(self, config: OpenSmileConfig | None = None, spec: AudioSpec | None = None) -> None:
        super().__init__(config, spec)
        if not isinstance(self.config, OpenSmileConfig):
            raise TypeError(f"{type(self).__name__} needs an OpenSmileConfig, got {type(self.config).__name__}")
        _feature_set(self.config.feature_set)  # fail at construction, not at the first file
        self._smile: Any = None
        self._min_samples: int | None = None

    @property
    def output_name(self) -> str:
        """``"functionals"`` or ``"frames"``, following the feature level."""
        return "functionals" if self.config.feature_level == "functionals" else "frames"

    def setup(self, workdir: Path | None = None) -> None:
        """Build the openSMILE pipeline now rather than on the first signal."""
        self._get_smile()

    def _get_smile(self) -> Any:
        if self._smile is None:
            import opensmile

            level = opensmile.FeatureLevel[FEATURE_LEVELS[self.config.feature_level]]
            # opensmile raises ValueError itself for a level the set lacks (lld_deltas).
            self._smile = opensmile.Smile(feature_set=_feature_set(self.config.feature_set), feature_level=level)
            logger.debug("openSMILE %s / %s ready", self.config.feature_set, self.config.feature_level)
        return self._smile

    def __getstate__(self) -> dict[str, Any]:
        # The native pipeline is rebuilt lazily in a worker process rather than pickled.
        state = self.__dict__.copy()
        state["_smile"] = None
        return state

    def min_samples(self) -> int:
        """The fewest samples openSMILE makes a frame of, for this feature set and rate.

        openSMILE's frame sizes are in its config files, not its API, so this is measured once
        on silent probes: `_LONGEST_WINDOW_S` is tried first (two probes); any other feature set
        is bisected (about 18 probes of some 70 ms each).
        """
        if self._min_samples is None:
            rate = self.spec.sampling_rate
            guess = int(math.ceil(_LONGEST_WINDOW_S * rate))
            if self._gives_frame(guess) and not self._gives_frame(guess - 1):
                self._min_samples = guess
                return guess
            low, high = 1, 10 * rate
            while low < high:
                middle = (low + high) // 2
                low, high = (low, middle) if self._gives_frame(middle) else (middle + 1, high)
            self._min_samples = high
        return self._min_samples

    def _gives_frame(self, num_samples: int) -> bool:
        try:
            self._process(np.zeros(num_samples, dtype=np.float32), self.spec.sampling_rate)
        except ValueError:
            return False
        return True

    def feature_names(self) -> list[str]:
        """Column names, in output order (e.g. ``loudness_sma3_amean``)."""
        return list(self._get_smile().feature_names)

    def extract(self, signal: np.ndarray, sampling_rate: int) -> dict[str, np.ndarray]:
        """openSMILE features of one preprocessed signal.

        Returns:
            ``{"functionals": (n,)}`` or ``{"frames": (T, n_lld)}``, float32.

        Raises:
            ValueError: Not 1-D, empty, NaN/Inf, not at the AudioSpec's rate, or too short
                for openSMILE to produce a single frame of this feature set.
        """
        signal = np.asarray(signal)
        if signal.ndim != 1:
            raise ValueError(f"{self.name}: expected a 1-D signal, got shape {signal.shape}")
        if signal.size == 0:
            raise ValueError(f"{self.name}: empty signal (0 samples)")
        if sampling_rate != self.spec.sampling_rate:
            raise ValueError(
                f"{self.name}: signal is at {sampling_rate} Hz but the extractor's AudioSpec expects "
                f"{self.spec.sampling_rate} Hz; load it with serkit.data.audio.load(path, extractor.spec)"
            )
        if not np.isfinite(signal).all():
            raise ValueError(f"{self.name}: signal contains NaN or Inf samples")
        signal = np.clip(signal.astype(np.float32), -1.0, _INT16_MAX)
        table = self._process(signal, sampling_rate)
        values = table.to_numpy(dtype=np.float32)
        if self.output_name == "functionals":
            return {"functionals": np.ascontiguousarray(values[0])}
        return {"frames": np.ascontiguousarray(values)}

    def _process(self, signal: np.ndarray, sampling_rate: int) -> Any:
        """Run openSMILE, turning its "too short" warning and its own errors into a ValueError.

        The messages say which feature set failed on how long a signal; the callers (the
        Predictor, the extraction pipeline) add the file's name.
        """
        from opensmile.core.lib import OpenSmileException

        smile = self._get_smile()
        what = f"openSMILE {self.config.feature_set}"
        length = f"{signal.size} samples ({signal.size / sampling_rate:.3f} s)"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                table = smile.process_signal(signal, sampling_rate)
            except OpenSmileException as exc:
                raise ValueError(f"{what} failed on a signal of {length}: {exc}") from None
        for warning in caught:
            if "too short" in str(warning.message):
                raise ValueError(f"{what}: signal of {length} is too short to produce a frame")
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return table

    def identity(self) -> dict[str, Any]:
        """The base identity plus the opensmile package version (features depend on it)."""
        import opensmile

        identity = super().identity()
        identity["opensmile_version"] = opensmile.__version__
        return identity

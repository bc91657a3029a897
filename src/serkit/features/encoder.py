"""What every pretrained speech encoder shares: hidden states in, pooled statistics and frame maps out.

An encoder family (wav2vec 2.0-style models in `serkit.features.ssl`, Whisper in
`serkit.features.whisper`) subclasses `EncoderExtractor` and implements one method,
`hidden_states`: float32 arrays (hidden states, frames, dim) over each clip's true frames. This
base turns them into the outputs every classifier reads, identically for every family:

* ``"pooled"``: statistics over the frames of every hidden state the encoder gives,
  (hidden states, dim * len(pooling_stats)), float16;
* ``"frames"``: the frame x dim map of the hidden states in ``frame_layers``, zero-padded or cut
  to ``frames_length`` after the encoder, (len(frame_layers), frames, dim), float16.

It also keeps one fingerprint discipline: the identity adds the resolved model revision (the
commit of a cached Hub snapshot, or a digest of the model folder's config and weight files), so
replacing the weights changes the cache folder. A family whose encoder can be exported to ONNX
says so with ``exports_onnx_encoder`` and implements `export_onnx_encoder`; `serkit.inference.export` and
`serkit.inference.loading` ask the extractor instead of knowing the families.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from serkit.data.audio import AudioSpec, fix_length
from serkit.features.base import Extractor
from serkit.features.hub import is_final_revision, resolve_revision

__all__ = ["POOLING_STATS", "EncoderExtractor", "group_by_length", "pool_hidden_states", "probe_clip"]

logger = logging.getLogger(__name__)

#: The statistics `pool_hidden_states` offers, in their output order.
POOLING_STATS = ("mean", "std")
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def pool_hidden_states(hidden: np.ndarray, stats: tuple[str, ...] = POOLING_STATS) -> np.ndarray:
    """Statistics over the frames of every hidden state.

    Args:
        hidden: (num_hidden_states, frames, dim), true frames only.
        stats: ``("mean",)`` or ``("mean", "std")`` (population std).

    Returns:
        (num_hidden_states, dim * len(stats)) float32, statistics concatenated in `stats` order.
    """
    hidden = np.asarray(hidden, dtype=np.float32)
    parts = {"mean": lambda: hidden.mean(axis=1), "std": lambda: hidden.std(axis=1)}
    return np.concatenate([parts[name]() for name in stats], axis=-1).astype(np.float32, copy=False)


def probe_clip(sampling_rate: int = 16000, seconds: float = 3.0) -> np.ndarray:
    """A deterministic speech-like test signal: a voiced tone gliding 120 -> 220 Hz, 4 Hz syllables, noise.

    Used to time encoders and to compare precisions (`EncoderExtractor.precision_deviation`);
    not real speech, but it exercises every frame the way a voiced utterance does.
    """
    t = np.arange(int(round(seconds * sampling_rate))) / sampling_rate
    phase = 2 * np.pi * np.cumsum(120.0 + 100.0 * t / seconds) / sampling_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 16))
    syllables = 0.5 * (1.0 - np.cos(2 * np.pi * 4.0 * t))
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (0.1 * voiced * syllables + 0.003 * noise).astype(np.float32)


def check_pooling_stats(stats: tuple[str, ...], where: str) -> None:
    """Raise ValueError unless `stats` is ``("mean",)`` or ``("mean", "std")``."""
    if not stats or len(set(stats)) != len(stats) or not set(stats) <= set(POOLING_STATS):
        raise ValueError(f"{where}.pooling_stats must be ('mean',) or ('mean', 'std'), got {stats!r}")


def is_int(value: Any) -> bool:
    """An integer (numpy's included), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_encoder_numbers(config: Any, where: str) -> None:
    """Raise ValueError naming the field when an encoder config's layer or size settings are off.

    Checks ``frame_layers`` (integers), ``frames_length`` (positive or None), ``batch_size``
    (positive) and ``num_threads`` (positive or None).
    """
    if any(not is_int(i) for i in config.frame_layers):
        raise ValueError(f"{where}.frame_layers must be integers, got {config.frame_layers!r}")
    if config.frames_length is not None and (not is_int(config.frames_length) or config.frames_length < 1):
        raise ValueError(f"{where}.frames_length must be a positive integer or None, got {config.frames_length!r}")
    if not is_int(config.batch_size) or config.batch_size < 1:
        raise ValueError(f"{where}.batch_size must be a positive integer, got {config.batch_size!r}")
    if config.num_threads is not None and (not is_int(config.num_threads) or config.num_threads < 1):
        raise ValueError(f"{where}.num_threads must be a positive integer or None, got {config.num_threads!r}")


def fix_frames(frames: np.ndarray, length: int | None) -> np.ndarray:
    """Zero-pad or cut a (layers, frames, dim) map on the frame axis; None keeps it."""
    if length is None or frames.shape[1] == length:
        return frames
    return fix_length(frames, length, axis=1)


def to_float16(array: np.ndarray, what: str) -> np.ndarray:
    """Cast to float16, clipping (with a warning) values beyond its range instead of making inf."""
    peak = float(np.abs(array).max()) if array.size else 0.0
    if peak > _FLOAT16_MAX:
        logger.warning("%s: values up to %.3g exceed float16; clipped to +-%g", what, peak, _FLOAT16_MAX)
        array = np.clip(array, -_FLOAT16_MAX, _FLOAT16_MAX)
    return array.astype(np.float16)


def prepare_clips(
    signals: list[np.ndarray],
    sampling_rate: int,
    *,
    expected_rate: int,
    length: int | None,
    num_frames: Callable[[int], int],
    model: str,
) -> list[np.ndarray]:
    """Check rate and shape, bring clips to `length` samples when given (paper mode).

    Args:
        signals: 1-D clips.
        sampling_rate: Their rate in Hz.
        expected_rate: The encoder's rate in Hz.
        length: Samples to zero-pad or cut every clip to; None keeps each clip's length.
        num_frames: The encoder's frame count for a number of samples.
        model: The model's name, for messages.

    Returns:
        float32 clips, in input order.

    Raises:
        ValueError: Another sampling rate, a clip that is not 1-D, or one shorter than one encoder frame.
    """
    if sampling_rate != expected_rate:
        raise ValueError(f"{model} expects {expected_rate} Hz audio, got {sampling_rate} Hz")
    clips = []
    for position, signal in enumerate(signals):
        clip = np.asarray(signal, dtype=np.float32)
        if clip.ndim != 1:
            raise ValueError(f"signal {position}: expected a 1-D signal, got shape {clip.shape}")
        if length is not None and clip.shape[0] != length:
            clip = fix_length(clip, length)
        if num_frames(clip.shape[0]) < 1:
            raise ValueError(f"signal {position}: {clip.shape[0]} samples is shorter than one encoder frame")
        clips.append(clip)
    return clips


def group_by_length(lengths: list[int], batch_size: int, mixed_lengths: bool) -> list[list[int]]:
    """Indices grouped into encoder calls, sorted by length.

    Args:
        lengths: Length of each input.
        batch_size: Most inputs per group.
        mixed_lengths: Whether inputs of different lengths may share a call (the encoder masks
            padding exactly); otherwise only equal lengths are grouped.

    Returns:
        Groups of indices into `lengths`; every index appears once.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for index in order:
        same = groups and (mixed_lengths or lengths[groups[-1][0]] == lengths[index])
        if same and len(groups[-1]) < batch_size:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


class EncoderExtractor(Extractor):
    """Base of the pretrained-encoder extractors: `hidden_states` -> ``pooled`` and ``frames``.

    The config dataclass of a subclass has at least ``model``, ``revision``,
    ``pooling_stats``, ``frame_layers`` and ``frames_length`` (see the module docstring).
    """

    #: Whether `export_onnx_encoder` can write this encoder as an ONNX graph.
    exports_onnx_encoder: ClassVar[bool] = False
    #: The config field that holds the compute precision (``"auto"`` allowed), or None.
    precision_field: ClassVar[str | None] = None

    def __init__(self, config: Any = None, spec: AudioSpec | None = None) -> None:
        super().__init__(config, spec)
        self._revision: str | None = None

    @abstractmethod
    def hidden_states(self, signals: list[np.ndarray], sampling_rate: int) -> list[np.ndarray]:
        """Float32 hidden states of every clip over its true frames.

        Args:
            signals: 1-D clips at the encoder's sampling rate.
            sampling_rate: Their rate in Hz.

        Returns:
            Per clip, (hidden states given, frames, dim), in input order.
        """

    def model_source(self) -> str:
        """The Hub id or folder whose files identify the weights (the configured model)."""
        return str(self.config.model)

    def resolved_revision(self) -> str:
        """Commit hash of the cached model, ``local:<digest>`` for a folder, else the configured revision."""
        if self._revision is None or not is_final_revision(self._revision):
            self._revision = resolve_revision(self.model_source(), self.config.revision)
        return self._revision

    def identity(self) -> dict[str, Any]:
        """Base identity plus the resolved model revision (commit hash or local folder digest).

        A precision of ``"auto"`` is replaced by the precision actually used, so the cache holds
        what was computed and "auto" resolving to float32 shares float32's cache.
        """
        identity = super().identity()
        identity["model_revision"] = self.resolved_revision()
        if self.precision_field and getattr(self.config, self.precision_field) == "auto":
            identity["config"][self.precision_field] = self.precision_in_use()
        return identity

    def precision_in_use(self) -> str:
        """The compute precision this extractor runs with (``"auto"`` resolved by measurement)."""
        return str(getattr(self.config, self.precision_field)) if self.precision_field else "float32"

    def float32_settings(self) -> dict[str, Any]:
        """The config changes that make this extractor compute in plain float32 (the guard's reference)."""
        return {self.precision_field: "float32"} if self.precision_field else {}

    def precision_deviation(self, signals: list[np.ndarray] | None = None, sampling_rate: int | None = None) -> dict[str, Any]:
        """The accuracy guard: how far this precision's pooled statistics are from float32's.

        Runs `signals` (default: a 3 s `probe_clip`) through this extractor and through a float32
        twin, and compares the pooled statistics layer by layer.

        Returns:
            ``{"precision", "per_layer": [relative L2 deviation per hidden state], "max"}``;
            the deviation of a clip's layer is ``||p - p_float32|| / ||p_float32||``, the
            maximum over clips is reported.
        """
        from serkit.precision import relative_deviation

        rate = sampling_rate or self.spec.sampling_rate
        clips = signals if signals is not None else [probe_clip(rate)]
        used = self.precision_in_use()
        result: dict[str, Any] = {"precision": used}
        resolved = {self.precision_field: used} if self.precision_field else {}
        reference_config = dataclasses.replace(self.config, **self.float32_settings())
        if reference_config == dataclasses.replace(self.config, **resolved):
            return {**result, "per_layer": [], "max": 0.0}  # it computes in float32 already
        twin = type(self)(reference_config, self.spec)
        stats = self.config.pooling_stats
        ours = [pool_hidden_states(h, stats) for h in self.hidden_states(clips, rate)]
        reference = [pool_hidden_states(h, stats) for h in twin.hidden_states(clips, rate)]
        per_layer = np.max(
            [[relative_deviation(r[i : i + 1], o[i : i + 1]) for i in range(len(r))] for r, o in zip(reference, ours)], axis=0
        )
        return {**result, "per_layer": [round(float(d), 6) for d in per_layer], "max": float(per_layer.max())}

    def extract(self, signal: np.ndarray, sampling_rate: int) -> dict[str, np.ndarray]:
        """Features of one preprocessed clip: ``{"pooled": ..., "frames": ...}``, float16."""
        return self.extract_batch([signal], sampling_rate)[0]

    def extract_batch(self, signals: list[np.ndarray], sampling_rate: int) -> list[dict[str, np.ndarray]]:
        """Features of several clips, in input order; each clip's result ignores its batch mates."""
        return [self._outputs(hidden) for hidden in self.hidden_states(signals, sampling_rate)]

    def frame_rows(self, hidden: np.ndarray) -> np.ndarray:
        """The rows of `hidden` that ``frame_layers`` names (hidden-state indices)."""
        return hidden[list(self.config.frame_layers)]

    def min_samples(self) -> int:
        """The encoder's receptive field: the fewest samples that give one frame (``num_frames >= 1``).

        400 samples (25 ms) at 16 kHz for wav2vec 2.0-style encoders (their convolution stack),
        160 (one 10 ms log-mel hop) for Whisper. The family's ``num_frames`` needs the model set
        up, since its configuration holds the sizes. In ``"paper"`` mode the encoder sees the clip
        padded to 7 s, but a clip shorter than this still holds less than one frame of audio.

        Raises:
            ValueError: The family has no ``num_frames``, or no length up to 60 s gives a frame.
        """
        num_frames = getattr(self, "num_frames", None)
        if not callable(num_frames):
            raise ValueError(f"the {self.name} encoder does not say how many frames a clip gives")
        low, high = 1, 1
        while num_frames(high) < 1:  # double until a frame comes out, then bisect
            low, high = high + 1, 2 * high
            if high > 60 * self.spec.sampling_rate:
                raise ValueError(f"{self.config.model}: no clip up to 60 s gives an encoder frame")
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if num_frames(middle) >= 1 else (middle + 1, high)
        return high

    def export_onnx_encoder(self, out_dir: Path) -> Path:
        """Write the encoder as ONNX under `out_dir` and return the file (families that can).

        Raises:
            ValueError: This family's encoder has no ONNX export.
        """
        raise ValueError(f"the {self.name} encoder has no ONNX export; it runs in its own backend")

    def _outputs(self, hidden: np.ndarray) -> dict[str, np.ndarray]:
        """Per-utterance float16 outputs from (hidden states, frames, dim) float32."""
        model = str(self.config.model)
        outputs = {"pooled": to_float16(pool_hidden_states(hidden, self.config.pooling_stats), model)}
        if self.config.frame_layers:
            frames = fix_frames(self.frame_rows(hidden), self.config.frames_length)
            outputs["frames"] = to_float16(frames, model)
        return outputs

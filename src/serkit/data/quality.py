"""Quality of a decoded recording: silence, near-silence, clipping and too-short audio.

`assess` measures a decoded signal and returns its findings as `QualityWarning` s: a stable
machine ``code`` and a human ``message``. `check` does the same and raises `AudioQualityError`
(an `serkit.data.audio.AudioError` naming the source) when a finding makes a prediction meaningless.
The Predictor runs `check` on every input before preprocessing, so each prediction carries its
warnings (``Prediction.warnings``, the ``warnings`` field of ``serkit predict``'s JSON and CSV
and of the service's JSON) and refused inputs are reported with their reason.

When a warning becomes a refusal:

* ``silent``, refused: every sample is exactly zero (a muted microphone, an empty track); any
  label would be a guess about digital silence.
* ``too_short``, refused: shorter than the model's minimum (`model_min_duration`): less audio
  than one analysis frame of its features, which would then describe padding, not the recording.
* ``near_silent``, warning: RMS level below `NEAR_SILENT_DBFS` (-60 dBFS).
* ``clipped``, warning: more than `CLIPPED_FRACTION` (0.1 %) of the samples lie in flat runs at
  full scale.
* ``short``, warning: shorter than `SHORT_S` (1 s) but not shorter than the model's minimum.
* ``header`` and ``damaged``, warnings from decoding (`decoding_findings`): a header that lied
  about the data (a WAV saying 0 bytes) or a compressed stream with skipped, undecodable
  packets or unreadable trailing bytes; what could be read was used.

Near-silence and clipping stay warnings: such a recording still holds speech (quiet speech and
broadcast audio are both real), the label is returned and the warning says how far to trust it.

Levels are in dBFS: 20 log10 of the RMS (or peak) of float samples whose full scale is 1.0, so a
full-scale square wave is 0 dBFS and a full-scale sine -3 dBFS (no AES17 +3 dB convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from serkit.data.audio import AudioError, DecodeWarning, HeaderWarning

__all__ = [
    "ANALYSIS_WINDOW_S",
    "CLIPPED_FRACTION",
    "CLIP_LEVEL_DBFS",
    "CLIP_RUN",
    "NEAR_SILENT_DBFS",
    "REFUSALS",
    "SHORT_S",
    "SILENT_MESSAGE",
    "AudioQualityError",
    "LevelMeter",
    "Levels",
    "QualityWarning",
    "assess",
    "assess_levels",
    "check",
    "check_levels",
    "decoding_findings",
    "measure",
    "model_min_duration",
]

#: RMS level (dBFS) below which a recording is called near-silent. Speech is nominally recorded
#: at -26 dBov active level (ITU-T P.56); the quietest real utterances measured with serkit were
#: EMOVO's at -53.9 dBFS RMS (median -32 dBFS; URDU: quietest -41.9, median -19.7), so -60 dBFS
#: sits 6 dB under the quietest real speech seen and 34 dB under the nominal level: what is left
#: there is a muted or disconnected microphone's noise floor.
NEAR_SILENT_DBFS = -60.0

#: A sample at or above this level (dBFS) counts as full scale: within 0.1 dB of it, which
#: covers 16- and 24-bit full scale (32767/32768) and 8-bit full scale (127/128, -0.07 dBFS).
CLIP_LEVEL_DBFS = -0.1

#: Consecutive full-scale samples that make a clipped run. Sample-counting clip detectors call a
#: single sample at full scale a peak, not clipping (a peak-normalised recording has one); three
#: is the default start threshold of Audacity's "Find Clipping".
CLIP_RUN = 3

#: Largest step between neighbours of a clipped run: one 16-bit quantisation step. A clipped
#: waveform is flat; an unclipped full-scale tone is not (at its crest a 200 Hz sine sampled at
#: 16 kHz still moves about 100 steps per sample), so it is not mistaken for clipping. Lossy
#: codecs ripple a clipped plateau, so clipping decoded from MP3 or AAC may go unflagged.
_FLAT_STEP = 2.0**-15

#: Share of samples in clipped runs above which a recording is flagged: 1 ms per second. Measured
#: with `measure`: none of EMOVO's 588 studio utterances has any clipped run; 14 of URDU's 400
#: talk-show clips (broadcast audio with flat-topped waveforms) exceed it, up to 0.26 %.
CLIPPED_FRACTION = 0.001

#: Recordings shorter than this (seconds) get a ``short`` warning: shorter than any utterance of
#: the corpora serkit was measured on (EMOVO's shortest is 1.29 s, URDU's 0.99 s), so a model has
#: not seen so little speech.
SHORT_S = 1.0

#: The shortest clip any model accepts (seconds): one 25 ms analysis window, the frame length of
#: speech features: wav2vec 2.0's convolutional receptive field (400 samples at 16 kHz), the
#: window of Whisper's and serkit's log-mel / MFCC frames. Below it no frame holds the audio.
ANALYSIS_WINDOW_S = 0.025

#: Codes that refuse the input instead of warning.
REFUSALS: frozenset[str] = frozenset({"silent", "too_short"})

#: What a ``silent`` refusal says (the service's page shows it as it is).
SILENT_MESSAGE = "no sound in this recording (every sample is zero): check the microphone"

_CLIP_LEVEL = 10.0 ** (CLIP_LEVEL_DBFS / 20.0)
#: Frames measured at a time, so measuring a long recording needs little extra memory.
_BLOCK_FRAMES = 1 << 20


@dataclass(frozen=True)
class QualityWarning:
    """One finding about a recording.

    Attributes:
        code: Stable machine code: ``silent``, ``too_short``, ``near_silent``, ``clipped``,
            ``short``, ``header``, ``damaged``.
        message: What is wrong and what to do, for people.
    """

    code: str
    message: str

    @property
    def refusal(self) -> bool:
        """Whether this finding refuses the input (see `REFUSALS`)."""
        return self.code in REFUSALS

    def to_dict(self) -> dict[str, str]:
        """``{"code": ..., "message": ...}`` for JSON."""
        return {"code": self.code, "message": self.message}


class AudioQualityError(AudioError):
    """A recording refused for its content (silent, too short); the message names the source.

    Attributes:
        code: The refusal's code (``silent`` or ``too_short``).
        warnings: Every finding about the recording, the refusal first.
    """

    def __init__(self, source: str, findings: list[QualityWarning]) -> None:
        refusal = next(f for f in findings if f.refusal)
        super().__init__(source, refusal.message)
        self.code = refusal.code
        self.warnings = [refusal, *(f for f in findings if f is not refusal)]


@dataclass(frozen=True)
class Levels:
    """Measurements of a decoded signal.

    Attributes:
        frames: Length in frames (samples per channel).
        rms_dbfs: RMS level over every sample of every channel, dBFS (-inf when all zero).
        peak_dbfs: Largest absolute sample, dBFS (-inf when all zero).
        clipped_fraction: Share of samples (all channels) in flat runs of at least `CLIP_RUN`
            consecutive samples at or above `CLIP_LEVEL_DBFS` (neighbours within one 16-bit
            step of each other).
    """

    frames: int
    rms_dbfs: float
    peak_dbfs: float
    clipped_fraction: float

    @property
    def silent(self) -> bool:
        """Every sample is exactly zero."""
        return self.peak_dbfs == -math.inf


def _dbfs(value: float) -> float:
    return 20.0 * math.log10(value) if value > 0 else -math.inf


def _clipped_in(block: np.ndarray) -> int:
    """Samples of a (frames, channels) block inside flat runs of `CLIP_RUN` full-scale samples."""
    full = np.abs(block) >= _CLIP_LEVEL
    if block.shape[0] < CLIP_RUN or not full.any():
        return 0
    flat = np.abs(np.diff(block, axis=0)) <= _FLAT_STEP  # pairs (i, i + 1) on a plateau
    count = block.shape[0] - CLIP_RUN + 1
    starts = full[:count].copy()  # a flat full-scale run of CLIP_RUN samples starts here
    for offset in range(1, CLIP_RUN):
        starts &= full[offset : offset + count] & flat[offset - 1 : offset - 1 + count]
    inside = np.zeros_like(full)
    for offset in range(CLIP_RUN):
        inside[offset : offset + count] |= starts
    return int(inside.sum())


class LevelMeter:
    """`measure`, block by block: for recordings streamed rather than held in memory.

    Feed consecutive (frames, channels) blocks to `add`; `levels` gives what `measure` gives
    for the whole (a clipped run that crosses a block boundary is counted in parts).
    """

    def __init__(self) -> None:
        self.frames = 0
        self._samples = 0
        self._squares = 0.0
        self._peak = 0.0
        self._clipped = 0

    def add(self, block: np.ndarray) -> None:
        """Measure the next block (shape (frames,) or (frames, channels), full scale 1.0).

        Raises:
            ValueError: Not 1-D or 2-D, or NaN / Inf samples.
        """
        array = np.asarray(block)
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise ValueError(f"expected samples of shape (frames,) or (frames, channels), got {np.shape(block)}")
        for start in range(0, array.shape[0], _BLOCK_FRAMES):
            part = array[start : start + _BLOCK_FRAMES].astype(np.float64)
            if not np.isfinite(part).all():
                raise ValueError("NaN or Inf samples cannot be measured")
            self._squares += float(np.square(part).sum())
            if part.size:
                self._peak = max(self._peak, float(np.abs(part).max()))
            self._clipped += _clipped_in(part)
        self.frames += int(array.shape[0])
        self._samples += int(array.size)

    def levels(self) -> Levels:
        """The measurements so far.

        Raises:
            ValueError: Nothing measured yet.
        """
        if self._samples == 0:
            raise ValueError("no samples measured")
        return Levels(
            frames=self.frames,
            rms_dbfs=_dbfs(math.sqrt(self._squares / self._samples)),
            peak_dbfs=_dbfs(self._peak),
            clipped_fraction=self._clipped / self._samples,
        )


def measure(signal: np.ndarray) -> Levels:
    """RMS and peak levels and the clipped share of a decoded signal.

    Args:
        signal: Float samples with full scale 1.0, shape (frames,) or (frames, channels); what
            `serkit.data.audio.read` returns.

    Returns:
        The measurements. Runs that cross a block boundary of 2**20 frames are counted in parts
        and may be missed when a part is shorter than `CLIP_RUN` (a bias of a few samples).

    Raises:
        ValueError: Not 1-D or 2-D, no samples, or NaN / Inf samples.
    """
    array = np.asarray(signal)
    if array.ndim not in (1, 2) or array.size == 0:
        raise ValueError(f"expected samples of shape (frames,) or (frames, channels), got {np.shape(signal)}")
    meter = LevelMeter()
    meter.add(array)
    return meter.levels()


def assess(signal: np.ndarray, sampling_rate: int, *, min_duration: float = ANALYSIS_WINDOW_S) -> list[QualityWarning]:
    """Every quality finding about a decoded signal, refusals first.

    Args:
        signal: Float samples with full scale 1.0, shape (frames,) or (frames, channels).
        sampling_rate: Its rate in Hz.
        min_duration: The model's minimum in seconds (`model_min_duration`); shorter is refused.

    Returns:
        The findings; empty for a clean recording. A signal `measure` cannot measure (wrong
        shape, no samples) or with NaN/Inf samples gives none: the reader and preprocessing
        refuse those with their own reasons.
    """
    try:
        levels = measure(signal)
    except ValueError:
        return []
    return assess_levels(levels, sampling_rate, min_duration=min_duration)


def assess_levels(levels: Levels, sampling_rate: int, *, min_duration: float = ANALYSIS_WINDOW_S) -> list[QualityWarning]:
    """`assess` from measurements already made (`measure`, or a `LevelMeter` over a stream)."""
    duration = levels.frames / sampling_rate
    findings: list[QualityWarning] = []
    if levels.silent:
        findings.append(QualityWarning("silent", SILENT_MESSAGE))
    if duration < min_duration:
        samples = "1 sample" if levels.frames == 1 else f"{levels.frames} samples"
        findings.append(QualityWarning(
            "too_short",
            f"too short to analyse: {duration:.3f} s ({samples}) of audio, "
            f"this model needs at least {min_duration:.3f} s",
        ))
    elif duration < SHORT_S:
        findings.append(QualityWarning(
            "short",
            f"only {duration:.2f} s of audio: predictions from less than {SHORT_S:g} s of speech are unreliable",
        ))
    if not levels.silent and levels.rms_dbfs < NEAR_SILENT_DBFS:
        findings.append(QualityWarning(
            "near_silent",
            f"almost no sound (level {levels.rms_dbfs:.0f} dBFS, speech is usually -40 to -20 dBFS): "
            "check that the microphone is not muted, speak closer or raise the input gain",
        ))
    if levels.clipped_fraction > CLIPPED_FRACTION:
        findings.append(QualityWarning(
            "clipped",
            f"clipped: {100 * levels.clipped_fraction:.1f} % of the samples are cut off at full scale, "
            "so the sound is distorted: lower the input gain or move away from the microphone",
        ))
    return sorted(findings, key=lambda f: not f.refusal)


def check(
    signal: np.ndarray, sampling_rate: int, *, min_duration: float = ANALYSIS_WINDOW_S, name: str = "<signal>"
) -> list[QualityWarning]:
    """The warnings of a signal that may be predicted; refuse one that may not.

    Args:
        signal: Float samples with full scale 1.0, shape (frames,) or (frames, channels).
        sampling_rate: Its rate in Hz.
        min_duration: The model's minimum in seconds (`model_min_duration`).
        name: Names the input in the error.

    Returns:
        The warnings (none of them a refusal).

    Raises:
        AudioQualityError: All samples zero (``silent``) or shorter than `min_duration`
            (``too_short``); the message names `name` and the reason.
    """
    return _refuse_or_return(assess(signal, sampling_rate, min_duration=min_duration), name)


def check_levels(
    levels: Levels, sampling_rate: int, *, min_duration: float = ANALYSIS_WINDOW_S, name: str = "<signal>"
) -> list[QualityWarning]:
    """`check` from measurements already made (a `LevelMeter` over a streamed recording).

    Raises:
        AudioQualityError: As `check`.
    """
    return _refuse_or_return(assess_levels(levels, sampling_rate, min_duration=min_duration), name)


def _refuse_or_return(findings: list[QualityWarning], name: str) -> list[QualityWarning]:
    if any(f.refusal for f in findings):
        raise AudioQualityError(name, findings)
    return findings


def model_min_duration(extractor: Any) -> float:
    """The shortest recording, in seconds, a model with this feature extractor accepts.

    The largest of: one analysis window (`ANALYSIS_WINDOW_S`), the AudioSpec's
    ``min_duration`` and the extractor's own ``min_samples()`` (openSMILE: its longest window,
    60 ms for eGeMAPS and ComParE; pretrained encoders: their receptive field).

    Args:
        extractor: A `serkit.features.base.Extractor`, set up.

    Returns:
        Seconds.
    """
    spec = extractor.spec
    own = getattr(extractor, "min_samples", None)
    samples = int(own()) if callable(own) else 1
    return max(ANALYSIS_WINDOW_S, float(spec.min_duration), samples / spec.sampling_rate)


#: Decoding warning class -> finding code.
_DECODING_CODES = {HeaderWarning: "header", DecodeWarning: "damaged"}


def decoding_findings(notes: list[tuple[type[Warning], str]]) -> list[QualityWarning]:
    """The warnings of `serkit.data.audio_notes.collect_notes` as findings (``header``, ``damaged``).

    Args:
        notes: ``(category, message)`` pairs recorded while reading one recording.

    Returns:
        One `QualityWarning` per note of a known category, in order.
    """
    return [QualityWarning(_DECODING_CODES[category], message) for category, message in notes
            if category in _DECODING_CODES]

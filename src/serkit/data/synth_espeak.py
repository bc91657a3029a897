"""The espeak-ng voice of the synthetic corpus: espeak-ng speaks, signal processing adds voice quality.

`espeak` runs espeak-ng as a subprocess with ``-p`` pitch, ``-s`` speed, ``-a`` amplitude and
``-g`` word-gap options and an SSML ``<prosody range>`` per utterance, decodes the WAV it writes
to stdout, trims and resamples it, then adds what espeak cannot vary: spectral tilt and breath
noise. Speakers map to gendered voice variants (`VARIANTS`) of `LANGUAGE`; `EspeakError` is
raised when espeak-ng runs but gives no usable audio.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
import soxr

from serkit.data.synth_dsp import SAMPLING_RATE, breath_noise, finish, pad, rms, smooth, tilt_filter

if TYPE_CHECKING:  # annotations only: serkit.data.synth imports this module
    from serkit.data.synth import Speaker, Utterance

__all__ = ["LANGUAGE", "VARIANTS", "EspeakError", "espeak", "espeak_executable", "espeak_version"]

#: espeak-ng voice variants per gender; speakers cycle through them (`serkit.data.synth`).
VARIANTS = {"female": ("f1", "f2", "f3", "f4", "f5"), "male": ("m3", "m2", "m6", "m5", "m1")}
LANGUAGE = "en-us"
_ESPEAK_SPEED = 170  # words per minute of a neutral utterance
_ESPEAK_AMPLITUDE = 50  # -a of a neutral utterance; angry (+7 dB) stays below espeak's clipping
_ESPEAK_PITCH_PER_ST = 6.0  # -p units per semitone, measured on espeak-ng 1.51
_ESPEAK_RANGE = 50  # espeak's default prosody range
_ESPEAK_TIMEOUT_S = 60


class EspeakError(OSError):
    """espeak-ng ran but did not produce usable audio."""


def espeak_executable() -> str | None:
    """The path of espeak-ng found on PATH, or None when it is not installed."""
    return shutil.which("espeak-ng")


def _espeak_command(exe: str, sentence: str, speaker: Speaker, utt: Utterance) -> list[str]:
    """espeak-ng arguments: pitch, speed and amplitude options plus an SSML pitch range."""
    pitch = round(50 + _ESPEAK_PITCH_PER_ST * (utt.pitch_st + speaker.pitch_st))
    speed = round(_ESPEAK_SPEED * utt.rate * speaker.rate)
    amplitude = round(_ESPEAK_AMPLITUDE * 10 ** (utt.level_db / 20))
    pitch_range = round(_ESPEAK_RANGE * utt.range_scale)
    gap = max(0, round(6 * (utt.pause - 1.0)))  # word gap in 10 ms units: sad speech pauses more
    ssml = f'<speak><prosody range="{min(max(pitch_range, 0), 100)}">{escape(sentence)}</prosody></speak>'
    return [
        exe, "-m", "--stdout", "-z",
        "-v", f"{LANGUAGE}+{speaker.variant}",
        "-p", str(min(max(pitch, 0), 99)),
        "-s", str(min(max(speed, 80), 450)),
        "-a", str(min(max(amplitude, 1), 200)),
        "-g", str(gap),
        ssml,
    ]


def _run_espeak(command: list[str]) -> tuple[np.ndarray, int]:
    """Run espeak-ng and decode the WAV it writes to stdout."""
    try:
        done = subprocess.run(command, capture_output=True, timeout=_ESPEAK_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise EspeakError(f"espeak-ng took longer than {_ESPEAK_TIMEOUT_S} s") from None
    if done.returncode != 0 or not done.stdout:
        message = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise EspeakError(f"espeak-ng failed: {message}")
    try:
        audio, rate = sf.read(io.BytesIO(done.stdout), dtype="float64", always_2d=False)
    except sf.LibsndfileError as exc:
        raise EspeakError(f"espeak-ng wrote unreadable audio: {exc}") from None
    return (audio.mean(axis=1) if audio.ndim > 1 else audio), int(rate)


def _trim(x: np.ndarray, floor_db: float = -45.0) -> np.ndarray:
    """Drop leading and trailing samples quieter than `floor_db` below the peak."""
    envelope = smooth(np.abs(x), int(0.01 * SAMPLING_RATE))
    loud = np.flatnonzero(envelope > np.max(envelope) * 10 ** (floor_db / 20))
    return x[loud[0]:loud[-1] + 1] if loud.size else x


def espeak(exe: str, sentence: str, speaker: Speaker, utt: Utterance, rng: np.random.Generator) -> np.ndarray:
    """Speak with espeak-ng (its -a sets the loudness), then add the voice quality it cannot."""
    audio, rate = _run_espeak(_espeak_command(exe, sentence, speaker, utt))
    if audio.size == 0 or not np.any(audio):
        raise EspeakError("espeak-ng produced silence")
    speech = _trim(soxr.resample(audio, rate, SAMPLING_RATE))
    level = rms(speech)
    speech = tilt_filter(speech, utt.tilt)
    envelope = smooth(np.abs(speech), int(0.02 * SAMPLING_RATE))
    speech = speech / max(rms(speech), 1e-9)
    # espeak's own voices are already a little breathy: add less than the source-filter voice
    speech = speech + breath_noise(envelope / max(rms(envelope), 1e-9), 0.6 * utt.breath, rng)
    speech = speech * level / max(rms(speech), 1e-9)  # filtering must not undo espeak's -a
    return finish(pad(speech, rng), speaker.gain_db, rng)


def espeak_version(exe: str) -> str:
    """The first words of ``espeak-ng --version`` (for the corpus README), or a placeholder."""
    try:
        done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "espeak-ng (version unknown)"
    return " ".join(done.stdout.split()[:5]) or "espeak-ng (version unknown)"

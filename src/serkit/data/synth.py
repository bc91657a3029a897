"""A labelled, speech-like SYNTHETIC emotion corpus that needs no download.

`write_corpus` speaks a small list of neutral sentences for a few synthetic speakers in
several emotions and writes the audio plus ``metadata.csv`` (``utt_id, path, speaker, gender,
label, corpus``) that serkit's ``csv`` adapter reads. It exists so that every pipeline stage
can be run and tested end to end without a real corpus; it is NOT a substitute for acted or
natural emotional speech, and models trained on it learn nothing about real emotions.

Two voices:

* ``"espeak"``: espeak-ng (a subprocess) speaks the sentence with its ``-p`` pitch, ``-s``
  speed and ``-a`` amplitude options and an SSML ``<prosody range>`` per emotion; voice quality
  (spectral tilt, breath noise), which espeak cannot vary, is added by signal processing.
* ``"source-filter"``: a built-in synthesiser. A Rosenberg glottal pulse train (with jitter
  and shimmer, an f0 contour with declination, pitch accents and a final fall or rise) plus
  aspiration noise goes through a cascade of formant resonators that follow the vowels of the
  sentence's syllables; consonants are bursts of band-limited noise, commas give pauses.

``"auto"`` uses espeak-ng when ``shutil.which("espeak-ng")`` finds it, else source-filter.

Emotion profiles (the values of `PROFILES`; relative to each speaker's neutral voice)::

    emotion    pitch  range  rate  level  tilt  breath  jitter  shimmer  pause  final  tremor
               (st)   (x)    (x)   (dB)                                  (x)    (st)   (st)
    angry      +3.0   1.1    1.25  +8.0   +0.9  0.03    0.015   0.06     0.7    -4.0   0.0
    happy      +6.5   2.2    1.02  +4.0   +0.4  0.05    0.008   0.04     0.9    +3.0   0.0
    neutral     0.0   1.0    1.00   0.0    0.0  0.08    0.008   0.04     1.0    -2.5   0.0
    sad        -3.0   0.45   0.72  -8.0   -0.8  0.50    0.012   0.05     1.6    -1.5   0.0
    fearful    +6.5   1.2    1.22  -1.0   -0.2  0.30    0.030   0.08     1.2    +1.0   0.6
    surprised  +5.5   2.0    1.00  +3.0   +0.3  0.06    0.010   0.04     0.9    +6.0   0.0

So angry is loud, fast and tense (a pressed voice: flat spectral tilt, strong high harmonics)
with a moderately raised pitch and a narrow-ish range; happy has the highest pitch, the widest
range and a final rise, a bright but not pressed voice, moderate loudness and a normal rate;
while sad is low, narrow, slow, soft and breathy (steep tilt, aspiration noise); neutral is
each speaker's baseline. The emotion differences in pitch, range, rate, loudness and tilt are
larger than the differences between speakers of the same gender, so that emotions can be told
apart on speakers a model has not heard. Each utterance draws its own deviation from the
profile (`VARIATION`) so that classes overlap a little, and each speaker has a gender, base
pitch, vocal-tract length (formant scaling), speaking rate and recording level of its own
(`_make_speaker`); with espeak-ng the base pitch is a ``-p`` offset and the vocal tract comes
from a gendered voice variant (``en-us+f1`` ...).

Speakers ``spk01``, ``spk02`` ... alternate female and male; take k of a speaker is the same
sentence in every emotion (``spk01_angry_003`` and ``spk01_sad_003`` say the same words), and
sentences of 5 to 8 words give utterances of about 1.5 to 5 s.

Every fifth file is written at 44.1 kHz stereo, the others at 16 kHz mono; every third file
is FLAC, the others WAV (all 16-bit PCM). Output is deterministic for a given seed (with
espeak-ng: for a given espeak-ng version).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
import soxr

from serkit.atomic import atomic_path

try:
    from scipy import signal
except ImportError as exc:  # pragma: no cover - scipy is installed with every serkit extra that trains
    raise ImportError("serkit.data.synth needs scipy for its filters: pip install scipy") from exc

__all__ = [
    "EMOTIONS",
    "PROFILES",
    "SUPPORTED_EMOTIONS",
    "VARIATION",
    "VOICES",
    "EmotionProfile",
    "EspeakError",
    "write_corpus",
]

log = logging.getLogger(__name__)

EMOTIONS: tuple[str, ...] = ("angry", "happy", "neutral", "sad")
VOICES: tuple[str, ...] = ("auto", "espeak", "source-filter")
CORPUS_NAME = "synth"
METADATA_COLUMNS: tuple[str, ...] = ("utt_id", "path", "speaker", "gender", "label", "corpus")

SAMPLING_RATE = 16000  # every utterance is rendered at this rate
STEREO_RATE = 44100
STEREO_EVERY = 5  # every 5th file: 44.1 kHz stereo, to exercise resampling and mixdown
FLAC_EVERY = 3  # every 3rd file: FLAC instead of WAV


@dataclass(frozen=True)
class EmotionProfile:
    """How one emotion changes a speaker's neutral voice.

    Attributes:
        pitch_st: Mean f0 shift in semitones.
        range_scale: Factor on the size of pitch accents and declination.
        rate: Factor on the speaking rate (syllables per second).
        level_db: Loudness change in dB.
        tilt: Voice quality, -1 (breathy, steep spectral tilt) to +1 (pressed, flat tilt).
        breath: Aspiration noise relative to the voiced signal.
        jitter: Cycle-to-cycle f0 perturbation (relative standard deviation).
        shimmer: Cycle-to-cycle amplitude perturbation (relative standard deviation).
        pause: Factor on pause lengths.
        final_st: Pitch movement on the last syllable in semitones (<0 fall, >0 rise).
        tremor_st: Depth of a 5.5 Hz pitch tremor in semitones.
    """

    pitch_st: float
    range_scale: float
    rate: float
    level_db: float
    tilt: float
    breath: float
    jitter: float
    shimmer: float
    pause: float
    final_st: float
    tremor_st: float = 0.0


#: The emotion table (see the module docstring); the order fixes each emotion's random stream.
PROFILES: dict[str, EmotionProfile] = {
    "angry": EmotionProfile(3.0, 1.1, 1.25, 8.0, 0.9, 0.03, 0.015, 0.06, 0.7, -4.0),
    "happy": EmotionProfile(6.5, 2.2, 1.02, 4.0, 0.4, 0.05, 0.008, 0.04, 0.9, 3.0),
    "neutral": EmotionProfile(0.0, 1.0, 1.00, 0.0, 0.0, 0.08, 0.008, 0.04, 1.0, -2.5),
    "sad": EmotionProfile(-3.0, 0.45, 0.72, -8.0, -0.8, 0.50, 0.012, 0.05, 1.6, -1.5),
    "fearful": EmotionProfile(6.5, 1.2, 1.22, -1.0, -0.2, 0.30, 0.030, 0.08, 1.2, 1.0, 0.6),
    "surprised": EmotionProfile(5.5, 2.0, 1.00, 3.0, 0.3, 0.06, 0.010, 0.04, 0.9, 6.0),
}
SUPPORTED_EMOTIONS: tuple[str, ...] = tuple(PROFILES)


@dataclass(frozen=True)
class Variation:
    """Per-utterance spread around a profile, so that emotion classes overlap a little.

    Attributes:
        pitch_st: Standard deviation of the f0 shift (semitones).
        range_log: Standard deviation of log(range factor).
        rate_log: Standard deviation of log(rate factor).
        level_db: Standard deviation of the level (dB).
        tilt: Standard deviation of the tilt.
        breath_log: Standard deviation of log(breath).
    """

    pitch_st: float = 0.8
    range_log: float = 0.15
    rate_log: float = 0.06
    level_db: float = 1.5
    tilt: float = 0.15
    breath_log: float = 0.3


VARIATION = Variation()

#: Neutral sentences of varied length; utterance k of a speaker uses the same one in every emotion.
SENTENCES: tuple[str, ...] = (
    "The back door is open again.",
    "It is on the kitchen table.",
    "Please take the blue folder.",
    "The train leaves at seven tonight.",
    "We talked about it yesterday morning.",
    "The shop closes at six on Sundays.",
    "I put the keys next to the window.",
    "She will call you back after lunch.",
    "The report has four pages, and two tables.",
    "My brother moved to another city.",
    "Turn left at the next corner.",
    "We need bread, milk and some apples.",
    "He left his coat on the chair.",
    "The meeting was moved to Thursday afternoon.",
    "The weather will change this weekend.",
    "Our bus comes every twenty minutes.",
)

# espeak-ng voice variants per gender; speakers cycle through them.
_ESPEAK_VARIANTS = {"female": ("f1", "f2", "f3", "f4", "f5"), "male": ("m3", "m2", "m6", "m5", "m1")}
_ESPEAK_LANGUAGE = "en-us"
_ESPEAK_SPEED = 170  # words per minute of a neutral utterance
_ESPEAK_AMPLITUDE = 50  # -a of a neutral utterance; angry (+7 dB) stays below espeak's clipping
_ESPEAK_PITCH_PER_ST = 6.0  # -p units per semitone, measured on espeak-ng 1.51
_ESPEAK_RANGE = 50  # espeak's default prosody range
_ESPEAK_TIMEOUT_S = 60

_LEVEL_DBFS = -26.0  # RMS of the voiced parts of a neutral utterance
_NOISE_FLOOR_DBFS = -66.0  # background hiss so that pauses are not digital silence


class EspeakError(OSError):
    """espeak-ng ran but did not produce usable audio."""


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker's fixed traits.

    Attributes:
        name: ``spk01`` ...
        gender: ``female`` or ``male``.
        f0: Neutral mean f0 in Hz (source-filter voice).
        tract: Formant scale: shorter vocal tracts (female) have higher formants.
        rate: Individual speaking-rate factor.
        gain_db: Recording level offset.
        variant: espeak-ng voice variant.
        pitch_st: Pitch offset from the espeak variant's own pitch, in semitones.
    """

    name: str
    gender: str
    f0: float
    tract: float
    rate: float
    gain_db: float
    variant: str
    pitch_st: float


#: One utterance's prosody and voice quality: its emotion's profile with drawn deviations.
Utterance = EmotionProfile


@dataclass(frozen=True)
class Item:
    """One file to write."""

    utt_id: str
    relpath: str
    speaker: Speaker
    emotion: str
    sentence: str
    stereo: bool
    rng_key: tuple[int, ...]


# --------------------------------------------------------------------------- speakers, plan


def _make_speaker(number: int, seed: int, prefix: str = "spk") -> Speaker:
    """Speaker `number` (1-based): odd numbers female, even male, traits from the seed."""
    rng = np.random.default_rng([seed, 1, number])
    gender = "female" if number % 2 == 1 else "male"
    female = gender == "female"
    variants = _ESPEAK_VARIANTS[gender]
    return Speaker(
        name=f"{prefix}{number:02d}",
        gender=gender,
        f0=float(rng.uniform(190.0, 225.0) if female else rng.uniform(100.0, 120.0)),
        tract=float(rng.uniform(1.10, 1.22) if female else rng.uniform(0.92, 1.04)),
        rate=float(rng.uniform(0.94, 1.06)),
        gain_db=float(rng.uniform(-1.5, 1.5)),
        variant=variants[((number - 1) // 2) % len(variants)],
        # espeak's male variants are deep (75-90 Hz): lift them, else sad speech reaches vocal fry
        pitch_st=float(rng.uniform(-0.75, 0.75) if female else rng.uniform(0.75, 2.25)),
    )


def _utterance(profile: EmotionProfile, rng: np.random.Generator, spread: Variation = VARIATION) -> Utterance:
    """Draw one utterance's parameters around `profile` (the rest are the profile's own)."""
    return dataclasses.replace(
        profile,
        pitch_st=profile.pitch_st + spread.pitch_st * rng.standard_normal(),
        range_scale=profile.range_scale * math.exp(spread.range_log * rng.standard_normal()),
        rate=profile.rate * math.exp(spread.rate_log * rng.standard_normal()),
        level_db=profile.level_db + spread.level_db * rng.standard_normal(),
        tilt=float(np.clip(profile.tilt + spread.tilt * rng.standard_normal(), -1.0, 1.0)),
        breath=profile.breath * math.exp(spread.breath_log * rng.standard_normal()),
    )


def _plan(speakers: int, per_emotion: int, emotions: Sequence[str], seed: int, prefix: str = "spk") -> list[Item]:
    """Every file of the corpus in a fixed order (speaker, emotion, take)."""
    items: list[Item] = []
    for number in range(1, speakers + 1):
        speaker = _make_speaker(number, seed, prefix)
        for emotion in emotions:
            for take in range(1, per_emotion + 1):
                index = len(items)
                utt_id = f"{speaker.name}_{emotion}_{take:03d}"
                ext = "flac" if index % FLAC_EVERY == FLAC_EVERY - 1 else "wav"
                items.append(Item(
                    utt_id=utt_id,
                    relpath=f"{speaker.name}/{utt_id}.{ext}",
                    speaker=speaker,
                    emotion=emotion,
                    sentence=SENTENCES[(3 * number + take) % len(SENTENCES)],
                    stereo=index % STEREO_EVERY == STEREO_EVERY - 1,
                    rng_key=(seed, 2, number, SUPPORTED_EMOTIONS.index(emotion), take),
                ))
    return items


# --------------------------------------------------------------------------- shared DSP


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def _tilt_filter(x: np.ndarray, tilt: float) -> np.ndarray:
    """Flatten (tilt > 0, pressed voice) or steepen (tilt < 0, breathy voice) the spectrum."""
    if tilt > 0:  # first-order pre-emphasis: more high harmonics
        return signal.lfilter([1.0, -0.7 * tilt], [1.0], x)
    if tilt < 0:  # one-pole low-pass: fewer high harmonics
        pole = 0.65 * -tilt
        return signal.lfilter([1.0 - pole], [1.0, -pole], x)
    return x


@lru_cache(maxsize=64)
def _band(low: float, high: float, order: int = 4) -> np.ndarray:
    """Butterworth band-pass SOS at the render rate, cached because speakers reuse bands."""
    nyquist = SAMPLING_RATE / 2
    return signal.butter(order, [low, min(high, 0.95 * nyquist)], btype="bandpass", fs=SAMPLING_RATE, output="sos")


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving Hann-weighted average (edges ramp instead of clicking)."""
    if width < 3:
        return x
    window = np.hanning(width + 2)[1:-1]
    return np.convolve(x, window / window.sum(), mode="same")


def _breath_noise(envelope: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """High-frequency aspiration noise following `envelope`."""
    noise = signal.sosfilt(_band(1500.0, 7000.0, 2), rng.standard_normal(envelope.size))
    return amount * envelope * noise / max(_rms(noise), 1e-9)


def _finish(speech: np.ndarray, gain_db: float, rng: np.random.Generator) -> np.ndarray:
    """Apply the level, add a noise floor, keep peaks below full scale; float32 out."""
    out = speech * 10 ** (gain_db / 20) + 10 ** (_NOISE_FLOOR_DBFS / 20) * rng.standard_normal(speech.size)
    if float(np.max(np.abs(out))) > 0.95:  # soft limiter rather than clipping; only loud takes reach it
        out = 0.95 * np.tanh(out / 0.95)
    return out.astype(np.float32)


def _pad(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Leading and trailing silence of random length, as in a recording session."""
    lead = int(rng.uniform(0.12, 0.35) * SAMPLING_RATE)
    trail = int(rng.uniform(0.15, 0.40) * SAMPLING_RATE)
    return np.concatenate([np.zeros(lead), x, np.zeros(trail)])


# --------------------------------------------------------------------------- source-filter voice

# Adult male formants F1-F3 (Hz) of the vowels a letter stands for; schwa for reduced syllables.
_VOWELS: dict[str, tuple[float, float, float]] = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (300.0, 2250.0, 3000.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (320.0, 900.0, 2250.0),
    "y": (300.0, 2100.0, 2900.0),
    "@": (500.0, 1500.0, 2500.0),
}
_NASAL_FORMANTS = (280.0, 1200.0, 2400.0)
_F4 = 3500.0
_BANDWIDTHS = (80.0, 100.0, 140.0, 200.0)
_FRAME = 80  # samples per vocal-tract update (5 ms)

# Consonant letter classes (other letters: m n l r w, sonorants) and durations (s) at a neutral rate.
_SIBILANTS = frozenset("szcxj")
_FRICATIVES = frozenset("fvh")
_STOPS = frozenset("pbtdkgq")
_CONSONANT_S = {"sibilant": 0.085, "fricative": 0.06, "stop": 0.07, "sonorant": 0.05}
_VOWEL_S = 0.12
_UNSTRESSED = frozenset({
    "the", "a", "an", "at", "is", "it", "to", "of", "and", "in", "on", "his", "has", "will", "was",
    "you", "we", "i", "he", "she", "our", "my",
})  # function words carry no pitch accent


@dataclass(frozen=True)
class Syllable:
    """Onset consonants, the vowel letter, coda consonants, stress and what follows it."""

    onset: str
    vowel: str
    coda: str
    stressed: bool
    pause_after: bool


def _consonant_class(letter: str) -> str:
    """sibilant, fricative, stop or sonorant."""
    if letter in _SIBILANTS:
        return "sibilant"
    if letter in _FRICATIVES:
        return "fricative"
    if letter in _STOPS:
        return "stop"
    return "sonorant"


def _syllables(sentence: str) -> list[Syllable]:
    """Split a sentence into letter-based syllables (a rough stand-in for phonetics)."""
    out: list[Syllable] = []
    for token in re.findall(r"[a-z']+|,", sentence.lower()):
        if token == ",":
            if out:
                last = out[-1]
                out[-1] = Syllable(last.onset, last.vowel, last.coda, last.stressed, True)
            continue
        word = token.replace("'", "")
        parts = re.findall(r"[^aeiouy]*[aeiouy]+", word) or [word + "@"]
        tail = word[sum(len(p) for p in parts):]
        for i, part in enumerate(parts):
            onset = re.sub(r"(?<=[^aeiouy])h", "", part.rstrip("aeiouy"))  # th, sh, ch: one sound
            out.append(Syllable(
                onset=onset,
                vowel=part[len(part.rstrip("aeiouy"))],
                coda=tail if i == len(parts) - 1 else "",
                stressed=i == 0 and word not in _UNSTRESSED,
                pause_after=False,
            ))
    return out


@dataclass
class _Score:
    """Sample- and frame-level control tracks of one source-filter utterance."""

    voice: np.ndarray  # voiced-source amplitude per sample
    noise: dict[str, np.ndarray]  # consonant-noise amplitude per class, per sample
    formants: np.ndarray  # (frames, 3) F1-F3 targets in Hz, one row per _FRAME samples
    accents: list[tuple[float, float, float]]  # (centre s, width s, height) per stressed vowel
    speech: tuple[float, float]  # start and end of speech in seconds
    last_vowel: tuple[float, float]


class _Timeline:
    """Segments (voice amplitude, consonant noise, formants) laid one after another in time."""

    def __init__(self) -> None:
        self.t = 0.0
        self._segments: list[tuple[int, int, float, str | None, tuple[float, float, float] | None]] = []

    def add(self, seconds: float, voice: float = 0.0, noise: str | None = None,
            formants: tuple[float, float, float] | None = None) -> tuple[float, float]:
        """Append a segment; returns its (start, end) in seconds."""
        span = (self.t, self.t + seconds)
        self._segments.append((round(span[0] * SAMPLING_RATE), round(span[1] * SAMPLING_RATE), voice, noise, formants))
        self.t = span[1]
        return span

    def render(self) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """Per-sample voice amplitude and noise envelopes, per-frame formant targets."""
        n = round(self.t * SAMPLING_RATE)
        voice = np.zeros(n)
        noise = {k: np.zeros(n) for k in ("sibilant", "fricative", "stop")}
        formants = np.tile(np.array(_VOWELS["@"]), (n // _FRAME + 1, 1))
        for start, end, amplitude, kind, targets in self._segments:
            voice[start:end] = amplitude
            if kind == "stop":  # closure, then a short burst
                noise[kind][max(end - int(0.018 * SAMPLING_RATE), start):end] = 1.0
            elif kind is not None:
                noise[kind][start:end] = 1.0
            if targets is not None:
                formants[start // _FRAME:end // _FRAME + 1] = targets
        return voice, noise, formants


def _consonants(timeline: _Timeline, letters: str, scale: float) -> None:
    """Append the consonant segments of a letter cluster."""
    previous = ""
    for letter in letters:
        if letter == previous or not letter.isalpha():
            continue
        previous = letter
        kind = _consonant_class(letter)
        seconds = _CONSONANT_S[kind] * scale
        if kind == "sonorant":
            timeline.add(seconds, voice=0.35, formants=_NASAL_FORMANTS)
        else:
            voiced = 0.15 if letter in "zvbdgj" else 0.0
            timeline.add(seconds, voice=voiced, noise=kind)


def _score(sentence: str, utt: Utterance, speaker: Speaker, rng: np.random.Generator) -> _Score:
    """Lay out the syllables of `sentence` in time: durations, voicing, noise, formant targets."""
    syllables = _syllables(sentence)
    scale = 1.0 / (utt.rate * speaker.rate)
    timeline = _Timeline()
    timeline.add(0.05)
    start = timeline.t
    accents: list[tuple[float, float, float]] = []
    last_vowel = (0.0, 0.0)
    for i, syl in enumerate(syllables):
        final = i == len(syllables) - 1
        _consonants(timeline, syl.onset, scale * rng.uniform(0.85, 1.15))
        stretch = (1.3 if syl.stressed else 0.8) * (1.5 if final else 1.0)  # stress and final lengthening
        length = _VOWEL_S * scale * stretch * rng.uniform(0.85, 1.15)
        vowel = np.array(_VOWELS[syl.vowel])
        if not syl.stressed:  # reduced vowels drift towards schwa
            vowel = 0.5 * (vowel + np.array(_VOWELS["@"]))
        last_vowel = timeline.add(length, voice=1.0 if syl.stressed else 0.8, formants=tuple(vowel))
        if syl.stressed:
            accents.append((sum(last_vowel) / 2, 0.5 * length + 0.03, rng.uniform(0.6, 1.3)))
        _consonants(timeline, syl.coda, scale * rng.uniform(0.85, 1.15))
        if syl.pause_after:
            timeline.add(0.2 * scale * utt.pause * rng.uniform(0.8, 1.3))
        elif not final and rng.random() < 0.08 * utt.pause:  # an occasional hesitation
            timeline.add(0.06 * utt.pause * scale)
    end = timeline.t
    timeline.add(0.05)
    voice, noise, formants = timeline.render()
    width = int(0.012 * SAMPLING_RATE)  # 12 ms ramps between segments
    return _Score(
        voice=_smooth(voice, width),
        noise={k: _smooth(v, width // 2) for k, v in noise.items()},
        formants=formants,
        accents=accents,
        speech=(start, end),
        last_vowel=last_vowel,
    )


def _f0_contour(score: _Score, utt: Utterance, speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """f0 in Hz per sample: level, declination, accents, final movement, tremor and drift."""
    n = score.voice.size
    t = np.arange(n) / SAMPLING_RATE
    start, end = score.speech
    progress = np.clip((t - start) / max(end - start, 1e-3), 0.0, 1.0)
    st = utt.pitch_st + 2.0 * utt.range_scale * (0.5 - progress)  # declination
    for centre, width, height in score.accents:
        st = st + 2.5 * utt.range_scale * height * np.exp(-0.5 * ((t - centre) / width) ** 2)
    v0, v1 = score.last_vowel
    st = st + utt.final_st * np.clip((t - v0) / max(v1 - v0, 1e-3), 0.0, 1.0)
    st = st + utt.tremor_st * np.sin(2 * np.pi * 5.5 * t)
    phases = rng.uniform(0, 2 * np.pi, 2)
    st = st + 0.3 * (np.sin(2 * np.pi * 0.7 * t + phases[0]) + np.sin(2 * np.pi * 1.9 * t + phases[1]))
    return np.clip(speaker.f0 * 2.0 ** (st / 12.0), 50.0, 600.0)


def _glottal_source(f0: np.ndarray, utt: Utterance, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Differentiated Rosenberg pulses with jitter and shimmer; returns (source, glottal flow)."""
    cycle = np.floor(np.cumsum(f0) / SAMPLING_RATE).astype(np.int64)
    n_cycles = int(cycle[-1]) + 2
    jittered = f0 * (1.0 + utt.jitter * rng.standard_normal(n_cycles))[cycle]
    phase = np.cumsum(jittered) / SAMPLING_RATE
    cycle = np.floor(phase).astype(np.int64)
    frac = phase - cycle
    # pressed voice: short open phase and abrupt closure (rich in high harmonics); breathy: the opposite
    open_q = float(np.clip(0.6 - 0.2 * utt.tilt, 0.35, 0.85))
    closing = open_q * float(np.clip(0.35 - 0.12 * utt.tilt, 0.15, 0.5))
    opening = open_q - closing
    flow = np.where(
        frac < opening,
        0.5 * (1.0 - np.cos(np.pi * frac / opening)),
        np.where(frac < open_q, np.cos(0.5 * np.pi * (frac - opening) / closing), 0.0),
    )
    flow = flow * (1.0 + utt.shimmer * rng.standard_normal(int(cycle[-1]) + 2))[cycle]
    source = np.diff(flow, prepend=flow[0])  # flow derivative: includes lip radiation
    return _tilt_filter(source, utt.tilt), flow


def _resonator_sos(formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Cascade of two-pole resonators with unity gain at 0 Hz, one SOS row per formant."""
    radius = np.exp(-np.pi * bandwidths / SAMPLING_RATE)
    c = 2.0 * radius * np.cos(2.0 * np.pi * formants / SAMPLING_RATE)
    sos = np.zeros((formants.size, 6))
    sos[:, 0] = 1.0 - c + radius**2
    sos[:, 3] = 1.0
    sos[:, 4] = -c
    sos[:, 5] = radius**2
    return sos


def _vocal_tract(excitation: np.ndarray, score: _Score, speaker: Speaker, utt: Utterance) -> np.ndarray:
    """Filter `excitation` through formants that follow the syllables, updated every 5 ms."""
    nyquist = SAMPLING_RATE / 2
    tracks = _smooth_tracks(score.formants) * speaker.tract
    f4 = min(_F4 * speaker.tract, 0.9 * nyquist)
    bandwidths = np.array(_BANDWIDTHS) * (1.0 + 0.5 * max(0.0, -utt.tilt))  # breathy: damped formants
    state = np.zeros((4, 2))
    out = np.empty_like(excitation)
    for frame, start in enumerate(range(0, excitation.size, _FRAME)):
        row = tracks[min(frame, len(tracks) - 1)]
        formants = np.minimum(np.append(row, f4), 0.9 * nyquist)
        sos = _resonator_sos(formants, bandwidths)
        out[start:start + _FRAME], state = signal.sosfilt(sos, excitation[start:start + _FRAME], zi=state)
    return out


def _smooth_tracks(formants: np.ndarray) -> np.ndarray:
    """Coarticulation: formant targets glide over about 30 ms instead of jumping."""
    return np.stack([_smooth(np.pad(col, 4, mode="edge"), 7)[4:-4] for col in formants.T], axis=1)


def _consonant_noise(score: _Score, speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """Band-limited noise for sibilants, other fricatives and stop bursts."""
    n = score.voice.size
    bands = {
        "sibilant": (_band(3800.0 * speaker.tract, 7600.0), 0.30),
        "fricative": (_band(1200.0, 6500.0), 0.12),
        "stop": (_band(1000.0 * speaker.tract, 5500.0), 0.45),
    }
    out = np.zeros(n)
    for kind, (sos, gain) in bands.items():
        envelope = score.noise[kind]
        if envelope.any():
            noise = signal.sosfilt(sos, rng.standard_normal(n))
            out += gain * envelope * noise / max(_rms(noise), 1e-9)
    return out


def _source_filter(sentence: str, speaker: Speaker, utt: Utterance, rng: np.random.Generator) -> np.ndarray:
    """Render one utterance with the built-in source-filter voice, at `SAMPLING_RATE`."""
    score = _score(sentence, utt, speaker, rng)
    f0 = _f0_contour(score, utt, speaker, rng)
    source, flow = _glottal_source(f0, utt, rng)
    source = source / max(_rms(source), 1e-9)
    aspiration = _breath_noise(flow, utt.breath * 2.0, rng)  # pulsed with the glottal flow
    voiced = _vocal_tract((source + aspiration) * score.voice, score, speaker, utt)
    voiced = voiced / max(_rms(voiced[score.voice > 0.5]), 1e-9)  # voiced parts at unit RMS
    speech = voiced + _consonant_noise(score, speaker, rng)
    return _finish(_pad(speech, rng), _LEVEL_DBFS + utt.level_db + speaker.gain_db, rng)


# --------------------------------------------------------------------------- espeak voice


def _espeak_executable() -> str | None:
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
        "-v", f"{_ESPEAK_LANGUAGE}+{speaker.variant}",
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
    envelope = _smooth(np.abs(x), int(0.01 * SAMPLING_RATE))
    loud = np.flatnonzero(envelope > np.max(envelope) * 10 ** (floor_db / 20))
    return x[loud[0]:loud[-1] + 1] if loud.size else x


def _espeak(exe: str, sentence: str, speaker: Speaker, utt: Utterance, rng: np.random.Generator) -> np.ndarray:
    """Speak with espeak-ng (its -a sets the loudness), then add the voice quality it cannot."""
    audio, rate = _run_espeak(_espeak_command(exe, sentence, speaker, utt))
    if audio.size == 0 or not np.any(audio):
        raise EspeakError("espeak-ng produced silence")
    speech = _trim(soxr.resample(audio, rate, SAMPLING_RATE))
    level = _rms(speech)
    speech = _tilt_filter(speech, utt.tilt)
    envelope = _smooth(np.abs(speech), int(0.02 * SAMPLING_RATE))
    speech = speech / max(_rms(speech), 1e-9)
    # espeak's own voices are already a little breathy: add less than the source-filter voice
    speech = speech + _breath_noise(envelope / max(_rms(envelope), 1e-9), 0.6 * utt.breath, rng)
    speech = speech * level / max(_rms(speech), 1e-9)  # filtering must not undo espeak's -a
    return _finish(_pad(speech, rng), speaker.gain_db, rng)


# --------------------------------------------------------------------------- writing


def _resolve_voice(voice: str) -> tuple[str, str | None]:
    """(engine, espeak-ng path or None) for a requested `voice`."""
    if voice not in VOICES:
        raise ValueError(f"unknown voice {voice!r}; choose one of: {', '.join(VOICES)}")
    exe = _espeak_executable() if voice in ("auto", "espeak") else None
    if voice == "espeak" and exe is None:
        raise ValueError("voice 'espeak' needs espeak-ng on PATH (apt install espeak-ng), "
                         "or use voice='source-filter'")
    return ("espeak", exe) if exe else ("source-filter", None)


def _check_arguments(speakers: int, per_emotion: int, emotions: Sequence[str]) -> tuple[str, ...]:
    """Validate the corpus size and emotion list; returns the emotions as a tuple."""
    if speakers < 1 or per_emotion < 1:
        raise ValueError(f"speakers and per_emotion must be at least 1 (got {speakers}, {per_emotion})")
    chosen = tuple(emotions)
    unknown = [e for e in chosen if e not in PROFILES]
    if unknown or not chosen:
        raise ValueError(f"unknown emotion(s) {unknown}; supported: {', '.join(SUPPORTED_EMOTIONS)}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"emotions repeat: {list(chosen)}")
    return chosen


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write` on a temporary name in `path`'s folder, then rename: never a half file."""
    with atomic_path(path) as tmp:
        write(tmp)


def _to_output(audio: np.ndarray, stereo: bool, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Mono at the render rate, or 44.1 kHz stereo whose right channel is quieter, with its own hiss.

    The channels are not delayed against each other: a delay would comb-filter the mixdown.
    """
    if not stereo:
        return audio, SAMPLING_RATE
    left = soxr.resample(audio, SAMPLING_RATE, STEREO_RATE)
    right = 0.8 * left + 10 ** (_NOISE_FLOOR_DBFS / 20) * rng.standard_normal(left.size)
    return np.stack([left, right], axis=1).astype(np.float32), STEREO_RATE


def _write_audio(path: Path, audio: np.ndarray, stereo: bool, rng: np.random.Generator) -> None:
    data, rate = _to_output(audio, stereo, rng)
    container = "FLAC" if path.suffix == ".flac" else "WAV"
    _atomic(path, lambda tmp: sf.write(tmp, data, rate, format=container, subtype="PCM_16"))


def _write_metadata(path: Path, items: Sequence[Item]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(METADATA_COLUMNS)
            for item in items:
                writer.writerow([item.utt_id, item.relpath, item.speaker.name, item.speaker.gender,
                                 item.emotion, CORPUS_NAME])

    _atomic(path, write)


def _espeak_version(exe: str) -> str:
    try:
        done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "espeak-ng (version unknown)"
    return " ".join(done.stdout.split()[:5]) or "espeak-ng (version unknown)"


def _readme(engine: str, exe: str | None, seed: int, emotions: Sequence[str], items: Sequence[Item]) -> str:
    """The corpus's README: what it is (SYNTHETIC), how it was made, the emotion table."""
    speakers = sorted({(i.speaker.name, i.speaker.gender, i.speaker.variant) for i in items})
    names = [f.name for f in fields(EmotionProfile)]
    table = ["emotion    " + " ".join(f"{n:>11}" for n in names)]
    table += [f"{e:<10} " + " ".join(f"{getattr(PROFILES[e], n):>11g}" for n in names) for e in emotions]
    engine_line = (f"espeak-ng ({_espeak_version(exe)}, {exe}), voice {_ESPEAK_LANGUAGE} with variants "
                   + ", ".join(f"{name}={variant}" for name, _, variant in speakers)
                   if engine == "espeak" and exe else "serkit's built-in source-filter synthesiser")
    return "\n".join([
        "SYNTHETIC SPEECH CORPUS - NOT REAL EMOTIONAL SPEECH",
        "",
        "Every file here was generated by serkit.data.synth.write_corpus. The emotions are rule-based",
        "changes of pitch, range, rate, loudness and voice quality; use this corpus to test",
        "pipelines, never to claim anything about emotion recognition.",
        "",
        f"voice engine: {engine_line}",
        f"seed: {seed}",
        f"speakers: {len(speakers)} ({', '.join(f'{n} {g}' for n, g, _ in speakers)})",
        f"utterances: {len(items)} ({len(emotions)} emotions)",
        f"files: every {STEREO_EVERY}th at {STEREO_RATE} Hz stereo, others {SAMPLING_RATE} Hz mono; "
        f"every {FLAC_EVERY}rd FLAC, others WAV; 16-bit PCM",
        "",
        "parameters per emotion (relative to each speaker's neutral voice; see serkit.data.synth):",
        *table,
        "",
        "pitch_st: mean f0 shift (semitones); range_scale: pitch-range factor; rate: speaking-rate",
        "factor; level_db: loudness (dB); tilt: -1 breathy .. +1 pressed; breath: aspiration noise;",
        "jitter/shimmer: cycle-to-cycle f0/amplitude perturbation; pause: pause-length factor;",
        "final_st: last-syllable pitch movement; tremor_st: 5.5 Hz pitch tremor depth.",
        f"per-utterance spread: {VARIATION}",
        "",
        "listing: metadata.csv (utt_id, path, speaker, gender, label, corpus); read it with",
        "`serkit prepare csv metadata.csv -o manifest.csv`.",
        "",
    ])


def _render(item: Item, engine: str, exe: str | None, rng: np.random.Generator) -> np.ndarray:
    utt = _utterance(PROFILES[item.emotion], rng)
    if engine == "espeak" and exe is not None:
        return _espeak(exe, item.sentence, item.speaker, utt, rng)
    return _source_filter(item.sentence, item.speaker, utt, rng)


def write_corpus(
    dest: str | os.PathLike,
    *,
    speakers: int = 6,
    per_emotion: int = 8,
    emotions: Sequence[str] = EMOTIONS,
    seed: int = 0,
    voice: str = "auto",
    speaker_prefix: str = "spk",
) -> Path:
    """Write a labelled SYNTHETIC emotional speech corpus with its listing and README.

    Args:
        dest: Output folder (created); existing files of the same names are replaced.
        speakers: Number of speakers, ``spk01`` ...; odd numbers female, even male.
        per_emotion: Utterances per speaker and emotion.
        emotions: Labels to generate, from `SUPPORTED_EMOTIONS`.
        seed: Random seed; the same seed gives the same corpus.
        voice: ``"espeak"`` (espeak-ng), ``"source-filter"`` (built in) or ``"auto"`` (espeak-ng
            when installed, else source-filter).
        speaker_prefix: Speaker names are the prefix and a two-digit number (``spk01``); give
            another for voices that must not share names with another corpus's speakers.

    Returns:
        The path of ``dest/metadata.csv`` (columns ``utt_id, path, speaker, gender, label,
        corpus``; paths relative to `dest`).

    Raises:
        ValueError: Unknown voice or emotion, bad sizes, a prefix that is not letters, digits,
            ``_`` or ``-``, or ``voice="espeak"`` without espeak-ng.
        EspeakError: espeak-ng failed on an utterance.
    """
    chosen = _check_arguments(speakers, per_emotion, emotions)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", speaker_prefix or ""):
        raise ValueError(f"speaker_prefix must be letters, digits, '_' or '-', got {speaker_prefix!r}")
    engine, exe = _resolve_voice(voice)
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    items = _plan(speakers, per_emotion, chosen, seed, speaker_prefix)
    log.info("synth: %d utterances (%d speakers x %d emotions x %d) with the %s voice into %s",
             len(items), speakers, len(chosen), per_emotion, engine, root)
    started = time.perf_counter()
    for done, item in enumerate(items, 1):
        rng = np.random.default_rng(list(item.rng_key))  # one stream per file: order-independent
        _write_audio(root / item.relpath, _render(item, engine, exe, rng), item.stereo, rng)
        log.debug("wrote %s", item.relpath)
        if done % max(1, len(items) // 10) == 0 or done == len(items):
            log.info("synth: %d/%d files (%.1f s)", done, len(items), time.perf_counter() - started)
    metadata = root / "metadata.csv"
    _write_metadata(metadata, items)
    readme = _readme(engine, exe, seed, chosen, items)
    _atomic(root / "README.txt", lambda tmp: tmp.write_text(readme, encoding="utf-8"))
    return metadata

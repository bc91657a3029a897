"""The built-in source-filter voice of the synthetic corpus: glottal pulses through moving formants.

`source_filter` turns a sentence into letter-based syllables, lays them out in time (stress,
final lengthening, pauses at commas, occasional hesitations), draws an f0 contour
(declination, pitch accents, a final fall or rise, tremor and drift), and renders a Rosenberg
glottal pulse train with jitter and shimmer plus aspiration noise through a cascade of formant
resonators that follow the vowels, updated every 5 ms; consonants are bursts of band-limited
noise. It needs nothing outside numpy and scipy; `serkit.data.synth` chooses it when espeak-ng
is absent or not wanted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import signal

from serkit.data.synth_dsp import LEVEL_DBFS, SAMPLING_RATE, band, breath_noise, finish, pad, rms, smooth, tilt_filter

if TYPE_CHECKING:  # annotations only: serkit.data.synth imports this module
    from serkit.data.synth import Speaker, Utterance

__all__ = ["source_filter"]


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
        voice=smooth(voice, width),
        noise={k: smooth(v, width // 2) for k, v in noise.items()},
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
    return tilt_filter(source, utt.tilt), flow


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
    return np.stack([smooth(np.pad(col, 4, mode="edge"), 7)[4:-4] for col in formants.T], axis=1)


def _consonant_noise(score: _Score, speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
    """Band-limited noise for sibilants, other fricatives and stop bursts."""
    n = score.voice.size
    bands = {
        "sibilant": (band(3800.0 * speaker.tract, 7600.0), 0.30),
        "fricative": (band(1200.0, 6500.0), 0.12),
        "stop": (band(1000.0 * speaker.tract, 5500.0), 0.45),
    }
    out = np.zeros(n)
    for kind, (sos, gain) in bands.items():
        envelope = score.noise[kind]
        if envelope.any():
            noise = signal.sosfilt(sos, rng.standard_normal(n))
            out += gain * envelope * noise / max(rms(noise), 1e-9)
    return out


def source_filter(sentence: str, speaker: Speaker, utt: Utterance, rng: np.random.Generator) -> np.ndarray:
    """Render one utterance with the built-in source-filter voice, at `SAMPLING_RATE`."""
    score = _score(sentence, utt, speaker, rng)
    f0 = _f0_contour(score, utt, speaker, rng)
    source, flow = _glottal_source(f0, utt, rng)
    source = source / max(rms(source), 1e-9)
    aspiration = breath_noise(flow, utt.breath * 2.0, rng)  # pulsed with the glottal flow
    voiced = _vocal_tract((source + aspiration) * score.voice, score, speaker, utt)
    voiced = voiced / max(rms(voiced[score.voice > 0.5]), 1e-9)  # voiced parts at unit RMS
    speech = voiced + _consonant_noise(score, speaker, rng)
    return finish(pad(speech, rng), LEVEL_DBFS + utt.level_db + speaker.gain_db, rng)

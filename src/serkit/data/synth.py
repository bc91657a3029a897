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

This module holds the profiles, the speakers, the plan of the corpus and the files it writes;
the voices are `serkit.data.synth_voice` (source-filter) and `serkit.data.synth_espeak`
(espeak-ng), with the signal processing they share in `serkit.data.synth_dsp`.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from serkit.atomic import atomic_path
from serkit.data.synth_dsp import NOISE_FLOOR_DBFS, SAMPLING_RATE
from serkit.data.synth_espeak import LANGUAGE, VARIANTS, espeak, espeak_executable, espeak_version
from serkit.data.synth_voice import source_filter

__all__ = [
    "EMOTIONS",
    "PROFILES",
    "SUPPORTED_EMOTIONS",
    "VARIATION",
    "VOICES",
    "EmotionProfile",
    "write_corpus",
]

log = logging.getLogger(__name__)

EMOTIONS: tuple[str, ...] = ("angry", "happy", "neutral", "sad")
VOICES: tuple[str, ...] = ("auto", "espeak", "source-filter")
CORPUS_NAME = "synth"
METADATA_COLUMNS: tuple[str, ...] = ("utt_id", "path", "speaker", "gender", "label", "corpus")

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
    variants = VARIANTS[gender]
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


# --------------------------------------------------------------------------- writing


def _resolve_voice(voice: str) -> tuple[str, str | None]:
    """(engine, espeak-ng path or None) for a requested `voice`."""
    if voice not in VOICES:
        raise ValueError(f"unknown voice {voice!r}; choose one of: {', '.join(VOICES)}")
    exe = espeak_executable() if voice in ("auto", "espeak") else None
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


def _to_output(audio: np.ndarray, stereo: bool, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Mono at the render rate, or 44.1 kHz stereo whose right channel is quieter, with its own hiss.

    The channels are not delayed against each other: a delay would comb-filter the mixdown.
    """
    if not stereo:
        return audio, SAMPLING_RATE
    left = soxr.resample(audio, SAMPLING_RATE, STEREO_RATE)
    right = 0.8 * left + 10 ** (NOISE_FLOOR_DBFS / 20) * rng.standard_normal(left.size)
    return np.stack([left, right], axis=1).astype(np.float32), STEREO_RATE


def _write_audio(path: Path, audio: np.ndarray, stereo: bool, rng: np.random.Generator) -> None:
    data, rate = _to_output(audio, stereo, rng)
    container = "FLAC" if path.suffix == ".flac" else "WAV"
    with atomic_path(path) as tmp:  # a temporary name, then a rename: never a half file
        sf.write(tmp, data, rate, format=container, subtype="PCM_16")


def _write_metadata(path: Path, items: Sequence[Item]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(METADATA_COLUMNS)
        for item in items:
            writer.writerow([item.utt_id, item.relpath, item.speaker.name, item.speaker.gender,
                             item.emotion, CORPUS_NAME])


def _readme(engine: str, exe: str | None, seed: int, emotions: Sequence[str], items: Sequence[Item]) -> str:
    """The corpus's README: what it is (SYNTHETIC), how it was made, the emotion table."""
    speakers = sorted({(i.speaker.name, i.speaker.gender, i.speaker.variant) for i in items})
    names = [f.name for f in fields(EmotionProfile)]
    table = ["emotion    " + " ".join(f"{n:>11}" for n in names)]
    table += [f"{e:<10} " + " ".join(f"{getattr(PROFILES[e], n):>11g}" for n in names) for e in emotions]
    engine_line = (f"espeak-ng ({espeak_version(exe)}, {exe}), voice {LANGUAGE} with variants "
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
        return espeak(exe, item.sentence, item.speaker, utt, rng)
    return source_filter(item.sentence, item.speaker, utt, rng)


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
        serkit.data.synth_espeak.EspeakError: espeak-ng failed on an utterance.
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
    with atomic_path(root / "README.txt") as tmp:
        tmp.write_text(readme, encoding="utf-8")
    return metadata

"""serkit.data.audio against a zoo of real, synthetic and deliberately broken audio files.

Every case writes its own file under tmp_path: well-formed files in every container and sample
format libsndfile reads, and hand-built broken ones (zero frames, truncated data, corrupt FLAC,
NaN samples, headers that lie about the length). Real speech from ../shared/data is used only in
the `realdata` tests, which skip when the folder is absent.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serkit.data.audio import (
    PAPER_SPEC,
    AudioError,
    AudioInfo,
    AudioSpec,
    SilentAudioWarning,
    fix_length,
    load,
    preprocess,
    probe,
    read,
)
from tests.audio_factory import voiced, write

# --------------------------------------------------------------------------------------------
# Builders for hand-made (and hand-broken) files
# --------------------------------------------------------------------------------------------


def pcm16_le(signal: np.ndarray) -> bytes:
    """Float samples in [-1, 1) as little-endian signed 16-bit PCM."""
    return np.round(np.asarray(signal) * 32767).astype("<i2").tobytes()


def pcm16_be(signal: np.ndarray) -> bytes:
    """Float samples in [-1, 1) as big-endian signed 16-bit PCM (AIFF byte order)."""
    return np.round(np.asarray(signal) * 32767).astype(">i2").tobytes()


def wav_header(
    data_bytes: int,
    *,
    channels: int = 1,
    sampling_rate: int = 16000,
    bits: int = 16,
    format_tag: int = 1,
) -> bytes:
    """A canonical 44-byte RIFF/WAVE header whose data chunk claims `data_bytes` bytes."""
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", format_tag, channels, sampling_rate, sampling_rate * block_align, block_align, bits)
    riff_size = min(4 + (8 + len(fmt)) + 8 + data_bytes, 0xFFFFFFFF)
    return (
        b"RIFF" + struct.pack("<I", riff_size) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", data_bytes)
    )


def rf64_bytes(data: bytes, *, data_bytes: int, sampling_rate: int = 16000) -> bytes:
    """A mono 16-bit RF64 file whose ds64 chunk claims `data_bytes` bytes of audio."""
    fmt = struct.pack("<HHIIHH", 1, 1, sampling_rate, 2 * sampling_rate, 2, 16)
    ds64 = struct.pack("<QQQI", 4 + 36 + 24 + 8 + data_bytes, data_bytes, data_bytes // 2, 0)
    return (
        b"RF64" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE"
        + b"ds64" + struct.pack("<I", len(ds64)) + ds64
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", 0xFFFFFFFF)
        + data
    )


def ieee_extended(value: float) -> bytes:
    """80-bit IEEE 754 extended float, as AIFF stores the sampling rate in its COMM chunk."""
    mantissa, exponent = math.frexp(value)  # value = mantissa * 2**exponent, 0.5 <= mantissa < 1
    return struct.pack(">HQ", exponent - 1 + 16383, int(mantissa * 2 * (1 << 63)))


def aiff_bytes(
    data: bytes,
    *,
    frames: int,
    channels: int = 1,
    sampling_rate: int = 16000,
    compression: bytes | None = None,
) -> bytes:
    """A 16-bit AIFF file, or AIFF-C when `compression` (e.g. b"NONE", b"sowt") is given.

    `frames` is what the COMM chunk claims; `data` is what the SSND chunk actually holds.
    """
    comm = struct.pack(">hIh", channels, frames, 16) + ieee_extended(sampling_rate)
    chunks = b""
    if compression is not None:
        comm += compression + b"\x00\x00"  # compression type + empty pascal-string name
        chunks += b"FVER" + struct.pack(">II", 4, 0xA2805140)  # the AIFF-C version stamp
    chunks += b"COMM" + struct.pack(">I", len(comm)) + comm
    ssnd = struct.pack(">II", 0, 0) + data
    chunks += b"SSND" + struct.pack(">I", len(ssnd)) + ssnd
    form_type = b"AIFF" if compression is None else b"AIFC"
    return b"FORM" + struct.pack(">I", 4 + len(chunks)) + form_type + chunks


def flac_with_total_frames(path: Path, total_frames: int) -> Path:
    """Rewrite the STREAMINFO total-samples field (36 bits) of a FLAC file in place."""
    raw = bytearray(path.read_bytes())
    assert raw[:4] == b"fLaC" and raw[4] & 0x7F == 0  # first metadata block is STREAMINFO
    offset = 8 + 10  # 'fLaC', block header, then min/max block size (2+2), min/max frame size (3+3)
    packed = int.from_bytes(raw[offset : offset + 8], "big")  # rate 20 | channels 3 | bps 5 | total 36
    packed = (packed & ~((1 << 36) - 1)) | total_frames
    raw[offset : offset + 8] = packed.to_bytes(8, "big")
    path.write_bytes(bytes(raw))
    return path


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def peak_frequency(signal: np.ndarray, sampling_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    return float(np.fft.rfftfreq(signal.size, 1 / sampling_rate)[np.argmax(spectrum)])


def tone(frequency: float, seconds: float, sampling_rate: int) -> np.ndarray:
    t = np.arange(int(round(seconds * sampling_rate))) / sampling_rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Formats: every container and sample format reads back the written signal
# --------------------------------------------------------------------------------------------

# (file name, format, subtype, sampling rate, channels, max abs error); None = lossy, see below
FORMATS = [
    ("u8.wav", "WAV", "PCM_U8", 16000, 1, 1 / 64),
    ("s16.wav", "WAV", "PCM_16", 16000, 2, 1e-4),
    ("s24.wav", "WAV", "PCM_24", 22050, 1, 1e-6),
    ("s32.wav", "WAV", "PCM_32", 16000, 1, 1e-6),
    ("f32.wav", "WAV", "FLOAT", 44100, 2, 0.0),
    ("f64.wav", "WAV", "DOUBLE", 16000, 1, 1e-7),
    ("s16.flac", "FLAC", "PCM_16", 16000, 1, 1e-4),
    ("s24.flac", "FLAC", "PCM_24", 48000, 2, 1e-6),
    ("s16.aiff", "AIFF", "PCM_16", 16000, 1, 1e-4),
    ("f32.aifc", "AIFF", "FLOAT", 22050, 1, 0.0),  # libsndfile writes float AIFF as AIFF-C
    ("vorbis.ogg", "OGG", "VORBIS", 16000, 1, None),
    ("vorbis2.ogg", "OGG", "VORBIS", 44100, 2, None),
]


def expected_signal(seconds: float, sampling_rate: int, channels: int) -> np.ndarray:
    """What `audio_factory.write` puts in each channel: the voiced signal scaled by 0.8**c."""
    mono = voiced(seconds, sampling_rate)
    return np.stack([mono * 0.8**c for c in range(channels)], axis=1)


@pytest.mark.parametrize(("filename", "fmt", "subtype", "rate", "channels", "atol"), FORMATS)
def test_every_format_reads_back_the_written_signal(tmp_path, filename, fmt, subtype, rate, channels, atol):
    path = write(tmp_path / filename, 1.0, rate, channels, format=fmt, subtype=subtype)

    info = probe(path)
    assert (info.sampling_rate, info.channels, info.frames) == (rate, channels, rate)
    assert (info.format, info.subtype) == (fmt, subtype)
    assert info.duration == pytest.approx(1.0)

    signal, sampling_rate = read(path)
    assert sampling_rate == rate
    assert signal.dtype == np.float32 and signal.shape == (rate, channels)
    expected = expected_signal(1.0, rate, channels)
    if atol is None:  # lossy codec: same length, same waveform up to coding noise
        for c in range(channels):
            assert correlation(signal[:, c], expected[:, c]) > 0.99
    else:
        np.testing.assert_allclose(signal, expected, rtol=0, atol=atol)


def test_float_aiff_is_written_as_aiff_c(tmp_path):
    path = write(tmp_path / "f.aiff", 0.1, format="AIFF", subtype="FLOAT")
    assert path.read_bytes()[8:12] == b"AIFC"


def test_aiff_c_data_under_a_wav_name_reads(tmp_path):
    """Real corpora ship AIFF-C under `.wav`: the container comes from the content, not the name."""
    aifc = write(tmp_path / "real.aiff", 1.0, 16000, format="AIFF", subtype="FLOAT").read_bytes()
    assert aifc[8:12] == b"AIFC"
    misnamed = tmp_path / "x.wav"
    misnamed.write_bytes(aifc)

    info = probe(misnamed)
    assert (info.format, info.subtype, info.frames) == ("AIFF", "FLOAT", 16000)
    signal, rate = read(misnamed)
    assert rate == 16000
    np.testing.assert_array_equal(signal[:, 0], voiced(1.0, 16000))
    assert load(misnamed).shape == (112000,)


@pytest.mark.parametrize("compression", [b"NONE", b"sowt"])
def test_hand_built_aiff_c_pcm_under_a_wav_name_reads(tmp_path, compression):
    """AIFF-C with big-endian ('NONE') and little-endian ('sowt', Apple's) 16-bit PCM."""
    mono = voiced(0.5, 16000)
    data = pcm16_be(mono) if compression == b"NONE" else pcm16_le(mono)
    path = tmp_path / "x.wav"
    path.write_bytes(aiff_bytes(data, frames=mono.size, compression=compression))

    assert probe(path).format == "AIFF"
    signal, rate = read(path)
    assert (rate, signal.shape) == (16000, (8000, 1))
    np.testing.assert_allclose(signal[:, 0], mono, atol=1e-4)


def test_mp3_reads_with_the_right_length_and_waveform(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} has no MP3 support")
    path = write(tmp_path / "clip.mp3", 1.0, 44100, 2, format="MP3", subtype="MPEG_LAYER_III")

    info = probe(path)
    assert (info.format, info.sampling_rate, info.channels) == ("MP3", 44100, 2)
    signal, rate = read(path)
    assert rate == 44100
    assert abs(signal.shape[0] - 44100) <= 1152  # at most one MPEG frame of encoder padding
    n = min(signal.shape[0], 44100)
    expected = expected_signal(1.0, 44100, 2)
    for c in range(2):
        assert correlation(signal[:n, c], expected[:n, c]) > 0.98
    assert load(path).shape == (112000,)


# --------------------------------------------------------------------------------------------
# AudioSpec and the preprocessing pipeline
# --------------------------------------------------------------------------------------------


def test_paper_spec_is_16k_mono_7_seconds():
    assert PAPER_SPEC == AudioSpec()
    assert (PAPER_SPEC.sampling_rate, PAPER_SPEC.mono, PAPER_SPEC.duration) == (16000, True, 7.0)
    assert PAPER_SPEC.crop == "start"
    assert PAPER_SPEC.num_samples == 112000


def test_spec_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAPER_SPEC.duration = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"crop": "end"}, "crop"),
        ({"duration": -1.0}, "duration"),
        ({"duration": 0.0}, "duration"),
        ({"sampling_rate": 0}, "sampling_rate"),
        ({"sampling_rate": 16000.5}, "sampling_rate"),
        ({"min_duration": -0.5}, "min_duration"),
        ({"min_duration": 5.0, "max_duration": 5.0}, "min_duration < max_duration"),
        ({"min_duration": 6.0, "max_duration": 5.0}, "min_duration < max_duration"),
        ({"mono": False}, "mono"),
    ],
)
def test_spec_rejects_bad_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AudioSpec(**kwargs)


def test_spec_dict_round_trip_through_json():
    spec = AudioSpec(sampling_rate=8000, duration=None, crop="center", min_duration=0.5, max_duration=60.0)
    data = json.loads(json.dumps(spec.to_dict()))
    assert data == {
        "sampling_rate": 8000, "mono": True, "duration": None, "crop": "center",
        "min_duration": 0.5, "max_duration": 60.0,
    }
    assert AudioSpec.from_dict(data) == spec
    assert AudioSpec.from_dict(PAPER_SPEC.to_dict()) == PAPER_SPEC


def test_spec_from_dict_names_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown AudioSpec keys \['channels', 'rate'\]"):
        AudioSpec.from_dict({**PAPER_SPEC.to_dict(), "rate": 16000, "channels": 1})


def test_44k_stereo_becomes_16k_mono_of_the_right_length(tmp_path):
    path = write(tmp_path / "stereo.wav", 2.0, 44100, 2, subtype="PCM_16")
    native = load(path, AudioSpec(duration=None))
    assert native.dtype == np.float32 and native.shape == (32000,)
    # mixdown of channels 1.0 and 0.8 times the voice is 0.9 times the voice (resampled)
    reference = preprocess(voiced(2.0, 44100), 44100, AudioSpec(duration=None))
    np.testing.assert_allclose(native, 0.9 * reference, atol=2e-4)

    fixed = load(path)
    assert fixed.shape == (112000,)
    np.testing.assert_array_equal(fixed[:32000], native)
    assert not fixed[32000:].any()


def test_duration_none_keeps_native_length_after_resampling(tmp_path):
    path = write(tmp_path / "a.flac", 1.5, 44100)
    assert load(path, AudioSpec(duration=None)).shape == (24000,)
    path = write(tmp_path / "b.flac", 9.25, 16000)
    assert load(path, AudioSpec(duration=None)).shape == (148000,)


def test_short_clip_is_zero_padded_at_the_end(tmp_path):
    path = write(tmp_path / "short.wav", 2.0, 16000, subtype="FLOAT")
    out = load(path)
    assert out.dtype == np.float32 and out.shape == (112000,)
    np.testing.assert_array_equal(out[:32000], voiced(2.0, 16000))
    np.testing.assert_array_equal(out[32000:], np.zeros(80000, dtype=np.float32))


@pytest.mark.parametrize(("crop", "start"), [("start", 0), ("center", 24000)])
def test_long_clip_is_cropped(tmp_path, crop, start):
    path = write(tmp_path / "long.wav", 10.0, 16000, subtype="FLOAT")
    whole = voiced(10.0, 16000)
    out = load(path, AudioSpec(crop=crop))
    assert out.shape == (112000,)
    # center keeps (160000 - 112000) // 2 = 24000 samples off each end
    np.testing.assert_array_equal(out, whole[start : start + 112000])


@pytest.mark.parametrize(
    ("n", "crop", "expected"),
    [
        (4, "start", [0, 1, 2, 3]),
        (4, "center", [3, 4, 5, 6]),
        (3, "center", [3, 4, 5]),
        (10, "start", list(range(10))),
        (12, "center", list(range(10)) + [0, 0]),
    ],
)
def test_fix_length(n, crop, expected):
    signal = np.arange(10, dtype=np.float32)
    out = fix_length(signal, n, crop)
    np.testing.assert_array_equal(out, np.array(expected, dtype=np.float32))
    assert out is not signal and out.dtype == np.float32


def test_resampling_keeps_a_440_hz_tone(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(440.0, 2.0, 44100), 44100, subtype="FLOAT")
    out = load(path, AudioSpec(duration=None))
    assert out.shape == (32000,)
    assert peak_frequency(out, 16000) == pytest.approx(440.0, abs=1.0)
    assert np.sqrt(np.mean(out**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_resampling_does_not_alias():
    """11 kHz is above the 8 kHz Nyquist limit of 16 kHz: it must vanish, not fold to 5 kHz."""
    out = preprocess(tone(11000.0, 2.0, 44100), 44100, AudioSpec(duration=None))
    rms = float(np.sqrt(np.mean(out[1000:-1000] ** 2)))  # ignore the filter's edge transients
    assert rms < 1e-3 * 0.5


def test_mixdown_is_the_mean_of_channels():
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.5, 0.5, size=(16000, 3)).astype(np.float32)
    out = preprocess(stereo, 16000, AudioSpec(duration=None))
    np.testing.assert_allclose(out, stereo.mean(axis=1), atol=1e-7)
    # a (frames, 1) array and a 1-D array are the same mono signal
    np.testing.assert_array_equal(preprocess(stereo[:, :1], 16000, AudioSpec(duration=None)), stereo[:, 0])


# --------------------------------------------------------------------------------------------
# Sources: path, bytes, open binary file
# --------------------------------------------------------------------------------------------


def test_path_bytes_and_file_objects_read_the_same(tmp_path):
    path = write(tmp_path / "clip.flac", 1.0, 22050, 2)
    expected = load(path)
    assert expected.shape == (112000,)
    np.testing.assert_array_equal(load(str(path)), expected)
    np.testing.assert_array_equal(load(path.read_bytes()), expected)
    np.testing.assert_array_equal(load(io.BytesIO(path.read_bytes())), expected)
    with open(path, "rb") as handle:
        np.testing.assert_array_equal(load(handle), expected)
    assert probe(path.read_bytes()) == probe(path) == AudioInfo(22050, 2, 22050, "FLAC", "PCM_16")


def test_name_labels_errors_for_bytes_and_streams():
    with pytest.raises(AudioError) as caught:
        read(b"definitely not audio, just some text" * 4, name="upload/clip.wav")
    assert caught.value.source == "upload/clip.wav"
    assert str(caught.value).startswith("upload/clip.wav: not a readable audio file")

    with pytest.raises(AudioError, match=r"^stream\.wav: empty file \(0 bytes\)$"):
        load(io.BytesIO(b""), name="stream.wav")
    with pytest.raises(AudioError, match=r"^<audio stream>: not a readable audio file"):
        probe(io.BytesIO(b"\x00" * 100))


def test_open_file_errors_use_the_file_name(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("meeting notes\n" * 20)
    with open(path, "rb") as handle, pytest.raises(AudioError) as caught:
        load(handle)
    assert caught.value.source == str(path)


# --------------------------------------------------------------------------------------------
# Bad input: every case raises AudioError naming the file and the reason
# --------------------------------------------------------------------------------------------


def make_missing(tmp_path: Path) -> Path:
    return tmp_path / "nowhere.wav"


def make_directory(tmp_path: Path) -> Path:
    path = tmp_path / "folder.wav"
    path.mkdir()
    return path


def make_empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.wav"
    path.touch()
    return path


def make_zero_frames(tmp_path: Path) -> Path:
    path = tmp_path / "zero.wav"
    path.write_bytes(wav_header(0))
    return path


def make_text(tmp_path: Path) -> Path:
    path = tmp_path / "readme.wav"
    path.write_text("This is not audio.\n" * 50)
    return path


def make_random(tmp_path: Path) -> Path:
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    return path


def make_truncated_wav(tmp_path: Path) -> Path:
    """A header claiming 1 s (16000 frames) with only 0.25 s of data behind it."""
    path = tmp_path / "truncated.wav"
    data = pcm16_le(voiced(1.0))
    path.write_bytes(wav_header(len(data)) + data[: len(data) // 4])
    return path


def make_truncated_wav_mid_frame(tmp_path: Path) -> Path:
    """The file ends in the middle of the last stereo frame."""
    path = write(tmp_path / "cut.wav", 0.5, 16000, 2, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:-3])
    return path


def make_truncated_aiff(tmp_path: Path) -> Path:
    path = write(tmp_path / "truncated.aiff", 1.0, format="AIFF", subtype="PCM_16")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def make_flac_garbage_inside(tmp_path: Path) -> Path:
    path = write(tmp_path / "garbage.flac", 2.0)
    raw = bytearray(path.read_bytes())
    start = len(raw) // 3
    raw[start : start + 2000] = np.random.default_rng(2).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(raw))
    return path


def make_flac_cut_short(tmp_path: Path) -> Path:
    path = write(tmp_path / "cut.flac", 2.0)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def make_nan(tmp_path: Path) -> Path:
    signal = voiced(1.0)
    signal[1234] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, signal, 16000, subtype="FLOAT")
    return path


def make_inf(tmp_path: Path) -> Path:
    signal = voiced(1.0)
    signal[-1] = -np.inf
    path = tmp_path / "inf.wav"
    sf.write(path, signal, 16000, subtype="DOUBLE")
    return path


BAD_FILES = [
    (make_missing, "file not found"),
    (make_directory, "is a directory"),
    (make_empty, "empty file (0 bytes)"),
    (make_zero_frames, "contains no samples"),
    (make_text, "not a readable audio file"),
    (make_random, "not a readable audio file"),
    (make_truncated_wav, "truncated: header says 16000 frames, the file holds only 4000"),
    (make_truncated_wav_mid_frame, "truncated: header says 8000 frames, the file holds only 7999"),
    (make_truncated_aiff, "truncated: header says 16000 frames"),
    (make_flac_garbage_inside, "corrupt or truncated audio data"),
    (make_flac_cut_short, "corrupt or truncated audio data"),
    (make_nan, "contains NaN or Inf samples"),
    (make_inf, "contains NaN or Inf samples"),
]


@pytest.mark.parametrize(("make", "reason"), BAD_FILES, ids=[m.__name__[5:] for m, _ in BAD_FILES])
def test_bad_file_raises_audio_error_naming_file_and_reason(tmp_path, make, reason):
    path = make(tmp_path)
    for call in (read, load):
        with pytest.raises(AudioError) as caught:
            call(path)
        error = caught.value
        assert isinstance(error, ValueError)
        assert error.source == str(path)
        assert reason in error.reason
        assert str(error) == f"{path}: {error.reason}"


@pytest.mark.parametrize(("make", "reason"), BAD_FILES[2:8], ids=[m.__name__[5:] for m, _ in BAD_FILES[2:8]])
def test_bad_bytes_raise_audio_error_with_the_given_name(tmp_path, make, reason):
    raw = make(tmp_path).read_bytes()
    with pytest.raises(AudioError) as caught:
        load(raw, name="memory.wav")
    assert caught.value.source == "memory.wav" and reason in caught.value.reason


# (format, subtype, reason when the second half of a 2 s file is cut off)
TRUNCATED = [
    ("WAV", "PCM_16", "truncated: header says 32000 frames, the file holds only"),
    ("WAV", "ULAW", "truncated: header says 32000 frames, the file holds only"),
    ("WAVEX", "PCM_24", "truncated: header says 32000 frames, the file holds only"),
    ("RF64", "PCM_16", "truncated: header says 32000 frames, the file holds only"),
    ("AIFF", "PCM_16", "truncated: header says 32000 frames, the file holds only"),
    ("AIFF", "FLOAT", "truncated: header says 32000 frames, the file holds only"),  # AIFF-C
    ("AIFF", "ULAW", "truncated: header says 32000 frames, the file holds only"),  # AIFF-C
    ("FLAC", "PCM_24", "corrupt or truncated audio data"),
    ("OGG", "VORBIS", "contains no samples"),  # the length lives in the last page, now gone
]


@pytest.mark.parametrize(("fmt", "subtype", "reason"), TRUNCATED, ids=[f"{f}-{s}" for f, s, _ in TRUNCATED])
def test_file_cut_in_half_is_rejected_in_every_container(tmp_path, fmt, subtype, reason):
    path = write(tmp_path / f"half.{fmt.lower()}", 2.0, 16000, format=fmt, subtype=subtype)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(AudioError) as caught:
        load(path)
    assert caught.value.source == str(path) and reason in caught.value.reason


def test_mp3_cut_in_half_reads_the_half_it_holds(tmp_path):
    """A compressed stream's length is what decodes, not its Xing header's promise (issue #12)."""
    if "MP3" not in sf.available_formats():
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} has no MP3 support")
    path = write(tmp_path / "half.mp3", 2.0, 16000, format="MP3", subtype="MPEG_LAYER_III")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    signal, rate = read(path)
    assert rate == 16000 and 8000 < signal.shape[0] < 30000  # about half (VBR: not exactly)
    assert probe(path).frames == signal.shape[0]


@pytest.mark.parametrize("make", [make_missing, make_directory, make_empty, make_zero_frames, make_text])
def test_probe_rejects_what_has_no_usable_header(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(AudioError, match=f"^{path}: "):
        probe(path)


def test_min_and_max_duration(tmp_path):
    path = write(tmp_path / "clip.wav", 1.0, 16000)
    with pytest.raises(AudioError, match=r"clip\.wav: too short: 1\.000 s, minimum is 1\.5 s"):
        load(path, AudioSpec(min_duration=1.5))
    with pytest.raises(AudioError, match=r"clip\.wav: too long: header says 1\.0 s, maximum is 0\.5 s"):
        load(path, AudioSpec(max_duration=0.5))
    with pytest.raises(AudioError, match="too long"):
        read(path, max_duration=0.999)
    # the bounds themselves are accepted
    assert load(path, AudioSpec(min_duration=1.0, max_duration=1.0 + 1e-9)).shape == (112000,)
    assert read(path, min_duration=1.0, max_duration=1.0)[0].shape == (16000, 1)


def test_preprocess_checks_its_input():
    with pytest.raises(AudioError, match="^x: contains NaN or Inf samples$"):
        preprocess(np.array([0.1, np.nan, 0.2]), 16000, name="x")
    with pytest.raises(AudioError, match="^x: contains no samples"):
        preprocess(np.zeros(0), 16000, name="x")
    with pytest.raises(AudioError, match="^x: expected samples of shape"):
        preprocess(np.zeros((2, 2, 2)), 16000, name="x")
    with pytest.raises(AudioError, match="^x: too short"):
        preprocess(np.ones(100), 16000, AudioSpec(min_duration=0.5), name="x")
    with pytest.raises(AudioError, match="^x: too long"):
        preprocess(np.ones(16000), 16000, AudioSpec(max_duration=0.5), name="x")


# --------------------------------------------------------------------------------------------
# Headers that lie about the length: fail fast, never allocate for the claimed size
# --------------------------------------------------------------------------------------------


def lying_wav(tmp_path: Path) -> Path:
    """Claims 0xFFFFFFF0 bytes (37 hours at 16 kHz) of data; holds 1 s."""
    path = tmp_path / "lying.wav"
    path.write_bytes(wav_header(0xFFFFFFF0) + pcm16_le(voiced(1.0)))
    return path


def lying_rf64(tmp_path: Path) -> Path:
    """ds64 claims 2**40 bytes (about 1 year at 16 kHz); holds 1 s."""
    path = tmp_path / "lying.rf64.wav"
    path.write_bytes(rf64_bytes(pcm16_le(voiced(1.0)), data_bytes=2**40))
    return path


def lying_aiff(tmp_path: Path) -> Path:
    """COMM claims 2**32 - 1 frames (3 days at 16 kHz); SSND holds 1 s."""
    path = tmp_path / "lying.aiff"
    path.write_bytes(aiff_bytes(pcm16_be(voiced(1.0)), frames=2**32 - 1))
    return path


@pytest.mark.parametrize("make", [lying_wav, lying_rf64, lying_aiff])
def test_pcm_header_claiming_more_than_the_file_holds_is_truncated(tmp_path, make):
    path = make(tmp_path)
    assert path.stat().st_size < 40000
    for max_duration in (3600.0, 1e12):  # whether or not the claim is within max_duration
        with pytest.raises(AudioError, match=r"truncated: header says \d+ frames, the file holds only 16000"):
            read(path, max_duration=max_duration)


def test_honest_rf64_reads(tmp_path):
    path = tmp_path / "honest.wav"
    data = pcm16_le(voiced(1.0))
    path.write_bytes(rf64_bytes(data, data_bytes=len(data)))
    assert probe(path).format == "RF64"
    signal, _ = read(path, max_duration=1.0)
    np.testing.assert_allclose(signal[:, 0], voiced(1.0), atol=1e-4)


def test_wav_of_unknown_length_reads_what_is_there(tmp_path):
    """0xFFFFFFFF is the data size a streaming writer leaves when it cannot seek back: 'unknown'."""
    path = tmp_path / "streamed.wav"
    path.write_bytes(wav_header(0xFFFFFFFF) + pcm16_le(voiced(1.0)))
    signal, rate = read(path)
    assert (rate, signal.shape) == (16000, (16000, 1))


def test_flac_claiming_days_is_rejected_from_the_header(tmp_path):
    path = flac_with_total_frames(write(tmp_path / "days.flac", 1.0), 2**36 - 1)
    assert probe(path).frames == 2**36 - 1  # libsndfile trusts FLAC's STREAMINFO
    with pytest.raises(AudioError, match=r"days\.flac: too long: header says 4294967\.3 s, maximum is 3600 s"):
        load(path)


def test_flac_claiming_more_than_it_holds_does_not_allocate_the_claim(tmp_path):
    """50 minutes claimed (within max_duration), 1 s held: 192 MB must not be allocated."""
    path = flac_with_total_frames(write(tmp_path / "claims.flac", 1.0), 50 * 60 * 16000)
    tracemalloc.start()
    try:
        with pytest.raises(AudioError, match=r"claims\.flac: (corrupt or )?truncated"):
            read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_flac_without_a_total_sample_count_is_rejected_with_a_clear_reason(tmp_path):
    """Streaming FLAC encoders may leave total samples at 0 ('unknown'); soundfile cannot read it."""
    path = flac_with_total_frames(write(tmp_path / "streamed.flac", 1.0), 0)
    with pytest.raises(AudioError, match=r"streamed\.flac: header does not state the length"):
        load(path)


def test_small_real_file_reads_within_a_tight_max_duration(tmp_path):
    path = write(tmp_path / "ok.flac", 1.0)
    tracemalloc.start()
    try:
        signal, _ = read(path, max_duration=1.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert signal.shape == (16000, 1)
    assert peak < 2**20


# --------------------------------------------------------------------------------------------
# Silence is a warning, not an error
# --------------------------------------------------------------------------------------------


def test_all_zero_audio_warns_and_returns_zeros(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(24000, dtype=np.float32), 16000, subtype="PCM_16")
    with pytest.warns(SilentAudioWarning, match=r"silence\.wav: all samples are zero"):
        out = load(path)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.zeros(112000, dtype=np.float32))
    signal, _ = read(path)  # read itself does not judge silence
    assert signal.shape == (24000, 1) and not signal.any()


def test_quiet_but_not_silent_audio_does_not_warn(tmp_path):
    path = tmp_path / "quiet.wav"
    signal = np.zeros(16000, dtype=np.float32)
    signal[8000] = 1 / 32767
    sf.write(path, signal, 16000, subtype="PCM_16")
    assert np.count_nonzero(load(path, AudioSpec(duration=None))) > 0  # warnings are errors here


# --------------------------------------------------------------------------------------------
# Real speech
# --------------------------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("corpus", "pattern", "rate"),
    [("emovo", "f1/*.flac", 16000), ("urdu", "Angry/*.flac", 44100)],
)
def test_real_speech_loads_with_the_paper_spec(shared_data, corpus, pattern, rate):
    files = sorted((shared_data / corpus).glob(pattern))
    if not files:
        pytest.skip(f"no {pattern} in {shared_data / corpus}")
    path = files[0]

    info = probe(path)
    header = sf.info(str(path))
    assert (info.sampling_rate, info.channels, info.frames) == (header.samplerate, header.channels, header.frames)
    assert (info.sampling_rate, info.channels, info.format) == (rate, 1, "FLAC")
    assert 0.3 < info.duration < 60

    out = load(path, PAPER_SPEC)
    assert out.dtype == np.float32 and out.shape == (112000,)
    assert np.isfinite(out).all()
    kept = min(round(info.duration * 16000), 112000)
    assert np.sqrt(np.mean(out[:kept] ** 2)) > 1e-3
    assert np.abs(out).max() <= 1.0

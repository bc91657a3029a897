"""Every recording people have (issue #12): compressed formats decoded whole, lying headers read."""

from __future__ import annotations

import os
import struct
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

from serkit.data.audio import AudioError, AudioSpec, DecodeWarning, HeaderWarning, display_name, load, probe, read, stream
from tests.encoded_audio import FORMATS, encode, id3v2_with_picture, stream_samples, tone, write_format

pytest.importorskip("av")

#: One MPEG-1 layer III frame in samples: the tolerance the issue sets on decoded lengths.
MP3_FRAME = 1152

#: LAME's encoder delay plus the decoder's (576 + 529): without a LAME tag no reader can know
#: it, so it stays at the start of what decodes.
LAME_DELAY = 1105


def aligned_correlation(decoded: np.ndarray, reference: np.ndarray, max_lag: int) -> float:
    """Best correlation of `decoded` with `reference` over shifts of up to `max_lag` samples."""
    best = 0.0
    for lag in range(0, max_lag + 1):
        n = min(decoded.size - lag, reference.size)
        a, b = decoded[lag : lag + n], reference[:n]
        best = max(best, float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)))
    return best


@pytest.mark.parametrize("name", list(FORMATS))
def test_compressed_formats_decode_to_their_true_length(tmp_path, name):
    path, signal, rate = write_format(tmp_path / f"clip.{name}", name, seconds=2.0)
    decoded, got_rate = read(path)
    assert got_rate == rate and decoded.dtype == np.float32 and decoded.shape[1] == 1
    assert abs(decoded.shape[0] - signal.size) <= MP3_FRAME, decoded.shape
    assert probe(path).frames == decoded.shape[0]  # probe decodes too: no header estimate
    assert aligned_correlation(decoded[:, 0], signal, max_lag=2048) > 0.95
    loaded = load(path, AudioSpec(duration=None))  # soxr to 16 kHz
    assert abs(loaded.size - round(decoded.shape[0] * 16000 / rate)) <= 1


def test_probe_names_container_and_codec(tmp_path):
    info = {n: probe(write_format(tmp_path / f"c.{n}", n, 0.5)[0]) for n in ("mp3", "m4a", "webm", "opus.ogg")}
    assert (info["mp3"].format, info["mp3"].subtype) == ("MP3", "MP3FLOAT")
    assert (info["m4a"].format, info["m4a"].subtype) == ("MP4", "AAC")
    assert (info["webm"].format, info["webm"].subtype) == ("WEBM", "OPUS")
    assert (info["opus.ogg"].format, info["opus.ogg"].subtype) == ("OGG", "OPUS")


def test_valid_mp3_written_to_a_pipe_is_not_called_truncated(tmp_path):
    """The issue's first MP3 (``ffmpeg ... -f mp3 pipe:1 > x.mp3``): a 2 s tone whose stream is
    2.09 s (no LAME gapless information). It was refused as "truncated: header says 33648
    frames, only 33408 could be read"; its length now comes from decoding."""
    signal = tone(2.0, 16000)
    path = encode(tmp_path / "x.mp3", signal, 16000, "libmp3lame", "mp3", pipe=True)
    decoded, rate = read(path)
    assert rate == 16000
    assert abs(decoded.shape[0] - stream_samples(path)) <= MP3_FRAME  # 33408 = 58 frames of 576
    assert signal.size <= decoded.shape[0] <= signal.size + LAME_DELAY + MP3_FRAME
    assert probe(path).frames == decoded.shape[0]


@pytest.mark.parametrize("tagged", [False, True], ids=["bare", "id3-picture-padding"])
def test_mp3_without_xing_header_is_decoded_to_its_end(tmp_path, tagged):
    """VBR, no Xing header: libsndfile guessed 0.43 s or called it truncated; it holds 3 s."""
    signal = tone(3.0, 16000, start_silence=0.5)
    path = encode(tmp_path / "noxing.mp3", signal, 16000, "libmp3lame", "mp3", vbr=True, xing=False)
    if tagged:
        path.write_bytes(id3v2_with_picture() + path.read_bytes())
    decoded, rate = read(path)
    assert rate == 16000
    assert abs(decoded.shape[0] - stream_samples(path)) <= MP3_FRAME
    assert signal.size <= decoded.shape[0] <= signal.size + LAME_DELAY + MP3_FRAME
    assert probe(path).frames == decoded.shape[0]
    assert aligned_correlation(decoded[:, 0], signal, max_lag=2048) > 0.95


def test_bytes_and_open_files_decode_like_paths(tmp_path):
    path, _, _ = write_format(tmp_path / "memo.m4a", "m4a", 1.0)
    by_path, _ = read(path)
    by_bytes, _ = read(path.read_bytes(), name="memo.m4a")
    with open(path, "rb") as handle:
        by_handle, _ = read(handle)
    np.testing.assert_array_equal(by_path, by_bytes)
    np.testing.assert_array_equal(by_path, by_handle)


def test_decoding_stops_at_the_maximum_duration(tmp_path):
    path = encode(tmp_path / "long.mp3", tone(20.0, 16000), 16000, "libmp3lame", "mp3", xing=False)
    tracemalloc.start()
    try:
        with pytest.raises(AudioError, match=r"long\.mp3: too long: decoding passed the maximum of 2 s"):
            read(path, max_duration=2.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2.0 * 16000 * 4 + 2**20  # about 2 s of samples, not 20
    with pytest.raises(AudioError, match="too long"):
        probe(path, max_duration=2.0)
    assert read(path, max_duration=30.0)[0].shape[0] >= 20 * 16000


def test_a_damaged_frame_is_skipped_with_a_warning_and_heavy_damage_refused(tmp_path):
    signal = tone(20.0, 16000)
    path = encode(tmp_path / "memo.mp3", signal, 16000, "libmp3lame", "mp3")
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 300] = np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(raw))
    with pytest.warns(DecodeWarning, match=r"memo\.mp3: \d of \d+ packet\(s\) could not be decoded .* skipped"):
        decoded, _ = read(path)
    assert signal.size - 16000 < decoded.shape[0] <= signal.size + MP3_FRAME  # at most about 1 s lost

    raw = bytearray(encode(tmp_path / "heavy.mp3", tone(4.0, 16000), 16000, "libmp3lame", "mp3").read_bytes())
    rng = np.random.default_rng(0)
    for i in range(400, len(raw), 97):
        raw[i] = rng.integers(0, 256)
    (tmp_path / "heavy.mp3").write_bytes(bytes(raw))
    with pytest.raises(AudioError, match=r"heavy\.mp3: corrupt audio data: \d+ of \d+ packet\(s\) could not be decoded"):
        read(tmp_path / "heavy.mp3")


@pytest.mark.parametrize("name", ["webm", "opus.ogg", "mp3"])
def test_compressed_stream_cut_short_reads_what_it_holds(tmp_path, name):
    path, signal, rate = write_format(tmp_path / f"cut.{name}", name, seconds=4.0)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    decoded, got_rate = read(path)
    assert got_rate == rate and 0.25 * signal.size < decoded.shape[0] < 0.75 * signal.size


def test_git_lfs_pointer_is_named_with_the_fix(tmp_path):
    path = tmp_path / "clip.m4a"
    path.write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n"
    )
    for call in (read, probe, load):
        with pytest.raises(AudioError, match=r"clip\.m4a: a Git LFS pointer .*git lfs pull"):
            call(path)


@pytest.mark.parametrize("suffix", [".m4a", ".webm", ".mp3", ".wav"])
def test_text_under_an_audio_name_is_not_audio(tmp_path, suffix):
    path = tmp_path / f"notes{suffix}"
    path.write_text("This is not audio.\n" * 50)
    with pytest.raises(AudioError, match=r"not a readable audio file"):
        read(path)


def test_video_without_audio_says_so(tmp_path):
    import av

    path = tmp_path / "silent_film.mp4"
    with av.open(os.fspath(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 32, 32
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 40, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(AudioError, match=r"silent_film\.mp4: no audio stream in this file \(streams: video\)"):
        read(path)


# --------------------------------------------------------------------------------------------
# A WAV whose header says 0 bytes (a recorder killed before patching its header)
# --------------------------------------------------------------------------------------------


def zero_sized_wav(seconds: float, rate: int = 16000) -> bytes:
    pcm = (tone(seconds, rate) * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
    return b"RIFF" + bytes(4) + b"WAVE" + b"fmt " + fmt + b"data" + bytes(4) + pcm


def test_wav_with_zero_riff_and_data_sizes_is_read_in_full_with_a_warning(tmp_path):
    path = tmp_path / "killed.wav"
    path.write_bytes(zero_sized_wav(1.5))
    with pytest.warns(HeaderWarning, match=r"killed\.wav: the WAV header lied: .* say 0 bytes.* 1\.50 s"):
        signal, rate = read(path)
    assert (rate, signal.shape) == (16000, (24000, 1))
    np.testing.assert_allclose(signal[:, 0], tone(1.5, 16000), atol=1e-4)
    with pytest.warns(HeaderWarning):
        assert probe(path).frames == 24000
    with pytest.warns(HeaderWarning):
        assert read(path.read_bytes(), name="killed.wav")[0].shape == (24000, 1)


def test_zero_sized_wav_longer_than_the_maximum_is_refused_before_reading(tmp_path):
    path = tmp_path / "killed.wav"
    path.write_bytes(zero_sized_wav(3.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before any warning
        with pytest.raises(AudioError, match=r"killed\.wav: too long: 3\.0 s of audio behind a header that says 0"):
            read(path, max_duration=2.0)


def test_wav_header_alone_with_zero_sizes_is_still_empty(tmp_path):
    path = tmp_path / "header_only.wav"
    path.write_bytes(zero_sized_wav(0.0))
    with pytest.raises(AudioError, match="contains no samples"):
        read(path)


# --------------------------------------------------------------------------------------------
# File names that are not UTF-8
# --------------------------------------------------------------------------------------------


def test_non_utf8_file_names_read_and_are_shown_printably(tmp_path):
    raw_dir = os.fsencode(tmp_path)
    wav = os.path.join(raw_dir, b"caf\xe9.wav")
    m4a = os.path.join(raw_dir, b"r\xe9sum\xe9.m4a")
    import soundfile as sf

    with open(wav, "wb") as handle:
        sf.write(handle, tone(0.5, 16000), 16000, format="WAV")
    with open(m4a, "wb") as handle:
        handle.write(write_format(tmp_path / "tmp.m4a", "m4a", 0.5)[0].read_bytes())
    for raw in (wav, m4a):
        path = Path(os.fsdecode(raw))
        signal, _ = read(path)
        assert signal.shape[0] >= 8000
        assert probe(path).frames == signal.shape[0]
    missing = Path(os.fsdecode(os.path.join(raw_dir, b"gone\xff.wav")))
    with pytest.raises(AudioError) as caught:
        read(missing)
    assert caught.value.source.endswith("gone\\xff.wav")
    str(caught.value).encode("utf-8")  # printable: no surrogates
    assert display_name(missing) == caught.value.source


# --------------------------------------------------------------------------------------------
# Long recordings: streamed block by block, memory independent of the length
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "rate"), [(".wav", 44100), (".flac", 16000), (".m4a", 44100), (".webm", 48000)])
def test_stream_joined_equals_load(tmp_path, suffix, rate):
    import soundfile as sf

    signal = tone(12.0, rate)
    path = tmp_path / f"talk{suffix}"
    if suffix in (".wav", ".flac"):
        sf.write(path, np.stack([signal, 0.5 * signal], axis=1), rate)
    else:
        encode(path, signal, rate, "aac" if suffix == ".m4a" else "libopus", "ipod" if suffix == ".m4a" else "webm")
    spec = AudioSpec(duration=None)
    whole = load(path, spec)
    blocks = list(stream(path, spec, block_seconds=2.5))
    assert len(blocks) >= 4
    joined = np.concatenate(blocks)
    assert joined.dtype == np.float32 and abs(joined.size - whole.size) <= 1
    n = min(joined.size, whole.size)
    np.testing.assert_allclose(joined[:n], whole[:n], atol=2e-3)


def test_stream_memory_does_not_grow_with_length(tmp_path):
    """Four minutes of MP3 at 48 kHz: read() peaks at 89 MiB, stream() at about 7 MiB."""
    rate = 48000
    path = encode(tmp_path / "lecture.mp3", tone(240.0, rate), rate, "libmp3lame", "mp3")
    tracemalloc.start()
    try:
        count = sum(block.size for block in stream(path, AudioSpec(duration=None), block_seconds=10.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert abs(count - 240 * 16000) <= 16000 * MP3_FRAME / rate + 16
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_stream_stops_at_the_maximum_duration_and_names_problems(tmp_path):
    path = encode(tmp_path / "long.mp3", tone(20.0, 16000), 16000, "libmp3lame", "mp3")
    got = []
    with pytest.raises(AudioError, match=r"long\.mp3: too long: decoding passed the maximum of 5 s"):
        for block in stream(path, AudioSpec(duration=None, max_duration=5.0), block_seconds=1.0):
            got.append(block.size)
    assert sum(got) <= 5 * 16000
    pointer = tmp_path / "p.wav"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    with pytest.raises(AudioError, match="git lfs pull"):
        next(stream(pointer))
    text = tmp_path / "t.m4a"
    text.write_text("not audio\n" * 20)
    with pytest.raises(AudioError, match="not a readable audio file"):
        next(stream(text))

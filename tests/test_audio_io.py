"""Loading audio: formats, mono mix, resampling, and every way a file can be unusable."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from conftest import tone, write_wav
from dslite_tiny.audio.io import audio_files, load_audio, stream_audio
from dslite_tiny.errors import AudioError


@pytest.mark.parametrize("suffix,subtype", [(".wav", "PCM_16"), (".wav", "PCM_24"), (".wav", "FLOAT"),
                                            (".wav", "PCM_U8"), (".flac", "PCM_16"), (".ogg", "VORBIS")])
def test_formats_load_as_float_in_range(tmp_path, suffix, subtype):
    path = write_wav(tmp_path / f"a{suffix}", tone(440, 0.5, 16000), 16000, subtype)
    y = load_audio(path, sr=16000)
    assert y.dtype == np.float32 and y.shape == (8000,)
    tolerance = 0.1 if subtype == "VORBIS" else 0.01
    assert abs(np.abs(y).max() - 0.5) < tolerance


def test_audio_files_are_found_at_any_depth_in_path_order(tmp_path):
    """Hidden files, other suffixes and a folder named like an audio file are not audio files."""
    for name in ("b/z.wav", "a/deep/y.FLAC", "x.ogg", ".hidden.wav", "notes.txt", "folder.wav/inner.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert audio_files(tmp_path) == [tmp_path / "a/deep/y.FLAC", tmp_path / "b/z.wav", tmp_path / "x.ogg"]


def test_pcm16_scaling_matches_tf_decode_wav(tmp_path):
    tf = pytest.importorskip("tensorflow")
    path = write_wav(tmp_path / "a.wav", tone(300, 0.2, 8000, 0.9), 8000)
    decoded, _ = tf.audio.decode_wav(path.read_bytes(), desired_channels=1)
    np.testing.assert_array_equal(load_audio(path, sr=8000), decoded.numpy()[:, 0])


def test_stereo_is_mixed_to_mono(tmp_path):
    left, right = tone(440, 0.25, 16000, 0.4), tone(1000, 0.25, 16000, 0.2)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000, "FLOAT")
    np.testing.assert_allclose(load_audio(path, sr=16000), (left + right) / 2, atol=1e-6)


def test_resampling_keeps_the_pitch_and_duration(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(1000, 1.0, 44100), 44100)
    y = load_audio(path, sr=16000)
    assert y.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    assert abs(np.argmax(spectrum) * 16000 / y.size - 1000) < 2
    up = load_audio(write_wav(tmp_path / "b.wav", tone(1000, 1.0, 8000), 8000), sr=16000)
    assert up.shape == (16000,) and abs(np.abs(up[1000:-1000]).max() - 0.5) < 0.02


def _wav_with_format_tag(tag: int) -> bytes:
    data = b"\x00" * 400
    fmt = struct.pack("<HHIIHHH", tag, 1, 8000, 16000, 2, 16, 0)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE" + b"fmt "
            + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)


def bad_files(tmp_path):
    """Each kind of unusable file, with the phrase its error must contain."""
    ok = write_wav(tmp_path / "ok.wav", tone(440, 0.5, 8000), 8000).read_bytes()
    nan = np.ones(100, np.float32)
    nan[3] = np.nan
    cases = {
        "missing.wav": (None, "no such file"),
        "text.wav": (b"this is not audio at all", "not an audio file"),
        "truncated.wav": (ok[: len(ok) // 2], "truncated"),
        "empty.wav": ("zero", "zero-length"),
        "nan.wav": (nan, "NaN or infinite"),
        "mp3inwav.wav": (_wav_with_format_tag(0x55), "unsupported sample format"),
    }
    paths = {}
    for name, (content, phrase) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, np.ndarray):
            write_wav(path, content, 8000, "FLOAT")
        elif content == "zero":
            write_wav(path, np.zeros(0, np.float32), 8000)
        paths[name] = (path, phrase)
    return paths


@pytest.mark.parametrize("file_sr, sr, channels", [(8000, 16000, 1), (44100, 16000, 2), (16000, 16000, 2)])
def test_streamed_blocks_join_to_the_one_shot_read(tmp_path, file_sr, sr, channels):
    import soundfile as sf
    import soxr

    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal((int(2.3 * file_sr), channels))).astype(np.float32)
    path = tmp_path / "a.wav"
    sf.write(path, audio, file_sr, subtype="FLOAT")
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1, dtype=np.float64).astype(np.float32) if channels > 1 else data[:, 0]
    one_shot = mono if file_sr == sr else soxr.resample(mono, file_sr, sr, quality="HQ")
    blocks = list(stream_audio(path, sr=sr, block_s=0.37))
    assert len(blocks) > 5 and np.array_equal(np.concatenate(blocks), one_shot)
    assert np.array_equal(load_audio(path, sr=sr), one_shot)


def test_every_bad_file_is_an_audio_error_naming_it(tmp_path):
    for name, (path, phrase) in bad_files(tmp_path).items():
        with pytest.raises(AudioError, match=phrase) as info:
            load_audio(path, sr=8000)
        assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)

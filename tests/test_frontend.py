"""The numpy frontend against independent computations: TensorFlow (what DeepSpectrumLite runs),
matplotlib (the colour maps) and the physics of simple signals."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dslite_tiny.audio.frontend import (Frontend, apply_colormap, chunk_audio, colormap_lut, mel_matrix,
                                        minmax_scale, peak_normalize, resize_matrix, stft_power)
from dslite_tiny.config import FrontendConfig, load_config
from dslite_reference import dslite_images

tf = pytest.importorskip("tensorflow")
PRESETS = ("dslite-code", "dslite-paper", "mcu-64")


def preset(name: str, **overrides) -> FrontendConfig:
    return load_config(FrontendConfig, name, ("test", overrides), stage="frontend")


def sweep(config: FrontendConfig, n: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(config.chunk_length) / config.sr
    up = 0.3 * np.sin(2 * np.pi * (200 + 0.2 * config.sr * t / t[-1]) * t)
    return (up + 0.02 * rng.standard_normal((n, t.size))).astype(np.float32)


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [
    (16000, 2048, 128, 0.0, 8000.0), (16000, 512, 128, 0.0, 8000.0), (16000, 512, 64, 0.0, 8000.0),
    (8000, 256, 64, 20.0, 4000.0), (44100, 1024, 40, 50.0, 14000.0), (22050, 2048, 128, 0.0, 11025.0)])
def test_mel_matrix_equals_tensorflow(sr, n_fft, n_mels, fmin, fmax):
    ours = mel_matrix(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    theirs = tf.signal.linear_to_mel_weight_matrix(n_mels, n_fft // 2 + 1, sr, fmin, fmax).numpy()
    assert ours.shape == theirs.shape
    assert np.max(np.abs(ours - theirs)) <= 1e-6


@pytest.mark.parametrize("name", PRESETS)
def test_stft_power_equals_tensorflow(name):
    c = preset(name)
    chunks = sweep(c)
    ours = stft_power(chunks, n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length)
    theirs = tf.abs(tf.signal.stft(chunks, c.win_length, c.hop_length, c.n_fft)).numpy() ** 2
    assert ours.shape == theirs.shape == (2, c.n_frames, c.n_fft // 2 + 1)
    assert np.max(np.abs(ours - theirs)) / np.max(theirs) <= 1e-4


def test_mfcc_plot_equals_tensorflows_mfccs():
    """kws-mfcc-10x49's plot is min-max scaled tf.signal.mfccs_from_log_mel_spectrograms of the same mel power
    (natural log there, dB here: a factor 10 / ln 10 that min-max removes), coefficient 0 in the bottom row."""
    config = preset("kws-mfcc-10x49", top_db=None)
    frontend = Frontend(config)
    chunks = sweep(config, n=3)
    mel_db = frontend.spectrogram(chunks)
    power = stft_power(chunks, n_fft=config.n_fft, win_length=config.win_length, hop_length=config.hop_length)
    log_mel = np.log(np.maximum(power @ frontend.mel_weights, 1e-16))
    theirs = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :config.n_mfcc].numpy()
    np.testing.assert_allclose(mel_db @ frontend.dct, theirs * 10 / np.log(10), rtol=1e-4, atol=1e-3)
    plot = frontend.plot(mel_db)[..., 0]  # (n, 10 coefficients, 49 frames)
    expected = 255 * minmax_scale(theirs).transpose(0, 2, 1)[:, ::-1]
    assert plot.shape == (3, *config.image_shape[:2])
    assert np.max(np.abs(plot - expected)) <= 1e-3


@pytest.mark.parametrize("name", ["viridis", "cividis", "inferno", "magma", "plasma"])
def test_colormap_lut_is_matplotlibs_at_the_nodes(name):
    import matplotlib

    lut = colormap_lut(name)
    nodes = np.arange(256) / 255.0
    assert lut.shape == (256, 3)
    np.testing.assert_allclose(lut, np.asarray(matplotlib.colormaps[name].colors)[:, :3], atol=1e-7)
    np.testing.assert_allclose(apply_colormap(nodes[None, :], lut)[0].T, lut, atol=1e-6)
    halfway = (np.arange(255) + 0.5) / 255.0
    np.testing.assert_allclose(apply_colormap(halfway[None, :], lut)[0].T, (lut[:-1] + lut[1:]) / 2, atol=1e-6)


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("in_size,out_size", [(61, 224), (128, 224), (300, 96), (500, 64), (224, 224)])
def test_resize_weights_equal_tf_image_resize(method, antialias, in_size, out_size):
    image = np.random.default_rng(3).random((1, in_size, 5, 1)).astype(np.float32)
    theirs = tf.image.resize(image, (out_size, 5), method=method, antialias=antialias).numpy()[0, :, :, 0]
    ours = resize_matrix(in_size, out_size, method=method, antialias=antialias) @ image[0, :, :, 0]
    assert np.max(np.abs(ours - theirs)) <= 1e-5


@pytest.mark.parametrize("name,overrides", [
    ("dslite-code", {}), ("dslite-paper", {}), ("dslite-code", {"resize": "bilinear", "color_map": "magma"}),
    ("dslite-paper", {"normalization": "caffe", "color_map": "plasma"}),
    ("dslite-paper", {"normalization": "tf", "normalize_audio": True, "image_height": 96, "image_width": 64,
                      "antialias": True, "color_map": "cividis"}),
    ("mcu-64", {"channels": 3, "color_map": "inferno", "normalization": "none"}),
])
def test_whole_pipeline_equals_deepspectrumlite_in_tensorflow(name, overrides):
    config = preset(name, **overrides)
    chunks = sweep(config)
    frontend = Frontend(config)
    ours = frontend.model_input(frontend.spectrogram(chunks))
    theirs = dslite_images(chunks, config)
    assert ours.shape == theirs.shape == (2, *config.image_shape)
    assert np.max(np.abs(ours - theirs)) <= 1e-5 * (theirs.max() - theirs.min())


def test_gray_single_channel_plot_is_the_scaled_spectrogram():
    config = preset("mcu-64")
    frontend = Frontend(config)
    plot = frontend.plot(frontend.spectrogram(sweep(config)))
    assert plot.shape == (2, 64, 64, 1)
    assert plot.min() >= 0 and plot.max() <= 255 and plot.max() > 250
    np.testing.assert_allclose(frontend.model_input(frontend.spectrogram(sweep(config))), plot / 127.5 - 1, atol=1e-5)


def test_rising_chirp_rises_in_the_image():
    """Rows are mel bins with the highest frequency on top; columns are time."""
    config = preset("dslite-paper", chunk_s=1.0)
    t = np.arange(config.chunk_length) / config.sr
    chirp = np.sin(2 * np.pi * (300 * t + 0.5 * 5000 * t ** 2)).astype(np.float32)  # 300 Hz → 5.3 kHz
    frontend = Frontend(config)
    plot = frontend.plot(frontend.spectrogram(chirp[None]))[0].mean(axis=-1)
    brightest_row = plot[:, 10:-10].argmax(axis=0)
    assert brightest_row[0] > brightest_row[-1] + 50  # starts low (big row index), ends high
    assert np.all(np.diff(brightest_row.astype(int)) <= 2)


def test_silent_chunk_gives_zeros_not_nan():
    config = preset("dslite-code", normalize_audio=True)
    frontend = Frontend(config)
    mel = frontend.spectrogram(np.zeros((1, config.chunk_length), np.float32))
    assert np.all(mel == pytest.approx(-160.0))
    assert np.all(minmax_scale(mel) == 0.0)
    images = frontend.model_input(mel)
    assert np.isfinite(images).all()
    np.testing.assert_allclose(frontend.plot(mel)[0, 0, 0], colormap_lut("viridis")[0] * 255, rtol=1e-6)
    assert np.all(peak_normalize(np.zeros((2, 10), np.float32)) == 0)


def test_chunking_follows_dslite_and_pads_short_clips():
    y = np.arange(10, dtype=np.float32) + 1
    full = chunk_audio(y, chunk_length=4, hop_length=3)
    assert full.data.tolist() == [[1, 2, 3, 4], [4, 5, 6, 7], [7, 8, 9, 10]] and not full.padded
    tail = chunk_audio(y[:9], chunk_length=4, hop_length=3)  # DSLite drops the incomplete tail
    assert tail.data.shape == (2, 4)
    short = chunk_audio(y[:3], chunk_length=5, hop_length=2)
    assert short.padded and short.data.tolist() == [[1, 2, 3, 0, 0]]
    repeated = chunk_audio(y[:3], chunk_length=7, hop_length=2, pad_mode="repeat")
    assert repeated.data.tolist() == [[1, 2, 3, 1, 2, 3, 1]]
    dropped = chunk_audio(y[:3], chunk_length=5, hop_length=2, short_clips="drop")
    assert dropped.dropped and dropped.data.shape == (0, 5)


def test_short_clip_can_sit_in_the_centre_of_its_chunk():
    y = np.arange(1, 4, dtype=np.float32)
    assert chunk_audio(y, chunk_length=8, hop_length=2, position="center").data.tolist() == [[0, 0, 1, 2, 3, 0, 0, 0]]
    long = np.arange(10, dtype=np.float32)  # a clip of a chunk or more is chunked as always
    assert np.array_equal(chunk_audio(long, chunk_length=4, hop_length=3, position="center").data,
                          chunk_audio(long, chunk_length=4, hop_length=3).data)


def tone_in_silence(sr: int, *, before_s: float, tone_s: float, after_s: float, noise: float = 1e-4) -> np.ndarray:
    rng = np.random.default_rng(0)
    parts = [noise * rng.standard_normal(int(before_s * sr)),
             0.5 * np.sin(2 * np.pi * 440 * np.arange(int(tone_s * sr)) / sr),
             noise * rng.standard_normal(int(after_s * sr))]
    return np.concatenate(parts).astype(np.float32)


def test_trimming_cuts_the_silent_ends_to_the_frame():
    from dslite_tiny.audio.frontend import trim_silence

    sr, frame, hop = 8000, 256, 128
    y = tone_in_silence(sr, before_s=0.3, tone_s=0.2, after_s=0.5)
    trimmed = trim_silence(y, top_db=40.0, frame_length=frame, hop_length=hop)
    start = next(i for i in range(len(y)) if np.array_equal(y[i:i + 16], trimmed[:16]))
    assert 2400 - frame <= start <= 2400 and 1600 <= len(trimmed) <= 1600 + 2 * frame
    assert trim_silence(y, top_db=100.0, frame_length=frame, hop_length=hop).size == y.size  # noise is kept
    assert trim_silence(np.zeros(500, np.float32), top_db=40.0, frame_length=frame, hop_length=hop).size == 0
    assert trim_silence(y[:100], top_db=40.0, frame_length=frame, hop_length=hop).size <= 100


def test_trimmed_clip_is_centred_whatever_silence_surrounds_it():
    config = preset("mcu-64", chunk_s=1.0, chunk_hop_s=0.5, sr=8000, fmax=4000.0, trim_db=40.0,
                    clip_position="center")
    frontend = Frontend(config)
    early = frontend.spectrogram(frontend.chunk(tone_in_silence(8000, before_s=0.05, tone_s=0.2, after_s=0.6)).data)
    late = frontend.spectrogram(frontend.chunk(tone_in_silence(8000, before_s=0.6, tone_s=0.2, after_s=0.05)).data)
    loud = [np.flatnonzero(m.max(axis=1) > m.max() - 20) for m in (early[0], late[0])]
    for frames in loud:  # the tone's frames sit around the middle frame of the chunk
        assert abs((frames[0] + frames[-1]) / 2 - (config.n_frames - 1) / 2) <= 2
    assert abs(len(loud[0]) - len(loud[1])) <= 1
    assert Frontend(preset("mcu-64", trim_db=40.0)).spectrogram_key != Frontend(preset("mcu-64")).spectrogram_key
    # At their defaults the two keys stay out of the cache key: caches written before they existed stay valid.
    assert Frontend(preset("dslite-code")).spectrogram_key == "0606c93949116f18"


@pytest.mark.parametrize("name,frames", [("dslite-code", 61), ("dslite-paper", 186), ("mcu-64", 61), ("kws-40x49", 49),
                                         ("kws-40x98", 98), ("kws-mfcc-10x49", 49)])
def test_presets_shapes(name, frames):
    config = preset(name)
    frontend = Frontend(config)
    assert config.n_frames == frames
    images = frontend(np.random.default_rng(0).standard_normal(int(config.chunk_s * config.sr * 2)).astype(np.float32))
    assert images.shape[1:] == config.image_shape and images.dtype == np.float32


@settings(max_examples=25, deadline=None)
@given(length=st.integers(1, 6000), chunk=st.integers(64, 2000), hop=st.integers(1, 2000),
       scale=st.floats(0.0, 10.0))
def test_chunks_and_images_are_always_well_formed(length, chunk, hop, scale):
    y = (scale * np.random.default_rng(length).standard_normal(length)).astype(np.float32)
    chunks = chunk_audio(y, chunk_length=chunk, hop_length=hop)
    expected = 1 if length < chunk else 1 + (length - chunk) // hop
    assert chunks.data.shape == (expected, chunk)
    scaled = minmax_scale(chunks.data)
    assert np.isfinite(scaled).all() and scaled.min() >= 0 and scaled.max() <= 1


def test_top_db_floors_each_chunk_below_its_maximum():
    from dslite_tiny.audio.frontend import power_to_db

    power = np.array([[[1.0, 1e-3, 0.0]], [[1e-4, 1e-6, 0.0]]], np.float32)
    np.testing.assert_allclose(power_to_db(power), [[[0, -30, -160]], [[-40, -60, -160]]], atol=1e-4)
    np.testing.assert_allclose(power_to_db(power, top_db=50.0), [[[0, -30, -50]], [[-40, -60, -90]]], atol=1e-4)
    padded = preset("mcu-64", top_db=80.0)
    y = np.zeros(padded.chunk_length, np.float32)
    y[:2000] = np.sin(np.arange(2000) * 0.3)
    mel = Frontend(padded).spectrogram(y[None])
    assert mel.min() == pytest.approx(mel.max() - 80.0, abs=1e-3)
    assert Frontend(padded).spectrogram_key != Frontend(preset("mcu-64")).spectrogram_key


def test_float_audio_far_beyond_full_scale_is_loud_not_silent():
    frontend = Frontend(load_config(FrontendConfig, "dslite-code", stage="frontend"))
    t = np.arange(frontend.config.chunk_length) / frontend.config.sr
    chunk = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size))
    chunk = chunk.astype(np.float32)
    both = frontend.spectrogram(np.stack([chunk, chunk * np.float32(2e30)]))  # float32 power would overflow
    quiet = frontend.spectrogram(chunk[None])[0]
    assert np.array_equal(both[0], quiet)  # a normal chunk beside a loud one is computed as always
    assert np.isfinite(both[1]).all()
    np.testing.assert_allclose(both[1] - quiet, 20 * np.log10(2e30), atol=0.01)
    np.testing.assert_allclose(frontend.plot(both[1:]), frontend.plot(quiet[None]), atol=0.01)


@pytest.mark.parametrize("overrides", [{}, {"chunk_hop_s": 1.5}, {"short_clips": "drop"}, {"pad_mode": "repeat"},
                                       {"trim_db": 30.0, "clip_position": "center"}])
@pytest.mark.parametrize("seconds", [0.3, 1.0, 7.3])
def test_streamed_chunks_equal_the_chunks_of_the_whole(overrides, seconds):
    frontend = Frontend(preset("mcu-64", **{"chunk_s": 1.0, "chunk_hop_s": 0.5, **overrides}))
    audio = np.random.default_rng(0).standard_normal(int(seconds * frontend.config.sr)).astype(np.float32)
    whole = frontend.chunk(audio)
    for block in (1000, 4097, 50000):
        parts = list(frontend.stream_chunks((audio[i:i + block] for i in range(0, audio.size, block)), batch=5))
        assert np.array_equal(np.concatenate([p.data for p in parts]), whole.data)
        assert any(p.padded for p in parts) == whole.padded and any(p.dropped for p in parts) == whole.dropped

"""DeepSpectrumLite 1.0.2's spectrogram-plot pipeline written again in TensorFlow, as its
``DataPipeline.generate_spectrogram`` does it: an independent reference for the numpy frontend."""
from __future__ import annotations

import numpy as np

import dslite_tiny  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from dslite_tiny.audio.frontend import colormap_lut
from dslite_tiny.config import FrontendConfig

_PREPROCESS_MODULE = {"torch": "densenet", "tf": "mobilenet", "caffe": "resnet50"}


def dslite_images(chunks: np.ndarray, config: FrontendConfig) -> np.ndarray:
    import tensorflow as tf

    c = config
    audio = tf.constant(chunks, tf.float32)
    if c.normalize_audio:
        audio = audio * (0.7079 / tf.reduce_max(tf.abs(audio), axis=-1, keepdims=True))
    stfts = tf.signal.stft(audio, frame_length=c.win_length, frame_step=c.hop_length, fft_length=c.n_fft)
    spectrograms = tf.abs(stfts) ** 2
    mel_matrix = tf.signal.linear_to_mel_weight_matrix(c.n_mels, stfts.shape[-1], c.sr, c.fmin, c.fmax)
    mel = tf.tensordot(spectrograms, mel_matrix, 1)
    log_spec = 10.0 * tf.math.log(tf.maximum(1e-16, mel)) / tf.math.log(10.0)
    log_spec -= 10.0 * tf.math.log(tf.maximum(1e-16, 1.0)) / tf.math.log(10.0)
    image = _create_map_from_array(log_spec, c)
    image = tf.image.resize(image, (c.image_width, c.image_height), method=c.resize, antialias=c.antialias)
    image = tf.clip_by_value(image * 255.0, 0.0, 255.0)
    image = tf.image.rot90(image, k=1)
    if c.normalization != "none":
        module = getattr(tf.keras.applications, _PREPROCESS_MODULE[c.normalization])
        image = module.preprocess_input(image)
    return image.numpy()


def _create_map_from_array(v, c: FrontendConfig):
    import tensorflow as tf

    v = tf.repeat(tf.expand_dims(v, 3), 3, axis=3)
    low = tf.reduce_min(v, axis=(1, 2, 3), keepdims=True)
    high = tf.reduce_max(v, axis=(1, 2, 3), keepdims=True)
    scaled = (v - low) / (high - low)
    if c.color_map == "gray":
        return scaled[..., : c.channels]
    color_map = tf.constant(colormap_lut(c.color_map))
    n = color_map.shape[0]
    index_float = (n - 1) * scaled
    index = tf.math.floor(index_float)
    index2 = tf.where(index >= n - 1, float(n - 1), index + 1.0)
    frac = index_float - index
    channels = []
    for k in range(3):
        lut = color_map[:, k]
        lo = tf.gather(lut, tf.cast(tf.clip_by_value(index, 0, n - 1), tf.int32))
        hi = tf.gather(lut, tf.cast(index2, tf.int32))
        channels.append(((1.0 - frac) * lo + frac * hi)[..., k])
    return tf.stack(channels, axis=-1)

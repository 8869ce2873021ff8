"""The DeepSpectrumLite 1.0.2 frontend in numpy, vectorised over batches of chunks.

audio → chunks → STFT power (periodic Hann, no centring, ``pad_end=False``: tf.signal.stft) → HTK mel
(tf.signal.linear_to_mel_weight_matrix) → dB (10·log10(max(1e-16, S)), ref 1, no top_db) → per-chunk
min-max → colour map (256-entry matplotlib LUT, linear interpolation) → resize (tf.image.resize semantics)
→ rows = mel bins with the highest on top, columns = time → [0, 255] → backbone normalisation.

It is split in two stages so that the expensive, dataset-wide part can be cached and the image part can
change (colour map, size, normalisation) without recomputing it:

* ``Frontend.spectrogram``: chunks → mel dB, shape (n, frames, n_mels); cached per file by
  ``dslite_tiny.data.cache`` under ``Frontend.spectrogram_key``.
* ``Frontend.plot`` / ``Frontend.model_input``: mel dB → images, shape (n, H, W, C).

With ``n_mfcc`` the plot shows each frame's first MFCCs (the DCT-II of its mel dB, as
tf.signal.mfccs_from_log_mel_spectrograms on natural-log mel, up to the factor 10 / ln 10 that min-max
removes) instead of its mel bands: MLPerf Tiny's keyword-spotting input. The DCT is part of the plot stage,
so the cached mel dB (and the augmentations on it) serve both.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from functools import lru_cache

import numpy as np

from dslite_tiny.config import FrontendConfig

# Bump when a change alters spectrogram values, so stale caches are not reused.
SPECTROGRAM_VERSION = 1
# The config keys that shape the spectrogram stage (and so the cache key); the rest only shape the image.
# Keys added later join the cache key only away from their default, so existing caches stay valid.
_LATER_KEYS = {"trim_db": None, "clip_position": "start"}
SPECTROGRAM_KEYS = ("sr", "normalize_audio", "chunk_s", "chunk_hop_s", "short_clips", "pad_mode",
                    *_LATER_KEYS, "window_s", "hop_s", "fft_s", "n_mels", "fmin", "fmax", "top_db")
DB_AMIN = 1e-16
# A chunk louder than this could overflow float32 power (|STFT| ≤ peak · window length / 2): it is scaled
# by an exact power of two first and its dB computed in float64, so 1e30 is as loud as it says, not silence.
LOUD_PEAK = 2.0 ** 32
PEAK_LEVEL = 0.7079  # DSLite's normalize_audio target (-3 dBFS)
IMAGENET_MEAN_RGB = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD_RGB = np.array([0.229, 0.224, 0.225], np.float32)
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
_BATCH = 64  # chunks per vectorised STFT step: bounds memory (a 4 s chunk's STFT is ~0.5 MB)
_IMAGE_BATCH = 4  # chunks per image step: four 224×224×3 images stay in cache; 64 at once ran 1.3× slower


@lru_cache(maxsize=1)
def _blas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """The frontend's matrix products are small: BLAS threads cost more than they give, and on a busy
    machine (training, a device run) they wait for cores: a 4 s chunk took 49 ms instead of 4 ms."""
    return _blas().limit(limits=1, user_api="blas")


@dataclasses.dataclass(frozen=True)
class Chunks:
    """A clip cut into equal chunks; ``padded``/``dropped`` say what happened to a short clip."""

    data: np.ndarray  # (n, chunk_length) float32
    padded: bool = False
    dropped: bool = False


def chunk_audio(y: np.ndarray, *, chunk_length: int, hop_length: int, short_clips: str = "pad",
                pad_mode: str = "zeros", position: str = "start") -> Chunks:
    """Chunks at 0, hop, 2·hop, … that fit entirely (DSLite drops the tail); a short clip is padded (placed
    at the start or the centre of the chunk) or dropped."""
    y = np.asarray(y, dtype=np.float32)
    if y.shape[0] < chunk_length:
        if short_clips == "drop":
            return Chunks(np.zeros((0, chunk_length), np.float32), dropped=True)
        if pad_mode == "repeat":
            padded = np.resize(y, chunk_length) if y.size else np.zeros(chunk_length, np.float32)
        else:
            before = (chunk_length - y.shape[0]) // 2 if position == "center" else 0
            padded = np.pad(y, (before, chunk_length - y.shape[0] - before))
        return Chunks(padded[None, :].astype(np.float32), padded=True)
    starts = np.arange(0, y.shape[0] - chunk_length + 1, hop_length)
    windows = np.lib.stride_tricks.sliding_window_view(y, chunk_length)[starts]
    return Chunks(np.ascontiguousarray(windows))


def trim_silence(y: np.ndarray, *, top_db: float, frame_length: int, hop_length: int) -> np.ndarray:
    """``y`` without its leading and trailing frames quieter than the loudest frame − ``top_db`` (frame RMS
    in dB; frames at 0, hop, … as the STFT's, the last one zero-padded): librosa.effects.trim without
    centring. Spoken words of 0.2–2 s then fill a chunk alike, whatever the silence around them."""
    y = np.asarray(y, dtype=np.float32)
    if y.size == 0:
        return y
    count = 1 + max(0, -(-(y.shape[0] - frame_length) // hop_length))
    padded = np.pad(y, (0, max(0, (count - 1) * hop_length + frame_length - y.shape[0])))
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length][:count]
    power = np.mean(frames.astype(np.float64) ** 2, axis=-1)
    if not power.max() > 0:
        return y[:0]
    loud = np.flatnonzero(10.0 * np.log10(np.maximum(power, 1e-30) / power.max()) > -top_db)
    return y[loud[0] * hop_length:min(y.shape[0], loud[-1] * hop_length + frame_length)]


def peak_normalize(chunks: np.ndarray) -> np.ndarray:
    """x · 0.7079 / max|x| per chunk, as DSLite; a silent chunk stays silent instead of becoming NaN."""
    peak = np.abs(chunks).max(axis=-1, keepdims=True)
    return np.where(peak > 0, chunks * (PEAK_LEVEL / np.where(peak > 0, peak, 1.0)), 0.0).astype(np.float32)


@lru_cache(maxsize=16)
def hann_window(length: int) -> np.ndarray:
    """Periodic Hann (tf.signal.hann_window(periodic=True)): the DFT-even window of STFT analysis."""
    n = np.arange(length, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)).astype(np.float32)


def stft_power(chunks: np.ndarray, *, n_fft: int, win_length: int, hop_length: int) -> np.ndarray:
    """|STFT|² with tf.signal.stft framing: frames at 0, hop, … fully inside the chunk, zero-padded to n_fft."""
    from scipy import fft

    frames = np.lib.stride_tricks.sliding_window_view(chunks, win_length, axis=-1)[..., ::hop_length, :]
    spectrum = fft.rfft(frames * hann_window(win_length), n=n_fft, axis=-1, workers=1)
    return (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale as TensorFlow computes it in float32: 1127 · ln(1 + f / 700)."""
    hz = np.atleast_1d(np.asarray(hz, dtype=np.float32))
    return (np.float32(1127.0) * _tf_log32(np.float32(1.0) + hz / np.float32(700.0))).astype(np.float32)


@lru_cache(maxsize=16)
def mel_matrix(*, sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular HTK filterbank equal to tf.signal.linear_to_mel_weight_matrix.

    Computed in float32 with TensorFlow's operation order and logarithm: in float64 the table differs from
    TensorFlow's by up to 2e-5, and DeepSpectrumLite models were trained on TensorFlow's table.
    """
    freqs = _tf_linspace32(0.0, np.float32(sr) / np.float32(2.0), n_fft // 2 + 1)[1:]  # no DC weight (HTK)
    bins_mel = hz_to_mel(freqs)[:, None]
    edges = mel_band_edges(n_mels=n_mels, fmin=fmin, fmax=fmax)
    lower, center, upper = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]
    weights = np.maximum(np.float32(0.0), np.minimum((bins_mel - lower) / (center - lower),
                                                     (upper - bins_mel) / (upper - center)))
    return np.vstack([np.zeros((1, n_mels), np.float32), weights]).astype(np.float32)


def mel_band_edges(*, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """The n_mels + 2 band edges on the HTK mel scale, in float32 exactly as the filterbank uses them
    (exported to firmware so a C frontend builds the same triangles)."""
    return _tf_linspace32(hz_to_mel(fmin)[0], hz_to_mel(fmax)[0], n_mels + 2)


def _tf_linspace32(start: float, stop: float, num: int) -> np.ndarray:
    """tf.linspace in float32: start + delta · i for the inner points, the end points exact."""
    start, stop = np.float32(start), np.float32(stop)
    delta = (stop - start) / np.float32(max(num - 1, 1))
    inner = start + delta * np.arange(1, num - 1, dtype=np.float32)
    return np.concatenate([[start], inner, [stop]]).astype(np.float32)[:num]


_LOG_ALPHA = np.array([0.18256296349849254, 1.0000000190281063, 1.0000000190281136], np.float32)
_LOG_BETA = np.array([0.049616247954120038, 0.59923249590823520, 1.4999999999999927, 1.0], np.float32)
_PACKET = 8  # float32 lanes of TensorFlow's AVX build


def _tf_log32(x: np.ndarray) -> np.ndarray:
    """TensorFlow's float32 natural log, bit for bit: Eigen's rational plog on full 8-lane packets (no FMA),
    the correctly rounded scalar log on the remainder. numpy's float32 log differs from it by 1–2 ulp."""
    x = np.asarray(x, np.float32).ravel()
    n = x.size - x.size % _PACKET
    out = np.empty_like(x)
    mantissa, exponent = np.frexp(x[:n])
    m, e = mantissa.astype(np.float32), exponent.astype(np.float32)
    small = m < np.float32(0.707106781186547524)
    m, e = (m - np.float32(1.0)) + np.where(small, m, np.float32(0.0)), e - small.astype(np.float32)
    p, q = _polevl32(m, _LOG_ALPHA) * m, _polevl32(m, _LOG_BETA)
    out[:n] = e * np.float32(0.693147180559945309) + p / q
    out[n:] = [np.float32(math.log(float(v))) for v in x[n:]]
    return out


def _polevl32(x: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    result = np.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        result = result * x + c
    return result


def power_to_db(power: np.ndarray, *, top_db: float | None = None) -> np.ndarray:
    """10 · log10(max(1e-16, S)) relative to 1.0, as DSLite's power_to_db(top_db=None); with ``top_db``,
    each chunk is floored at its maximum − top_db (librosa's convention, per chunk)."""
    db = (10.0 * np.log10(np.maximum(power, power.dtype.type(DB_AMIN)))).astype(np.float32)
    if top_db is not None:
        floor = db.max(axis=tuple(range(1, db.ndim)), keepdims=True) - np.float32(top_db)
        db = np.maximum(db, floor)
    return db


def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """(n_mels, n_mfcc) float32: a frame's mel dB times it gives its MFCCs, tf.signal.mfccs_from_log_mel_
    spectrograms' DCT-II (√(2/N) cos(πk(2n+1)/2N) for every k, its first coefficient included), on dB."""
    n, k = np.arange(n_mels, dtype=np.float64), np.arange(n_mfcc, dtype=np.float64)
    return (np.sqrt(2.0 / n_mels) * np.cos(np.pi * np.outer(2 * n + 1, k) / (2 * n_mels))).astype(np.float32)


def minmax_scale(x: np.ndarray) -> np.ndarray:
    """Each chunk to [0, 1] over all its values; a constant (silent) chunk gives zeros, never NaN."""
    axes = tuple(range(1, x.ndim))
    low = x.min(axis=axes, keepdims=True)
    span = x.max(axis=axes, keepdims=True) - low
    return np.where(span > 0, (x - low) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


@lru_cache(maxsize=8)
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) RGB table of a matplotlib colour map, read from matplotlib (not pasted)."""
    import matplotlib

    cmap = matplotlib.colormaps[name]
    if cmap.N != 256:
        cmap = cmap.resampled(256)
    return np.asarray(cmap(np.arange(256))[:, :3], dtype=np.float32)


def apply_colormap(x: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Values in [0, 1] → RGB by linear interpolation between the LUT's 256 nodes (DSLite
    create_map_from_array). ``x`` is (n, ...); the result is (n, 3, ...): channel-first for the resize."""
    top = lut.shape[0] - 1
    position = np.clip(x, 0.0, 1.0) * np.float32(top)
    lower = np.minimum(position.astype(np.int32), top - 1)
    frac = position - lower
    out = np.empty((x.shape[0], lut.shape[1], *x.shape[1:]), np.float32)
    for channel in range(lut.shape[1]):
        nodes = lut[:, channel]
        out[:, channel] = nodes[lower] + frac * np.diff(nodes)[lower]
    return out


@lru_cache(maxsize=32)
def resize_matrix(in_size: int, out_size: int, *, method: str, antialias: bool) -> np.ndarray:
    """(out_size, in_size) weights reproducing tf.image.resize along one axis (half-pixel centres)."""
    weights = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    scale = np.float32(in_size) / np.float32(out_size)
    centres = (rows.astype(np.float32) + np.float32(0.5)) * scale
    if method == "nearest":
        weights[rows, np.clip(np.floor(centres).astype(np.int64), 0, in_size - 1)] = 1.0
    elif antialias and in_size > out_size:
        _triangle_weights(weights, centres.astype(np.float64), in_size, kernel_scale=float(scale))
    else:
        position = centres - np.float32(0.5)
        floor = np.floor(position)
        lerp = (position - floor).astype(np.float32)
        low = np.maximum(floor.astype(np.int64), 0)
        high = np.minimum(np.ceil(position).astype(np.int64), in_size - 1)
        np.add.at(weights, (rows, low), 1.0 - lerp)
        np.add.at(weights, (rows, high), lerp)
    return weights


def _triangle_weights(weights: np.ndarray, centres: np.ndarray, in_size: int, *, kernel_scale: float) -> None:
    """tf.image.resize(antialias=True): a triangle kernel widened by the shrink factor, renormalised at edges."""
    sources = np.arange(in_size) + 0.5
    for row, centre in enumerate(centres):
        w = np.maximum(0.0, 1.0 - np.abs((sources - centre) / kernel_scale))
        weights[row] = w / w.sum() if w.sum() > 0 else 0.0


def resize_taps(in_size: int, out_size: int, *, method: str, antialias: bool) -> tuple[np.ndarray, np.ndarray]:
    """The non-zero entries of ``resize_matrix`` as (out, K) indices and weights: bilinear touches 2 inputs
    per output, so applying taps costs a few passes over the image where a dense product costs ~70 MFLOP."""
    weights = resize_matrix(in_size, out_size, method=method, antialias=antialias)
    k = max(1, int((weights != 0).sum(axis=1).max()))
    index = np.argsort(weights == 0, axis=1, kind="stable")[:, :k]
    return index, np.take_along_axis(weights, index, axis=1)


def apply_taps(x: np.ndarray, taps: tuple[np.ndarray, np.ndarray], *, axis: int) -> np.ndarray:
    """Resize ``x`` along ``axis`` with (indices, weights) from ``resize_taps``."""
    index, weights = taps
    shape = [1] * x.ndim
    shape[axis] = -1
    out = np.take(x, index[:, 0], axis=axis) * weights[:, 0].reshape(shape)
    for k in range(1, index.shape[1]):
        out += np.take(x, index[:, k], axis=axis) * weights[:, k].reshape(shape)
    return out


def normalize_image(images: np.ndarray, mode: str) -> np.ndarray:
    """[0, 255] RGB → backbone input, as keras.applications.imagenet_utils.preprocess_input(mode)."""
    if mode == "tf":
        return images / np.float32(127.5) - np.float32(1.0)
    if mode == "torch":
        return (images / np.float32(255.0) - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB
    if mode == "caffe":
        return images[..., ::-1] - CAFFE_MEAN_BGR
    return images


class Frontend:
    """The configured pipeline; tables (window, mel filterbank, LUT, resize weights) are built once."""

    def __init__(self, config: FrontendConfig) -> None:
        self.config = config
        c = config
        self.mel_weights = mel_matrix(sr=c.sr, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax)
        self.lut = None if c.color_map == "gray" else colormap_lut(c.color_map)
        # DSLite resizes (time, mel) and then rotates by 90°: the mel rows are flipped after resizing.
        self.dct = None if c.n_mfcc is None else dct_matrix(c.n_mels, c.n_mfcc)
        mel_index, mel_weights = resize_taps(c.feature_bins, c.image_height, method=c.resize, antialias=c.antialias)
        self.mel_taps = (mel_index[::-1].copy(), mel_weights[::-1].copy())
        self.time_taps = resize_taps(c.n_frames, c.image_width, method=c.resize, antialias=c.antialias)

    @property
    def spectrogram_key(self) -> str:
        """Hash of everything that shapes ``spectrogram`` output (the feature-cache namespace)."""
        params = {k: getattr(self.config, k) for k in SPECTROGRAM_KEYS
                  if k not in _LATER_KEYS or getattr(self.config, k) != _LATER_KEYS[k]}
        params["version"] = SPECTROGRAM_VERSION
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]

    def chunk(self, y: np.ndarray) -> Chunks:
        """A whole clip → its chunks, after trimming its silent ends if the config says so."""
        c = self.config
        if c.trim_db is not None:
            y = trim_silence(y, top_db=c.trim_db, frame_length=c.win_length, hop_length=c.hop_length)
        return chunk_audio(y, chunk_length=c.chunk_length, hop_length=c.chunk_hop_length,
                           short_clips=c.short_clips, pad_mode=c.pad_mode, position=c.clip_position)

    def stream_chunks(self, blocks: Iterable[np.ndarray], *, batch: int = _BATCH) -> Iterator[Chunks]:
        """``chunk`` over audio arriving in blocks (``io.stream_audio``): batches of at most ``batch``
        chunks that join to ``chunk`` of the whole audio, while holding at most a chunk and a block.
        Trimming needs the loudest frame of the whole clip, so with ``trim_db`` the clip is read whole."""
        if self.config.trim_db is not None:
            chunks = self.chunk(np.concatenate([np.zeros(0, np.float32), *blocks]))
            for start in range(0, max(1, len(chunks.data)), batch):
                yield dataclasses.replace(chunks, data=chunks.data[start:start + batch])
            return
        length, hop = self.config.chunk_length, self.config.chunk_hop_length
        pending, offset, start, ready = np.zeros(0, np.float32), 0, 0, []
        for block in blocks:
            pending = np.concatenate([pending, block])
            while start + length <= offset + len(pending):
                ready.append(pending[start - offset:start - offset + length])
                start += hop
                if len(ready) == batch:
                    yield Chunks(np.stack(ready))
                    ready = []
            keep_from = min(start - offset, len(pending))
            pending, offset = pending[keep_from:], offset + keep_from
        if ready:
            yield Chunks(np.stack(ready))
        elif start == 0:  # shorter than one chunk: padded or dropped as ``chunk`` does
            yield self.chunk(pending)

    def spectrogram(self, chunks: np.ndarray) -> np.ndarray:
        """(n, chunk_length) audio → (n, frames, n_mels) mel power in dB."""
        c = self.config
        out = np.empty((chunks.shape[0], c.n_frames, c.n_mels), np.float32)
        with one_blas_thread():
            self._spectrogram_into(chunks, out)
        return out

    def _spectrogram_into(self, chunks: np.ndarray, out: np.ndarray) -> None:
        c = self.config
        for start in range(0, chunks.shape[0], _BATCH):
            batch = chunks[start:start + _BATCH]
            if c.normalize_audio:
                batch = peak_normalize(batch)
            loud = np.abs(batch).max(axis=-1) > LOUD_PEAK
            if loud.any():
                out[start:start + _BATCH] = self._loud_mel_db(batch, loud)
            else:
                out[start:start + _BATCH] = power_to_db(self._mel_power(batch), top_db=c.top_db)

    def _mel_power(self, chunks: np.ndarray) -> np.ndarray:
        c = self.config
        return stft_power(chunks, n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length) @ self.mel_weights

    def _loud_mel_db(self, chunks: np.ndarray, loud: np.ndarray) -> np.ndarray:
        """Loud chunks scaled by 2^-k to a peak ≤ 1 (exact: the float32 arithmetic rounds the same), their
        power scaled back by 4^k in float64; the other chunks exactly as usual."""
        out = np.empty((chunks.shape[0], self.config.n_frames, self.config.n_mels), np.float32)
        if not loud.all():
            out[~loud] = power_to_db(self._mel_power(chunks[~loud]), top_db=self.config.top_db)
        exponent = np.ceil(np.log2(np.abs(chunks[loud]).max(axis=-1).astype(np.float64)))
        scaled = np.ldexp(chunks[loud], -exponent[:, None].astype(np.int32)).astype(np.float32)
        power = self._mel_power(scaled).astype(np.float64) * np.exp2(2.0 * exponent)[:, None, None]
        out[loud] = power_to_db(power, top_db=self.config.top_db)
        return out

    def plot(self, mel_db: np.ndarray) -> np.ndarray:
        """(n, frames, n_mels) dB → (n, H, W, C) spectrogram plot in [0, 255], highest frequency on top (with
        ``n_mfcc``: its MFCCs' plot, the first coefficient at the bottom)."""
        n = mel_db.shape[0]
        out = np.empty((n, *self.config.image_shape), np.float32)
        with one_blas_thread():
            for start in range(0, n, _IMAGE_BATCH):
                out[start:start + _IMAGE_BATCH] = self._plot_batch(mel_db[start:start + _IMAGE_BATCH])
        return out

    def model_input(self, mel_db: np.ndarray) -> np.ndarray:
        """(n, frames, n_mels) dB → (n, H, W, C) float32, normalised for the backbone."""
        return normalize_image(self.plot(mel_db), self.config.normalization)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """Mono audio at ``config.sr`` → model inputs of all its chunks."""
        return self.model_input(self.spectrogram(self.chunk(y).data))

    def _plot_batch(self, mel_db: np.ndarray) -> np.ndarray:
        # Channel-first planes with time as the last axis: the time resize runs on the small (mel, time)
        # grid and the mel resize copies whole rows, the cheapest order measured (see reports/benchmarks).
        features = mel_db if self.dct is None else mel_db @ self.dct  # (n, frames, mels or MFCCs)
        scaled = minmax_scale(features).transpose(0, 2, 1)  # (n, mels, frames)
        planes = scaled[:, None] if self.lut is None else apply_colormap(scaled, self.lut)  # (n, c, M, F)
        planes = apply_taps(apply_taps(planes, self.time_taps, axis=3), self.mel_taps, axis=2)  # (n, c, H, W)
        image = np.empty((planes.shape[0], *self.config.image_shape), np.float32)
        np.multiply(planes.transpose(0, 2, 3, 1), np.float32(255.0), out=image)  # broadcasts gray to 3
        return np.clip(image, 0.0, 255.0, out=image)

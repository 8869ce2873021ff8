"""Training augmentation in two places: on the mel spectrograms, before they become images, and on images.

Spectrograms (``MelAugmenter``): what audio augmentation does for a tiny dataset (time shift, gain,
additive noise, speed and pitch perturbation), done on the cached mel dB of each chunk, so that the feature
cache stays valid (it holds the clean spectrograms; every epoch draws new variations from the training
seed). The audio operations map onto the mel spectrogram closely: a shift by whole STFT hops moves whole
frames; a gain adds dB; independent noise adds power; resampling scales time and frequency together.

Images: SapAugment (Hu et al. 2020) driving CutMix (Yun et al. 2019) and SpecAugment (Park et al. 2019), as
DeepSpectrumLite applies them: per batch, samples are ranked by their current loss; the easiest get the
strongest augmentation (λ → 1), the hardest none (λ → 0). λ sets each augmentation's probability and size.
Sizes are fractions of the image side so they scale to any image size: the paper's CutMix squares of
0–56 px and SpecAugment masks of 0–67 px at 224 px are 0.25 and 0.30. Images are batches (n, H, W, C) in
the model's normalised space, where 0 is the ImageNet mean: masked areas are set to 0, as DSLite does.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from dslite_tiny.audio.frontend import DB_AMIN, hz_to_mel, mel_band_edges, mel_matrix, power_to_db, stft_power
from dslite_tiny.config import FrontendConfig, TrainConfig

QUIET_BELOW_DB = 30.0  # a frame this far below its chunk's loudest frame is background, not the sound
NOISE_BANK_FRAMES = 4096  # quiet training frames kept as the dataset's own noise


@dataclasses.dataclass(frozen=True)
class MelAugmentSettings:
    """Which spectrogram augmentations run, each on a chunk with ``probability``; 0 / False / None is off."""

    probability: float = 0.5
    time_shift: bool = False
    gain_db: float = 0.0
    noise_snr_db: tuple[float, float] | None = None
    speed: float = 0.0
    pitch_semitones: float = 0.0

    @classmethod
    def from_config(cls, config: TrainConfig) -> MelAugmentSettings:
        snr = tuple(config.noise_snr_db) if config.noise_snr_db else None
        return cls(config.audio_aug_prob, config.time_shift, config.gain_db, snr, config.speed_perturb,
                   config.pitch_shift)

    @property
    def enabled(self) -> bool:
        active = self.time_shift or self.gain_db or self.noise_snr_db or self.speed or self.pitch_semitones
        return bool(active) and self.probability > 0


class MelAugmenter:
    """Spectrogram augmentation for one training run: the frontend's band centres (for frequency warps)
    and a noise bank (white and pink noise through the frontend's own STFT and filterbank, plus the quiet
    frames of the training chunks: the recordings' own background) are built once."""

    def __init__(self, settings: MelAugmentSettings, frontend: FrontendConfig, train_mel_db: np.ndarray,
                 *, rng: np.random.Generator) -> None:
        self.settings, self.frontend = settings, frontend
        edges = mel_band_edges(n_mels=frontend.n_mels, fmin=frontend.fmin, fmax=frontend.fmax)
        self.centres_mel = edges[1:-1].astype(np.float64)
        self.centres_hz = 700.0 * np.expm1(self.centres_mel / 1127.0)
        self.noise = noise_bank(frontend, train_mel_db, rng=rng) if settings.noise_snr_db else []

    def __call__(self, mel_db: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augmented copies of ``mel_db`` (n, frames, n_mels); every draw comes from ``rng``."""
        s = self.settings
        out = mel_db.copy()
        for j in range(out.shape[0]):
            chunk = out[j]
            if s.time_shift and rng.random() < s.probability:  # first: noise would fill the silent edges
                chunk = shift_in_silence(chunk, rng)
            if s.speed and rng.random() < s.probability:
                factor = 1.0 + rng.uniform(-s.speed, s.speed)
                chunk = self.warp_frequency(stretch_time(chunk, factor), factor)
            if s.pitch_semitones and rng.random() < s.probability:
                chunk = self.warp_frequency(chunk, 2.0 ** (rng.uniform(-s.pitch_semitones, s.pitch_semitones) / 12))
            if s.noise_snr_db and rng.random() < s.probability:
                chunk = self.add_noise(chunk, rng.uniform(*s.noise_snr_db), rng)
            if s.gain_db and rng.random() < s.probability:
                chunk = apply_gain(chunk, rng.uniform(-s.gain_db, s.gain_db))
            out[j] = chunk
        return out

    def warp_frequency(self, chunk: np.ndarray, factor: float) -> np.ndarray:
        """Every frequency × ``factor`` (a pitch shift): band b takes the dB its centre f_b had at f_b / factor,
        interpolated on the mel scale; bands whose source lies outside the filterbank get the chunk's floor."""
        source = hz_to_mel(np.maximum(self.centres_hz / factor, 0.0)).astype(np.float64)
        return resample_axis(chunk, source, self.centres_mel, axis=1)

    def add_noise(self, chunk: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
        """Noise frames from one source of the bank, scaled to ``snr_db`` below the chunk's mean power over
        its non-floor frames, added in power and floored again as the frontend does (top_db)."""
        power = np.power(10.0, chunk.astype(np.float64) / 10.0)
        sound = chunk.max(axis=1) > chunk.min()
        signal = power[sound].mean() if sound.any() else power.mean()
        source = self.noise[int(rng.integers(len(self.noise)))]
        frames = source[rng.integers(0, len(source), chunk.shape[0])]
        noisy = power + frames * (signal / 10.0 ** (snr_db / 10.0))
        return power_to_db(noisy[None], top_db=self.frontend.top_db)[0].astype(np.float32)


def noise_bank(frontend: FrontendConfig, train_mel_db: np.ndarray, *, rng: np.random.Generator) -> list[np.ndarray]:
    """Noise sources as (frames, n_mels) mel power with mean 1: white, pink, and (if there are any) the
    training chunks' frames ≥ 30 dB below their chunk's loudest frame and above its floor."""
    c = frontend
    weights = mel_matrix(sr=c.sr, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax)
    white = rng.standard_normal((4, c.chunk_length))
    spectrum = np.fft.rfft(white, axis=-1)
    pink = np.fft.irfft(spectrum / np.sqrt(np.maximum(np.arange(spectrum.shape[-1]), 1.0)), n=c.chunk_length)
    bank = []
    for audio in (white, pink):
        power = stft_power(audio.astype(np.float32), n_fft=c.n_fft, win_length=c.win_length,
                           hop_length=c.hop_length) @ weights
        bank.append(power.reshape(-1, c.n_mels).astype(np.float64))
    quiet = quiet_frames(train_mel_db)
    if len(quiet):
        bank.append(np.power(10.0, quiet[rng.permutation(len(quiet))[:NOISE_BANK_FRAMES]] / 10.0))
    return [frames / frames.mean() for frames in bank]


def quiet_frames(mel_db: np.ndarray) -> np.ndarray:
    """(k, n_mels) dB frames of the chunks that are background: ≥ ``QUIET_BELOW_DB`` below the chunk's
    loudest frame (by mean power) and not at its floor (padding, or the top_db floor)."""
    if mel_db.size == 0:
        return np.zeros((0, mel_db.shape[-1]), np.float32)
    level = 10.0 * np.log10(np.power(10.0, mel_db.astype(np.float64) / 10.0).mean(axis=2))
    floor = mel_db.min(axis=(1, 2), keepdims=True)
    above_floor = (mel_db > floor).all(axis=2)
    quiet = (level <= level.max(axis=1, keepdims=True) - QUIET_BELOW_DB) & above_floor
    return mel_db[quiet]


def stretch_time(chunk: np.ndarray, factor: float) -> np.ndarray:
    """Played ``factor`` times as fast: frame t takes the (interpolated) frame centre + (t − centre) · factor;
    frames from beyond the chunk get its floor."""
    frames = chunk.shape[0]
    centre = (frames - 1) / 2.0
    return resample_axis(chunk, centre + (np.arange(frames) - centre) * factor, np.arange(frames, dtype=np.float64),
                         axis=0)


def resample_axis(chunk: np.ndarray, source: np.ndarray, grid: np.ndarray, *, axis: int) -> np.ndarray:
    """``chunk`` (dB) linearly interpolated along ``axis`` (sampled at the increasing ``grid``) at the
    positions ``source``; positions outside the grid get the chunk's floor."""
    index = np.clip(np.searchsorted(grid, source, side="right") - 1, 0, len(grid) - 2)
    frac = (source - grid[index]) / (grid[index + 1] - grid[index])
    inside = (source >= grid[0]) & (source <= grid[-1])
    weights = np.zeros((len(source), len(grid)))
    rows = np.flatnonzero(inside)
    weights[rows, index[rows]] = 1.0 - frac[rows]
    weights[rows, index[rows] + 1] += frac[rows]
    floor = float(chunk.min())
    moved = np.moveaxis(chunk.astype(np.float64), axis, -1) @ weights.T + floor * (1.0 - weights.sum(axis=1))
    return np.moveaxis(moved, -1, axis).astype(np.float32)


def apply_gain(chunk: np.ndarray, gain_db: float) -> np.ndarray:
    """``gain_db`` added to every value above digital silence (10·log10(1e-16)); silence stays silence."""
    silence = np.float32(10.0 * np.log10(DB_AMIN))
    return np.where(chunk > silence, chunk + np.float32(gain_db), chunk).astype(np.float32)


def shift_in_silence(chunk: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The content moved by a random number of frames into the run of floor-level frames at either end (the
    padding of a short clip), so nothing that is not silence leaves the chunk."""
    silent = (chunk == chunk.min()).all(axis=1)
    if silent.all() or not silent.any():
        return chunk
    lead = int(np.argmin(silent))
    trail = int(np.argmin(silent[::-1]))
    shift = int(rng.integers(-lead, trail + 1))
    return np.roll(chunk, shift, axis=0)  # only silent frames wrap around


@dataclasses.dataclass(frozen=True)
class AugmentSettings:
    sapaugment: bool = True
    sap_a: float = 0.5
    sap_s: float = 10.0
    cutmix: bool = True
    specaugment: bool = True
    prob_min: float = 0.10
    prob_max: float = 0.25
    cutmix_max: float = 0.25
    specaugment_max: float = 0.30


def sap_lambdas(losses: np.ndarray, *, a: float = 0.5, s: float = 10.0) -> np.ndarray:
    """λ per sample: 1 − I_r(s(1−a), s·a) at the sample's relative loss rank r = (i + 1) / n."""
    from scipy.special import betainc

    n = losses.shape[0]
    rank = np.empty(n)
    rank[np.argsort(losses, kind="stable")] = (np.arange(n) + 1) / n
    return 1.0 - betainc(s * (1 - a), s * a, rank)


def augment_batch(x: np.ndarray, y: np.ndarray, lambdas: np.ndarray, settings: AugmentSettings,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """CutMix then SpecAugment on copies of ``x`` (images) and ``y`` (one-hot or soft labels)."""
    if settings.cutmix:
        x, y = cutmix(x, y, lambdas, settings, rng)
    if settings.specaugment:
        x = specaugment(x, lambdas, settings, rng)
    return x, y


def cutmix(x: np.ndarray, y: np.ndarray, lambdas: np.ndarray, settings: AugmentSettings,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paste a square of another sample; labels mix by the pasted share of the image."""
    x, y = x.copy(), y.astype(np.float32).copy()
    n, height, width = x.shape[:3]
    source_x, source_y = x.copy(), y.copy()
    for j in np.flatnonzero(_applied(lambdas, settings, rng)):
        side = int(round(settings.cutmix_max * min(height, width) * lambdas[j]))
        if side == 0:
            continue
        k = int(rng.integers(n))
        top, left = _box(rng, height, side), _box(rng, width, side)
        x[j, top:top + side, left:left + side] = source_x[k, top:top + side, left:left + side]
        share = side * side / (height * width)
        y[j] = (1 - share) * source_y[j] + share * source_y[k]
    return x, y


def specaugment(x: np.ndarray, lambdas: np.ndarray, settings: AugmentSettings,
                rng: np.random.Generator) -> np.ndarray:
    """One frequency mask (rows) and one time mask (columns) per chosen sample."""
    x = x.copy()
    _, height, width = x.shape[:3]
    for j in np.flatnonzero(_applied(lambdas, settings, rng)):
        rows = int(round(settings.specaugment_max * height * lambdas[j]))
        cols = int(round(settings.specaugment_max * width * lambdas[j]))
        top, left = _box(rng, height, rows), _box(rng, width, cols)
        x[j, top:top + rows, :] = 0.0
        x[j, :, left:left + cols] = 0.0
    return x


def _applied(lambdas: np.ndarray, settings: AugmentSettings, rng: np.random.Generator) -> np.ndarray:
    probability = settings.prob_min + (settings.prob_max - settings.prob_min) * lambdas
    return rng.random(lambdas.shape[0]) < probability


def _box(rng: np.random.Generator, size: int, extent: int) -> int:
    return int(rng.integers(0, max(size - extent, 0) + 1))

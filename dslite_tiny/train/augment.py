"""SapAugment (Hu et al. 2020) driving CutMix (Yun et al. 2019) and SpecAugment (Park et al. 2019), as
DeepSpectrumLite applies them: per batch, samples are ranked by their current loss; the easiest get the
strongest augmentation (λ → 1), the hardest none (λ → 0). λ sets each augmentation's probability and size.

Sizes are fractions of the image side so they scale to any image size: the paper's CutMix squares of
0–56 px and SpecAugment masks of 0–67 px at 224 px are 0.25 and 0.30. Images are batches (n, H, W, C) in
the model's normalised space, where 0 is the ImageNet mean: masked areas are set to 0, as DSLite does.
"""
from __future__ import annotations

import dataclasses

import numpy as np


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

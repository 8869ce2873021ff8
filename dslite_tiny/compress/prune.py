"""Magnitude pruning and weight clustering of the weight layers, as TFMOT wrappers plus their schedules.

Only Conv2D and Dense layers with at least ``min_weights`` kernel weights are wrapped: tiny kernels cost
accuracy and save nothing, and TFMOT's registry prunes no depthwise kernels (a wrapped DepthwiseConv2D
would silently stay dense and miss the target). ``weight_layer_names`` says which layers the sparsity
target applies to; the measurement checks that target in the converted flatbuffer.

The target is the share of zeros over all those layers' weights. ``layer_sparsities`` shares it out: either
every layer at the target, or by the Erdős–Rényi-kernel rule (ERK; Evci et al. 2020, "Rigging the Lottery",
RigL's allocation): a layer's density is proportional to
(sum of its kernel's dimensions) / (number of its weights), so a 256×256 pointwise conv is pruned harder
than a 32×32 one, whose every weight carries more of the function. On the FSDD MobileNet v1 α = 0.25
(two seeds) ERK kept 1.6 and 2.4 points more of the float model's test predictions than uniform 50 %.

Three patterns (config ``sparsity_pattern``): ``blocks`` zeroes whole blocks of four consecutive input
values of one output channel (``engine.sparse``: the generated engine skips them, so a pruned model is
smaller and faster on a microcontroller); ``unstructured`` zeroes single weights (TFMOT; only gzip sees
it); ``2:4`` two of every four input channels (TFMOT's sparsity_m_by_n; for hardware with 2:4 support).
TFMOT prunes blocks of 2-D kernels only (its ``block_size`` refuses a Conv2D's 4-D kernel), so
``BlockPruning`` is a callback doing what TFMOT's wrapper does (the same PolynomialDecay schedule; before
every step and after it, the kernel is multiplied by its mask, so the forward pass sees zeros and no
optimizer update survives) with block masks.
"""
from __future__ import annotations

import dataclasses

import numpy as np

import dslite_tiny  # noqa: F401  (TF_USE_LEGACY_KERAS before tf_keras loads)
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from dslite_tiny.engine.sparse import BLOCK_DEPTH, BLOCK_ROWS

_WEIGHT_LAYERS = (keras.layers.Conv2D, keras.layers.Dense)


@dataclasses.dataclass(frozen=True)
class PruningSchedule:
    """PolynomialDecay from 0 to ``sparsity`` between ``begin_step`` (~10 % of the steps: the fine-tune
    settles, its learning rate warms up, before any weight is removed) and ``end_step`` (~75 %), updating
    every ``frequency`` steps, so the last quarter fine-tunes at the final sparsity. ``end_step`` is
    ``begin_step`` plus a multiple of ``frequency``: otherwise the last update falls short of it and the
    target is never reached."""

    sparsity: float
    end_step: int
    frequency: int
    begin_step: int = 0

    @classmethod
    def fit(cls, sparsity: float, total_steps: int) -> PruningSchedule:
        if total_steps < 2:
            raise ValueError(f"pruning needs at least 2 fine-tuning steps, got {total_steps}")
        begin = int(total_steps * 0.1)
        ramp = max(1, int(total_steps * 0.75) - begin)
        frequency = max(1, ramp // 20)
        return cls(sparsity, begin + frequency * (ramp // frequency), frequency, begin)

    def to_tfmot(self):
        return tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=self.sparsity,
                                                     begin_step=self.begin_step, end_step=self.end_step,
                                                     frequency=self.frequency)

    def updates_at(self, step: int) -> bool:
        """Whether the masks are recomputed before ``step`` (TFMOT's PolynomialDecay rule)."""
        return self.begin_step <= step <= self.end_step and (step - self.begin_step) % self.frequency == 0

    def sparsity_at(self, step: int) -> float:
        """PolynomialDecay's sparsity at ``step``: 0 → ``sparsity`` along (1 - progress)^3."""
        progress = min(1.0, max(0.0, (step - self.begin_step) / max(1, self.end_step - self.begin_step)))
        return self.sparsity * (1 - (1 - progress) ** 3)


def block_mask(kernel: np.ndarray, sparsity: float) -> np.ndarray:
    """A 0/1 mask of ``kernel``'s shape that zeroes the ``sparsity`` share of its blocks with the smallest
    mean magnitude. A Keras kernel [..., in, out] flattened to [depth, out] has TFLite's depth order (height,
    width, input channel), so its blocks of ``BLOCK_DEPTH`` × ``BLOCK_ROWS`` are the engine's; the edges of
    a kernel the blocks do not tile are blocks of their own, smaller."""
    matrix = np.abs(kernel.reshape(-1, kernel.shape[-1]))
    depth, out = matrix.shape
    padded = np.zeros((-(-depth // BLOCK_DEPTH) * BLOCK_DEPTH, -(-out // BLOCK_ROWS) * BLOCK_ROWS), np.float32)
    padded[:depth, :out] = matrix
    blocks = padded.reshape(padded.shape[0] // BLOCK_DEPTH, BLOCK_DEPTH, padded.shape[1] // BLOCK_ROWS, BLOCK_ROWS)
    magnitude = blocks.mean(axis=(1, 3))
    zeroed = int(round(sparsity * magnitude.size))
    keep = np.ones(magnitude.size, np.float32)
    keep[np.argsort(magnitude, axis=None, kind="stable")[:zeroed]] = 0
    expanded = np.repeat(np.repeat(keep.reshape(magnitude.shape), BLOCK_DEPTH, 0), BLOCK_ROWS, 1)
    return expanded[:depth, :out].reshape(kernel.shape)


class BlockPruning(keras.callbacks.Callback):
    """Block magnitude pruning of the named layers of the model being fine-tuned, to each layer's target
    sparsity on ``schedule``'s steps (see the module docstring)."""

    def __init__(self, targets: dict[str, float], schedule: PruningSchedule):
        super().__init__()
        self.targets, self.schedule, self.step = targets, schedule, 0
        self.masks: dict[str, np.ndarray] = {}

    def on_train_batch_begin(self, batch, logs=None) -> None:
        if self.schedule.updates_at(self.step):
            progress = self.schedule.sparsity_at(self.step) / max(self.schedule.sparsity, 1e-12)
            for name, target in self.targets.items():
                self.masks[name] = block_mask(_kernel(self.model.get_layer(name)), target * progress)
        self._apply()
        self.step += 1

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._apply()

    def _apply(self) -> None:
        for name, mask in self.masks.items():
            kernel = self.model.get_layer(name).kernel
            kernel.assign(kernel * mask)


def weight_layer_names(model: keras.Model, *, min_weights: int, structured: bool = False) -> list[str]:
    """The layers pruning and clustering act on. 2:4 sparsity groups the input channels by four, so with
    ``structured`` a layer whose input channels are not a multiple of 4 (an RGB stem conv) is left out."""
    names = []
    for layer in model.layers:
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)  # a Conv2D subclass in Keras
        if not isinstance(layer, _WEIGHT_LAYERS) or depthwise or _kernel_size(layer) < min_weights:
            continue
        if structured and _kernel(layer).shape[-2] % 4:  # kernels are [..., in, out] in Keras
            continue
        names.append(layer.name)
    return names


def layer_sparsities(model: keras.Model, layer_names: list[str], sparsity: float, allocation: str) -> dict[str, float]:
    """Each named layer's sparsity, such that the zeros over all their weights are ``sparsity``:
    ``uniform`` or ``erk`` (densities ε·Σdims/Πdims; a layer whose density would exceed 1 stays dense and ε
    is solved again for the rest)."""
    if allocation == "uniform":
        return {name: sparsity for name in layer_names}
    shapes = {name: _kernel(model.get_layer(name)).shape for name in layer_names}
    sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
    shape_factor = {name: sum(shape) / sizes[name] for name, shape in shapes.items()}
    dense: set[str] = set()
    while True:
        kept = (1 - sparsity) * sum(sizes.values()) - sum(sizes[name] for name in dense)
        scaled = [name for name in layer_names if name not in dense]
        epsilon = kept / sum(shape_factor[name] * sizes[name] for name in scaled)
        too_dense = [name for name in scaled if epsilon * shape_factor[name] >= 1]
        if not too_dense:
            break
        dense.update(too_dense)
    return {name: 0.0 if name in dense else float(1 - epsilon * shape_factor[name]) for name in layer_names}


def prune_model(model: keras.Model, targets: dict[str, float], schedule: PruningSchedule, *,
                pattern: str = "unstructured") -> tuple[keras.Model, keras.callbacks.Callback]:
    """A copy of ``model`` to train with the callback returned beside it, which prunes each layer of
    ``targets`` to its sparsity on ``schedule``'s steps in ``pattern`` (blocks, unstructured or 2:4): TFMOT's wrappers
    and UpdatePruningStep, or BlockPruning. ``strip_pruning`` gives the pruned model after training."""
    if pattern == "blocks":
        return fresh_copy(model), BlockPruning({n: s for n, s in targets.items() if s > 0}, schedule)
    prune = tfmot.sparsity.keras.prune_low_magnitude
    options = {"sparsity_m_by_n": (2, 4)} if pattern == "2:4" else {}
    names = [name for name, target in targets.items() if target > 0]
    wrapped = _wrap_layers(model, names, lambda layer: prune(
        layer, pruning_schedule=dataclasses.replace(schedule, sparsity=targets[layer.name]).to_tfmot(), **options))
    return wrapped, tfmot.sparsity.keras.UpdatePruningStep()


def strip_pruning(model: keras.Model) -> keras.Model:
    """The trained model without pruning wrappers (block-pruned models have none: a copy)."""
    return fresh_copy(tfmot.sparsity.keras.strip_pruning(model))


def cluster_model(model: keras.Model, layer_names: list[str], *, clusters: int,
                  preserve_sparsity: bool = True) -> keras.Model:
    """A copy with the named layers' weights tied to ``clusters`` centroids (k-means++ initialised);
    ``preserve_sparsity`` keeps pruned zeros at zero."""
    cluster = tfmot.clustering.keras.cluster_weights
    init = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS
    return _wrap_layers(model, layer_names, lambda layer: cluster(
        layer, number_of_clusters=clusters, cluster_centroids_init=init, preserve_sparsity=preserve_sparsity))


def strip_clustering(model: keras.Model) -> keras.Model:
    return fresh_copy(tfmot.clustering.keras.strip_clustering(model))


def kernel_sparsity(model: keras.Model, layer_names: list[str]) -> float:
    """Share of zero kernel weights over the named layers of a (stripped) Keras model."""
    kernels = [_kernel(model.get_layer(name)) for name in layer_names]
    total = sum(k.size for k in kernels)
    return float(sum(np.count_nonzero(k == 0) for k in kernels) / total) if total else 0.0


def _wrap_layers(model: keras.Model, layer_names: list[str], wrap) -> keras.Model:
    """A model whose named layers are wrapped. TFMOT wrappers hold the layer they wrap, so they wrap the
    layers of a fresh copy: training the result must not change ``model``."""
    copy = fresh_copy(model)
    return keras.models.clone_model(copy, clone_function=lambda l: wrap(l) if l.name in layer_names else l)


def fresh_copy(model: keras.Model) -> keras.Model:
    """The same model with layers of its own (stripping reuses the wrapped layer objects)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _kernel(layer) -> np.ndarray:
    return keras.backend.get_value(layer.kernel)


def _kernel_size(layer) -> int:
    return int(np.prod(_kernel(layer).shape)) if layer.built else 0

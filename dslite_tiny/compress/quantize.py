"""Quantization-aware training wrappers that work for every backbone, DenseNet121 included.

TFMOT's default 8-bit scheme refuses four things our models contain, so each gets a QuantizeConfig:

- BatchNormalization that does not directly follow a Conv/Dense (DenseNet's BN after Concatenate and
  after ReLU) cannot be folded: its output is quantized and the converter turns it into int8 MUL + ADD.
- The AReLU layer (ours, not in TFMOT's registry): compression folds it into LEAKY_RELU first
  (``fold_arelu``); one that cannot be folded has its output quantized like any activation.
- Average, which ends an ensemble (``models/ensemble.py``: the mean of its members' probabilities), has
  its output quantized as TFMOT quantizes Add's.
- Average pooling keeps no output quantizer: an int8 AVERAGE_POOL_2D/MEAN must keep its input's scale,
  and a separate fake-quant there makes conversion fail with "same scale constraint".

Everything else goes through TFMOT's registry (Conv+BN folding, Concatenate, ReLU, Dense, ...), with one
repair (``PerChannelDepthwise``): TFMOT fake-quantizes a DepthwiseConv2D kernel (kh, kw, C, M) "per axis"
over its last axis, M = 1, i.e. per tensor, and before BatchNorm is folded into it. The converted model
keeps that one coarse grid, scaled per channel by the BN factors: in a QAT MobileNet's first depthwise
kernel the median channel used ±51 of the ±127 int8 levels (a test model: some channels ±3). A
per-channel fake quant over C·M has no form the converter accepts (a reshaped
FakeQuantWithMinMaxVarsPerChannel is rejected, a per-axis QuantizeAndDequantizeV2 crashes it), so the
depthwise kernels train in float and the converter quantizes them per channel after folding BN, as
post-training quantization does; their activations stay quantization-aware.

TFMOT starts every activation range at [-6, 6] and moves it by an EMA with decay 0.999 per training step:
after the few hundred steps of a fine-tune the ranges are still mostly the initial ones, far wider than
the real activations (an FSDD DS-CNN's are ~100× smaller), so QAT would start from a model whose int8
activations are mostly zero. ``calibrate_ranges`` sets them to the float model's min/max on the
representative images first, as post-training quantization would.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

import dslite_tiny  # noqa: F401  (TF_USE_LEGACY_KERAS before tf_keras loads)
import tensorflow_model_optimization as tfmot
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # not exported by TFMOT
    default_8bit_quantize_registry as _registry)

from dslite_tiny.models.arelu import AReLU
from dslite_tiny.models.probe import probe_batches

_quantizers = tfmot.quantization.keras.quantizers
_FOLDABLE_BEFORE_BN = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
_POOLING = (keras.layers.GlobalAveragePooling2D, keras.layers.AveragePooling2D)


class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Quantize only the layer's output; its weights stay float and fold into the converted int8 ops."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


class PassThroughQuantizeConfig(OutputQuantizeConfig):
    """No quantizer at all: the int8 op inherits its input's scale (average pooling)."""

    def get_output_quantizers(self, layer):
        return []


class DepthwiseQuantizeConfig(_registry.Default8BitQuantizeConfig):
    """TFMOT's DepthwiseConv2D config (activation quantized, BN folding untouched) with the kernel left
    float in training: the converter quantizes it per channel after folding BatchNorm, as in PTQ."""

    def __init__(self):
        super().__init__([], ["activation"], False)

    def get_config(self):
        return {}


class PerChannelDepthwise(tfmot.quantization.keras.QuantizeScheme):
    """A scheme (default, prune- or cluster-preserving) whose registry hands DepthwiseConv2D layers
    ``DepthwiseQuantizeConfig``. Registry, not annotation: TFMOT skips its Conv+BN layout transform for a
    layer annotated with its own config. Depthwise kernels are never pruned or clustered here
    (``prune.weight_layer_names``), so there is no sparsity or cluster to preserve in them."""

    def __init__(self, base: tfmot.quantization.keras.QuantizeScheme):
        self._base = base

    def get_layout_transformer(self):
        return self._base.get_layout_transformer()

    def get_quantize_registry(self):
        return _DepthwiseRegistry(self._base.get_quantize_registry())


class _DepthwiseRegistry(tfmot.quantization.keras.QuantizeRegistry):
    def __init__(self, base):
        self._base = base

    def supports(self, layer) -> bool:
        return self._base.supports(layer)

    def get_quantize_config(self, layer):
        if type(layer) is keras.layers.DepthwiseConv2D:
            return DepthwiseQuantizeConfig()
        return self._base.get_quantize_config(layer)


def quantize_scope():
    """The custom objects a QAT model needs to be cloned, saved or loaded."""
    return tfmot.quantization.keras.quantize_scope({
        "OutputQuantizeConfig": OutputQuantizeConfig, "PassThroughQuantizeConfig": PassThroughQuantizeConfig,
        "DepthwiseQuantizeConfig": DepthwiseQuantizeConfig,
        "AReLU": AReLU})


def custom_quantize_config(layer, foldable_batchnorms: set[str]) -> tfmot.quantization.keras.QuantizeConfig | None:
    """The QuantizeConfig a layer needs beyond TFMOT's registry, or None to use the registry."""
    if isinstance(layer, (AReLU, keras.layers.Average)):
        return OutputQuantizeConfig()
    if isinstance(layer, _POOLING):
        return PassThroughQuantizeConfig()
    if isinstance(layer, keras.layers.BatchNormalization) and layer.name not in foldable_batchnorms:
        return OutputQuantizeConfig()
    return None


def quantize_model(model: keras.Model, *, preserve: Literal["none", "sparsity", "clusters"] = "none") -> keras.Model:
    """A QAT copy of ``model`` (``quantize_apply`` copies the weights; ``model`` is not trained). With
    ``preserve``, the collaborative schemes keep a pruned model's zeros (PQAT) or a clustered model's
    centroids and zeros (CQAT) while the QAT model fine-tunes."""
    annotate = tfmot.quantization.keras.quantize_annotate_layer
    combine = tfmot.experimental.combine
    scheme = {"none": tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme,
              "sparsity": combine.Default8BitPrunePreserveQuantizeScheme,
              "clusters": lambda: combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)}[preserve]()
    foldable = foldable_batchnorms(model)
    with quantize_scope():
        annotated = keras.models.clone_model(model, clone_function=lambda layer: annotate(
            layer, quantize_config=custom_quantize_config(layer, foldable)))
        return tfmot.quantization.keras.quantize_apply(annotated, PerChannelDepthwise(scheme))


def foldable_batchnorms(model: keras.Model) -> set[str]:
    """BatchNormalization layers TFMOT folds: fed by a Conv/Dense that feeds nothing else. Read from this
    model's own graph config (a layer object shared with another model has that model's nodes too)."""
    layers = {layer["config"]["name"]: layer for layer in model.get_config()["layers"]}
    sources = {name: _inbound_names(layer) for name, layer in layers.items()}
    consumers: dict[str, int] = {}
    for inbound in sources.values():
        for name in inbound:
            consumers[name] = consumers.get(name, 0) + 1
    foldable = set()
    for name, inbound in sources.items():
        if isinstance(model.get_layer(name), keras.layers.BatchNormalization) and len(inbound) == 1:
            previous = inbound[0]
            if isinstance(model.get_layer(previous), _FOLDABLE_BEFORE_BN) and consumers[previous] == 1:
                foldable.add(name)
    return foldable


def _inbound_names(layer_config: dict) -> list[str]:
    """Names of the layers feeding a layer, from a functional model's config."""
    names = []
    for node in layer_config.get("inbound_nodes", []):
        for inbound in node:
            names.append(inbound[0])
    return names


# The activation-range variables of TFMOT's wrappers, by the tensor they quantize.
_RANGE_OF = {"output": "output", "post_activation": "output", "pre_activation": "pre_activation"}


def calibrate_ranges(qat: keras.Model, float_model: keras.Model, images: np.ndarray, *,
                     batch_size: int = 64) -> int:
    """Set every activation range of ``qat`` to the min/max (widened to include 0, as TFLite needs) that
    the matching layer of ``float_model`` reaches on ``images``, and every weight range to ±max|w| (per
    channel where TFMOT quantizes per channel); returns how many ranges were set. TFMOT refreshes weight
    ranges at every training step, but not before the first: without this a QAT model converted before
    any step would quantize its weights over [-6, 6]."""
    count = _calibrate_weight_ranges(qat)
    targets = []  # (min variable, max variable, float layer name or None for the input, which value)
    for layer in qat.layers:
        ranges = {v.name.split("/")[-1].split(":")[0]: v for v in layer.weights}
        if f"{layer.name}_min" in ranges:  # TFMOT's QuantizeLayer at the model input (not a public class)
            targets.append((ranges[f"{layer.name}_min"], ranges[f"{layer.name}_max"], None, "output"))
            continue
        inner = getattr(layer, "layer", None)
        for prefix, value in _RANGE_OF.items():
            if inner is not None and f"{prefix}_min" in ranges:
                targets.append((ranges[f"{prefix}_min"], ranges[f"{prefix}_max"], inner.name, value))
    tensors = _range_tensors(float_model, [(name, value) for _, _, name, value in targets if name is not None])
    low, high = _observed_ranges(float_model, tensors, images, batch_size)
    observed = iter(zip(low, high))
    for min_var, max_var, name, _ in targets:
        lowest, highest = (float(images.min()), float(images.max())) if name is None else next(observed)
        min_var.assign(np.full(min_var.shape, min(lowest, 0.0), np.float32))
        max_var.assign(np.full(max_var.shape, max(highest, 0.0), np.float32))
    return count + len(targets)


def _calibrate_weight_ranges(qat: keras.Model) -> int:
    """The wrapper holds the float weight (``conv/kernel``) beside its range (``quant_conv/kernel_min``)."""
    count = 0
    for layer in qat.layers:
        ranges = {v.name.split("/")[-1].split(":")[0]: v for v in layer.weights}
        for weight in layer.weights:
            attribute = weight.name.split("/")[-1].split(":")[0]
            if weight.name.startswith(f"{layer.name}/") or f"{attribute}_min" not in ranges:
                continue
            values = np.abs(keras.backend.get_value(weight))
            per_channel = ranges[f"{attribute}_max"].shape.num_elements() > 1
            bound = values.reshape(-1, values.shape[-1]).max(axis=0) if per_channel else values.max()
            ranges[f"{attribute}_min"].assign(np.broadcast_to(-bound, ranges[f"{attribute}_min"].shape))
            ranges[f"{attribute}_max"].assign(np.broadcast_to(bound, ranges[f"{attribute}_max"].shape))
            count += 1
    return count


def _range_tensors(model: keras.Model, wanted: list[tuple[str, str]]) -> list:
    """One tensor per (layer, value): the layer's output, or its value before its activation."""
    tensors = []
    for name, value in wanted:
        layer = model.get_layer(name)
        if value == "output":
            tensors.append(layer.output)
            continue
        linear = layer.__class__.from_config({**layer.get_config(), "activation": "linear",
                                              "name": f"{name}_pre_activation"})
        tensors.append(linear(layer.input))
        linear.set_weights(layer.get_weights())
    return tensors


def _observed_ranges(model: keras.Model, tensors: list, images: np.ndarray,
                     batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    low, high = np.full(len(tensors), np.inf), np.full(len(tensors), -np.inf)
    for values in probe_batches(model, tensors, images, batch_size=batch_size):
        low = np.minimum(low, [float(np.min(v)) for v in values])
        high = np.maximum(high, [float(np.max(v)) for v in values])
    return low, high

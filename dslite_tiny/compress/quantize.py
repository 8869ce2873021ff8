"""Quantization-aware training wrappers that work for every backbone, DenseNet121 included.

TFMOT's default 8-bit scheme refuses three things our models contain, so each gets a QuantizeConfig:

- BatchNormalization that does not directly follow a Conv/Dense (DenseNet's BN after Concatenate and
  after ReLU) cannot be folded: its output is quantized and the converter turns it into int8 MUL + ADD.
- The AReLU layer (ours, not in TFMOT's registry): compression folds it into LEAKY_RELU first
  (``fold_arelu``); one that cannot be folded has its output quantized like any activation.
- Average pooling keeps no output quantizer: an int8 AVERAGE_POOL_2D/MEAN must keep its input's scale,
  and a separate fake-quant there makes conversion fail with "same scale constraint".

Everything else goes through TFMOT's registry (Conv+BN folding, Concatenate, ReLU, Dense, ...).
"""
from __future__ import annotations

from typing import Literal

import dslite_tiny  # noqa: F401  (TF_USE_LEGACY_KERAS before tf_keras loads)
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from dslite_tiny.models.arelu import AReLU

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


def quantize_scope():
    """The custom objects a QAT model needs to be cloned, saved or loaded."""
    return tfmot.quantization.keras.quantize_scope({
        "OutputQuantizeConfig": OutputQuantizeConfig, "PassThroughQuantizeConfig": PassThroughQuantizeConfig,
        "AReLU": AReLU})


def custom_quantize_config(layer, foldable_batchnorms: set[str]) -> tfmot.quantization.keras.QuantizeConfig | None:
    """The QuantizeConfig a layer needs beyond TFMOT's registry, or None to use the registry."""
    if isinstance(layer, AReLU):
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
        return tfmot.quantization.keras.quantize_apply(annotated, scheme)


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

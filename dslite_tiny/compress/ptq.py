"""Repairs of a float model before post-training quantization, so its int8 conversion keeps its decisions.

Bias correction (Nagel et al. 2019, "Data-Free Quantization", §4.2; Finkelstein et al. 2019): rounding a
kernel W to int8 adds ΔW·a to every output, and after ReLU/ReLU6 the inputs a are never negative, so that
error has a large mean ΔW·E[a] per output channel: a systematic offset, not noise. On an FSDD MobileNet v1
α = 0.25 this offset alone (int8 weights, float activations) moved 19 % of the float model's predictions;
subtracting it left 3 %. The offset is known before conversion: the converter quantizes every kernel
symmetrically per output channel (scale max|w|/127, zero-point 0) after folding BatchNorm into it, and a
per-channel factor does not change which integer a weight rounds to. So each weight layer's expected
output shift is computed from its kernel's own rounding and the mean of its input on the representative
images, and removed from its bias, or, where a BatchNormalization follows a bias-free conv, added to that
BN's moving mean (the same thing after folding).
"""
from __future__ import annotations

import numpy as np

import dslite_tiny  # noqa: F401  (TF_USE_LEGACY_KERAS before tf_keras loads)
import tf_keras as keras

from dslite_tiny.models.probe import probe_batches

_INT8_MAX = 127


def correct_bias(model: keras.Model, images: np.ndarray, *, depthwise: bool = True,
                 batch_size: int = 64) -> tuple[keras.Model, dict]:
    """A copy of ``model`` whose int8 weight rounding has no mean effect on ``images``, and a record of the
    layers corrected (and of any whose shift had nowhere to go: no bias and no BatchNorm after it).
    ``depthwise=False`` leaves depthwise layers alone (QAT corrects those after training:
    ``correct_depthwise_bias``)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    layers = [layer for layer in copy.layers if _kernel_axis(layer) is not None
              and (depthwise or not isinstance(layer, keras.layers.DepthwiseConv2D))]
    return copy, _correct(copy, [(layer, layer) for layer in layers], images, batch_size)


def correct_depthwise_bias(qat: keras.Model, images: np.ndarray, *, batch_size: int = 64) -> dict:
    """Bias correction, in place, of a QAT model's depthwise layers. Their kernels train in float and are
    rounded only when the model is converted (``quantize.PerChannelDepthwise``), so the mean shift of that
    rounding is invisible to QAT: it is removed after training, from the trained kernels, into the
    BatchNorm that follows (inside its QAT wrapper). Returns the record."""
    pairs = [(wrapper, wrapper.layer) for wrapper in qat.layers
             if isinstance(getattr(wrapper, "layer", None), keras.layers.DepthwiseConv2D)]
    return _correct(qat, pairs, images, batch_size)


def _correct(model: keras.Model, pairs: list[tuple], images: np.ndarray, batch_size: int) -> dict:
    """Remove each layer's expected rounding shift; ``pairs`` are (layer in the graph, layer with the
    kernel): the same layer, or a QAT wrapper and the layer it wraps."""
    means = _input_means(model, [node for node, _ in pairs], images, batch_size)
    corrected, skipped = [], []
    for (node, layer), mean in zip(pairs, means):
        shift = _output_shift(layer, mean)
        if _absorb(node, layer, shift):
            corrected.append(layer.name)
        elif np.any(shift):
            skipped.append(layer.name)
    return {"method": "bias correction", "layers": corrected, "not_correctable": skipped}


def int8_rounding_error(kernel: np.ndarray, axis: int) -> np.ndarray:
    """ΔW of symmetric per-channel int8 quantization along ``axis`` (TFLite's weight quantization)."""
    moved = np.moveaxis(kernel.astype(np.float64), axis, -1)
    bound = np.abs(moved).reshape(-1, moved.shape[-1]).max(axis=0)
    scale = np.where(bound > 0, bound / _INT8_MAX, 1.0)
    rounded = np.clip(np.round(moved / scale), -_INT8_MAX, _INT8_MAX) * scale
    return np.moveaxis(rounded - moved, -1, axis)


def _kernel_axis(layer) -> int | None:
    """The output-channel axis of a layer's kernel, None for a layer without one. Depthwise kernels
    [h, w, in, multiplier] are quantized per input channel (× multiplier) in TFLite."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return 2
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and not getattr(layer, "groups", 1) > 1:
        return -1
    return None


def _input_means(model: keras.Model, layers: list, images: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Each layer's mean input per channel over the images and positions."""
    sums, count = [np.zeros(layer.input_shape[-1]) for layer in layers], 0
    for values in probe_batches(model, [layer.input for layer in layers], images, batch_size=batch_size):
        for total, value in zip(sums, values):
            total += value.astype(np.float64).reshape(-1, value.shape[-1]).sum(axis=0)
        count += len(values[0])
    return [total / (count * int(np.prod(layer.input_shape[1:-1]) or 1)) for total, layer in zip(sums, layers)]


def _output_shift(layer, mean: np.ndarray) -> np.ndarray:
    """E[ΔW·a] per output channel (padding ignored: border positions see zeros, not the mean)."""
    kernel = keras.backend.get_value(layer.depthwise_kernel if _kernel_axis(layer) == 2 else layer.kernel)
    delta = int8_rounding_error(kernel, _kernel_axis(layer))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return np.einsum("hwcm,c->cm", delta, mean).reshape(-1)
    return np.tensordot(mean, delta.reshape(-1, delta.shape[-2], delta.shape[-1]).sum(axis=0), axes=1)


def _absorb(node, layer, shift: np.ndarray) -> bool:
    """Subtract ``shift`` from the layer's bias, or add it to the following BN's moving mean (``node`` is
    the layer in the graph: itself, or its QAT wrapper, whose activation TFMOT made a no-op before BN)."""
    if not np.any(shift):
        return False
    follower = node.outbound_nodes[0].outbound_layer if len(node.outbound_nodes) == 1 else None
    follower = getattr(follower, "layer", follower)  # the BatchNormalization inside its QAT wrapper
    linear = node is not layer or getattr(layer.activation, "__name__", "linear") == "linear"
    if linear and isinstance(follower, keras.layers.BatchNormalization):
        follower.moving_mean.assign(follower.moving_mean + shift.astype(np.float32))
        return True
    if getattr(layer, "use_bias", False):
        layer.bias.assign(layer.bias - shift.astype(np.float32))
        return True
    return False

"""Keras → TFLite flatbuffer for each kind of quantization.

Every conversion starts from the AReLU-folded model (``fold_arelu``), so the head converts to one
LEAKY_RELU. Full-integer models have int8 input and output and only builtin int8 ops
(``TFLITE_BUILTINS_INT8``: the converter fails rather than leave a float op behind), per-channel weights,
and are calibrated on the representative images (a QAT model brings its own ranges; the representative
set only fills what it lacks). ``int16x8`` is the same with 16-bit activations (symmetric, zero-point 0)
and int8 weights: 256× finer activation steps for about twice the arena. Sparse weights stay dense in
the file: EXPERIMENTAL_SPARSITY would need TFLM's missing DENSIFY op.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Literal

import numpy as np

from dslite_tiny.native import capture_native_stderr

Kind = Literal["float32", "float16", "dynamic", "int8", "int16x8"]


class ConversionError(Exception):
    """The TFLite converter refused the model; the message holds its reason."""


def convert_model(model, kind: Kind, *, representative: np.ndarray | None = None) -> bytes:
    """The flatbuffer of ``model`` (a tf_keras model, already folded/stripped) as ``kind``."""
    import tensorflow as tf

    converter = _converter(model)
    if kind == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif kind == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif kind in ("int8", "int16x8"):
        if representative is None or len(representative) == 0:
            raise ConversionError("full-integer conversion needs a non-empty representative set")
        wide = kind == "int16x8"
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(representative)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if wide
            else tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int16 if wide else tf.int8
    return _convert(converter)


def _converter(model):
    """A converter of ``model``'s inference function, traced once. ``from_keras_model`` first saves the whole
    Keras model as a SavedModel, whose layer-by-layer serialization took three quarters of every conversion
    (the demo's nine variants spent 53 of 105 s converting); a module holding only the function and its
    variables gives the same flatbuffer (ops, constants, quantization, tensor names, the
    ``serving_default`` signature; tested) 3-5× faster (``reports/benchmarks/convert_speed.md``)."""
    import tensorflow as tf

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConversionError(f"a classifier here has one input and one output; this model has "
                              f"{len(model.inputs)} and {len(model.outputs)}")
    spec = tf.TensorSpec(model.input_shape, tf.float32, name=model.input_names[0])
    module = tf.Module()
    module.variables_ = list(model.weights)  # tracked for the saved function (``variables`` is read-only)

    @tf.function(input_signature=[spec])
    def serve(x):
        return {model.output_names[0]: model(x, training=False)}

    module.serve = serve
    return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], module)


def _representative(images: np.ndarray) -> Callable:
    def generate():
        for image in images:
            yield [image[None].astype(np.float32)]
    return generate


def _convert(converter) -> bytes:
    """Run the converter with its native chatter captured; its last error lines become the message."""
    with capture_native_stderr() as output, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Statistics for quantized inputs.*")
        try:
            return converter.convert()
        except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError, ...
            failure = exc
    details = [line.strip() for line in output[0].splitlines() if "error" in line.lower()]
    message = str(failure).strip().splitlines()
    reason = "; ".join((details or message)[-2:]) or type(failure).__name__
    raise ConversionError(f"TFLite conversion failed: {reason[:400]}") from failure

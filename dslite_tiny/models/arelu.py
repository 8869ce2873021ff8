"""AReLU (Chen et al. 2020, "AReLU: Attention-based Rectified Linear Unit") as a real Keras layer.

f(x) = relu(x) · (1 + σ(β)) − clip(α, 0.01, 0.99) · relu(−x), α = 0.9 and β = 2.0 at the start.
DeepSpectrumLite uses it as a plain function with constant α, β (slopes 1.8808 and 0.9); here it is a
registered, serialisable layer (TFMOT cannot quantize a Lambda), learnable or fixed.
"""
from __future__ import annotations

import dslite_tiny  # noqa: F401  (TF_USE_LEGACY_KERAS before tf_keras loads)
import tf_keras as keras

ALPHA_INIT = 0.9
BETA_INIT = 2.0


@keras.utils.register_keras_serializable(package="dslite_tiny")
class AReLU(keras.layers.Layer):
    """Attention-based ReLU with two scalar parameters; ``learnable=False`` reproduces DSLite exactly."""

    def __init__(self, alpha: float = ALPHA_INIT, beta: float = BETA_INIT, learnable: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.alpha_init, self.beta_init, self.learnable = float(alpha), float(beta), bool(learnable)

    def build(self, input_shape):
        self.alpha = self.add_weight(name="alpha", shape=(), trainable=self.learnable,
                                     initializer=keras.initializers.Constant(self.alpha_init))
        self.beta = self.add_weight(name="beta", shape=(), trainable=self.learnable,
                                    initializer=keras.initializers.Constant(self.beta_init))
        super().build(input_shape)

    def call(self, inputs):
        import tensorflow as tf

        alpha = tf.clip_by_value(self.alpha, 0.01, 0.99)
        beta = 1.0 + tf.math.sigmoid(self.beta)
        return tf.nn.relu(inputs) * beta - tf.nn.relu(-inputs) * alpha

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha_init, "beta": self.beta_init, "learnable": self.learnable}


def fold_arelu(model: keras.Model) -> keras.Model:
    """The same function with every AReLU written as ``b · LeakyReLU(a / b)`` and ``b`` folded into the
    Dense layer after it (through Dropout): f(x) = b·relu(x) + a·min(x, 0) = b·leaky_relu(x, a/b).

    Why: an AReLU converts to five element-wise ops (RELU, NEG, MUL, MUL, SUB) whose inner tensors a
    quantization-aware model leaves float (DEQUANTIZE/QUANTIZE pairs, float NEG that TFLite Micro cannot
    run in int8); LEAKY_RELU is one op with int8 kernels in LiteRT and TFLM. α and β are frozen at their
    trained values. An AReLU whose output does not reach exactly one Dense is left as it is.
    """
    import numpy as np

    replaced, scales = {}, {}
    for layer in model.layers:
        dense = _next_dense(layer) if isinstance(layer, AReLU) else None
        if dense is None:
            continue
        alpha = float(np.clip(keras.backend.get_value(layer.alpha), 0.01, 0.99))
        beta = 1.0 + float(1.0 / (1.0 + np.exp(-keras.backend.get_value(layer.beta))))
        replaced[layer.name] = keras.layers.LeakyReLU(alpha=alpha / beta, name=layer.name)
        scales[dense.name] = beta
    if not replaced:
        return model

    def clone(layer):
        return replaced.get(layer.name) or layer.__class__.from_config(layer.get_config())

    folded = keras.models.clone_model(model, clone_function=clone)
    for layer in folded.layers:
        weights = model.get_layer(layer.name).get_weights() if layer.name not in replaced else []
        if layer.name in scales:
            weights = [weights[0] * scales[layer.name], *weights[1:]]
        layer.set_weights(weights)
    return folded


def _next_dense(layer):
    """The Dense layer fed by ``layer``, skipping Dropout; None unless that path is a single chain."""
    while True:
        if len(layer.outbound_nodes) != 1:
            return None
        layer = layer.outbound_nodes[0].outbound_layer
        if isinstance(layer, keras.layers.Dense):
            return layer
        if not isinstance(layer, keras.layers.Dropout):
            return None

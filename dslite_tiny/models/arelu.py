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

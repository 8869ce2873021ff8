"""Writes tests/golden/tiny.tflite (run from the repository root): a 6×6×1 int8 model with every kernel
family of the demo DS-CNN, a residual ADD and one block-sparse pointwise convolution. The golden C of
tests/test_engine.py is generated from it."""
import numpy as np
import dslite_tiny  # noqa
import tf_keras as keras
from dslite_tiny.compress.convert import convert_model
from dslite_tiny.compress.prune import block_mask

keras.utils.set_random_seed(0)
x = keras.Input((6, 6, 1))
a = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
b = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(a)
c = keras.layers.Conv2D(16, 1, activation="relu", name="pw")(b)
d = keras.layers.Add()([b, c])
e = keras.layers.GlobalAveragePooling2D()(d)
f = keras.layers.LeakyReLU(0.2)(keras.layers.Dense(8)(e))
y = keras.layers.Dense(3, activation="softmax")(f)
model = keras.Model(x, y)
pw = model.get_layer("pw")
pw.kernel.assign(pw.kernel * block_mask(pw.kernel.numpy(), 0.5))
images = np.random.default_rng(0).normal(0, 1, (16, 6, 6, 1)).astype(np.float32)
open("tests/golden/tiny.tflite", "wb").write(convert_model(model, "int8", representative=images))

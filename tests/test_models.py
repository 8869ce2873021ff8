"""Backbones, the AReLU layer and weight loading."""
from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import tf_keras as keras  # noqa: E402

from dslite_tiny.errors import UserError  # noqa: E402
from dslite_tiny.models.arelu import AReLU  # noqa: E402
from dslite_tiny.models.registry import backbone_layers, create_model, list_models  # noqa: E402


def arelu_reference(x, alpha=0.9, beta=2.0):
    a = np.clip(alpha, 0.01, 0.99)
    b = 1 + 1 / (1 + np.exp(-beta))
    return np.maximum(x, 0) * b - np.maximum(-x, 0) * a


def test_arelu_forward_matches_the_paper_and_dslite():
    x = np.linspace(-3, 3, 13, dtype=np.float32)
    layer = AReLU()
    np.testing.assert_allclose(layer(x).numpy(), arelu_reference(x), rtol=1e-6)
    assert abs(float(1 + tf.sigmoid(2.0)) - 1.8808) < 1e-4  # DSLite's constant positive slope
    clipped = AReLU(alpha=5.0, beta=-1.0)
    np.testing.assert_allclose(clipped(x).numpy(), arelu_reference(x, 5.0, -1.0), rtol=1e-6)


def test_arelu_gradients():
    x = tf.constant([-2.0, -0.5, 0.5, 2.0])
    layer = AReLU()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = layer(x)
        total = tf.reduce_sum(y)
    slope = 1 + 1 / (1 + np.exp(-2.0))
    np.testing.assert_allclose(tape.gradient(total, x).numpy(), [0.9, 0.9, slope, slope], rtol=1e-5)
    sigmoid_grad = np.exp(-2.0) / (1 + np.exp(-2.0)) ** 2
    np.testing.assert_allclose(tape.gradient(total, layer.alpha).numpy(), -2.5, rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(total, layer.beta).numpy(), 2.5 * sigmoid_grad, rtol=1e-5)
    assert len(layer.trainable_weights) == 2
    fixed = AReLU(learnable=False)
    fixed.build((None, 4))
    assert fixed.trainable_weights == [] and len(fixed.non_trainable_weights) == 2


def test_arelu_save_load_round_trip(tmp_path):
    inputs = keras.Input((4,))
    outputs = AReLU(alpha=0.3, beta=1.0, learnable=False, name="act")(keras.layers.Dense(3)(inputs))
    model = keras.Model(inputs, outputs)
    model.get_layer("act").set_weights([np.float32(0.5), np.float32(-1.5)])
    model.save(tmp_path / "m.h5")
    loaded = keras.models.load_model(tmp_path / "m.h5")
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)
    assert loaded.get_layer("act").get_config()["learnable"] is False


@pytest.mark.parametrize("backbone,shapes", [
    ("dscnn", [(16, 16, 1), (64, 48, 1)]), ("dscnn_mlperf", [(10, 49, 1), (40, 49, 1)]),
    ("mobilenet", [(32, 32, 3), (64, 64, 1)]),
    ("mobilenet_v2", [(32, 32, 3), (48, 64, 3)]), ("densenet121", [(32, 32, 3), (48, 48, 3)]),
])
def test_every_backbone_builds_flat_at_two_sizes(backbone, shapes):
    assert backbone in list_models()
    for shape in shapes:
        model = create_model(backbone, input_shape=shape, num_classes=4, units=16, alpha=0.25 if "mobile" in backbone else 1.0)
        assert not [layer for layer in model.layers if isinstance(layer, keras.Model)]
        assert not [layer for layer in model.layers if isinstance(layer, keras.layers.Lambda)]
        assert model.output_shape == (None, 4) and model.input_shape == (None, *shape)
        assert [layer.name for layer in model.layers[-5:]] == [
            "head_pool", "head_dense", "head_arelu", "head_dropout", "head_predictions"]
        assert len(backbone_layers(model)) == len(model.layers) - 6
    if backbone == "dscnn":
        assert 20_000 <= create_model("dscnn", input_shape=(64, 64, 1), num_classes=10, units=64).count_params() <= 60_000


def test_local_weights_load_by_name_and_fold_to_grey(tmp_path):
    source = keras.applications.MobileNet(include_top=False, weights=None, alpha=0.25, input_shape=(32, 32, 3))
    path = tmp_path / "mobilenet_no_top.h5"
    source.save_weights(path)
    model = create_model("mobilenet", input_shape=(48, 48, 3), num_classes=3, units=8, alpha=0.25, weights=str(path))
    for name in ("conv1", "conv_pw_13_bn"):
        for ours, theirs in zip(model.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    grey = create_model("mobilenet", input_shape=(32, 32, 1), num_classes=3, units=8, alpha=0.25, weights=str(path))
    np.testing.assert_allclose(grey.get_layer("conv1").get_weights()[0][:, :, 0, :],
                               source.get_layer("conv1").get_weights()[0].sum(axis=2), rtol=1e-6)


def test_model_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="unknown backbone 'resnet9'; available: densenet121, dscnn"):
        create_model("resnet9", input_shape=(32, 32, 3), num_classes=2)
    with pytest.raises(UserError, match="image 24×24 is too small for mobilenet"):
        create_model("mobilenet", input_shape=(24, 24, 3), num_classes=2)
    source = keras.applications.MobileNet(include_top=False, weights=None, alpha=0.25, input_shape=(32, 32, 3))
    source.save_weights(tmp_path / "w.h5")
    with pytest.raises(UserError, match="weights of another architecture"):
        create_model("dscnn", input_shape=(32, 32, 1), num_classes=2, weights=str(tmp_path / "w.h5"))
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(UserError, match="not a readable HDF5"):
        create_model("dscnn", input_shape=(32, 32, 1), num_classes=2, weights=str(tmp_path / "text.h5"))
    from tf_keras.src.utils import data_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(data_utils, "get_file", offline)
    with pytest.raises(UserError, match=r"could not download the ImageNet weights .* --weights PATH.h5"):
        create_model("mobilenet", input_shape=(32, 32, 3), num_classes=2, alpha=0.25, weights="imagenet")

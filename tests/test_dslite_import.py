"""A model built and saved the way DeepSpectrumLite 1.0.2 does it, imported and compared."""
from __future__ import annotations

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
import tf_keras as keras  # noqa: E402

from conftest import run_cli  # noqa: E402
from dslite_tiny.models.trained import load_trained  # noqa: E402

HP = {"basemodel_name": ["mobilenet"], "weights": [""], "num_units": [16], "dropout": [0.25],
      "activation": ["arelu"], "sample_rate": [16000], "chunk_size": [1.0], "chunk_hop_size": [0.5],
      "stft_window_size": [0.032], "stft_hop_size": [0.016], "stft_fft_length": [0.032], "num_mel_bins": [64],
      "lower_edge_hertz": [0.0], "upper_edge_hertz": [8000.0], "mel_scale": [True], "db_scale": [True],
      "use_plot_images": [True], "num_mfccs": [0], "color_map": ["magma"], "image_width": [32],
      "image_height": [32], "resize_method": ["nearest"], "anti_alias": [False]}


def ARelu(x, alpha=0.9, beta=2.0):  # DSLite's lib/model/modules/arelu.py
    alpha = tf.clip_by_value(alpha, clip_value_min=0.01, clip_value_max=0.99)
    beta = 1 + tf.math.sigmoid(beta)
    return tf.nn.relu(x) * beta - tf.nn.relu(-x) * alpha


class AugmentableModel(keras.Model):  # DSLite's constructor signature
    def __init__(self, hy_params, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hy_params = hy_params

    def get_config(self):
        """The Keras of DSLite's era (TF 2.4) saved every functional subclass with its whole layer graph;
        tf_keras 2.21 would save only name/trainable for a custom __init__."""
        from tf_keras.src.engine.functional import get_network_config

        return get_network_config(self)


@pytest.fixture(params=["imagenet", ""], ids=["pretrained", "from-scratch"])
def dslite_files(tmp_path, request):
    """TransferBaseModel.create_model: Input → nested MobileNet → GAP → Flatten → Dense(ARelu) → Dropout → Dense.
    DSLite calls the backbone with training = (weights == ''); returns the files and the model in inference mode."""
    keras.utils.set_random_seed(5)
    hy = {**{k: v[0] for k, v in HP.items()}, "weights": request.param}
    inputs = keras.Input(shape=(32, 32, 3), dtype=tf.float32)
    base = keras.applications.mobilenet.MobileNet(weights=None, include_top=False)
    for layer in base.layers:  # non-trivial BatchNorm statistics, so a wrong copy shows
        if isinstance(layer, keras.layers.BatchNormalization):
            mean, var = layer.moving_mean.shape, layer.moving_variance.shape
            layer.moving_mean.assign(np.random.default_rng(1).normal(0, 0.1, mean).astype(np.float32))
            layer.moving_variance.assign(np.random.default_rng(2).uniform(0.5, 1.5, var).astype(np.float32))
    head = [keras.layers.GlobalAveragePooling2D(), keras.layers.Flatten(),
            keras.layers.Dense(hy["num_units"], activation=ARelu), keras.layers.Dropout(rate=hy["dropout"]),
            keras.layers.Dense(2, activation="softmax")]

    def classifier(tensor, training):
        x = base(tensor, training=training)
        for layer in head:
            x = layer(x)
        return x

    model = AugmentableModel(inputs=inputs, outputs=classifier(inputs, hy["weights"] == ""), hy_params=hy,
                             name="mobilenet")
    model.save(tmp_path / "dslite.h5")
    (tmp_path / "hp_config.json").write_text(json.dumps({**HP, "weights": [hy["weights"]]}))
    (tmp_path / "class_config.json").write_text(json.dumps({"negative": "Negative", "positive": "Positive"}))
    reference_input = keras.Input(shape=(32, 32, 3))
    return tmp_path, keras.Model(reference_input, classifier(reference_input, False))


def test_import_preserves_predictions(dslite_files):
    folder, original = dslite_files
    result = run_cli("import-dslite", str(folder / "dslite.h5"), "--hp-config", str(folder / "hp_config.json"),
                     "--class-config", str(folder / "class_config.json"), "--out", str(folder / "imported"))
    assert result.returncode == 0, result.stderr
    assert ("training=True" in result.stderr) == (json.loads((folder / "hp_config.json").read_text())["weights"] == [""])
    trained = load_trained(folder / "imported" / "model.h5")
    assert not [layer for layer in trained.model.layers if isinstance(layer, keras.Model)]
    x = np.random.default_rng(9).uniform(-1, 1, (6, 32, 32, 3)).astype(np.float32)
    assert np.max(np.abs(trained.model(x).numpy() - original(x).numpy())) <= 1e-5
    assert trained.classes == ("negative", "positive")
    config = trained.frontend_config
    assert (config.color_map, config.n_mels, config.resize, config.normalization) == ("magma", 64, "nearest", "tf")
    assert trained.sidecar.details["imported"]["max_abs_probability_difference"] <= 1e-5
    result = run_cli("compress", str(folder / "imported" / "model.h5"), "--out", str(folder / "out"))
    assert result.returncode == 2 and "names no dataset: pass --data DATA" in result.stderr, result.stderr


class ModernAugmentableModel(keras.Model):
    """DSLite's class saved by today's tf_keras: a custom __init__ keeps the graph out of the file."""

    def __init__(self, hy_params, *args, **kwargs):
        super().__init__(*args, **kwargs)


def test_file_without_the_layer_graph_is_explained(tmp_path):
    inputs = keras.Input((8,))
    model = ModernAugmentableModel({}, inputs=inputs, outputs=keras.layers.Dense(2)(inputs), name="mobilenet")
    model.save(tmp_path / "m.h5")
    (tmp_path / "hp.json").write_text(json.dumps(HP))
    (tmp_path / "cc.json").write_text(json.dumps({"a": "A", "b": "B"}))
    result = run_cli("import-dslite", str(tmp_path / "m.h5"), "--hp-config", str(tmp_path / "hp.json"),
                     "--class-config", str(tmp_path / "cc.json"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "holds no layer graph" in result.stderr, result.stderr


def test_dslite_model_needs_class_config_and_import(dslite_files, tmp_path):
    folder, _ = dslite_files
    result = run_cli("import-dslite", str(folder / "dslite.h5"), "--hp-config", str(folder / "hp_config.json"),
                     "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "Missing option '--class-config'" in result.stderr
    result = run_cli("predict", str(folder / "dslite.h5"), str(folder / "hp_config.json"))
    assert result.returncode == 2 and "a DeepSpectrumLite model: convert it first with 'dslite-tiny import-dslite" \
        in result.stderr and len(result.stderr.strip().splitlines()) == 1

"""Importing a model saved by DeepSpectrumLite 1.0.2 as an equivalent flat dslite-tiny model.

DSLite saves an ``AugmentableModel`` (a keras.Model subclass whose constructor needs ``hy_params``) with
its backbone as one nested sub-model and its head activation as the plain function ``ARelu``. Neither
loads without DSLite installed, and TFMOT refuses the nesting. Here the file is loaded with stand-ins,
the backbone's weights are copied by layer name into a flat model built by our registry, the head's two
Dense layers are copied in order, and the predictions of both models are compared before anything is
written.
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np

import dslite_tiny  # noqa: F401  (TF_USE_LEGACY_KERAS before tf_keras loads)
import tf_keras as keras

from dslite_tiny.config import FrontendConfig, load_config
from dslite_tiny.data.dslite import hp_config_to_frontend, read_class_config, read_hp_config
from dslite_tiny.errors import UserError
from dslite_tiny.models.registry import create_model
from dslite_tiny.models.trained import check_no_code, read_model_config, save_trained
from dslite_tiny.records import Sidecar

log = logging.getLogger(__name__)
SUPPORTED = ("densenet121", "mobilenet", "mobilenet_v2")
TOLERANCE = 1e-5  # max |Δ probability| between the DSLite model and the import


def dslite_arelu(x, alpha: float = 0.9, beta: float = 2.0):
    """DeepSpectrumLite's ``ARelu`` activation function (constant α, β)."""
    import tensorflow as tf

    alpha = tf.clip_by_value(alpha, 0.01, 0.99)
    return tf.nn.relu(x) * (1 + tf.math.sigmoid(beta)) - tf.nn.relu(-x) * alpha


class _AugmentableModel(keras.Model):
    """Stand-in for DSLite's AugmentableModel: only inference is needed, so ``hy_params`` is ignored."""

    def __init__(self, *args, hy_params=None, **kwargs):
        super().__init__(*args, **kwargs)


def import_dslite(model_path: str | Path, *, hp_config: str | Path, class_config: str | Path,
                  out_dir: str | Path, config_index: int = 0) -> tuple[Path, float]:
    """Write ``out_dir/model.h5`` + sidecar; returns its path and the max probability difference."""
    model_path, hp_config, class_config = Path(model_path), Path(hp_config), Path(class_config)
    hparams = read_hp_config(hp_config, index=config_index)
    classes = read_class_config(class_config)
    original = load_dslite_model(model_path)
    backbone_name = hparams.get("basemodel_name", original.name)
    if backbone_name not in SUPPORTED:
        raise UserError(f"backbone '{backbone_name}' cannot be imported; supported: {', '.join(SUPPORTED)}",
                        path=hp_config)
    if hparams.get("activation", "arelu") != "arelu":
        raise UserError(f"head activation '{hparams['activation']}' cannot be imported (only arelu)", path=hp_config)
    nested = [layer for layer in original.layers if isinstance(layer, keras.Model)]
    dense = [layer for layer in original.layers if isinstance(layer, keras.layers.Dense)]
    if len(nested) != 1 or len(dense) != 2:
        raise UserError("not the DeepSpectrumLite TransferBaseModel layout (one nested backbone, two Dense layers)",
                        path=model_path)
    if dense[1].units != len(classes):
        raise UserError(f"the model has {dense[1].units} outputs but {class_config.name} lists {len(classes)} classes",
                        path=class_config)
    frontend = load_config(FrontendConfig, "dslite-code",
                           (str(hp_config), hp_config_to_frontend(hparams, source=str(hp_config))), stage="frontend")
    input_shape = tuple(int(d) for d in original.input_shape[1:])
    if input_shape != frontend.image_shape:
        raise UserError(f"the model's input {input_shape} differs from the hp_config image "
                        f"{frontend.image_shape} (DSLite only handles square images)", path=model_path)
    flat = create_model(backbone_name, input_shape=input_shape, num_classes=len(classes), units=dense[0].units,
                        dropout=float(hparams.get("dropout", 0.25)), arelu_learnable=False)
    _copy_weights(nested[0], dense, flat)
    difference = _max_difference(original, flat, input_shape)
    if difference > TOLERANCE:
        raise UserError(f"the imported model's probabilities differ by {difference:.2e} (> {TOLERANCE:g})",
                        path=model_path)
    sidecar = Sidecar(tuple(classes), frontend, input_shape, backbone_name, details={
        "normalization": frontend.normalization,
        "imported": {"from": str(model_path), "hp_config": str(hp_config), "config_index": config_index,
                     "class_config": str(class_config), "max_abs_probability_difference": difference}})
    path = save_trained(flat, Path(out_dir) / "model.h5", sidecar)
    return path, difference


def load_dslite_model(path: Path):
    config = read_model_config(path)
    if "layers" not in config.get("config", {}):
        raise UserError(f"the file holds no layer graph (its {config.get('class_name', 'model')} config has only "
                        f"{', '.join(config.get('config', {})) or 'nothing'}): it was not saved by DeepSpectrumLite's "
                        f"Keras, which stored the whole functional graph", path=path)
    check_no_code(config, path=path)
    config, flipped = _inference_mode(_function_names(config))
    if flipped:
        warnings.warn(f"{path}: DeepSpectrumLite called the backbone with training=True (hp_config weights ''), so "
                      f"its BatchNorm used each batch's statistics even when predicting; the import uses the moving "
                      f"statistics, as any deployed model must, and is checked against that graph", stacklevel=2)
    try:
        model = keras.models.model_from_json(json.dumps(config), custom_objects={
            "AugmentableModel": _AugmentableModel, "ARelu": dslite_arelu})
        model.load_weights(path)
        return model
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UserError(f"cannot load as a DeepSpectrumLite Keras model ({' '.join(str(exc).split())[:200]})",
                        path=path) from None


def _function_names(config):
    """Activation functions as DSLite's Keras wrote them (the bare name, e.g. "ARelu"): newer Keras writes
    {"class_name": "function", "config": "ARelu", ...}, which custom_objects cannot resolve."""
    if isinstance(config, dict):
        if config.get("class_name") == "function" and isinstance(config.get("config"), str):
            return config["config"]
        return {key: _function_names(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_function_names(value) for value in config]
    return config


def _inference_mode(config):
    """Calls recorded with training=True → False; returns the config and how many were changed."""
    flipped = 0

    def walk(node):
        nonlocal flipped
        if isinstance(node, dict):
            if node.get("training") is True:
                flipped += 1
                node = {**node, "training": False}
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return node

    return walk(config), flipped


def _copy_weights(backbone, dense: list, flat) -> None:
    copied = 0
    for layer in backbone.layers:
        if not layer.get_weights():
            continue
        try:
            flat.get_layer(layer.name).set_weights(layer.get_weights())
        except ValueError as exc:
            raise UserError(f"backbone layer '{layer.name}' does not fit the rebuilt model ({exc})") from None
        copied += 1
    flat.get_layer("head_dense").set_weights(dense[0].get_weights())
    flat.get_layer("head_predictions").set_weights(dense[1].get_weights())
    log.info("copied %d backbone layers and the head", copied)


def _max_difference(original, flat, input_shape: tuple[int, ...]) -> float:
    x = np.random.default_rng(0).uniform(-1.0, 1.0, (4, *input_shape)).astype(np.float32)
    return float(np.max(np.abs(original(x, training=False).numpy() - flat(x, training=False).numpy())))

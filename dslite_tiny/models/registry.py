"""The backbone registry and ``create_model``: one flat functional tf_keras model per classifier.

TFMOT refuses nested models, so every backbone is built *on our input tensor* (keras.applications'
``input_tensor=``) and the head continues from its output tensor: the backbone's layers are layers of the
returned model, not a sub-model. The head is DeepSpectrumLite's: GlobalAveragePooling → Dense(units) →
AReLU → Dropout → Dense(classes, softmax), or without Dense and AReLU (``units`` 0, as MLPerf Tiny's
DS-CNN). Layers outside the backbone are named ``head_*``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import dslite_tiny  # noqa: F401  (TF_USE_LEGACY_KERAS before tf_keras loads)
import tf_keras as keras

from dslite_tiny.errors import UserError
from dslite_tiny.models.arelu import AReLU

HEAD_PREFIX = "head_"


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    build: Callable  # (input tensor, alpha, weights) → feature-map tensor
    normalization: str  # the frontend normalisation its ImageNet weights expect
    min_size: int
    imagenet: bool  # Keras can download ImageNet weights for it


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(name: str, *, normalization: str, min_size: int = 32, imagenet: bool = True) -> Callable:
    def decorator(build: Callable) -> Callable:
        BACKBONES[name] = BackboneSpec(name, build, normalization, min_size, imagenet)
        return build
    return decorator


def list_models() -> list[str]:
    return sorted(BACKBONES)


def get_backbone(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise UserError(f"unknown backbone '{name}'; available: {', '.join(list_models())}")
    return BACKBONES[name]


@register_backbone("densenet121", normalization="torch")
def _densenet121(inputs, alpha: float, weights: str | None):
    return keras.applications.DenseNet121(include_top=False, weights=weights, input_tensor=inputs).output


@register_backbone("mobilenet", normalization="tf")
def _mobilenet(inputs, alpha: float, weights: str | None):
    return keras.applications.MobileNet(include_top=False, weights=weights, input_tensor=inputs, alpha=alpha).output


@register_backbone("mobilenet_v2", normalization="tf")
def _mobilenet_v2(inputs, alpha: float, weights: str | None):
    return keras.applications.MobileNetV2(include_top=False, weights=weights, input_tensor=inputs, alpha=alpha).output


@register_backbone("dscnn", normalization="tf", min_size=16, imagenet=False)
def _dscnn(inputs, alpha: float, weights: str | None):
    """DS-CNN (Zhang et al. 2017, "Hello Edge"; the MLPerf Tiny KWS model) for images: a strided 3×3 conv,
    then four depthwise-separable blocks (strides 2, 1, 2, 1). 64 filters: ~21 k parameters. It always
    trains from scratch, often on small data: BatchNorm momentum 0.9 lets the moving statistics converge in
    tens of steps instead of hundreds (Keras' 0.99 left a 200-clip model at chance in inference mode)."""
    layers = keras.layers
    filters = max(8, int(round(64 * alpha)))
    x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name="dscnn_conv1")(inputs)
    x = layers.BatchNormalization(momentum=0.9, name="dscnn_conv1_bn")(x)
    x = layers.ReLU(name="dscnn_conv1_relu")(x)
    for block, stride in enumerate((2, 1, 2, 1), start=1):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"dscnn_dw{block}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"dscnn_dw{block}_bn")(x)
        x = layers.ReLU(name=f"dscnn_dw{block}_relu")(x)
        x = layers.Conv2D(filters, 1, use_bias=False, name=f"dscnn_pw{block}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"dscnn_pw{block}_bn")(x)
        x = layers.ReLU(name=f"dscnn_pw{block}_relu")(x)
    return x


@register_backbone("dscnn_mlperf", normalization="tf", min_size=8, imagenet=False)
def _dscnn_mlperf(inputs, alpha: float, weights: str | None):
    """MLPerf Tiny's keyword-spotting reference DS-CNN (Hello Edge's "DS-CNN small"): a 10×4 convolution of
    stride 2 over 10 frames × 4 coefficients (4 rows × 10 columns here: images have frequency in rows, time
    in columns), BatchNorm, ReLU, dropout 0.2, then four depthwise-separable blocks of 64 channels at stride
    1; every convolution has a bias, as the reference's. With ``units: 0`` the head is the reference's
    average pool and fully connected layer: 23,756 trainable parameters on a 10×49×1 MFCC input and 12
    classes (preset mlperf-dscnn). BatchNorm momentum 0.9, as ``dscnn``'s (the reference keeps Keras' 0.99)."""
    layers = keras.layers
    filters = max(8, int(round(64 * alpha)))
    x = layers.Conv2D(filters, (4, 10), strides=2, padding="same", name="mlperf_conv1")(inputs)
    x = layers.BatchNormalization(momentum=0.9, name="mlperf_conv1_bn")(x)
    x = layers.ReLU(name="mlperf_conv1_relu")(x)
    x = layers.Dropout(0.2, name="mlperf_conv1_dropout")(x)
    for block in range(1, 5):
        x = layers.DepthwiseConv2D(3, padding="same", name=f"mlperf_dw{block}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"mlperf_dw{block}_bn")(x)
        x = layers.ReLU(name=f"mlperf_dw{block}_relu")(x)
        x = layers.Conv2D(filters, 1, name=f"mlperf_pw{block}")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"mlperf_pw{block}_bn")(x)
        x = layers.ReLU(name=f"mlperf_pw{block}_relu")(x)
    return x


def create_model(backbone: str, *, input_shape: tuple[int, int, int], num_classes: int, units: int = 512,
                 dropout: float = 0.25, alpha: float = 1.0, arelu_learnable: bool = True,
                 weights: str | None = None) -> keras.Model:
    """A flat classifier; ``weights`` is None, 'imagenet' (Keras download) or a local no-top .h5 path;
    ``units`` 0 leaves out the head's hidden layer (Dense and AReLU): pooling, dropout, classifier."""
    spec = get_backbone(backbone)
    height, width, channels = input_shape
    if min(height, width) < spec.min_size:
        raise UserError(f"image {height}×{width} is too small for {backbone} (needs at least "
                        f"{spec.min_size}×{spec.min_size}); raise image_height/image_width")
    if weights == "imagenet" and (not spec.imagenet or channels != 3):
        raise UserError(f"--weights imagenet needs a backbone with ImageNet weights and 3 channels "
                        f"({backbone}, {channels} channel(s))")
    inputs = keras.Input(shape=input_shape, name="input")
    features = _build_backbone(spec, inputs, alpha, "imagenet" if weights == "imagenet" else None)
    x = keras.layers.GlobalAveragePooling2D(name=f"{HEAD_PREFIX}pool")(features)
    if units:
        x = keras.layers.Dense(units, name=f"{HEAD_PREFIX}dense")(x)
        x = AReLU(learnable=arelu_learnable, name=f"{HEAD_PREFIX}arelu")(x)
    x = keras.layers.Dropout(dropout, name=f"{HEAD_PREFIX}dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=f"{HEAD_PREFIX}predictions")(x)
    model = keras.Model(inputs, outputs, name=backbone)
    if weights not in (None, "imagenet"):
        from dslite_tiny.models.weights import load_backbone_weights

        load_backbone_weights(model, weights)
    return model


def backbone_layers(model: keras.Model) -> list:
    """The backbone's layers in order (everything but the input and the head)."""
    return [layer for layer in model.layers
            if not layer.name.startswith(HEAD_PREFIX) and not isinstance(layer, keras.layers.InputLayer)]


def _build_backbone(spec: BackboneSpec, inputs, alpha: float, weights: str | None):
    try:
        return spec.build(inputs, alpha, weights)
    except ValueError as exc:  # keras.applications' own argument checks (alpha, input size, ...)
        raise UserError(f"{spec.name}: {exc}") from None
    except Exception as exc:  # the ImageNet download failed (offline, proxy, ...)
        if weights != "imagenet":
            raise
        raise UserError(f"could not download the ImageNet weights of {spec.name} ({type(exc).__name__}: {exc}); "
                        f"offline, pass a local no-top weight file: --weights PATH.h5") from None

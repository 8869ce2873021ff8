"""dslite-tiny: DeepSpectrumLite-style audio classifiers, compressed and verified for phones and MCUs.

This is the one place that sets ``TF_USE_LEGACY_KERAS``: TFMOT 0.8 only wraps ``tf_keras`` (Keras 2)
objects, and TensorFlow reads the variable once, when it is first imported. Every module of the package
imports this package first, so the variable is set before any of them imports TensorFlow (TensorFlow
reads it when ``tf.keras`` is first touched).
"""
import os as _os
import warnings as _warnings

__version__ = "0.1.0"

if _os.environ.get("TF_USE_LEGACY_KERAS", "1") != "1":
    _warnings.warn("TF_USE_LEGACY_KERAS is overridden to 1: TFMOT needs tf.keras to be Keras 2 (tf_keras)",
                   stacklevel=2)
_os.environ["TF_USE_LEGACY_KERAS"] = "1"

"""dslite-tiny: DeepSpectrumLite-style audio classifiers, compressed and verified for phones and MCUs.

This is the one place that sets ``TF_USE_LEGACY_KERAS``: TFMOT 0.8 only wraps ``tf_keras`` (Keras 2)
objects, and TensorFlow reads the variable once, when it is first imported. Every module of the package
imports this package first, so the variable is set before any of them imports TensorFlow.
"""
import os as _os
import sys as _sys
import warnings as _warnings

__version__ = "0.1.0"

if "tensorflow" in _sys.modules and _os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    _warnings.warn(
        "TensorFlow was imported before dslite_tiny without TF_USE_LEGACY_KERAS=1; "
        "model building and compression need tf_keras: import dslite_tiny first.",
        stacklevel=2,
    )
_os.environ["TF_USE_LEGACY_KERAS"] = "1"

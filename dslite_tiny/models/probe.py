"""Intermediate values of a Keras model, computed batch by batch (images can be many; a probe model with
one output per wanted tensor runs once per batch)."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def probe_batches(model, tensors: list, images: np.ndarray, *, batch_size: int = 64) -> Iterator[list[np.ndarray]]:
    """For each batch of ``images``, the values of ``tensors`` (symbolic tensors of ``model``'s graph)."""
    import tf_keras as keras

    probe = keras.Model(model.inputs, list(tensors))
    for start in range(0, len(images), batch_size):
        values = probe(images[start:start + batch_size], training=False)
        yield [np.asarray(v) for v in (values if isinstance(values, (list, tuple)) else [values])]

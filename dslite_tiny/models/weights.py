"""Loading a local Keras weight file into a model by layer name, and saying how much matched.

Keras' own ``load_weights(by_name=True, skip_mismatch=True)`` is silent when nothing matches, which turns
"the wrong file" into "training from scratch" without a word. Here the matched layers are counted, a file
of another architecture is an error, and an ImageNet first convolution is folded to one input channel
(its RGB kernels summed) for grey-scale models.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dslite_tiny.errors import UserError

log = logging.getLogger(__name__)


def load_backbone_weights(model, path: str | Path) -> tuple[int, int]:
    """Set every backbone layer of ``model`` whose name and shapes match ``path``; returns (matched, in
    file). The head is never loaded: it belongs to this task, and matching it would let a whole other
    model pass for backbone weights."""
    from dslite_tiny.models.registry import backbone_layers

    path = Path(path)
    stored = read_layer_weights(path)
    layers = {layer.name: layer for layer in backbone_layers(model)}
    matched, mismatched = 0, []
    for name, values in stored.items():
        layer = layers.get(name)
        if layer is None:
            continue
        values = _fit_input_channels(values, [w.shape for w in layer.get_weights()])
        if values is None:
            mismatched.append(name)
            continue
        layer.set_weights(values)
        matched += 1
    if matched == 0:
        raise UserError(f"weights of another architecture: none of its {len(stored)} weighted layers matches a "
                        f"layer of {model.name} by name and shape", path=path)
    log.info("%s: loaded %d of %d weighted layers into %s%s", path, matched, len(stored), model.name,
             f" ({len(mismatched)} with other shapes skipped)" if mismatched else "")
    if mismatched:
        log.warning("%s: %d layers have other shapes and keep their initial weights, e.g. %s",
                    path, len(mismatched), mismatched[0])
    return matched, len(stored)


def read_layer_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """{layer name: weights} of a Keras HDF5 weight or model file."""
    import h5py

    if not path.is_file():
        raise UserError("no such weight file (give the Keras no-top .h5 with --weights PATH or --set weights=PATH, "
                        "or --weights imagenet to download it)", path=path)
    try:
        with h5py.File(path, "r") as handle:
            group = handle["model_weights"] if "model_weights" in handle else handle
            if "layer_names" not in group.attrs:
                raise UserError("an HDF5 file, but not Keras weights (no layer_names)", path=path)
            return {_text(name): [np.asarray(group[_text(name)][_text(w)])
                                  for w in group[_text(name)].attrs.get("weight_names", [])]
                    for name in group.attrs["layer_names"] if len(group[_text(name)].attrs.get("weight_names", []))}
    except OSError as exc:
        raise UserError(f"not a readable HDF5 (.h5) file ({exc})", path=path) from None


def _fit_input_channels(values: list[np.ndarray], shapes: list[tuple]) -> list[np.ndarray] | None:
    if len(values) != len(shapes):
        return None
    if all(v.shape == tuple(s) for v, s in zip(values, shapes)):
        return values
    first = values[0]
    if (first.ndim == 4 and tuple(shapes[0])[2] == 1 and first.shape[2] == 3
            and first.shape[:2] + first.shape[3:] == tuple(shapes[0])[:2] + tuple(shapes[0])[3:]):
        return [first.sum(axis=2, keepdims=True)] + values[1:]  # RGB kernels → one grey channel
    return None


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)

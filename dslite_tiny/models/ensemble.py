"""Several trained models as one: a flat Keras model that averages its members' class probabilities.

Averaging the probabilities of models trained with different seeds is the cheapest accuracy there is after
training (on Speech Commands, two `mcu-dscnn-wide` models score 0.932 where each scores 0.922), but a list of
models is not something the later stages can take. One flat functional model is: every member's layers are
rebuilt side by side on one shared input (renamed ``m<k>_<name>``, weights copied), then ``Average``; it
quantizes, converts and exports like any trained model (TFLite sees an ADD and a MUL at the end).

Members must agree on everything a trained model's sidecar promises: classes in order, frontend, input shape
and, when known, the data split (an ensemble of models that saw different speakers would have no honest
devel or test split).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dslite_tiny.errors import UserError
from dslite_tiny.models.trained import TrainedModel, load_trained, save_trained
from dslite_tiny.records import Sidecar

MAX_MEMBERS = 8
# What makes two training runs' splits the same split (``features`` counts chunks, which follow from these).
_SPLIT_KEYS = ("source", "split_method", "files", "speakers")


def ensemble_models(paths: Sequence[str | Path], *, out_dir: str | Path) -> Path:
    """Load the trained models ``paths``, check they can be averaged, and write ``out_dir/model.h5`` (+ sidecar):
    one model whose output is the mean of theirs."""
    if not 2 <= len(paths) <= MAX_MEMBERS:
        raise UserError(f"an ensemble takes 2 to {MAX_MEMBERS} models, not {len(paths)}")
    if len({Path(p).resolve() for p in paths}) != len(paths):
        raise UserError("the same model is named twice: an ensemble's members must be different models")
    members = [load_trained(path) for path in paths]
    check_members(members)
    return save_trained(merge_models([m.model for m in members]), Path(out_dir) / "model.h5", ensemble_sidecar(members))


def check_members(members: Sequence[TrainedModel]) -> None:
    """Refuse members that do not share classes, frontend (which fixes the input shape: ``load_trained``
    checked it) and data split, or that are not flat."""
    first = members[0]
    for member in members:
        _check_flat(member)
        if member is first:
            continue
        if member.classes != first.classes:
            raise UserError(f"its classes ({', '.join(member.classes)}) are not those of {first.path} "
                            f"({', '.join(first.classes)}), in that order", path=member.path)
        if member.frontend_config != first.frontend_config:
            raise UserError(f"it was trained on another frontend than {first.path}: members must see one image",
                            path=member.path)
        if _split(member) != _split(first):
            raise UserError(f"it was trained on another data split than {first.path}: an ensemble of models "
                            f"that saw different speakers or files has no honest devel or test split",
                            path=member.path)


def _split(member: TrainedModel) -> dict[str, Any] | None:
    data = member.sidecar.data
    return None if data is None else {key: data.get(key) for key in _SPLIT_KEYS}


def _check_flat(member: TrainedModel) -> None:
    """One input, one output, no nested model and no layer called twice: what ``merge_models`` can rebuild."""
    import tf_keras as keras

    model = member.model
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError("an ensemble member must have one input and one output", path=member.path)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            raise UserError(f"layer '{layer.name}' is a nested model: an ensemble member must be flat",
                            path=member.path)
        calls = len(layer._inbound_nodes)  # noqa: SLF001  (Keras's only record of where a layer is called)
        if calls != 1:
            raise UserError(f"layer '{layer.name}' is called {calls} times: an ensemble member's layers must each "
                            f"be called once", path=member.path)


def merge_models(models: Sequence[Any]):
    """One flat tf_keras model: each of ``models`` rebuilt layer by layer on a shared input, outputs averaged.

    Rebuilding (not calling each model as a layer) keeps the result flat, which TFMOT's quantization-aware
    training and the channel pruner need."""
    import tf_keras as keras

    shape = tuple(models[0].input_shape[1:])
    shared = keras.Input(shape=shape, name="input")
    outputs = [_rebuild(model, shared, prefix=f"m{k}_") for k, model in enumerate(models)]
    return keras.Model(shared, keras.layers.Average(name="average")(outputs), name="ensemble")


def _rebuild(model: Any, shared: Any, *, prefix: str):
    """``model``'s graph on ``shared``, each layer a renamed copy with the same weights; its output tensor."""
    import tensorflow as tf
    import tf_keras as keras

    tensors = {id(model.inputs[0]): shared}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        node = layer._inbound_nodes[0]  # noqa: SLF001
        args, kwargs = tf.nest.map_structure(lambda t: tensors.get(id(t), t), (node.call_args, node.call_kwargs))
        copy = layer.__class__.from_config({**layer.get_config(), "name": prefix + layer.name})
        output = copy(*args, **kwargs)
        copy.set_weights(layer.get_weights())
        tensors[id(layer.output)] = output
    return tensors[id(model.outputs[0])]


def ensemble_sidecar(members: Sequence[TrainedModel]) -> Sidecar:
    """The first member's sidecar (they agree on classes, frontend and split) without its training history,
    which describes one member; ``details["ensemble"]`` records every member's file, best epoch and config."""
    first = members[0].sidecar
    backbones = sorted({m.sidecar.backbone for m in members})
    listed = [{"file": str(m.path.resolve()), "backbone": m.sidecar.backbone, "best": m.sidecar.details.get("best"),
               "train": m.sidecar.details.get("train")} for m in members]
    details = {**{key: first.details[key] for key in ("normalization",) if key in first.details},
               "ensemble": {"combine": "mean of the members' class probabilities", "members": listed}}
    return Sidecar(first.classes, first.frontend, first.input_shape, "+".join(backbones), first.data,
                   details=details)

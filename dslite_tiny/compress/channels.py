"""Channel pruning: whole filters removed, and the model rebuilt smaller and dense, so every runtime (TFLite
Micro, the generated engine, LiteRT) does less work, unlike zeros that nothing skips.

Channels are traced through the graph as groups: a Conv2D or Dense layer starts one (its output channels);
BatchNormalization, activations, depthwise convolutions (depth multiplier 1), pooling, padding and dropout
carry it on unchanged; Add joins its inputs' groups into one, since a residual sum must keep the same
channels on every branch. A group ends where a layer consumes it through its kernel's input axis (the next
Conv2D or Dense). A group that reaches the model's output, a Concatenate (DenseNet), a Flatten or any other
layer whose channel axis this module does not follow stays whole (``frozen``); a Concatenate that would
need its inputs' groups cut is refused in one line, since DenseNet's growing concatenations are not handled.

Which channels to keep (summed over the producers of a joined group): by default (compress's
``slim_criterion``) the first-order Taylor estimate of how much the training loss would change without the
channel (Molchanov et al. 2019): per batch, (γ·∂L/∂γ)² of the BatchNormalization scale after each producer,
where the channel's output is multiplied before anything else sees it, averaged over the training set (over
the filter's weights where no BatchNormalization follows). It asks what the loss needs, not how large a
scale is: with the fade and 72 epochs it kept more of the float model than |γ| did (FSDD DS-CNN
``fsdd-40x49``, two seeds: −0.6 / −3.0 UAR points at 92.5 / 94.4 % agreement, against −1.8 / −3.8 at 92.7 /
92.5 %; Speech Commands ``mcu-dscnn-wide``, fold 1: 95.6 / 96.0 % against 94.4 / 95.6 %).
``criterion="batchnorm"`` is network slimming's |γ| (Liu et al. 2017), ``criterion="l2"`` the filters' L2
norms, which kept far less of the demo DS-CNN than |γ| (two seeds: −10.0 / −12.5 UAR points at 85 / 82 %
agreement, against +2.5 / +0.0 at 98 / 100 %): BatchNorm normalises a bias-free convolution's output, so the
filter's magnitude barely matters there.
One keep ratio for every prunable group is found by bisection so that the rebuilt model has at most the
target share of the original's multiply-accumulates; kept counts are multiples of 4 (the engine's SIMD
kernels take channels four at a time) and at least 4.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np

import dslite_tiny  # noqa: F401  (TF_USE_LEGACY_KERAS before tf_keras loads)
import tf_keras as keras

_PRODUCERS = (keras.layers.Conv2D, keras.layers.Dense)  # DepthwiseConv2D subclasses Conv2D: tested first
_CARRIERS = (keras.layers.BatchNormalization, keras.layers.ReLU, keras.layers.Activation, keras.layers.LeakyReLU,
             keras.layers.GlobalAveragePooling2D, keras.layers.AveragePooling2D, keras.layers.MaxPooling2D,
             keras.layers.ZeroPadding2D, keras.layers.Dropout)
CHANNEL_MULTIPLE = 4


class ChannelPruningError(ValueError):
    """A model this module cannot prune (the message names the layer)."""


@dataclasses.dataclass
class Group:
    """Channels that must be kept or removed together."""

    size: int
    producers: list[str] = dataclasses.field(default_factory=list)
    frozen: bool = False
    keep: np.ndarray | None = None  # sorted indices kept (None: all)


@dataclasses.dataclass(frozen=True)
class ChannelPlan:
    groups: tuple[Group, ...]
    out_group: dict[str, int]  # layer name → the group of its output channels
    in_group: dict[str, int]  # producer name → the group its kernel's input axis reads

    def kept(self) -> dict[str, tuple[int, int]]:
        """Producer → (kept, of) output channels."""
        return {name: (len(g.keep) if g.keep is not None else g.size, g.size)
                for g in self.groups for name in g.producers}


def trace_channels(model: keras.Model) -> ChannelPlan:
    """The channel groups of ``model`` (a functional model without nested models)."""
    parent: list[int] = []  # union-find over groups
    groups: list[Group] = []

    def new(size: int, frozen: bool = False) -> int:
        groups.append(Group(size, frozen=frozen))
        parent.append(len(parent))
        return len(groups) - 1

    def find(g: int) -> int:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    out_group: dict[str, int] = {}
    in_group: dict[str, int] = {}
    for layer in model.layers:
        inputs = [find(out_group[n.name]) for n in _inbound(layer)]
        out_group[layer.name] = _layer_group(layer, inputs, new, groups, parent, find, in_group)
    for output in model.outputs:
        groups[find(out_group[output._keras_history.layer.name])].frozen = True
    merged: dict[int, Group] = {}
    for g in range(len(groups)):
        root = find(g)
        if root != g:
            groups[root].producers += groups[g].producers
            groups[root].frozen |= groups[g].frozen
        merged.setdefault(root, groups[root])
    order = {root: i for i, root in enumerate(merged)}
    return ChannelPlan(tuple(merged.values()), {k: order[find(v)] for k, v in out_group.items()},
                       {k: order[find(v)] for k, v in in_group.items()})


def _layer_group(layer, inputs: list[int], new, groups: list[Group], parent: list[int], find, in_group) -> int:
    channels = layer.output_shape[-1] if not isinstance(layer.output_shape, list) else None
    if isinstance(layer, keras.layers.InputLayer):
        return new(channels, frozen=True)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        if layer.depth_multiplier != 1:
            groups[inputs[0]].frozen = True
            return new(channels, frozen=True)
        return inputs[0]
    if isinstance(layer, _PRODUCERS):
        if getattr(layer, "groups", 1) != 1:
            raise ChannelPruningError(f"layer {layer.name!r} is a grouped convolution")
        in_group[layer.name] = inputs[0]
        g = new(channels)
        groups[g].producers.append(layer.name)
        return g
    if isinstance(layer, keras.layers.Add):
        root = inputs[0]
        for other in inputs[1:]:
            parent[find(other)] = find(root)
        return find(root)
    if isinstance(layer, _CARRIERS) or layer.__class__.__name__ == "AReLU":
        return inputs[0]
    if isinstance(layer, keras.layers.Concatenate):
        raise ChannelPruningError(f"layer {layer.name!r} concatenates channel groups (DenseNet); channel "
                                  f"pruning handles residual Add but not Concatenate")
    for g in inputs:  # a layer whose channel axis is not followed here: its inputs stay whole
        groups[g].frozen = True
    return new(channels, frozen=True) if channels else (inputs[0] if inputs else new(0, frozen=True))


def _inbound(layer) -> list:
    if not layer._inbound_nodes:
        return []
    inbound = layer._inbound_nodes[0].inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


CRITERIA = ("batchnorm", "l2", "taylor")


def channel_importance(model: keras.Model, plan: ChannelPlan, *, criterion: str = "batchnorm",
                       batches: Iterable[tuple[np.ndarray, np.ndarray]] = ()) -> dict[int, np.ndarray]:
    """Per prunable group, each channel's importance, summed over the group's producers: the following
    BatchNorm's |γ| (``batchnorm``; the filter's L2 norm where no BatchNorm follows), the filter's L2 norm
    (``l2``), or the first-order Taylor estimate of the loss change if the channel were removed (``taylor``,
    Molchanov et al. 2019: per batch of ``batches``, (x, one-hot labels), (Σ θ·∂L/∂θ)² over the channel's
    BatchNorm γ, or over its filter where no BatchNorm follows, averaged over the batches)."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion {criterion!r}: one of {', '.join(CRITERIA)}")
    bn_after = {_inbound(layer)[0].name: layer for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization) and len(_inbound(layer)) == 1}
    prunable = [(index, group) for index, group in enumerate(plan.groups) if not group.frozen and group.producers]
    if criterion == "taylor":
        return _taylor(model, prunable, bn_after, batches)
    scores: dict[int, np.ndarray] = {}
    for index, group in prunable:
        total = np.zeros(group.size)
        for name in group.producers:
            bn = bn_after.get(name) if criterion == "batchnorm" else None
            if bn is not None and bn.scale:
                total += np.abs(bn.gamma.numpy())
            else:
                kernel = model.get_layer(name).kernel.numpy()
                total += np.sqrt((kernel.reshape(-1, kernel.shape[-1]) ** 2).sum(axis=0))
        scores[index] = total
    return scores


def _taylor(model: keras.Model, prunable: list[tuple[int, Group]], bn_after: dict,
            batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[int, np.ndarray]:
    """``channel_importance``'s ``taylor`` criterion: one gradient pass over ``batches`` (inference mode)."""
    import tensorflow as tf

    def channel_variable(name: str):
        bn = bn_after.get(name)
        return bn.gamma if bn is not None and bn.scale else model.get_layer(name).kernel

    variables = {name: channel_variable(name) for _, group in prunable for name in group.producers}
    totals = {name: np.zeros(v.shape[-1]) for name, v in variables.items()}
    count = 0
    for x, y in batches:
        with tf.GradientTape() as tape:
            tape.watch(list(variables.values()))  # frozen ones too (a fine-tune's BatchNorm does not train)
            loss = tf.reduce_mean(keras.losses.categorical_crossentropy(y, model(x, training=False)))
        grads = tape.gradient(loss, list(variables.values()))
        for (name, variable), grad in zip(variables.items(), grads):
            product = (variable * grad).numpy()
            totals[name] += product.reshape(-1, product.shape[-1]).sum(axis=0) ** 2
        count += 1
    if not count:
        raise ValueError("the taylor criterion needs training batches")
    return {index: sum(totals[name] for name in group.producers) / count for index, group in prunable}


def choose_channels(model: keras.Model, *, macs_fraction: float, criterion: str = "batchnorm",
                    batches: Iterable[tuple[np.ndarray, np.ndarray]] = ()) -> ChannelPlan:
    """The channel plan of ``model`` with each prunable group's kept channels chosen: one keep ratio for all,
    the largest whose rebuilt model has at most ``macs_fraction`` of the MACs (1.0 keeps every channel);
    ``batches``: the taylor criterion's (x, one-hot labels)."""
    if not 0 < macs_fraction <= 1:
        raise ValueError(f"macs_fraction {macs_fraction} must be in (0, 1]")
    plan = trace_channels(model)
    scores = channel_importance(model, plan, criterion=criterion, batches=batches)
    if not scores and macs_fraction < 1:
        raise ChannelPruningError("no layer's output channels can be pruned (every group reaches the output, a "
                                  "Flatten or a layer this module does not follow)")
    total = model_macs(model)
    ratio = 1.0
    if macs_fraction < 1:  # the largest keep ratio within the target: low always meets it, high never does

        def meets(r: float) -> bool:
            return model_macs(_rebuilt(model, _keep(plan, scores, r))) <= macs_fraction * total

        if not meets(0.0):
            raise ChannelPruningError(f"even {CHANNEL_MULTIPLE} channels per group leave more than "
                                      f"{macs_fraction:.0%} of the MACs")
        low, high = 0.0, 1.0
        for _ in range(12):
            middle = (low + high) / 2
            low, high = (middle, high) if meets(middle) else (low, middle)
        ratio = low
    return _keep(plan, scores, ratio)


def slim_model(model: keras.Model, *, macs_fraction: float, criterion: str = "batchnorm",
               plan: ChannelPlan | None = None) -> tuple[keras.Model, dict]:
    """``model`` rebuilt with the fewest channels whose MACs stay at most ``macs_fraction`` of its own
    (1.0 keeps every channel: the same function), with its weights copied; and what was kept. ``plan``: the
    channels chosen earlier (``choose_channels``, e.g. before ``ChannelFade`` zeroed the dropped ones)."""
    plan = plan or choose_channels(model, macs_fraction=macs_fraction, criterion=criterion)
    slim = _rebuilt(model, plan)
    _copy_weights(model, slim, plan)
    return slim, {"criterion": criterion,
                  "macs_fraction": round(model_macs(slim) / model_macs(model), 4),
                  "target_macs_fraction": macs_fraction,
                  "kept_channels": {name: list(counts) for name, counts in sorted(plan.kept().items())}}


class ChannelFade(keras.callbacks.Callback):
    """Fades the channels ``plan`` drops to exactly zero while the model being fine-tuned (the full-width
    model) learns to do without them: after every batch, each dropped channel's parameters are its starting
    values times 1 − ``progress(step)``, a ramp from 0 to 1. Faded are a producer's kernel column and bias,
    a depthwise channel's kernel and bias, and BatchNorm's γ and β (not its statistics), so from the ramp's
    end a dropped channel is 0 everywhere (every activation here maps 0 to 0) and ``slim_model(..., plan=)``
    removes it without changing the function. Cutting the channels at once instead throws the model far
    from its trained point (FSDD DS-CNN at 45 % of the MACs: devel agreement with the float model 0.68 after
    the first epoch of fine-tuning)."""

    def __init__(self, plan: ChannelPlan, progress):
        super().__init__()
        self.plan, self.progress, self.step = plan, progress, 0
        self.faded: list[tuple[object, np.ndarray, np.ndarray]] = []  # (variable, 0/1 kept mask, start)

    def on_train_begin(self, logs=None) -> None:
        self.faded = [(variable, kept, keras.backend.get_value(variable))
                      for layer in self.model.layers for variable, kept in self._dropped(layer)]

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.step += 1
        scale = 1.0 - self.progress(self.step)
        for variable, kept, start in self.faded:
            value = keras.backend.get_value(variable)
            variable.assign(np.where(kept, value, start * scale))

    def _dropped(self, layer) -> list[tuple[object, np.ndarray]]:
        """``layer``'s per-channel variables along a group with dropped channels, and its kept mask."""
        group = self.plan.groups[self.plan.out_group[layer.name]]
        if group.keep is None or len(group.keep) == group.size:
            return []
        keep = np.zeros(group.size, bool)
        keep[group.keep] = True
        if isinstance(layer, keras.layers.BatchNormalization):
            variables = [(v, 0) for v in (layer.gamma, layer.beta) if v is not None]
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            variables = [(layer.depthwise_kernel, 2)] + ([(layer.bias, 0)] if layer.use_bias else [])
        elif isinstance(layer, _PRODUCERS) and layer.name in group.producers:
            variables = [(layer.kernel, layer.kernel.shape.rank - 1)] + ([(layer.bias, 0)] if layer.use_bias else [])
        else:
            return []
        return [(v, np.expand_dims(keep, [a for a in range(v.shape.rank) if a != axis])) for v, axis in variables]


def _keep(plan: ChannelPlan, scores: dict[int, np.ndarray], ratio: float) -> ChannelPlan:
    """``plan`` with each scored group cut to ``ratio`` of its channels, its best-scored ones."""
    groups = list(plan.groups)
    for index, score in scores.items():
        group = groups[index]
        count = min(group.size, max(CHANNEL_MULTIPLE, CHANNEL_MULTIPLE * round(ratio * group.size / CHANNEL_MULTIPLE)))
        groups[index] = dataclasses.replace(group, keep=np.sort(np.argsort(-score, kind="stable")[:count]))
    return dataclasses.replace(plan, groups=tuple(groups))


def _rebuilt(model: keras.Model, plan: ChannelPlan) -> keras.Model:
    """A fresh (untrained) model with each producer's output cut to its group's kept channels."""
    config = model.get_config()
    for layer in config["layers"]:
        group = plan.groups[plan.out_group[layer["config"]["name"]]]
        if layer["config"]["name"] in group.producers and group.keep is not None:
            key = "filters" if "filters" in layer["config"] else "units"
            layer["config"][key] = int(len(group.keep))
    return keras.Model.from_config(config)


def _copy_weights(source: keras.Model, target: keras.Model, plan: ChannelPlan) -> None:
    """Each layer's weights cut to the kept channels: a producer's kernel along its output axis (its group)
    and its input axis (the group it reads); a carried layer's per-channel vectors along its group."""
    for old in source.layers:
        weights = old.get_weights()
        if not weights:
            continue
        out = plan.groups[plan.out_group[old.name]].keep
        cut = []
        for w in weights:
            if isinstance(old, keras.layers.DepthwiseConv2D):
                w = _take(w, out, 2 if w.ndim == 4 else 0)
            elif isinstance(old, _PRODUCERS):
                w = _take(w, out, w.ndim - 1)
                if w.ndim > 1:
                    w = _take(w, plan.groups[plan.in_group[old.name]].keep, w.ndim - 2)
            elif w.ndim == 1 and out is not None and w.shape[0] == plan.groups[plan.out_group[old.name]].size:
                w = _take(w, out, 0)
            cut.append(w)
        target.get_layer(old.name).set_weights(cut)


def _take(w: np.ndarray, keep: np.ndarray | None, axis: int) -> np.ndarray:
    return w if keep is None else np.take(w, keep, axis=axis)


def model_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one inference: Conv2D, DepthwiseConv2D and Dense layers."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            total += math.prod(layer.output_shape[1:]) * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            total += math.prod(layer.output_shape[1:]) * kh * kw * layer.input_shape[-1] // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input_shape[-1] * layer.units
    return total

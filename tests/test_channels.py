"""Channel pruning (compress/channels.py): whole channels removed along their dependencies (depthwise
convolutions follow their producer, residual Adds share one channel set), the model rebuilt dense and
smaller, the same function when nothing is removed, and what it cannot follow refused in one line."""
from __future__ import annotations

import numpy as np
import pytest

import dslite_tiny  # noqa: F401
import tf_keras as keras  # noqa: E402

from dslite_tiny.compress.channels import (ChannelPruningError, choose_channels, model_macs, slim_model,  # noqa: E402
                                          trace_channels)
from dslite_tiny.models.registry import create_model  # noqa: E402


def _inputs(model, count: int = 3) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(count, *model.input_shape[1:])).astype(np.float32)


BACKBONES = [("dscnn", (32, 32, 1), 1.0), ("mobilenet", (32, 32, 3), 0.25), ("mobilenet_v2", (32, 32, 3), 0.35)]


@pytest.mark.parametrize("backbone, shape, alpha", BACKBONES, ids=[b[0] for b in BACKBONES])
def test_channels_are_removed_along_their_dependencies(backbone, shape, alpha):
    model = create_model(backbone, input_shape=shape, num_classes=4, units=16, alpha=alpha)
    x = _inputs(model)
    same, details = slim_model(model, macs_fraction=1.0)
    np.testing.assert_array_equal(same(x).numpy(), model(x).numpy())  # nothing removed: the same function
    assert all(kept == total for kept, total in details["kept_channels"].values())
    slim, details = slim_model(model, macs_fraction=0.5)
    assert model_macs(slim) <= 0.5 * model_macs(model) and details["macs_fraction"] <= 0.5
    assert slim(x).shape == model(x).shape  # a consistent graph: every consumer reads what its producer keeps
    cut = {name: kept for name, (kept, total) in details["kept_channels"].items() if kept < total}
    assert cut and all(kept % 4 == 0 for kept in cut.values())
    assert details["kept_channels"][model.layers[-1].name][0] == 4  # the class scores stay whole
    # the taylor criterion runs through every backbone (a gradient for each group); counts follow the ratio alone
    labels = np.eye(4, dtype=np.float32)[np.arange(len(x)) % 4]
    taylor = choose_channels(model, macs_fraction=0.5, criterion="taylor", batches=[(x, labels)])
    assert taylor.kept() == {name: tuple(counts) for name, counts in details["kept_channels"].items()}


def test_residual_adds_share_one_channel_set():
    """MobileNetV2's projections into a residual sum are one group: both branches keep the same channels."""
    model = create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=4, units=16, alpha=0.35)
    plan = trace_channels(model)
    joined = [g for g in plan.groups if len(g.producers) > 1]
    assert joined and any(all("project" in p for p in g.producers) for g in joined)
    slim, details = slim_model(model, macs_fraction=0.6)
    for group in joined:
        assert len({details["kept_channels"][p][0] for p in group.producers}) == 1


def test_the_channels_with_the_smallest_batchnorm_scale_go_first():
    x = keras.Input((8, 8, 2))
    conv = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(x)
    normalised = keras.layers.BatchNormalization(name="bn")(conv)
    y = keras.layers.Dense(3, name="out")(keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(normalised)))
    model = keras.Model(x, y)
    gamma = np.array([0.1, 5, 0.2, 4, 3, 0.3, 2, 1], np.float32)
    bn = model.get_layer("bn")
    bn.set_weights([gamma, *bn.get_weights()[1:]])
    slim, details = slim_model(model, macs_fraction=0.6)
    assert details["kept_channels"]["conv"] == [4, 8]
    np.testing.assert_array_equal(slim.get_layer("bn").get_weights()[0], [5, 4, 3, 2])  # in the original order
    np.testing.assert_array_equal(slim.get_layer("out").get_weights()[0],
                                  model.get_layer("out").get_weights()[0][[1, 3, 4, 6]])
    norms = np.sqrt((model.get_layer("conv").get_weights()[0].reshape(-1, 8) ** 2).sum(axis=0))
    _, by_norm = slim_model(model, macs_fraction=0.6, criterion="l2")  # the filters' own norms instead
    assert by_norm["criterion"] == "l2" and by_norm["kept_channels"]["conv"] == [4, 8]
    l2 = slim_model(model, macs_fraction=0.6, criterion="l2")[0]
    np.testing.assert_array_equal(l2.get_layer("conv").get_weights()[0],
                                  model.get_layer("conv").get_weights()[0][..., np.sort(np.argsort(-norms)[:4])])


def test_the_taylor_criterion_drops_what_the_loss_does_not_need():
    """Channels with the largest BatchNorm scale that the classifier ignores cost the loss nothing: the
    Taylor criterion drops them first where the scale criterion keeps them; it needs training batches."""
    x = keras.Input((8, 8, 2))
    normalised = keras.layers.BatchNormalization(name="bn")(
        keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(x))
    y = keras.layers.Dense(3, activation="softmax", name="out")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(normalised)))
    model = keras.Model(x, y)
    bn, out = model.get_layer("bn"), model.get_layer("out")
    bn.set_weights([np.array([0.1, 5, 0.2, 4, 3, 0.3, 2, 1], np.float32), *bn.get_weights()[1:]])
    kernel, bias = out.get_weights()
    kernel[[1, 3, 4, 6]] = 0  # the four largest scales reach no class score
    out.set_weights([kernel, bias])
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(16, 8, 8, 2)).astype(np.float32), np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)])
               for _ in range(3)]
    assert slim_model(model, macs_fraction=0.6)[1]["kept_channels"]["conv"] == [4, 8]
    plan = choose_channels(model, macs_fraction=0.6, criterion="taylor", batches=batches)
    assert list(plan.groups[plan.out_group["conv"]].keep) == [0, 2, 5, 7]
    with pytest.raises(ValueError, match="the taylor criterion needs training batches"):
        choose_channels(model, macs_fraction=0.6, criterion="taylor")


def test_a_concatenation_is_refused_in_one_line():
    x = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", name="a")(x)
    b = keras.layers.Conv2D(8, 3, padding="same", name="b")(a)
    y = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(keras.layers.Concatenate(name="cat")([a, b])))
    with pytest.raises(ChannelPruningError, match="layer 'cat' concatenates channel groups \\(DenseNet\\)"):
        slim_model(keras.Model(x, y), macs_fraction=0.5)


@pytest.mark.parametrize("backbone, shape, alpha", BACKBONES[::2], ids=[b[0] for b in BACKBONES[::2]])
def test_faded_channels_are_zero_and_their_removal_keeps_the_function(backbone, shape, alpha):
    """ChannelFade while the full model trains: the dropped channels reach zero at the ramp's end (halfway
    they are half their start), whatever the optimizer did to them, so cutting them changes nothing."""
    from dslite_tiny.compress.channels import ChannelFade, choose_channels
    from dslite_tiny.compress.finetune import set_finetunable

    model = create_model(backbone, input_shape=shape, num_classes=4, units=16, alpha=alpha)
    plan = choose_channels(model, macs_fraction=0.5)
    dropped = [g for g in plan.groups if g.keep is not None and len(g.keep) < g.size][-1]  # the head's
    name = dropped.producers[0]
    start = model.get_layer(name).kernel.numpy()
    gone = np.setdiff1d(np.arange(dropped.size), dropped.keep)
    set_finetunable(model)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    x, y = _inputs(model, 8), np.eye(4, dtype=np.float32)[np.arange(8) % 4]
    fade = ChannelFade(plan, lambda step: min(1.0, step / 4))
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[fade], verbose=0)  # 2 of the ramp's 4 steps
    np.testing.assert_allclose(model.get_layer(name).kernel.numpy()[..., gone], start[..., gone] / 2, rtol=1e-6)
    model.fit(x, y, batch_size=4, epochs=2, callbacks=[fade], verbose=0)
    assert not np.any(model.get_layer(name).kernel.numpy()[..., gone])
    slim, _ = slim_model(model, macs_fraction=0.5, plan=plan)
    assert model_macs(slim) <= 0.5 * model_macs(model)
    np.testing.assert_allclose(slim(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-6)

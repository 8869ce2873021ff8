"""Compression: every variant built, converted and measured on a tiny trained model; pruning, PQAT, QAT of
DenseNet-style blocks and the AReLU head; the flatbuffer and TFLM measurements; resume and failure."""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import dslite_tiny  # noqa: F401
import tf_keras as keras  # noqa: E402

from dslite_tiny.compress import recipes  # noqa: E402
from dslite_tiny.compress.convert import ConversionError, convert_model  # noqa: E402
from dslite_tiny.compress.pipeline import run_compress  # noqa: E402
from dslite_tiny.records import SUMMARY_COLUMNS  # noqa: E402
from dslite_tiny.compress.prune import (PruningSchedule, layer_sparsities, prune_model, strip_pruning,  # noqa: E402
                                        weight_layer_names)
from dslite_tiny.compress.finetune import distillation_loss  # noqa: E402
from dslite_tiny.train.distill import soften as soft_targets  # noqa: E402
from dslite_tiny.compress.ptq import correct_bias, correct_depthwise_bias, int8_rounding_error  # noqa: E402
from dslite_tiny.compress.quantize import calibrate_ranges, foldable_batchnorms, quantize_model  # noqa: E402
from dslite_tiny.config import VARIANTS, CompressConfig, DataConfig, TrainConfig, load_config  # noqa: E402
from dslite_tiny.engine.codegen import generate  # noqa: E402
from dslite_tiny.engine.graph import read_graph  # noqa: E402
from dslite_tiny.engine.sparse import block_zero_share  # noqa: E402
from dslite_tiny.data.cache import FeatureCache  # noqa: E402
from dslite_tiny.measure.flatbuffer import describe_tflite, graph_contents, pruned_sparsity  # noqa: E402
from dslite_tiny.measure.layer_error import layer_errors  # noqa: E402
from dslite_tiny.measure.tflm import ALIGNMENT, _fits, check_tflm  # noqa: E402
from dslite_tiny.models.arelu import AReLU, fold_arelu  # noqa: E402
from dslite_tiny.models.registry import BACKBONES, create_model, register_backbone  # noqa: E402
from dslite_tiny.train.run import run_training  # noqa: E402

FAST = {"prune_epochs": 2, "qat_epochs": 1, "cluster_epochs": 1, "slim_epochs": 1, "latency_runs": 3,
        "latency_warmup": 1, "min_weights": 256, "representative_chunks": 20}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_data):
    root = tmp_path_factory.mktemp("compress")
    data = load_config(DataConfig, demo_data, stage="data")
    config = load_config(TrainConfig, "mcu-dscnn", ("test", {"epochs": 12, "units": 32}), stage="train")
    cache = FeatureCache(root / "cache")
    result = run_training(data, config, out_dir=root / "model", cache=cache)
    return result.path, cache


def _config(**overrides) -> CompressConfig:
    return load_config(CompressConfig, ("test", {**FAST, **overrides}), stage="compress")


def test_every_variant_is_built_measured_and_resumed(trained, tmp_path):
    model_path, cache = trained
    out = tmp_path / "out"
    rows = []
    result = run_compress(model_path, config=_config(variants=list(VARIANTS)), out_dir=out, cache=cache,
                          on_variant=rows.append)
    assert [r["variant"] for r in result.rows] == list(VARIANTS)
    assert all(r["status"] == "ok" for r in result.rows), [(r["variant"], r["reason"]) for r in result.rows]
    for name in VARIANTS:
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert (out / name / "model.tflite").stat().st_size == metrics["size"]["tflite_bytes"]
        assert metrics["accuracy"]["chunks"]["n"] == result.reference.accuracy["chunks"]["n"] > 0
        dtype = recipes.integer_dtype(name) or "float32"
        assert (metrics["input"]["dtype"], metrics["output"]["dtype"]) == (dtype, dtype)
        if dtype != "float32":  # int16x8 too: TFLM has int16 kernels for every op of these models
            assert metrics["tflm"]["ok"] and metrics["tflm"]["arena_bytes"] > 0 and not metrics["float_ops"]
            record = metrics["layer_error"]
            if name == "slim-int8":  # its inner tensors have fewer channels than the float model's: the output only
                assert [t["layer"] for t in record["tensors"]] == ["head_predictions"], record
            else:
                assert record["chunks"] > 0 and len(record["tensors"]) >= 10 and len(record["worst"]) == 3, name
                assert record["tensors"][-1]["layer"] == "head_predictions" and record["tensors"][-1]["sqnr_db"] > 10
        for key in ("prune_history", "qat_history", "cluster_history"):
            for epoch in metrics.get("details", {}).get(key, []):  # distilled from the float model
                assert 0 <= epoch["devel_agreement"] <= 1 and epoch["score"] is not None, (name, key)
        if name in ("pruned-int8", "pqat-int8", "clustered-int8"):
            assert abs(metrics["sparsity"]["pruned_layers"] - 0.5) <= 0.03, name
        if name == "slim-int8":  # fewer channels: fewer MACs, constants and Cortex-M4 instructions than int8
            int8 = json.loads((out / "int8" / "metrics.json").read_text())
            assert metrics["details"]["macs_fraction"] <= 0.5 and metrics["size"]["macs"] < 0.55 * int8["size"]["macs"]
            details = metrics["details"]
            assert details["kept_channels"]["dscnn_pw1"][0] < 64 and len(details["slim_history"]) == 2
            m4, m4_int8 = metrics["cortex_m4"], int8["cortex_m4"]
            assert m4["ok"] and m4["constant_bytes"] < 0.6 * m4_int8["constant_bytes"]
            if m4["method"] == "qemu-icount":
                assert m4["instructions"] < 0.7 * m4_int8["instructions"]
    sqnr = {name: np.mean([t["sqnr_db"] for t in json.loads((out / name / "metrics.json").read_text())
                           ["layer_error"]["tensors"]]) for name in ("int8", "int16x8")}
    assert sqnr["int16x8"] > sqnr["int8"] + 6, sqnr  # 16-bit activations: far less error in every tensor
    table = list(csv.DictReader((out / "summary.csv").open()))
    assert tuple(table[0]) == SUMMARY_COLUMNS and len(table) == len(VARIANTS)
    assert float(table[VARIANTS.index("int8")]["uar"]) >= float(table[0]["uar"]) - 0.15
    assert (out / "compress.log").read_text().count("building") == len(VARIANTS)

    before = {name: (out / name / "metrics.json").stat().st_mtime_ns for name in VARIANTS}
    again = run_compress(model_path, config=_config(variants=list(VARIANTS)), out_dir=out, cache=cache)
    assert [r["status"] for r in again.rows] == ["ok"] * len(VARIANTS)
    assert before == {name: (out / name / "metrics.json").stat().st_mtime_ns for name in VARIANTS}
    assert (out / "compress.log").read_text().count("skipped") == len(VARIANTS)
    run_compress(model_path, config=_config(variants=["int8", "slim-int8"], slim_macs=0.4), out_dir=out,
                 cache=cache)  # a field only slim-int8 reads: int8 is reused, slim-int8 rebuilt
    assert (out / "int8" / "metrics.json").stat().st_mtime_ns == before["int8"]
    assert (out / "slim-int8" / "metrics.json").stat().st_mtime_ns != before["slim-int8"]
    assert "slim-int8: rebuilding: the earlier result came from another config: slim_macs 0.5 (now 0.4)" in \
        (out / "compress.log").read_text()


def test_a_failing_variant_does_not_stop_the_others(trained, tmp_path, monkeypatch):
    model_path, cache = trained

    def broken(ctx):
        raise RuntimeError("forced failure")

    monkeypatch.setitem(recipes.RECIPES, "float16", broken)
    result = run_compress(model_path, config=_config(variants=["float16", "int8"]), out_dir=tmp_path, cache=cache)
    status = {r["variant"]: (r["status"], r["reason"]) for r in result.rows}
    assert status == {"float16": ("failed", "RuntimeError: forced failure"), "int8": ("ok", "")}
    monkeypatch.undo()
    rerun = run_compress(model_path, config=_config(variants=["float16", "int8"]), out_dir=tmp_path, cache=cache)
    assert [r["status"] for r in rerun.rows] == ["ok", "ok"]  # a failed variant is retried, not skipped


def _random_classifier(backbone: str = "dscnn", shape=(32, 32, 3)) -> keras.Model:
    keras.utils.set_random_seed(0)  # the same model in every run: thresholds on its errors must not flake
    model = create_model(backbone, input_shape=shape, num_classes=3, units=32)
    arelu = model.get_layer("head_arelu")
    arelu.alpha.assign(0.3)
    arelu.beta.assign(-0.5)
    for name in ("head_dense", "head_predictions"):  # spread the random model's scores away from uniform
        layer = model.get_layer(name)
        layer.kernel.assign(layer.kernel * 100.0)
    return model


@pytest.mark.parametrize("kind", ["int8", "qat"])
def test_conversion_gives_the_keras_converters_flatbuffer(kind, monkeypatch):
    """``convert_model`` traces the model's function instead of saving the Keras model first (``_converter``):
    the result must be what ``from_keras_model`` gives, signature and tensor names included."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from dslite_tiny.compress import convert

    folded = fold_arelu(_random_classifier())
    x, _ = _data(24)
    model = quantize_model(folded) if kind == "qat" else folded
    mine = convert_model(model, "int8", representative=x)
    monkeypatch.setattr(convert, "_converter", tf.lite.TFLiteConverter.from_keras_model)
    keras_path = convert_model(model, "int8", representative=x)
    ours, theirs = Interpreter(model_content=mine), Interpreter(model_content=keras_path)
    assert ours.get_signature_list() == theirs.get_signature_list() == {
        "serving_default": {"inputs": [model.input_names[0]], "outputs": [model.output_names[0]]}}
    assert graph_contents(mine) == graph_contents(keras_path)


def test_a_model_with_two_outputs_is_refused_before_conversion():
    x = keras.Input((4, 4, 1))
    y = keras.layers.Flatten()(x)
    model = keras.Model(x, [keras.layers.Dense(2)(y), keras.layers.Dense(3)(y)])
    with pytest.raises(ConversionError, match="one input and one output; this model has 1 and 2"):
        convert_model(model, "float32")


def _data(n: int = 96, shape=(32, 32, 3), seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, *shape)).astype(np.float32), np.eye(3)[rng.integers(0, 3, n)]


def test_calibrated_qat_starts_where_post_training_quantization_is():
    """TFMOT's initial [-6, 6] ranges make an untrained QAT model's int8 activations mostly zero; calibrated
    ranges give the PTQ model's accuracy before the first step, tensor by tensor."""
    folded = fold_arelu(_random_classifier())
    x, _ = _data()
    ptq = layer_errors(convert_model(folded, "int8", representative=x), folded, x[:32])
    raw = quantize_model(folded)
    calibrated = quantize_model(folded)
    assert calibrate_ranges(calibrated, folded, x) > 10
    errors = {name: layer_errors(convert_model(model, "int8", representative=x), folded, x[:32])
              for name, model in (("raw", raw), ("calibrated", calibrated))}
    output_sqnr = {name: record["tensors"][-1]["sqnr_db"] for name, record in errors.items()}
    assert output_sqnr["calibrated"] >= ptq["tensors"][-1]["sqnr_db"] - 3
    assert output_sqnr["raw"] < output_sqnr["calibrated"] - 10
    for mine, reference in zip(errors["calibrated"]["tensors"], ptq["tensors"]):
        assert mine["layer"] == reference["layer"]
        assert mine["sqnr_db"] >= reference["sqnr_db"] - 6, mine


def test_qat_quantizes_depthwise_kernels_per_channel_as_ptq_does():
    """TFMOT alone fake-quantizes a depthwise kernel on one grid before BatchNorm folds into it; the
    converted kernel then keeps few int8 levels in channels with a small BN factor. With
    ``PerChannelDepthwise`` an untrained QAT model's depthwise kernels are PTQ's, to the last bit."""
    model = fold_arelu(_random_classifier())
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):  # BN factors spread as in trained models
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.05, 3.0, gamma.shape).astype(np.float32), beta, mean, variance])
    x, _ = _data()
    qat = quantize_model(model)
    calibrate_ranges(qat, model, x)
    kernels = {name: _depthwise_kernels(convert_model(m, "int8", representative=x))
               for name, m in (("ptq", model), ("qat", qat))}
    assert len(kernels["qat"]) == len(kernels["ptq"]) >= 2
    for (values, scales), (reference, reference_scales) in zip(kernels["qat"], kernels["ptq"]):
        assert np.all(np.abs(values).reshape(-1, values.shape[-1]).max(axis=0) == 127)  # a full grid per channel
        np.testing.assert_array_equal(values, reference)
        np.testing.assert_allclose(scales, reference_scales, rtol=1e-6)


def _depthwise_kernels(data: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    """The int8 kernel and per-channel scales of every DEPTHWISE_CONV_2D, in graph order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    return [(interpreter.get_tensor(op["inputs"][1]), details[op["inputs"][1]]["quantization_parameters"]["scales"])
            for op in interpreter._get_ops_details() if op["op_name"] == "DEPTHWISE_CONV_2D"]


def _with_int8_kernels(model):
    """A copy whose kernels are rounded to the int8 grid the converter uses (float activations)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for layer in copy.layers:
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        if depthwise or isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel = layer.depthwise_kernel if depthwise else layer.kernel
            kernel.assign(kernel + int8_rounding_error(kernel.numpy(), 2 if depthwise else -1))
    return copy


def test_int8_rounding_error_is_the_converters_per_channel_grid():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype(np.float32)
    error = int8_rounding_error(kernel, -1)
    scale = np.abs(kernel).reshape(-1, 5).max(axis=0) / 127
    steps = (kernel + error) / scale
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-4)  # every weight on its channel's grid
    assert np.all(np.abs(error) <= scale / 2 + 1e-7)
    assert not np.any(int8_rounding_error(np.round(steps) * scale, -1) > 1e-6)  # on the grid: no error


def test_bias_correction_removes_the_mean_shift_of_int8_weights():
    folded = fold_arelu(_random_classifier())
    x, _ = _data()
    before = folded.get_weights()
    corrected, record = correct_bias(folded, x)
    assert "dscnn_pw1" in record["layers"] and "head_dense" in record["layers"] and not record["not_correctable"]
    assert all(np.array_equal(a, b) for a, b in zip(before, folded.get_weights()))  # the source is untouched
    assert not all(np.array_equal(a, b) for a, b in zip(before, corrected.get_weights()))

    def shift(model, layer="dscnn_pw2_bn"):
        probe = keras.Model(model.inputs, model.get_layer(layer).output)
        return float(np.abs((probe(x).numpy() - keras.Model(folded.inputs, folded.get_layer(layer).output)(x)
                             .numpy()).mean(axis=(0, 1, 2))).mean())
    plain, repaired = shift(_with_int8_kernels(folded)), shift(_with_int8_kernels(corrected))
    assert repaired < plain / 3, (plain, repaired)
    errors = {name: np.mean([t["sqnr_db"] for t in layer_errors(
        convert_model(model, "int8", representative=x), folded, x[:32])["tensors"]])
        for name, model in (("plain", folded), ("corrected", corrected))}
    assert errors["corrected"] > errors["plain"], errors


def test_qat_depthwise_bias_correction_removes_the_shift_qat_cannot_see():
    """QAT depthwise kernels are float until conversion, so their rounding shift is corrected after
    training, in the BatchNorm that follows inside the QAT model."""
    folded = fold_arelu(_random_classifier())
    x, _ = _data()
    qat = quantize_model(folded)
    calibrate_ranges(qat, folded, x)
    plain = convert_model(qat, "int8", representative=x)
    record = correct_depthwise_bias(qat, x)
    assert {"dscnn_dw1", "dscnn_dw2"} <= set(record["layers"]) and not record["not_correctable"]
    corrected = convert_model(qat, "int8", representative=x)

    def depthwise_sqnr(data: bytes) -> float:
        tensors = layer_errors(data, folded, x[:32])["tensors"]
        return float(np.mean([t["sqnr_db"] for t in tensors if t["op"] == "DEPTHWISE_CONV_2D"]))
    assert depthwise_sqnr(corrected) > depthwise_sqnr(plain), (depthwise_sqnr(plain), depthwise_sqnr(corrected))


def test_layer_error_record_names_where_quantization_hurts():
    folded = fold_arelu(_random_classifier())
    x, _ = _data()
    good = layer_errors(convert_model(folded, "int8", representative=x), folded, x[:32])
    relus = [layer.name for layer in folded.layers if layer.name.endswith("_relu")]
    assert [t["layer"] for t in good["tensors"] if t["layer"] in relus] == relus  # every block, in order
    assert all(0.1 < t["rmse_scale"] < 2.0 and t["sqnr_db"] > 20 for t in good["tensors"]), good["tensors"]
    wide = layer_errors(convert_model(folded, "int8", representative=x * 40), folded, x[:32])  # ranges 40× too wide
    assert wide["tensors"][0]["sqnr_db"] < good["tensors"][0]["sqnr_db"] - 15
    assert set(good["worst"]) <= {t["layer"] for t in good["tensors"]} and len(good["worst"]) == 3


def test_distillation_targets_and_loss():
    teacher = np.array([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]], np.float32)
    np.testing.assert_allclose(soft_targets(teacher, 1.0), teacher, rtol=1e-5)
    hot = soft_targets(teacher, 50.0)
    assert np.all(hot.max(axis=1) - hot.min(axis=1) < 0.1)  # a high temperature flattens towards uniform
    labels = np.eye(3, dtype=np.float32)[[1, 2]]
    targets = np.concatenate([labels, soft_targets(teacher, 2.0)], axis=1)
    hard_only = distillation_loss(3, 0.0, 2.0)(targets, teacher).numpy()
    np.testing.assert_allclose(hard_only, -np.log([0.2, 0.9]), rtol=1e-5)
    soft_only = distillation_loss(3, 1.0, 2.0)
    student = np.array([[0.1, 0.2, 0.7], [0.3, 0.3, 0.4]], np.float32)
    # the teacher's own probabilities are the optimum of the soft term
    assert np.all(soft_only(targets, teacher).numpy() < soft_only(targets, student).numpy())


def test_fold_arelu_is_exact_and_leaves_one_leaky_relu():
    model = _random_classifier()
    folded = fold_arelu(model)
    x, _ = _data(16)
    error = np.abs(folded(x).numpy() - model(x).numpy()).max()
    assert error <= 1e-5 and model(x).numpy().std(axis=1).max() > 1e-3  # scores that differ between classes
    assert not any(isinstance(layer, AReLU) for layer in folded.layers)
    assert isinstance(folded.get_layer("head_arelu"), keras.layers.LeakyReLU)
    model.get_layer("head_arelu").beta.assign(3.0)  # the fold is a copy, frozen at the values it saw
    assert np.abs(folded(x).numpy() - model(x).numpy()).max() > max(1e-4, 100 * error)


def _prune(model, x, y, sparsity=0.5, allocation="uniform", pattern="unstructured"):
    layers = weight_layer_names(model, min_weights=256)
    schedule = PruningSchedule.fit(sparsity, 12)
    wrapped, callback = prune_model(model, layer_sparsities(model, layers, sparsity, allocation), schedule,
                                    pattern=pattern)
    wrapped.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    wrapped.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[callback])
    return strip_pruning(wrapped), layers


def _qat_sparsity(pruned, layers, x, y, preserve: str) -> float:
    qat = quantize_model(pruned, preserve=preserve)
    qat.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    qat.fit(x, y, batch_size=32, epochs=2, verbose=0)
    described = describe_tflite(convert_model(qat, "int8", representative=x[:8]))
    return pruned_sparsity(described["sparsity"]["layers"], layers)


def test_pqat_keeps_the_sparsity_that_plain_qat_loses():
    """Block pruning (the default pattern) through training, conversion and PQAT: the int8 weights of the
    pruned layers are zero in half of the engine's blocks, and the engine stores them block-sparse."""
    x, y = _data()
    pruned, layers = _prune(fold_arelu(_random_classifier()), x, y, pattern="blocks")
    data = convert_model(pruned, "int8", representative=x[:8])
    pruned_int8 = describe_tflite(data)
    assert abs(pruned_sparsity(pruned_int8["sparsity"]["layers"], layers) - 0.5) <= 0.03
    graph = read_graph(data, "pruned.tflite")
    pointwise = [graph.tensors[op.inputs[1]].data for op in graph.ops if op.name == "CONV_2D"
                 and graph.tensors[op.inputs[1]].shape[1:3] == (1, 1)]
    assert pointwise and all(abs(block_zero_share(w.reshape(len(w), -1)) - 0.5) <= 0.03 for w in pointwise)
    assert len(generate(data, "pruned.tflite", name="m", provenance=[]).sparse_ops) >= len(pointwise)
    assert _qat_sparsity(pruned, layers, x, y, "sparsity") >= 0.47
    assert _qat_sparsity(pruned, layers, x, y, "none") < 0.3


def test_erk_prunes_layers_with_more_weights_per_channel_harder_and_meets_the_target():
    x, y = _data()
    model = fold_arelu(_random_classifier())
    pruned, layers = _prune(model, x, y, allocation="erk")
    targets = layer_sparsities(model, layers, 0.5, "erk")
    shapes = {name: model.get_layer(name).kernel.shape for name in layers}
    factor = {name: sum(shape) / shape.num_elements() for name, shape in shapes.items()}  # ERK density ∝ this
    assert len(set(targets.values())) == len(set(factor.values())) > 1
    assert sorted(layers, key=factor.get) == sorted(layers, key=lambda name: -targets[name])
    tensors = describe_tflite(convert_model(pruned, "int8", representative=x[:8]))["sparsity"]["layers"]
    assert abs(pruned_sparsity(tensors, layers) - 0.5) <= 0.02  # the target holds over all pruned weights
    for name in layers:
        assert abs(pruned_sparsity(tensors, [name]) - targets[name]) <= 0.02, name


def test_erk_leaves_a_layer_dense_rather_than_above_density_one():
    inputs = keras.Input((100,))
    wide = keras.layers.Dense(100, name="wide")(inputs)
    big = keras.layers.Dense(1000, name="big")(wide)
    model = keras.Model(inputs, keras.layers.Dense(2, name="small")(big))  # ERK density 2.4 at 90 %: dense
    targets = layer_sparsities(model, ["wide", "big", "small"], 0.9, "erk")
    sizes = {"wide": 10_000, "big": 100_000, "small": 2000}
    assert targets["small"] == 0.0 and 0 < targets["wide"] < targets["big"] < 1
    assert sum(targets[n] * sizes[n] for n in sizes) / sum(sizes.values()) == pytest.approx(0.9)


def test_a_fine_tunes_weight_average_starts_after_the_eligible_step_and_never_revives_a_zero():
    """The average starts after step ``start_step`` (where a pruning schedule's masks take their final
    value), and a weight the model holds at zero (masked since) stays zero in the averaged model."""
    from dslite_tiny.compress.finetune import _EligibleAverage

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False)])
    average = _EligibleAverage(model, 0.9, start_step=2)
    for value in ([1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [0.0, 5.0]):  # each step's weights; steps 3, 4 count
        model.set_weights([np.array([value, value], np.float32)])
        average.step()
    with average.applied():
        held = model.get_weights()[0][0]
    decay = 2 / 11  # WeightAverage's warm-up decay at its first update
    assert held[0] == 0.0 and held[1] == pytest.approx(decay * 3.0 + (1 - decay) * 5.0)
    assert list(model.get_weights()[0][0]) == [0.0, 5.0]


@pytest.mark.parametrize("pattern", ["unstructured", "blocks"])
def test_a_pruning_fine_tune_keeps_its_weight_average_at_the_target_sparsity(pattern):
    """With average_decay the epoch kept is the moving average of the trainable weights since the masks
    became final: zero wherever the final mask is, under TFMOT's wrappers and under block masks, and not the
    last step's kernel (the average lags it)."""
    from types import SimpleNamespace

    from dslite_tiny.audio.frontend import Frontend
    from dslite_tiny.compress.finetune import FinetuneSettings, finetune, steps_per_epoch
    from dslite_tiny.config import FrontendConfig

    frontend = Frontend(load_config(FrontendConfig, "mcu-64", stage="frontend"))
    rng = np.random.default_rng(0)
    mel = rng.uniform(-80, 0, (64, frontend.config.n_frames, frontend.config.n_mels)).astype(np.float32)
    split = SimpleNamespace(mel_db=mel, labels=np.arange(64) % 3, classes=("a", "b", "c"))
    model = fold_arelu(_random_classifier(shape=frontend.config.image_shape))
    settings = FinetuneSettings(4, 1e-3, 16, seed=0, average_decay=0.9)
    schedule = PruningSchedule.fit(0.5, 4 * steps_per_epoch(split, settings))  # final after epoch 3
    wrapped, callback = prune_model(model, {"dscnn_pw1": 0.5}, schedule, pattern=pattern)
    name = "dscnn_pw1" if pattern == "blocks" else "prune_low_magnitude_dscnn_pw1"
    last = {}

    class Last(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            last["kernel"] = np.array(wrapped.get_layer(name).trainable_weights[0].numpy())

    history = finetune(wrapped, split, split, frontend, settings, teacher=model, callbacks=(callback, Last()),
                       eligible_from_step=schedule.end_step)
    assert [r["eligible"] for r in history] == [False, False, False, True] and history[-1]["selected"]
    kept = wrapped.get_layer(name).trainable_weights[0].numpy()
    mask = callback.masks["dscnn_pw1"] if pattern == "blocks" else wrapped.get_layer(name).pruning_vars[0][1].numpy()
    assert float(np.mean(mask == 0)) == pytest.approx(0.5, abs=0.01) and np.all(kept[mask == 0] == 0)
    assert not np.allclose(kept, last["kernel"])  # the average, not the last step


def test_structured_pruning_leaves_two_zeros_in_every_four_weights():
    x, y = _data()
    model = fold_arelu(_random_classifier())
    layers = weight_layer_names(model, min_weights=256, structured=True)
    assert "dscnn_conv1" not in layers and "dscnn_pw1" in layers  # 3 input channels cannot group by 4
    wrapped, callback = prune_model(model, {name: 0.5 for name in layers}, PruningSchedule.fit(0.5, 12),
                                    pattern="2:4")
    wrapped.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    wrapped.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=[callback])
    tensors = describe_tflite(convert_model(strip_pruning(wrapped), "int8", representative=x[:8]))["sparsity"]["layers"]
    pruned = [t for t in tensors if any(f"/{name}/" in t["name"] for name in layers)]
    assert len(pruned) == len(layers) and all(t["sparse_2_4"] for t in pruned)
    assert not any(t["sparse_2_4"] for t in tensors if t not in pruned)


def test_slim_fine_tunes_on_the_models_own_training_augmentation(caplog):
    """compress replays the spectrogram augmentation recorded in the model's sidecar (slim_augment): a model
    trained with it gets an augmenter that changes its chunks; one trained without, or with a train config
    this version cannot read, gets none (the latter with a warning)."""
    from types import SimpleNamespace

    from dslite_tiny.audio.frontend import Frontend
    from dslite_tiny.compress.pipeline import _training_augmenter
    from dslite_tiny.config import FrontendConfig

    frontend = Frontend(load_config(FrontendConfig, "fsdd-40x49", stage="frontend"))
    mel = np.random.default_rng(0).normal(-40, 10, (8, 49, 40)).astype(np.float32)
    train = SimpleNamespace(mel_db=mel)

    def trained(saved):
        return SimpleNamespace(sidecar=SimpleNamespace(details={"train": saved}))

    augment = _training_augmenter(trained({"time_shift": True, "speed_perturb": 0.1, "audio_aug_prob": 1.0}),
                                  train, frontend)
    assert augment is not None and not np.allclose(augment(mel, np.random.default_rng(1)), mel)
    assert _training_augmenter(trained({"time_shift": False, "speed_perturb": 0.0, "pitch_shift": 0.0,
                                        "noise_snr_db": []}), train, frontend) is None
    assert _training_augmenter(trained({"no_such_key": 1}), train, frontend) is None
    assert "no training augmentation for the fine-tunes" in caplog.text


def test_slim_also_learns_the_float_model_on_unlabelled_audio(trained, tmp_path, demo_data):
    """slim_transfer_audio: every audio file under the folder, whatever its layout, goes through the model's
    frontend and into the slimming batches (recorded as slim_transfer_chunks); a folder without audio is
    refused in one line that names it, before anything is built."""
    from dslite_tiny.audio.frontend import Frontend
    from dslite_tiny.data.features import audio_chunks
    from dslite_tiny.errors import UserError
    from dslite_tiny.models.trained import load_trained

    model_path, cache = trained
    audio = demo_data.parent
    expected = len(audio_chunks(audio, Frontend(load_trained(model_path).frontend_config)))
    config = _config(variants=["slim-int8"], slim_transfer_audio=str(audio), tflm=False, cortex_m4=False,
                     layer_error_chunks=0)
    histories = {}
    for name, run in (("with", config), ("without", dataclasses.replace(config, slim_transfer_audio=None))):
        run_compress(model_path, config=run, out_dir=tmp_path / name, cache=cache)
        metrics = json.loads((tmp_path / name / "slim-int8" / "metrics.json").read_text())
        assert metrics["status"] == "ok"
        histories[name] = [epoch["loss"] for epoch in metrics["details"]["slim_history"]]
    assert metrics["details"]["slim_transfer_chunks"] == 0
    with_audio = json.loads((tmp_path / "with" / "slim-int8" / "metrics.json").read_text())["details"]
    assert with_audio["slim_transfer_chunks"] == expected > 0
    assert histories["with"] != histories["without"]  # the chunks reached the fine-tune's batches
    empty = tmp_path / "no-audio"
    empty.mkdir()
    (empty / "notes.txt").write_text("not audio")
    with pytest.raises(UserError, match="slim_transfer_audio: no audio files") as refused:
        run_compress(model_path, config=dataclasses.replace(config, slim_transfer_audio=str(empty)),
                     out_dir=tmp_path / "refused", cache=cache)
    assert str(empty) in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "refused" / "slim-int8").exists()


def test_unlabelled_chunks_are_labelled_by_the_teacher():
    """transfer_batch: the teacher's probabilities stand in for labels, then its softened targets (distilling);
    without distillation the probabilities alone; draws come from the chunks given."""
    from dslite_tiny.audio.frontend import Frontend
    from dslite_tiny.compress.finetune import transfer_batch
    from dslite_tiny.config import FrontendConfig

    frontend = Frontend(load_config(FrontendConfig, "fsdd-40x49", stage="frontend"))
    chunks = np.random.default_rng(0).normal(-40, 10, (5, 49, 40)).astype(np.float32)
    teacher = keras.Sequential([keras.layers.Input((40, 49, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(3, activation="softmax")])
    x, y = transfer_batch(teacher, chunks, frontend, np.random.default_rng(1), 8, 4.0)
    probabilities = teacher(x).numpy()
    assert x.shape == (8, 40, 49, 1) and y.shape == (8, 6)
    np.testing.assert_allclose(y[:, :3], probabilities, rtol=1e-6)
    np.testing.assert_allclose(y[:, 3:], soft_targets(probabilities, 4.0), rtol=1e-6)
    images = frontend.model_input(chunks)
    assert all(any(np.array_equal(row, image) for image in images) for row in x)
    _, plain = transfer_batch(teacher, chunks, frontend, np.random.default_rng(1), 8, None)
    np.testing.assert_allclose(plain, probabilities, rtol=1e-6)


def test_the_pruned_stage_is_rebuilt_when_its_fine_tuning_changes():
    """A resumed run reuses OUT/stages/pruned-<key>.h5: every config field that changes the pruning
    fine-tune's settings must change the key (distillation's once did not: a stale stage was reused)."""
    base = CompressConfig()

    def context(config: CompressConfig) -> recipes.VariantContext:
        return recipes.VariantContext(None, "source", None, None, None, None, config, Path("."))

    def prune_settings(config: CompressConfig):
        return context(config).settings(config.prune_epochs, config.prune_learning_rate)

    changes = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v / 2,
               str: lambda v: "adadelta" if v == "adam" else "adam"}
    checked = 0
    for field in dataclasses.fields(CompressConfig):
        value = getattr(base, field.name)
        if type(value) not in changes:
            continue
        changed = dataclasses.replace(base, **{field.name: changes[type(value)](value)})
        if prune_settings(changed) != prune_settings(base):
            checked += 1
            assert (recipes.stage_key(context(changed), recipes.PRUNED_STAGE_FIELDS)
                    != recipes.stage_key(context(base), recipes.PRUNED_STAGE_FIELDS)), field.name
    assert checked >= 6  # epochs, learning rate, batch size, optimizer, seed, distillation weight and T


def test_the_fields_only_some_variants_read_are_real_fields_of_real_variants():
    fields = {field.name for field in dataclasses.fields(CompressConfig)}
    for group, readers in recipes.OWN_FIELDS.items():
        assert set(group) <= fields and set(readers) <= set(VARIANTS), group
    assert recipes.unread_fields("int8") >= {"slim_macs", "prune_epochs", "qat_epochs", "clusters"}
    slim = recipes.unread_fields("slim-int8")
    assert "slim_macs" not in slim and "prune_epochs" in slim


def test_pruning_schedule_fits_the_step_count():
    schedule = PruningSchedule.fit(0.6, 100)
    assert (schedule.end_step - schedule.begin_step) % schedule.frequency == 0 and 60 <= schedule.end_step <= 75
    assert schedule.begin_step == 10  # a settling phase before the first weight is removed
    assert PruningSchedule.fit(0.5, 2).frequency == 1
    with pytest.raises(ValueError, match="at least 2"):
        PruningSchedule.fit(0.5, 1)


@pytest.fixture
def tiny_densenet():
    """A DenseNet-style backbone: BN → ReLU → Conv blocks joined by Concatenate, a transition with
    average pooling — the patterns TFMOT cannot quantize without our configs."""
    layers = keras.layers

    @register_backbone("tiny_densenet", normalization="torch")
    def build(inputs, alpha, weights):
        x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
        x = layers.BatchNormalization(name="stem_bn")(x)
        x = layers.Activation("relu", name="stem_relu")(x)
        for block in range(2):
            y = layers.BatchNormalization(name=f"block{block}_0_bn")(x)
            y = layers.Activation("relu", name=f"block{block}_0_relu")(y)
            y = layers.Conv2D(8, 1, use_bias=False, name=f"block{block}_1_conv")(y)
            y = layers.BatchNormalization(name=f"block{block}_1_bn")(y)
            y = layers.Activation("relu", name=f"block{block}_1_relu")(y)
            y = layers.Conv2D(4, 3, padding="same", use_bias=False, name=f"block{block}_2_conv")(y)
            x = layers.Concatenate(name=f"block{block}_concat")([x, y])
        x = layers.BatchNormalization(name="pool_bn")(x)
        x = layers.Activation("relu", name="pool_relu")(x)
        x = layers.Conv2D(8, 1, use_bias=False, name="pool_conv")(x)
        x = layers.AveragePooling2D(2, name="pool_pool")(x)
        x = layers.BatchNormalization(name="bn")(x)
        return layers.Activation("relu", name="relu")(x)

    yield "tiny_densenet"
    del BACKBONES["tiny_densenet"]


def test_densenet_style_blocks_and_arelu_go_through_qat_into_tflm(tiny_densenet, tmp_path):
    model = _random_classifier(tiny_densenet)
    assert foldable_batchnorms(model) == {"stem_bn", "block0_1_bn", "block1_1_bn"}
    x, y = _data()
    qat = quantize_model(fold_arelu(model))
    qat.compile(optimizer="adam", loss="categorical_crossentropy")
    qat.fit(x, y, epochs=1, verbose=0)
    data = convert_model(qat, "int8", representative=x[:8])
    described = describe_tflite(data)
    assert described["float_ops"] == [] and described["input"]["dtype"] == "int8"
    assert {"CONCATENATION", "AVERAGE_POOL_2D", "LEAKY_RELU", "MUL", "ADD"} <= set(described["ops"])
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    result = check_tflm(path, np.zeros((1, 32, 32, 3), np.int8))
    assert result["output"].shape == (1, 3) and result["output"].dtype == np.int8
    assert _fits(path, result["arena_bytes"]) and not _fits(path, result["arena_bytes"] - ALIGNMENT)


def test_flatbuffer_sizes_macs_and_sparsity():
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5, name="fc")(x)
    model = keras.Model(inputs, outputs)
    kernel = model.get_layer("conv").kernel.numpy()
    kernel.reshape(-1)[::2] = 0  # half the conv weights are zero
    model.get_layer("conv").kernel.assign(kernel)
    model.get_layer("fc").bias.assign(np.ones(5))  # the converter drops an all-zero bias
    described = describe_tflite(convert_model(model, "float32"))
    assert described["macs"] == 8 * 8 * 4 * (3 * 3 * 2) + 5 * 256
    assert described["params"] == 4 * 3 * 3 * 2 + 4 + 256 * 5 + 5 + 2  # + the reshape's shape constant
    assert described["gzip_bytes"] < described["tflite_bytes"] and described["weight_bytes"] >= 4 * described["params"] - 8
    assert pruned_sparsity(described["sparsity"]["layers"], ["conv"]) == 0.5
    assert pruned_sparsity(described["sparsity"]["layers"], ["fc"]) == 0.0


def test_fine_tuning_that_only_hurts_keeps_the_untrained_start():
    """QAT and clustering start from a model that already is the compressed float model; the selection
    keeps that start (epoch 0) unless an epoch beats it on devel, so a harmful fine-tune costs nothing."""
    from types import SimpleNamespace

    from dslite_tiny.audio.frontend import Frontend
    from dslite_tiny.compress.finetune import FinetuneSettings, finetune
    from dslite_tiny.config import FrontendConfig

    frontend = Frontend(load_config(FrontendConfig, "mcu-64", stage="frontend"))
    rng = np.random.default_rng(0)
    mel = rng.uniform(-80, 0, (48, frontend.config.n_frames, frontend.config.n_mels)).astype(np.float32)
    labels = np.arange(48) % 3
    mel[:, :, :8] += labels[:, None, None] * 25.0  # a learnable class cue in the lowest bands
    split = SimpleNamespace(mel_db=mel, labels=labels, classes=("a", "b", "c"))
    model = _random_classifier(shape=frontend.config.image_shape)
    start = model.get_weights()
    history = finetune(model, split, split, frontend, FinetuneSettings(2, 5.0, 16, seed=0, distill_weight=0.5),
                       teacher=_random_classifier(shape=frontend.config.image_shape))
    assert [r["epoch"] for r in history] == [0, 1, 2] and history[0]["loss"] is None
    assert history[0]["devel_agreement"] == 1.0  # the start is a copy of the teacher
    assert history[0]["selected"] and not any(r["selected"] for r in history[1:])
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), start))

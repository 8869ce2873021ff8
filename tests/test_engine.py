"""The generated int8 engine: bit for bit equal to TFLite Micro (the tflite-micro wheel's reference
kernels) on the host and on the emulated Cortex-M4, its arena smaller than TFLM's, unsupported models
refused in one line."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from test_cli import assert_user_error

import dslite_tiny  # noqa: F401
from dslite_tiny.engine import quant
from dslite_tiny.engine.codegen import KERNEL_DIR, KERNEL_FILES, engine_header, generate, kernel_sources
from dslite_tiny.errors import UserError
from dslite_tiny.export.boards import ENGINE_KERNEL_BYTES
from dslite_tiny.export.settings import recommended_arena_bytes
from dslite_tiny.export.variant import load_variant, with_tflm_check
from dslite_tiny.measure.tflm import reference_outputs
from firmware_host import qemu

HOST_FLAGS = ("-std=c99", "-pedantic", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared")


def wheel_outputs(variant, inputs: np.ndarray) -> np.ndarray:
    return reference_outputs(variant.data, inputs, shape=variant.description["input"]["shape"],
                             arena_bytes=recommended_arena_bytes(variant.arena_bytes))


def probe_inputs(variant, count: int) -> np.ndarray:
    """Random int8 tensors plus the extremes: all -128, all 127, all at the input zero point."""
    size = int(np.prod(variant.description["input"]["shape"]))
    rng = np.random.default_rng(0)
    extremes = [np.full(size, v) for v in (-128, 127, variant.description["input"]["zero_point"])]
    return np.vstack([rng.integers(-128, 128, (count, size)), *extremes]).astype(np.int8)


def test_engine_is_bit_exact_with_tflite_micro(compressed, tmp_path):
    """Through the CLI, with a board's fit check (every int8 variant of the demo: reports/benchmarks/engine_m4.md)."""
    name = "int8"
    result = run_cli("export", str(compressed / name), "--target", "engine", "--name", "kws", "--out",
                     str(tmp_path), "--board", "nano33ble")
    assert result.returncode == 0, result.stderr
    assert "engine of" in result.stdout and "nano33ble:" in result.stdout and "run in bands: ops 0-1" in result.stdout
    library = tmp_path / "libkws.so"
    kernels = [str(tmp_path / n) for n in kernel_sources(p.name for p in tmp_path.iterdir())]
    subprocess.run(["cc", *HOST_FLAGS, str(tmp_path / "kws_engine.c"), *kernels, "-o", str(library)], check=True)
    engine = ctypes.CDLL(str(library))
    variant = with_tflm_check(load_variant(compressed / name))
    inputs = probe_inputs(variant, 200)
    outputs = np.zeros((len(inputs), int(np.prod(variant.description["output"]["shape"]))), np.int8)
    for x, y in zip(inputs, outputs):
        engine.kws_invoke(x.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p))
    np.testing.assert_array_equal(outputs, wheel_outputs(variant, inputs))
    arena = int(next(line.split()[2] for line in (tmp_path / "kws_engine.h").read_text().splitlines()
                     if "_ARENA_BYTES" in line))
    assert arena < variant.arena_bytes  # activations overlap where the kernels' order allows


def test_engine_runs_residual_adds_bit_exact(tmp_path):
    """ADD (MobileNetV2's residual connections, here with a fused ReLU6 and computed in place over a dying
    input) on a small int8 model converted by compress's converter."""
    import tf_keras as keras

    x = keras.Input((12, 12, 8))
    a = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    b = keras.layers.Add()([a, keras.layers.Conv2D(8, 1)(a)])
    c = keras.layers.ReLU(6.0)(keras.layers.Add()([keras.layers.DepthwiseConv2D(3, padding="same")(b), b]))
    y = keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(c))
    variant = _converted(keras.Model(x, y), (12, 12, 8), tmp_path)
    assert variant.description["ops"]["ADD"] == 2
    _assert_bit_exact(variant, tmp_path)


def test_engine_runs_densenet_ops_bit_exact(tmp_path):
    """DenseNet's ops on a small int8 model: PAD, MAX_POOL_2D, a standalone BatchNormalization (MUL and ADD
    by per-channel constants), CONCATENATION and AVERAGE_POOL_2D."""
    import tf_keras as keras

    x = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(keras.layers.ZeroPadding2D(2)(x))
    a = keras.layers.MaxPooling2D(3, strides=2, padding="same")(a)
    normalized = keras.layers.BatchNormalization()
    b = keras.layers.Conv2D(4, 3, padding="same")(keras.layers.ReLU()(normalized(a)))
    c = keras.layers.AveragePooling2D(2)(keras.layers.Concatenate()([a, b]))
    y = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(c))
    model = keras.Model(x, y)
    normalized.set_weights([np.linspace(0.5, 2, 8), np.linspace(-1, 1, 8), np.full(8, 0.3), np.full(8, 0.8)])
    variant = _converted(model, (16, 16, 3), tmp_path)
    assert {"PAD", "MAX_POOL_2D", "MUL", "ADD", "CONCATENATION", "AVERAGE_POOL_2D"} <= set(variant.description["ops"])
    _assert_bit_exact(variant, tmp_path)


def test_engine_runs_averaged_outputs_bit_exact(tmp_path):
    """Two classifier heads averaged (Keras's Average: ADD, then MUL by a single constant 0.5, which the
    engine broadcasts as it does a vector along the last dimension): two models' probabilities as one output."""
    import tf_keras as keras

    x = keras.Input((8, 8, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3, activation="relu")(x))
    heads = [keras.layers.Dense(5, activation="softmax")(features) for _ in range(2)]
    variant = _converted(keras.Model(x, keras.layers.Average()(heads)), (8, 8, 3), tmp_path)
    assert {"ADD", "MUL"} <= set(variant.description["ops"])
    _assert_bit_exact(variant, tmp_path)


def test_engine_runs_depthwise_variants_bit_exact(tmp_path):
    """Depthwise convolutions beside the DS-CNN's: six channels (the Cortex-M4 path takes four at a time), a
    5×5 window mostly over the border, a depth multiplier of 2 with stride 2; and a 2×3 convolution of six
    filters over six channels (the small-window path: 36 taps in nine blocks, 90 pixels of which the last
    two go one by one); host and Cortex-M4. (Keras converts a dilated depthwise convolution to SPACE_TO_BATCH_ND around
    an undilated one, which the engine refuses.)"""
    import tf_keras as keras

    x = keras.Input((9, 10, 6))
    a = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    b = keras.layers.DepthwiseConv2D(5, padding="same")(a)
    k = keras.layers.Conv2D(6, (2, 3), padding="same")(x)
    c = keras.layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same")(keras.layers.Add()([a, b, k]))
    y = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(c))
    variant = _converted(keras.Model(x, y), (9, 10, 6), tmp_path)
    assert variant.description["ops"]["DEPTHWISE_CONV_2D"] == 3
    _assert_bit_exact(variant, tmp_path)
    if qemu.tools_missing():
        pytest.skip(qemu.tools_missing())
    engine = generate(variant.data, variant.path, name="net", provenance=["test"])
    inputs = probe_inputs(variant, 8)
    outputs, _, _ = qemu.engine_on_cortex_m4(engine, "net", inputs, cache_dir=tmp_path / "m4")
    np.testing.assert_array_equal(outputs, wheel_outputs(variant, inputs))


def test_banded_chains_are_bit_exact(tmp_path):
    """Where a chain of convolutions holds the arena's peak, the planner runs it in bands of rows (MCUNetV2's
    patch-based inference, engine/bands.py): a stride-2 convolution, a VALID depthwise, a pointwise and a 5×5
    stride-2 depthwise over an odd-sized one-channel input, bit-exact on the host and the Cortex-M4 with a
    smaller arena."""
    import tf_keras as keras

    from dslite_tiny.engine.graph import read_graph
    from dslite_tiny.engine.ops import OPS
    from dslite_tiny.engine.plan import plan_arena

    x = keras.Input((17, 13, 1))
    a = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    b = keras.layers.Conv2D(12, 1)(keras.layers.DepthwiseConv2D(3, activation="relu")(a))
    c = keras.layers.DepthwiseConv2D(5, strides=2, padding="same", activation="relu")(b)
    y = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(c))
    variant = _converted(keras.Model(x, y), (17, 13, 1), tmp_path)
    engine = generate(variant.data, variant.path, name="net", provenance=["test"])
    graph = read_graph(variant.data, variant.path)
    whole = plan_arena(graph, lambda op: OPS[op.name].overlap(graph, op, False),
                       lambda op: OPS[op.name].scratch(graph, op, None))
    assert engine.bands and engine.arena_bytes < whole.arena_bytes
    _assert_bit_exact(variant, tmp_path)
    if qemu.tools_missing():
        pytest.skip(qemu.tools_missing())
    inputs = probe_inputs(variant, 8)
    outputs, _, _ = qemu.engine_on_cortex_m4(engine, "net", inputs, cache_dir=tmp_path / "m4")
    np.testing.assert_array_equal(outputs, wheel_outputs(variant, inputs))


def test_block_sparse_kernels_are_bit_exact_and_skip_the_zero_blocks(tmp_path):
    """Pointwise convolutions and fully connected layers whose weights are zero in 60 % of the engine's
    blocks (compress.prune's block masks) run on the sparse kernels, bit-exact on both paths: 25 pixels (the
    four-pixel loop's tail), a depth of 160 (three 16-bit mask words), per-tensor FC multipliers, three outputs. A
    layer with 2 % zero blocks stays dense (its masks would cost more than the zeros save). By default the
    generator keeps a sparse form only where the calibrated Cortex-M4 model finds it faster, or slower by at
    most codegen.SPARSE_SLOWER_BUDGET of the model: at least the pointwise layers, whose sparse kernel costs
    less per kept multiply-accumulate than the dense one per one."""
    import tf_keras as keras
    from dslite_tiny.compress.prune import block_mask

    x = keras.Input((5, 5, 40))
    a = keras.layers.Conv2D(160, 1, activation="relu", name="pw_sparse")(x)
    b = keras.layers.Conv2D(40, 1, activation="relu", name="pw_words")(a)
    c = keras.layers.Conv2D(48, 1, activation="relu", name="pw_dense")(b)
    d = keras.layers.Dense(32, activation="relu", name="fc_sparse")(keras.layers.GlobalAveragePooling2D()(c))
    y = keras.layers.Dense(3, activation="softmax", name="fc_odd")(d)
    model = keras.Model(x, y)
    for name, sparsity in (("pw_sparse", 0.6), ("pw_words", 0.6), ("pw_dense", 0.02), ("fc_sparse", 0.6),
                           ("fc_odd", 0.6)):
        layer = model.get_layer(name)
        layer.kernel.assign(layer.kernel * block_mask(layer.kernel.numpy(), sparsity))
    variant = _converted(model, (5, 5, 40), tmp_path)
    engine = generate(variant.data, variant.path, name="net", provenance=["test"], sparse_where="smaller")
    dense = generate(_densified(variant.data), variant.path, name="net", provenance=["test"])
    default = generate(variant.data, variant.path, name="net", provenance=["test"])
    assert len(engine.sparse_ops) == 4 and not dense.sparse_ops  # all but pw_dense
    assert {0, 1} <= set(default.sparse_ops) <= set(engine.sparse_ops)
    assert engine.constant_bytes < dense.constant_bytes - 0.5 * 0.6 * (40 * 160 * 2 + 48 * 32)
    _assert_bit_exact(variant, tmp_path, sparse_where="smaller")
    if qemu.tools_missing():
        pytest.skip(qemu.tools_missing())
    inputs = probe_inputs(variant, 8)
    outputs, instructions, _ = qemu.engine_on_cortex_m4(engine, "net", inputs, cache_dir=tmp_path / "m4")
    np.testing.assert_array_equal(outputs, wheel_outputs(variant, inputs))
    _, dense_instructions, _ = qemu.engine_on_cortex_m4(dense, "net", inputs[:1], cache_dir=tmp_path / "dense")
    assert instructions[0] < 0.8 * dense_instructions[0]


def test_a_sparse_layer_may_cost_a_sliver_of_the_model_not_a_share_of_it(tmp_path):
    """A fully connected layer with 30 % of its blocks zero is smaller sparse but, walking a mask per row,
    slower: behind a convolution that takes nearly all the instructions it goes sparse (its extra
    instructions are under codegen.SPARSE_SLOWER_BUDGET of the model); as the model's main layer it stays
    dense."""
    import tf_keras as keras
    from dslite_tiny.compress.prune import block_mask

    def head(x):
        fc = keras.layers.Dense(64, activation="relu", name="fc")
        y = keras.layers.Dense(3, activation="softmax")(fc(x))
        return fc, y

    x = keras.Input((12, 12, 32))
    fc, y = head(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(64, 3, padding="same")(x)))
    behind = keras.Model(x, y)
    v = keras.Input((64,))
    fc_alone, y = head(v)
    alone = keras.Model(v, y)
    sparse = []
    for model, layer, shape, name in ((behind, fc, (12, 12, 32), "behind"), (alone, fc_alone, (64,), "alone")):
        layer.kernel.assign(layer.kernel * block_mask(layer.kernel.numpy(), 0.3))
        (tmp_path / name).mkdir()
        variant = _converted(model, shape, tmp_path / name)
        engine = generate(variant.data, variant.path, name="net", provenance=["test"])
        first_fc = next(i for i, work in enumerate(engine.work) if work.kind.startswith("fully_connected"))
        sparse.append(first_fc in engine.sparse_ops)
    assert sparse == [True, False]


GOLDEN = Path(__file__).parent / "golden"
GOLDEN_FILES = ("tiny_engine.c", "tiny_engine.h", "dt_engine.h")


def test_generated_c_equals_the_golden_files(tmp_path):
    """The C generated for tests/golden/tiny.tflite (made by tests/golden/make_tiny.py) is the committed C:
    a change to what the engine writes shows in review. After an intended change, regenerate with
    DSLITE_TINY_REGENERATE_GOLDEN=1 python -m pytest tests/test_engine.py -k golden -n 0. The model runs
    bit-exact with the wheel, on its sparse pointwise kernel."""
    import os

    variant = load_variant(GOLDEN / "tiny.tflite")
    engine = generate(variant.data, "tiny.tflite", name="tiny", provenance=["golden: tests/golden/tiny.tflite"])
    if os.environ.get("DSLITE_TINY_REGENERATE_GOLDEN"):
        for name in GOLDEN_FILES:
            (GOLDEN / name).write_text(engine.files[name], encoding="utf-8", newline="\n")
    for name in GOLDEN_FILES:
        assert engine.files[name] == (GOLDEN / name).read_text(encoding="utf-8"), name
    assert engine.sparse_ops == (2,)
    _assert_bit_exact(with_tflm_check(variant), tmp_path)


def test_the_per_op_profile_adds_up_and_the_instruction_model_comes_close(tmp_path, monkeypatch):
    """On QEMU each op's instructions (the profiling bench) sum to the invoke's; without QEMU, compress's
    Cortex-M4 figures carry the calibrated model's estimate (measure.cortex_m4, method "estimate")."""
    from dslite_tiny.measure import cortex_m4

    if qemu.tools_missing():
        pytest.skip(qemu.tools_missing())
    variant = load_variant(GOLDEN / "tiny.tflite")
    engine = generate(variant.data, "tiny.tflite", name="tiny", provenance=["test"])
    inputs = probe_inputs(variant, 2)
    per_op = qemu.engine_op_instructions(engine, "tiny", inputs, cache_dir=tmp_path / "profile")
    _, totals, _ = qemu.engine_on_cortex_m4(engine, "tiny", inputs, cache_dir=tmp_path / "plain")
    trailing = [i for band in engine.bands for i in band.ops[1:]]  # a banded chain's instructions are its first op's
    assert engine.bands and per_op.shape == (len(inputs), engine.ops) and (np.delete(per_op, trailing, 1) > 0).all()
    assert np.all(np.abs(per_op.sum(axis=1) - totals) <= 50 * engine.ops)  # a mark costs ~30 instructions
    monkeypatch.setattr(qemu, "tools_missing", lambda: "qemu-system-arm is not installed")
    figures = cortex_m4.cortex_m4_figures(variant.data, variant.path, inputs, cache_dir=tmp_path / "none")
    assert figures["method"] == "estimate" and "not installed" in figures["reason"]
    assert abs(figures["instructions"] / np.mean(totals) - 1) < 0.25


def test_every_kernel_file_belongs_to_one_op_module():
    """Adding an op is one module in engine/ops and one kernel file: every function an op module declares is
    defined in exactly one kernels/dt_*.c file, and every file defines only declared functions."""
    import re

    from dslite_tiny.engine.ops import OPS

    declared = {name for kernel in OPS.values() for name in re.findall(r"^void (dt_\w+)\(", kernel.declarations, re.M)}
    defined = {}
    for source in (n for n in KERNEL_FILES if n.endswith(".c")):
        for name in re.findall(r"^void (dt_\w+)\(", (KERNEL_DIR / source).read_text(), re.M):
            defined.setdefault(name, []).append(source)
    assert set(defined) == declared and all(len(files) == 1 for files in defined.values())


def _densified(data: bytes) -> bytes:
    """The flatbuffer with every zero int8 weight made 1: the same layers for the engine's choice, dense."""
    from test_untrusted_models import pack, schema, unpack

    model = unpack(data)
    graph = model.subgraphs[0]
    for op in graph.operators:
        weights = graph.tensors[op.inputs[1]] if len(op.inputs) > 1 else None
        if weights is not None and weights.type == schema().TensorType.INT8:
            buffer = model.buffers[weights.buffer]
            if buffer.data is not None and len(buffer.data):
                buffer.data = np.where(np.asarray(buffer.data) == 0, 1, buffer.data).astype(np.uint8)
    return pack(model)


def _converted(model, shape: tuple[int, ...], tmp_path: Path):
    from dslite_tiny.compress.convert import convert_model

    images = np.random.default_rng(0).normal(0, 1, (16, *shape)).astype(np.float32)
    path = tmp_path / "model.tflite"
    path.write_bytes(convert_model(model, "int8", representative=images))
    return with_tflm_check(load_variant(path))


def _assert_bit_exact(variant, tmp_path: Path, sparse_where: str = "faster") -> None:
    """The engine compiled for the host gives the wheel's outputs on 100 random inputs and the extremes."""
    engine = generate(variant.data, variant.path, name="net", provenance=["test"], sparse_where=sparse_where)
    for name, text in engine.files.items():
        (tmp_path / name).write_text(text)
    kernels = [str(tmp_path / n) for n in engine.kernel_sources]
    subprocess.run(["cc", *HOST_FLAGS, str(tmp_path / "net_engine.c"), *kernels, "-o", str(tmp_path / "libnet.so")],
                   check=True)
    library = ctypes.CDLL(str(tmp_path / "libnet.so"))
    inputs = probe_inputs(variant, 100)
    outputs = np.zeros((len(inputs), engine.output_bytes), np.int8)
    for row, out in zip(inputs, outputs):
        library.net_invoke(row.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p))
    np.testing.assert_array_equal(outputs, wheel_outputs(variant, inputs))


def test_engine_on_cortex_m4_is_bit_exact(compressed, tmp_path):
    problem = qemu.tools_missing()
    if problem:
        pytest.skip(problem)
    variant = with_tflm_check(load_variant(compressed / "int8"))
    engine = generate(variant.data, variant.path, name="kws", provenance=["test"])
    inputs = probe_inputs(variant, 5)
    outputs, instructions, _ = qemu.engine_on_cortex_m4(engine, "kws", inputs, cache_dir=tmp_path)
    np.testing.assert_array_equal(outputs, wheel_outputs(variant, inputs))
    assert len(instructions) == len(inputs) and min(instructions) > 0


def test_engine_kernels_fit_their_flash_budget(tmp_path):
    """The fit check counts ENGINE_KERNEL_BYTES for the kernels: hold it to a real Cortex-M4 build."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed (.ci/run installs it)")
    (tmp_path / "dt_engine.h").write_text(engine_header())
    size = 0
    for source in (n for n in KERNEL_FILES if n.endswith(".c")):
        subprocess.run(["arm-none-eabi-gcc", *qemu.C_FLAGS, f"-I{tmp_path}", f"-I{KERNEL_DIR}", "-c",
                        str(KERNEL_DIR / source), "-o", str(tmp_path / f"{source}.o")], check=True)
        sections = qemu.elf_sections(tmp_path / f"{source}.o")
        size += sum(v for k, v in sections.items() if k.startswith((".text", ".rodata", ".data")))
    assert 0.7 * ENGINE_KERNEL_BYTES < size <= ENGINE_KERNEL_BYTES


def test_engine_refuses_what_it_cannot_run(compressed, tmp_path):
    result = run_cli("export", str(compressed / "float32"), "--target", "engine", "--out", str(tmp_path / "f"))
    assert_user_error(result, "model.tflite", "float32 activations", "full-integer int8")
    result = run_cli("export", str(compressed / "int8"), "--target", "engine", "--out", str(tmp_path / "p"),
                     "--board", "phone")
    assert_user_error(result, "runs litert", "microcontroller")


def _gemmlowp_requantize(x: int, multiplier: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier as gemmlowp writes it: a saturating rounding doubling high multiply
    (nudge by sign, divide towards zero), then a rounding division by 2^-shift, ties away from zero."""
    a = (((x << max(shift, 0)) + 2**31) % 2**32) - 2**31  # the left shift wraps, as int32 arithmetic does
    if a == multiplier == -2**31:
        high = 2**31 - 1
    else:
        product = a * multiplier
        nudged = product + (2**30 if product >= 0 else 1 - 2**30)
        high = abs(nudged) // 2**31 * (1 if nudged >= 0 else -1)
    exponent = max(-shift, 0)
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> exponent) + (1 if (high & mask) > threshold else 0)


def _requantize_cases() -> np.ndarray:
    """(x, multiplier, shift) rows: random accumulators of every magnitude, TFLite's multiplier range
    [2^30, 2^31) and 0, shifts -31..7, plus every combination of the extremes."""
    rng = np.random.default_rng(1)
    n = 4000
    x = (rng.integers(-2**31, 2**31, n) >> rng.integers(0, 31, n)).astype(np.int64)
    multiplier = rng.integers(2**30, 2**31, n)
    shift = rng.integers(-31, 8, n)
    extremes = [(v, m, s) for v in (-2**31, 2**31 - 1, -1, 0, 1, -2**30, 2**30) for m in (0, 2**30, 2**31 - 1)
                for s in (-31, -30, -2, -1, 0, 1, 7)]
    return np.vstack([np.stack([x, multiplier, shift], 1), np.array(extremes)]).astype(np.int64)


REQUANTIZE_C = """#include "dt_arith.h"
int32_t dt_test_scale(int32_t x, int32_t multiplier, int32_t shift) { return scale_by_multiplier(x, multiplier, shift); }
int32_t dt_test_channel(int32_t x, int32_t multiplier, int32_t base, int32_t code, int32_t low, int32_t high) {
  return requantize_values(x, multiplier, base, code, low, high);
}
/* c: four sums, four multipliers, base, four codes, low, high (an _adjacent_cases row); y: four outputs. */
void dt_test_adjacent(const int32_t *c, int8_t *y) {
  const int8_t codes[4] = {(int8_t)c[9], (int8_t)c[10], (int8_t)c[11], (int8_t)c[12]};
  requantize_adjacent4(c[0], c[1], c[2], c[3], &c[4], c[8], codes, c[13], c[14], y);
}
"""


def _channel_cases() -> tuple[np.ndarray, list[int]]:
    """requantize_values's arguments (x, multiplier, base, code, low, high) as the generator folds them
    (quant.channel_requantization) for the cases of _requantize_cases with a random output offset, over
    int8's whole range and over a ReLU6-like one; and gemmlowp's result offset and clamped. Rows whose result
    plus offset leaves int32 are left out: there TFLite's int32 sum overflows too."""
    rng = np.random.default_rng(2)
    rows, expected = [], []
    for (x, m, s), offset, full in zip(_requantize_cases(), rng.integers(-128, 128, 10**5), rng.random(10**5) < 0.8):
        value = _gemmlowp_requantize(int(x), int(m), int(s)) + int(offset)
        if not -2**31 <= value < 2**31:
            continue
        low, high = (-128, 127) if full else (int(offset), min(127, int(offset) + 100))
        values, codes = quant.channel_requantization([int(m)], [int(s)], int(offset), full_range=bool(full))
        rows.append((int(x), int(values[1]), int(values[0]), int(codes[0]), low, high))
        expected.append(min(max(value, low), high))
    return np.array(rows, np.int64), expected


def _adjacent_cases() -> tuple[list[tuple[int, ...]], list[int]]:
    """requantize_adjacent4's arguments (four sums, their multipliers, the base, four codes, low, high): the
    cases of _requantize_cases in fours, each four one layer's channels (one output offset and clamp); and
    gemmlowp's results offset and clamped. Fours with a result outside int32 are left out."""
    rng = np.random.default_rng(3)
    cases = _requantize_cases()
    rows, expected = [], []
    for i in range(0, len(cases) - 3, 4):
        group = cases[i:i + 4]
        offset, full = int(rng.integers(-128, 128)), bool(rng.random() < 0.8)
        values = [_gemmlowp_requantize(int(x), int(m), int(s)) + offset for x, m, s in group]
        if not all(-2**31 <= v < 2**31 for v in values):
            continue
        low, high = (-128, 127) if full else (offset, min(127, offset + 100))
        multipliers, codes = quant.channel_requantization([int(m) for _, m, _ in group], [int(s) for *_, s in group],
                                                          offset, full_range=full)
        rows.append((*map(int, group[:, 0]), *map(int, multipliers[1:]), int(multipliers[0]), *map(int, codes),
                     low, high))
        expected += [min(max(v, low), high) for v in values]
    return rows, expected


def test_requantization_equals_gemmlowp_on_both_kernel_paths(tmp_path):
    """The kernels' one-sum requantization (dt_arith.h scale_by_multiplier), its per-channel form with the
    rounding and output offset folded into one constant (requantize_values), and four adjacent channels at
    once (requantize_adjacent4, the depthwise kernel's), against gemmlowp's two roundings: the portable C on
    the host and the SMLAL path (assembly for four folded channels) on the emulated Cortex-M4."""
    cases = _requantize_cases()
    expected = [_gemmlowp_requantize(int(x), int(m), int(s)) for x, m, s in cases]
    (tmp_path / "scale.c").write_text(REQUANTIZE_C)
    library = tmp_path / "libscale.so"
    subprocess.run(["cc", *HOST_FLAGS, f"-I{KERNEL_DIR}", str(tmp_path / "scale.c"), "-o", str(library)], check=True)
    scale = ctypes.CDLL(str(library)).dt_test_scale
    scale.restype = ctypes.c_int32
    assert [scale(*map(ctypes.c_int32, map(int, row))) for row in cases] == expected
    channel_cases, channel_expected = _channel_cases()
    assert 0.2 < (channel_cases[:, 3] >= 0).mean() < 0.8  # both paths, folded and general, are taken
    channel = ctypes.CDLL(str(library)).dt_test_channel
    channel.restype = ctypes.c_int32
    assert [channel(*map(ctypes.c_int32, map(int, row))) for row in channel_cases] == channel_expected
    adjacent_cases, adjacent_expected = _adjacent_cases()
    folded = [all(code >= 0 for code in row[9:13]) for row in adjacent_cases]
    assert 0.1 < np.mean(folded) < 0.9  # fours all folded (the DSP path's assembly) and fours that are not
    adjacent = ctypes.CDLL(str(library)).dt_test_adjacent
    got = []
    for row in adjacent_cases:
        y = (ctypes.c_int8 * 4)()
        adjacent((ctypes.c_int32 * 15)(*row), y)
        got += list(y)
    assert got == adjacent_expected
    if qemu.tools_missing():
        pytest.skip(qemu.tools_missing())
    table = ", ".join(f"{{{x}, {m}, {s}}}" for x, m, s in cases).replace("-2147483648", "INT32_MIN")
    channel_table = ", ".join("{" + ", ".join(map(str, row)) + "}" for row in channel_cases.tolist())
    adjacent_table = ", ".join("{" + ", ".join(map(str, row)) + "}" for row in adjacent_cases)
    main = (REQUANTIZE_C + '#include <stdio.h>\n#include "mps2_an386.h"\n'
            f"static const int32_t g_cases[][3] = {{{table}}};\n"
            f"static const int32_t g_channel[][6] = {{{channel_table.replace('-2147483648', 'INT32_MIN')}}};\n"
            f"static const int32_t g_adjacent[][15] = {{{adjacent_table.replace('-2147483648', 'INT32_MIN')}}};\n"
            "int main(void) { char line[24]; unsigned i;\n"
            "  for (i = 0; i < sizeof g_cases / sizeof g_cases[0]; ++i) {\n"
            '    snprintf(line, sizeof line, "%ld\\n", (long)dt_test_scale(g_cases[i][0], g_cases[i][1], g_cases[i][2]));\n'
            "    dt_board_write(line); }\n"
            "  for (i = 0; i < sizeof g_channel / sizeof g_channel[0]; ++i) {\n"
            "    const int32_t *c = g_channel[i];\n"
            '    snprintf(line, sizeof line, "%ld\\n", (long)dt_test_channel(c[0], c[1], c[2], c[3], c[4], c[5]));\n'
            "    dt_board_write(line); }\n"
            "  for (i = 0; i < sizeof g_adjacent / sizeof g_adjacent[0]; ++i) {\n"
            "    int8_t y[4]; unsigned j;\n    dt_test_adjacent(g_adjacent[i], y);\n"
            '    for (j = 0; j < 4; ++j) { snprintf(line, sizeof line, "%d\\n", y[j]); dt_board_write(line); } }\n'
            "  return 0; }\n")
    files = {"scale_m4.c": main, "dt_arith.h": (KERNEL_DIR / "dt_arith.h").read_text()}
    elf = qemu.build_elf(files, ["scale_m4.c"], cache_dir=tmp_path / "m4")
    assert [int(v) for v in qemu.run_elf(elf).split()] == expected + channel_expected + adjacent_expected


def test_folded_bias_takes_int32_min_and_refuses_overflow():
    """A clustered layer's all-zero channel gets the bias INT32_MIN (its scale underflows): folding keeps it,
    and the generated C spells it without a too-large constant; a sum outside int32 is refused."""
    from dslite_tiny.engine.graph import Graph, Op, Tensor
    from dslite_tiny.engine.plan import Plan
    from dslite_tiny.engine.writer import Writer

    bias = Tensor(0, "b", (2,), "int32", np.ones(2, np.float32), np.zeros(2, np.int64), 0,
                  np.array([-2**31, 5], np.int32))
    op = Op(0, "CONV_2D", (1, 2, 0), (3,), {})
    writer = Writer(Graph((bias,), (op,), (1,), (3,)), Plan({}, 0), "m.tflite", {})
    assert writer.folded_bias(op, np.array([0, 1]), 128).tolist() == [-2**31, 133]
    writer.array("int32_t", "b0", np.array([-2**31, 7]), "bias")
    assert "(-2147483647 - 1), 7" in writer.constants[-1]
    with pytest.raises(UserError, match="overflows int32"):
        writer.folded_bias(op, np.array([-1, 0]), 128)


def _pointwise_events(pixels: int, c_in: int, c_out: int) -> list[tuple[str, int]]:
    """The dense pointwise kernel's memory order (dt_pointwise_conv_s8) where c_in is not a multiple of 4:
    per pixel pair and pair of output channels, both input rows read whole, then four outputs written; a
    last odd pixel row by row. Else it is the sparse kernel's."""
    if c_in % 4 == 0:
        return _sparse_pointwise_events(pixels, c_in, c_out)
    events: list[tuple[str, int]] = []
    for first in range(0, pixels - 1, 2):
        for oc in range(0, c_out, 2):
            events += [("read", (first + q) * c_in + k) for q in (0, 1) for k in range(c_in)]
            events += [("write", (first + q) * c_out + oc + j) for q in (0, 1) for j in (0, 1) if oc + j < c_out]
    if pixels % 2:
        for oc in range(c_out):
            events += [("read", (pixels - 1) * c_in + k) for k in range(c_in)] + [("write", (pixels - 1) * c_out + oc)]
    return events


def _sparse_pointwise_events(pixels: int, c_in: int, c_out: int) -> list[tuple[str, int]]:
    """The sparse pointwise kernel's memory order (dt_pointwise_conv_sparse_s8, and the dense kernel's where
    c_in is a multiple of 4): per group of four pixels,
    the group's input rows read into the scratch, then all its outputs written; the last pixels % 4 one by
    one the same way."""
    events: list[tuple[str, int]] = []
    full = pixels - pixels % 4
    for first, size in [(g, 4) for g in range(0, full, 4)] + [(p, 1) for p in range(full, pixels)]:
        events += [("read", first * c_in + k) for k in range(size * c_in)]
        events += [("write", first * c_out + k) for k in range(size * c_out)]
    return events


def _safe(events: list[tuple[str, int]], delta: int) -> bool:
    """No write lands on an input byte that a later event reads (output at input offset + delta)."""
    later_min = np.iinfo(np.int64).max
    for kind, index in reversed(events):
        if kind == "read":
            later_min = min(later_min, index)
        elif index + delta >= later_min:
            return False
    return True


@pytest.mark.parametrize("pixels, c_in, c_out", [(5, 4, 4), (6, 3, 8), (4, 8, 2), (7, 5, 3), (3, 1, 6), (9, 8, 4)])
@pytest.mark.parametrize("sparse", [False, True])
def test_pointwise_overlap_is_the_largest_safe_one(pixels, c_in, c_out, sparse):
    """The planner lets a pointwise convolution's output start ``delta`` bytes from its dying input: exactly the
    largest offset at which the kernel's order never overwrites an input byte it still reads."""
    from dslite_tiny.engine.graph import Graph, Op, Tensor
    from dslite_tiny.engine.ops import OPS

    def tensor(index, shape, data=None):
        return Tensor(index, f"t{index}", shape, "int8", np.ones(1, np.float32), np.zeros(1, np.int64), 0, data)

    x = tensor(0, (1, 1, pixels, c_in))
    w = tensor(1, (c_out, 1, 1, c_in), np.zeros((c_out, 1, 1, c_in), np.int8))
    y = tensor(2, (1, 1, pixels, c_out))
    op = Op(0, "CONV_2D", (0, 1), (2,), {"padding": 1, "strideH": 1, "strideW": 1, "dilationHFactor": 1,
                                          "dilationWFactor": 1})
    delta = OPS["CONV_2D"].overlap(Graph((x, w, y), (op,), (0,), (2,)), op, sparse)
    events = (_sparse_pointwise_events if sparse else _pointwise_events)(pixels, c_in, c_out)
    reads_follow_a_write = any(a[0] == "write" and b[0] == "read" for a, b in zip(events, events[1:]))
    assert _safe(events, delta)
    assert not _safe(events, delta + 1) if reads_follow_a_write else delta >= 2 ** 60  # else: any offset


def _small_window_events(in_hw: tuple[int, int], c_in: int, k: tuple[int, int], stride: int, same: bool,
                         c_out: int) -> tuple[tuple[int, int], list[tuple[str, int]]]:
    """dt_conv.c's small-window kernel's memory order: per group of four output pixels (the last pixels % 4
    one by one), every input byte of each pixel's window inside the input read into the scratch, then all the
    group's outputs written. Returns the output's (height, width) and the events."""
    (h, w), (kh, kw) = in_hw, k
    out_h, out_w = (-(-h // stride), -(-w // stride)) if same else ((h - kh) // stride + 1, (w - kw) // stride + 1)
    pad_h = quant.same_padding(stride, 1, h, kh, out_h) if same else 0
    pad_w = quant.same_padding(stride, 1, w, kw, out_w) if same else 0
    pixels = out_h * out_w
    events: list[tuple[str, int]] = []
    full = pixels - pixels % 4
    for first, size in [(g, 4) for g in range(0, full, 4)] + [(q, 1) for q in range(full, pixels)]:
        for pixel in range(first, first + size):
            y0, x0 = pixel // out_w * stride - pad_h, pixel % out_w * stride - pad_w
            events += [("read", ((y0 + fy) * w + x0 + fx) * c_in + ic) for fy in range(kh) for fx in range(kw)
                       for ic in range(c_in) if 0 <= y0 + fy < h and 0 <= x0 + fx < w]
        events += [("write", first * c_out + j) for j in range(size * c_out)]
    return (out_h, out_w), events


@pytest.mark.parametrize("in_hw, c_in, k, stride, same, c_out", [((5, 7), 1, (3, 3), 1, True, 4),
                                                                ((6, 5), 2, (3, 3), 2, True, 3),
                                                                ((4, 9), 3, (2, 3), 1, False, 5),
                                                                ((9, 4), 1, (4, 2), 1, True, 8)])
def test_small_window_overlap_is_the_largest_safe_one(in_hw, c_in, k, stride, same, c_out):
    """A convolution on the small-window kernel reads four pixels' windows before it writes their outputs: the
    planner's offset for its output over its dying input is exactly the largest the kernel's order allows."""
    from dslite_tiny.engine.graph import Graph, Op, Tensor
    from dslite_tiny.engine.ops import OPS
    from dslite_tiny.engine.ops.conv_2d import SMALL_WINDOW

    def tensor(index, shape, data=None):
        return Tensor(index, f"t{index}", shape, "int8", np.ones(1, np.float32), np.zeros(1, np.int64), 0, data)

    (out_h, out_w), events = _small_window_events(in_hw, c_in, k, stride, same, c_out)
    assert k[0] * k[1] * c_in <= SMALL_WINDOW
    x = tensor(0, (1, *in_hw, c_in))
    w = tensor(1, (c_out, *k, c_in), np.zeros((c_out, *k, c_in), np.int8))
    y = tensor(2, (1, out_h, out_w, c_out))
    op = Op(0, "CONV_2D", (0, 1), (2,), {"padding": 0 if same else 1, "strideH": stride, "strideW": stride,
                                          "dilationHFactor": 1, "dilationWFactor": 1})
    delta = OPS["CONV_2D"].overlap(Graph((x, w, y), (op,), (0,), (2,)), op, False)
    assert _safe(events, delta) and not _safe(events, delta + 1)


def _chain(rng: np.random.Generator, length: int) -> list:
    """Random convolutions along the height, each reading the previous one's output rows."""
    from dslite_tiny.engine.ops.convolution import Rows

    chain, height, row = [], int(rng.integers(5, 30)), int(rng.integers(1, 9))
    while len(chain) < length:
        k, stride, dilation = (int(v) for v in rng.integers((1, 1, 1), (6, 3, 3)))
        same = rng.random() < 0.7
        out_h = -(-height // stride) if same else (height - (k - 1) * dilation - 1) // stride + 1
        if out_h < 1:
            continue
        pad = quant.same_padding(stride, dilation, height, k, out_h) if same else 0
        taps = np.arange(out_h)[:, None] * stride - pad + np.arange(k)[None, :] * dilation
        if not ((taps >= 0) & (taps < height)).any(axis=1).all():  # a window wholly in the padding: not here
            continue
        out_row = int(rng.integers(1, 9))
        chain.append(Rows(height, out_h, k, stride, dilation, pad, row, out_row))
        height, row = out_h, out_row
    return chain


def _run_bands(chain: list, rows: int) -> None:
    """Follows the band table as the generated loop does, on buffers holding row numbers: each call must read
    exactly the rows (or padding) of its windows, whole; each op computes rows in order, none twice (a row no
    band reads may be skipped); the chain's output gets every row."""
    from dslite_tiny.engine.bands import STEP_FIELDS, band_steps

    steps, capacity = band_steps(chain, rows)
    buffers = [np.full(c * g.row_out_bytes, -1) for c, g in zip(capacity, chain)]  # inner tensors, then the output
    buffers.append(np.full(chain[-1].out_h * chain[-1].row_out_bytes, -1))
    source = np.repeat(np.arange(chain[0].in_h), chain[0].row_in_bytes)  # the chain's input, whole
    computed: list[list[int]] = [[] for _ in chain]
    for step in steps:
        for j, g in enumerate(chain):
            keep_from, keep_bytes, in_h, pad_h, out_h, in_at, out_at = \
                step[j * len(STEP_FIELDS):(j + 1) * len(STEP_FIELDS)]
            buffers[j][:keep_bytes] = buffers[j][keep_from:keep_from + keep_bytes].copy()
            held = source if j == 0 else buffers[j - 1]
            for r in range(out_h):
                taps = [r * g.stride - pad_h + t * g.dilation for t in range(g.k)]
                read = []
                for y in taps:
                    row_bytes = held[in_at + y * g.row_in_bytes:in_at + (y + 1) * g.row_in_bytes] if 0 <= y < in_h \
                        else None
                    assert row_bytes is None or (len(row_bytes) == g.row_in_bytes and (row_bytes == row_bytes[0]).all())
                    read.append(None if row_bytes is None else int(row_bytes[0]))
                first = next(t for t, v in enumerate(read) if v is not None)  # the real row this call computes
                row, rest = divmod(read[first] + g.pad - first * g.dilation, g.stride)
                assert rest == 0 and read == [y if 0 <= y < g.in_h else None
                                for y in (row * g.stride - g.pad + t * g.dilation for t in range(g.k))]
                at = out_at + r * g.row_out_bytes
                assert at + g.row_out_bytes <= len(buffers[j])
                buffers[j][at:at + g.row_out_bytes] = row
                computed[j].append(row)
    assert (buffers[-1] == np.repeat(np.arange(chain[-1].out_h), chain[-1].row_out_bytes)).all()
    assert all(np.all(np.diff(c) > 0) for c in computed)


def test_band_tables_read_every_window_whole_and_compute_every_row_once():
    """On 60 random chains (windows 1-5, strides 1-2, dilations 1-2, SAME and VALID padding) in bands of 1 to
    8 rows: every call the table drives reads exactly its windows' rows (no row taken for padding, no padding
    for a row), the last op writes each output row, and no inner row is computed twice: the overlap between
    bands is kept, not recomputed."""
    rng = np.random.default_rng(3)
    for _ in range(60):
        chain = _chain(rng, int(rng.integers(2, 5)))
        for rows in (1, 2, 3, 8):
            _run_bands(chain, rows)

"""Models from elsewhere are untrusted input: crafted ``.tflite`` files (built here from a small int8 model
with the flatbuffer schema LiteRT ships) and hand-edited records are refused in one line, or give generated
C that compiles, holds no symbol the file put there and runs clean under AddressSanitizer and UBSan.
"""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli
from test_cli import assert_user_error

from dslite_tiny.artifacts import write_atomic
from dslite_tiny.engine.codegen import KERNEL_DIR, KERNEL_FILES, engine_header, generate, kernel_sources
from dslite_tiny.errors import UserError
from dslite_tiny.export.targets import export_model, provenance_lines
from dslite_tiny.export.variant import load_variant
from dslite_tiny.records import read_metrics, read_summary_variants
from firmware_host import qemu

SANITIZE = ("-std=c99", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-Wall", "-Wextra", "-Werror")
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
INJECTED = b"w0 */ int dslite_injected_weight = 42; /* "
# Runs the engine on inputs it allocates to their exact sizes, so a write past either is a heap overflow.
DRIVER = r"""
#include <stdint.h>
#include <stdlib.h>
#include "m_engine.h"
int main(void) {
  int8_t *input = malloc(M_INPUT_ELEMENTS), *output = malloc(M_OUTPUT_ELEMENTS);
  uint32_t seed = 1;
  int run, i;
  for (run = 0; run < 3; ++run) {
    for (i = 0; i < M_INPUT_ELEMENTS; ++i) {
      seed = seed * 1103515245u + 12345u;
      input[i] = (int8_t)(run == 1 ? -128 : run == 2 ? 127 : (int)(seed >> 24) - 128);
    }
    m_invoke(input, output);
  }
  free(input);
  free(output);
  return 0;
}
"""
# Uses the settings header's labels, so a stray line in it would break the compile.
USE_SETTINGS = ('#include "m_model_settings.h"\nstatic const char *const labels[] = M_LABELS;\n'
                'const char *m_first_label(void) { return labels[0]; }\n')


# --- crafting ---------------------------------------------------------------------------------------------

def schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def unpack(data: bytes):
    return schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def pack(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def ops_named(model, name: str) -> list:
    code = getattr(schema().BuiltinOperator, name)
    codes = model.operatorCodes
    return [op for op in model.subgraphs[0].operators
            if max(codes[op.opcodeIndex].builtinCode, codes[op.opcodeIndex].deprecatedBuiltinCode) == code]


def crafted_folder(source: Path, tmp_path: Path, mutate=None, *, metrics=None, name: str = "crafted") -> Path:
    """A copy of the variant folder ``source`` (and its run's reference.json) with its model and its
    metrics.json changed by ``mutate(model)`` and ``metrics(data)``."""
    run = tmp_path / "run"
    folder = run / name
    folder.mkdir(parents=True)
    shutil.copy(source.parent / "reference.json", run / "reference.json")
    model = unpack((source / "model.tflite").read_bytes())
    if mutate is not None:
        mutate(model)
    (folder / "model.tflite").write_bytes(pack(model))
    data = json.loads((source / "metrics.json").read_text())
    if metrics is not None:
        metrics(data)
    (folder / "metrics.json").write_text(json.dumps(data))
    return folder


def compile_engine(out: Path) -> Path:
    """The exported engine with DRIVER, built with the sanitizers; returns the program."""
    (out / "driver.c").write_text(DRIVER)
    program = out / "driver"
    kernels = kernel_sources(p.name for p in out.iterdir())
    result = subprocess.run(["cc", *SANITIZE, "driver.c", "m_engine.c", *kernels, "-o", str(program), "-lm"],
                            cwd=out, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return program


def run_clean(program: Path) -> None:
    import os

    result = subprocess.run([str(program)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **SANITIZER_ENV})
    assert result.returncode == 0 and "runtime error" not in result.stderr, result.stderr[-3000:]


def global_symbols(*objects: Path) -> set[str]:
    listing = subprocess.run(["nm", "--defined-only", "-g", *map(str, objects)], capture_output=True, text=True,
                             check=True).stdout
    return {line.split()[-1] for line in listing.splitlines() if len(line.split()) == 3}


# --- the audit's cases, each in one line or in clean C ------------------------------------------------------

def test_a_tensor_name_cannot_become_code(compressed, tmp_path):
    def inject(model):
        weights = ops_named(model, "CONV_2D")[0].inputs[1]
        model.subgraphs[0].tensors[weights].name = INJECTED
        model.subgraphs[0].tensors[0].name = b"\xff\xfe not utf-8 \n#error x"

    folder = crafted_folder(compressed / "int8", tmp_path, inject)
    out = tmp_path / "engine"
    export_model(folder, target="engine", name="m", out_dir=out)
    assert b"dslite_injected" not in b"".join(p.read_bytes() for p in out.iterdir())
    objects = [out / "m_engine.o"]
    subprocess.run(["cc", "-std=c99", "-c", "m_engine.c", "-o", "m_engine.o"], cwd=out, check=True)
    assert global_symbols(*objects) == {"m_invoke"}
    run_clean(compile_engine(out))


@pytest.mark.parametrize("target", ["engine", "c"])
def test_versions_and_folder_names_cannot_add_lines(compressed, tmp_path, target):
    """A newline in metrics.json's converter version or in the folder name would make '#error' live: the
    files compile, so both stayed inside their comments."""
    def version(data):
        data["versions"]["tensorflow"] = "2.21\n#error from metrics.json\\"

    folder = crafted_folder(compressed / "int8", tmp_path, metrics=version, name="evil\n#error from the folder ??=")
    out = tmp_path / "out"
    export_model(folder, target=target, name="m", out_dir=out)
    for path in out.iterdir():
        assert not any(line.startswith("#error") for line in path.read_text().splitlines()), path.name
    (out / "use.c").write_text(USE_SETTINGS)
    sources = ["use.c", "m_engine.c"] if target == "engine" else ["use.c"]
    for source in sources:
        subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-c", source, "-o", f"{source}.o"], cwd=out, check=True)
    if target == "c":
        subprocess.run(["c++", "-std=c++11", "-c", "m_model_data.cc", "-o", "data.o"], cwd=out, check=True)


def _shrink_output(op_name: str):
    def mutate(model):
        op = ops_named(model, op_name)[0]
        model.subgraphs[0].tensors[op.outputs[0]].shape = [1, 1]
    return mutate


def _consistent_huge(factor: int):
    """Every feature map ``factor``² times larger, all shapes still consistent (the demo's halve exactly)."""
    def mutate(model):
        for tensor in model.subgraphs[0].tensors:
            constant = model.buffers[tensor.buffer].data is not None and len(model.buffers[tensor.buffer].data)
            if not constant and len(tensor.shape) == 4 and tensor.shape[1] > 1:
                tensor.shape = [1, tensor.shape[1] * factor, tensor.shape[2] * factor, tensor.shape[3]]
    return mutate


def _set(getter, field: str, value):
    def mutate(model):
        setattr(getter(model), field, value)
    return mutate


def _first_conv(model):
    return ops_named(model, "CONV_2D")[0]


def _conv_output_quantization(model):
    return model.subgraphs[0].tensors[_first_conv(model).outputs[0]].quantization


def _out_of_range_input(model):
    _first_conv(model).inputs[0] = 9999


REFUSED = [
    ("softmax-output", _shrink_output("SOFTMAX"), None, r"op \d+ \(SOFTMAX\) declares output tensor \d+ .* of shape "
                                                        r"\[1, 1\], but its inputs and options give \[1, 5\]"),
    ("fc-output", _shrink_output("FULLY_CONNECTED"), None, r"FULLY_CONNECTED\) declares output .* \[1, 1\]"),
    ("256-gib", _consistent_huge(4096), None, r"tensor 0 .* has 68719476736 elements, more than a C int32_t"),
    ("fused-tanh", lambda m: setattr(_first_conv(m).builtinOptions, "fusedActivationFunction", 4), None,
     r"op 0 \(CONV_2D\) fuses TANH; the engine's int8 kernels fuse NONE"),
    ("fused-unknown", lambda m: setattr(_first_conv(m).builtinOptions, "fusedActivationFunction", 9), None,
     r"op 0 \(CONV_2D\) has unknown fused activation 9"),
    ("nan-scale", _set(_conv_output_quantization, "scale", [math.nan]), None, r"has scale nan; a scale must be finite"),
    ("zero-scale", _set(_conv_output_quantization, "scale", [0.0]), None, r"has scale 0.0; a scale must be finite"),
    ("tensor-index", _out_of_range_input, None, r"op 0 \(CONV_2D\)'s inputs name tensor 9999, outside the \d+"),
    ("negative-arena", None, lambda d: d["tflm"].update(arena_bytes=-5), r"'tflm.arena_bytes' must be at least 1"),
    ("nan-uar", None, lambda d: d["accuracy"]["chunks"].update(uar=math.nan), r"'accuracy.chunks.uar' must be a finite"),
    ("negative-size", None, lambda d: d["size"].update(tflite_bytes=-1), r"'size.tflite_bytes' must be at least 0"),
]


@pytest.mark.parametrize("case, mutate, metrics, message", REFUSED, ids=[case[0] for case in REFUSED])
def test_crafted_models_and_records_are_refused_in_one_line(compressed, tmp_path, case, mutate, metrics, message):
    folder = crafted_folder(compressed / "int8", tmp_path, mutate, metrics=metrics)
    with pytest.raises(UserError, match=message) as refused:
        export_model(folder, target="engine", name="m", out_dir=tmp_path / "out")
    assert str(refused.value).startswith(str(folder)) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["engine", "c"])
def test_a_model_too_large_for_c_is_refused_before_anything_runs_it(compressed, tmp_path, target):
    """Consistent shapes, 4 GiB of activations, a bare file (no frontend to compare with): refused by the
    default limit before TFLite Micro or the planner would allocate it."""
    model = unpack((compressed / "int8" / "model.tflite").read_bytes())
    _consistent_huge(64)(model)
    path = tmp_path / "huge.tflite"
    path.write_bytes(pack(model))
    with pytest.raises(UserError, match=r"huge.tflite: the model's activations take \d+ bytes, more than the "
                                        r"268435456 bytes export writes C for"):
        export_model(path, target=target, out_dir=tmp_path / "out")


def test_the_cli_refuses_a_crafted_model_with_exit_2(compressed, tmp_path):
    folder = crafted_folder(compressed / "int8", tmp_path, _shrink_output("SOFTMAX"))
    for target in ("engine", "c"):
        assert_user_error(run_cli("export", str(folder), "--target", target, "--out", str(tmp_path / target)),
                          "(SOFTMAX) declares output")


def test_a_recorded_arena_is_checked_not_trusted(compressed, tmp_path, caplog):
    """metrics.json is a record of an earlier run: TFLite Micro runs the model on every export, and the
    settings header has what it measured."""
    measured = json.loads((compressed / "int8" / "metrics.json").read_text())["tflm"]["arena_bytes"]
    folder = crafted_folder(compressed / "int8", tmp_path, metrics=lambda d: d["tflm"].update(arena_bytes=123456))
    result = export_model(folder, target="c", name="m", out_dir=tmp_path / "out")
    assert result.variant.arena_bytes == measured
    assert f"#define M_TENSOR_ARENA_MIN_BYTES {measured}" in (tmp_path / "out" / "m_model_settings.h").read_text()
    assert "records a TFLM arena of 123456 bytes" in caplog.text


@pytest.mark.parametrize("field, value", [("name", "x\n[env:evil]"), ("tflm_include", "a.h>\n#error x")])
def test_a_board_profile_cannot_write_into_a_project(field, value):
    from dslite_tiny.config import BoardConfig, load_config
    from dslite_tiny.errors import ConfigError

    with pytest.raises(ConfigError, match=f"{field}=.* must be"):
        load_config(BoardConfig, ("test", {"name": "ok", "flash_kib": 100, "ram_kib": 10, field: value}),
                    stage="boards")


def test_a_user_error_is_one_line_without_traceback_markers():
    error = UserError("cannot load (x = f(a)\n        ^^^^^^^\n    ~~~^~~ y) a^b", path="m.h5")
    assert str(error) == "m.h5: cannot load (x = f(a) y) a^b"


def test_records_refuse_duplicates_and_files_follow_the_umask(compressed, tmp_path):
    import os

    summary = tmp_path / "summary.csv"
    lines = (compressed / "summary.csv").read_text().splitlines()
    summary.write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(UserError, match=r"lists variant '\w[\w-]*' twice"):
        read_summary_variants(summary)
    assert read_metrics(compressed / "int8" / "metrics.json").arena_bytes > 0
    previous = os.umask(0o002)
    try:
        assert write_atomic(tmp_path / "shared.json", "{}").stat().st_mode & 0o777 == 0o664
        os.umask(0o022)
        assert write_atomic(tmp_path / "private.json", "{}").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(previous)


def test_qemu_device_refuses_a_port_another_process_holds(compressed):
    if qemu.tools_missing():
        pytest.skip(qemu.tools_missing())
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        device = qemu.QemuDevice(compressed / "int8")
        with pytest.raises(UserError, match=f"port {port}: another process listens there"):
            device.start(port)


# --- mutations of a small model's flatbuffer ----------------------------------------------------------------

@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> bytes:
    """Every kernel family on a 10×10×2 input: convolution, depthwise, pointwise (dense, and block-sparse:
    60 % of its blocks zero), ADD, PAD, pooling, MEAN, CONCATENATION, fully connected and softmax, int8,
    converted by compress's converter."""
    import tf_keras as keras

    from dslite_tiny.compress.convert import convert_model
    from dslite_tiny.compress.prune import block_mask

    x = keras.Input((10, 10, 2))
    a = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(x)
    b = keras.layers.DepthwiseConv2D(3, padding="same")(keras.layers.ZeroPadding2D(1)(a))
    b = keras.layers.Conv2D(4, 1)(keras.layers.MaxPooling2D(3, strides=1)(b))
    c = keras.layers.Concatenate()([keras.layers.Add()([a, b]), a])
    d = keras.layers.Conv2D(16, 1, name="sparse_pointwise")(c)
    y = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(d))
    model = keras.Model(x, y)
    sparse = model.get_layer("sparse_pointwise")
    sparse.kernel.assign(sparse.kernel * block_mask(sparse.kernel.numpy(), 0.6))
    images = np.random.default_rng(0).normal(size=(16, 10, 10, 2)).astype(np.float32)
    data = convert_model(model, "int8", representative=images)
    assert generate(data, "small.tflite", name="m", provenance=[]).sparse_ops  # the mutations reach that kernel
    return data


@pytest.fixture(scope="module")
def sanitized_kernels(tmp_path_factory) -> list[str]:
    """Every kernel compiled once with the sanitizers: the objects."""
    out = tmp_path_factory.mktemp("kernels")
    (out / "dt_engine.h").write_text(engine_header())
    objects = []
    for source in (n for n in KERNEL_FILES if n.endswith(".c")):
        objects.append(str(out / f"{source}.o"))
        subprocess.run(["cc", *SANITIZE, f"-I{out}", f"-I{KERNEL_DIR}", "-c", str(KERNEL_DIR / source), "-o",
                        objects[-1]], check=True)
    return objects


INT32 = st.integers(-2 ** 31, 2 ** 31 - 1)
EDGE_INTS = st.sampled_from([-1, 0, 1, 2, 3, 5, 64, 4096, 2 ** 31 - 1]) | st.integers(-3, 12)
EDGE_FLOATS = st.sampled_from([math.nan, math.inf, -1.0, 0.0, 1e-30, 1e-6, 1 / 256, 0.5, 1.0, 1e6, 1e30])


def mutate(model, draw) -> bytes | None:
    """One to three mutations of ``model`` drawn by ``draw``, packed; None if the schema cannot pack them
    (a value outside a field's type: no file could hold it)."""
    graph = model.subgraphs[0]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["shape", "rank", "buffer", "index", "scale", "zero_point", "axis", "name",
                                     "option", "opcode", "builtin"]))
        tensor = graph.tensors[draw(st.integers(0, len(graph.tensors) - 1))]
        op = graph.operators[draw(st.integers(0, len(graph.operators) - 1))]
        q = tensor.quantization
        if kind == "shape" and tensor.shape is not None and len(tensor.shape):
            tensor.shape[draw(st.integers(0, len(tensor.shape) - 1))] = draw(EDGE_INTS)
        elif kind == "rank" and tensor.shape is not None:
            tensor.shape = list(tensor.shape[:-1]) if draw(st.booleans()) else [*tensor.shape, 1]
        elif kind == "buffer":
            tensor.buffer = draw(st.integers(0, len(model.buffers) + 1))
        elif kind == "index":
            field = op.inputs if draw(st.booleans()) else op.outputs
            field[draw(st.integers(0, len(field) - 1))] = draw(st.integers(-2, len(graph.tensors) + 1))
        elif kind == "scale" and q is not None and q.scale is not None and len(q.scale):
            q.scale[draw(st.integers(0, len(q.scale) - 1))] = draw(EDGE_FLOATS)
        elif kind == "zero_point" and q is not None and q.zeroPoint is not None and len(q.zeroPoint):
            q.zeroPoint[draw(st.integers(0, len(q.zeroPoint) - 1))] = draw(st.sampled_from([-300, -129, -128, 1, 127,
                                                                                             128, 2 ** 40]))
        elif kind == "axis" and q is not None:
            q.quantizedDimension = draw(st.integers(0, 5))
        elif kind == "name":
            tensor.name = draw(st.binary(max_size=12)) + INJECTED + draw(st.sampled_from([b"\n#error x", b"\\", b"??/"]))
        elif kind == "option" and op.builtinOptions is not None and vars(op.builtinOptions):
            key = draw(st.sampled_from(sorted(vars(op.builtinOptions))))
            value = getattr(op.builtinOptions, key)
            if isinstance(value, bool):
                setattr(op.builtinOptions, key, not value)
            elif isinstance(value, float):
                setattr(op.builtinOptions, key, draw(EDGE_FLOATS))
            elif isinstance(value, int):
                setattr(op.builtinOptions, key, draw(st.integers(-1, 7)))
        elif kind == "opcode":
            op.opcodeIndex = draw(st.integers(0, len(model.operatorCodes) + 1))
        elif kind == "builtin":
            model.operatorCodes[draw(st.integers(0, len(model.operatorCodes) - 1))].builtinCode = draw(
                st.integers(0, 210))
    try:
        data = bytearray(pack(model))
    except Exception:  # noqa: BLE001 — struct.error and friends: the value does not fit its field
        return None
    for _ in range(draw(st.integers(0, 2))):  # and raw bytes, for what the schema's objects cannot express
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@contextlib.contextmanager
def mutated_file(model: bytes, draw):
    """``m.tflite`` in a temporary folder: ``model`` mutated by ``mutate``; the example is skipped (rejected)
    where the mutation cannot be packed."""
    from hypothesis import reject

    data = mutate(unpack(model), draw)
    if data is None:
        reject()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.tflite"
        path.write_bytes(data)
        yield path


PROPERTY = settings(max_examples=45, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY
@given(st.data())
def test_every_mutation_is_refused_or_runs_clean_in_the_engine(small_model, sanitized_kernels, data):
    """The engine's own validation, without TFLite Micro's check behind it: a mutated model is a one-line
    UserError, or C that compiles with -Werror and runs under ASan/UBSan without a finding."""
    with mutated_file(small_model, data.draw) as path:
        try:
            variant = load_variant(path)
            engine = generate(variant.data, path, name="m", provenance=provenance_lines(variant))
        except UserError:
            return
        out = path.parent
        for name, text in engine.files.items():
            (out / name).write_text(text)
        assert "dslite_injected" not in engine.files["m_engine.c"]
        result = subprocess.run(["cc", *SANITIZE, "-c", "m_engine.c", "-o", "m_engine.o"], cwd=out,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        assert global_symbols(out / "m_engine.o") == {"m_invoke"}
        (out / "driver.c").write_text(DRIVER)
        subprocess.run(["cc", *SANITIZE, "driver.c", "m_engine.o", *sanitized_kernels, "-o", "driver", "-lm"],
                       cwd=out, check=True)
        run_clean(out / "driver")


@settings(PROPERTY, max_examples=20)
@given(st.data())
def test_every_mutation_is_refused_or_exports_clean_tflite_micro_sources(small_model, data):
    """--target c: TFLite Micro's check in its child process, then sources that compile and define only
    the model's array."""
    with mutated_file(small_model, data.draw) as path:
        out = path.parent / "out"
        try:
            export_model(path, target="c", name="m", out_dir=out)
        except UserError:
            return
        (out / "use.c").write_text(USE_SETTINGS)
        subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "-c", "use.c", "-o", "use.o"], cwd=out, check=True)
        subprocess.run(["c++", "-std=c++11", "-Wall", "-Werror", "-c", "m_model_data.cc", "-o", "data.o"], cwd=out,
                       check=True)
        assert global_symbols(out / "use.o", out / "data.o") == {"m_first_label", "g_m_model_data"}

"""Export: C sources compiled and run with the host compilers (and arm-none-eabi-gcc when installed), the
array's bytes against the .tflite and against tinymlgen's independent writer, the settings header against
the model, the op resolver against the flatbuffer, the phone bundle, and the board fit check."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from test_cli import assert_user_error

from dslite_tiny.config import BoardConfig, FrontendConfig, from_mapping
from dslite_tiny.errors import ConfigError, UserError
from dslite_tiny.export.boards import Footprint, check_fit, list_boards, load_board
from dslite_tiny.c_source import c_identifier, c_string
from dslite_tiny.export.op_resolver import TFLM_BUILTINS, add_method
from dslite_tiny.export.settings import recommended_arena_bytes
from dslite_tiny.export.targets import export_model
from dslite_tiny.measure.flatbuffer import describe_tflite
from dslite_tiny.measure.graph import Graph

PROGRAM = r"""
#include <stdint.h>
#include <stdio.h>
#include "kws_model_data.h"
#include "kws_model_settings.h"

int main(int argc, char **argv) {
  static const char *const labels[] = KWS_LABELS;
  static const float window[] = KWS_WINDOW;
  FILE *out = fopen(argv[1], "wb");
  if (argc < 2 || out == NULL) return 1;
  fwrite(g_kws_model_data, 1, g_kws_model_data_size, out);
  fclose(out);
  printf("aligned %d\n", (int)(((uintptr_t)g_kws_model_data) % 16 == 0));
  printf("input_scale %.9g\ninput_zero_point %d\n", (double)KWS_INPUT_SCALE, KWS_INPUT_ZERO_POINT);
  printf("output_scale %.9g\noutput_zero_point %d\n", (double)KWS_OUTPUT_SCALE, KWS_OUTPUT_ZERO_POINT);
  printf("classes %d\nlast_label %s\n", KWS_NUM_CLASSES, labels[KWS_NUM_CLASSES - 1]);
  printf("window %d\nchunk %d\n", (int)(sizeof(window) / sizeof(window[0])), KWS_CHUNK_SAMPLES);
  return 0;
}
"""


def _compile(compiler: str, source: Path, *flags: str) -> Path:
    obj = source.with_suffix(source.suffix + ".o")
    result = subprocess.run([compiler, *flags, "-Wall", "-Wextra", "-Werror", "-c", str(source), "-o", str(obj)],
                            capture_output=True, text=True, cwd=source.parent)
    assert result.returncode == 0, result.stderr
    return obj


@pytest.fixture(scope="module")
def exported(compressed, tmp_path_factory):
    out = tmp_path_factory.mktemp("c")
    return export_model(compressed / "int8", target="c", name="KWS", out_dir=out)


@pytest.mark.parametrize("language", ["c", "c++"])
def test_c_sources_compile_run_and_hold_the_model_bytes(exported, compressed, language):
    out = exported.out_dir
    assert sorted(p.name for p in exported.files) == ["kws_model_data.cc", "kws_model_data.h",
                                                      "kws_model_settings.h", "kws_op_resolver.h"]
    main = out / ("main.c" if language == "c" else "main.cc")
    main.write_text(PROGRAM)
    objects = [_compile("cc" if language == "c" else "c++", main, "-std=c99" if language == "c" else "-std=c++11"),
               _compile("c++", out / "kws_model_data.cc", "-std=c++11")]
    binary = out / f"main-{language}"
    subprocess.run(["c++", *map(str, objects), "-o", str(binary)], check=True)
    dumped = out / f"dumped-{language}.tflite"
    printed = subprocess.run([str(binary), str(dumped)], capture_output=True, text=True, check=True).stdout
    values = dict(line.split(" ", 1) for line in printed.splitlines())

    tflite = (compressed / "int8" / "model.tflite").read_bytes()
    assert dumped.read_bytes() == tflite
    metrics = json.loads((compressed / "int8" / "metrics.json").read_text())
    reference = json.loads((compressed / "reference.json").read_text())
    frontend = from_mapping(FrontendConfig, reference["frontend"], source="test")
    assert values["aligned"] == "1"
    for which in ("input", "output"):
        assert np.float32(float(values[f"{which}_scale"])) == np.float32(metrics[which]["scale"])
        assert int(values[f"{which}_zero_point"]) == metrics[which]["zero_point"]
    assert int(values["classes"]) == len(reference["classes"]) and values["last_label"] == reference["classes"][-1]
    assert int(values["window"]) == frontend.win_length and int(values["chunk"]) == frontend.chunk_length


def test_settings_header_has_the_measured_arena_and_the_frontend(exported, compressed):
    text = (exported.out_dir / "kws_model_settings.h").read_text()
    defines = dict(re.findall(r"^#define KWS_(\w+) (.+?)(?:  //.*)?$", text, flags=re.M))
    arena = json.loads((compressed / "int8" / "metrics.json").read_text())["tflm"]["arena_bytes"]
    assert int(defines["TENSOR_ARENA_MIN_BYTES"]) == arena
    assert int(defines["TENSOR_ARENA_SIZE"]) == recommended_arena_bytes(arena)
    assert recommended_arena_bytes(arena) % 16 == 0 and recommended_arena_bytes(arena) >= arena * 1.1 + 1024
    frontend = exported.variant.frontend
    assert int(defines["FFT_SIZE"]) == frontend.n_fft and int(defines["HOP_SAMPLES"]) == frontend.hop_length
    assert int(defines["IMAGE_HEIGHT"]) == frontend.image_height and defines["COLOR_MAP"] == f'"{frontend.color_map}"'
    assert defines[f"NORMALIZATION_{frontend.normalization.upper()}"] == "1"
    assert defines["MODEL_SHA256"] == f'"{exported.variant.sha256}"'
    assert "SHA-256: " + exported.variant.sha256 in (exported.out_dir / "kws_model_data.h").read_text()


def test_op_resolver_registers_exactly_the_models_ops(exported):
    text = (exported.out_dir / "kws_op_resolver.h").read_text()
    ops = describe_tflite(exported.variant.data)["ops"]
    assert re.findall(r"resolver\.(Add\w+)\(\);", text) == [add_method(op) for op in ops]
    assert f"constexpr unsigned int kKwsOpCount = {len(ops)};" in text
    assert "tflite::MicroMutableOpResolver<kKwsOpCount> kws_create_op_resolver()" in text


def test_op_names_follow_tflite_micros_generator():
    cases = {"CONV_2D": "AddConv2D", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "FULLY_CONNECTED": "AddFullyConnected",
             "AVERAGE_POOL_2D": "AddAveragePool2D", "LEAKY_RELU": "AddLeakyRelu", "RELU6": "AddRelu6",
             "L2_NORMALIZATION": "AddL2Normalization", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "MEAN": "AddMean",
             "BATCH_MATMUL": "AddBatchMatMul", "CUMSUM": "AddCumSum", "PADV2": "AddPadV2",
             "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM"}  # TFLite Micro's own spellings
    assert {op: add_method(op) for op in cases} == cases
    assert set(cases) <= TFLM_BUILTINS


def tflm_resolver_methods(header: str) -> dict[str, str]:
    """{builtin: method} of a TFLite Micro micro_mutable_op_resolver.h: each Add… method's AddBuiltin call."""
    methods = {}
    for chunk in header.split("TfLiteStatus ")[1:]:
        name = re.match(r"(Add\w+)\(", chunk)
        builtin = re.search(r"AddBuiltin\(\s*BuiltinOperator_(\w+)", chunk.split("\n  }", 1)[0])
        if name and builtin:
            methods[builtin.group(1)] = name.group(1)
    return methods


def test_op_table_matches_a_tflite_micro_checkout():
    """Run by hand: DSLITE_TINY_TFLM_DIR=/path/to/tflite-micro pytest tests/test_export.py -k checkout."""
    root = os.environ.get("DSLITE_TINY_TFLM_DIR")
    if not root:
        pytest.skip("set DSLITE_TINY_TFLM_DIR to a tflite-micro checkout (CI has none)")
    header = Path(root) / "tensorflow" / "lite" / "micro" / "micro_mutable_op_resolver.h"
    methods = tflm_resolver_methods(header.read_text())
    assert set(methods) == TFLM_BUILTINS
    assert {op: add_method(op) for op in TFLM_BUILTINS} == methods


@pytest.mark.parametrize("backbone,alpha", [("mobilenet", 0.25), ("mobilenet_v2", 0.35), ("densenet121", 1.0)])
def test_every_op_of_our_int8_backbones_has_a_tflite_micro_kernel(backbone, alpha, monkeypatch):
    import tf_keras as keras

    from dslite_tiny.compress.convert import convert_model
    from dslite_tiny.models.registry import create_model

    # The DS-CNN's ops go through the same check in every C export (the ``exported`` fixture).
    # DenseNet121's 58 dense blocks convert in ~40 s: one block per stage has the same layer kinds, so the
    # same ops (built by the same keras.applications code through our registry and head).
    from tf_keras.src.applications.densenet import DenseNet

    monkeypatch.setattr(keras.applications, "DenseNet121", lambda **kwargs: DenseNet([1, 1, 1, 1], **kwargs))
    model = create_model(backbone, input_shape=(32, 32, 3), num_classes=4, units=8, alpha=alpha)
    images = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    ops = describe_tflite(convert_model(model, "int8", representative=images))["ops"]
    assert set(ops) <= TFLM_BUILTINS, sorted(set(ops) - TFLM_BUILTINS)


def test_c_identifiers_and_strings_are_sanitised():
    assert c_identifier("KWS model") == "kws_model" and c_identifier("8-bit/kws") == "m_8_bit_kws"
    assert c_identifier("pqat-int8") == "pqat_int8"
    with pytest.raises(ValueError):
        c_identifier("---")
    assert c_string('a"b\\c?') == '"a\\"b\\\\c\\077"' and c_string("é") == '"\\303\\251"'


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_c_sources_cross_compile_for_cortex_m4_with_16_byte_alignment(exported):
    out = exported.out_dir
    flags = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os")
    (out / "use.c").write_text('#include "kws_model_data.h"\n#include "kws_model_settings.h"\n'
                               "unsigned sum(void) { unsigned s = 0; for (unsigned i = 0; i < g_kws_model_data_size;"
                               " ++i) s += g_kws_model_data[i]; return s + KWS_TENSOR_ARENA_SIZE; }\n")
    _compile("arm-none-eabi-gcc", out / "use.c", "-std=c99", *flags)
    obj = _compile("arm-none-eabi-g++", out / "kws_model_data.cc", "-std=c++11", "-fno-exceptions", *flags)
    sections = subprocess.run(["arm-none-eabi-objdump", "-h", str(obj)], capture_output=True, text=True,
                              check=True).stdout
    rodata = next(line for line in sections.splitlines() if ".rodata" in line)
    assert rodata.split()[-1] == "2**4"  # 16-byte aligned in the object file
    assert int(rodata.split()[2], 16) == len(exported.variant.data)


def test_array_format_matches_tinymlgen_on_a_dynamic_range_model(tmp_path):
    """tinymlgen converts a Keras model itself (dynamic range) and writes its own C array: our writer, given
    those very bytes, must produce an array the C compiler sees as byte-identical."""
    tinymlgen = pytest.importorskip("tinymlgen")
    import tf_keras as keras

    model = keras.Sequential([keras.layers.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    reference_c = tinymlgen.port(model, variable_name="tmg_model", pretty_print=True)
    (tmp_path / "tmg.c").write_text(reference_c + "\n")
    data = bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", reference_c.split("{", 1)[1].split("}")[0]))
    assert describe_tflite(data)["input"]["dtype"] == "float32"  # dynamic range: float I/O
    (tmp_path / "tmg.tflite").write_bytes(data)
    result = export_model(tmp_path / "tmg.tflite", target="c", name="ours", out_dir=tmp_path)
    (tmp_path / "check.c").write_text(
        '#include <string.h>\n#include "ours_model_data.h"\n'
        "extern const unsigned char tmg_model[];\nextern const int tmg_model_len;\n"
        "int main(void) { if ((unsigned)tmg_model_len != g_ours_model_data_size) return 2;\n"
        "  return memcmp(tmg_model, g_ours_model_data, g_ours_model_data_size) ? 3 : 0; }\n")
    objects = [_compile("cc", tmp_path / "check.c", "-std=c99"), _compile("c++", tmp_path / "ours_model_data.cc"),
               subprocess.run(["cc", "-c", "tmg.c", "-o", "tmg.o"], cwd=tmp_path, check=True) and tmp_path / "tmg.o"]
    subprocess.run(["c++", *map(str, objects), "-o", str(tmp_path / "check")], check=True)
    assert subprocess.run([str(tmp_path / "check")]).returncode == 0
    assert result.variant.arena_bytes > 0  # a bare .tflite: the arena was bisected in TFLM here


def test_bare_tflite_gets_index_labels_and_a_measured_arena(compressed, tmp_path, caplog):
    bare = tmp_path / "kws.tflite"
    shutil.copy(compressed / "int8" / "model.tflite", bare)
    result = export_model(bare, target="c", out_dir=tmp_path / "c")
    metrics = json.loads((compressed / "int8" / "metrics.json").read_text())
    assert result.variant.name == "kws" and result.variant.arena_bytes == metrics["tflm"]["arena_bytes"]
    settings = (tmp_path / "c" / "kws_model_settings.h").read_text()
    assert "#define KWS_HAS_FRONTEND 0" in settings and '#define KWS_LABELS {"0", "1"' in settings
    assert "labels are class indices" in caplog.text


def test_phone_bundle_runs_in_litert_with_its_descriptor(compressed, tmp_path):
    from dslite_tiny.measure.litert import create_interpreter

    result = export_model(compressed / "int8", target="phone", name="kws", out_dir=tmp_path)
    assert sorted(p.name for p in result.files) == ["kws.json", "kws.tflite", "labels.txt"]
    descriptor = json.loads((tmp_path / "kws.json").read_text())
    reference = json.loads((compressed / "reference.json").read_text())
    assert (tmp_path / "labels.txt").read_text().splitlines() == reference["classes"] == descriptor["labels"]
    assert descriptor["frontend"]["chunk_samples"] == FrontendConfig(**reference["frontend"]).chunk_length
    interpreter = create_interpreter((tmp_path / "kws.tflite").read_bytes())
    detail = interpreter.get_input_details()[0]
    assert list(detail["shape"]) == descriptor["input"]["shape"]
    assert detail["quantization"] == (pytest.approx(descriptor["input"]["scale"]), descriptor["input"]["zero_point"])


# --- boards --------------------------------------------------------------------------------------------------

def test_shipped_board_profiles():
    boards = {name: load_board(name) for name in list_boards()}
    assert {"nano33ble", "esp32s3", "stm32h743", "rp2040", "mps2-an386", "phone"} <= set(boards)
    sizes = {name: (b.flash_kib, b.ram_kib) for name, b in boards.items()}
    assert sizes["nano33ble"] == (1024, 256) and sizes["stm32h743"] == (2048, 1024)
    assert sizes["rp2040"] == (2048, 264) and sizes["mps2-an386"] == (4096, 4096)
    assert boards["esp32s3"].external_ram_kib == 8192 and boards["phone"].runtime == "litert"


def _board(**fields) -> BoardConfig:
    base = {"name": "t", "flash_kib": 1000, "ram_kib": 50, "runtime": "tflm", "system_flash_kib": 10,
            "system_ram_kib": 10}
    return BoardConfig(**{**base, **fields})


def test_fit_verdicts_at_the_boundaries():
    from dslite_tiny.export.boards import IO_BYTES

    code = 128 * 1024
    board = _board(flash_kib=328)
    model_fits = 190 * 1024  # + 128 KiB code + 10 KiB system = exactly the flash
    arena_fits = 40 * 1024 - 1000 - IO_BYTES  # + frontend 1000 + I/O + 10 KiB system = exactly the RAM
    exact = check_fit(Footprint(model_fits, arena_fits, 1000, IO_BYTES, mcu_code_bytes=code), board)
    assert exact.fits and exact.flash_verdict == "fits" and exact.ram_verdict == "fits"
    over = check_fit(Footprint(model_fits + 2048, arena_fits + 512, 1000, IO_BYTES, mcu_code_bytes=code), board)
    assert (over.flash_verdict, over.ram_verdict) == ("short by 2.0 KB", "short by 0.5 KB") and not over.fits


def test_runtime_code_is_the_measured_core_plus_each_kernel_once():
    from dslite_tiny.export.boards import code_table, tflm_code_bytes
    from dslite_tiny.export.op_resolver import TFLM_BUILTINS

    table = code_table()
    kernels = table["kernel_bytes"]
    assert set(kernels) | set(table["unmeasured"]) == TFLM_BUILTINS and len(kernels) > 0.9 * len(TFLM_BUILTINS)
    base = table["core_bytes"] + table["protocol_bytes"]
    assert tflm_code_bytes(["CONV_2D", "CONV_2D"], with_frontend=False) == base + kernels["CONV_2D"]
    assert (tflm_code_bytes(["CONV_2D"], with_frontend=True) - tflm_code_bytes(["CONV_2D"], with_frontend=False)
            == table["frontend_code_bytes"] > 0)
    assert tflm_code_bytes(["NO_SUCH_OP"], with_frontend=False) == base + max(kernels.values())
    check = table["check"]  # the demo model linked whole: the per-kernel sum bounds it from above
    assert check["linked_bytes"] <= check["summed_bytes"] <= 1.25 * check["linked_bytes"]


def test_arena_may_move_to_external_ram_but_not_beyond_a_region():
    psram = _board(external_ram_kib=1024)
    moved = check_fit(Footprint(1024, 500 * 1024, 0, 0), psram)
    assert moved.fits and moved.arena_in_external_ram and "external RAM" in moved.ram_verdict
    split = _board(ram_kib=1024, arena_max_kib=512)
    too_big = check_fit(Footprint(1024, 600 * 1024, 0, 0), split)
    assert not too_big.fits and too_big.ram_short == 88 * 1024


def test_board_profile_errors():
    with pytest.raises(ConfigError, match="leaves no flash"):
        _board(system_flash_kib=1000)
    with pytest.raises(ConfigError, match="unknown boards preset 'uno'"):
        load_board("uno")


# --- command line ----------------------------------------------------------------------------------------------

def test_export_cli_board_check_and_force(compressed, tmp_path):
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("name: tiny\nflash_kib: 200\nram_kib: 16\nsystem_flash_kib: 8\n")
    out = tmp_path / "c"
    refused = run_cli("export", str(compressed / "int8"), "--board", str(tiny), "--out", str(out))
    assert_user_error(refused, "the model does not fit tiny:", "RAM", "short by", "--force")
    assert not out.exists()
    forced = run_cli("export", str(compressed / "int8"), "--board", str(tiny), "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "DOES NOT FIT (--force) tiny:" in forced.stdout and (out / "int8_model_data.cc").is_file()
    fits = run_cli("export", str(compressed / "int8"), "--board", "mps2-an386", "--target", "phone", "--out",
                   str(tmp_path / "p"))
    assert fits.returncode == 0 and "mps2-an386: flash" in fits.stdout and "fits" in fits.stdout


def test_export_cli_bad_input(compressed, tmp_path):
    assert_user_error(run_cli("export", str(tmp_path / "nothing")), "nothing: no such file or folder")
    assert_user_error(run_cli("export", str(tmp_path)), "no model.tflite in this folder")
    (tmp_path / "fake.tflite").write_bytes(b"not a model at all")
    assert_user_error(run_cli("export", str(tmp_path / "fake.tflite")), "not a TensorFlow Lite model")
    data = bytearray((compressed / "int8" / "model.tflite").read_bytes())
    (tmp_path / "truncated.tflite").write_bytes(data[:3000])
    flipped = bytearray(data)
    flipped[100::97] = bytes(b ^ 0xFF for b in flipped[100::97])
    (tmp_path / "flipped.tflite").write_bytes(flipped)
    for name in ("truncated", "flipped"):
        assert_user_error(run_cli("export", str(tmp_path / f"{name}.tflite")), f"{name}.tflite",
                          "a corrupt or truncated TensorFlow Lite model")
    failed = tmp_path / "out" / "int8"
    shutil.copytree(compressed / "int8", failed)
    metrics = json.loads((failed / "metrics.json").read_text())
    (failed / "metrics.json").write_text(json.dumps({**metrics, "status": "failed", "reason": "forced"}))
    assert_user_error(run_cli("export", str(failed)), "variant int8 failed in compress (forced)")
    assert_user_error(run_cli("export", str(compressed / "int8"), "--board", "uno"), "unknown boards preset 'uno'")
    assert_user_error(run_cli("export", str(compressed / "int8"), "--name", "---"), "--name '---' has no letters")


def test_user_error_when_tflm_cannot_run_a_bare_model(tmp_path, monkeypatch):
    from dslite_tiny.export import variant as variant_module
    from dslite_tiny.measure import tflm

    def refuse(path, sample):
        raise tflm.TFLMError("Didn't find op for builtin opcode 'FOO'")

    monkeypatch.setattr(tflm, "check_tflm", refuse)
    fake = variant_module.Variant(tmp_path / "m.tflite", "m", b"", "0" * 64,
                                  {"input": {"shape": [1, 4, 4, 1], "dtype": "int8"}}, ("0",), False, None, None, {},
                                  Graph((), (), (0,), (0,)))
    with pytest.raises(UserError, match="TensorFlow Lite Micro cannot run this model: Didn't find op"):
        variant_module.with_tflm_check(fake)


def test_an_op_without_a_tflite_micro_kernel_is_refused_before_anything_is_written(tmp_path):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4, 1], tf.float32)])
    def angle(x):
        return tf.math.atan2(x, x + 1.0)

    model = tmp_path / "atan2.tflite"
    converter = tf.lite.TFLiteConverter.from_concrete_functions([angle.get_concrete_function()], angle)
    model.write_bytes(converter.convert())
    assert "ATAN2" in describe_tflite(model.read_bytes())["ops"]
    with pytest.raises(UserError, match="atan2.tflite: builtin op ATAN2 has no TFLite Micro kernel"):
        export_model(model, target="c", out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()

"""The C firmware core, compiled with the host compiler: its frontend against the Python frontend, its
protocol parser on valid, invalid and random input, its static RAM against the board fit check, and a
cross-compile for a Cortex-M4F when the ARM toolchain is installed."""
from __future__ import annotations

import ctypes
import dataclasses
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import dslite_tiny  # noqa: F401
from dslite_tiny.audio.frontend import Frontend
from dslite_tiny.config import FrontendConfig, load_config, to_dict
from dslite_tiny.export.boards import frontend_buffer_bytes
from dslite_tiny.export.settings import frontend_table_bytes
from dslite_tiny.export.variant import load_variant
from dslite_tiny.measure.litert import quantize_input
from firmware_host import qemu
from firmware_host.build import CORE_SOURCES, core_files, host_library, model_files

# Frontends unlike the test model's own (64×64 gray, tf): colour maps, torch/caffe normalisation,
# anti-aliasing, top_db, peak normalisation, nearest resize, an FFT size that is no power of two and MFCCs.
FRONTENDS = {
    "model": {},
    "viridis-torch": dict(sr=8000, fmax=4000.0, chunk_s=1.0, window_s=0.032, hop_s=0.016, fft_s=0.032,
                          n_mels=40, color_map="viridis", image_height=96, image_width=96, channels=3,
                          normalization="torch"),
    "magma-caffe-antialias": dict(sr=16000, chunk_s=1.0, window_s=0.025, hop_s=0.010, fft_s=0.030, n_mels=64,
                                  color_map="magma", image_height=32, image_width=48, channels=3,
                                  normalization="caffe", antialias=True, top_db=80.0, normalize_audio=True),
    "gray3-nearest": dict(sr=16000, chunk_s=0.5, window_s=0.032, hop_s=0.016, fft_s=0.064, n_mels=32,
                          color_map="gray", image_height=50, image_width=20, channels=3, resize="nearest"),
    # the keyword-spotting presets: log-mel 40×49 and MLPerf Tiny's MFCC 10×49, both at 16 kHz
    **{name: to_dict(load_config(FrontendConfig, name, stage="frontend")) for name in ("kws-40x49", "kws-mfcc-10x49")},
}


def signal(kind: str, n: int, sr: int) -> np.ndarray:
    """Speech-like (a gliding, amplitude-modulated harmonic voice with breath noise), silence, or clipping."""
    rng = np.random.default_rng(1)
    t = np.arange(n) / sr
    if kind == "silent":
        return np.zeros(n)
    if kind == "clipped":
        return np.clip(3.0 * np.sin(2 * np.pi * 440 * t) + 0.5 * rng.standard_normal(n), -1.0, 1.0)
    pitch = 2 * np.pi * np.cumsum(120 + 40 * np.sin(2 * np.pi * 2 * t)) / sr
    voice = sum(np.sin(k * pitch) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    return 0.25 * voice + 0.01 * rng.standard_normal(n)


@pytest.fixture(scope="module")
def variant(compressed):
    return load_variant(compressed / "int8")


def load_core(variant, frontend: dict, cache: Path) -> ctypes.CDLL:
    config = dataclasses.replace(variant.frontend, **frontend) if frontend else variant.frontend
    FrontendConfig(**dataclasses.asdict(config))  # validated like a user's config
    core = ctypes.CDLL(str(host_library(dataclasses.replace(variant, frontend=config), cache_dir=cache)))
    core.dt_frontend_static_bytes.restype = ctypes.c_size_t
    core.dt_frontend_table_bytes.restype = ctypes.c_size_t
    core.dt_protocol_commands.restype = ctypes.c_uint32
    return core


def frontend_case(variant, name: str) -> tuple[FrontendConfig, np.ndarray, np.ndarray]:
    """The frontend ``name``, three int16 chunks (speech-like, silent, clipped) and the Python frontend's
    int8 model input for each."""
    frontend = dataclasses.replace(variant.frontend, **FRONTENDS[name])
    detail = {"dtype": np.int8, "quantization": (variant.description["input"]["scale"],
                                                 variant.description["input"]["zero_point"])}
    pcm = np.stack([np.clip(np.round(signal(kind, frontend.chunk_length, frontend.sr) * 32768), -32768, 32767)
                    for kind in ("speech", "silent", "clipped")]).astype("<i2")
    expected = np.stack([quantize_input(Frontend(frontend)(chunk.astype(np.float32) / np.float32(32768)),
                                        detail).ravel() for chunk in pcm])
    return frontend, pcm, expected


def assert_like_python(got: np.ndarray, expected: np.ndarray, name: str) -> None:
    """The C frontend's contract: no element off by more than 1, at least 99.9 % identical, per chunk."""
    for kind, g, e in zip(("speech", "silent", "clipped"), got, expected):
        difference = np.abs(g.astype(int) - e.astype(int))
        assert difference.max() <= 1, (name, kind)
        assert np.mean(difference == 0) >= 0.999, (name, kind, np.mean(difference == 0))


@pytest.mark.parametrize("name", FRONTENDS)
def test_c_frontend_equals_python_frontend(variant, name, tmp_path_factory):
    frontend, pcm, expected = frontend_case(variant, name)
    core = load_core(variant, FRONTENDS[name], tmp_path_factory.getbasetemp() / "firmware")
    got = np.zeros(expected.shape, np.int8)
    for chunk, out in zip(pcm, got):
        core.dt_frontend_run(chunk.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p))
    assert_like_python(got, expected, name)
    # the fit check budgets exactly the C's static buffers and tables
    assert core.dt_frontend_static_bytes() == frontend_buffer_bytes(frontend) - 2 * frontend.chunk_length
    assert core.dt_frontend_table_bytes() == frontend_table_bytes(frontend)


@pytest.mark.skipif(qemu.tools_missing() is not None, reason=f"{qemu.tools_missing()} (.ci/run installs them)")
@pytest.mark.parametrize("name", FRONTENDS)
def test_c_frontend_on_cortex_m4_equals_python_frontend(variant, name, tmp_path_factory):
    """The same contract for the frontend compiled for a Cortex-M4F (hard float) and run on QEMU."""
    frontend, pcm, expected = frontend_case(variant, name)
    got, instructions, sizes = qemu.frontend_on_cortex_m4(dataclasses.replace(variant, frontend=frontend), pcm,
                                                          cache_dir=tmp_path_factory.getbasetemp() / "qemu")
    assert_like_python(got, expected, name)
    assert len(instructions) == 3 and min(instructions) > 0
    assert sizes == {"ram_bytes": frontend_buffer_bytes(frontend) - 2 * frontend.chunk_length,
                     "table_bytes": frontend_table_bytes(frontend)}


class Core:
    """The compiled core behind Python callbacks, without a pty: bytes in, reply lines out, on a simulated
    microsecond clock that moves only when a test says (``advance``)."""

    def __init__(self, library: ctypes.CDLL, variant) -> None:
        self.library, self.output = library, bytearray()
        self.invokes, self.now_us = 0, 0
        self._write = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)(
            lambda text, length: self.output.extend(ctypes.string_at(text, length)))
        self._invoke = ctypes.CFUNCTYPE(ctypes.c_int)(self._on_invoke)
        self._micros = ctypes.CFUNCTYPE(ctypes.c_uint32)(lambda: self.now_us % 2**32)
        self.input = (ctypes.c_int8 * int(np.prod(variant.description["input"]["shape"])))()
        self.scores = (ctypes.c_int8 * variant.num_classes)(*range(-3, variant.num_classes - 3))
        library.dt_host_boot(self._write, self._invoke, self.input, self.scores, self._micros)

    def advance(self, microseconds: int) -> list[str]:
        """Time passes with the link idle (the board's main loop polls)."""
        self.output.clear()
        self.now_us += microseconds
        self.library.dt_protocol_poll()
        return self.output.decode("latin-1").split("\r\n")[:-1]

    def trickle(self, data: bytes, *, gap_us: int) -> list[str]:
        """``data`` one byte every ``gap_us``, polled between bytes: a slow link."""
        lines = []
        for byte in data:
            lines += self.advance(gap_us) + self.send(bytes([byte]))
        return lines

    def _on_invoke(self) -> int:
        self.invokes += 1
        return 0

    def send(self, data: bytes) -> list[str]:
        self.output.clear()
        self.library.dt_protocol_feed(data, len(data))
        return self.output.decode("latin-1").split("\r\n")[:-1]


@pytest.fixture
def core(variant, tmp_path_factory) -> Core:
    core = Core(load_core(variant, {}, tmp_path_factory.getbasetemp() / "firmware"), variant)
    core.send(b"%")
    return core


def test_protocol_commands(core, variant):
    assert core.send(b"name%") == ["m-name-dut-[virtual]", "m-ready"]
    assert core.send(b"%") == ["m-ready"]
    model = core.send(b"model%")[0]
    assert model == (f"m-model-[sha256={variant.sha256},variant=int8,classes={variant.num_classes},"
                     f"labels={'|'.join(variant.labels)}]")
    elements = len(core.input)
    data = bytes(range(256)) * (elements // 256) + bytes(elements % 256)
    assert core.send(f"db load {elements}%".encode()) == [f"m-[Expecting {elements} bytes]", "m-ready"]
    for start in range(0, elements, 38):
        reply = core.send(f"db {data[start:start + 38].hex()}%".encode())
    assert reply == ["m-load-done", "m-ready"]
    assert core.send(b"crc%") == [f"m-crc-{zlib.crc32(data):08x}", "m-ready"]
    lines = core.send(b"infer 3 2%")
    assert lines[:3] == ["m-warmup-start-2", "m-warmup-done", "m-infer-start-3"] and core.invokes == 5
    assert bytes(core.input) == data  # infer copies the loaded buffer into the input tensor
    results = re.fullmatch(r"m-results-\[(.*)\]", lines[-3]).group(1)
    assert lines[-2] == f"m-results-crc-{zlib.crc32(results.encode()):08x}" and lines[-1] == "m-ready"
    scale, zero = variant.description["output"]["scale"], variant.description["output"]["zero_point"]
    assert [float(s) for s in results.split(",")] == pytest.approx(
        [scale * (q - zero) for q in core.scores], abs=1e-6)


def test_protocol_binary_audio_and_classify(core, variant):
    samples = variant.frontend.chunk_length
    pcm = (np.arange(samples) % 200 - 100).astype("<i2").tobytes()
    assert core.send(f"audio load {samples}%".encode())[0] == f"m-[Expecting {2 * samples} bytes]"
    bad = core.send(f"bulk {len(pcm)} {zlib.crc32(pcm) ^ 1:08x}%".encode() + pcm)
    assert bad[0].startswith("e-[bulk crc ") and bad[-1] == "m-ready"
    assert core.send(f"bulk {len(pcm)} {zlib.crc32(pcm):08x}%".encode() + pcm) == [
        f"m-bulk-ok-{len(pcm)}", "m-load-done", "m-ready"]
    lines = core.send(b"classify 0%")
    assert lines[0].startswith("m-frontend-us-") and lines[1].startswith("m-infer-us-")
    assert lines[-2] == f"m-class-{int(np.argmax(list(core.scores)))}"


@pytest.mark.parametrize("command, error", [
    (b"bogus%", "e-[unknown command bogus]"),
    (b"x" * 100 + b"%", "e-[command too long]"),
    (b"db 0g%", "e-[db: no load open]"),
    (b"db load 3%", "e-[db load: the model input takes"),
    (b"audio load 5%", "e-[audio load: a chunk is"),
    (b"infer 1 0%", "e-[infer: load the input with db load first]"),
    (b"classify 0%", "e-[classify: load a chunk with audio load first]"),
    (b"bulk 4 zzzzzzzz%", "e-[bulk: no room: open a load first]"),
    (b"results%", "e-[results: no inference yet]"),
    (b"infer 1 2 3 4 5%", "e-[command: too many arguments]"),
    (b"infer 123456789 0%", "e-[infer: N and W are at most 100000]"),  # no 123-million-inference stall
    (b"infer 1 100001%", "e-[infer: N and W are at most 100000]"),
    (b"classify 999999%", "e-[classify: W is at most 100000]"),
])
def test_protocol_rejects_invalid_commands(core, command, error):
    lines = core.send(command)
    assert lines[0].startswith(error) and lines[-1] == "m-ready", lines


def test_a_slow_link_loads_and_infers(core, variant):
    """1 byte per ms (a 4 KB block takes 4 s): the bulk timeout counts silence, not the payload's time."""
    elements = len(core.input)
    data = bytes(range(256)) * (elements // 256) + bytes(elements % 256)
    assert core.trickle(f"db load {elements}%".encode(), gap_us=1000)[-1] == "m-ready"
    lines = core.trickle(f"bulk {elements} {zlib.crc32(data):08x}%".encode() + data, gap_us=1000)
    assert lines == [f"m-bulk-ok-{elements}", "m-load-done", "m-ready"]
    assert core.trickle(b"infer 1 0%", gap_us=1000)[-2].startswith("m-results-crc-")


def test_a_stalled_bulk_never_parses_its_payload_as_commands(core):
    """After a bulk times out, the rest of its payload (here, bytes that read as commands) is discarded
    if it still comes; if it never comes, a second silence ends the discarding."""
    elements = len(core.input)
    payload = (b"infer 1 0%name%" * elements)[:elements]
    core.send(f"db load {elements}%".encode())
    assert core.send(f"bulk {elements} {zlib.crc32(payload):08x}%".encode() + payload[:1000]) == []
    assert core.advance(900_000) == []  # not yet: 0.9 s of silence
    assert core.advance(200_000) == [f"e-[bulk timeout: 1000 of {elements} bytes]", "m-ready"]
    commands = core.library.dt_protocol_commands()
    assert core.send(payload[1000:]) == [] and core.library.dt_protocol_commands() == commands
    assert core.send(b"name%") == ["m-name-dut-[virtual]", "m-ready"]
    # bytes lost on the link: the discarding ends after another second of silence
    core.send(f"bulk {elements} {zlib.crc32(payload):08x}%".encode() + payload[:10])
    assert core.advance(1_100_000)[0].startswith("e-[bulk timeout: 10 of")
    assert core.send(b"%") == [] and core.advance(1_100_000) == []
    assert core.send(b"name%") == ["m-name-dut-[virtual]", "m-ready"]


@pytest.mark.parametrize("scale, zero_point", [(1000.0, 0), (3.0e30, -5), (1.0e-6, 3)])
def test_results_fit_any_output_scale_and_64_classes(variant, scale, zero_point, tmp_path_factory):
    """Raw logits (scale 1000: up to ±255000), absurd scales and tiny ones: every score is printed whole,
    its CRC holds, and nothing is written past a buffer (the line is streamed, not buffered)."""
    description = {**variant.description,
                   "output": {**variant.description["output"], "scale": scale, "zero_point": zero_point,
                              "shape": [1, 64]}}
    wide = dataclasses.replace(variant, description=description, labels=tuple(f"c{i}" for i in range(64)))
    core = Core(load_core(wide, {}, tmp_path_factory.getbasetemp() / "firmware"), wide)
    assert wide.num_classes == 64 and len(core.scores) == 64
    for k, q in enumerate([-128, 127, 0, 1, -1] * 12 + [126, -127, 5, -5]):
        core.scores[k] = q
    elements = len(core.input)
    core.send(f"db load {elements}%".encode())
    data = bytes(elements)
    core.send(f"bulk {elements} {zlib.crc32(data):08x}%".encode() + data)
    lines = core.send(b"infer 1 0%")
    results = re.fullmatch(r"m-results-\[(.*)\]", lines[-3]).group(1)
    assert lines[-2] == f"m-results-crc-{zlib.crc32(results.encode()):08x}"
    expected = [np.float32(scale) * np.float32(q - zero_point) for q in core.scores]
    assert [float(v) for v in results.split(",")] == pytest.approx(expected, rel=1e-6, abs=1e-6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600))
def test_protocol_survives_random_bytes(core, noise):
    """No crash and bounded replies on any input; a lone % afterwards always brings m-ready."""
    lines = core.send(noise)
    assert len(core.output) <= 4000 + 200 * noise.count(b"%")
    assert all(re.match(r"^(m|e)-", line) for line in lines), lines
    core.library.dt_protocol_poll()
    recovered = core.send(b"%")
    assert recovered[-1:] == ["m-ready"] or core.send(bytes(70000) + b"%")[-1] == "m-ready"


def test_firmware_project_sources_build_for_cortex_m4(variant, tmp_path):
    """Portable C99: the core and frontend compile for a Cortex-M4F with the board toolchain."""
    compiler = shutil.which("arm-none-eabi-gcc")
    if compiler is None:
        pytest.skip("arm-none-eabi-gcc is not installed (.ci/run installs it)")
    for name, text in {**core_files(tflm=False), **model_files(variant, name="kws", device="test")}.items():
        (tmp_path / name).write_text(text)
    for source in CORE_SOURCES:
        subprocess.run([compiler, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-Os", "-mcpu=cortex-m4",
                        "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", f"-I{tmp_path}", "-c",
                        str(tmp_path / source), "-o", str(tmp_path / f"{source}.o")], check=True)


def test_tflite_micro_per_op_profile_adds_up(variant, tmp_path):
    """The QEMU bench's TFLite Micro profiler (bench_tflm.cc with DT_PROFILE, what ``tflm_m4.py
    --more-models`` records beside the engine's per-op counts): one count per operator of the model, and
    together the Invoke's instructions. Run by hand with an assembled tree (``tflm_m4.py``'s ``assemble_tree``,
    CI has none): DSLITE_TINY_TFLM_TREE=<tree with CMSIS-NN> pytest tests/test_firmware.py -k per_op"""
    import os

    from dslite_tiny.export.variant import with_tflm_check
    from dslite_tiny.measure.graph import read_graph

    root = os.environ.get("DSLITE_TINY_TFLM_TREE")
    if not root or qemu.tools_missing():
        pytest.skip("set DSLITE_TINY_TFLM_TREE to an assembled TFLite Micro tree, with QEMU installed (CI has none)")
    tree = qemu.TflmTree(Path(root), (".", "third_party/flatbuffers/include", "third_party/gemmlowp",
                                      "third_party/ruy", "third_party/cmsis_nn", "third_party/cmsis_nn/Include"),
                         defines=("CMSIS_NN",))
    model = with_tflm_check(variant)
    inputs = np.random.default_rng(0).integers(
        -128, 128, (2, int(np.prod(model.description["input"]["shape"])))).astype(np.int8)
    per_op = qemu.tflm_op_instructions(model, inputs, tree, cache_dir=tmp_path)
    _, totals, _ = qemu.tflm_on_cortex_m4(model, inputs, tree, cache_dir=tmp_path)
    assert per_op.shape == (2, len(read_graph(model.data, model.path).ops)) and (per_op > 0).all()
    assert np.all(np.abs(per_op.sum(axis=1) - totals) <= 0.01 * np.asarray(totals))

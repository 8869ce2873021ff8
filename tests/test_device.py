"""The device side end to end: the virtual device (C core + TFLite Micro) on a real pseudo-terminal, driven
by the harness and the CLI, with and without link faults; resume after a kill; flashing projects."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli
from test_cli import assert_user_error

import dslite_tiny  # noqa: F401
from dslite_tiny.export.boards import list_boards, load_board
from dslite_tiny.export.variant import load_variant
from firmware_host import qemu
from firmware_host.flash import write_project, plan_flash


@pytest.fixture(scope="module")
def model_dir(compressed, tmp_path_factory) -> Path:
    """A copy of the int8 variant folder (and the run's reference.json): device results are written next to
    the variant, and the session's compress output stays as other tests expect it."""
    out = tmp_path_factory.mktemp("device-run")
    shutil.copy(compressed / "reference.json", out / "reference.json")
    return Path(shutil.copytree(compressed / "int8", out / "int8"))


def _as_background_job() -> None:
    """What a shell does to a job started with ``&`` or ``nohup``: SIGINT ignored, which its children inherit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class VirtualProcess:
    """``dslite-tiny device virtual`` in its own process, as a user starts it in the background: SIGINT must
    still stop it."""

    def __init__(self, model_dir: Path, link: Path, *options: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "dslite_tiny", "device", "virtual", "--model-dir",
                                         str(model_dir), "--port-link", str(link), *options],
                                        stdout=subprocess.PIPE, text=True, preexec_fn=_as_background_job)
        first = self.process.stdout.readline()
        assert first.startswith("virtual device") and first.strip().endswith(str(link)), first
        self.port = str(link)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)  # TensorFlow's teardown on a loaded machine took over 10 s


class QemuProcess:
    """``dslite-tiny device qemu`` in its own process: the firmware on QEMU's Cortex-M4, as a user starts it."""

    def __init__(self, model_dir: Path, cache: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "dslite_tiny", "device", "qemu", "--model-dir",
                                         str(model_dir)], stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, "DSLITE_TINY_CACHE": str(cache)})
        first = self.process.stdout.readline()
        assert first.startswith("QEMU device") and "socket://127.0.0.1:" in first, first
        self.port = first.split()[-1]

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it: QEMU, which spins a core, must end with it."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        assert not qemu._listening(int(self.port.rsplit(":", 1)[1])), "QEMU outlived device qemu"


@pytest.fixture
def virtual_port(model_dir, tmp_path):
    device = VirtualProcess(model_dir, tmp_path / "clean")
    yield device.port
    device.stop()


def device_eval(port: str, model_dir: Path, data: Path, *options: str) -> subprocess.CompletedProcess:
    return run_cli("device", "eval", "--port", port, "--model-dir", str(model_dir), "--data", str(data),
                   "--timeout", "2", *options)


def records(path: Path) -> dict[int, dict]:
    lines = path.read_text().splitlines()
    return {r["index"]: r for r in map(json.loads, lines[1:])}


@pytest.mark.skipif(qemu.tools_missing() is not None, reason=f"{qemu.tools_missing()} (.ci/run installs them)")
def test_device_eval_on_the_emulated_cortex_m4_agrees_with_the_host_and_reports_instructions(compressed, demo_data,
                                                                                             tmp_path):
    """The firmware core, the C frontend and the generated engine on QEMU's Cortex-M4 over a TCP serial line:
    every chunk classified as the host classifies it (TFLM reference kernels), in audio mode (the device computes the
    features) on the first chunks, where QEMU's UART takes ~2 s per 32 KB chunk, and on twelve in tensor mode.
    The runs record QEMU's clock whatever they are named, and the report, read at 1400 px in Chromium with a
    partial virtual-device run beside them, labels them as instructions and scores the partial run on its chunks."""
    run = Path(shutil.copytree(compressed, tmp_path / "run"))
    model_dir = run / "int8"
    device = QemuProcess(model_dir, tmp_path / "cache")
    try:
        info = run_cli("device", "info", "--port", device.port)
        assert info.returncode == 0 and "device    mps2-an386" in info.stdout, info.stderr
        for mode, limit, name in (("audio", "6", "newcomer"), ("tensor", "12", "qemu-tensor")):
            result = device_eval(device.port, model_dir, demo_data, "--mode", mode, "--limit", limit, "--name", name)
            assert result.returncode == 0, result.stderr
            summary = json.loads((model_dir / f"device-{name}.json").read_text())
            assert summary["accuracy"]["agreement"] == 1.0 and summary["chunks"] >= 6, summary
            assert summary["clock"] == "qemu-icount" and summary["latency"]["inference"]["median_ms"] > 0
            assert "M instr." in result.stdout and f"wrote {model_dir / f'device-{name}.json'}" in result.stdout
    finally:
        device.stop()
    _check_report_of_device_runs(run, demo_data, tmp_path)


def _check_report_of_device_runs(run: Path, demo_data: Path, tmp_path: Path) -> None:
    from conftest import CHROMIUM, table_widths

    from dslite_tiny.cli.options import resolve_data
    from dslite_tiny.report.build import build_report
    from firmware_host.harness import EvalSettings, evaluate_on_device
    from firmware_host.virtual import serve_virtual

    with serve_virtual(run / "int8") as port:
        evaluate_on_device(port, run / "int8", resolve_data(str(demo_data)), EvalSettings(mode="tensor", limit=5))
    summary = json.loads((run / "int8" / "device-virtual.json").read_text())
    assert summary["clock"] == "host-us" and summary["chunks"] == 5 < summary["test_chunks"]
    report = build_report(run, report_dir=tmp_path / "report")
    cells = [[cell.strip() for cell in row.strip().strip("|").split("|")]
             for row in report.markdown.read_text().splitlines() if row.startswith("| int8 | ")]
    rows = {row[1]: row for row in cells}
    newcomer, virtual = rows["newcomer"], rows["virtual"]
    assert newcomer[2] == "qemu-icount" and newcomer[7].endswith("M instr.") and newcomer[8].endswith("M instr.")
    host_uar = summary["accuracy"]["host_uar"]
    assert virtual[3] == f"5 of {summary['test_chunks']}" and virtual[7].endswith("ms")
    assert virtual[5] == f"{100 * (summary['accuracy']['chunks']['uar'] - host_uar):+.1f}"  # against the same chunks
    if CHROMIUM is None:
        pytest.skip("no chromium to lay the report out (.ci/run installs it)")
    widths = table_widths(report.html, width=1400)
    assert len(widths) >= 4 and all(scroll <= client for scroll, client in widths), widths


def test_device_eval_over_a_pty_matches_host_litert(virtual_port, model_dir, demo_data):
    info = run_cli("device", "info", "--port", virtual_port)
    assert info.returncode == 0 and "device    virtual" in info.stdout and "sha256" in info.stdout, info.stderr
    for mode in ("audio", "tensor"):
        result = device_eval(virtual_port, model_dir, demo_data, "--mode", mode, "--name", f"clean-{mode}")
        assert result.returncode == 0, result.stderr
        summary = json.loads((model_dir / f"device-clean-{mode}.json").read_text())
        assert summary["chunks"] >= 10 and summary["accuracy"]["agreement"] >= 0.99
        assert summary["latency"]["inference"]["median_ms"] > 0
        assert ("frontend" in summary["latency"]) == (mode == "audio")
    hex_run = device_eval(virtual_port, model_dir, demo_data, "--mode", "tensor", "--transfer", "hex",
                          "--limit", "5", "--name", "hex")
    assert hex_run.returncode == 0, hex_run.stderr
    tensor = records(model_dir / "device-clean-tensor.jsonl")
    hexed = records(model_dir / "device-hex.jsonl")
    assert all(hexed[i]["scores"] == tensor[i]["scores"] for i in hexed)
    assert max(r["bytes_sent"] for r in hexed.values()) > 2 * max(r["bytes_sent"] for r in tensor.values())


@pytest.mark.parametrize("mode, transfer, faults", [
    ("audio", "binary", ("--fault-rate", "0.01", "--reset-after", "25", "--seed", "3")),  # 10 commands a chunk
    ("tensor", "hex", ("--fault-rate", "0.02", "--seed", "1")),  # ~110 db lines per chunk: recovered line by line
])
def test_faults_and_resets_do_not_change_the_results(mode, transfer, faults, model_dir, demo_data, tmp_path,
                                                     virtual_port):
    options = ("--mode", mode, "--transfer", transfer, "--limit", "12")
    clean = device_eval(virtual_port, model_dir, demo_data, *options, "--name", f"reference-{transfer}")
    assert clean.returncode == 0, clean.stderr
    faulty = VirtualProcess(model_dir, tmp_path / "faulty", *faults)
    try:
        result = device_eval(faulty.port, model_dir, demo_data, *options, "--name", f"faulty-{transfer}")
    finally:
        faulty.stop()
    assert result.returncode == 0, result.stderr
    reference = records(model_dir / f"device-reference-{transfer}.jsonl")
    noisy = records(model_dir / f"device-faulty-{transfer}.jsonl")
    assert sorted(noisy) == sorted(reference)
    assert all(noisy[i]["scores"] == reference[i]["scores"] for i in reference)
    assert sum(r["recoveries"] > 0 for r in noisy.values()) >= 3  # the faults did happen


def test_a_silent_port_is_one_line_without_retries(model_dir, demo_data):
    master, slave = os.openpty()  # a port nobody answers on
    try:
        result = device_eval(os.ttyname(slave), model_dir, demo_data)
    finally:
        os.close(master)
        os.close(slave)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "not one byte from the device" in result.stderr and "failed 8 times" not in result.stderr


def test_resume_after_a_killed_run(virtual_port, model_dir, demo_data):
    log = model_dir / "device-killed.jsonl"
    log.unlink(missing_ok=True)
    command = [sys.executable, "-m", "dslite_tiny", "device", "eval", "--port", virtual_port, "--model-dir",
               str(model_dir), "--data", str(demo_data), "--name", "killed", "--warmup", "3"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 6):
        time.sleep(0.02)
    process.kill()
    process.wait()
    done_before = records(log)
    assert 5 <= len(done_before)
    with open(log, "a") as cut:  # as if the kill had landed mid-line
        cut.write('{"index": 99')
    resumed = device_eval(virtual_port, model_dir, demo_data, "--name", "killed", "--warmup", "3", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    lines = log.read_text().splitlines()[1:]
    indices = [json.loads(line)["index"] for line in lines]
    assert len(indices) == len(set(indices)) == json.loads((model_dir / "device-killed.json").read_text())["chunks"]
    assert all(records(log)[i] == record for i, record in done_before.items())
    changed = device_eval(virtual_port, model_dir, demo_data, "--name", "killed", "--resume", "--mode", "tensor")
    assert_user_error(changed, "cannot resume", "mode")
    lines = log.read_text().splitlines()
    header = json.loads(lines[0])
    del header["run"]["log_version"]  # a log written before records counted their recoveries
    log.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    older = device_eval(virtual_port, model_dir, demo_data, "--name", "killed", "--warmup", "3", "--resume")
    assert_user_error(older, "cannot resume", "log_version")


def test_device_user_errors(virtual_port, compressed, demo_data, tmp_path):
    other = device_eval(virtual_port, compressed / "pruned-int8", demo_data)
    assert_user_error(other, "the device runs model int8")
    float_model = run_cli("device", "virtual", "--model-dir", str(compressed / "float32"))
    assert_user_error(float_model, "not full-integer", "int8 variants")
    no_project = run_cli("device", "flash", "--board", "phone", "--model-dir", str(compressed / "int8"))
    assert_user_error(no_project, "phone", "no firmware project")
    missing = run_cli("device", "eval", "--port", str(tmp_path / "nothing"), "--model-dir",
                      str(compressed / "int8"), "--data", str(demo_data))
    assert missing.returncode == 1 and "cannot open the port" in missing.stderr and "Traceback" not in missing.stderr


def test_port_link_only_ever_replaces_a_symlink(model_dir, tmp_path):
    precious = tmp_path / "ttyACM0"
    precious.write_text("not ours")
    for path, kind in ((precious, "a file or device"), (tmp_path, "a folder")):
        result = run_cli("device", "virtual", "--model-dir", str(model_dir), "--port-link", str(path))
        assert_user_error(result, f"--port-link: {path} is {kind}, not a symlink")
    assert precious.read_text() == "not ours"
    stale = tmp_path / "stale"
    stale.symlink_to(precious)
    device = VirtualProcess(model_dir, stale)
    try:
        assert os.readlink(stale).startswith("/dev/pts/") and precious.read_text() == "not ours"
    finally:
        device.stop()


def test_benchmark_performance_mode(virtual_port, model_dir):
    result = run_cli("device", "bench", "--port", virtual_port, "--model-dir", str(model_dir), "--window-s", "0.2",
                     "--windows", "5", "--warmup", "2")
    assert result.returncode == 0, result.stderr
    bench = json.loads((model_dir / "bench-virtual.json").read_text())
    assert len(bench["window_latency_ms"]) == 5 and bench["runs_per_window"] >= 1
    assert bench["median_inferences_per_s"] == pytest.approx(1000 / bench["median_latency_ms"], rel=0.05)


@pytest.mark.parametrize("board", [b for b in list_boards() if load_board(b).project != "none"])
def test_flash_dry_run_writes_a_complete_project(board, model_dir, tmp_path):
    result = run_cli("device", "flash", "--board", board, "--model-dir", str(model_dir), "--port", "/dev/ttyACM0",
                     "--out", str(tmp_path / board), "--dry-run")
    assert result.returncode == 0, result.stderr
    profile = load_board(board)
    source = tmp_path / board / ("dslite_tiny" if profile.project == "arduino" else "src")
    main = source / ("dslite_tiny.ino" if profile.project == "arduino" else "main.cpp")
    for name in (main.name, "model_model_data.cc", "model_model_settings.h", "model_op_resolver.h", "dt_model.h",
                 "dt_protocol.c", "dt_frontend.c", "dt_tflm.cc"):
        assert (source / name).is_file(), name
    assert f'#define DT_DEVICE_NAME "{board}"' in (source / "dt_model.h").read_text()
    # arduino-cli adds a library only for a header the sketch includes (it did not: the build failed)
    assert not profile.tflm_include or main.read_text().startswith(f"#include <{profile.tflm_include}>")
    assert profile.tflm_library and profile.tflm_library in (tmp_path / board / "README.md").read_text()
    if profile.project == "platformio":
        ini = (tmp_path / board / "platformio.ini").read_text()
        assert f"[env:{board}]" in ini and all(option in ini for option in profile.platformio_options)
    commands = plan_flash(profile, tmp_path / board, port="/dev/ttyACM0")
    printed = [line.split(None, 2)[2] for line in result.stdout.splitlines() if line.startswith("would run")]
    assert printed == [shlex.join(c) for c in commands]
    assert len(printed) == len(profile.build_commands) + 1 and printed[0].split()[0] in ("arduino-cli", "pio")


# What stands in for a board core in the compile check below: its Arduino.h and the Wire.h that the
# library's peripherals.h includes. The API is ArduinoCore-API's (the mbed and RP2040 cores build on it).
CORE_STAND_IN = {
    "Arduino.h": '#pragma once\n#include "api/ArduinoAPI.h"\n#include "api/HardwareSerial.h"\nusing namespace arduino;\n'
                 "extern HardwareSerial &Serial;  // every core names its console port Serial\n"
                 'extern "C" void *ps_malloc(size_t size);  // the ESP32 core\'s PSRAM allocator\n',
    "Wire.h": '#pragma once\n#include "api/HardwareI2C.h"\n',
}
M4 = ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os", "-Wall", "-Wextra", "-Werror",
      "-ffunction-sections", "-fdata-sections", "-DARDUINO=10819")


@pytest.mark.parametrize("board", [b for b in list_boards() if load_board(b).project != "none"])
def test_generated_project_compiles_against_its_tflm_library(board, model_dir, tmp_path):
    """Every source of the generated project compiled for a Cortex-M4F as the board's build would: the
    profile's library as Arduino adds it (its src folder), the profile's build flags, our code with -Werror.
    Run by hand (CI cannot fetch either tree): DSLITE_TINY_CHIRALE_DIR=<Chirale_TensorFlowLite v2.0.0>
    DSLITE_TINY_ARDUINO_API_DIR=<arduino/ArduinoCore-API 1.5.2> pytest tests/test_device.py -k against"""
    library, api = os.environ.get("DSLITE_TINY_CHIRALE_DIR"), os.environ.get("DSLITE_TINY_ARDUINO_API_DIR")
    if not (library and api and shutil.which("arm-none-eabi-g++")):
        pytest.skip("set DSLITE_TINY_CHIRALE_DIR and DSLITE_TINY_ARDUINO_API_DIR to checkouts (CI has none)")
    profile = load_board(board)
    assert profile.tflm_library.lower().startswith("chirale_tensorflowlite 2.0.0"), profile.tflm_library
    write_project(load_variant(model_dir), profile, tmp_path / "project")
    source = tmp_path / "project" / ("dslite_tiny" if profile.project == "arduino" else "src")
    src = Path(library) / "src"
    if profile.project == "arduino":  # arduino-cli adds a library only for a header of its src root the sketch includes
        included = re.findall(r"^#include <([^>]+)>", (source / "dslite_tiny.ino").read_text(), re.M)
        assert any((src / name).is_file() for name in included), included
    _compile_for_the_board(source, profile, tmp_path,
                           ["-isystem", str(src), "-isystem", _core_stand_in(tmp_path), "-isystem", api])


def _core_stand_in(tmp_path: Path) -> str:
    stand_in = tmp_path / "core"
    stand_in.mkdir()
    for name, text in CORE_STAND_IN.items():
        (stand_in / name).write_text(text)
    return str(stand_in)


def _compile_for_the_board(source: Path, profile, tmp_path: Path, includes: list[str]) -> None:
    """Every source of a generated project compiled for a Cortex-M4F with the profile's -D build flags."""
    flags = [f for option in profile.platformio_options if option.startswith("build_flags")
             for f in option.split("=", 1)[1].split() if f.startswith("-D")]
    for path in sorted(p for p in source.iterdir() if p.suffix in (".ino", ".cpp", ".cc", ".c")):
        language = ["arm-none-eabi-gcc", "-std=gnu11"] if path.suffix == ".c" else [
            "arm-none-eabi-g++", "-std=gnu++17", "-fno-exceptions", "-fno-rtti", "-x", "c++"]
        command = [*language, *M4, *flags, f"-I{source}", *includes, "-c", str(path), "-o",
                   str(tmp_path / f"{path.name}.o")]
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, f"{shlex.join(command)}\n{result.stderr[-3000:]}"


def test_engine_project_runs_the_generated_engine_and_its_c_builds(model_dir, tmp_path):
    """``device flash --runtime engine``: the generated engine instead of TFLite Micro (no library, no
    flatbuffer); its C sources (firmware core, backend, engine, kernels) compile for a Cortex-M4F with the
    DSP path and -Werror. The board main (C++, Arduino.h) is compiled by the by-hand test below."""
    board = "nano33ble"
    result = run_cli("device", "flash", "--board", board, "--runtime", "engine", "--model-dir", str(model_dir),
                     "--out", str(tmp_path / board), "--dry-run")
    assert result.returncode == 0, result.stderr
    profile = load_board(board)
    source = tmp_path / board / ("dslite_tiny" if profile.project == "arduino" else "src")
    names = {p.name for p in source.iterdir()}
    assert {"model_engine.c", "model_engine.h", "dt_engine.h", "dt_conv.c", "dt_engine_backend.c", "dt_model.h"} <= names
    assert not {"model_model_data.cc", "dt_tflm.cc", "model_op_resolver.h"} & names
    assert "#define DT_MODEL_ENGINE 1" in (source / "dt_model.h").read_text()
    main = source / ("dslite_tiny.ino" if profile.project == "arduino" else "main.cpp")
    assert not main.read_text().startswith("#include <Chirale")  # no TFLM library pulled into the build
    assert "generated int8 engine" in (tmp_path / board / "README.md").read_text()
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed (.ci/run installs it)")
    for path in sorted(source.glob("*.c")):
        command = ["arm-none-eabi-gcc", "-std=c99", *M4, f"-I{source}", "-c", str(path), "-o",
                   str(tmp_path / f"{path.name}.o")]
        compiled = subprocess.run(command, capture_output=True, text=True)
        assert compiled.returncode == 0, f"{shlex.join(command)}\n{compiled.stderr[-3000:]}"


@pytest.mark.parametrize("board", [b for b in list_boards() if load_board(b).project != "none"])
def test_engine_project_compiles_with_the_arduino_api(board, model_dir, tmp_path):
    """The whole engine project, board main included, against ArduinoCore-API (the engine needs no other
    library). Run by hand: DSLITE_TINY_ARDUINO_API_DIR=<arduino/ArduinoCore-API 1.5.2> pytest
    tests/test_device.py -k arduino_api"""
    api = os.environ.get("DSLITE_TINY_ARDUINO_API_DIR")
    if not (api and shutil.which("arm-none-eabi-g++")):
        pytest.skip("set DSLITE_TINY_ARDUINO_API_DIR to an ArduinoCore-API checkout (CI has none)")
    profile = dataclasses.replace(load_board(board), runtime="engine")
    write_project(load_variant(model_dir), profile, tmp_path / "project")
    source = tmp_path / "project" / ("dslite_tiny" if profile.project == "arduino" else "src")
    _compile_for_the_board(source, profile, tmp_path, ["-isystem", _core_stand_in(tmp_path), "-isystem", api])


def test_flash_without_the_tool_names_how_to_install_it(model_dir, tmp_path):
    if shutil.which("arduino-cli"):
        pytest.skip("arduino-cli is installed here")
    result = run_cli("device", "flash", "--board", "nano33ble", "--model-dir", str(model_dir), "--port",
                     "/dev/ttyACM0", "--out", str(tmp_path / "nano"))
    assert_user_error(result, "arduino-cli is not installed", "install arduino-cli")
    assert (tmp_path / "nano" / "dslite_tiny" / "dslite_tiny.ino").is_file()


def test_project_refuses_a_float_variant(compressed, tmp_path):
    from dslite_tiny.errors import UserError

    with pytest.raises(UserError, match="not full-integer"):
        write_project(load_variant(compressed / "float32"), load_board("rp2040"), tmp_path)

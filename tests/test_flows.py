"""Flows and their runners: units in this process or on a real local Ray cluster, with the same records."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli
from test_cli import assert_user_error
from dslite_tiny.errors import DataError, UserError
from dslite_tiny.flows.runner import InProcess, Unit, UnitError, run_unit, thread_limits

ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}  # as each Ray worker has
FIGURES = ("fold", "seed", "chunk_uar", "file_uar", "chunk_accuracy", "file_accuracy", "best_epoch", "devel_uar")


def _refuse(path: str) -> dict:
    raise DataError("no clips", path=path)


def _double(x: int) -> dict:
    return {"x": 2 * x}


def test_a_user_error_in_a_unit_comes_back_as_the_same_one_line_error():
    carried = run_unit(_refuse, {"path": "data.yaml"})
    assert isinstance(carried, UnitError)
    error = carried.error()
    assert isinstance(error, DataError) and str(error) == "data.yaml: no clips"
    assert run_unit(_double, {"x": 2}) == {"x": 4}


def test_in_process_runs_units_in_order():
    units = [Unit(f"u{i}", _double, {"x": i}) for i in range(3)]
    assert [(u.name, r) for u, r in InProcess().run(units)] == [("u0", {"x": 0}), ("u1", {"x": 2}), ("u2", {"x": 4})]


def test_thread_limits_cap_every_pool():
    limits = thread_limits(2)
    assert {limits[k] for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
                                "OPENBLAS_NUM_THREADS")} == {"2"}
    assert limits["TF_USE_LEGACY_KERAS"] == "1"


def test_ray_asked_for_without_ray_is_one_line(monkeypatch):
    from dslite_tiny.flows import runner

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(UserError, match=r"--ray needs Ray: pip install 'dslite-tiny\[distributed\]'"):
        list(runner.OnRay("local").run([Unit("u", _double, {"x": 1})]))


def test_cv_on_a_ray_address_without_a_cluster_is_one_line(demo_data, tmp_path):
    pytest.importorskip("ray")
    result = run_cli("cv", "--data", str(demo_data), "--set", "epochs=1", "--out", str(tmp_path / "cv"),
                     "--ray", "127.0.0.1:1", "--no-cache", env={"RAY_ADDRESS": ""})
    assert_user_error(result, "--ray 127.0.0.1:1: no Ray cluster there", "ray start --head")


def _ray_workers_running(name: str) -> list[int]:
    """Pids of processes whose title Ray set to ``ray::<name>`` (a worker running that task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(f"ray::{name}".encode()):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_cv_on_ray_equals_in_process_and_survives_a_killed_worker(demo_data, tmp_path):
    pytest.importorskip("ray")
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("finding Ray's workers by their process title needs /proc")
    base = ["cv", "--data", str(demo_data), "--config", "mcu-dscnn", "--set", "epochs=2", "--set", "units=8",
            "--cache-dir", str(tmp_path / "cache")]
    here = run_cli(*base, "--out", str(tmp_path / "here"), env=ONE_THREAD)
    assert here.returncode == 0, here.stderr
    out = tmp_path / "ray"
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", "RAY_ADDRESS": ""}
    process = subprocess.Popen([sys.executable, "-m", "dslite_tiny", *base, "--out", str(out), "--ray", "local"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline, killed = time.monotonic() + 240, None
        while killed is None and time.monotonic() < deadline and process.poll() is None:
            running = _ray_workers_running("run_unit")
            if running:  # a fold has just started training: its worker dies with nothing written
                killed = running[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        stdout, stderr = process.communicate(timeout=400)
    finally:
        process.kill()
    assert killed is not None and process.returncode == 0, stderr
    summary = json.loads((out / "cv.json").read_text())
    reference = json.loads((tmp_path / "here" / "cv.json").read_text())
    assert summary["complete"] and summary["runs_done"] == 3
    assert [[r[k] for k in FIGURES] for r in summary["runs"]] == [[r[k] for k in FIGURES] for r in reference["runs"]]
    workers = {r["worker"].rsplit(":", 1)[1] for r in summary["runs"]}
    assert str(killed) not in workers  # the killed run was trained again by another worker
    assert str(os.getpid()) not in workers and stdout.count("test UAR") == 3

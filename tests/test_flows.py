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
    for run in summary["runs"]:  # each worker's epochs reach the console as they end
        assert f"fold {run['fold']} seed 0 epoch   2: loss" in stdout, stdout
    assert all(len((out / f"{r['fold']}-s0" / "epochs.jsonl").read_text().splitlines()) == 2 for r in summary["runs"])


def _space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


SPACE = """search: {searcher: grid, scheduler: asha, grace_epochs: 1, reduction: 2}
space:
  units: [8, 16]
  dropout: [0.0, 0.3]
"""


def test_space_files_are_checked_with_the_file_and_key(tmp_path):
    from dslite_tiny.errors import ConfigError
    from dslite_tiny.train.sweep import load_space, plan_trials

    space = load_space(_space(tmp_path, SPACE))
    assert [t.values for t in plan_trials(space)] == [{"units": 8, "dropout": 0.0}, {"units": 8, "dropout": 0.3},
                                                      {"units": 16, "dropout": 0.0}, {"units": 16, "dropout": 0.3}]
    drawn = load_space(_space(tmp_path, "search: {trials: 5, seed: 3}\nspace:\n  learning_rate: {loguniform: "
                                        "[0.001, 0.1]}\n  frontend.n_mels: {int: [30, 40]}\n"))
    trials = plan_trials(drawn)
    assert [t.name for t in trials] == [f"trial{i}" for i in range(1, 6)] and trials == plan_trials(drawn)
    assert all(0.001 <= t.values["learning_rate"] <= 0.1 and 30 <= t.values["frontend.n_mels"] <= 40 for t in trials)
    for text, problem in [("space: {lr: [1]}", "'lr' is not a training key"),
                          ("search: {searcher: grid}\nspace: {alpha: {uniform: [1, 2]}}", "a grid needs a list"),
                          ("space: {alpha: {loguniform: [0, 2]}}", "low < high and low > 0"),
                          ("search: {reduction: 1}\nspace: {alpha: [1]}", "search.reduction: 1 is not a whole"),
                          ("space: {alpha: 2}", "neither a list of values"), ("- 1", "holds a 'space' mapping")]:
        with pytest.raises(ConfigError, match=problem) as caught:
            load_space(_space(tmp_path, text))
        assert str(tmp_path / "space.yaml") in str(caught.value)


def test_every_shipped_space_plans_valid_training_configs():
    from dslite_tiny.config import TrainConfig, list_presets, load_config
    from dslite_tiny.train.sweep import load_space, plan_trials, trial_layer

    assert list_presets("sweep")
    for name in list_presets("sweep"):
        for trial in plan_trials(load_space(name)):
            config = load_config(TrainConfig, "mcu-dscnn", ("trial", trial_layer({"units": 8}, trial.values)),
                                 stage="train")
            assert config.units == 8 and all(getattr(config, k) == v for k, v in trial.values.items() if "." not in k)


@pytest.mark.parametrize("value,recorded,keeps", [(0.5, [0.5], True), (0.4, [0.9, 0.4], False),
                                                   (0.9, [0.9, 0.4], True), (0.6, [0.9, 0.6, 0.5, 0.2], True),
                                                   (0.5, [0.9, 0.6, 0.5, 0.2], False)])
def test_asha_keeps_the_top_share_of_a_rung(value, recorded, keeps):
    from dslite_tiny.train.sweep import Asha

    asha = Asha(grace_epochs=2, reduction=2, max_epochs=20)
    assert asha.rungs == [2, 4, 8, 16] and Asha(1, 3, 9).rungs == [1, 3]
    assert asha.keeps(value, recorded) is keeps


def test_sweep_end_to_end_stops_trials_early_writes_the_best_preset_and_resumes(demo_data, tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--data", str(demo_data), "--config", "mcu-dscnn", "--set", "epochs=3",
            "--space", str(_space(tmp_path, SPACE)), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["complete"] and summary["trials_done"] == 4 and summary["epochs_planned"] == 12
    trials = summary["trials"]
    assert trials[0]["epochs"] == 3 and trials[0]["stopped_at"] is None  # the first at a rung always goes on
    assert summary["epochs_trained"] == sum(t["epochs"] for t in trials)
    assert all(t["stopped_at"] in (None, 1, 2) and len(t["devel_uar_per_epoch"]) == t["epochs"] for t in trials)
    best = max(trials, key=lambda t: t["devel_uar"])
    assert summary["best"] == best["trial"] and f"best {best['trial']}" in first.stdout
    preset = (out / "best.yaml").read_text()
    assert "preset: mcu-dscnn" in preset and "epochs: 3" in preset and f"units: {best['values']['units']}" in preset
    assert "| trial | units | dropout |" in (out / "sweep.md").read_text() and (out / "sweep.png").stat().st_size > 5000
    trained = run_cli("train", "--data", str(demo_data), "--config", str(out / "best.yaml"), "--out",
                      str(tmp_path / "best"), "--cache-dir", str(tmp_path / "cache"))
    assert trained.returncode == 0, trained.stderr
    sidecar = json.loads((tmp_path / "best" / "model.json").read_text())
    assert sidecar["train"]["units"] == best["values"]["units"] and sidecar["train"]["epochs"] == 3
    models = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/model.h5")}
    again = run_cli(*args)  # resumes: every trial is done, none is trained again
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.glob("trials/*/model.h5")} == models
    assert json.loads((out / "sweep.json").read_text())["trials"] == trials


def test_sweep_on_ray_trains_each_trial_in_a_worker(demo_data, tmp_path):
    pytest.importorskip("ray")
    space = _space(tmp_path, "search: {searcher: grid, scheduler: none}\nspace:\n  units: [8, 16]\n")
    result = run_cli("sweep", "--data", str(demo_data), "--config", "mcu-dscnn", "--set", "epochs=1", "--space",
                     str(space), "--out", str(tmp_path / "sweep"), "--ray", "local", "--cache-dir", str(tmp_path / "c"),
                     env={"RAY_ADDRESS": ""})
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert summary["complete"] and [t["values"] for t in summary["trials"]] == [{"units": 8}, {"units": 16}]
    assert all(t["epochs"] == 1 and t["stopped_at"] is None for t in summary["trials"])
    assert (tmp_path / "sweep" / "best.yaml").is_file() and result.stdout.count("best devel UAR") == 2


def test_compress_on_ray_builds_the_variants_as_one_process_does(compressed, cli_model, tmp_path):
    pytest.importorskip("ray")
    import csv

    out = tmp_path / "compressed"
    result = run_cli("compress", str(cli_model), "--only", "dynamic,int8", "--set", "representative_chunks=20",
                     "--set", "latency_runs=3", "--set", "latency_warmup=1", "--out", str(out), "--ray", "local",
                     "--cache-dir", str(cli_model.parent / "cache"), env={"RAY_ADDRESS": ""})
    assert result.returncode == 0, result.stderr
    rows = {r["variant"]: r for r in csv.DictReader((out / "summary.csv").open())}
    here = {r["variant"]: r for r in csv.DictReader((compressed / "summary.csv").open())}
    assert set(rows) == {"dynamic", "int8"} and all(r["status"] == "ok" for r in rows.values())
    for name in rows:  # post-training quantization of the same model and calibration chunks: the same model
        assert (out / name / "model.tflite").read_bytes() == (compressed / name / "model.tflite").read_bytes()
        assert rows[name]["uar"] == here[name]["uar"] and rows[name]["agreement"] == here[name]["agreement"]
    assert "dynamic: UAR" in result.stdout and "int8: UAR" in result.stdout

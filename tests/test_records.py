"""Typed records read back with one-line errors naming the file and the field (dslite_tiny.records)."""
from __future__ import annotations

import json

import pytest

from dslite_tiny.config import FrontendConfig, load_config
from dslite_tiny.errors import UserError
from dslite_tiny.records import (SUMMARY_COLUMNS, Reference, Sidecar, read_device_results, read_metrics,
                                 read_reference, read_sidecar, read_summary_variants, summary_row,
                                 write_device_results, write_metrics, write_reference, write_sidecar,
                                 write_summary_csv)


def _reference() -> Reference:
    frontend = load_config(FrontendConfig, "mcu-64", stage="frontend")
    return Reference("m.h5", "ab" * 32, "test", ("a", "b"), frontend, "10 files → 20 chunks",
                     {"chunks": {"uar": 0.75}, "files": {"uar": 0.8}})


def test_a_reference_reads_back_as_written(tmp_path):
    path = write_reference(tmp_path / "reference.json", _reference())
    assert read_reference(path) == _reference()
    data = json.loads(path.read_text())
    assert data["format"] == "dslite-tiny reference" and data["version"] == 1


def _edit(change):
    def edit(data: dict) -> dict:
        change(data)
        return data
    return edit


@pytest.mark.parametrize("change, message", [
    (_edit(lambda d: d.pop("classes")), "field 'classes' is missing"),
    (_edit(lambda d: d.update(classes="ab")), "field 'classes' must be list, got 'ab'"),
    (_edit(lambda d: d.update(classes=["a"])), "field 'classes' must list two or more class names"),
    (_edit(lambda d: d["accuracy"]["chunks"].pop("uar")), "field 'accuracy.chunks.uar' is missing"),
    (_edit(lambda d: d["accuracy"]["chunks"].update(uar=1.5)), "field 'accuracy.chunks.uar' must be in \\[0, 1\\]"),
    (_edit(lambda d: d["frontend"].update(n_mels=0)), "field 'frontend' is invalid"),
    (_edit(lambda d: d.update(version=2)), "version 2 of the dslite-tiny reference format is newer"),
    (_edit(lambda d: d.update(format="dslite-tiny metrics")), "a 'dslite-tiny metrics' file"),
    (lambda d: [d], "not a JSON object"),
])
def test_a_bad_reference_is_one_line_naming_file_and_field(tmp_path, change, message):
    path = write_reference(tmp_path / "reference.json", _reference())
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    with pytest.raises(UserError, match=message) as caught:
        read_reference(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_reference_from_before_versions_is_version_1(tmp_path):
    path = write_reference(tmp_path / "reference.json", _reference())
    data = json.loads(path.read_text())
    del data["format"], data["version"]
    path.write_text(json.dumps(data))
    assert read_reference(path) == _reference()


def _metrics() -> dict:
    """A variant's metrics.json as compress writes it (the fields the record reads, a few it passes by)."""
    timing = {"median_ms": 0.2, "p90_ms": 0.3, "runs": 5}
    return {"variant": "int8", "status": "ok", "reason": "", "key": "k" * 64, "finished": "2026-11-30T12:00:00+00:00",
            "build_seconds": 4.5, "versions": {"tensorflow": "2.21.0"},
            "size": {"tflite_bytes": 5000, "gzip_bytes": 4000, "weight_bytes": 3000, "params": 2900, "macs": 10 ** 6,
                     "activation_bytes": 8000},
            "accuracy": {"chunks": {"uar": 0.8, "accuracy": 0.81, "confusion_matrix": [[4, 1], [1, 4]]},
                         "files": {"uar": 0.9, "accuracy": 0.9}, "agreement": 0.95, "delta_uar_se": 0.012},
            "latency": {"one_thread": {**timing, "threads": 1}, "all_threads": {**timing, "threads": 2}},
            "sparsity": {"weights": 0.5, "pruned_layers": 0.5, "layers": [{"name": "conv", "sparsity": 0.5}]},
            "details": {"sparsity_target": 0.5}, "input": {"dtype": "int8"}, "ops": {"CONV_2D": 1},
            "tflm": {"ok": True, "arena_bytes": 9000},
            "layer_error": {"tensors": [{"layer": "conv", "op": "CONV_2D", "sqnr_db": 30.0, "rmse_scale": 0.4},
                                        {"layer": "out", "op": "SOFTMAX", "sqnr_db": None, "rmse_scale": 0.0}]}}


def test_variant_metrics_read_back_typed(tmp_path):
    metrics = read_metrics(write_metrics(tmp_path / "metrics.json", _metrics()))
    assert metrics.ok and metrics.sizes.gzip_bytes == 4000 and metrics.arena_bytes == 9000 and metrics.tflm_ok
    assert (metrics.scores.uar, metrics.scores.uar_files, metrics.scores.agreement) == (0.8, 0.9, 0.95)
    assert metrics.scores.confusion == ((4, 1), (1, 4)) and metrics.latency.p90_ms == 0.3 and metrics.threads == 2
    assert metrics.scores.delta_uar_se == summary_row(metrics)["delta_uar_se"] == 0.012
    older = _metrics()
    del older["accuracy"]["delta_uar_se"]  # metrics from before the standard error was recorded
    assert read_metrics(write_metrics(tmp_path / "older.json", older)).scores.delta_uar_se is None
    assert metrics.sparsity.target == 0.5 and metrics.sparsity.tensors[0].name == "conv"
    assert [t.sqnr_db for t in metrics.layer_error] == [30.0, None] and metrics.ops == ("CONV_2D",)
    failed = {key: _metrics()[key] for key in ("variant", "key", "finished")}
    record = read_metrics(write_metrics(tmp_path / "failed.json", {**failed, "status": "failed", "reason": "boom"}))
    assert not record.ok and record.reason == "boom" and record.sizes is None and record.layer_error == ()


def test_a_variant_that_is_not_what_its_name_says_says_so(tmp_path):
    """QAT whose selected epoch is 0 is post-training quantization; pruning below its target is named too."""
    qat = {**_metrics(), "details": {"qat_history": [{"epoch": 0, "selected": True}, {"epoch": 1, "selected": False},
                                                     {"epoch": 2, "selected": False}]}}
    metrics = read_metrics(write_metrics(tmp_path / "qat.json", qat))
    assert metrics.caveats == ("QAT kept epoch 0 of 2: no trained epoch did better on devel, so this is "
                               "post-training quantization",)
    assert summary_row(metrics)["notes"] == metrics.caveats[0] and "notes" in SUMMARY_COLUMNS
    trained = {**qat, "details": {"qat_history": [{"epoch": 0, "selected": False}, {"epoch": 1, "selected": True}]}}
    assert read_metrics(write_metrics(tmp_path / "trained.json", trained)).caveats == ()
    short = {**_metrics(), "sparsity": {**_metrics()["sparsity"], "pruned_layers": 0.3}}
    assert read_metrics(write_metrics(tmp_path / "short.json", short)).caveats == (
        "its pruned layers reached 30.0 % sparsity of a 50 % target",)
    assert read_metrics(write_metrics(tmp_path / "m.json", _metrics())).caveats == ()


@pytest.mark.parametrize("change, message", [
    (_edit(lambda d: d["size"].pop("gzip_bytes")), "field 'size.gzip_bytes' is missing"),
    (_edit(lambda d: d.update(status="done")), "field 'status' must be ok or failed"),
    (_edit(lambda d: d["tflm"].update(arena_bytes="9 KB")), "field 'tflm.arena_bytes' must be int"),
    (_edit(lambda d: d["sparsity"]["layers"][0].pop("sparsity")), "field 'sparsity.layers\\[0\\].sparsity' is missing"),
    (_edit(lambda d: d["layer_error"]["tensors"][1].update(layer=7)),
     "field 'layer_error.tensors\\[1\\].layer' must be str"),
    (_edit(lambda d: d["accuracy"].update(delta_uar_se=-0.1)), "field 'accuracy.delta_uar_se' must be in \\[0, 1\\]"),
    (_edit(lambda d: d.update(version=2)), "version 2 of the dslite-tiny variant metrics format is newer"),
    (_edit(lambda d: d.update(cortex_m4={"ok": True, "method": "guess", "flash_bytes": 1, "ram_bytes": 1})),
     "field 'cortex_m4.method' must be one of qemu-icount, estimate"),
    (_edit(lambda d: d.update(cortex_m4={"ok": True, "method": "qemu-icount", "flash_bytes": 1, "ram_bytes": 0,
                                         "instructions": 5})), "field 'cortex_m4.ram_bytes' must be at least 1"),
])
def test_bad_variant_metrics_are_one_line_naming_file_and_field(tmp_path, change, message):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(change({"format": "dslite-tiny variant metrics", "version": 1, **_metrics()})))
    with pytest.raises(UserError, match=f"metrics.json: {message}"):
        read_metrics(path)


def test_device_results_read_back_and_name_a_bad_field(tmp_path):
    data = {"device": "qemu", "accuracy": _metrics()["accuracy"], "transfer": "binary",
            "latency": {"inference": {"median_ms": 12.5, "p90_ms": 13.0}}}
    results = read_device_results(write_device_results(tmp_path / "device-qemu.json", data))
    assert results.device == "qemu" and results.inference.median_ms == 12.5 and results.frontend is None
    assert results.scores.agreement == 0.95
    data["latency"]["frontend"] = {"median_ms": 3.0}
    path = write_device_results(tmp_path / "device-qemu.json", data)
    with pytest.raises(UserError, match="device-qemu.json: field 'latency.frontend.p90_ms' is missing"):
        read_device_results(path)


def _sidecar(**changes) -> Sidecar:
    frontend = load_config(FrontendConfig, "mcu-64", stage="frontend")
    fields = {"classes": ("yes", "no"), "frontend": frontend, "input_shape": frontend.image_shape,
              "backbone": "dscnn",
              "data": {"source": "d", "config": {"path": "d"}, "split_method": "speaker",
                       "speakers": {"train": ["ann", "bob"], "devel": ["cy"], "test": ["dee"]}},
              "history": ({"epoch": 1, "devel_uar": 0.5},), "details": {"best": {"epoch": 1}, "normalization": "tf"}}
    return Sidecar(**{**fields, **changes})


@pytest.mark.parametrize("sidecar", [_sidecar(), _sidecar(data=None, history=(), details={"imported": {"from": "x"}})])
def test_a_sidecar_reads_back_as_written(tmp_path, sidecar):
    path = write_sidecar(tmp_path / "model.json", sidecar)
    assert read_sidecar(path) == sidecar
    assert read_sidecar(path).data_config == (sidecar.data and sidecar.data["config"])


@pytest.mark.parametrize("change, message", [
    (_edit(lambda d: d.update(format="other")), "not a dslite-tiny sidecar"),
    (_edit(lambda d: d.update(version=2)), "version 2 of the dslite-tiny model format is newer"),
    (_edit(lambda d: d["frontend"].update(hop_s=-1)), "field 'frontend' is invalid"),
    (_edit(lambda d: d.pop("input")), "field 'input.shape' is missing"),
    (_edit(lambda d: d["input"].update(shape=[64, "64", 1])), "field 'input.shape' must list positive integers"),
    (_edit(lambda d: d.update(backbone=None)), "field 'backbone' must be str"),
    (_edit(lambda d: d.update(data=[])), "field 'data' must be dict"),
    (_edit(lambda d: d["data"].update(config="d")), "field 'data.config' must be dict"),
    (_edit(lambda d: d["data"].pop("split_method")), "field 'data.split_method' is missing"),
    (_edit(lambda d: d["data"]["speakers"].update(test=[1])), "field 'data.speakers.test' must list speaker names"),
    (_edit(lambda d: d["history"].append({"loss": 1.0})), r"field 'history\[1\].epoch' is missing"),
])
def test_a_bad_sidecar_is_one_line_naming_file_and_field(tmp_path, change, message):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(change(json.loads(write_sidecar(path, _sidecar()).read_text()))))
    with pytest.raises(UserError, match=f"model.json: {message}"):
        read_sidecar(path)


def test_the_summary_table_lists_its_variants_in_order(tmp_path):
    path = write_summary_csv(tmp_path / "summary.csv", [{"variant": "int8", "status": "ok"},
                                                        {"variant": "float32", "status": "failed"}])
    assert read_summary_variants(path) == ("int8", "float32")


@pytest.mark.parametrize("text, message", [
    ("name,status\nint8,ok\n", "not a summary table: no 'variant' column"),
    ("variant,status\nint9,ok\n", "unknown variant 'int9'"),
    ("variant,status\n", "lists no variants"),
    ("", "not a summary table"),
])
def test_a_bad_summary_table_is_one_line(tmp_path, text, message):
    (tmp_path / "summary.csv").write_text(text)
    with pytest.raises(UserError, match=f"summary.csv: {message}"):
        read_summary_variants(tmp_path / "summary.csv")

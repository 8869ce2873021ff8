"""The report: every variant and every plot, well-formed self-contained HTML, failed variants with their
reason, device measurements joining the tables, the Pareto frontier and the recommendation."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
from html.parser import HTMLParser

import pytest

from conftest import run_cli
from test_cli import assert_user_error

from dslite_tiny.compress.pipeline import write_summary
from dslite_tiny.report.build import build_report
from dslite_tiny.report.plots import pareto_front
from dslite_tiny.report.results import load_results
from dslite_tiny.report.tables import board_fits

PLOTS = ["board_fit.png", "confusion.png", "layer_error.png", "sparsity.png", "uar_vs_cortex_m4.png",
         "uar_vs_latency.png", "uar_vs_size.png"]
VOID = {"meta", "img", "br", "hr", "link", "input"}


class StrictParser(HTMLParser):
    """Fails on a closing tag that does not close the innermost open element; counts images."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def _parse(html: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(html)
    parser.close()
    assert parser.stack == []
    return parser


def test_report_has_every_variant_and_plot(compressed, tmp_path):
    result = build_report(compressed, report_dir=tmp_path / "r")
    assert sorted(p.name for p in result.plots) == PLOTS
    for plot in result.plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    markdown = result.markdown.read_text()
    for name in ("float32", "dynamic", "int8", "pruned-int8"):  # a row in the accuracy and the host tables
        assert re.search(rf"^\| {name} \| \d\.\d{{3}} \| [+-]\d+\.\d ± \d+\.\d \|", markdown, re.M), name
        assert re.search(rf"^\| {name} \| [\d.]+ KB \|", markdown, re.M), name
    for plot in PLOTS:
        assert f"](plots/{plot})" in markdown
    page = _parse(result.html.read_text())
    assert len(page.images) == len(PLOTS) and all(src.startswith("data:image/png;base64,") for src in page.images)
    table = list(csv.reader((tmp_path / "r" / "variants.csv").open()))
    assert table[0][:4] == ["variant", "status", "weights (flash)", "activations (arena)"] and len(table) == 5
    boards = {r.board for r in result.recommendations}
    assert {"nano33ble", "esp32s3", "stm32h743", "rp2040", "mps2-an386", "phone"} <= boards
    # a board whose TFLite Micro differs from the host's says so; the engine board names the engine
    assert ("`nano33ble`: TFLite Micro from Chirale_TensorFLowLite 2.0.0 (Arduino Library Manager name); bit-exact "
            "with the host: no:") in markdown
    assert "`mps2-an386`: the generated int8 engine (`export --target engine`), no TFLite Micro" in markdown


def test_engine_board_fit_uses_the_engines_exact_figures(compressed, tmp_path):
    """On a board whose runtime is the engine, a variant needs the engine's constants and planned arena (with
    input and output): compiled for the Cortex-M4 where the tools are (the compiler may fold a constant away:
    a banded op's parameter block), else as the generator counts them; a float variant, which the engine
    does not run, gets no verdict."""
    import dataclasses

    from dslite_tiny.engine.codegen import generate
    from dslite_tiny.export.boards import check_fit, engine_need, load_board
    from dslite_tiny.export.variant import load_variant
    from firmware_host import qemu

    results = load_results(compressed)
    board = load_board("mps2-an386")
    assert board.runtime == "engine"
    fits = board_fits(results, [board])
    loaded = load_variant(compressed / "int8")
    engine = generate(loaded.data, loaded.path, name="model", provenance=[])
    constants = engine.constant_bytes if qemu.tools_missing() else \
        qemu.engine_flash(engine, "model", cache_dir=tmp_path)["constant_bytes"]
    need = engine_need(constant_bytes=constants, ram_bytes=engine.arena_bytes + engine.input_bytes
                       + engine.output_bytes, op_calls=engine.ops, frontend=results.frontend)
    assert fits["int8"][board.name] == check_fit(need, board)
    assert fits["float32"][board.name] is None
    tflm = board_fits(results, [dataclasses.replace(board, runtime="tflm")])["int8"][board.name]
    assert fits["int8"][board.name].ram_needed < tflm.ram_needed  # a planned arena below TFLM's
    assert fits["int8"][board.name].flash_needed < tflm.flash_needed  # no interpreter, no flatbuffer


def test_recommendation_is_the_fastest_fitting_variant_within_tolerance(compressed, tmp_path):
    """mps2-an386 runs the engine: the fewest Cortex-M4 instructions first (pruned-int8's sparse kernels
    beat int8's), then the smallest file."""
    results = load_results(compressed)
    float_uar = results.float_uar
    loose = build_report(compressed, report_dir=tmp_path / "loose", tolerance_points=100, min_agreement=0,
                         boards=["mps2-an386"], board="mps2-an386")
    ok_int8 = [v for v in results.variants if v.ok and v.arena_bytes is not None]
    fastest = min(ok_int8, key=lambda v: (v.metrics.cortex_m4.instructions, v.size.tflite_bytes))
    assert [(r.board, r.variant) for r in loose.recommendations] == [("mps2-an386", fastest.name)]
    strict = build_report(compressed, report_dir=tmp_path / "strict", tolerance_points=0, boards=["mps2-an386"],
                          board="mps2-an386")
    chosen = strict.recommendations[0]
    if chosen.variant is not None:
        picked = next(v for v in results.variants if v.name == chosen.variant).host
        assert picked.uar >= float_uar - 1e-9 and picked.agreement >= 0.95
    else:
        assert "none within 0 points and 95.0 % agreement" in chosen.text
    flipping = [v for v in ok_int8 if v.host.agreement < 1.0]  # a variant that flips any prediction ...
    if flipping:
        exact = build_report(compressed, report_dir=tmp_path / "exact", tolerance_points=100, min_agreement=1.0,
                             boards=["mps2-an386"], board="mps2-an386")
        assert exact.recommendations[0].variant not in {v.name for v in flipping}  # ... is never recommended


def test_failed_variants_and_device_measurements_join_the_tables(compressed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(compressed, out)
    metrics = json.loads((out / "pruned-int8" / "metrics.json").read_text())
    (out / "pruned-int8" / "metrics.json").write_text(json.dumps(
        {"variant": "pruned-int8", "status": "failed", "reason": "RuntimeError: forced", "source": metrics["source"],
         "key": metrics["key"], "finished": metrics["finished"]}))
    write_summary(out)
    confusion = json.loads((out / "int8" / "metrics.json").read_text())["accuracy"]["chunks"]["confusion_matrix"]
    device = {"device": "virtual", "accuracy": {"chunks": {"uar": 0.5, "accuracy": 0.6, "confusion_matrix": confusion},
                                                "files": {"uar": 0.55, "accuracy": 0.62}, "agreement": 0.9},
              "latency": {"inference": {"median_ms": 12.5, "p90_ms": 13.0},
                          "frontend": {"median_ms": 3.25, "p90_ms": 3.5}}}
    (out / "int8" / "device-virtual.json").write_text(json.dumps(device))
    qemu = {**device, "device": "a-board-name", "clock": "qemu-icount", "chunks": 10, "test_chunks": 40,
            "latency": {"inference": {"median_ms": 60.93, "p90_ms": 60.93},
                        "frontend": {"median_ms": 4.26, "p90_ms": 4.26}}}
    qemu["accuracy"] = {**device["accuracy"], "host_uar": 0.45}
    (out / "int8" / "device-a-board-name.json").write_text(json.dumps(qemu))
    result = build_report(out, report_dir=tmp_path / "r", boards=["nano33ble"])
    markdown = result.markdown.read_text()
    assert "| pruned-int8 | failed |" in markdown and "`pruned-int8`: RuntimeError: forced" in markdown
    rows = {row[1]: row for row in ([c.strip() for c in line.strip("|").split("|")]
                                    for line in markdown.splitlines() if line.startswith("| int8 | "))}
    # written before clocks were recorded: the unit is marked unknown; QEMU's instructions whatever the name
    assert rows["virtual"][2:] == ["undeclared", "—", "0.500", "—", "90.0 %", "12.50 ms?", "3.25 ms?"]
    assert rows["a-board-name"][2:] == ["qemu-icount", "10 of 40", "0.500", "+5.0", "90.0 %", "60.93 M instr.",
                                        "4.26 M instr."]  # ΔUAR against the host's 0.45 on the same 10 chunks
    assert "sparsity.png" not in markdown and "No pruned variant" in markdown
    _parse(result.html.read_text())


def test_the_report_names_model_and_run_without_machine_paths_and_says_what_qat_did(compressed, tmp_path):
    """A variant whose QAT kept epoch 0 is post-training quantization: summary.csv, the table and the
    recommendation say so. The title names the model and the run; the model path is relative."""
    out = tmp_path / "run"
    shutil.copytree(compressed, out)
    for folder in out.iterdir():
        if (folder / "metrics.json").is_file():
            metrics = json.loads((folder / "metrics.json").read_text())
            metrics.setdefault("details", {})["qat_history"] = [{"epoch": 0, "selected": True},
                                                                {"epoch": 1, "selected": False}]
            (folder / "metrics.json").write_text(json.dumps(metrics))
    write_summary(out)
    note = "QAT kept epoch 0 of 1: no trained epoch did better on devel, so this is post-training quantization"
    assert all(row["notes"] == note for row in csv.DictReader((out / "summary.csv").open()) if row["status"] == "ok")
    result = build_report(out, report_dir=tmp_path / "r", tolerance_points=100, min_agreement=0,
                          boards=["mps2-an386"], board="mps2-an386")
    markdown = result.markdown.read_text()
    model = json.loads((out / "reference.json").read_text())["model"]
    assert markdown.splitlines()[0] == f"# Compression report: `{os.path.relpath(model, out)}` → `run/`"
    assert str(tmp_path) not in markdown and str(tmp_path) not in result.html.read_text()
    assert note in next(line for line in markdown.splitlines() if line.startswith("| int8 | 0."))
    assert result.recommendations[0].text.endswith(f"Note: {note}")


def test_every_int8_variant_has_its_cortex_m4_figures_in_summary_table_plot_and_advice(compressed, tmp_path):
    """compress records the generated engine's flash, RAM and instructions per inference for each int8
    variant (QEMU where installed, as in CI); summary.csv, the report's table and plot carry them, and an
    engine board's recommendation is the fastest variant within tolerance."""
    from dslite_tiny.engine.codegen import generate
    from dslite_tiny.export.variant import load_variant
    from dslite_tiny.records import read_metrics
    from firmware_host import qemu

    summary = {row["variant"]: row for row in csv.DictReader((compressed / "summary.csv").open())}
    for name in ("int8", "pruned-int8"):
        m4 = read_metrics(compressed / name / "metrics.json").cortex_m4
        variant = load_variant(compressed / name)
        engine = generate(variant.data, variant.path, name="model", provenance=[])
        assert m4.ok and m4.ram_bytes == engine.arena_bytes + engine.input_bytes + engine.output_bytes
        if qemu.tools_missing() is None:
            assert m4.method == "qemu-icount" and m4.instructions > 10 ** 5
            assert m4.flash_bytes == sum(qemu.engine_flash(engine, "model", cache_dir=tmp_path / "m4").values())
        assert int(summary[name]["m4_ram_bytes"]) == m4.ram_bytes and summary["float32"]["m4_ram_bytes"] == ""
    result = build_report(compressed, report_dir=tmp_path / "r", tolerance_points=100, min_agreement=0,
                          boards=["mps2-an386"], board="mps2-an386")
    markdown = result.markdown.read_text()
    assert re.search(r"^\| int8 \| [\d.]+ KB \| [\d.]+ KB \| ([\d.]+ M|—) \| 0\.\d{3} \|", markdown, re.M)
    assert "plots/uar_vs_cortex_m4.png" in markdown
    if qemu.tools_missing() is None:
        fastest = min(("int8", "pruned-int8"),
                      key=lambda n: read_metrics(compressed / n / "metrics.json").cortex_m4.instructions)
        assert result.recommendations[0].variant == fastest and "instructions per inference" in \
            result.recommendations[0].text


def test_a_renamed_or_mistyped_field_is_one_line_naming_it(compressed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(compressed, out)
    metrics = json.loads((out / "int8" / "metrics.json").read_text())
    metrics["accuracy"]["chunks"]["UAR"] = metrics["accuracy"]["chunks"].pop("uar")
    (out / "int8" / "metrics.json").write_text(json.dumps(metrics))
    assert_user_error(run_cli("report", str(out)), "int8/metrics.json", "field 'accuracy.chunks.uar' is missing")
    metrics["accuracy"]["chunks"]["uar"] = "0.9"
    (out / "int8" / "metrics.json").write_text(json.dumps(metrics))
    assert_user_error(run_cli("report", str(out)), "field 'accuracy.chunks.uar' must be int/float, got '0.9'")


def test_pareto_front():
    points = [(10, 0.5, "a"), (20, 0.7, "b"), (15, 0.4, "c"), (30, 0.7, "d"), (40, 0.9, "e"), (10, 0.6, "f")]
    assert [p[2] for p in pareto_front(points)] == ["f", "b", "e"]


def test_report_cli_and_bad_input(compressed, tmp_path):
    result = run_cli("report", str(compressed), "--out", str(tmp_path / "r"), "--boards", "nano33ble,rp2040")
    assert result.returncode == 0, result.stderr
    assert "nano33ble: " in result.stdout and f"report: {tmp_path / 'r' / 'report.html'}" in result.stdout
    assert_user_error(run_cli("report", str(tmp_path)), "no summary.csv")
    assert_user_error(run_cli("report", str(compressed), "--tolerance", "-1"), "--tolerance -1.0 is out of range")
    assert_user_error(run_cli("report", str(compressed), "--board", "uno"), "unknown boards preset 'uno'")
    broken = tmp_path / "broken"
    shutil.copytree(compressed, broken)
    (broken / "int8" / "metrics.json").write_text("{")
    assert_user_error(run_cli("report", str(broken)), "metrics.json: not valid JSON")


@pytest.mark.parametrize("missing", ["reference.json", "int8/metrics.json"])
def test_report_names_a_missing_file(compressed, tmp_path, missing):
    broken = tmp_path / "b"
    shutil.copytree(compressed, broken)
    (broken / missing).unlink()
    assert_user_error(run_cli("report", str(broken)), missing.split("/")[-1], "missing")

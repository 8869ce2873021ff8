"""``dslite-tiny compress`` through the real command line, and its bad-input cases."""
from __future__ import annotations

import json
import shutil

from conftest import run_cli
from test_cli import assert_user_error


def test_compress_end_to_end_with_resume(cli_model, tmp_path):
    out = tmp_path / "c"
    args = ("compress", str(cli_model), "--only", "float16,int8", "--set", "latency_runs=3", "--out", str(out),
            "--cache-dir", str(cli_model.parent / "cache"))
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "keras float" in result.stdout and "int8           ok" in result.stdout
    assert json.loads((out / "int8" / "metrics.json").read_text())["tflm"]["ok"]
    again = run_cli(*args)
    assert again.returncode == 0 and again.stdout.count("(unchanged: not rebuilt)") == 2, again.stdout


def test_compress_bad_input(cli_model, demo_data, tmp_path):
    assert_user_error(run_cli("compress", str(cli_model), "--only", "int4", "--out", str(tmp_path)),
                      "--only: unknown variant 'int4'; variants: float32, float16")
    assert_user_error(run_cli("compress", str(cli_model), "--set", "sparsity=1.5", "--out", str(tmp_path)),
                      "sparsity=1.5 is out of range; allowed: > 0.0 and < 1.0")
    assert_user_error(run_cli("compress", str(cli_model), "--set", "representative_chunks=0", "--out", str(tmp_path)),
                      "representative_chunks=0 is out of range")
    other = tmp_path / "other"
    shutil.copytree(demo_data.parent, other)
    (other / "harmonic").rename(other / "whistle")
    assert_user_error(run_cli("compress", str(cli_model), "--data", str(other / "dataset.yaml"), "--out", str(tmp_path)),
                      "labels whistle are not classes of the model model.h5")
    bare = tmp_path / "bare.h5"
    shutil.copy(cli_model, bare)
    assert_user_error(run_cli("compress", str(bare), "--out", str(tmp_path)), "no sidecar bare.json next to the model")
    (tmp_path / "text.h5").write_text("hello")
    assert_user_error(run_cli("compress", str(tmp_path / "text.h5")), "not a Keras model")

"""The package as installed: presets ship inside it, every package folder is listed, one TF switch."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("dslite_tiny", "firmware_host")
             for p in (ROOT / top).rglob("__init__.py")}
    assert found | {"dslite_tiny.presets"} == listed


def test_legacy_keras_switch_is_set_in_exactly_one_place():
    hits = [p for p in (ROOT / "dslite_tiny").rglob("*.py") if "TF_USE_LEGACY_KERAS\"] =" in p.read_text()]
    assert [p.relative_to(ROOT).as_posix() for p in hits] == ["dslite_tiny/__init__.py"]
    code = "import dslite_tiny, tensorflow as tf; print(tf.keras.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().startswith("tf_keras"), out.stderr[-500:]


def test_help_does_not_import_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from dslite_tiny.cli import cli; "
            "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0; print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-500:]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if "pytest" in line and line.startswith("python"))
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
    assert "python -m pip install -e . && dslite-tiny demo" in readme


def test_device_side_imports_no_training_or_compression_code():
    code = ("import sys, firmware_host.harness, firmware_host.virtual, firmware_host.flash, firmware_host.dut; "
            "print(sorted(m for m in sys.modules if m.startswith(('dslite_tiny.train', 'dslite_tiny.compress.', "
            "'dslite_tiny.models', 'tensorflow', 'tf_keras'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr[-500:]


def test_shipped_reports_name_no_machine_path():
    """A report or benchmark record names files relative to the run or the repository, never the temporary
    or home folder of the machine that wrote it."""
    import re
    import tempfile

    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no tracked files to look at")
    tracked = subprocess.run(["git", "ls-files", "reports"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    roots = {"/tmp/", "/var/tmp/", "/home/", "/root/", "/Users/", "/work/", tempfile.gettempdir().rstrip("/") + "/",
             str(Path.home()).rstrip("/") + "/"} - {"/"}
    pattern = re.compile("|".join(rf"(?<![\w.$-]){re.escape(root)}" for root in sorted(roots)))
    found = [f"{name}: {match.group(0)}" for name in tracked if not name.endswith(".png")
             for match in [pattern.search((ROOT / name).read_text(encoding="utf-8", errors="replace"))] if match]
    assert found == []

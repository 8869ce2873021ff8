"""Shared fixtures: tiny synthetic audio written by the tests themselves (no shared data needed)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import dslite_tiny  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any test imports TensorFlow)


def write_wav(path: Path, audio: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sr, subtype=subtype)
    return path


def tone(freq: float, seconds: float, sr: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """A small synthetic dataset (5 classes × 9 clips, 3 speakers, 8 kHz); returns its dataset.yaml."""
    from dslite_tiny.data.synthetic import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("demo"), clips_per_class=9, n_speakers=3, sr=8000, seed=1)


@pytest.fixture(scope="session")
def cli_model(tmp_path_factory, demo_data) -> Path:
    """A model trained through the real command line (2 epochs); returns its model.h5."""
    out = tmp_path_factory.mktemp("cli_model")
    result = run_cli("train", "--data", str(demo_data), "--config", "mcu-dscnn", "--epochs", "2", "--set",
                     "units=16", "--out", str(out), "--cache-dir", str(out / "cache"))
    assert result.returncode == 0, result.stderr
    assert "epoch   2 (train)" in result.stdout and "best devel UAR" in result.stdout
    return out / "model.h5"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_LAYOUT_PROBE = ("<script>window.addEventListener('load', () => { const p = document.createElement('pre'); "
                 "p.id = 'layout-probe'; p.textContent = JSON.stringify([...document.querySelectorAll('table')]"
                 ".map(t => [t.scrollWidth, t.clientWidth])); document.body.appendChild(p); });</script>")


def table_widths(page: Path, *, width: int) -> list[tuple[int, int]]:
    """(scrollWidth, clientWidth) of every table of the HTML ``page`` as headless Chromium lays it out in a
    window ``width`` pixels wide: a table with scrollWidth > clientWidth scrolls sideways."""
    probe = page.with_name(f".{page.stem}-probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _LAYOUT_PROBE + "</body>"), encoding="utf-8")
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={width},1000",
                          "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom)
    assert found, dom[-2000:]
    return [tuple(pair) for pair in json.loads(found.group(1))]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real command line in a fresh process (as a user runs it)."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", **(env or {})}
    return subprocess.run([sys.executable, "-m", "dslite_tiny", *args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=600)


@pytest.fixture(scope="session")
def compressed(cli_model, tmp_path_factory) -> Path:
    """A compress output of ``cli_model`` (float32, dynamic, int8, pruned-int8; short fine-tuning)."""
    from dslite_tiny.compress.pipeline import run_compress
    from dslite_tiny.config import CompressConfig, load_config
    from dslite_tiny.data.cache import FeatureCache

    out = tmp_path_factory.mktemp("compressed")
    config = load_config(CompressConfig, ("test", {
        "variants": ["float32", "dynamic", "int8", "pruned-int8"], "prune_epochs": 2, "latency_runs": 3,
        "latency_warmup": 1, "min_weights": 256, "representative_chunks": 20}), stage="compress")
    result = run_compress(cli_model, config=config, out_dir=out, cache=FeatureCache(cli_model.parent / "cache"))
    assert [r["status"] for r in result.rows] == ["ok"] * 4, result.rows
    return out

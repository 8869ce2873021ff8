"""Atomic writes and the output-folder lock (dslite_tiny.artifacts)."""
from __future__ import annotations

import json
import threading

import pytest

from conftest import run_cli
from test_cli import assert_user_error

from dslite_tiny.artifacts import LOCK_NAME, atomic_path, folder_lock, write_json
from dslite_tiny.errors import UserError


def test_concurrent_writers_never_share_a_temporary(tmp_path):
    target, failures = tmp_path / "metrics.json", []

    def writer(k: int) -> None:
        for i in range(150):
            try:
                write_json(target, {"writer": k, "i": i, "pad": "x" * 4000})
            except OSError as exc:
                failures.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert json.loads(target.read_text())["i"] == 149  # whole, from one writer's last write
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left behind


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = write_json(tmp_path / "a.json", {"old": True})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert json.loads(target.read_text()) == {"old": True} and len(list(tmp_path.iterdir())) == 1


def test_a_locked_folder_refuses_a_second_run(tmp_path, cli_model):
    out = tmp_path / "out"
    with folder_lock(out):
        with pytest.raises(UserError, match="another dslite-tiny run"):
            with folder_lock(out):
                pass
        result = run_cli("compress", str(cli_model), "--only", "float16", "--out", str(out))
        assert_user_error(result, str(out), "another dslite-tiny run (pid", "is writing into this folder")
    with folder_lock(out):  # released: usable again
        assert (out / LOCK_NAME).is_file()

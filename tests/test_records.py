"""Typed records read back with one-line errors naming the file and the field (dslite_tiny.records)."""
from __future__ import annotations

import json

import pytest

from dslite_tiny.config import FrontendConfig, load_config
from dslite_tiny.errors import UserError
from dslite_tiny.records import Reference, read_reference, write_reference


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

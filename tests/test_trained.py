"""Loading a trained model never runs code stored in the file (models/trained.py)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import h5py
import pytest

pytest.importorskip("tensorflow")
import tf_keras as keras  # noqa: E402

from conftest import run_cli  # noqa: E402
from dslite_tiny.errors import UserError  # noqa: E402
from dslite_tiny.models.trained import load_keras_model, load_trained  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[1] / "dslite_tiny"


def save_lambda_model(folder: Path, marker: Path, *, sidecar_from: Path | None = None, nested: bool = False) -> Path:
    """A model whose Lambda layer writes ``marker`` when it runs (as it would on a legacy .h5 load)."""
    inputs, target = keras.Input((8, 8, 1)), str(marker)
    touch = keras.layers.Lambda(lambda x: (open(target, "w").close(), x)[1], name="payload")
    body = keras.Sequential([touch, keras.layers.Flatten(), keras.layers.Dense(5)], name="inner") if nested else None
    outputs = body(inputs) if nested else keras.layers.Dense(5)(keras.layers.Flatten()(touch(inputs)))
    if marker.exists():
        marker.unlink()  # building the graph ran the lambda once
    folder.mkdir(parents=True, exist_ok=True)
    keras.Model(inputs, outputs).save(folder / "model.h5")
    if sidecar_from is not None:
        shutil.copy(sidecar_from.with_suffix(".json"), folder / "model.json")
    return folder / "model.h5"


@pytest.mark.parametrize("nested", [False, True])
def test_a_lambda_layer_is_refused_before_its_code_runs(tmp_path, cli_model, nested):
    marker = tmp_path / "ran"
    path = save_lambda_model(tmp_path / "m", marker, sidecar_from=cli_model, nested=nested)
    with pytest.raises(UserError, match="Lambda layer 'payload'.*never does"):
        load_trained(path)
    with pytest.raises(UserError, match="Lambda layer 'payload'"):
        load_keras_model(path)
    assert not marker.exists()


def test_a_module_reference_outside_keras_is_refused(tmp_path):
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
        dense["config"]["kernel_initializer"] = {"module": "subprocess", "class_name": "Popen", "config": {}}
        handle.attrs["model_config"] = json.dumps(config)
    with pytest.raises(UserError, match="names the Python module 'subprocess' \\(Popen\\)"):
        load_keras_model(tmp_path / "m.h5")


def test_a_clean_model_still_loads(cli_model):
    trained = load_trained(cli_model)
    assert trained.model.output_shape[-1] == len(trained.classes)


@pytest.mark.parametrize("command", ["predict", "evaluate", "compress"])
def test_every_command_refuses_a_lambda_model_in_one_line(tmp_path, cli_model, demo_data, command):
    marker = tmp_path / "ran"
    path = save_lambda_model(tmp_path / "m", marker, sidecar_from=cli_model)
    args = {"predict": [str(demo_data.parent)], "evaluate": ["--data", str(demo_data)],
            "compress": ["--data", str(demo_data), "--only", "int8", "--out", str(tmp_path / "out")]}[command]
    result = run_cli(command, str(path), *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}: the model has a Lambda layer"), result.stderr
    assert not marker.exists()


def test_no_module_loads_keras_models_around_the_check():
    """Every Keras deserialisation goes through load_keras_model (or the DSLite importer, which checks too)."""
    allowed = {"models/trained.py": 1, "models/dslite_import.py": 1}
    pattern = re.compile(r"\b(load_model|model_from_json|model_from_config|model_from_yaml)\(")
    found = {str(p.relative_to(PACKAGE)): len(pattern.findall(p.read_text())) for p in PACKAGE.rglob("*.py")}
    assert {k: v for k, v in found.items() if v} == allowed


def _copy_with_sidecar(cli_model: Path, folder: Path, edit) -> Path:
    """``cli_model`` and its sidecar in ``folder``, the sidecar's JSON changed by ``edit`` (text → text)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(cli_model, folder / "model.h5")
    (folder / "model.json").write_text(edit(cli_model.with_suffix(".json").read_text()))
    return folder / "model.h5"


def _edit_json(change):
    def edit(text: str) -> str:
        data = json.loads(text)
        change(data)
        return json.dumps(data)
    return edit


@pytest.mark.parametrize("edit,message", [
    (lambda text: text[: len(text) // 2], r"model.json: not valid JSON"),
    (_edit_json(lambda d: d.pop("classes")), r"field 'classes' is missing"),
    (_edit_json(lambda d: d["classes"].append("extra")), r"lists 6 classes but the model has 5 outputs"),
    (_edit_json(lambda d: d["frontend"].update(image_height=32)), r"frontend makes \(32, 64, 1\) images but the "
                                                                  r"model takes \(64, 64, 1\)"),
    (_edit_json(lambda d: d.pop("frontend")), r"field 'frontend' is missing"),
])
def test_a_sidecar_that_does_not_describe_the_model_is_one_line(tmp_path, cli_model, edit, message):
    path = _copy_with_sidecar(cli_model, tmp_path / "m", edit)
    with pytest.raises(UserError, match=message):
        load_trained(path)


def test_a_broken_sidecar_is_one_line_on_the_command_line(tmp_path, cli_model, demo_data):
    path = _copy_with_sidecar(cli_model, tmp_path / "m", lambda text: "{not json")
    result = run_cli("evaluate", str(path), "--data", str(demo_data))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "model.json: not valid JSON" in lines[0], result.stderr


@pytest.mark.parametrize("config, message", [('{"class_name": "Functional", broken', "model_config is not valid JSON"),
                                             ("[1, 2]", "model_config is not a JSON object")])
def test_a_model_config_that_is_not_json_is_one_line(tmp_path, cli_model, config, message):
    import h5py

    path = _copy_with_sidecar(cli_model, tmp_path / "m", lambda text: text)
    with h5py.File(path, "r+") as handle:
        handle.attrs["model_config"] = config
    with pytest.raises(UserError, match=message):
        load_trained(path)

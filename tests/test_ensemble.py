"""Trained models averaged as one flat model (models/ensemble.py, ``dslite-tiny ensemble``)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
import tf_keras as keras  # noqa: E402

from conftest import run_cli  # noqa: E402
from dslite_tiny.errors import UserError  # noqa: E402
from dslite_tiny.models.ensemble import ensemble_models  # noqa: E402
from dslite_tiny.models.trained import load_trained, save_trained  # noqa: E402


def second_member(cli_model: Path, folder: Path, *, seed: int = 1, edit=None) -> Path:
    """``cli_model`` with its weights moved by noise (a stand-in for another seed's run), its sidecar edited
    by ``edit`` (a function of the sidecar's JSON) if given."""
    trained = load_trained(cli_model)
    rng = np.random.default_rng(seed)
    trained.model.set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in trained.model.get_weights()])
    path = save_trained(trained.model, folder / "model.h5", trained.sidecar)
    if edit is not None:
        side = path.with_suffix(".json")
        data = json.loads(side.read_text())
        edit(data)
        side.write_text(json.dumps(data))
    return path


def test_the_ensemble_is_one_flat_model_with_its_members_mean_and_scores_their_split(cli_model, tmp_path):
    other = second_member(cli_model, tmp_path / "b")
    result = run_cli("ensemble", str(cli_model), str(other), "--out", str(tmp_path / "pair"))
    assert result.returncode == 0, result.stderr
    assert "the mean of 2 models" in result.stdout
    pair, members = load_trained(tmp_path / "pair" / "model.h5"), [load_trained(p) for p in (cli_model, other)]
    assert not any(isinstance(layer, keras.Model) for layer in pair.model.layers)
    x = np.random.default_rng(0).normal(size=(6, *pair.model.input_shape[1:])).astype(np.float32)
    expected = np.mean([m.model(x, training=False).numpy() for m in members], axis=0)
    np.testing.assert_allclose(pair.model(x, training=False).numpy(), expected, atol=1e-6)
    assert pair.classes == members[0].classes and pair.frontend_config == members[0].frontend_config
    assert pair.sidecar.data == members[0].sidecar.data and pair.sidecar.history == ()
    listed = pair.sidecar.details["ensemble"]["members"]
    assert [m["file"] for m in listed] == [str(cli_model.resolve()), str(other.resolve())]
    scored = run_cli("evaluate", str(tmp_path / "pair" / "model.h5"))  # the members' own test split
    assert scored.returncode == 0, scored.stderr
    assert "UAR" in scored.stdout


def _swap_first_classes(data: dict) -> None:
    data["classes"][:2] = data["classes"][1::-1]


def _other_fmin(data: dict) -> None:
    data["frontend"]["fmin"] = data["frontend"]["fmin"] + 10.0


def _other_test_speakers(data: dict) -> None:
    speakers = data["data"]["speakers"]
    speakers["train"], speakers["test"] = speakers["test"], speakers["train"]


@pytest.mark.parametrize("edit, message", [
    (_swap_first_classes, "are not those of .*in that order"),
    (_other_fmin, "another frontend"),
    (_other_test_speakers, "another data split.*no honest devel or test split"),
])
def test_members_that_disagree_are_refused_naming_the_file(cli_model, tmp_path, edit, message):
    other = second_member(cli_model, tmp_path / "b", edit=edit)
    with pytest.raises(UserError, match=message) as caught:
        ensemble_models([cli_model, other], out_dir=tmp_path / "pair")
    assert str(other) in str(caught.value)
    assert not (tmp_path / "pair").exists()


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_a_nested_member_is_refused(cli_model, tmp_path):
    member = load_trained(cli_model)
    inputs = keras.Input(member.model.input_shape[1:])
    nested = keras.Model(inputs, keras.Model(member.model.inputs, member.model.outputs, name="inner")(inputs))
    (tmp_path / "n").mkdir()
    nested.save(tmp_path / "n" / "model.h5")
    shutil.copy(cli_model.with_suffix(".json"), tmp_path / "n" / "model.json")
    with pytest.raises(UserError, match="layer 'inner' is a nested model"):
        ensemble_models([cli_model, tmp_path / "n" / "model.h5"], out_dir=tmp_path / "pair")


def test_one_model_or_the_same_model_twice_is_refused_in_one_line(cli_model, tmp_path):
    with pytest.raises(UserError, match="2 to 8 models, not 1"):
        ensemble_models([cli_model], out_dir=tmp_path / "pair")
    from click.testing import CliRunner

    from dslite_tiny.cli import cli

    again = cli_model.parent / ".." / cli_model.parent.name / "model.h5"
    result = CliRunner().invoke(cli, ["ensemble", str(cli_model), str(again), "--out", str(tmp_path / "pair")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: the same model is named twice: an ensemble's members must be different models"]


def test_an_ensemble_trains_quantization_aware_and_converts_to_int8():
    """TFMOT's registry has no Average: without its QuantizeConfig ``qat-int8`` and ``pqat-int8`` of an
    ensemble fail."""
    from ai_edge_litert.interpreter import Interpreter

    from dslite_tiny.compress.convert import convert_model
    from dslite_tiny.compress.quantize import calibrate_ranges, quantize_model
    from dslite_tiny.models.ensemble import merge_models

    def member(seed: int):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inputs))
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))

    pair = merge_models([member(0), member(1)])
    images = np.random.default_rng(0).normal(size=(64, 8, 8, 1)).astype(np.float32)
    qat = quantize_model(pair)
    calibrate_ranges(qat, pair, images)
    interpreter = Interpreter(model_content=convert_model(qat, "int8", representative=images))
    interpreter.allocate_tensors()
    (given,), (taken,) = interpreter.get_input_details(), interpreter.get_output_details()
    scale, zero = given["quantization"]
    interpreter.set_tensor(given["index"], np.round(images[:1] / scale + zero).astype(np.int8))
    interpreter.invoke()
    out_scale, out_zero = taken["quantization"]
    got = (interpreter.get_tensor(taken["index"]).astype(np.float32) - out_zero) * out_scale
    np.testing.assert_allclose(got, pair(images[:1], training=False).numpy(), atol=0.03)

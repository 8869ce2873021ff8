"""train / evaluate / predict through the real command line, and their bad-input cases."""
from __future__ import annotations

import csv
import io
import json
import shutil


from conftest import run_cli
from test_cli import assert_user_error


def test_train_evaluate_predict_end_to_end(cli_model, demo_data, tmp_path):
    sidecar = json.loads(cli_model.with_suffix(".json").read_text())
    assert sidecar["train"]["units"] == 16 and len(sidecar["history"]) == 2
    result = run_cli("evaluate", str(cli_model), "--data", str(demo_data), "--out", str(tmp_path / "e.json"))
    assert result.returncode == 0, result.stderr
    assert "per file   UAR" in result.stdout and "confusion matrix" in result.stdout
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["split"] == "test" and len(report["per_file"]) == report["files"]["n"] == 15
    wav = next(demo_data.parent.rglob("chirp_up_*.wav"))
    table = run_cli("predict", str(cli_model), str(wav), "--format", "csv", "--chunks")
    assert table.returncode == 0, table.stderr
    rows = list(csv.reader(io.StringIO(table.stdout)))
    assert rows[0][:3] == ["file", "chunk", "predicted"] and rows[0][3:] == sidecar["classes"]
    assert rows[1][1] == "all" and abs(sum(map(float, rows[1][3:])) - 1) < 1e-3


def test_unknown_backbone_and_small_image(demo_data, tmp_path):
    assert_user_error(run_cli("train", "--data", str(demo_data), "--set", "backbone=resnet9", "--out", str(tmp_path)),
                      "unknown backbone 'resnet9'; available: densenet121, dscnn, dscnn_mlperf, mobilenet, mobilenet_v2")
    (tmp_path / "tiny.yaml").write_text("preset: mcu-64\nimage_height: 24\nimage_width: 24\n")
    config = tmp_path / "small.yaml"
    config.write_text("preset: mcu-mobilenet\nweights: none\nfrontend: tiny.yaml\n")
    assert_user_error(run_cli("train", "--data", str(demo_data), "--config", str(config), "--out", str(tmp_path / "o")),
                      "image 24×24 is too small for mobilenet (needs at least 32×32)")


def test_a_frontend_that_does_not_fit_the_pretrained_backbone_is_refused(demo_data, tmp_path):
    result = run_cli("train", "--data", str(demo_data), "--config", "mcu-mobilenet", "--set", "frontend=dslite-code",
                     "--out", str(tmp_path))
    assert_user_error(result, "frontend 'dslite-code' normalises images as 'torch', mobilenet's pretrained weights "
                              "expect 'tf'")


def test_a_missing_weight_file_says_how_to_give_one(demo_data, tmp_path):
    result = run_cli("train", "--data", str(demo_data), "--config", "mcu-mobilenet", "--weights",
                     str(tmp_path / "gone.h5"), "--epochs", "1", "--fine-epochs", "0", "--out", str(tmp_path / "o"))
    assert_user_error(result, "gone.h5: no such weight file", "--weights imagenet")


def test_a_one_class_dataset_is_refused(demo_data, tmp_path):
    root = tmp_path / "one"
    shutil.copytree(demo_data.parent, root)
    for folder in [p for p in root.iterdir() if p.is_dir() and p.name != "chirp_up"]:
        shutil.rmtree(folder)
    result = run_cli("train", "--data", str(root / "dataset.yaml"), "--out", str(tmp_path / "o"))
    assert_user_error(result, "split 'train' holds 1 class (chirp_up); a classifier needs at least two")


def test_weights_of_another_architecture(demo_data, tmp_path, cli_model):
    result = run_cli("train", "--data", str(demo_data), "--weights", str(cli_model), "--set", "backbone=mobilenet",
                     "--set", "frontend=fsdd", "--set", "alpha=0.25", "--out", str(tmp_path))
    assert_user_error(result, "weights of another architecture")


def test_data_labels_that_do_not_match_the_model(cli_model, demo_data, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(demo_data.parent, other)
    (other / "harmonic").rename(other / "whistle")
    result = run_cli("evaluate", str(cli_model), "--data", str(other / "dataset.yaml"))
    assert_user_error(result, "labels whistle are not classes of the model model.h5")


def test_non_keras_h5(tmp_path, demo_data):
    import h5py

    with h5py.File(tmp_path / "data.h5", "w") as handle:
        handle["x"] = [1, 2, 3]
    assert_user_error(run_cli("evaluate", str(tmp_path / "data.h5"), "--data", str(demo_data)),
                      "not a Keras model: an HDF5 file without a model config")
    (tmp_path / "text.h5").write_text("hello")
    assert_user_error(run_cli("predict", str(tmp_path / "text.h5"), str(tmp_path / "text.h5")),
                      "not a Keras model: not an HDF5")


def test_tensorboard_logs_or_a_clear_error(demo_data, tmp_path):
    import importlib.util

    result = run_cli("train", "--data", str(demo_data), "--epochs", "1", "--set", "tensorboard=true",
                     "--out", str(tmp_path))
    if importlib.util.find_spec("tensorboard") is None:
        assert_user_error(result, "tensorboard=true needs the tensorboard package")
    else:
        assert result.returncode == 0, result.stderr
        assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_evaluate_scores_the_models_own_split_and_refuses_one_that_overlaps_training(cli_model, demo_data, tmp_path):
    saved = json.loads(cli_model.with_suffix(".json").read_text())["data"]
    own = run_cli("evaluate", str(cli_model), "--out", str(tmp_path / "own.json"))
    assert own.returncode == 0, own.stderr
    report = json.loads((tmp_path / "own.json").read_text())
    assert (report["split_method"], report["speakers"]) == (saved["split_method"], saved["speakers"]["test"])
    assert report["overlaps_training"] is None
    speaker = saved["speakers"]["train"][0]
    assert_user_error(run_cli("evaluate", str(cli_model), "--test-speakers", speaker),
                      f"the test split shares speakers {speaker} with the train and devel splits of the model")
    by_file = ("evaluate", str(cli_model), "--data", str(demo_data.parent))  # the same files, split by file
    assert_user_error(run_cli(*by_file), "is cut differently from the model's")
    allowed = run_cli(*by_file, "--allow-overlap", "--out", str(tmp_path / "overlap.json"))
    assert allowed.returncode == 0 and "warning: the test split" in allowed.stderr, allowed.stderr
    assert "cut differently" in json.loads((tmp_path / "overlap.json").read_text())["overlaps_training"]
    assert_user_error(run_cli("compress", str(cli_model), "--test-speakers", speaker), "data options need --data DATA")

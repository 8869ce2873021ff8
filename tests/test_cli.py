"""The real command line, end to end, including every bad-input case of the frontend and datasets."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, tone, write_wav
from test_audio_io import bad_files


def assert_user_error(result, *phrases: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


def test_demo_end_to_end(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path / "demo"), "--clips-per-class", "6")
    assert result.returncode == 0, result.stderr
    assert "split by speaker" in result.stdout and "30 files → " in result.stdout
    manifest = json.loads((tmp_path / "demo" / "features" / "features.json").read_text())
    assert manifest["frontend"]["image_height"] == 64 and manifest["report"]["files"] == 30
    png = next((tmp_path / "demo" / "features" / "test").rglob("*.png"))
    assert Image.open(png).size == (64, 64)
    assert "compress  " in result.stdout and "pqat-int8      ok" in result.stdout
    summary = (tmp_path / "demo" / "compressed" / "summary.csv").read_text().splitlines()
    from dslite_tiny.config import CompressConfig, load_config

    variants = load_config(CompressConfig, "default", stage="compress").variants  # the demo's preset
    assert len(summary) == len(variants) + 1 and all(",ok," in row for row in summary[1:])
    report = tmp_path / "demo" / "report" / "report.html"
    assert result.stdout.strip().splitlines()[-1] == f"report    {report}" and report.is_file()
    assert "export    " in result.stdout and "nano33ble: flash" in result.stdout
    exported = list((tmp_path / "demo" / "compressed").glob("*/export-c/demo_model_data.cc"))
    assert len(exported) == 1 and (exported[0].parent.parent / "export-phone" / "labels.txt").is_file()
    again = run_cli("demo", "--out", str(tmp_path / "demo"), "--clips-per-class", "6")
    assert again.returncode == 0, again.stderr

    def evaluation(stdout: str) -> list[str]:
        return [line for line in stdout.splitlines() if "UAR" in line and "accuracy" in line]
    assert evaluation(again.stdout) == evaluation(result.stdout)


def test_features_of_a_folder_without_audio_is_an_error(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no audio here")
    result = run_cli("features", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--no-cache")
    assert_user_error(result, "no audio files (.wav, .flac, .ogg) in", str(tmp_path / "in"))
    assert not (tmp_path / "out" / "features.json").exists()


def test_features_of_files_png_and_npy(tmp_path):
    audio = write_wav(tmp_path / "in" / "sweep.wav", tone(500, 9.0, 16000), 16000)
    out = tmp_path / "out"
    result = run_cli("features", str(audio), "--config", "dslite-code", "--format", "png,npy", "--out", str(out),
                     "--no-cache")
    assert result.returncode == 0, result.stderr
    assert "1 files → 3 chunks" in result.stdout  # 9 s in 4 s chunks every 2 s
    image = np.asarray(Image.open(out / "sweep_c0.png"))
    model_input = np.load(out / "sweep_c0.npy")
    assert image.shape == model_input.shape == (224, 224, 3) and image.dtype == np.uint8
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose((image / 255 - mean) / std, model_input, atol=0.01)  # torch normalisation


def test_features_of_a_dataset_with_hp_config(tmp_path, demo_data):
    hp = tmp_path / "hp.json"
    hp.write_text(json.dumps({"sample_rate": [8000], "upper_edge_hertz": [4000.0], "chunk_size": [1.0],
                              "chunk_hop_size": [0.5], "image_width": [48], "image_height": [32],
                              "basemodel_name": ["mobilenet"]}))
    out = tmp_path / "feat"
    result = run_cli("features", "--data", str(demo_data), "--hp-config", str(hp), "--out", str(out),
                     "--per-class", "1", "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "features.json").read_text())
    assert manifest["frontend"]["normalization"] == "tf" and manifest["report"]["files"] == 45
    assert len(manifest["files"]) == 15  # one clip per split and class
    assert Image.open(next(out.rglob("*.png"))).size == (48, 32)


def test_data_summary_and_synth(tmp_path):
    synth = run_cli("data", "synth", str(tmp_path / "d"), "--clips-per-class", "6", "--speakers", "3", "--sr", "8000")
    assert synth.returncode == 0, synth.stderr
    result = run_cli("data", "summary", str(tmp_path / "d" / "dataset.yaml"))
    assert result.returncode == 0, result.stderr
    assert "30 files, 5 classes" in result.stdout and "1 speaker: spk2" in result.stdout
    from dslite_tiny.data.splits import speaker_list

    many = [f"{i:08x}" for i in range(183)]
    assert speaker_list(many) == f"183 speakers: {', '.join(many[:8])}, … (175 more)"
    assert speaker_list(["theo"]) == "1 speaker: theo"
    assert speaker_list(["theo", "file:_silence_/1.wav", "file:_silence_/2.wav"]) == \
        "1 speaker: theo; 2 files without a speaker"
    assert "chirp_up" in result.stdout and " test: 10 files" in result.stdout


def test_data_summary_splits_files_without_a_speaker_when_asked(tmp_path):
    from test_data import make_kws_like

    root = str(make_kws_like(tmp_path / "kws"))
    regex = ("--speaker-regex", "(?P<speaker>[0-9a-f]{8})_nohash_")
    assert_user_error(run_cli("data", "summary", root, *regex), "finds no speaker in 12 of 42 file names")
    result = run_cli("data", "summary", root, *regex, "--speakerless", "by-file")
    assert result.returncode == 0, result.stderr
    assert "12 files without a speaker one by one" in result.stdout
    lines = [line for line in result.stdout.splitlines() if line.lstrip().startswith(("train:", "devel:", "test:"))]
    assert sum(int(line.split("; ")[-1].split()[0]) for line in lines if "without a speaker" in line) == 12


def test_config_show_lists_every_key():
    result = run_cli("config", "show", "--config", "dslite-paper", "--set", "n_mels=64")
    assert result.returncode == 0, result.stderr
    assert "n_mels: 64  #" in result.stdout and "window_s: 0.032" in result.stdout


@pytest.mark.parametrize("case", ["missing.wav", "text.wav", "truncated.wav", "empty.wav", "nan.wav",
                                  "mp3inwav.wav"])
def test_bad_audio_is_a_one_line_error(tmp_path, case):
    path, phrase = bad_files(tmp_path)[case]
    for cache in (("--no-cache",), ("--cache-dir", str(tmp_path / "cache"))):
        result = run_cli("features", str(path), "--out", str(tmp_path / "out"), *cache)
        assert_user_error(result, str(path), phrase)


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("--debug", "features", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "o"))
    assert result.returncode != 0 and "Traceback" in result.stderr and "AudioError" in result.stderr


def test_bad_file_in_a_dataset_is_skipped_unless_strict(tmp_path, demo_data):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(demo_data.parent, root)
    (root / "harmonic" / "harmonic_spk0_99.wav").write_bytes(b"garbage")
    args = ("features", "--data", str(root / "dataset.yaml"), "--out", str(tmp_path / "o"), "--no-cache",
            "--per-class", "0", "--set", "sr=8000", "--set", "fmax=4000")
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "46 files" in result.stdout and "1 bad files skipped" in result.stdout
    assert "harmonic_spk0_99.wav" in result.stderr
    assert_user_error(run_cli(*args, "--strict"), "harmonic_spk0_99.wav", "not an audio file")


def _dslite_files(tmp_path, csv_text: str, classes: dict) -> tuple[str, ...]:
    write_wav(tmp_path / "audio" / "train_a.wav", tone(440, 0.5, 8000), 8000)
    (tmp_path / "label.csv").write_text(csv_text)
    (tmp_path / "class_config.json").write_text(json.dumps(classes))
    return ("data", "summary", str(tmp_path / "audio"), "--labels", str(tmp_path / "label.csv"),
            "--class-config", str(tmp_path / "class_config.json"))


def test_label_csv_with_wrong_columns(tmp_path):
    args = _dslite_files(tmp_path, "name,target\ntrain_a.wav,dog\n", {"dog": "Dog"})
    assert_user_error(run_cli(*args), "label.csv", "wrong columns: expected filename,label, found name,target")


def test_labels_missing_from_class_config(tmp_path):
    args = _dslite_files(tmp_path, "filename,label,duration_frames\ntrain_a.wav,cat,4000\n", {"dog": "Dog"})
    assert_user_error(run_cli(*args), "label.csv", "label(s) cat missing from", "class_config.json")


def test_empty_split(tmp_path):
    args = _dslite_files(tmp_path, "filename,label,duration_frames\ntrain_a.wav,dog,4000\n", {"dog": "Dog"})
    result = run_cli(*args)
    assert_user_error(result, "label.csv", "split 'devel' is empty (train 1, devel 0, test 0 files")


@pytest.mark.parametrize("args,phrases", [
    (("--set", "n_mels=0"), ("--set", "n_mels=0 is out of range")),
    (("--set", "colour=viridis"), ("--set", "unknown key 'colour'; valid keys:")),
    (("--set", "sr=fast"), ("sr expects an integer, got 'fast'",)),
    (("--set", "fmax=[a/{b}]"), ("--set fmax: '[a/{b}]' is not a valid YAML list", "quote items")),
    (("--config", "nope"), ("unknown frontend preset 'nope'",)),
])
def test_invalid_config_values(tmp_path, args, phrases):
    audio = write_wav(tmp_path / "a.wav", tone(440, 0.5, 16000), 16000)
    assert_user_error(run_cli("features", str(audio), "--out", str(tmp_path / "o"), *args), *phrases)


def test_invalid_config_file(tmp_path):
    config = tmp_path / "frontend.yaml"
    config.write_text("preset: dslite-code\nfmax: 20000\n")
    audio = write_wav(tmp_path / "a.wav", tone(440, 0.5, 16000), 16000)
    assert_user_error(run_cli("features", str(audio), "--out", str(tmp_path / "o"), "--config", str(config)),
                      str(config), "fmax=20000.0 must be at most sr/2=8000.0")


@pytest.mark.parametrize("args", [("evaluate", "--help"), ("train",), ("predict",), ("compress", "--only", "int9", "m.h5"),
                                  ("demo", "--epochs", "0")])
def test_argument_errors_answer_before_tensorflow_is_imported(args):
    import subprocess
    import sys

    probe = ("import sys\nfrom dslite_tiny.cli import cli\ntry:\n    cli(sys.argv[1:], prog_name='dslite-tiny')\n"
             "except SystemExit as exit:\n    print('exit', exit.code, 'tensorflow' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] in ("exit 0 False", "exit 2 False"), result.stdout + result.stderr


def test_a_non_numeric_hp_config_chunk_size_is_one_line(tmp_path):
    audio = write_wav(tmp_path / "a.wav", tone(440, 0.5, 16000), 16000)
    (tmp_path / "hp.json").write_text(json.dumps({"chunk_size": ["abc"], "sample_rate": [16000]}))
    result = run_cli("features", str(audio), "--hp-config", str(tmp_path / "hp.json"), "--out", str(tmp_path / "o"))
    assert_user_error(result, "hp.json", "chunk_size='abc' is not a number of seconds")


def test_progress_without_a_terminal_is_a_few_plain_lines(capsys):
    from dslite_tiny.cli.options import progress_lines

    assert list(progress_lines(range(3), desc="features train", every_s=0.0)) == [0, 1, 2]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("features train: 1/3 (33 %) after ") and lines[-1].startswith("features train: 3 done")
    assert list(progress_lines(iter("ab"), desc="quick", every_s=60.0)) == ["a", "b"]
    assert capsys.readouterr().err == ""  # a short loop says nothing

"""Speaker cross-validation: folds split by speaker, one model per fold, resumable, through the real CLI."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli
from test_cli import assert_user_error
from dslite_tiny.errors import DataError
from dslite_tiny.train.cv import speaker_folds

SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


@pytest.mark.parametrize("folds", [None, 3, 4])
def test_folds_keep_every_speaker_in_one_role_and_test_each_once(folds):
    plan = speaker_folds(SPEAKERS[::-1], folds=folds)
    assert len(plan) == (folds or len(SPEAKERS))
    tested = [s for fold in plan for s in fold.test]
    selected = [s for fold in plan for s in fold.devel]
    assert sorted(tested) == sorted(selected) == SPEAKERS  # each speaker is tested once and selects once
    for fold in plan:
        roles = [set(fold.test), set(fold.devel), set(fold.train)]
        assert all(roles) and set().union(*roles) == set(SPEAKERS)
        assert sum(len(r) for r in roles) == len(SPEAKERS)  # no speaker in two roles of a fold
    if folds is None:
        assert [f.name for f in plan] == SPEAKERS and plan[0].devel == ("jackson",)
    else:  # 4 folds of 6 speakers: two of two and two of one, named alike
        assert [f.name for f in plan] == [f"fold{i + 1}" for i in range(folds)]


@pytest.mark.parametrize("speakers,folds", [(["a", "b"], None), (SPEAKERS, 2), (SPEAKERS, 7)])
def test_too_few_speakers_or_folds_is_refused(speakers, folds):
    with pytest.raises(DataError, match="speaker cross-validation needs 3 to"):
        speaker_folds(speakers, folds=folds)


def test_cv_end_to_end_writes_each_fold_and_resumes(demo_data, tmp_path):
    out = tmp_path / "cv"
    augment = ["--set", "time_shift=true", "--set", "noise_snr_db=[10,40]", "--set", "speed_perturb=0.1",
               "--set", "pitch_shift=1", "--set", "frontend.clip_position=center"]  # training runs them too
    args = ["cv", "--data", str(demo_data), "--config", "mcu-dscnn", "--set", "epochs=1", "--set", "units=8", *augment,
            "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    summary = json.loads((out / "cv.json").read_text())
    assert summary["complete"] and summary["runs_done"] == 3 and len(summary["folds"]) == 3
    for run in summary["runs"]:
        assert set(run["test_speakers"]).isdisjoint(run["devel_speakers"])
        assert 0.0 <= run["chunk_uar"] <= 1.0 and (out / f"{run['fold']}-s0" / "model.h5").is_file()
        assert 0.0 <= run["file_accuracy"] <= 1.0 and run["seconds"] > 0
        sidecar = json.loads((out / f"{run['fold']}-s0" / "model.json").read_text())
        assert sidecar["data"]["speakers"]["test"] == run["test_speakers"]
        assert sidecar["frontend"]["clip_position"] == "center" and sidecar["train"]["noise_snr_db"] == [10, 40]
        assert not set(sidecar["data"]["speakers"]["train"]) & set(run["test_speakers"] + run["devel_speakers"])
    assert "3 folds: UAR" in first.stdout and first.stdout.count("fold spk") == 6  # each run: an epoch, a result
    assert "fold spk0 seed 0 epoch   1: loss" in first.stdout
    table = (out / "cv.md").read_text()
    assert "**mean ± std**" in table and "top-1 per file" in table and (out / "cv.png").stat().st_size > 5000
    assert summary["run_seconds"]["runs"] == 3 and summary["mean"]["file_accuracy"]["n"] == 3
    models = {p: p.stat().st_mtime_ns for p in out.glob("*-s0/model.h5")}
    again = run_cli(*args)  # resumes: every run is done, none is trained again
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.glob("*-s0/model.h5")} == models
    assert json.loads((out / "cv.json").read_text())["runs"] == summary["runs"]


def test_cv_bad_options(demo_data, tmp_path):
    base = ["cv", "--data", str(demo_data), "--out", str(tmp_path / "cv")]
    assert_user_error(run_cli(*base, "--folds", "two"), "'two' is neither 'loso' nor a number of folds")
    assert_user_error(run_cli(*base, "--seeds", "0,0"), "'0,0' is not a list of distinct seeds")
    assert_user_error(run_cli(*base, "--folds", "5"), "speaker cross-validation needs 3 to 3 folds")
    assert_user_error(run_cli(*base, "--test-speakers", "spk0"), "cv chooses each fold's test and devel speakers")


def test_a_run_is_reused_only_if_the_same_configs_wrote_it(tmp_path):
    import hashlib

    from dslite_tiny.config import DataConfig, TrainConfig, load_config, to_dict
    from dslite_tiny.train.cv import config_fingerprint, finished_run

    train = load_config(TrainConfig, "mcu-dscnn", stage="train")
    data = load_config(DataConfig, ("test", {"root": str(tmp_path)}), stage="data")
    mine = config_fingerprint(data, train)
    assert mine == config_fingerprint(data, load_config(TrainConfig, "mcu-dscnn", ("t", {"seed": 5}), stage="train"))
    assert mine != config_fingerprint(data, load_config(TrainConfig, "mcu-dscnn", ("t", {"units": 8}), stage="train"))
    assert mine != config_fingerprint(data, load_config(TrainConfig, "mcu-dscnn", ("t", {"teacher": ["t.h5"]}),
                                                        stage="train"))
    by_file = load_config(DataConfig, ("test", {"root": str(tmp_path), "speakerless": "by_file"}), stage="data")
    assert mine != config_fingerprint(by_file, train)
    # keys added later, at their defaults, leave the fingerprint that versions without them wrote
    earlier = {k: v for k, v in to_dict(train).items() if not k.startswith("teacher")}
    earlier_data = {k: v for k, v in to_dict(data).items() if k != "speakerless"}
    settings = {"data": earlier_data, "train": {**earlier, "seed": None}}
    assert mine == hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    run = tmp_path / "spk0-s0"
    assert finished_run(run, mine) is None
    run.mkdir()
    (run / "result.json").write_text(json.dumps({"fingerprint": mine, "chunk_uar": 0.5}))
    assert finished_run(run, mine)["chunk_uar"] == 0.5
    assert finished_run(run, "another") is None
    (run / "result.json").write_text("{not json")
    assert finished_run(run, mine) is None


def test_a_dataset_not_split_by_speaker_cannot_be_folded(tmp_path):
    from dslite_tiny.config import DataConfig, load_config
    from dslite_tiny.data.layouts import load_dataset
    from dslite_tiny.data.synthetic import make_demo_dataset
    from dslite_tiny.train.cv import dataset_speakers

    spec = make_demo_dataset(tmp_path / "d", clips_per_class=3, n_speakers=3, sr=8000, seed=0)
    data = load_config(DataConfig, spec, stage="data")
    assert dataset_speakers(load_dataset(data)) == ["spk0", "spk1", "spk2"]
    no_speakers = load_config(DataConfig, spec, ("t", {"speaker_regex": None}), stage="data")
    with pytest.raises(DataError, match="needs splits by speaker .*; this dataset is split by stratified random"):
        dataset_speakers(load_dataset(no_speakers))
    files = sorted(p.relative_to(tmp_path / "d").as_posix() for p in (tmp_path / "d").rglob("*.wav"))
    (tmp_path / "d" / "splits.csv").write_text("filename,split\n" + "".join(
        f"{f},{('train', 'devel', 'test')[i % 3]}\n" for i, f in enumerate(files)))
    with pytest.raises(DataError, match="this dataset is split by splits.csv"):
        dataset_speakers(load_dataset(data))

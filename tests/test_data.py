"""Dataset layouts, speaker-independent splits, DeepSpectrumLite files, the feature cache."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import tone, write_wav
from dslite_tiny.audio.frontend import Frontend
from dslite_tiny.config import DataConfig, FrontendConfig, load_config
from dslite_tiny.data import cache as cache_module
from dslite_tiny.data.cache import FeatureCache
from dslite_tiny.data.dslite import hp_config_to_frontend, read_hp_config
from dslite_tiny.data.features import batches_per_epoch, compute_features, epoch_batches
from dslite_tiny.data.layouts import load_dataset
from dslite_tiny.data.synthetic import CLASSES, make_demo_dataset
from dslite_tiny.errors import AudioError, ConfigError, DataError

SR = 8000


def data_config(**values) -> DataConfig:
    return load_config(DataConfig, ("test", values), stage="data")


def small_frontend() -> Frontend:
    return Frontend(load_config(FrontendConfig, "mcu-64", ("test", {"sr": SR, "fmax": 4000.0}), stage="frontend"))


def make_fsdd_like(root, speakers=("ann", "bob", "cid", "dan", "eve"), digits=3, takes=4):
    for d in range(digits):
        for s in speakers:
            for k in range(takes):
                write_wav(root / f"{d}_{s}_{k}.wav", tone(300 + 100 * d, 0.3, SR), SR)
    return root


def test_folder_layout_with_splits_csv(tmp_path):
    for label in ("dog", "cat"):
        for split in ("train", "devel", "test"):
            write_wav(tmp_path / label / f"{split}_{label}.wav", tone(440, 0.2, SR), SR)
    rows = [f"{label}/{split}_{label}.wav,{split}" for label in ("dog", "cat") for split in ("train", "devel", "test")]
    (tmp_path / "splits.csv").write_text("filename,split\n" + "\n".join(rows) + "\n")
    dataset = load_dataset(data_config(root=str(tmp_path)))
    assert dataset.classes == ("cat", "dog") and dataset.split_method == "splits.csv"
    assert {c.path.name: c.split for c in dataset.clips}["train_dog.wav"] == "train"
    assert dataset.counts().loc["total", "total"] == 6


@pytest.mark.parametrize("bad", ["two\nlines", "tab\there", " "])
def test_class_names_that_would_corrupt_labels_files_are_refused(tmp_path, bad):
    for label in ("dog", bad):
        for k in range(3):
            write_wav(tmp_path / label / f"{k}.wav", tone(440, 0.2, SR), SR)
    with pytest.raises(DataError, match=re.escape(f"class name {bad!r} is empty or holds a line break")):
        load_dataset(data_config(root=str(tmp_path)), require=())


def test_splits_csv_errors(tmp_path):
    write_wav(tmp_path / "dog" / "a.wav", tone(440, 0.2, SR), SR)
    write_wav(tmp_path / "dog" / "b.wav", tone(440, 0.2, SR), SR)
    (tmp_path / "splits.csv").write_text("filename,split\ndog/a.wav,train\n")
    with pytest.raises(DataError, match=r"splits.csv: 1 audio file\(s\) have no split, e.g. dog/b.wav"):
        load_dataset(data_config(root=str(tmp_path)))
    (tmp_path / "splits.csv").write_text("filename,split\ndog/a.wav,train\ndog/b.wav,valid\n")
    with pytest.raises(DataError, match="unknown split name"):
        load_dataset(data_config(root=str(tmp_path)))


def test_flat_folder_speaker_independent_split(tmp_path):
    root = make_fsdd_like(tmp_path)
    config = data_config(root=str(root), label_regex=r"^(\d+)_", speaker_regex=r"^\d+_([a-z]+)_",
                         test_fraction=0.2, devel_fraction=0.2, split_seed=3)
    dataset = load_dataset(config)
    assert dataset.classes == ("0", "1", "2")
    by_split = {s: set(dataset.speakers(s)) for s in ("train", "devel", "test")}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["test"]) and not (by_split["train"] & by_split["devel"])
    assert not (by_split["devel"] & by_split["test"])
    assert load_dataset(config) == dataset  # deterministic
    forced = load_dataset(data_config(root=str(root), label_regex=r"^(\d+)_", speaker_regex=r"^\d+_([a-z]+)_",
                                      test_speakers=["eve"], devel_speakers=["ann", "bob"]))
    assert forced.speakers("test") == ["eve"] and forced.speakers("devel") == ["ann", "bob"]


def make_kws_like(root, speakers=8, noise_clips=12):
    """Speech Commands' layout: <word>/<speaker>_nohash_<n>.wav, and _silence_/<n>.wav with no speaker."""
    for i in range(speakers):
        for word in ("yes", "no"):
            for n in range(1 + i % 3):
                write_wav(root / word / f"{i:08x}_nohash_{n}.wav", tone(300 + 50 * i, 0.2, SR), SR)
    for n in range(noise_clips):
        write_wav(root / "_silence_" / f"{n}.wav", tone(60, 0.2, SR), SR)
    return root


def test_files_without_a_speaker_are_refused_or_split_and_folded_one_by_one(tmp_path):
    from dslite_tiny.data.splits import is_file_speaker
    from dslite_tiny.train.cv import dataset_speakers, speaker_folds

    root = make_kws_like(tmp_path / "kws")
    values = {"root": str(root), "speaker_regex": r"(?P<speaker>[0-9a-f]{8})_nohash_", "test_fraction": 0.25,
              "devel_fraction": 0.2}
    with pytest.raises(DataError, match=r"finds no speaker in 12 of 42 file names, e\.g\. \d+\.wav "
                                        r"\(--speakerless by-file splits such files one by one\)"):
        load_dataset(data_config(**values))
    dataset = load_dataset(data_config(**values, speakerless="by_file"))
    assert load_dataset(data_config(**values, speakerless="by_file")) == dataset  # deterministic
    assert "12 files without a speaker one by one" in dataset.split_method
    noise = [c for c in dataset.clips if c.label == "_silence_"]
    assert all(is_file_speaker(c.speaker) for c in noise) and len({c.speaker for c in noise}) == 12
    assert {c.split for c in noise} == {"train", "devel", "test"}  # dealt like speakers, not kept together
    for split in ("train", "devel", "test"):  # a real speaker's clips stay in one split
        others = {c.speaker for c in dataset.clips if c.split != split}
        assert not others & {s for s in dataset.speakers(split) if not is_file_speaker(s)}
    plan = speaker_folds(dataset_speakers(dataset), folds=4)
    assert sorted(s for fold in plan for s in fold.test) == dataset_speakers(dataset)  # each once
    assert all(sum(map(is_file_speaker, fold.test)) == 3 for fold in plan)  # the noise clips spread evenly
    assert plan == speaker_folds(dataset_speakers(load_dataset(data_config(**values, speakerless="by_file"))),
                                 folds=4)


def test_unreadable_files_do_not_count_in_the_split_fractions(tmp_path, caplog):
    caplog.set_level("INFO")
    root = make_fsdd_like(tmp_path)
    config = data_config(root=str(root), label_regex=r"^(\d+)_", speaker_regex=r"^\d+_([a-z]+)_",
                         test_fraction=0.2, devel_fraction=0.2, split_seed=3)
    clean = load_dataset(config)
    for k in range(4):  # 4 corrupt files of one speaker moved whole speakers between splits
        (root / f"1_ann_{9 + k}.wav").write_bytes(b"garbage")
    damaged = load_dataset(config)
    assert all(damaged.speakers(s) == clean.speakers(s) for s in ("train", "devel", "test"))
    assert len(damaged.clips) == len(clean.clips) + 4  # still listed, so the feature step reports them
    assert "4 unreadable file(s) left out of the split fractions" in caplog.text
    strict = data_config(root=str(root), label_regex=r"^(\d+)_", speaker_regex=r"^\d+_([a-z]+)_", strict=True)
    with pytest.raises(AudioError, match="1_ann_1[0-2].wav: not an audio file|1_ann_9.wav: not an audio file"):
        load_dataset(strict)
    stratified = data_config(root=str(root), label_regex=r"^(\d+)_", test_fraction=0.2, devel_fraction=0.2)
    counts = load_dataset(stratified).counts()
    assert list(counts.loc["1", ["train", "devel", "test"]]) == [12 + 4, 4, 4]  # 20 readable: 12, 4, 4


def test_stratified_split_without_speakers(tmp_path):
    root = make_fsdd_like(tmp_path, takes=5)
    dataset = load_dataset(data_config(root=str(root), label_regex=r"^(?P<label>\d+)_"))
    counts = dataset.counts()
    assert list(counts.loc["0", ["train", "devel", "test"]]) == [15, 5, 5]
    assert "not speaker-independent" in dataset.split_method


@pytest.mark.parametrize("values,message", [
    ({"label_regex": r"^(x)_"}, "finds no label in 60 of 60 file names"),
    ({"label_regex": r"^(\d+)_", "speaker_regex": r"^(zzz)"}, "finds no speaker"),
    ({"label_regex": r"^(\d+)_", "speaker_regex": r"^\d+_([a-z]+)_", "test_speakers": ["zed"]},
     "no files of speaker"),
    ({"label_regex": "("}, "not a valid regular expression"),
    ({"label_regex": r"^(\d+)_", "test_fraction": 0.0}, "split 'test' is empty"),
])
def test_dataset_errors(tmp_path, values, message):
    root = make_fsdd_like(tmp_path)
    with pytest.raises(DataError, match=message):
        load_dataset(data_config(root=str(root), **values))


def test_dslite_layout(tmp_path):
    for name in ("train_a.wav", "train_b.wav", "devel_a.wav", "test_b.wav", "other.wav"):
        write_wav(tmp_path / "audio" / name, tone(440, 0.3, SR), SR)
    (tmp_path / "label.csv").write_text("filename,label,duration_frames\ntrain_a.wav,dog,2400\ntrain_b.wav,seagull,2400\n"
                                        "devel_a.wav,dog,2400\ntest_b.wav,seagull,2400\nother.wav,dog,2400\n")
    (tmp_path / "class_config.json").write_text(json.dumps({"seagull": "Seagull", "dog": "Dog"}))
    config = data_config(root=str(tmp_path / "audio"), labels_csv=str(tmp_path / "label.csv"),
                         class_config=str(tmp_path / "class_config.json"))
    with pytest.warns(UserWarning, match="1 row"):
        dataset = load_dataset(config)
    assert dataset.classes == ("seagull", "dog")  # class_config key order is the class index
    assert [c.split for c in dataset.clips] == ["train", "train", "devel", "test"]
    (tmp_path / "class_config.json").write_text(json.dumps({"seagull": "Seagull"}))
    with pytest.raises(DataError, match=r"label\(s\) dog missing from"):
        load_dataset(config)
    (tmp_path / "label.csv").write_text("file,class\ntrain_a.wav,dog\n")
    with pytest.raises(DataError, match="wrong columns: expected filename,label, found file,class"):
        load_dataset(config)


def test_hp_config_grid_index_and_mapping(tmp_path):
    path = tmp_path / "hp_config.json"
    path.write_text(json.dumps({"basemodel_name": ["densenet121", "mobilenet"], "sample_rate": [16000],
                                "chunk_size": [4.0, 2.0], "num_mel_bins": [128], "resize_method": ["nearest"],
                                "stft_window_size": [0.128], "mel_scale": [True]}))
    assert read_hp_config(path, index=0)["basemodel_name"] == "densenet121"
    third = read_hp_config(path, index=3)  # product order: basemodel major, chunk_size minor
    assert (third["basemodel_name"], third["chunk_size"]) == ("mobilenet", 2.0)
    frontend = hp_config_to_frontend(third, source=str(path))
    assert frontend == {"sr": 16000, "chunk_s": 2.0, "window_s": 0.128, "n_mels": 128, "resize": "nearest",
                        "normalization": "tf"}
    with pytest.raises(ConfigError, match=r"--config-index 4 is out of range; this grid has 4"):
        read_hp_config(path, index=4)
    with pytest.raises(ConfigError, match="num_mfccs=13 is not supported"):
        hp_config_to_frontend({"num_mfccs": 13}, source="x")


def test_bad_files_are_counted_and_skipped_unless_strict(tmp_path):
    root = make_fsdd_like(tmp_path, speakers=("ann", "bob", "cid"), digits=2, takes=2)
    (root / "1_bob_9.wav").write_bytes(b"not audio")
    write_wav(root / "0_cid_9.wav", tone(300, 0.01, SR), SR)  # shorter than a chunk: padded
    dataset = load_dataset(data_config(root=str(root), label_regex=r"^(\d+)_", speaker_regex=r"^\d+_([a-z]+)_"))
    table = compute_features(dataset, small_frontend())
    assert table.report.files == 14 and len(table.report.skipped) == 1
    assert table.report.padded == 14 - 1 and table.mel_db.shape == (13, 61, 64)
    assert "1_bob_9.wav" in table.report.skipped[0][0] and "not an audio file" in table.report.skipped[0][1]
    assert set(table.labels) == {0, 1} and table.clip_index.max() < 14
    with pytest.raises(AudioError, match="1_bob_9.wav: not an audio file"):
        compute_features(dataset, small_frontend(), strict=True)


def test_cache_reuses_entries_by_content(tmp_path, monkeypatch):
    path = write_wav(tmp_path / "a.wav", tone(440, 2.2, SR), SR)
    frontend = small_frontend()
    cache = FeatureCache(tmp_path / "cache")
    first = cache.clip_features(path, frontend)
    calls = []
    monkeypatch.setattr(cache_module, "compute_clip_features", lambda *a: calls.append(a))
    second = cache.clip_features(path, frontend)
    assert not calls and np.array_equal(first.mel_db, second.mel_db) and first.mel_db.shape == (3, 61, 64)
    renamed = path.rename(tmp_path / "b.wav")
    assert np.array_equal(cache.clip_features(renamed, frontend).mel_db, first.mel_db) and not calls
    monkeypatch.undo()
    write_wav(renamed, tone(880, 2.2, SR), SR)  # new content: new entry
    assert not np.array_equal(cache.clip_features(renamed, frontend).mel_db, first.mel_db)
    other = Frontend(load_config(FrontendConfig, "mcu-64", ("t", {"sr": SR, "fmax": 4000.0, "n_mels": 32}),
                                 stage="frontend"))
    assert other.spectrogram_key != frontend.spectrogram_key
    image_only = Frontend(load_config(FrontendConfig, "mcu-64", ("t", {"sr": SR, "fmax": 4000.0, "image_width": 32}),
                                      stage="frontend"))
    assert image_only.spectrogram_key == frontend.spectrogram_key  # image settings reuse the cache


@pytest.mark.parametrize("damage", ["truncated", "nan", "shape", "flags"])
def test_a_damaged_cache_entry_is_recomputed_not_used(damage, tmp_path, caplog):
    path = write_wav(tmp_path / "a.wav", tone(440, 2.2, SR), SR)
    frontend = small_frontend()
    cache = FeatureCache(tmp_path / "cache")
    good = cache.clip_features(path, frontend)
    entry = next((tmp_path / "cache").rglob("*.npz"))
    if damage == "truncated":
        entry.write_bytes(entry.read_bytes()[:200])
    else:
        bad = {"nan": np.where(np.arange(good.mel_db.size).reshape(good.mel_db.shape) == 7, np.nan, good.mel_db),
               "shape": good.mel_db[:, :, :10], "flags": good.mel_db}[damage].astype(np.float32)
        flags = np.array([True, False]) if damage == "flags" else np.array(False)
        with entry.open("wb") as out:
            np.savez(out, mel_db=bad, padded=flags, dropped=np.array(False))
    again = cache.clip_features(path, frontend)
    assert np.array_equal(again.mel_db, good.mel_db)
    assert "damaged feature-cache entry" in caplog.text and "recomputing" in caplog.text
    assert np.array_equal(cache.clip_features(path, frontend).mel_db, good.mel_db)  # and replaced


def test_synthetic_dataset_is_deterministic_and_speaker_split(tmp_path):
    first = make_demo_dataset(tmp_path / "a", clips_per_class=6, n_speakers=3, sr=SR, seed=7)
    second = make_demo_dataset(tmp_path / "b", clips_per_class=6, n_speakers=3, sr=SR, seed=7)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.wav"))
    assert len(files) == 30
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    dataset = load_dataset(load_config(DataConfig, first, stage="data"))
    assert dataset.classes == CLASSES
    assert all(len(dataset.speakers(s)) == 1 for s in ("devel", "test"))
    assert second.is_file()


@pytest.mark.parametrize("balance", ["oversample", "none"])
@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_batches_per_epoch_counts_what_an_epoch_yields(balance, batch_size):
    labels = np.array([0] * 13 + [2] * 5 + [3] * 40)  # class 1 empty
    batches = epoch_batches(labels, 4, batch_size=batch_size, balance=balance, rng=np.random.default_rng(1))
    assert batches_per_epoch(labels, 4, batch_size=batch_size, balance=balance) == len(batches)

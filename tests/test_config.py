"""Configuration layering and validation: every mistake is named with the file that made it."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from dslite_tiny.config import (CompressConfig, DataConfig, FrontendConfig, TrainConfig, list_presets, load_config,
                                parse_overrides, presets_dir, to_dict, to_yaml)
from dslite_tiny.errors import ConfigError


def write(tmp_path, text: str, name: str = "c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_presets_list_every_key_explicitly():
    keys = {f.name for f in dataclasses.fields(FrontendConfig)}
    for name in list_presets("frontend"):
        data = yaml.safe_load((presets_dir() / "frontend" / f"{name}.yaml").read_text())
        assert set(data) == keys, name


def test_kws_40x98_is_kws_40x49_at_a_10_ms_hop():
    """kws_gsc.py trains its row of this input as kws-40x49 with these two overrides: they must stay the same."""
    finer = load_config(FrontendConfig, "kws-40x49", ("--set", {"hop_s": 0.01, "image_width": 98}), stage="frontend")
    assert load_config(FrontendConfig, "kws-40x98", stage="frontend") == finer


def test_layers_apply_in_order(tmp_path):
    user = write(tmp_path, "preset: dslite-paper\nn_mels: 64\n")
    config = load_config(FrontendConfig, user, ("--set", {"color_map": "magma"}), stage="frontend")
    assert (config.window_s, config.n_mels, config.color_map) == (0.032, 64, "magma")
    assert config.n_fft == 512 and config.hop_length == 256


@pytest.mark.parametrize("text,message", [
    ("n_melz: 64\n", r"c.yaml: unknown key 'n_melz'; valid keys: sr, "),
    ("n_mels: sixty\n", r"c.yaml: n_mels expects an integer, got 'sixty'"),
    ("n_mels: 64.5\n", r"n_mels expects an integer"),
    ("n_mels: 0\n", r"n_mels=0 is out of range; allowed: >= 1 and <= 512"),
    ("chunk_s: 0\n", r"chunk_s=0.0 is out of range; allowed: > 0.0"),
    ("color_map: jet\n", r"color_map='jet' is not allowed; choose one of: viridis, cividis"),
    ("normalize_audio: 'yes'\n", r"normalize_audio expects true or false"),
    ("fmax: 9000\n", r"c.yaml: fmax=9000.0 must be at most sr/2=8000.0"),
    ("fft_s: 0.064\n", r"fft_s=0.064 must be at least window_s=0.128"),
    ("channels: 1\n", r"channels=1 needs color_map=gray"),
    ("- a\n- b\n", r"expected a mapping"),
    ("n_mels: [\n", r"not valid YAML at line"),
    ("hop_s: .nan\n", r"c.yaml: hop_s=nan is not a finite number"),
    ("top_db: .nan\n", r"top_db=nan is not a finite number"),
    ("fmin: -.inf\n", r"fmin=-inf is not a finite number"),
])
def test_invalid_values_name_the_file(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(FrontendConfig, write(tmp_path, text), stage="frontend")


def test_a_replaced_key_says_what_replaced_it(tmp_path):
    with pytest.raises(ConfigError, match=r"c.yaml: 'structured' was replaced by sparsity_pattern: blocks, "):
        load_config(CompressConfig, write(tmp_path, "structured: true\n"), stage="compress")


def test_cross_field_error_blames_the_layer_that_set_the_key():
    with pytest.raises(ConfigError, match=r"^--set: fmax=12000.0 must be at most"):
        load_config(FrontendConfig, "dslite-code", ("--set", {"fmax": 12000}), stage="frontend")


def test_the_wide_dscnn_preset_is_the_measured_recipe():
    """mcu-dscnn-wide's figures (train_fsdd.md, dscnn-40x49-aug-wide-long) hold only while it differs from
    mcu-dscnn in width and epochs alone."""
    base = to_dict(load_config(TrainConfig, "mcu-dscnn", stage="train"))
    wide = to_dict(load_config(TrainConfig, "mcu-dscnn-wide", stage="train"))
    assert {key: wide[key] for key in base if wide[key] != base[key]} == {"alpha": 2.0, "epochs": 60}


def test_unknown_preset_and_loops(tmp_path):
    with pytest.raises(ConfigError, match="unknown frontend preset 'nope'; presets: dslite-code"):
        load_config(FrontendConfig, "nope", stage="frontend")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(FrontendConfig, write(tmp_path, "preset: c.yaml\n"), stage="frontend")


def test_overrides_are_typed():
    assert parse_overrides(["n_mels=64", "color_map=gray", "fmin=20.5", "strict=true"]) == {
        "n_mels": 64, "color_map": "gray", "fmin": 20.5, "strict": True}
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE"):
        parse_overrides(["n_mels"])


def test_yaml_dump_round_trips_and_shows_help(tmp_path):
    config = load_config(FrontendConfig, "dslite-paper", stage="frontend")
    text = to_yaml(config)
    assert "# STFT window length (s), periodic Hann" in text
    assert load_config(FrontendConfig, write(tmp_path, text), stage="frontend") == config
    assert to_dict(config)["n_mels"] == 128


def test_paths_in_a_yaml_are_relative_to_it(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write(tmp_path / "sub", "root: ../audio\ntest_speakers: [a, b]\n", "data.yaml")
    config = load_config(DataConfig, path, stage="data")
    assert config.root == str((tmp_path / "audio").resolve()) and config.test_speakers == ["a", "b"]
    path = write(tmp_path / "sub", "preset: mcu\nslim_transfer_audio: ../speech\n", "compress.yaml")
    compress = load_config(CompressConfig, path, stage="compress")
    assert compress.slim_transfer_audio == str((tmp_path / "speech").resolve())
    with pytest.raises(ConfigError, match="leaves no train data"):
        load_config(DataConfig, ("x", {"devel_fraction": 0.5, "test_fraction": 0.5}), stage="data")


def test_a_training_config_can_override_keys_of_its_frontend(tmp_path):
    from dslite_tiny.config import TrainConfig
    from dslite_tiny.train.run import resolve_frontend_for

    assert parse_overrides(["frontend.n_mels=40", "frontend.top_db=60", "epochs=3"]) == {
        "frontend_set": {"n_mels": 40, "top_db": 60}, "epochs": 3}
    with pytest.raises(ConfigError, match="KEY=VALUE or frontend.KEY=VALUE, got 'model.units=3'"):
        parse_overrides(["model.units=3"])
    user = write(tmp_path, "preset: mcu-dscnn\nfrontend_set: {n_mels: 40, trim_db: 30}\n")
    config = load_config(TrainConfig, user, ("--set", parse_overrides(["frontend.trim_db=45"])), stage="train")
    assert config.frontend_set == {"n_mels": 40, "trim_db": 45}  # layers merge key by key
    frontend = resolve_frontend_for(config)
    assert (frontend.n_mels, frontend.trim_db, frontend.color_map) == (40, 45.0, "gray")
    bad = load_config(TrainConfig, "mcu-dscnn", ("--set", {"frontend_set": {"n_melz": 3}}), stage="train")
    with pytest.raises(ConfigError, match="frontend_set: unknown key 'n_melz'; valid keys: sr,"):
        resolve_frontend_for(bad)
    with pytest.raises(ConfigError, match="frontend_set expects a mapping"):
        load_config(TrainConfig, ("--set", {"frontend_set": [1]}), stage="train")


def test_finetune_layers_is_a_share_up_to_one_and_a_whole_count_above():
    from dslite_tiny.config import TrainConfig

    assert load_config(TrainConfig, ("t", {"finetune_layers": 1}), stage="train").finetune_layers == 1.0
    assert load_config(TrainConfig, ("t", {"finetune_layers": 12}), stage="train").finetune_layers == 12.0
    with pytest.raises(ConfigError, match="finetune_layers=2.5 is neither a share"):
        load_config(TrainConfig, ("t", {"finetune_layers": 2.5}), stage="train")

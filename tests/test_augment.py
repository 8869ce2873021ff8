"""Spectrogram augmentation: each operation does to the mel dB what its audio counterpart would, and every
draw is reproducible from the seed."""
from __future__ import annotations

import numpy as np
import pytest

from dslite_tiny.audio.frontend import Frontend
from dslite_tiny.config import ConfigError, FrontendConfig, TrainConfig, load_config
from dslite_tiny.train.augment import (MelAugmenter, MelAugmentSettings, apply_gain, quiet_frames,
                                       shift_in_silence, stretch_time)

SR = 8000


def frontend(**overrides) -> Frontend:
    base = {"sr": SR, "fmax": 4000.0, "clip_position": "center", **overrides}
    return Frontend(load_config(FrontendConfig, "mcu-64", ("test", base), stage="frontend"))


def tone_chunk(fe: Frontend, hz: float, seconds: float, *, noise: float = 0.0) -> np.ndarray:
    """The mel dB of one chunk: a tone of ``seconds`` centred in zero padding (plus optional noise)."""
    t = np.arange(int(seconds * SR)) / SR
    y = 0.5 * np.sin(2 * np.pi * hz * t) + noise * np.random.default_rng(0).standard_normal(t.size)
    return fe.spectrogram(fe.chunk(y.astype(np.float32)).data)[0]


def peak_band_hz(fe: Frontend, chunk: np.ndarray) -> float:
    from dslite_tiny.audio.frontend import mel_band_edges

    centres = mel_band_edges(n_mels=fe.config.n_mels, fmin=fe.config.fmin, fmax=fe.config.fmax)[1:-1]
    band = int(np.argmax(chunk.max(axis=0)))
    return float(700.0 * np.expm1(centres[band] / 1127.0))


def loud_frames(chunk: np.ndarray) -> np.ndarray:
    return np.flatnonzero(chunk.max(axis=1) > chunk.max() - 20.0)


SETTINGS = {
    "time_shift": MelAugmentSettings(1.0, time_shift=True),
    "gain": MelAugmentSettings(1.0, gain_db=6.0),
    "noise": MelAugmentSettings(1.0, noise_snr_db=(5.0, 30.0)),
    "speed": MelAugmentSettings(1.0, speed=0.15),
    "pitch": MelAugmentSettings(1.0, pitch_semitones=2.0),
    "all": MelAugmentSettings(0.5, True, 6.0, (5.0, 30.0), 0.15, 2.0),
}


@pytest.mark.parametrize("name", SETTINGS)
def test_each_augmentation_is_reproducible_by_seed_and_varies_between_draws(name):
    fe = frontend()
    batch = np.stack([tone_chunk(fe, hz, 0.3) for hz in (300, 700, 1200, 2000)])
    runs = []
    for seed in (0, 0, 1):
        augmenter = MelAugmenter(SETTINGS[name], fe.config, batch, rng=np.random.default_rng([seed, 1]))
        runs.append(augmenter(batch, np.random.default_rng(seed)))
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    assert runs[0].shape == batch.shape and runs[0].dtype == np.float32 and np.isfinite(runs[0]).all()
    assert not np.array_equal(runs[0], batch)


def test_time_shift_moves_a_padded_clip_without_losing_any_of_it():
    fe = frontend()
    chunk = tone_chunk(fe, 500, 0.3)
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(400):
        moved = shift_in_silence(chunk, rng)
        start = int(np.argmax(~(moved == moved.min()).all(axis=1)))
        sound = ~(chunk == chunk.min()).all(axis=1)
        first, count = int(np.argmax(sound)), int(sound.sum())
        assert np.array_equal(moved[start:start + count], chunk[first:first + count])  # all of it, in order
        starts.add(start)
    assert starts == set(range(fe.config.n_frames - count + 1))  # every placement, and only those
    full = tone_chunk(fe, 500, 1.0, noise=0.01)  # no silent edge: nothing to move into
    assert np.array_equal(shift_in_silence(full, rng), full)


def test_pitch_shift_of_an_octave_doubles_a_tones_frequency():
    fe = frontend()
    augmenter = MelAugmenter(MelAugmentSettings(1.0, pitch_semitones=12.0), fe.config, np.zeros((0, 61, 64)),
                             rng=np.random.default_rng(0))
    chunk = tone_chunk(fe, 600, 0.3)
    assert peak_band_hz(fe, augmenter.warp_frequency(chunk, 2.0)) == pytest.approx(1200, rel=0.06)
    assert peak_band_hz(fe, augmenter.warp_frequency(chunk, 0.5)) == pytest.approx(300, rel=0.1)
    assert np.array_equal(loud_frames(augmenter.warp_frequency(chunk, 2.0)), loud_frames(chunk))  # same timing


def test_speed_perturbation_shortens_the_sound_and_raises_its_pitch_together():
    fe = frontend()
    augmenter = MelAugmenter(MelAugmentSettings(1.0, speed=0.3), fe.config, np.zeros((0, 61, 64)),
                             rng=np.random.default_rng(0))
    chunk = tone_chunk(fe, 800, 0.4)
    faster = augmenter.warp_frequency(stretch_time(chunk, 1.25), 1.25)
    assert len(loud_frames(faster)) == pytest.approx(len(loud_frames(chunk)) / 1.25, abs=1.5)
    assert peak_band_hz(fe, faster) == pytest.approx(1000, rel=0.06)


def test_noise_is_added_at_the_drawn_signal_to_noise_ratio():
    fe = frontend(top_db=None)
    chunk = tone_chunk(fe, 1000, 1.0, noise=1e-3)
    augmenter = MelAugmenter(MelAugmentSettings(1.0, noise_snr_db=(10.0, 10.0)), fe.config, chunk[None],
                             rng=np.random.default_rng(0))
    for seed in range(3):
        noisy = augmenter.add_noise(chunk, 10.0, np.random.default_rng(seed))
        signal = np.power(10.0, chunk.astype(np.float64) / 10).mean()
        added = (np.power(10.0, noisy.astype(np.float64) / 10) - np.power(10.0, chunk.astype(np.float64) / 10)).mean()
        assert 10 * np.log10(signal / added) == pytest.approx(10.0, abs=1.0)


def test_noise_bank_holds_white_pink_and_the_recordings_own_background():
    fe = frontend(top_db=None)
    background = tone_chunk(fe, 1000, 1.0, noise=1e-3)  # a tone over a noise floor 50 dB down
    background[:20] = background[:20].min() + 5.0  # quiet, not the floor
    quiet = quiet_frames(background[None])
    assert len(quiet) == 20
    augmenter = MelAugmenter(MelAugmentSettings(1.0, noise_snr_db=(0.0, 0.0)), fe.config, background[None],
                             rng=np.random.default_rng(0))
    white, pink, own = augmenter.noise
    assert len(own) == 20 and all(np.mean(source) == pytest.approx(1.0) for source in augmenter.noise)
    low, high = slice(2, 10), slice(50, 60)  # pink falls with frequency per band width; white rises with it
    assert white[:, high].mean() / white[:, low].mean() > pink[:, high].mean() / pink[:, low].mean() * 4


def test_gain_shifts_every_level_but_silence_and_leaves_a_top_db_plot_unchanged():
    floored = frontend(top_db=50.0)
    chunk = tone_chunk(floored, 700, 0.3)
    louder = apply_gain(chunk, 6.0)
    np.testing.assert_allclose(louder - chunk, 6.0, atol=1e-4)
    np.testing.assert_allclose(floored.plot(louder[None]), floored.plot(chunk[None]), atol=1e-2)
    unfloored = frontend(top_db=None)
    padded = tone_chunk(unfloored, 700, 0.3)
    silence = padded == padded.min()
    assert np.array_equal(apply_gain(padded, 6.0)[silence], padded[silence])
    assert not np.allclose(unfloored.plot(apply_gain(padded, 6.0)[None]), unfloored.plot(padded[None]), atol=1)


def test_augmentation_settings_come_from_the_training_config():
    config = load_config(TrainConfig, "mcu-dscnn", ("test", {"noise_snr_db": [5, 20], "pitch_shift": 1.0}),
                         stage="train")
    settings = MelAugmentSettings.from_config(config)
    assert settings.noise_snr_db == (5.0, 20.0) and settings.pitch_semitones == 1.0 and settings.enabled
    assert not MelAugmentSettings(0.0, time_shift=True).enabled
    for bad in ([5.0], [30.0, 5.0]):
        with pytest.raises(ConfigError, match="noise_snr_db"):
            load_config(TrainConfig, "mcu-dscnn", ("test", {"noise_snr_db": bad}), stage="train")

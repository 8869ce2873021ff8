"""A deterministic synthetic dataset for the demo and the tests (nothing is downloaded).

Five classes of sounds that differ in ways a spectrogram CNN must learn, not in one trivial statistic:
harmonic stacks with vibrato, up-chirps, down-chirps (same energy, opposite slope: orientation matters),
band-passed noise bursts and amplitude-modulated tones. Pitch, level, SNR, duration and onset are random;
each generator "speaker" has its own pitch range, spectral tilt and background noise colour, so a
speaker-independent split is a real generalisation test.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

CLASSES = ("am_tone", "chirp_down", "chirp_up", "harmonic", "noise_burst")
SPEAKER_REGEX = r"^[a-z_]+?_(?P<speaker>spk\d+)_\d+\.wav$"
DATASET_SPEC = "dataset.yaml"


def make_demo_dataset(root: str | Path, *, clips_per_class: int = 40, n_speakers: int = 5, sr: int = 16000,
                      seed: int = 0) -> Path:
    """Write ``root/<class>/<class>_spk<k>_<take>.wav`` and a ``dataset.yaml`` data spec; returns the spec."""
    import soundfile as sf

    root = Path(root)
    rng = np.random.default_rng(seed)
    speakers = [_speaker(rng) for _ in range(n_speakers)]
    for label in CLASSES:
        (root / label).mkdir(parents=True, exist_ok=True)
        for take in range(clips_per_class):
            speaker_id = take % n_speakers
            audio = synthesize(label, rng, sr=sr, speaker=speakers[speaker_id])
            sf.write(root / label / f"{label}_spk{speaker_id}_{take}.wav", audio, sr, subtype="PCM_16")
    spec = root / DATASET_SPEC
    spec.write_text(f"# synthetic demo data (dslite-tiny data synth, seed {seed})\n"
                    f"root: .\nlayout: folder\nspeaker_regex: '{SPEAKER_REGEX}'\n"
                    f"devel_fraction: 0.2\ntest_fraction: 0.2\nsplit_seed: 0\n", encoding="utf-8")
    return spec


def synthesize(label: str, rng: np.random.Generator, *, sr: int, speaker: dict[str, float]) -> np.ndarray:
    """One clip of ``label``: the sound at a random onset, level and SNR in speaker-coloured noise."""
    duration = rng.uniform(0.6, 1.4)
    n = int(duration * sr)
    t = np.arange(n) / sr
    sound = _GENERATORS[label](t, rng, sr, speaker["pitch"])
    sound = _tilt(sound, speaker["tilt"])
    envelope = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)  # 20 ms fades: no clicks
    sound = sound * envelope / (np.abs(sound).max() + 1e-12)
    level = 10 ** (rng.uniform(-24, -6) / 20)
    snr_db = rng.uniform(8, 30)
    noise = _coloured_noise(n, rng, speaker["noise_slope"])
    noise *= level * 10 ** (-snr_db / 20) / (np.sqrt(np.mean(noise ** 2)) + 1e-12)
    return np.clip(level * sound + noise, -1.0, 1.0).astype(np.float32)


def _speaker(rng: np.random.Generator) -> dict[str, float]:
    return {"pitch": rng.uniform(0.75, 1.35), "tilt": rng.uniform(0.0, 0.6), "noise_slope": rng.uniform(0.0, 1.0)}


def _harmonic(t: np.ndarray, rng: np.random.Generator, sr: int, pitch: float) -> np.ndarray:
    f0 = rng.uniform(110, 330) * pitch
    vibrato = 1 + rng.uniform(0.01, 0.04) * np.sin(2 * np.pi * rng.uniform(4, 7) * t)
    phase = 2 * np.pi * np.cumsum(f0 * vibrato) / sr
    harmonics = range(1, int(rng.integers(3, 8)) + 1)
    return sum(np.sin(k * phase) / k ** rng.uniform(0.5, 1.5) for k in harmonics if k * f0 < 0.45 * sr)


def _chirp(direction: int) -> Callable[..., np.ndarray]:
    def generate(t: np.ndarray, rng: np.random.Generator, sr: int, pitch: float) -> np.ndarray:
        low, ratio = rng.uniform(250, 900) * pitch, rng.uniform(1.8, 3.5)
        start, end = (low, low * ratio) if direction > 0 else (low * ratio, low)
        freq = start * (end / start) ** (t / t[-1])  # exponential sweep
        phase = 2 * np.pi * np.cumsum(freq) / sr
        return np.sin(phase) + rng.uniform(0.0, 0.4) * np.sin(2 * phase)
    return generate


def _noise_burst(t: np.ndarray, rng: np.random.Generator, sr: int, pitch: float) -> np.ndarray:
    centre = rng.uniform(600, 3500) * pitch
    noise = _bandpass(rng.standard_normal(t.size), sr, centre, centre * rng.uniform(0.3, 0.8))
    gate = np.zeros(t.size)
    for _ in range(int(rng.integers(2, 5))):
        start, length = rng.uniform(0, t[-1] * 0.8), rng.uniform(0.05, 0.2)
        gate += np.exp(-0.5 * ((t - start - length / 2) / (length / 3)) ** 2)
    return noise * np.minimum(gate, 1.0)


def _am_tone(t: np.ndarray, rng: np.random.Generator, sr: int, pitch: float) -> np.ndarray:
    carrier = rng.uniform(300, 2500) * pitch
    modulation = 1 + rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * rng.uniform(5, 30) * t)
    return modulation * np.sin(2 * np.pi * carrier * t)


_GENERATORS: dict[str, Callable[..., np.ndarray]] = {
    "am_tone": _am_tone, "chirp_down": _chirp(-1), "chirp_up": _chirp(+1), "harmonic": _harmonic,
    "noise_burst": _noise_burst,
}


def _bandpass(x: np.ndarray, sr: int, centre: float, bandwidth: float) -> np.ndarray:
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1 / sr)
    spectrum *= np.exp(-0.5 * ((freqs - centre) / (bandwidth / 2)) ** 2)
    return np.fft.irfft(spectrum, n=x.size)


def _tilt(x: np.ndarray, amount: float) -> np.ndarray:
    """A speaker's timbre: a one-pole low-pass mixed in (0 = flat, 0.6 = dull)."""
    from scipy.signal import lfilter

    return (1 - amount) * x + amount * lfilter([0.3], [1.0, -0.7], x)


def _coloured_noise(n: int, rng: np.random.Generator, slope: float) -> np.ndarray:
    """White (slope 0) to pink-ish (slope 1) noise."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    return np.fft.irfft(spectrum / freqs ** (slope / 2), n=n)

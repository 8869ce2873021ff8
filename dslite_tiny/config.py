"""Stage configurations as validated dataclasses, layered: defaults → preset YAML → user YAML → CLI.

A YAML file holds the keys of one stage; it may start from another with ``preset: NAME`` (a file under
``configs/<stage>/`` or a path). Unknown keys, wrong types and out-of-range values are rejected with the
file (or ``--set``) that supplied them, so a user knows which line to fix. Every artifact saves the
resolved config (``to_dict``) next to it.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from dslite_tiny.errors import ConfigError

COLOR_MAPS = ("viridis", "cividis", "inferno", "magma", "plasma", "gray")
NORMALIZATIONS = ("torch", "tf", "caffe", "none")
DATA_LAYOUTS = ("auto", "folder", "flat", "dslite")
VARIANTS = ("float32", "float16", "dynamic", "int8", "int16x8", "pruned-int8", "qat-int8", "pqat-int8",
            "slim-int8", "clustered-int8")

C = TypeVar("C")


def unknown_variant(names: Sequence[str]) -> str | None:
    """The first of ``names`` that is no variant, as the error text naming the choices; None if all are."""
    unknown = [name for name in names if name not in VARIANTS]
    return f"unknown variant '{unknown[0]}'; variants: {', '.join(VARIANTS)}" if unknown else None


def param(default: Any, help: str, *, low: float | None = None, high: float | None = None,
          low_open: bool = False, high_open: bool = False) -> Any:
    """A dataclass field with its help text and inclusive range (``low_open``/``high_open`` exclude the end)."""
    meta = {"help": help, "low": low, "high": high, "low_open": low_open, "high_open": high_open}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class FrontendConfig:
    """DeepSpectrumLite preprocessing: audio → chunks → mel spectrogram (dB) → colour image → model input.

    Times are in seconds as in DeepSpectrumLite's hp_config; sample counts are ``round(seconds * sr)``.
    """

    sr: int = param(16000, "sample rate (Hz) every file is resampled to", low=1000, high=192000)
    normalize_audio: bool = param(False, "peak-normalise each chunk: x * 0.7079 / max|x| (DSLite)")
    chunk_s: float = param(4.0, "chunk length (s)", low=0.0, low_open=True, high=600.0)
    chunk_hop_s: float = param(2.0, "hop between chunks (s)", low=0.0, low_open=True, high=600.0)
    short_clips: Literal["pad", "drop"] = param(
        "pad", "a clip shorter than one chunk: pad it to one chunk, or drop it (DSLite drops silently)")
    pad_mode: Literal["zeros", "repeat"] = param(
        "zeros", "how a short clip is padded: trailing zeros, or the clip repeated")
    trim_db: float | None = param(None, "cut leading and trailing audio quieter than the clip's loudest STFT "
                                  "frame − trim_db (dB RMS) before chunking; null = keep it (DSLite)",
                                  low=0.0, low_open=True, high=200.0)
    clip_position: Literal["start", "center"] = param(
        "start", "where a zero-padded short clip sits in its chunk: at the start (DSLite) or centred "
        "(training can move it: time_shift)")
    window_s: float = param(0.128, "STFT window length (s), periodic Hann", low=0.0, low_open=True, high=1.0)
    hop_s: float = param(0.064, "STFT hop (s)", low=0.0, low_open=True, high=1.0)
    fft_s: float = param(0.128, "FFT length (s); at least the window", low=0.0, low_open=True, high=1.0)
    n_mels: int = param(128, "number of HTK mel bands", low=1, high=512)
    top_db: float | None = param(None, "floor at (chunk max − top_db) dB before min-max; null = none (DSLite). "
                                 "Keeps zero padding (−160 dB) from squeezing the plot's contrast",
                                 low=0.0, low_open=True, high=400.0)
    n_mfcc: int | None = param(None, "MFCC: the first n_mfcc DCT-II coefficients of each frame's mel dB (10: MLPerf "
                               "Tiny's keyword spotting) are plotted instead of the mel bands; null = mel bands",
                               low=1, high=512)
    fmin: float = param(0.0, "lowest mel band edge (Hz)", low=0.0)
    fmax: float = param(8000.0, "highest mel band edge (Hz); at most sr / 2", low=0.0, low_open=True)
    color_map: Literal["viridis", "cividis", "inferno", "magma", "plasma", "gray"] = param(
        "viridis", "matplotlib colour map of the spectrogram plot; gray for 1-channel models")
    image_height: int = param(224, "image rows (mel axis, highest frequency on top)", low=8, high=1024)
    image_width: int = param(224, "image columns (time axis)", low=8, high=1024)
    channels: Literal[1, 3] = param(3, "image channels: 3 (colour map) or 1 (gray)")
    resize: Literal["bilinear", "nearest"] = param("bilinear", "resize method (tf.image.resize semantics)")
    antialias: bool = param(False, "anti-alias when shrinking (tf.image.resize antialias)")
    normalization: Literal["torch", "tf", "caffe", "none"] = param(
        "tf", "backbone input normalisation: torch (DenseNet), tf (MobileNet), caffe (VGG/ResNet), none")

    def __post_init__(self) -> None:
        checks = [
            (self.fft_s >= self.window_s, "fft_s", f"fft_s={self.fft_s} must be at least window_s={self.window_s}"),
            (self.fmax <= self.sr / 2, "fmax", f"fmax={self.fmax} must be at most sr/2={self.sr / 2}"),
            (self.fmin < self.fmax, "fmin", f"fmin={self.fmin} must be below fmax={self.fmax}"),
            (self.n_mfcc is None or self.n_mfcc <= self.n_mels, "n_mfcc",
             f"n_mfcc={self.n_mfcc} must be at most n_mels={self.n_mels}"),
            (self.chunk_s >= self.window_s, "chunk_s",
             f"chunk_s={self.chunk_s} must hold at least one STFT window ({self.window_s} s)"),
            (self.channels == 3 or self.color_map == "gray", "color_map",
             f"channels=1 needs color_map=gray, not {self.color_map}"),
            (self.channels == 3 or self.normalization in ("tf", "none"), "normalization",
             f"normalization={self.normalization} needs 3 channels (per-channel ImageNet statistics)"),
        ]
        for ok, key, message in checks:
            if not ok:
                raise ConfigError(message, key=key)

    @property
    def chunk_length(self) -> int:
        """Samples per chunk."""
        return samples(self.chunk_s, self.sr)

    @property
    def chunk_hop_length(self) -> int:
        return samples(self.chunk_hop_s, self.sr)

    @property
    def win_length(self) -> int:
        return samples(self.window_s, self.sr)

    @property
    def hop_length(self) -> int:
        return samples(self.hop_s, self.sr)

    @property
    def n_fft(self) -> int:
        return samples(self.fft_s, self.sr)

    @property
    def n_frames(self) -> int:
        """STFT frames per chunk (tf.signal.stft, pad_end=False)."""
        return 1 + (self.chunk_length - self.win_length) // self.hop_length

    @property
    def feature_bins(self) -> int:
        """Rows of the plotted feature before resizing: MFCC coefficients, or mel bands."""
        return self.n_mfcc or self.n_mels

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_height, self.image_width, self.channels)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where a dataset is and how its files map to labels, speakers and splits."""

    root: str = param("", "dataset folder (relative paths in a YAML are relative to that YAML)")
    layout: Literal["auto", "folder", "flat", "dslite"] = param(
        "auto", "folder: root/<label>/*.wav; flat: labels from --label-regex; dslite: label CSV + class_config")
    label_regex: str | None = param(None, "regex on the file name; group 'label' (or group 1) is the label")
    speaker_regex: str | None = param(
        None, "regex on the file name; group 'speaker' (or 1) is the speaker: whole speakers go to one split")
    speakerless: Literal["refuse", "by_file"] = param(
        "refuse", "files in which speaker_regex finds no speaker (Speech Commands' _silence_ clips): refuse the "
        "dataset, or give each file a speaker of its own, so it is split and dealt to folds file by file")
    labels_csv: str | None = param(None, "DSLite label CSV (filename,label,duration_frames); prefix gives split")
    class_config: str | None = param(None, "DSLite class_config.json; key order is the class index")
    devel_fraction: float = param(0.2, "share of files (or speakers' files) for devel when no split is given",
                                  low=0.0, high=0.9)
    test_fraction: float = param(0.2, "share for test when no split is given", low=0.0, high=0.9)
    devel_speakers: list[str] = param([], "speakers forced into devel")
    test_speakers: list[str] = param([], "speakers forced into test")
    split_seed: int = param(0, "seed of the deterministic split", low=0)
    strict: bool = param(False, "abort on the first bad file instead of skipping it")

    def __post_init__(self) -> None:
        if self.devel_fraction + self.test_fraction >= 1.0:
            raise ConfigError(
                f"devel_fraction + test_fraction = {self.devel_fraction + self.test_fraction} leaves no train data",
                key="test_fraction")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Transfer learning as DeepSpectrumLite does it. With pretrained weights: phase 1 trains the head on a
    frozen backbone, phase 2 unfreezes the last ``finetune_layers`` backbone layers (BatchNorm stays in
    inference mode) at ``fine_learning_rate``. Without: one phase trains every layer for ``epochs``."""

    frontend: str = param("dslite-paper", "frontend preset name or YAML file (relative to this file)")
    frontend_set: dict[str, Any] = param({}, "frontend keys overriding that preset, e.g. {clip_position: center} "
                                             "(on the command line: --set frontend.clip_position=center)")
    backbone: str = param("densenet121", "densenet121, mobilenet, mobilenet_v2, dscnn or dscnn_mlperf")
    alpha: float = param(1.0, "width multiplier of mobilenet / mobilenet_v2 / dscnn", low=0.0, low_open=True, high=4.0)
    weights: str = param("none", "none, imagenet (Keras download) or a local no-top .h5 file")
    units: int = param(512, "units of the head's dense layer; 0: none, the classifier follows the pooling",
                       low=0, high=8192)
    dropout: float = param(0.25, "dropout after the AReLU", low=0.0, high=0.95)
    arelu: Literal["learnable", "fixed"] = param("learnable", "AReLU α, β learnable, or fixed as DSLite (1.8808 / 0.9)")
    optimizer: Literal["adadelta", "adam"] = param("adadelta", "optimizer (the paper: AdaDelta)")
    learning_rate: float = param(0.001, "learning rate of phase 1", low=0.0, low_open=True, high=10.0)
    fine_learning_rate: float | None = param(None, "learning rate of phase 2 (default: learning_rate / 10)",
                                             low=0.0, low_open=True, high=10.0)
    epochs: int = param(40, "epochs of phase 1", low=1, high=10000)
    fine_epochs: int = param(200, "epochs of phase 2 (pretrained weights only; 0: no fine-tuning)", low=0, high=10000)
    finetune_layers: float = param(0.3, "backbone layers unfrozen in phase 2: a share (≤ 1; 1 = the whole "
                                        "backbone) or a whole number (> 1) of its last layers", low=0.0)
    batch_size: int = param(32, "batch size", low=1, high=4096)
    balance: Literal["oversample", "class_weights", "none"] = param(
        "oversample", "class imbalance: oversample minority classes, weight the loss, or nothing")
    sapaugment: bool = param(True, "SapAugment: the batch's easiest samples get the strongest augmentation")
    sap_a: float = param(0.5, "SapAugment a", low=0.0, low_open=True, high=1.0)
    sap_s: float = param(10.0, "SapAugment s", low=0.0, low_open=True, high=100.0)
    cutmix: bool = param(True, "CutMix: paste a square of another sample, mix labels by area")
    specaugment: bool = param(True, "SpecAugment: one frequency and one time mask")
    aug_prob_min: float = param(0.10, "augmentation probability at λ = 0", low=0.0, high=1.0)
    aug_prob_max: float = param(0.25, "augmentation probability at λ = 1", low=0.0, high=1.0)
    cutmix_max: float = param(0.25, "largest CutMix square, as a share of the image side (56 px at 224)",
                              low=0.0, high=1.0)
    specaugment_max: float = param(0.30, "largest SpecAugment mask, as a share of the side (67 px at 224)",
                                   low=0.0, high=1.0)
    audio_aug_prob: float = param(0.5, "probability of each spectrogram augmentation below, per training chunk",
                                  low=0.0, high=1.0)
    time_shift: bool = param(False, "move a chunk's content by a random number of STFT frames within its silent "
                                    "(floor-level) edges: a padded short clip lands anywhere in its chunk")
    gain_db: float = param(0.0, "random gain of up to ± gain_db (a no-op with top_db: the plot is then "
                                "gain-invariant)", low=0.0, high=60.0)
    noise_snr_db: list[float] = param([], "[low, high]: add white, pink or the training set's own quiet frames at "
                                          "a random SNR in this range (dB); [] = off")
    speed_perturb: float = param(0.0, "random speed change of up to ± this share: time and frequency axes scale "
                                      "together, as resampled audio does", low=0.0, high=0.5)
    pitch_shift: float = param(0.0, "random pitch shift of up to ± this many semitones (frequency axis only)",
                               low=0.0, high=12.0)
    lr_schedule: Literal["constant", "cosine"] = param(
        "constant", "learning rate within each phase: constant, or cosine decay to 1 % after the warm-up")
    warmup_epochs: float = param(0.0, "linear warm-up from a tenth of the rate at the start of each phase, in "
                                      "epochs (a phase that unfreezes pretrained layers starts gently)", low=0.0,
                                 high=1000.0)
    ema_decay: float = param(0.0, "exponential moving average of the weights, evaluated and saved instead of "
                                  "the raw weights (0: off; e.g. 0.99 averages over ~100 steps)", low=0.0, high=1.0,
                             high_open=True)
    teacher: list[str] = param([], "trained models (.h5 with sidecars; same classes and frontend) whose averaged "
                                   "class probabilities, softened, become part of every training target "
                                   "(knowledge distillation); in cv, {fold} in a path is the fold's name")
    teacher_weight: float = param(0.5, "share of each training target that is the teacher's", low=0.0, high=1.0)
    teacher_temperature: float = param(2.0, "temperature that softens the teacher's probabilities (1: as they are)",
                                       low=0.0, low_open=True, high=20.0)
    label_smoothing: float = param(0.0, "share of each one-hot target spread over all classes", low=0.0, high=0.5)
    weight_decay: float = param(0.0, "decoupled weight decay (Adam becomes AdamW)", low=0.0, high=1.0)
    early_stopping: int = param(0, "end a phase after this many epochs without a better devel UAR (0: off)", low=0)
    seed: int = param(0, "seed of initialisation, batch order and augmentation", low=0)
    tensorboard: bool = param(False, "write TensorBoard logs to OUT/tensorboard")

    def __post_init__(self) -> None:
        if self.aug_prob_max < self.aug_prob_min:
            raise ConfigError(f"aug_prob_max={self.aug_prob_max} is below aug_prob_min={self.aug_prob_min}",
                              key="aug_prob_max")
        if self.finetune_layers > 1 and not float(self.finetune_layers).is_integer():
            raise ConfigError(f"finetune_layers={self.finetune_layers} is neither a share (≤ 1) nor a whole number "
                              f"of layers", key="finetune_layers")
        snr = self.noise_snr_db
        if snr and (len(snr) != 2 or snr[0] > snr[1]):
            raise ConfigError(f"noise_snr_db={list(snr)} must be [] or [low, high] with low <= high",
                              key="noise_snr_db")


@dataclasses.dataclass(frozen=True)
class CompressConfig:
    """Which compressed variants to build and how. Fine-tuning (pruning, QAT, clustering) uses the train
    split with the float model as teacher, keeps the epoch with the best mean of devel UAR and devel
    agreement with the float model, and calibrates full-int8 conversion on ``representative_chunks`` train
    chunks; every variant is measured on the test split."""

    variants: list[str] = param(list(VARIANTS[:-1]), f"variants to build, of: {', '.join(VARIANTS)}")
    representative_chunks: int = param(200, "train chunks (stratified by class) calibrating full-int8 conversion",
                                       low=1, high=100000)
    bias_correction: bool = param(True, "remove the mean output shift that int8 weight rounding causes "
                                        "(compress.ptq) from the float model before post-training "
                                        "quantization and before QAT")
    sparsity: float = param(0.5, "target weight sparsity of the pruned layers (the share of zeros over all "
                                 "their weights)", low=0.0, low_open=True, high=1.0, high_open=True)
    sparsity_allocation: Literal["erk", "uniform"] = param(
        "erk", "how the target is shared among the pruned layers: erk (Erdős–Rényi-kernel: a layer with many "
               "weights per channel is pruned harder, a small one less or not at all) or uniform (every layer "
               "at the target); 2:4 structured sparsity is always uniform")
    sparsity_pattern: Literal["blocks", "unstructured", "2:4"] = param(
        "blocks", "what pruning zeroes: blocks (4 input values × 2 output channels, which the generated engine "
                  "skips: smaller and faster on a microcontroller), unstructured (single weights: only gzip "
                  "size shrinks) or 2:4 (two of every four input channels, for hardware with 2:4 support; "
                  "sparsity is then 0.5)")
    min_weights: int = param(1024, "layers with fewer kernel weights are neither pruned nor clustered", low=0)
    prune_epochs: int = param(16, "fine-tuning epochs of pruning (the schedule ramps over the first 75 %)",
                              low=1, high=1000)
    prune_learning_rate: float = param(3e-4, "learning rate while pruning", low=0.0, low_open=True, high=1.0)
    prune_augment: bool = param(True, "fine-tune the pruned model on the spectrogram augmentation the model "
                                       "was trained with (as slim_augment)")
    qat_epochs: int = param(2, "fine-tuning epochs of quantization-aware training (qat, pqat, clustered)",
                            low=0, high=1000)
    qat_learning_rate: float = param(1e-5, "learning rate of quantization-aware training", low=0.0,
                                     low_open=True, high=1.0)
    slim_macs: float = param(0.5, "channel pruning (slim-int8): the share of the float model's multiply-"
                                  "accumulates the slimmed model may keep", low=0.0, low_open=True, high=1.0)
    slim_criterion: Literal["batchnorm", "l2", "taylor"] = param(
        "taylor", "how slim-int8 ranks channels: taylor (the first-order estimate of the training loss's "
                  "change without the channel: (γ·∂L/∂γ)² of the BatchNorm after its filter, averaged over the "
                  "training batches), batchnorm (that BatchNorm's |scale|; both use the filter where none "
                  "follows) or l2 (every filter's L2 norm)")
    slim_epochs: int = param(72, "fine-tuning epochs of channel pruning, distilled from the float model", low=0,
                             high=1000)
    slim_fade: bool = param(True, "fade the dropped channels to zero while the full-width model fine-tunes "
                                  "(over the first 75 % of slim_epochs), then remove them; false: remove them at "
                                  "once and fine-tune the slimmed model")
    slim_augment: bool = param(True, "fine-tune the slimmed model on the spectrogram augmentation the model was "
                                     "trained with (time shift, speed, pitch, noise: from its sidecar); on the "
                                     "FSDD DS-CNN (two seeds) -6.6/-6.8 UAR points instead of -11.8/-8.2")
    slim_learning_rate: float = param(1e-3, "learning rate of the slimmed model's fine-tune", low=0.0,
                                      low_open=True, high=1.0)
    slim_transfer_audio: str | None = param(
        None, "a folder of unlabelled audio (every .wav, .flac, .ogg under it; labels and layout ignored; "
              "relative paths in a YAML are relative to that YAML): each "
              "slimming batch adds as many of its chunks, which the slimmed model learns to score as the float "
              "model does, so it matches the float model on more voices than the training split's (README: "
              "channel pruning)")
    clusters: int = param(16, "weight clusters per layer (clustered-int8)", low=2, high=256)
    cluster_epochs: int = param(2, "fine-tuning epochs of clustering", low=1, high=1000)
    cluster_learning_rate: float = param(1e-5, "learning rate while clustering", low=0.0, low_open=True, high=1.0)
    distill_weight: float = param(0.8, "share of every fine-tuning loss on the float model's soft targets "
                                       "(distillation; the rest is the labels, 0 = labels only)", low=0.0, high=1.0)
    distill_temperature: float = param(4.0, "temperature of the float model's soft targets", low=0.0,
                                       low_open=True, high=100.0)
    average_decay: float = param(0.99, "decay of the moving average of the trainable weights that every "
                                      "fine-tune evaluates and keeps, from its first eligible step (0: the "
                                      "last step's weights); it warms up as (1 + t) / (10 + t), so over the "
                                      "~500 steps after pruning ends any value above ~0.98 averages alike",
                                 low=0.0, high=1.0, high_open=True)
    optimizer: Literal["adam", "adadelta"] = param("adam", "optimizer of every fine-tuning")
    batch_size: int = param(32, "batch size of every fine-tuning", low=1, high=4096)
    latency_runs: int = param(50, "timed LiteRT invokes per latency figure (after the warm-up)", low=1, high=100000)
    latency_warmup: int = param(5, "untimed LiteRT invokes before timing", low=0, high=10000)
    tflm: bool = param(True, "run every int8 model in the TFLite Micro interpreter and bisect its minimum arena")
    cortex_m4: bool = param(True, "measure every int8 model as the generated engine on a Cortex-M4: flash, RAM "
                                  "and instructions per inference (QEMU, when installed)")
    layer_error_chunks: int = param(100, "test chunks on which every int8 tensor is compared with the float "
                                         "model (the per-layer error record); 0 skips it", low=0, high=100000)
    seed: int = param(0, "seed of representative-set sampling and fine-tuning", low=0)

    def __post_init__(self) -> None:
        if problem := unknown_variant(self.variants):
            raise ConfigError(problem, key="variants")
        if not self.variants:
            raise ConfigError("variants is empty; choose from: " + ", ".join(VARIANTS), key="variants")


@dataclasses.dataclass(frozen=True)
class BoardConfig:
    """A deployment target for the fit check (``configs/boards/``). Sizes are KiB (1024 bytes), as datasheets
    give them; ``system_*`` is what the board's SDK, RTOS and bootloader take before any model code."""

    name: str = param("", "board name, as used by --board")
    description: str = param("", "what the board is")
    cpu: str = param("", "microcontroller or SoC and core")
    clock_mhz: float = param(0.0, "core clock (MHz)", low=0.0)
    runtime: Literal["tflm", "engine", "litert"] = param(
        "tflm", "inference runtime: TFLite Micro or the generated int8 engine (export --target engine) in a "
                "microcontroller's firmware, or LiteRT (phone)")
    flash_kib: int = param(0, "program storage (KiB)", low=1)
    ram_kib: int = param(0, "on-chip RAM (KiB)", low=1)
    external_ram_kib: int = param(0, "external RAM such as PSRAM (KiB); the tensor arena may live there", low=0)
    arena_max_kib: int = param(0, "largest contiguous RAM region for the tensor arena (KiB); 0 = all of ram_kib",
                               low=0)
    system_flash_kib: int = param(0, "flash taken by bootloader, SDK and RTOS (KiB, estimate)", low=0)
    system_ram_kib: int = param(0, "RAM taken by stack, heap and SDK (KiB, estimate)", low=0)
    usb_ids: list[str] = param([], "USB VID:PID pairs (hex) of the board's serial port, for device discovery")
    project: Literal["none", "arduino", "platformio"] = param(
        "none", "firmware project `device flash` generates: an Arduino sketch, a PlatformIO project, or none")
    fqbn: str = param("", "Arduino fully qualified board name (project: arduino)")
    platformio_options: list[str] = param([], "lines of the board's [env] in platformio.ini (project: platformio)")
    build_commands: list[str] = param([], "commands that build the project; {project}, {fqbn}, {env} are filled in")
    flash_commands: list[str] = param([], "alternative commands that flash the build, the first installed one "
                                      "is used; {project}, {build}, {port}, {fqbn}, {env} are filled in")
    tflm_library: str = param("", "the TFLite Micro source the project builds with, pinned (library and version)")
    tflm_include: str = param("", "the library's main header: the sketch includes it, or arduino-cli never adds "
                              "the library to the build")
    host_match: str = param("unverified", "whether that TFLite Micro gives the host's int8 scores bit for bit, "
                            "and the evidence")

    @property
    def microcontroller(self) -> bool:
        """A board whose firmware runs the model (TFLite Micro or the engine), not a phone app."""
        return self.runtime != "litert"

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a board needs a name", key="name")
        # Both reach generated files: the name platformio.ini's sections, the header an #include line.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ConfigError(f"name={self.name!r:.40} must be letters, digits, '_', '.' or '-'", key="name")
        if self.tflm_include and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_./-]*\.h(pp)?", self.tflm_include):
            raise ConfigError(f"tflm_include={self.tflm_include!r:.40} must be a header file name (.h or .hpp)",
                              key="tflm_include")
        if self.system_flash_kib >= self.flash_kib:
            raise ConfigError(f"system_flash_kib={self.system_flash_kib} leaves no flash of flash_kib="
                              f"{self.flash_kib}", key="system_flash_kib")


def samples(seconds: float, sr: int) -> int:
    """Seconds → samples, rounded (DSLite truncates with int(), which 0.29 * 100 turns into 28)."""
    return int(round(seconds * sr))


def presets_dir() -> Path:
    """The folder of shipped presets: ``configs/`` in a checkout, ``dslite_tiny/presets`` when installed."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "presets", here.parent / "configs"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("the preset folder is missing from this installation; reinstall dslite-tiny")


def list_presets(stage: str) -> list[str]:
    return sorted(p.stem for p in (presets_dir() / stage).glob("*.yaml"))


def resolve_preset(spec: str | Path, stage: str) -> Path:
    """A YAML path as given, or a preset name looked up under ``configs/<stage>/``."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError("no such config file", path=path)
        return path
    candidate = presets_dir() / stage / f"{spec}.yaml"
    if not candidate.is_file():
        raise ConfigError(f"unknown {stage} preset '{spec}'; presets: {', '.join(list_presets(stage))}")
    return candidate


Layer = Union[str, Path, tuple[str, Mapping[str, Any]], None]


def load_config(cls: type[C], *layers: Layer, stage: str) -> C:
    """Build ``cls`` from its defaults and then each layer in order: a preset name or YAML path (with its
    ``preset:`` chain), or ``(source, mapping)`` such as a model's saved config, a DeepSpectrumLite
    hp_config or the CLI's ``--set`` values. Each value is checked and blamed on the layer that gave it."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for layer in layers:
        if layer is None:
            continue
        if isinstance(layer, tuple):
            source, mapping = layer
            _merge(cls, values, origins, mapping, source=source)
            continue
        for path, data in _yaml_chain(resolve_preset(layer, stage), stage):
            _merge(cls, values, origins, data, source=str(path))
    return _construct(cls, values, origins)


def from_mapping(cls: type[C], data: Mapping[str, Any], *, source: str) -> C:
    """One layer on top of the defaults, e.g. a config saved in a model sidecar."""
    return load_config(cls, (source, data), stage="")


def to_dict(config: Any) -> dict[str, Any]:
    """The resolved config as plain data (lists, not tuples), sorted like the dataclass."""
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def to_yaml(config: Any) -> str:
    """Every key with its value and its help text as a comment: what a preset file looks like."""
    lines = []
    for f in dataclasses.fields(config):
        value = yaml.safe_dump(_plain(getattr(config, f.name)), default_flow_style=True).strip()
        value = value.removesuffix("\n...").removesuffix("...").strip()
        lines.append(f"{f.name}: {value}  # {f.metadata['help']}")
    return "\n".join(lines) + "\n"


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["n_mels=64", "color_map=gray"]`` → typed dict (values parsed as YAML scalars)."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            if raw.strip().startswith(("[", "{")):  # meant as a list or mapping: taking it as text would mislead
                kind = "list" if raw.strip()[0] == "[" else "mapping"
                raise ConfigError(f"--set {key}: '{raw}' is not a valid YAML {kind} ({getattr(exc, 'problem', exc)}; "
                                  f"quote items that hold [ ] {{ }} or commas)") from None
            value = raw
        head, dot, tail = key.partition(".")
        if dot:  # frontend.n_mels=40: a key of a training config's frontend (its frontend_set)
            if head != "frontend" or not tail:
                raise ConfigError(f"--set expects KEY=VALUE or frontend.KEY=VALUE, got '{item}'")
            result.setdefault("frontend_set", {})[tail] = value
        else:
            result[key] = value
    return result


# --- internals -------------------------------------------------------------------------------------------

def _yaml_chain(path: Path, stage: str, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    if path.resolve() in seen:
        raise ConfigError("preset chain loops back to itself", path=path)
    data = _read_yaml(path)
    parent = data.pop("preset", None)
    chain = []
    if parent is not None:
        parent_path = (path.parent / parent) if str(parent).endswith((".yaml", ".yml")) else parent
        chain = _yaml_chain(resolve_preset(parent_path, stage), stage, seen + (path.resolve(),))
    data = _relative_paths(data, path.parent)
    return chain + [(path, data)]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", path=path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of keys to values, got {type(data).__name__}", path=path)
    return data


_PATH_KEYS = ("root", "labels_csv", "class_config", "slim_transfer_audio")
_RELATIVE_IF_FILE = ("frontend", "weights")  # a preset name or keyword stays as it is


def _relative_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Paths in a YAML file are relative to that file, not to the working directory."""
    out = dict(data)
    for key in _PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            out[key] = str((folder / value).resolve())
    if isinstance(out.get("teacher"), list):
        out["teacher"] = [str((folder / t).resolve()) if isinstance(t, str) and t and not Path(t).is_absolute() else t
                          for t in out["teacher"]]
    for key in _RELATIVE_IF_FILE:
        value = out.get(key)
        if isinstance(value, str) and value.endswith((".yaml", ".yml", ".h5")) and not Path(value).is_absolute():
            out[key] = str((folder / value).resolve())
    return out


# Keys an earlier version wrote into configs, with what says the same now.
_REPLACED_KEYS = {"structured": "sparsity_pattern: blocks, unstructured or 2:4 (structured: true was 2:4, false "
                                "unstructured)"}


def _merge(cls: type, values: dict[str, Any], origins: dict[str, str], layer: Mapping[str, Any],
           *, source: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, raw in layer.items():
        if key in _REPLACED_KEYS and key not in fields:
            raise ConfigError(f"'{key}' was replaced by {_REPLACED_KEYS[key]}", path=source)
        if key not in fields:
            raise ConfigError(f"unknown key '{key}'; valid keys: {', '.join(fields)}", path=source)
        value = _check_value(key, raw, hints[key], fields[key].metadata, source)
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value  # dicts merge by key
        origins[key] = source


def _construct(cls: type[C], values: dict[str, Any], origins: dict[str, str]) -> C:
    """Cross-field checks run in ``__post_init__``; their error gets the layer that set the key."""
    try:
        return cls(**values)
    except ConfigError as exc:
        if exc.path is not None or exc.key is None:
            raise
        raise ConfigError(exc.message, path=origins.get(exc.key, "defaults"), key=exc.key) from None


def _check_value(key: str, value: Any, hint: Any, meta: Mapping[str, Any], source: str) -> Any:
    value = _check_type(key, value, hint, source)
    if isinstance(value, float) and not math.isfinite(value):  # NaN passes every range comparison
        raise ConfigError(f"{key}={value!r} is not a finite number", path=source)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = meta.get("low"), meta.get("high")
        too_low = low is not None and (value <= low if meta.get("low_open") else value < low)
        too_high = high is not None and (value >= high if meta.get("high_open") else value > high)
        if too_low or too_high:
            lo = "" if low is None else (f"> {low}" if meta.get("low_open") else f">= {low}")
            hi = "" if high is None else (f"< {high}" if meta.get("high_open") else f"<= {high}")
            allowed = " and ".join(s for s in (lo, hi) if s)
            raise ConfigError(f"{key}={value!r} is out of range; allowed: {allowed}", path=source)
    return value


def _check_type(key: str, value: Any, hint: Any, source: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_type(key, value, inner, source)
    if origin is Literal:
        if value not in args or isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} is not allowed; choose one of: "
                              f"{', '.join(map(str, args))}", path=source)
        return value
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{key} expects a mapping of keys to values, got {value!r}", path=source)
        return dict(value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} expects a list, got {value!r}", path=source)
        return [_check_type(key, v, args[0], source) for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (type(value) is hint):
        return value
    expected = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))
    raise ConfigError(f"{key} expects {expected}, got {value!r} ({type(value).__name__})", path=source)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

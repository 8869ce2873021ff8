"""``dslite-tiny demo``: the whole product on built-in synthetic data, offline, in minutes on 2 cores.

Today it generates the dataset, splits it speaker-independently and renders its spectrogram plots
through the feature cache; training, compression, export and the device steps join as they land.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

from dslite_tiny.audio.frontend import Frontend
from dslite_tiny.config import DataConfig, FrontendConfig, load_config
from dslite_tiny.data.cache import FeatureCache
from dslite_tiny.data.features import featurize_dataset
from dslite_tiny.data.layouts import Dataset, load_dataset
from dslite_tiny.data.synthetic import make_demo_dataset

DEMO_FRONTEND = "mcu-64"


@dataclasses.dataclass(frozen=True)
class DemoResult:
    out_dir: Path
    dataset: Dataset
    data_spec: Path
    features_dir: Path
    manifest: dict


def run_demo(out_dir: str | Path, *, clips_per_class: int = 40, seed: int = 0,
             progress: Callable[[Iterable], Iterable] = iter) -> DemoResult:
    """Everything is written under ``out_dir`` (data, feature cache, images), nothing is downloaded."""
    out_dir = Path(out_dir)
    spec = out_dir / "data" / "dataset.yaml"
    if not spec.is_file():  # reruns reuse the data (and so the cache)
        spec = make_demo_dataset(out_dir / "data", clips_per_class=clips_per_class, seed=seed)
    dataset = load_dataset(load_config(DataConfig, spec, stage="data"))
    frontend = Frontend(load_config(FrontendConfig, DEMO_FRONTEND, stage="frontend"))
    features_dir = out_dir / "features"
    manifest = featurize_dataset(dataset, frontend, features_dir, cache=FeatureCache(out_dir / "cache"),
                                 per_class=2, progress=progress)
    return DemoResult(out_dir, dataset, spec, features_dir, manifest)

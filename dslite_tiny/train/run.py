"""Training from configs in one call: data → features (cached) → two-phase fit → model.h5 + model.json."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from dslite_tiny.audio.frontend import Frontend
from dslite_tiny.config import ConfigError, DataConfig, FrontendConfig, TrainConfig, load_config, to_dict
from dslite_tiny.data.cache import FeatureCache
from dslite_tiny.data.features import compute_features
from dslite_tiny.data.layouts import Dataset, load_dataset
from dslite_tiny.errors import DataError
from dslite_tiny.progress import Progress, no_progress
from dslite_tiny.records import Sidecar
from dslite_tiny.models.registry import get_backbone
from dslite_tiny.train.distill import load_teacher
from dslite_tiny.train.fit import EpochCallback, TrainResult, train_model


def resolve_frontend_for(config: TrainConfig) -> FrontendConfig:
    """The frontend preset or YAML the training config names, with its ``frontend_set`` keys on top."""
    return load_config(FrontendConfig, config.frontend, ("the training config's frontend_set", config.frontend_set),
                       stage="frontend")


def run_training(data: DataConfig, config: TrainConfig, *, out_dir: str | Path, cache: FeatureCache | None = None,
                 progress: Progress = no_progress, on_epoch: EpochCallback | None = None) -> TrainResult:
    """Train on ``data``'s train split, select on devel; everything is written under ``out_dir``."""
    out_dir = Path(out_dir)
    frontend = Frontend(resolve_frontend_for(config))
    spec = get_backbone(config.backbone)
    if config.weights != "none" and frontend.config.normalization != spec.normalization:
        raise ConfigError(f"frontend '{config.frontend}' normalises images as '{frontend.config.normalization}', "
                          f"{config.backbone}'s pretrained weights expect '{spec.normalization}': choose a frontend "
                          f"made for {config.backbone} or train from scratch (weights: none)", key="frontend")
    dataset = load_dataset(data, require=("train", "devel"))
    dataset.require_classes("train")
    teacher = load_teacher(config.teacher, weight=config.teacher_weight, temperature=config.teacher_temperature,
                           classes=dataset.classes, frontend=frontend.config, dataset=dataset)  # before slow work
    features = {split: compute_features(dataset, frontend, splits=[split], cache=cache, strict=data.strict,
                                        progress=progress)
                for split in ("train", "devel")}
    for split, table in features.items():
        if len(table) == 0:
            raise DataError(f"the {split} split yields no chunks ({table.report.describe()})", path=dataset.source)
    sidecar = Sidecar(tuple(dataset.classes), frontend.config, frontend.config.image_shape, config.backbone,
                      data_summary(dataset, data, features), details={"normalization": frontend.config.normalization})
    return train_model(features["train"], features["devel"], frontend, config, out_dir=out_dir, sidecar=sidecar,
                       teacher=teacher, on_epoch=on_epoch, progress=progress)


def data_summary(dataset: Dataset, data: DataConfig, features: dict) -> dict:
    counts = dataset.counts()
    return {"source": dataset.source, "split_method": dataset.split_method, "config": to_dict(data),
            "files": {split: {label: int(counts.loc[label, split]) for label in dataset.classes}
                      for split in ("train", "devel", "test")},
            "speakers": {split: dataset.speakers(split) for split in ("train", "devel", "test")},
            "features": {split: dataclasses.asdict(f.report) for split, f in features.items()}}

"""The demo's pipeline, offline: synthetic data → features → train → evaluate → compress → export → the
virtual device → report, everything under one folder. It drives every stage, the device side included, so it
lives with the flows; ``dslite-tiny demo`` runs it and prints what each stage made.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dslite_tiny.progress import Progress, no_progress

if TYPE_CHECKING:
    from dslite_tiny.compress.pipeline import CompressResult
    from dslite_tiny.config import DataConfig
    from dslite_tiny.data.layouts import Dataset
    from dslite_tiny.export.targets import ExportResult
    from dslite_tiny.report.build import ReportResult

DEMO_TRAIN = "mcu-dscnn"
# The default variants with shorter QAT, written beside the run so that `compress --config` reuses them. Pruning
# keeps its epochs (a second each on the demo's data): block pruning lost 42.5 UAR points in two, 7.5 in eight.
DEMO_COMPRESS = {"preset": "default", "qat_epochs": 1, "latency_runs": 20}
DEMO_COMPRESS_FILE = "compress.yaml"
DEMO_BOARD = "nano33ble"


@dataclasses.dataclass(frozen=True)
class DemoResult:
    out_dir: Path
    dataset: Dataset
    data_spec: Path
    features_dir: Path
    manifest: dict
    model_path: Path
    best: dict
    evaluation: dict
    compression: CompressResult
    exports: list[ExportResult]
    device: dict | None  # the virtual device's evaluation summary of the exported variant
    report: ReportResult


def run_demo(out_dir: str | Path, *, clips_per_class: int = 40, epochs: int | None = None, seed: int = 0,
             progress: Progress = no_progress, on_epoch: Callable[[dict], None] | None = None,
             on_variant: Callable[[dict], None] | None = None) -> DemoResult:
    """Everything is written under ``out_dir`` (data, feature cache, images, model), nothing is downloaded."""
    import yaml

    from dslite_tiny.artifacts import write_atomic, write_json
    from dslite_tiny.audio.frontend import Frontend
    from dslite_tiny.compress.pipeline import run_compress
    from dslite_tiny.config import CompressConfig, DataConfig, TrainConfig, load_config
    from dslite_tiny.data.cache import FeatureCache
    from dslite_tiny.data.features import featurize_dataset
    from dslite_tiny.data.layouts import load_dataset
    from dslite_tiny.data.synthetic import make_demo_dataset
    from dslite_tiny.models.trained import load_trained
    from dslite_tiny.report.build import build_report
    from dslite_tiny.train.evaluate import evaluate
    from dslite_tiny.train.run import resolve_frontend_for, run_training

    out_dir = Path(out_dir)
    spec = out_dir / "data" / "dataset.yaml"
    if not spec.is_file():  # reruns reuse the data (and so the cache)
        spec = make_demo_dataset(out_dir / "data", clips_per_class=clips_per_class, seed=seed)
    data = load_config(DataConfig, spec, stage="data")
    dataset = load_dataset(data)
    train_config = load_config(TrainConfig, DEMO_TRAIN, ("demo", {"epochs": epochs} if epochs else {}), stage="train")
    frontend = Frontend(resolve_frontend_for(train_config))
    cache = FeatureCache(out_dir / "cache")
    features_dir = out_dir / "features"
    manifest = featurize_dataset(dataset, frontend, features_dir, cache=cache, per_class=2,
                                 progress=progress)
    result = run_training(data, train_config, out_dir=out_dir / "model", cache=cache, progress=progress,
                          on_epoch=on_epoch)
    evaluation = evaluate(load_trained(result.path), dataset, split="test", cache=cache)
    write_json(out_dir / "model" / "evaluation_test.json", evaluation, sort_keys=False)
    compress_yaml = write_atomic(out_dir / DEMO_COMPRESS_FILE, yaml.safe_dump(DEMO_COMPRESS, sort_keys=False))
    compression = run_compress(result.path, config=load_config(CompressConfig, compress_yaml, stage="compress"),
                               out_dir=out_dir / "compressed", data=data, cache=cache, progress=progress,
                               on_variant=on_variant)
    exports = _export_best(compression.out_dir)
    device = _evaluate_on_virtual_device(exports[0].variant.path.parent, data, progress) if exports else None
    report = build_report(compression.out_dir, report_dir=out_dir / "report", board=DEMO_BOARD)
    return DemoResult(out_dir, dataset, spec, features_dir, manifest, result.path, result.best, evaluation,
                      compression, exports, device, report)


def _evaluate_on_virtual_device(variant_dir: Path, data: DataConfig, progress: Progress) -> dict:
    """The test split streamed as audio to the virtual device, which computes the features itself."""
    from firmware_host.harness import EvalSettings, evaluate_on_device
    from firmware_host.virtual import serve_virtual

    with serve_virtual(variant_dir) as port:
        return evaluate_on_device(port, variant_dir, data, EvalSettings(mode="audio"), progress=progress)[0]


def _export_best(compressed: Path) -> list[ExportResult]:
    """The most accurate int8 variant as C sources (fit-checked, exported even if it would not fit, so the
    demo always shows the files) and as a phone bundle."""
    from dslite_tiny.export.targets import export_model
    from dslite_tiny.report.build import best_int8
    from dslite_tiny.report.results import load_results

    best = best_int8(load_results(compressed))
    if best is None:
        return []
    folder = compressed / best.name
    return [export_model(folder, target="c", name="demo", board=DEMO_BOARD, force=True),
            export_model(folder, target="phone", name="demo")]

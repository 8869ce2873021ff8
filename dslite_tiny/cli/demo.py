"""``dslite-tiny demo``: the whole product on built-in synthetic data, offline, in minutes on 2 cores.

It generates the dataset, splits it speaker-independently, renders spectrogram plots through the feature
cache, trains the MCU model (DS-CNN on 64×64 grey plots), evaluates it on the held-out speaker,
compresses it into every default variant (shorter fine-tuning than the preset), exports the most accurate
int8 variant as TFLite Micro C sources (fit-checked on the Nano 33 BLE) and as a phone bundle, evaluates it
on the virtual device (the C firmware core and TFLite Micro, over a pseudo-terminal), and writes the
trade-off report with the device's columns. It lives with the commands because it drives all of them,
the device side included; the libraries it calls are imported when it runs, so ``--help`` stays instant.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dslite_tiny.cli.options import TensorFlowCommand, progress_bar
from dslite_tiny.progress import Progress, no_progress

if TYPE_CHECKING:
    from dslite_tiny.compress.pipeline import CompressResult
    from dslite_tiny.config import DataConfig
    from dslite_tiny.data.layouts import Dataset
    from dslite_tiny.export.targets import ExportResult
    from dslite_tiny.report.build import ReportResult


@click.command(cls=TensorFlowCommand)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo_out"),
              show_default=True, help="Everything the demo makes goes here.")
@click.option("--clips-per-class", type=click.IntRange(5, 1000), default=40, show_default=True)
@click.option("--epochs", type=click.IntRange(1), help="Training epochs (default: the mcu-dscnn preset's).")
def demo(out: Path, clips_per_class: int, epochs: int | None) -> None:
    """Synthetic data → train → evaluate → compress → export → report, offline (~2 min on 2 cores)."""
    from dslite_tiny.cli.compress import format_summary, variant_line
    from dslite_tiny.cli.device import format_summary as format_device
    from dslite_tiny.cli.evaluate import format_report

    def show(record: dict) -> None:
        if record["epoch"] % 5 == 0 or record["epoch"] == 1:
            click.echo(f"train     epoch {record['epoch']:>3}: loss {record['loss']:.3f}  devel UAR "
                       f"{record['devel_uar']:.3f}")

    click.echo(f"demo      into {out}: synthetic data → features → train → evaluate → compress → export → device "
               f"→ report (about 2 minutes on 2 cores)")
    result = run_demo(out, clips_per_class=clips_per_class, epochs=epochs, progress=progress_bar, on_epoch=show,
                      on_variant=lambda row: click.echo("compress  " + variant_line(row)))
    dataset, report = result.dataset, result.manifest["report"]
    click.echo(f"data      {result.data_spec}  ({len(dataset.clips)} clips, classes: {', '.join(dataset.classes)})")
    click.echo(f"          split by {dataset.split_method}")
    click.echo("          " + dataset.counts().to_string().replace("\n", "\n          "))
    click.echo(f"features  {report['files']} files → {report['chunks']} chunks "
               f"({report['padded']} short clips padded), cached in {result.out_dir / 'cache'}")
    click.echo(f"images    {result.features_dir} (2 clips per split and class; features.json has the config)")
    click.echo(f"model     {result.model_path} (+ model.json): best devel UAR {result.best['devel_uar']:.3f} "
               f"at epoch {result.best['epoch']}")
    click.echo("evaluate  " + format_report(result.evaluation).replace("\n", "\n          "))
    compressed = result.compression
    click.echo(f"compress  {compressed.out_dir} (summary.csv, <variant>/model.tflite + metrics.json); its config "
               f"is {result.out_dir / DEMO_COMPRESS_FILE}: `dslite-tiny compress {result.model_path} --config "
               f"{result.out_dir / DEMO_COMPRESS_FILE} --out {compressed.out_dir}` reuses these variants")
    click.echo("          " + format_summary(compressed.rows, compressed.reference).replace("\n", "\n          "))
    for exported in result.exports:
        click.echo(f"export    {exported.variant.name} → {exported.out_dir}: "
                   + ", ".join(path.name for path in exported.files))
        if exported.fit is not None:
            click.echo(f"          {exported.fit.describe()}")
    if result.device is not None:
        click.echo("device    " + format_device(result.device).replace("\n  ", "\n          "))
    for advice in result.report.recommendations:
        click.echo(f"recommend {advice.board}: {advice.text.replace('**', '')}")
    click.echo(f"report    {result.report.html}")


DEMO_TRAIN = "mcu-dscnn"
# The default variants with shorter QAT, written beside the run so that `compress --config` reuses them. Pruning
# keeps its eight epochs (a second on the demo's data): block pruning lost 42.5 UAR points in two, 7.5 in eight.
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

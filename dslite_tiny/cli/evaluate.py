"""``dslite-tiny evaluate`` and ``predict``: a trained model on a dataset split or on audio files."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click

from dslite_tiny.artifacts import write_json
from dslite_tiny.cli.features import cache_options, make_cache
from dslite_tiny.cli.options import TensorFlowCommand, data_options, resolve_data


@click.command(cls=TensorFlowCommand)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_path", metavar="DATA",
              help="Dataset folder or dataset YAML (default: the dataset and split the model was trained with).")
@data_options
@click.option("--split", type=click.Choice(["train", "devel", "test"]), default="test", show_default=True)
@click.option("--allow-overlap", is_flag=True,
              help="Score a split that shares speakers or files with the model's training (recorded in the JSON).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Results JSON (default: evaluation_<split>.json next to the model).")
@cache_options
def evaluate(model: Path, data_path: str | None, split: str, allow_overlap: bool, out: Path | None,
             cache_dir: Path | None, no_cache: bool, **data_opts) -> None:
    """UAR, accuracy, per-class recall and confusion matrix of MODEL on a split, per chunk and per file."""
    from dslite_tiny.data.layouts import load_dataset
    from dslite_tiny.models.trained import load_trained
    from dslite_tiny.train.evaluate import evaluate as run_evaluation

    trained = load_trained(model)
    config = resolve_data(data_path, saved=None if data_path else trained.saved_data(), **data_opts)
    report = run_evaluation(trained, load_dataset(config, require=(split,)), split=split,
                            cache=make_cache(cache_dir, no_cache), strict=config.strict, allow_overlap=allow_overlap)
    if report["overlaps_training"]:
        click.echo(f"warning: {report['overlaps_training']}", err=True)
    out = out or model.with_name(f"evaluation_{split}.json")
    write_json(out, report, sort_keys=False)
    click.echo(format_report(report))
    click.echo(f"wrote {out}")


def format_report(report: dict) -> str:
    classes = report["classes"]
    lines = [f"{report['split']} split: {report['features']}"]
    for level in ("chunks", "files"):
        r = report[level]
        lines.append(f"  per {level[:-1]:<5}  UAR {r['uar']:.3f}  accuracy {r['accuracy']:.3f}  (n = {r['n']})")
    width = max(len(c) for c in classes)
    lines.append(f"  {'recall per class (chunks)':<{width}}")
    for name in classes:
        value = report["chunks"]["recall"][name]
        lines.append(f"    {name:<{width}}  {'—' if value is None else f'{value:.3f}'}")
    lines.append("  confusion matrix (rows true, columns predicted, chunks):")
    for name, row in zip(classes, report["chunks"]["confusion_matrix"]):
        lines.append(f"    {name:<{width}}  " + " ".join(f"{v:>4}" for v in row))
    return "\n".join(lines)


@click.command(cls=TensorFlowCommand)
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("audio", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--chunks", is_flag=True, help="Also list every chunk's probabilities (table/csv).")
def predict(model: Path, audio: tuple[Path, ...], fmt: str, chunks: bool) -> None:
    """Per-file (mean over chunks) and per-chunk class probabilities of AUDIO files."""
    from dslite_tiny.models.trained import load_trained
    from dslite_tiny.train.evaluate import predict_files

    trained = load_trained(model)
    results = predict_files(trained, list(audio))
    if fmt == "json":
        click.echo(json.dumps({"classes": list(trained.classes), "files": results}, indent=2))
        return
    rows = []
    for result in results:
        rows.append([result["file"], "all", result["predicted"] or "(dropped)", *(result["probabilities"] or [])])
        if chunks:
            rows += [[result["file"], str(k), trained.classes[max(range(len(p)), key=p.__getitem__)], *p]
                     for k, p in enumerate(result["chunks"])]
    header = ["file", "chunk", "predicted", *trained.classes]
    if fmt == "csv":
        buffer = io.StringIO()
        csv.writer(buffer).writerows([header, *rows])
        click.echo(buffer.getvalue(), nl=False)
        return
    for row in [header, *rows]:
        click.echo("  ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))

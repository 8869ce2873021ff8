"""``dslite-tiny train`` (two-phase transfer learning, best devel UAR kept), ``cv`` (speaker cross-validation),
``sweep`` (a search over training keys), ``import-dslite`` and ``ensemble`` (trained models averaged as one)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from dslite_tiny.cli.features import cache_options, make_cache
from dslite_tiny.cli.options import (TensorFlowCommand, data_options, progress_bar, ray_option, resolve_data,
                                     with_options)
from dslite_tiny.errors import UserError


def training_options(command: Callable) -> Callable:
    """DATA (with the data options), the training --config and its --set overrides."""
    options = [
        click.option("--data", "data_path", required=True, metavar="DATA", help="Dataset folder or dataset YAML."),
        data_options,
        click.option("--config", "train_config", default="mcu-dscnn", show_default=True,
                     help="Training preset name (configs/train/) or YAML file."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override one training key; frontend.KEY=VALUE overrides a key of its frontend."),
    ]
    return with_options(command, options)


@click.command(cls=TensorFlowCommand)
@training_options
@click.option("--weights", help="none, imagenet, or a local no-top .h5 (overrides the config).")
@click.option("--epochs", type=click.IntRange(1),
              help="Epochs of phase 1 (the only phase when training from scratch); overrides the config.")
@click.option("--fine-epochs", type=click.IntRange(0),
              help="Epochs of phase 2, fine-tuning pretrained layers (0: none); overrides the config.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@cache_options
def train(data_path: str, train_config: str, overrides: tuple[str, ...], weights: str | None, epochs: int | None,
          fine_epochs: int | None, out: Path, cache_dir: Path | None, no_cache: bool, **data_opts) -> None:
    """Train a classifier on DATA; writes OUT/model.h5 and OUT/model.json."""
    from dslite_tiny.config import TrainConfig, load_config, parse_overrides
    from dslite_tiny.train.run import run_training

    flags = {k: v for k, v in (("weights", weights), ("epochs", epochs), ("fine_epochs", fine_epochs)) if v is not None}
    config = load_config(TrainConfig, train_config, ("--set", {**parse_overrides(overrides), **flags}), stage="train")
    data = resolve_data(data_path, **data_opts)

    def show(record: dict) -> None:
        click.echo(f"epoch {record['epoch']:>3} ({record['phase']}): loss {record['loss']:.4f}  "
                   f"devel UAR {record['devel_uar']:.3f}  ({record['seconds']:.1f} s)")

    result = run_training(data, config, out_dir=out, cache=make_cache(cache_dir, no_cache), progress=progress_bar,
                          on_epoch=show)
    best = result.best
    click.echo(f"best devel UAR {best['devel_uar']:.3f} at epoch {best['epoch']} → {result.path} "
               f"(+ {result.path.with_suffix('.json').name})")


@click.command(cls=TensorFlowCommand)
@training_options
@click.option("--folds", default="loso", show_default=True, metavar="loso|K", callback=lambda _c, _p, v: _fold_count(v),
              help="Leave one speaker out, or K folds of speakers.")
@click.option("--seeds", default="0", show_default=True, metavar="S[,S...]", callback=lambda _c, _p, v: _seed_list(v),
              help="Training seeds; each fold runs every one.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@cache_options
@ray_option
def cv(data_path: str, train_config: str, overrides: tuple[str, ...], folds: int | None, seeds: list[int], out: Path,
       cache_dir: Path | None, no_cache: bool, ray_address: str | None, **data_opts) -> None:
    """Speaker cross-validation on DATA: a model per fold and seed, UAR per fold and mean ± std.

    Writes OUT/<fold>-s<seed>/ (model and result.json) as each run ends, and OUT/cv.json, cv.md and cv.png;
    run it again to resume. With --ray the runs train at once on a Ray cluster (one CPU each).
    """
    from dslite_tiny.config import TrainConfig, load_config, parse_overrides
    from dslite_tiny.flows.cv import cross_validate
    from dslite_tiny.flows.runner import make_runner

    if data_opts.get("test_speakers") or data_opts.get("devel_speakers"):
        raise UserError("cv chooses each fold's test and devel speakers: leave out --test-speakers/--devel-speakers")
    config = load_config(TrainConfig, train_config, ("--set", parse_overrides(overrides)), stage="train")
    data = resolve_data(data_path, **data_opts)

    def show(result: dict) -> None:
        click.echo(f"fold {result['fold']} seed {result['seed']}: test UAR {result['chunk_uar']:.3f} per chunk, "
                   f"{result['file_uar']:.3f} per file (best devel epoch {result['best_epoch']})")

    def epoch(record: dict) -> None:
        click.echo(f"fold {record['fold']} seed {record['seed']} epoch {record['epoch']:>3}: loss {record['loss']:.4f}  "
                   f"devel UAR {record['devel_uar']:.3f}  ({record['seconds']:.1f} s)")

    summary = cross_validate(data, config, out_dir=out, folds=folds, seeds=seeds, cache=make_cache(cache_dir, no_cache),
                             runner=make_runner(ray_address), progress=progress_bar, on_run=show, on_epoch=epoch)
    mean = summary["mean"]
    click.echo(f"{len(summary['folds'])} folds: UAR {mean['chunk_uar']['mean']:.3f} ± {mean['chunk_uar']['std']:.3f} "
               f"per chunk, {mean['file_uar']['mean']:.3f} ± {mean['file_uar']['std']:.3f} per file → {out / 'cv.md'}")


@click.command(cls=TensorFlowCommand)
@training_options
@click.option("--space", required=True, metavar="NAME|YAML",
              help="The search: a file under configs/sweep/ or a YAML path (keys, searcher, trials, ASHA).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@cache_options
@ray_option
def sweep(data_path: str, train_config: str, overrides: tuple[str, ...], space: str, out: Path,
          cache_dir: Path | None, no_cache: bool, ray_address: str | None, **data_opts) -> None:
    """Search training keys on DATA's devel split: trials of --space on top of --config, ASHA early stopping.

    Writes OUT/trials/<trial>/ as each trial ends, OUT/sweep.json, sweep.md, sweep.png and OUT/best.yaml (the
    best config, for train --config); run it again to resume. With --ray the trials train at once on Ray.
    """
    from dslite_tiny.config import parse_overrides
    from dslite_tiny.flows.runner import make_runner
    from dslite_tiny.flows.sweep import sweep as run_sweep
    from dslite_tiny.train.sweep import load_space

    search = load_space(space)
    data = resolve_data(data_path, **data_opts)

    def show(result: dict) -> None:
        stopped = f", stopped at rung {result['stopped_at']}" if result["stopped_at"] else ""
        values = ", ".join(f"{k}={v}" for k, v in result["values"].items())
        click.echo(f"{result['trial']} ({values}): best devel UAR {result['devel_uar']:.3f} at epoch "
                   f"{result['best_epoch']} of {result['epochs']}{stopped}")

    summary = run_sweep(data, train_config, parse_overrides(overrides), search, out_dir=out,
                        cache=make_cache(cache_dir, no_cache), runner=make_runner(ray_address),
                        progress=progress_bar, on_trial=show)
    best = next(r for r in summary["trials"] if r["trial"] == summary["best"])
    click.echo(f"{summary['trials_done']} trials, {summary['epochs_trained']} of {summary['epochs_planned']} epochs: "
               f"best {best['trial']} (devel UAR {best['devel_uar']:.3f}) → {out / 'best.yaml'}, {out / 'sweep.md'}")


def _fold_count(folds: str) -> int | None:
    if folds == "loso":
        return None
    if not folds.isdigit():
        raise UserError(f"--folds: '{folds}' is neither 'loso' nor a number of folds")
    return int(folds)


def _seed_list(seeds: str) -> list[int]:
    parts = [p.strip() for p in seeds.split(",")]
    if not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise UserError(f"--seeds: '{seeds}' is not a list of distinct seeds like 0,1")
    return [int(p) for p in parts]


@click.command("import-dslite", cls=TensorFlowCommand)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--hp-config", type=click.Path(path_type=Path), required=True, help="The run's hp_config.json.")
@click.option("--config-index", type=int, default=0, show_default=True, help="Which grid combination it was.")
@click.option("--class-config", type=click.Path(path_type=Path), required=True, help="The run's class_config.json.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def import_dslite(model: Path, hp_config: Path, config_index: int, class_config: Path, out: Path) -> None:
    """Convert a DeepSpectrumLite 1.0.2 model into a flat dslite-tiny model + sidecar (predictions checked)."""
    from dslite_tiny.models.dslite_import import import_dslite as run_import

    path, difference = run_import(model, hp_config=hp_config, class_config=class_config, out_dir=out,
                                  config_index=config_index)
    click.echo(f"wrote {path} (+ {path.with_suffix('.json').name}); max probability difference to the "
               f"DeepSpectrumLite model: {difference:.2e}")


@click.command(cls=TensorFlowCommand)
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def ensemble(models: tuple[Path, ...], out: Path) -> None:
    """Average MODELS' class probabilities in one flat model: OUT/model.h5 (+ model.json).

    The members (e.g. one preset trained with several seeds) must share classes, frontend and data split;
    the result compresses and exports like any trained model.
    """
    from dslite_tiny.models.ensemble import ensemble_models

    path = ensemble_models(models, out_dir=out)
    click.echo(f"wrote {path} (+ {path.with_suffix('.json').name}): the mean of {len(models)} models")

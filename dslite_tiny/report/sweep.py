"""The sweep report: every trial in one table (best first) and one figure of devel UAR per epoch, from
``sweep.json``'s summary; early-stopped trials end at the rung that stopped them."""
from __future__ import annotations

from pathlib import Path

from dslite_tiny.artifacts import write_atomic
from dslite_tiny.report.plots import _pyplot, _save
from dslite_tiny.report.render import to_markdown


def write_sweep_report(summary: dict, out_dir: str | Path) -> Path:
    """``out_dir/sweep.md`` with the table and ``sweep.png``; returns the Markdown file."""
    out_dir = Path(out_dir)
    figure = plot_sweep(summary, out_dir / "sweep.png")
    search = summary["search"]
    scheduler = (f"ASHA (grace {search['grace_epochs']} epochs, reduction {search['reduction']})"
                 if search["scheduler"] == "asha" else "no early stopping")
    done = f"{summary['trials_done']} of {summary['trials_planned']} trials" + \
        ("" if summary["complete"] else " (incomplete)")
    share = summary["epochs_trained"] / max(1, summary["epochs_planned"])
    blocks = [
        ("h1", "Sweep"),
        ("p", f"{search['searcher']} search over {', '.join(f'`{k}`' for k in summary['space'])} "
              f"({Path(summary['source']).name}) on `{summary['base']['preset']}`, {scheduler}: {done}, "
              f"{summary['epochs_trained']} of {summary['epochs_planned']} epochs trained ({share:.0%}), "
              f"{summary['run_seconds'] / 60:.1f} min of training. Best: "
              f"**{summary['best'] or '–'}**, written as `best.yaml`."),
        ("table", sweep_table(summary)),
        ("image", figure, "devel UAR per epoch of every trial (the best drawn thick); a line that ends early is a "
                          "trial ASHA stopped at a rung (dotted)"),
    ]
    path = out_dir / "sweep.md"
    write_atomic(path, to_markdown(blocks, base=out_dir))
    return path


def sweep_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    keys = list(summary["space"])
    header = ["trial", *keys, "best devel UAR", "best epoch", "epochs", "stopped at", "minutes"]
    rows = []
    for result in sorted(summary["trials"], key=lambda r: -r["devel_uar"]):
        name = f"**{result['trial']}**" if result["trial"] == summary["best"] else result["trial"]
        rows.append([name, *(_value(result["values"][k]) for k in keys), f"{result['devel_uar']:.3f}",
                     str(result["best_epoch"]), str(result["epochs"]),
                     "–" if result["stopped_at"] is None else f"rung {result['stopped_at']}",
                     f"{result['seconds'] / 60:.1f}"])
    return header, rows


def _value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def plot_sweep(summary: dict, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    rungs = sorted({r["stopped_at"] for r in summary["trials"] if r["stopped_at"]})
    for rung in rungs:
        ax.axvline(rung, color="#999999", linestyle=":", linewidth=1)
    for result in summary["trials"]:
        curve = result["devel_uar_per_epoch"]
        best = result["trial"] == summary["best"]
        ax.plot(range(1, len(curve) + 1), curve, linewidth=2.2 if best else 1.0, alpha=1.0 if best else 0.7,
                label=f"{result['trial']} ({result['devel_uar']:.3f})" if best or len(summary["trials"]) <= 10
                else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("devel UAR")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right", fontsize=7, ncol=2, frameon=False)
    ax.set_title("sweep: devel UAR of every trial")
    fig.tight_layout()
    return _save(fig, path)

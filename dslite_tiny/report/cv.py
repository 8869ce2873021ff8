"""The cross-validation report: one table and one figure of per-fold UAR, from ``cv.json``'s summary.

Per fold the top-1 accuracy per file (what keyword spotting reports) and the UAR per chunk and per file (mean
over seeds, each seed's UARs beside it), then mean ± sample std over folds: the spread between folds is how
much a result depends on who is speaking.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dslite_tiny.artifacts import write_atomic
from dslite_tiny.data.splits import speaker_list
from dslite_tiny.report.plots import _pyplot, _save
from dslite_tiny.report.render import to_markdown

KEYS = (("chunk_uar", "per chunk"), ("file_uar", "per file"))


def write_cv_report(summary: dict, out_dir: str | Path) -> Path:
    """``out_dir/cv.md`` with the table and ``cv.png``; returns the Markdown file."""
    out_dir = Path(out_dir)
    figure = plot_cv(summary, out_dir / "cv.png")
    train = summary["train"]
    done = f"{summary['runs_done']} of {summary['runs_planned']} runs" + ("" if summary["complete"] else " (incomplete)")
    blocks = [
        ("h1", "Speaker cross-validation"),
        ("p", f"{len(summary['folds'])} folds × seeds {', '.join(map(str, summary['seeds']))}: {done}. Backbone "
              f"`{train['backbone']}` on frontend `{Path(str(train['frontend'])).stem}`; each fold is tested on "
              f"speakers it neither trained nor selected on."),
        ("table", cv_table(summary)),
        ("image", figure, "UAR per fold (bars: mean over seeds, dots: each seed); the line is the mean over folds"),
    ]
    path = out_dir / "cv.md"
    write_atomic(path, to_markdown(blocks, base=out_dir))
    return path


def cv_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    header = ["fold", "test speakers", "devel speakers", "top-1 per file", "UAR per chunk", "UAR per file",
              "seeds (chunk / file UAR)"]
    rows = []
    for fold in summary["folds"]:
        mean = summary["per_fold"].get(fold["name"])
        runs = [r for r in summary["runs"] if r["fold"] == fold["name"]]
        seeds = "; ".join(f"s{r['seed']}: {r['chunk_uar']:.3f} / {r['file_uar']:.3f}" for r in runs)
        cells = [f"{mean[key]:.3f}" if key in mean else "–" for key in ("file_accuracy", "chunk_uar", "file_uar")] \
            if mean else ["–"] * 3
        rows.append([fold["name"], speaker_list(list(fold["test"])), speaker_list(list(fold["devel"])), *cells, seeds])
    overall = summary["mean"]
    rows.append(["**mean ± std**", "", "", *(f"**{overall[key]['mean']:.3f} ± {overall[key]['std']:.3f}**"
                                             if key in overall else "–"
                                             for key in ("file_accuracy", "chunk_uar", "file_uar")), ""])
    return header, rows


def plot_cv(summary: dict, path: Path) -> Path:
    plt = _pyplot()
    names = [f["name"] for f in summary["folds"]]
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(names) + 2), 3.8))
    width = 0.38
    x = np.arange(len(names))
    for k, ((key, label), colour) in enumerate(zip(KEYS, ("#4f9fd6", "#1f5fa8"))):
        offset = (k - 0.5) * width
        means = [summary["per_fold"].get(name, {}).get(key, np.nan) for name in names]
        ax.bar(x + offset, means, width, color=colour, label=label)
        for i, name in enumerate(names):
            seeds = [r[key] for r in summary["runs"] if r["fold"] == name]
            ax.plot([x[i] + offset] * len(seeds), seeds, "o", color="#222222", markersize=2.5)
        overall = summary["mean"][key]
        ax.axhline(overall["mean"], color=colour, linestyle="--", linewidth=1,
                   label=f"{label}: {overall['mean']:.3f} ± {overall['std']:.3f}")
    ax.set_xticks(x, names, rotation=30 if len(names) > 6 else 0)
    ax.set_ylabel("test UAR")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=7.5, frameon=False)
    ax.set_title("speaker cross-validation: UAR of each held-out fold")
    fig.tight_layout()
    return _save(fig, path)

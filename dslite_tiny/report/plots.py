"""The report's figures (PNG, matplotlib's Agg backend): each function draws one file from ``Results``.

Colours are fixed per variant, so a variant looks the same in every figure and every report.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dslite_tiny.config import VARIANTS, BoardConfig
from dslite_tiny.measure.flatbuffer import WRAPPER_PREFIX
from dslite_tiny.report.results import Results, VariantResult
from dslite_tiny.report.tables import Fits, fit_cell

DPI = 150
_COLOURS = dict(zip(VARIANTS, ("#6b6b6b", "#9c7bb5", "#4f9fd6", "#1f5fa8", "#17becf", "#2ca25f", "#e6820e",
                               "#c0392b", "#d4a017", "#8c564b"), strict=True))
_FIT_COLOURS = {"fits": "#cfe8d5", "short": "#f4c7c3", "none": "#eeeeee", "psram": "#fbe7b5"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.grid": True, "grid.alpha": 0.3, "figure.facecolor": "white"})
    return plt


def colour(name: str) -> str:
    return _COLOURS.get(name, "#333333")


def pareto_front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The points no other point beats on both size (smaller) and UAR (higher), by increasing size."""
    front: list[tuple[float, float, str]] = []
    for size, uar, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or uar > front[-1][1]:
            front.append((size, uar, name))
    return front


def plot_uar_vs_size(results: Results, path: Path, *, tolerance_points: float) -> Path:
    """UAR against raw and gzip size (log scale), the Pareto frontier highlighted, the float model's UAR
    and the tolerance band drawn."""
    variants = _measured(results)
    panels = [([(v.size.tflite_bytes / 1024, v.host.uar, v.name) for v in variants], ".tflite size (flash)",
               "size (log scale)", "KB"),
              ([(v.size.gzip_bytes / 1024, v.host.uar, v.name) for v in variants],
               "gzip size (download; shows pruning)", "size (log scale)", "KB")]
    return _uar_panels(results, path, panels, "Accuracy vs size: up and to the left is better",
                       tolerance_points=tolerance_points)


def plot_uar_vs_cortex_m4(results: Results, path: Path, *, tolerance_points: float) -> Path | None:
    """UAR against what the generated engine costs on a Cortex-M4 (instructions per inference counted by
    QEMU, flash), Pareto frontiers highlighted; None if no variant has the figures."""
    measured = [v for v in _measured(results) if v.metrics.cortex_m4 is not None and v.metrics.cortex_m4.ok]
    timed = [v for v in measured if v.metrics.cortex_m4.instructions is not None]
    if not measured:
        return None
    estimated = any(v.metrics.cortex_m4.method == "estimate" for v in timed)
    panels = [([(v.metrics.cortex_m4.instructions / 1e6, v.host.uar, v.name) for v in timed],
               "instructions per inference (≈ calibrated estimate: no QEMU)" if estimated
               else "instructions per inference (QEMU)", "M instructions (log scale)", "M"),
              ([(v.metrics.cortex_m4.flash_bytes / 1024, v.host.uar, v.name) for v in measured],
               "flash: kernels + model code + constants", "flash (log scale)", "KB")]
    return _uar_panels(results, path, [p for p in panels if p[0]],
                       "Accuracy vs cost on a Cortex-M4 (generated engine): up and to the left is better",
                       tolerance_points=tolerance_points)


def _uar_panels(results: Results, path: Path, panels: list[tuple[list, str, str, str]], title: str, *,
                tolerance_points: float) -> Path:
    """One panel per (points (x, UAR, variant), title, x label, unit): log x, the Pareto frontier, the
    float model's UAR and the tolerance band."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.4), sharey=True, squeeze=False,
                             layout="constrained")
    for ax, (points, panel_title, xlabel, unit) in zip(axes[0], panels):
        _reference_band(ax, results, tolerance_points)
        front = pareto_front(points)
        if front:
            xs, ys = zip(*[(p[0], p[1]) for p in front])
            ax.step(xs, ys, where="post", color="#222222", lw=1.2, alpha=0.6, label="Pareto frontier")
        front_names = {p[2] for p in front}
        for size, uar, name in points:
            on_front = name in front_names
            ax.scatter(size, uar, s=70 if on_front else 40, color=colour(name), zorder=3,
                       edgecolor="black" if on_front else "none", linewidth=1.2)
        _log_axis(ax.xaxis, unit=unit)
        if ax is axes[0][0]:  # where it covers no point ("best"), before the labels, which keep clear of it
            ax.legend(loc="best", fontsize=8)
        _label_points(ax, [(p[0], p[1], p[2], p[2] in front_names) for p in points])
        ax.set_title(panel_title)
        ax.set_xlabel(xlabel.replace("(log scale)", "") if ax.get_xscale() == "linear" else xlabel)
    axes[0][0].set_ylabel("test UAR (host LiteRT)")
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


_MARKERS = "os^Dv<>ph*"  # one per measurement source (host, then devices); repeats beyond ten
_DASHES = ("-", "--", "-.", ":")


def plot_uar_vs_latency(results: Results, path: Path, *, tolerance_points: float) -> Path:
    """UAR against median latency on the host and on every device whose clock measures time; a device whose
    clock counts instructions (QEMU) is not drawn on a time axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.4), layout="constrained")
    _reference_band(ax, results, tolerance_points)
    markers = {source: _MARKERS[i % len(_MARKERS)] for i, source in enumerate(results.sources)}
    labelled = []
    for variant in _measured(results):
        for m in variant.measurements:
            if m.uar is None or m.unit != "ms":
                continue
            ax.scatter(m.latency.median_ms, m.uar, s=50, color=colour(variant.name), marker=markers[m.source], zorder=3)
            labelled.append((m.latency.median_ms, m.uar, variant.name, False))
    _log_axis(ax.xaxis, unit="ms")
    _label_points(ax, labelled)
    for source, marker in markers.items():
        ax.scatter([], [], marker=marker, color="#555555", label="host LiteRT, 1 thread" if source == "host"
                   else source)
    ax.set_xlabel("median inference latency (log scale)")
    ax.set_ylabel("test UAR")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Accuracy vs latency: up and to the left is better")
    return _save(fig, path)


def plot_sparsity(results: Results, path: Path) -> Path | None:
    """Per-layer weight sparsity of every pruned variant, in graph order; None if nothing was pruned."""
    pruned = [v for v in results.variants if v.ok and v.metrics.sparsity.pruned_layers]
    if not pruned:
        return None
    plt = _pyplot()
    layers = pruned[0].metrics.sparsity.tensors
    fig, ax = plt.subplots(figsize=(max(7.5, 0.12 * len(layers) + 3), 4.2), layout="constrained")
    width = 0.8 / len(pruned)
    for i, variant in enumerate(pruned):
        values = [tensor.sparsity for tensor in variant.metrics.sparsity.tensors]
        ax.bar(np.arange(len(values)) + (i - (len(pruned) - 1) / 2) * width, values, width=width,
               color=colour(variant.name), label=f"{variant.name} ({_pct(variant.metrics.sparsity.weights)} "
                                                 f"of all weights)")
    target = pruned[0].metrics.sparsity.target
    if target:
        ax.axhline(target, color="black", ls="--", lw=1, label=f"target {_pct(target)} over the pruned layers")
    if len(layers) <= 30:
        ax.set_xticks(range(len(layers)), [_short_layer(layer.name) for layer in layers], rotation=60,
                      ha="right", fontsize=7)
    else:
        ax.set_xlabel("weight tensor (graph order)")
    ax.set_ylim(0, 1)
    ax.set_ylabel("zeros in the int8 weights")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Sparsity per layer, read from the .tflite (layers below min_weights are not pruned)")
    return _save(fig, path)


def plot_layer_error(results: Results, path: Path) -> Path | None:
    """SQNR of every quantized tensor against the float model, in execution order, one line per integer
    variant; None if no variant has the record. Where a line drops is where that variant loses the model."""
    recorded = [v for v in results.variants if v.ok and v.metrics.layer_error]
    if not recorded:
        return None
    plt = _pyplot()
    layers = [t.layer for t in recorded[0].metrics.layer_error]
    fig, ax = plt.subplots(figsize=(max(7.5, 0.18 * len(layers) + 3), 4.2), layout="constrained")
    for i, variant in enumerate(recorded):  # each its own marker, dash and a small sideways step: equal
        values = [t.sqnr_db for t in variant.metrics.layer_error]  # lines stay visible side by side
        dodge = 0.08 * (i - (len(recorded) - 1) / 2)
        ax.plot(np.arange(len(values)) + dodge, [np.nan if v is None else v for v in values],
                marker=_MARKERS[i % len(_MARKERS)], ms=4, lw=1.3, ls=_DASHES[i % len(_DASHES)],
                color=colour(variant.name), label=variant.name)
    if len(layers) <= 40 and all(len(v.metrics.layer_error) == len(layers) for v in recorded):
        ax.set_xticks(range(len(layers)), layers, rotation=60, ha="right", fontsize=7)
    else:
        ax.set_xlabel("quantized tensor (execution order)")
    ax.set_ylabel("SQNR against the float model (dB)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Where the accuracy goes: error of every quantized tensor, end to end (higher is better)")
    return _save(fig, path)


def plot_confusion(results: Results, path: Path, variants: list[VariantResult]) -> Path | None:
    """Row-normalised confusion matrices (per chunk, host) of the given variants side by side."""
    shown = [v for v in variants if v.host is not None and v.host.confusion]
    if not shown:
        return None
    plt = _pyplot()
    n = len(shown[0].host.confusion)
    labels = list(results.classes) if len(results.classes) == n else [str(i) for i in range(n)]
    size = min(6.0, 2.2 + 0.35 * n)
    fig, axes = plt.subplots(1, len(shown), figsize=(size * len(shown), size + 0.6), squeeze=False,
                             layout="constrained")
    for ax, variant in zip(axes[0], shown):
        matrix = np.asarray(variant.host.confusion, dtype=float)
        rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for (row, col), value in np.ndenumerate(matrix):
            if value:
                ax.text(col, row, f"{int(value)}", ha="center", va="center", fontsize=7,
                        color="white" if rates[row, col] > 0.6 else "black")
        ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.grid(False)
        ax.set_title(f"{variant.name}: UAR {variant.host.uar:.3f}")
    fig.suptitle("Confusion per chunk (counts; colour = share of the true class)", fontsize=11)
    return _save(fig, path)


def plot_board_fit(results: Results, boards: list[BoardConfig], fits: Fits, path: Path) -> Path:
    plt = _pyplot()
    names = [v.name for v in results.variants if v.ok]
    fig, ax = plt.subplots(figsize=(1.45 * len(boards) + 1.6, 0.42 * len(names) + 1.2), layout="constrained")
    for row, name in enumerate(names):
        for col, board in enumerate(boards):
            fit = fits[name][board.name]
            kind = "none" if fit is None else ("short" if not fit.fits else
                                               "psram" if fit.arena_in_external_ram else "fits")
            ax.add_patch(plt.Rectangle((col, row), 1, 1, color=_FIT_COLOURS[kind], ec="white", lw=2))
            ax.text(col + 0.5, row + 0.5, fit_cell(fit, board).replace("; ", "\n"), ha="center", va="center",
                    fontsize=7.5)
    ax.set_xlim(0, len(boards))
    ax.set_ylim(len(names), 0)
    ax.set_xticks(np.arange(len(boards)) + 0.5, [b.name for b in boards])
    ax.xaxis.tick_top()
    ax.set_yticks(np.arange(len(names)) + 0.5, names)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(length=0)
    ax.set_title("Does it fit? flash = model + runtime + system; RAM = arena + frontend + system",
                 fontsize=9, pad=24)
    return _save(fig, path)


# --- helpers -----------------------------------------------------------------------------------------------

def _measured(results: Results) -> list[VariantResult]:
    return [v for v in results.variants if v.ok and v.host is not None and v.host.uar is not None]


def _reference_band(ax, results: Results, tolerance_points: float) -> None:
    ref = results.float_uar
    ax.axhline(ref, color="#6b6b6b", ls="--", lw=1, label=f"float Keras {ref:.3f}")
    ax.axhspan(ref - tolerance_points / 100, ref, color="#6b6b6b", alpha=0.08,
               label=f"within {tolerance_points:g} point{'s' if tolerance_points != 1 else ''}")


# Where a label may go, in points from its marker, nearest first: beside it, then ever further above and
# below on either side (a label away from its marker gets a leader line).
_LABEL_OFFSETS = [(6, 0), (-6, 0), (6, 9), (6, -9), (-6, 9), (-6, -9),
                  *[(side * 10, sign * step) for step in (18, 27, 36, 45, 54) for side in (1, -1) for sign in (1, -1)]]


def _label_points(ax, points: list[tuple[float, float, str, bool]]) -> None:
    """Names beside the points, each at the nearest offset where its measured text box overlaps no other
    label, no marker and stays inside the axes: equal points get readable, separate names."""
    fig = ax.figure
    fig.canvas.draw()  # settle the limits so display coordinates are final
    renderer = fig.canvas.get_renderer()
    markers = [ax.transData.transform((x, y)) for x, y, *_ in points]
    frame = ax.get_window_extent(renderer)
    legend = ax.get_legend()
    blocked = [legend.get_window_extent(renderer)] if legend is not None else []
    placed = []
    for x, y, name, bold in sorted(points, key=lambda p: (p[0], -p[1])):
        for dx, dy in _LABEL_OFFSETS:
            text = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7.5,
                               fontweight="bold" if bold else "normal", color="#222222", va="center",
                               ha="left" if dx > 0 else "right")
            box = text.get_window_extent(renderer).padded(1.5)
            free = (frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
                    and not any(box.overlaps(other) for other in (*placed, *blocked))
                    and not any(box.padded(3).contains(mx, my) for mx, my in markers))
            if free:
                break
            text.remove()
        else:
            text = ax.annotate(name, (x, y), xytext=_LABEL_OFFSETS[0], textcoords="offset points", fontsize=7.5,
                               color="#222222", va="center")
            box = text.get_window_extent(renderer)
        if abs(dy) > 9:
            ax.annotate("", (x, y), xytext=(dx, dy), textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "color": "#999999", "lw": 0.6, "shrinkA": 0, "shrinkB": 4})
        placed.append(box)


def _log_axis(axis, *, unit: str) -> None:
    """Log scale with ticks at 1, 2, 3, 5 and 7 of each decade (more under half a decade, so that at least
    two show), fewer the more decades it spans, labelled
    in plain numbers with the unit (KB turn into MB from 1024 KB). Figures within 20 % of each other (pruning
    that changed nothing, say) get a linear axis 15 % either side of them instead, whose ticks differ."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    def label(value, _pos):
        if unit == "KB" and value >= 1024:
            return f"{value / 1024:.3g} MB"
        return f"{value:.3g} {unit}"

    axis.axes.autoscale_view()
    low, high = axis.get_data_interval()
    if 0 < low and high < 1.2 * low:
        centre = float(np.sqrt(low * high))
        axis.axes.set_xlim(centre / 1.15, centre * 1.15)
        axis.set_major_locator(MaxNLocator(5))
        axis.set_major_formatter(FuncFormatter(label))
        return
    axis.axes.set_xscale("log")
    axis.axes.autoscale_view()
    low, high = axis.get_view_interval()
    decades = np.log10(max(high, 1e-12) / max(low, 1e-12))
    # fewer ticks the more decades the axis spans, so their labels never run into each other
    subs = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0) if decades < 0.4 else \
        (1.0, 2.0, 3.0, 5.0, 7.0) if decades < 0.8 else (1.0, 2.0, 5.0) if decades < 1.6 else \
        (1.0, 3.0) if decades < 3 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(label))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())


def _short_layer(name: str) -> str:
    """The Keras layer in a TFLite tensor name: the op's own part comes last ('.../dscnn_dw1_bn/FusedBatchNormV3;
    .../dscnn_dw1/depthwise' → 'dscnn_dw1')."""
    last = name.split(";")[-1]
    parts = [p for p in last.split("/") if p]
    return (parts[-2] if len(parts) >= 2 else last).removeprefix(WRAPPER_PREFIX)


def _pct(value: float) -> str:
    return f"{100 * value:.0f} %"


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path

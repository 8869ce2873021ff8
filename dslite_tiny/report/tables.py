"""The report's tables as plain rows of strings (rendered to Markdown and HTML alike), one per question:
how accurate is each variant (``accuracy_table``), how does it do on the devices it ran on
(``device_table``: the device's own clock and chunk count from its record), what does it take and how fast
is it on the host (``host_table``), does it fit each board (``fit_table``), and which to take
(``recommendations``). ``variant_table`` is all of it in one wide row per variant, for ``variants.csv``."""
from __future__ import annotations

import dataclasses

from dslite_tiny.config import BoardConfig
from dslite_tiny.export.boards import (Fit, Footprint, arena_estimate, check_fit, engine_need, footprint,
                                      format_bytes)
from dslite_tiny.measure.layer_error import largest_drops
from dslite_tiny.report.results import Measurement, Results, VariantResult

Table = tuple[list[str], list[list[str]]]  # header, rows
MIN_AGREEMENT = 0.95  # a recommended variant flips at most 5 % of the float model's predictions
Fits = dict[str, dict[str, Fit | None]]  # variant → board → fit (None: not measurable there)


def board_fits(results: Results, boards: list[BoardConfig]) -> Fits:
    """Every ok variant on every board. On a TFLite Micro board only a variant TFLM ran (its arena measured)
    gets a verdict; on an engine board only a variant the engine runs (its exact constants and arena); LiteRT
    falls back to the activation bytes (no reuse: an upper bound)."""
    fits: Fits = {}
    engine_boards = any(b.runtime == "engine" for b in boards)
    for variant in results.variants:
        if variant.ok:
            engine = _engine_need(variant, results) if engine_boards else None
            fits[variant.name] = {board.name: _fit(variant, board, results, engine) for board in boards}
    return fits


def _fit(variant: VariantResult, board: BoardConfig, results: Results, engine: Footprint | None) -> Fit | None:
    if board.runtime == "engine":
        return check_fit(engine, board) if engine is not None else None
    arena = (variant.arena_bytes if board.runtime == "tflm"
             else arena_estimate(variant.arena_bytes, variant.size.activation_bytes))
    if arena is None:
        return None
    need = footprint(model_bytes=variant.size.tflite_bytes, arena_bytes=arena, frontend=results.frontend,
                     ops=variant.metrics.ops)
    return check_fit(need, board)


def _engine_need(variant: VariantResult, results: Results) -> Footprint | None:
    """The generated engine's footprint for the variant's model, from compress's Cortex-M4 record: its
    constants in flash, its arena with the input and output in RAM (None: the engine does not run it)."""
    m4 = variant.metrics.cortex_m4
    if m4 is None or not m4.ok:
        return None
    return engine_need(constant_bytes=m4.constant_bytes, ram_bytes=m4.ram_bytes, op_calls=m4.op_calls,
                       frontend=results.frontend)


def accuracy_table(results: Results) -> Table:
    """Per variant on the host (LiteRT, every test chunk): UAR against the float model's, accuracy,
    agreement, and what its build did not do."""
    header = ["variant", "UAR", "ΔUAR ± SE", "UAR (files)", "accuracy", "agreement", "notes"]
    rows = []
    for v in results.variants:
        if not v.ok:
            rows.append([v.name, "failed", "", "", "", "", v.reason])
            continue
        m = v.host
        rows.append([v.name, num(m.uar, 3), _delta_cell(m, results.float_uar), num(m.uar_files, 3),
                     num(m.accuracy, 3), percent(m.agreement), "; ".join(v.metrics.caveats)])
    return header, rows


def device_table(results: Results) -> Table:
    """One row per device run: its chunk count, its UAR against the host's on the same chunks (a partial run
    is compared with nothing else), agreement with the host, and its timings in its clock's unit."""
    header = ["variant", "device", "clock", "chunks", "UAR", "ΔUAR vs host", "agreement with host", "inference",
              "frontend"]
    rows = []
    for v in results.variants:
        for m in v.measurements[1:]:
            rows.append([v.name, m.source, m.clock, _chunks(m), num(m.uar, 3), signed(_delta(m.uar, m.host_uar)),
                         percent(m.agreement), timing(m.latency.median_ms, m.unit),
                         timing(m.frontend.median_ms if m.frontend else None, m.unit)])
    return header, rows


def cortex_m4_table(results: Results) -> Table:
    """Per int8 variant, what the generated engine costs on a Cortex-M4 (compress's record): flash, RAM and
    instructions per inference, beside its accuracy, so the trade-off is read where the model runs."""
    header = ["variant", "flash", "RAM (arena + I/O)", "instructions", "UAR", "ΔUAR ± SE", "agreement",
              "measured by"]
    rows = []
    for v in results.variants:
        m4 = v.metrics.cortex_m4 if v.ok else None
        if m4 is None:
            continue
        if not m4.ok:
            rows.append([v.name, "—", "—", "—", num(v.host.uar, 3), "", "", f"not run by the engine: {m4.reason}"])
            continue
        rows.append([v.name, kb(m4.flash_bytes), kb(m4.ram_bytes), instructions(m4.instructions, m4.method),
                     num(v.host.uar, 3), _delta_cell(v.host, results.float_uar), percent(v.host.agreement),
                     "QEMU -icount" if m4.method == "qemu-icount" else "estimate (no QEMU: calibrated model)"])
    return header, rows


def instructions(count: int | None, method: str | None = "qemu-icount") -> str:
    """Millions of instructions; "≈" marks the calibrated model's estimate."""
    return "—" if count is None else f"{'≈' if method == 'estimate' else ''}{count / 1e6:.2f} M"


def host_table(results: Results, board: BoardConfig, fits: Fits) -> Table:
    """What each variant takes (weights, TFLM arena, flash and RAM on ``board``, MACs, sparsity) and its
    LiteRT latency on the host."""
    header = ["variant", "weights (flash)", "activations (arena)", f"flash on {board.name}", f"RAM on {board.name}",
              "MACs", "sparsity", "host latency (1 thread)"]
    rows = []
    for v in results.variants:
        if v.ok:
            fit = fits.get(v.name, {}).get(board.name)
            rows.append([v.name, kb(v.size.weight_bytes), kb(v.arena_bytes), _need(fit, "flash"), _need(fit, "ram"),
                         count(v.size.macs), _sparsity(v), timing(v.host.latency.median_ms, v.host.unit)])
    return header, rows


def _sparsity(variant: VariantResult) -> str:
    sparsity = variant.metrics.sparsity
    pruned = sparsity.pruned_layers
    return percent(sparsity.weights) + (f" ({percent(pruned)} pruned layers)" if pruned else "")


def _chunks(m: Measurement) -> str:
    """"10 of 40" for a partial run; a record from before the split's size was recorded gives its count."""
    if m.chunks is None:
        return "—"
    return str(m.chunks) if m.test_chunks is None else f"{m.chunks} of {m.test_chunks}"


def _delta(uar: float | None, reference: float | None) -> float | None:
    return None if uar is None or reference is None else 100 * (uar - reference)


def _delta_cell(measurement: Measurement, float_uar: float | None) -> str:
    """ΔUAR in points with its paired-bootstrap standard error where recorded: two variants whose ΔUAR
    differ by less than about two of these are not ranked by this test set."""
    text = signed(_delta(measurement.uar, float_uar))
    error = measurement.delta_uar_se
    return text if error is None or text == "—" else f"{text} ± {100 * error:.1f}"


def variant_table(results: Results, board: BoardConfig, fits: Fits) -> Table:
    sources = results.sources
    header = ["variant", "status", "weights (flash)", "activations (arena)", f"flash on {board.name}",
              f"RAM on {board.name}", "MACs"]
    for source in sources:
        header += _source_columns(source)
    header += ["sparsity", "notes"]
    rows = [_variant_row(variant, results, board, fits, sources) if variant.ok
            else [variant.name, "failed", *[""] * (len(header) - 3), variant.reason] for variant in results.variants]
    return header, rows


def _variant_row(variant: VariantResult, results: Results, board: BoardConfig, fits: Fits,
                 sources: list[str]) -> list[str]:
    fit = fits.get(variant.name, {}).get(board.name)
    row = [variant.name, "ok", kb(variant.size.weight_bytes), kb(variant.arena_bytes),
           _need(fit, "flash"), _need(fit, "ram"), count(variant.size.macs)]
    by_source = {m.source: m for m in variant.measurements}
    for source in sources:
        m = by_source.get(source)
        row += ["—"] * len(_source_columns(source)) if m is None else _source_cells(m, results)
    notes = [*variant.metrics.caveats, *([] if fit is None or fit.fits else [f"does not fit {board.name}"])]
    return [*row, _sparsity(variant), "; ".join(notes)]


def _source_columns(source: str) -> list[str]:
    """The columns of one measurement source; a device adds its chunk count and frontend time (the host
    scores every chunk and gets features)."""
    if source == "host":
        return ["UAR", "ΔUAR", "UAR (files)", "accuracy", "agreement", "host latency (1 thread)"]
    return [f"chunks ({source})", f"UAR ({source})", f"ΔUAR vs host ({source})", f"UAR files ({source})",
            f"accuracy ({source})", f"agreement ({source})", f"inference ({source})", f"frontend ({source})"]


def _source_cells(m: Measurement, results: Results) -> list[str]:
    """A device's ΔUAR is against the host's on the same chunks; its timings carry their unit."""
    if m.source == "host":
        return [num(m.uar, 3), signed(_delta(m.uar, results.float_uar)), num(m.uar_files, 3), num(m.accuracy, 3),
                percent(m.agreement), timing(m.latency.median_ms, m.unit)]
    return [_chunks(m), num(m.uar, 3),
            signed(_delta(m.uar, m.host_uar)), num(m.uar_files, 3), num(m.accuracy, 3), percent(m.agreement),
            timing(m.latency.median_ms, m.unit), timing(m.frontend.median_ms if m.frontend else None, m.unit)]


def timing(milliseconds: float | None, unit: str) -> str:
    """A recorded "milliseconds" figure in its unit: time, or M instructions where QEMU counted them."""
    if milliseconds is None:
        return "—"
    if unit != "ms":
        return f"{milliseconds:.2f} {unit}"
    return ms(milliseconds)


def fit_table(results: Results, boards: list[BoardConfig], fits: Fits) -> Table:
    header = ["variant", *[b.name for b in boards]]
    rows = []
    for variant in results.variants:
        if variant.ok:
            rows.append([variant.name, *[fit_cell(fits[variant.name][b.name], b) for b in boards]])
    return header, rows


# Why a variant has no verdict on a board, by what runs models there.
_NOT_RUN = {"tflm": "not run in TFLM", "engine": "not run by the engine, or not measured (cortex_m4 off)",
            "litert": "not measured"}


def fit_cell(fit: Fit | None, board: BoardConfig) -> str:
    if fit is None:
        return _NOT_RUN[board.runtime]
    if fit.fits:
        return "fits" + (" (PSRAM)" if fit.arena_in_external_ram else "")
    parts = [f"flash {fit.flash_verdict}" if fit.flash_short else "", f"RAM {fit.ram_verdict}" if fit.ram_short else ""]
    return "; ".join(p for p in parts if p)


@dataclasses.dataclass(frozen=True)
class Recommendation:
    board: str
    variant: str | None
    text: str


def recommendations(results: Results, boards: list[BoardConfig], fits: Fits, *, tolerance_points: float,
                    min_agreement: float = MIN_AGREEMENT) -> list[Recommendation]:
    """Per board: the smallest variant (model bytes) that fits, whose host UAR is within ``tolerance_points``
    of the float Keras model's and which makes the float model's decision on at least ``min_agreement`` of
    the chunks: a variant that flips many predictions is another model, whatever its UAR. On a board that
    runs the generated engine, the fastest such variant (Cortex-M4 instructions, where measured)."""
    floor = results.float_uar - tolerance_points / 100
    out = []
    for board in boards:
        fitting = [v for v in results.variants if v.ok and fits[v.name][board.name] is not None
                   and fits[v.name][board.name].fits]
        good = sorted((v for v in fitting if v.host.uar is not None and v.host.uar >= floor - 1e-9
                       and (v.host.agreement or 0.0) >= min_agreement - 1e-9),
                      key=lambda v: (*((_instructions(v),) if board.runtime == "engine" else ()),
                                     v.size.tflite_bytes, -v.host.uar))
        if good:
            best = good[0]
            fit = fits[best.name][board.name]
            m4 = best.metrics.cortex_m4
            speed = (f"{instructions(m4.instructions, m4.method)} instructions per inference, "
                     if board.runtime == "engine" and _instructions(best) < float("inf") else "")
            text = (f"**{best.name}**: {speed}{kb(best.size.tflite_bytes)}, UAR {best.host.uar:.3f} "
                    f"({signed(100 * (best.host.uar - results.float_uar))} points vs float, "
                    f"{percent(best.host.agreement)} agreement), "
                    f"flash {kb(fit.flash_needed)} of {kb(fit.flash_available)}, "
                    f"RAM {kb(fit.ram_needed)} of {kb(fit.ram_available)}"
                    + "".join(f". Note: {caveat}" for caveat in best.metrics.caveats))
            out.append(Recommendation(board.name, best.name, text))
        elif fitting:
            top = max(fitting, key=lambda v: v.host.uar or 0.0)
            out.append(Recommendation(board.name, None,
                                      f"none within {tolerance_points:g} points and {percent(min_agreement)} "
                                      f"agreement; the most accurate that fits is {top.name} (UAR "
                                      f"{top.host.uar:.3f}, {percent(top.host.agreement)} agreement)"))
        else:
            out.append(Recommendation(board.name, None, "no variant fits"))
    return out


def _instructions(variant: VariantResult) -> float:
    """Cortex-M4 instructions per inference (infinite where not measured: those rank last)."""
    m4 = variant.metrics.cortex_m4
    return m4.instructions if m4 is not None and m4.ok and m4.instructions is not None else float("inf")


def layer_error_table(results: Results) -> Table:
    """Per integer variant: the output's SQNR against the float model and the tensors where it drops most
    from the tensor before (metrics.json's ``layer_error`` record): where that variant departs from the
    model, comparable across int8 and int16 variants."""
    header = ["variant", "output SQNR", "lowest SQNR", "largest drops"]
    rows = []
    for variant in results.variants:
        tensors = [t for t in variant.metrics.layer_error if t.sqnr_db is not None]
        if not tensors:
            continue
        lowest = min(tensors, key=lambda t: t.sqnr_db)
        drops = largest_drops([(t.layer, t.sqnr_db) for t in tensors])
        rows.append([variant.name, db(tensors[-1].sqnr_db), f"{db(lowest.sqnr_db)} ({lowest.layer})",
                     ", ".join(f"{layer} −{drop:.1f} dB" for layer, drop in drops) or "none"])
    return header, rows


# --- cell formats ------------------------------------------------------------------------------------------

def kb(size: int | None) -> str:
    return "—" if size is None else format_bytes(size)


def count(value: int | None) -> str:
    if value is None:
        return "—"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return str(value)


def num(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1f}"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def db(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} dB"


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f} ms" if value < 1 else f"{value:.2f} ms"


def _need(fit: Fit | None, which: str) -> str:
    if fit is None:
        return "—"
    needed, short = (fit.flash_needed, fit.flash_short) if which == "flash" else (fit.ram_needed, fit.ram_short)
    return kb(needed) + (" ✗" if short else " ✓")

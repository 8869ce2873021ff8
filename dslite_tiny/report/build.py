"""``report``: the accuracy/size/latency trade-off of a compress run as ``report.md``, a self-contained
``report.html``, PNG plots and ``variants.csv``, built only from the run's files (regenerate any time).

    REPORT/report.md, report.html, variants.csv (the variant table), board_fit.csv (the fit matrix)
    REPORT/plots/uar_vs_size.png, uar_vs_cortex_m4.png, uar_vs_latency.png, sparsity.png, confusion.png,
                 board_fit.png, layer_error.png
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from dslite_tiny.config import BoardConfig
from dslite_tiny.errors import UserError
from dslite_tiny.export.boards import (ENGINE_CALL_BYTES, ENGINE_KERNEL_BYTES, IO_BYTES, LITERT_CODE_BYTES, code_table,
                                       list_boards, load_board)
from dslite_tiny.report import plots
from dslite_tiny.report.render import to_html, to_markdown
from dslite_tiny.report.results import Results, VariantResult, load_results
from dslite_tiny.records import CLOCKS
from dslite_tiny.report.tables import (MIN_AGREEMENT, accuracy_table, board_fits, cortex_m4_table, device_table,
                                      fit_table, host_table, kb, layer_error_table, percent, recommendations,
                                      variant_table)

DEFAULT_BOARD = "nano33ble"


@dataclasses.dataclass
class ReportResult:
    report_dir: Path
    markdown: Path
    html: Path
    plots: list[Path]
    recommendations: list  # tables.Recommendation


def build_report(out_dir: str | Path, *, report_dir: str | Path | None = None, board: str = DEFAULT_BOARD,
                 boards: list[str] | None = None, tolerance_points: float = 1.0,
                 min_agreement: float = MIN_AGREEMENT) -> ReportResult:
    """Write the report of the compress output ``out_dir`` (default folder: ``out_dir/report``)."""
    if not 0 <= tolerance_points <= 100:
        raise UserError(f"--tolerance {tolerance_points} is out of range; allowed: 0 to 100 UAR points")
    if not 0 <= min_agreement <= 1:
        raise UserError(f"--min-agreement {min_agreement} is out of range; allowed: 0 to 1")
    results = load_results(out_dir)
    report_dir = Path(report_dir) if report_dir is not None else Path(out_dir) / "report"
    profiles = [load_board(name) for name in (boards or list_boards())]
    table_board = load_board(board)
    if table_board.name not in [p.name for p in profiles]:
        profiles.append(table_board)
    fits = board_fits(results, profiles)
    figures = _plots(results, profiles, fits, report_dir / "plots", tolerance_points)
    advice = recommendations(results, profiles, fits, tolerance_points=tolerance_points, min_agreement=min_agreement)
    blocks = _document(results, table_board, profiles, fits, figures, advice, tolerance_points, min_agreement)
    report_dir.mkdir(parents=True, exist_ok=True)
    markdown = report_dir / "report.md"
    markdown.write_text(to_markdown(blocks, base=report_dir), encoding="utf-8")
    page = report_dir / "report.html"
    page.write_text(to_html(blocks, title=title(results).replace("`", "")), encoding="utf-8")
    _write_csv(report_dir / "variants.csv", *variant_table(results, table_board, fits))
    _write_csv(report_dir / "board_fit.csv", *fit_table(results, profiles, fits))
    return ReportResult(report_dir, markdown, page, [p for p, _ in figures.values()], advice)


def title(results: Results) -> str:
    """The model and the run: ``Compression report: `../model/model.h5` → `compressed/` ``."""
    return f"Compression report: `{results.model_path}` → `{results.out_dir.resolve().name}/`"


def best_int8(results: Results) -> VariantResult | None:
    """The most accurate ok int8 variant (ties: the smaller file)."""
    int8 = [v for v in results.variants if v.ok and v.name.endswith("int8") and v.host and v.host.uar is not None]
    return max(int8, key=lambda v: (v.host.uar, -v.size.tflite_bytes), default=None)


def _plots(results: Results, boards: list[BoardConfig], fits, folder: Path,
           tolerance_points: float) -> dict[str, tuple[Path, str]]:
    """{key: (png, caption)} of every figure that has data."""
    chosen = [v for v in (_variant(results, "float32"), best_int8(results)) if v is not None]
    figures = {
        "size": (plots.plot_uar_vs_size(results, folder / "uar_vs_size.png", tolerance_points=tolerance_points),
                 "Test UAR against model size. Bold names and black rings: the Pareto frontier."),
        "m4": (plots.plot_uar_vs_cortex_m4(results, folder / "uar_vs_cortex_m4.png",
                                           tolerance_points=tolerance_points),
               "Test UAR against the generated engine's instructions per inference and flash on a Cortex-M4. Bold "
               "names and black rings: the Pareto frontier."),
        "latency": (plots.plot_uar_vs_latency(results, folder / "uar_vs_latency.png",
                                              tolerance_points=tolerance_points),
                    "Test UAR against median inference latency."),
        "sparsity": (plots.plot_sparsity(results, folder / "sparsity.png"),
                     "Weight sparsity per layer of the pruned variants."),
        "confusion": (plots.plot_confusion(results, folder / "confusion.png", chosen),
                      "Confusion matrices of the float32 model and the most accurate int8 variant."),
        "fit": (plots.plot_board_fit(results, boards, fits, folder / "board_fit.png"),
                "Flash and RAM fit of every variant on every board profile."),
        "layers": (plots.plot_layer_error(results, folder / "layer_error.png"),
                   "SQNR of every quantized tensor against the float model on the test chunks (the record in "
                   "each variant's metrics.json). A drop marks the layer where a variant departs from the model."),
    }
    return {key: value for key, value in figures.items() if value[0] is not None}


def _document(results: Results, board: BoardConfig, boards: list[BoardConfig], fits, figures, advice,
              tolerance_points: float, min_agreement: float) -> list[tuple]:
    ref = results.reference
    ok = [v for v in results.variants if v.ok]
    failed = [v for v in results.variants if not v.ok]
    blocks: list[tuple] = [
        ("h1", title(results)),
        ("p", f"Source model `{results.model_path}` (SHA-256 `{ref.sha256[:16]}…`), run finished "
              f"{results.finished[:16].replace('T', ' ')}, "
              f"{len(results.variants)} variants ({len(ok)} ok, {len(failed)} failed), scored on the "
              f"{ref.split} split: {ref.features}. Float Keras UAR "
              f"**{results.float_uar:.3f}**."),
        ("h2", "Recommendation"),
        ("p", f"The smallest variant within {tolerance_points:g} UAR point{'s' if tolerance_points != 1 else ''} "
              f"of the float model, agreeing with its prediction on at least {percent(min_agreement)} of the "
              f"chunks, that fits each board:"),
        ("list", [f"`{r.board}`: {r.text}" for r in advice]),
    ]
    blocks += [("h2", "Accuracy"), ("table", accuracy_table(results)),
               ("p", "On the host (LiteRT), every test chunk. ΔUAR: points against the float Keras model, ± its "
                     "standard error (a paired bootstrap over the test files: variants whose ΔUAR differ by less "
                     "than about two of these are not ranked by this test set); agreement: chunks on which the "
                     "variant predicts what the float model predicts; UAR (files): the mean-score vote of each "
                     "file's chunks.")]
    if "size" in figures:
        blocks.append(("image", *figures["size"]))
    blocks += [("h2", "On the devices"), *_cortex_m4_blocks(results, figures), *_device_blocks(results),
               ("h2", "Board fit")]
    if "fit" in figures:
        blocks.append(("image", *figures["fit"]))
    blocks += [("p", "What runs the model on each board, and whether it gives the host's int8 scores bit for bit "
                     "(where not, `dslite-tiny device eval` measures the agreement on the device):"),
               ("list", [f"`{b.name}`: {_runner(b)}; bit-exact with the host: {b.host_match}"
                         for b in boards if b.microcontroller])]
    blocks += [("h2", f"Size and speed (totals for `{board.name}`)"), ("table", host_table(results, board, fits)),
               ("p", _table_notes(board))]
    if "latency" in figures:
        blocks.append(("image", *figures["latency"]))
    blocks.append(("h2", "Sparsity"))
    blocks.append(("image", *figures["sparsity"]) if "sparsity" in figures else
                  ("p", "No pruned variant in this run."))
    errors = layer_error_table(results)
    if errors[1]:
        blocks += [("h2", "Where the accuracy goes"), ("table", errors)]
        if "layers" in figures:
            blocks.append(("image", *figures["layers"]))
    if "confusion" in figures:
        blocks += [("h2", "Confusion"), ("image", *figures["confusion"])]
    if failed:
        blocks += [("h2", "Failed variants"), ("list", [f"`{v.name}`: {v.reason}" for v in failed])]
    return blocks


def _cortex_m4_blocks(results: Results, figures: dict) -> list[tuple]:
    table = cortex_m4_table(results)
    if not table[1]:
        return []
    blocks = [("p", "**Cortex-M4, generated engine** (`compress` measures every int8 variant: flash of the "
                    "kernels, model code and constants compiled for the M4F; RAM of the planned arena with input "
                    "and output; instructions per inference counted by QEMU's `mps2-an386` under `-icount`, the "
                    "median of three test chunks). UAR and agreement are the host's, which the engine matches bit "
                    "for bit."), ("table", table)]
    if "m4" in figures:
        blocks.append(("image", *figures["m4"]))
    return blocks


def _device_blocks(results: Results) -> list[tuple]:
    table = device_table(results)
    if not table[1]:
        return [("p", "No device has run a variant yet: `dslite-tiny device eval` adds its results here.")]
    clocks = sorted({row[2] for row in table[1]})
    return [("table", table),
            ("p", "Each run as its results file records it: UAR over the chunks the device ran, ΔUAR against the "
                  "host's UAR on the same chunks (LiteRT), agreement with the host's predictions. Timings are in "
                  "the unit of the device's clock: " + "; ".join(f"`{c}`: {CLOCKS[c][1]}" for c in clocks) + ".")]


def _runner(board: BoardConfig) -> str:
    if board.runtime == "engine":
        return "the generated int8 engine (`export --target engine`), no TFLite Micro"
    return f"TFLite Micro from {board.tflm_library or 'a library the profile does not name'}"


def _table_notes(board: BoardConfig) -> str:
    system = (f"frontend tables + {kb(board.system_flash_kib * 1024)} system; RAM = arena + frontend buffers + "
              f"{IO_BYTES} B I/O + {kb(board.system_ram_kib * 1024)} system")
    if board.runtime == "engine":
        fit = (f"Flash on {board.name} = the generated engine's constants (weights, biases, requantization "
               f"tables) + its code ({kb(ENGINE_KERNEL_BYTES)} of kernels + {ENGINE_CALL_BYTES} B per op + the "
               f"firmware core) + {system}; the arena there is the engine's planned arena with its input and "
               f"output (int8 variants the engine runs only)")
    else:
        code = (f"TFLite Micro code measured on a Cortex-M4 ({kb(code_table()['core_bytes'])} core + the variant's "
                f"kernels + the firmware core)" if board.runtime == "tflm"
                else f"{kb(LITERT_CODE_BYTES)} LiteRT runtime estimate")
        fit = f"Flash on {board.name} = model + {code} + {system}"
    return (f"Weights: the flatbuffer's constant buffers. Activations: the TensorFlow Lite Micro arena, the "
            f"minimum found by bisection in the real TFLM interpreter (int8 variants only). {fit}. Host latency "
            f"is LiteRT's median on one thread of this machine.")


def _variant(results: Results, name: str) -> VariantResult | None:
    return next((v for v in results.variants if v.name == name and v.ok), None)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)

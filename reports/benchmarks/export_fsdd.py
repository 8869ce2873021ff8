"""Export and report on the real compress outputs of ``compress_fsdd.py`` (FSDD DS-CNN and MobileNet v1
α=0.25, DenseNet121 at 224×224×3).

Per model: the most accurate int8 variant exported as TFLite Micro C sources (export time, source size,
the array cross-compiled for a Cortex-M4 with its .rodata size and compile time), its flash/RAM fit on
every board profile, and the trade-off report, written to ``reports/fsdd/<model>/`` (the self-contained
report.html is left out of git; report.md shows the same plots).

    python reports/benchmarks/export_fsdd.py [--compressed $TMPDIR/dslite-tiny-compress]

Results: ``export_fsdd.json`` and ``export_fsdd.md``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dslite_tiny.export.boards import check_fit, footprint, format_bytes, list_boards, load_board
from dslite_tiny.export.targets import export_model
from dslite_tiny.report.build import best_int8, build_report
from dslite_tiny.report.results import load_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MODELS = ("dscnn-aug", "imagenet-noaug", "densenet121-224")
M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-Os", "-std=c++11"]


def measure(model: str, compressed: Path, work: Path) -> dict:
    results = load_results(compressed)
    best = best_int8(results)
    start = time.perf_counter()
    exported = export_model(compressed / best.name, target="c", name=model.replace("-", "_"), out_dir=work / model)
    export_s = time.perf_counter() - start
    source = next(p for p in exported.files if p.suffix == ".cc")
    row = {"model": model, "variant": best.name, "uar": best.host.uar, "float_uar": results.float_uar,
           "model_bytes": len(exported.variant.data), "arena_bytes": exported.variant.arena_bytes,
           "export_seconds": round(export_s, 2), "source_bytes": source.stat().st_size,
           "frontend_known": exported.variant.frontend is not None, "fit": {}}
    if shutil.which("arm-none-eabi-g++"):
        start = time.perf_counter()
        subprocess.run(["arm-none-eabi-g++", *M4_FLAGS, "-c", str(source), "-o", str(source.with_suffix(".o"))],
                       check=True)
        row["m4_compile_seconds"] = round(time.perf_counter() - start, 2)
        sections = subprocess.run(["arm-none-eabi-size", "-A", str(source.with_suffix(".o"))], capture_output=True,
                                  text=True, check=True).stdout
        row["m4_rodata_bytes"] = int(next(line.split()[1] for line in sections.splitlines()
                                          if line.startswith(".rodata")))
    need = footprint(model_bytes=row["model_bytes"], arena_bytes=row["arena_bytes"],
                     frontend=exported.variant.frontend, ops=exported.variant.description["ops"])
    for board in list_boards():
        fit = check_fit(need, load_board(board))
        row["fit"][board] = {"fits": fit.fits, "flash": fit.flash_verdict, "ram": fit.ram_verdict,
                             "flash_needed": fit.flash_needed, "ram_needed": fit.ram_needed}
    report = build_report(compressed, report_dir=ROOT / "reports" / "fsdd" / model)
    row["report"] = str(report.markdown.relative_to(ROOT))
    row["recommendations"] = {r.board: r.variant for r in report.recommendations}
    return row


def markdown(rows: list[dict], command: str) -> str:
    lines = ["# Export and report on the FSDD compress outputs", "", f"`{command}` (2 cores, no GPU).", "",
             "| model | best int8 | UAR (float) | model | arena | export | .cc source | M4 .rodata | M4 compile |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['variant']} | {r['uar']:.3f} ({r['float_uar']:.3f}) | "
                     f"{format_bytes(r['model_bytes'])} | {format_bytes(r['arena_bytes'])} | {r['export_seconds']} s | "
                     f"{format_bytes(r['source_bytes'])} | {r.get('m4_rodata_bytes', '—')} B | "
                     f"{r.get('m4_compile_seconds', '—')} s |")
    boards = list(rows[0]["fit"]) if rows else []
    lines += ["", "Fit of the best int8 variant (flash; RAM):", "", "| model | " + " | ".join(boards) + " |",
              "|---|" + "---|" * len(boards)]
    for r in rows:
        cells = [f"{f['flash']}; {f['ram']}" for f in r["fit"].values()]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    lines += ["", "Recommended variant per board (smallest within 1 UAR point of float that fits):", "",
              "| model | " + " | ".join(boards) + " |", "|---|" + "---|" * len(boards)]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(r["recommendations"].get(b) or "none" for b in boards) + " |")
    links = [f"[{r['model']}](../{Path(r['report']).relative_to('reports').as_posix()})" for r in rows]
    lines += ["", "Reports: " + ", ".join(links), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compressed", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-compress"))
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-export"))
    args = parser.parse_args()
    rows = []
    for model in MODELS:
        if not (args.compressed / model / "summary.csv").is_file():
            sys.exit(f"{model}: no compress output; run: python reports/benchmarks/compress_fsdd.py")
        rows.append(measure(model, args.compressed / model, args.work))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "fit"}))
    command = "python reports/benchmarks/export_fsdd.py"
    (HERE / "export_fsdd.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    (HERE / "export_fsdd.md").write_text(markdown(rows, command))


if __name__ == "__main__":
    main()

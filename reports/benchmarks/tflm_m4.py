"""Which TFLite Micro sources give the host's scores bit for bit on a Cortex-M4, and what they cost:
the firmware's TFLM backend (``dt_tflm.cc``) built with each source for QEMU's mps2-an386 and run there
(``-icount shift=0``: instruction counts), its int8 outputs compared with the ``tflite-micro`` wheel's.

Trees (local verification only; nothing of them enters the repository; CI has none):

* ``tflm``: tflite-micro at a commit, reference kernels. Assembled by ``assemble_tree`` from a checkout
  and the third-party headers its Makefile downloads (flatbuffers at the tag TFLM pins, gemmlowp, ruy's
  profiler header).
* ``tflm-cmsis``: the same with TFLM's CMSIS-NN kernels and CMSIS-NN at the commit TFLM pins.
* ``chirale``: the ``src`` folder of the Chirale_TensorFlowLite Arduino library (what the board profiles use).

    python reports/benchmarks/tflm_m4.py --tflm-checkout DIR --flatbuffers DIR --gemmlowp DIR --ruy DIR
        [--cmsis-nn DIR] [--chirale DIR] [--model-dir DIR] [--inputs 50]

Writes ``tflm_m4.json`` and ``tflm_m4.md`` next to this script.

``--more-models MODEL ...`` (needs ``--cmsis-nn``) measures further models (.tflite files or variant folders)
with ``tflm + CMSIS-NN`` only (10 random inputs each; each op's instructions, the median of two, from a
profiler TFLM calls around each op) and adds them to ``tflm_m4.json`` under ``more``, by the model's SHA-256:
``engine_m4.py`` sets them beside its rows of the same model (it writes its MobileNets to
``$TMPDIR/dslite-tiny-engine``)::

    python reports/benchmarks/tflm_m4.py --tflm-checkout DIR --flatbuffers DIR --gemmlowp DIR --ruy DIR \
        --cmsis-nn DIR --more-models $TMPDIR/dslite-tiny-demo/compressed/qat-int8 \
        $TMPDIR/dslite-tiny-engine/mobilenet_v1_025_96.tflite $TMPDIR/dslite-tiny-engine/mobilenet_v2_035_96.tflite \
        $TMPDIR/dslite-tiny-demo/compressed/{int8,pqat-int8,pruned-int8,slim-int8} \
        $TMPDIR/dslite-tiny-compress/dscnn-40x49-theo-s{0,1}/{int8,pqat-int8,pruned-int8,slim-int8}

``--code-sizes LABEL`` (needs ``--cmsis-nn``) measures instead what the board-fit check counts as runtime
code: the backend linked with the ``tflm + CMSIS-NN`` tree and no op (TFLM's core), then with each builtin
TFLM has a kernel for, one at a time (that kernel's growth of the code), and the firmware core's protocol
and frontend code. LABEL names the sources (``"tflite-micro 90b983c + CMSIS-NN 4ab83cc"``). It writes
``dslite_tiny/export/tflm_code_bytes.json``, which the fit check reads, and ``tflm_code.md`` here.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from dslite_tiny.export.boards import CODE_TABLE, KIB  # noqa: E402
from dslite_tiny.export.op_resolver import TFLM_BUILTINS  # noqa: E402
from dslite_tiny.export.settings import frontend_table_bytes, recommended_arena_bytes  # noqa: E402
from dslite_tiny.export.variant import load_variant, with_tflm_check  # noqa: E402
from dslite_tiny.measure.tflm import reference_outputs  # noqa: E402
from firmware_host.build import core_files, model_files, staged_build  # noqa: E402
from firmware_host.qemu import (C_FLAGS, TflmTree, elf_sections, linked_code_bytes,  # noqa: E402
                                tflm_minimum_arena, tflm_on_cortex_m4, tflm_op_instructions)

CACHE = Path(tempfile.gettempdir(), "dslite-tiny-qemu")

MICRO_SKIP = {"arc_custom", "arc_emsdp", "benchmarks", "bluepill", "ceva", "chre", "compression",
              "cortex_m_corstone_300", "cortex_m_generic", "docs", "examples", "hexagon", "integration_tests",
              "models", "python", "riscv32_generic", "testing", "tools", "arc_mli", "cmsis_nn", "ethos_u",
              "test_data_generation", "testdata", "xtensa"}
LITE_SOURCES = {"tensorflow/compiler/mlir/lite/core/api/error_reporter.cc",
                "tensorflow/compiler/mlir/lite/schema/schema_utils.cc",
                "tensorflow/lite/core/api/flatbuffer_conversions.cc", "tensorflow/lite/core/api/tensor_utils.cc",
                "tensorflow/lite/core/c/common.cc", "tensorflow/lite/kernels/kernel_util.cc"}
INCLUDES = (".", "third_party/flatbuffers/include", "third_party/gemmlowp", "third_party/ruy")


def _library_file(checkout: Path, path: Path) -> bool:
    """The files of TFLM's library proper: headers, and sources that are neither tests nor other targets."""
    rel = path.relative_to(checkout)
    if path.suffix == ".h":
        return rel.parts[0] in ("tensorflow", "signal")
    if path.suffix != ".cc" or "test" in path.name or path.name.endswith("_main.cc"):
        return False
    text = str(rel)
    if text.startswith("tensorflow/lite/micro/"):
        return not set(rel.parts[3:-1]) & MICRO_SKIP and not any(
            word in path.name for word in ("mock", "fake", "recording", "test_helper"))
    return text in LITE_SOURCES or (text.startswith("tensorflow/lite/kernels/internal/")
                                    and path.parent.name == "internal")


def assemble_tree(out: Path, *, checkout: Path, flatbuffers: Path, gemmlowp: Path, ruy: Path,
                  cmsis_nn: Path | None) -> TflmTree:
    """What TFLM's create_tflm_tree.py lays out for a generic target, without make and downloads."""
    if not out.is_dir():
        for path in checkout.rglob("*"):
            if path.is_file() and _library_file(checkout, path):
                target = out / path.relative_to(checkout)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target)
        shutil.copytree(flatbuffers / "include", out / "third_party/flatbuffers/include")
        for name in ("fixedpoint", "internal"):
            shutil.copytree(gemmlowp / name, out / "third_party/gemmlowp" / name)
        (out / "third_party/ruy/ruy/profiler").mkdir(parents=True)  # kernels include one header of ruy
        shutil.copy(ruy / "ruy/profiler/instrumentation.h", out / "third_party/ruy/ruy/profiler")
        if cmsis_nn is not None:
            for kernel in (checkout / "tensorflow/lite/micro/kernels/cmsis_nn").glob("*.cc"):
                shutil.copy(kernel, out / "tensorflow/lite/micro/kernels" / kernel.name)
            for name in ("Include", "Source"):  # without the float kernels, as TFLM's cmsis_nn.inc by default
                shutil.copytree(cmsis_nn / name, out / "third_party/cmsis_nn" / name,
                                ignore=shutil.ignore_patterns("*_f16.c", "*_f32.c", "arm_nntables_flt.c", "Bindings"))
    if cmsis_nn is None:
        return TflmTree(out, INCLUDES)
    return TflmTree(out, (*INCLUDES, "third_party/cmsis_nn", "third_party/cmsis_nn/Include"), defines=("CMSIS_NN",))


def chirale_tree(src: Path) -> TflmTree:
    """Chirale_TensorFlowLite's sources without its Arduino glue (Serial DebugLog, timers)."""
    return TflmTree(src, (*INCLUDES, "third_party/cmsis_nn", "third_party/cmsis_nn/Include",
                          "third_party/cmsis/CMSIS/Core/Include"),
                    skip=("tensorflow/lite/micro/system_setup.cpp", "peripherals/utility_arduino.cpp"),
                    defines=("ARDUINO=10819", "CMSIS_NN", "DT_TFLM_LOG_IS_TEXT=1"))


def wheel_outputs(variant, inputs: np.ndarray) -> np.ndarray:
    return reference_outputs(variant.data, inputs, shape=variant.description["input"]["shape"],
                             arena_bytes=recommended_arena_bytes(variant.arena_bytes)).astype(np.int8)


def measure(name: str, tree: TflmTree, variant, inputs: np.ndarray, expected: np.ndarray) -> dict:
    got, instructions, sections = tflm_on_cortex_m4(variant, inputs, tree, cache_dir=CACHE)
    recommended = recommended_arena_bytes(variant.arena_bytes)
    arena = tflm_minimum_arena(variant, tree, low=variant.arena_bytes // 2, high=2 * recommended, cache_dir=CACHE)
    difference = np.abs(got.astype(int) - expected.astype(int))
    embedded = len(variant.data) + inputs.size  # the model array and the benchmark's inputs: constants
    return {"tree": name, "inputs": int(inputs.shape[0]), "bit_exact": bool((difference == 0).all()),
            "scores_differing": int((difference > 0).sum()), "scores": int(difference.size),
            "max_difference": int(difference.max()), "class_agreement": float(np.mean(got.argmax(1) == expected.argmax(1))),
            "instructions_median": int(np.median(instructions)), "code_bytes": sections[".text"] + sections.get(".rodata", 0) - embedded,
            "bss_bytes": sections.get(".bss", 0), "minimum_arena_bytes": arena, "wheel_arena_bytes": variant.arena_bytes,
            "recommended_arena_bytes": recommended}


def markdown(rows: list[dict], variant_name: str) -> str:
    lines = ["# TFLite Micro sources on a Cortex-M4 (QEMU mps2-an386) against the tflite-micro wheel", "",
             f"Command: see the docstring of `reports/benchmarks/tflm_m4.py`. Model: the demo's `{variant_name}` "
             "(DS-CNN, 64×64×1). Inputs: random int8 tensors (seed 0). Code: the ELF's .text and .rodata without the "
             "model array and the inputs (TFLM, the six kernels, dt_tflm.cc and newlib's printf); .bss holds the arena. "
             "Minimum arena: the smallest (bisected, 16-byte steps) with which the backend sets the model up and "
             "invokes it there; the export recommends the tflite-micro wheel's minimum on the host + 10 % + 1 KiB.",
             "", "| TFLM source | bit-exact with the wheel | scores differing | max difference | same class | "
             "instructions per inference | code | .bss | minimum arena (wheel's; recommended) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['tree']} | {'yes' if r['bit_exact'] else 'no'} | {r['scores_differing']} of {r['scores']} | "
                     f"{r['max_difference']} | {100 * r['class_agreement']:.0f} % | {r['instructions_median'] / 1e6:.2f} M | "
                     f"{r['code_bytes'] / 1024:.1f} KB | {r['bss_bytes'] / 1024:.1f} KB | {r['minimum_arena_bytes']} B "
                     f"({r['wheel_arena_bytes']}; {r['recommended_arena_bytes']}) |")
    return "\n".join(lines) + "\n"


def more_models(args) -> None:
    """``--more-models``: each model on the tflm + CMSIS-NN tree, added to tflm_m4.json's ``more``."""
    common = dict(checkout=args.tflm_checkout, flatbuffers=args.flatbuffers, gemmlowp=args.gemmlowp, ruy=args.ruy)
    tree = assemble_tree(args.work / "tflm-cmsis", cmsis_nn=args.cmsis_nn, **common)
    record = json.loads((HERE / "tflm_m4.json").read_text())
    for path in args.more_models:
        variant = with_tflm_check(load_variant(path))
        inputs = np.random.default_rng(0).integers(-128, 128, (10, int(np.prod(
            variant.description["input"]["shape"])))).astype(np.int8)
        row = measure("tflm + CMSIS-NN", tree, variant, inputs, wheel_outputs(variant, inputs))
        per_op = tflm_op_instructions(variant, inputs[:2], tree, cache_dir=CACHE)
        record.setdefault("more", {})[variant.sha256] = {"model": f"{path.parent.name}/{path.name}", **row,
                                                          "op_instructions": np.median(per_op, axis=0).tolist()}
        print(path, row)
    (HERE / "tflm_m4.json").write_text(json.dumps(record, indent=2) + "\n")


def code_sizes(label: str, tree: TflmTree, variant) -> dict:
    """TFLM's core, each kernel's growth of it and the firmware core's code, in Cortex-M4 flash bytes."""
    core = linked_code_bytes(variant, tree, {}, cache_dir=CACHE)

    def kernel(op: str) -> tuple[str, int | None]:
        try:
            return op, linked_code_bytes(variant, tree, {op: 1}, cache_dir=CACHE) - core
        except subprocess.CalledProcessError:
            return op, None  # the tree has no such method: left out of the table, and said so

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        kernels = dict(pool.map(kernel, sorted(TFLM_BUILTINS)))
    ops = dict(variant.description["ops"])
    protocol, frontend = firmware_core_bytes(variant)
    return {"source": label, "compiler": _compiler(), "flags": " ".join(C_FLAGS),
            "command": "python reports/benchmarks/tflm_m4.py ... --code-sizes LABEL (see its docstring)",
            "core_bytes": core, "kernel_bytes": {k: v for k, v in kernels.items() if v is not None},
            "unmeasured": sorted(k for k, v in kernels.items() if v is None),
            "protocol_bytes": protocol, "frontend_code_bytes": frontend,
            "check": {"model": variant.name, "ops": sorted(ops),
                      "linked_bytes": linked_code_bytes(variant, tree, ops, cache_dir=CACHE),
                      "summed_bytes": core + sum(kernels[op] for op in ops)}}


def firmware_core_bytes(variant) -> tuple[int, int]:
    """Flash of the protocol core and of the frontend's code without its tables (which the fit check
    counts per frontend), compiled for the Cortex-M4F: code, constants and initialised data."""
    files = {**core_files(tflm=False), **model_files(variant, name="model", device="mps2-an386")}
    protocol_o = staged_build(files, CACHE, "dt_protocol.o")
    sizes = []
    for source in ("dt_protocol.c", "dt_frontend.c"):
        out = protocol_o.parent / source.replace(".c", ".o")
        subprocess.run(["arm-none-eabi-gcc", *C_FLAGS, f"-I{out.parent}", "-c", str(out.parent / source),
                        "-o", str(out)], check=True)
        sections = elf_sections(out)
        sizes.append(sum(v for k, v in sections.items() if k.startswith((".text", ".rodata", ".data"))))
    return sizes[0], sizes[1] - frontend_table_bytes(variant.frontend)


def _compiler() -> str:
    return subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def code_markdown(table: dict) -> str:
    check = table["check"]
    lines = ["# Runtime code on a Cortex-M4: what the board-fit check counts", "",
             f"Command: `{table['command']}`. Sources: {table['source']}; {table['compiler']}, "
             f"`{table['flags']}`, linked with `--gc-sections`. The firmware's TFLM backend linked with a resolver "
             f"of no op is TFLM's core ({table['core_bytes'] / KIB:.1f} KB, with newlib-nano's `snprintf`); each "
             f"kernel is the growth of that link when the resolver registers that op alone. A model's estimate is "
             f"the core plus its kernels: an upper bound, as kernels share helpers. Checked on the demo's "
             f"`{check['model']}` ({', '.join(check['ops'])}): linked {check['linked_bytes'] / KIB:.1f} KB, "
             f"estimated {check['summed_bytes'] / KIB:.1f} KB. Protocol core {table['protocol_bytes'] / KIB:.1f} KB; "
             f"frontend code without its tables {table['frontend_code_bytes'] / KIB:.1f} KB.", ""]
    if table["unmeasured"]:
        lines += [f"Not linkable from these sources: {', '.join(table['unmeasured'])} (the fit check counts "
                  f"the largest kernel for them).", ""]
    lines += ["| op | kernel code |", "|---|---:|"]
    for op, size in sorted(table["kernel_bytes"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {op} | {size / KIB:.1f} KB |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for option in ("--tflm-checkout", "--flatbuffers", "--gemmlowp", "--ruy"):
        parser.add_argument(option, type=Path, required=True)
    parser.add_argument("--cmsis-nn", type=Path)
    parser.add_argument("--chirale", type=Path, help="Chirale_TensorFlowLite's src folder")
    parser.add_argument("--model-dir", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-demo/compressed/qat-int8"))
    parser.add_argument("--inputs", type=int, default=50)
    parser.add_argument("--code-sizes", metavar="LABEL", help="measure the fit check's code table instead")
    parser.add_argument("--more-models", type=Path, nargs="+", help="further models, tflm + CMSIS-NN only")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-tflm-trees"))
    args = parser.parse_args()
    if (args.code_sizes or args.more_models) and not args.cmsis_nn:
        parser.error("--code-sizes and --more-models measure the tflm + CMSIS-NN tree: give --cmsis-nn")
    if args.more_models:
        more_models(args)
        return
    if not args.model_dir.is_dir():
        subprocess.run(["dslite-tiny", "demo", "--out", str(args.model_dir.parents[1])], check=True)
    variant = with_tflm_check(load_variant(args.model_dir))
    inputs = np.random.default_rng(0).integers(-128, 128, (args.inputs, int(np.prod(
        variant.description["input"]["shape"])))).astype(np.int8)
    expected = wheel_outputs(variant, inputs)
    common = dict(checkout=args.tflm_checkout, flatbuffers=args.flatbuffers, gemmlowp=args.gemmlowp, ruy=args.ruy)
    trees = {"tflm (reference kernels)": assemble_tree(args.work / "tflm", cmsis_nn=None, **common)}
    if args.cmsis_nn:
        trees["tflm + CMSIS-NN"] = assemble_tree(args.work / "tflm-cmsis", cmsis_nn=args.cmsis_nn, **common)
    if args.chirale:
        trees["Chirale_TensorFlowLite 2.0.0"] = chirale_tree(args.chirale)
    if args.code_sizes:
        table = code_sizes(args.code_sizes, trees["tflm + CMSIS-NN"], variant)
        CODE_TABLE.write_text(json.dumps(table, indent=2) + "\n")
        (HERE / "tflm_code.md").write_text(code_markdown(table))
        print(code_markdown(table))
        return
    rows = [measure(name, tree, variant, inputs, expected) for name, tree in trees.items()]
    (HERE / "tflm_m4.json").write_text(json.dumps({"model": variant.name, "rows": rows}, indent=2) + "\n")
    (HERE / "tflm_m4.md").write_text(markdown(rows, variant.name))
    print(markdown(rows, variant.name))


if __name__ == "__main__":
    main()

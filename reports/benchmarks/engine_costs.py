"""The Cortex-M4 instruction model of the generated engine, calibrated on QEMU: each op of a set of int8
models is run on QEMU's mps2-an386 (``-icount shift=0``; the bench built with DT_PROFILE marks every op's
end), and per kernel path (``engine.ops`` ``Work.kind``) instructions ≈ a · multiply-accumulates + b · outputs
+ c is fitted by non-negative least squares over all ops of that path, each op's row divided by its
instructions (relative errors, so that DenseNet's large ops do not outweigh a DS-CNN's). ``compress`` uses the coefficients
where ``qemu-system-arm`` is missing (``measure.cortex_m4``; labelled an estimate).

Models: the demo's int8 variants, the FSDD-trained variants of ``compress_fsdd.py --part dscnn-40x49``, a
MobileNet v1 α=0.25 (ImageNet weights), a MobileNetV2 α=0.35 and a DenseNet121 at 64×64 (random weights,
BatchNorm from data), and the golden test model. The sparse kernels are calibrated at every kept share on the
MobileNet v1 with its pointwise and dense kernels block-pruned to 25, 50, 75 and 90 % kept blocks, run sparse
wherever that is smaller (``generate``'s ``sparse_where="smaller"``): the pruned variants alone keep about half
their blocks, which cannot tell a cost per kept multiply-accumulate from one per output. Checked by leaving each
architecture out of the fit (all the demo's variants at once, both FSDD seeds at once) and estimating its
models. Engines are generated without bands (``engine.bands``: a banded chain's ops are profiled as one; the
bands add a copy and calls, 0.1-0.4 % of an engine's instructions in ``engine_m4.md``).

    python reports/benchmarks/engine_costs.py [--compressed $TMPDIR/dslite-tiny-demo/compressed]
        [--fsdd $TMPDIR/dslite-tiny-compress/dscnn-40x49-theo-s0 ...]

Writes dslite_tiny/measure/cortex_m4_costs.json and engine_costs.{json,md} next to this script.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from dslite_tiny.engine.codegen import generate  # noqa: E402
from dslite_tiny.export.variant import load_variant  # noqa: E402
from dslite_tiny.engine.ops import Work  # noqa: E402
from dslite_tiny.measure.cortex_m4 import COSTS_PATH, modelled_instructions  # noqa: E402
from engine_m4 import int8_variants, mobilenet_v1, random_backbone  # noqa: E402
from firmware_host.qemu import engine_op_instructions  # noqa: E402

ENGINE_TMP = Path(tempfile.gettempdir(), "dslite-tiny-engine")
COMPRESS_FSDD = Path(tempfile.gettempdir(), "dslite-tiny-compress")


KEPT_SHARES = (0.25, 0.5, 0.75, 0.9)  # of the block-pruned MobileNet v1's blocks


def profile(name: str, path: Path, sparse_where: str = "faster") -> dict:
    """Per op of the model at ``path``: kind, multiply-accumulates, outputs, instructions (mean of 2 inputs)."""
    variant = load_variant(path)
    engine = generate(variant.data, variant.path, name="model", provenance=["engine_costs"],
                      sparse_where=sparse_where, bands=False)  # a banded chain's ops are profiled as one
    inputs = np.random.default_rng(0).integers(-128, 128, (2, engine.input_bytes)).astype(np.int8)
    counts = engine_op_instructions(engine, "model", inputs, cache_dir=ENGINE_TMP / "qemu").mean(axis=0)
    print(f"{name}: {counts.sum() / 1e6:.2f} M instructions, {engine.ops} ops", flush=True)
    return {"model": name, "ops": [{"kind": w.kind, "macs": w.macs, "outputs": w.outputs, "instructions": float(n)}
                                   for w, n in zip(engine.work, counts)]}


def fit(models: list[dict]) -> dict[str, dict[str, float]]:
    """Per kind: non-negative a (per MAC), b (per output), c (per op) fitted over every op of that kind."""
    ops = [op for m in models for op in m["ops"]]
    costs = {}
    for kind in sorted({op["kind"] for op in ops}):
        rows = [op for op in ops if op["kind"] == kind]
        target = np.array([op["instructions"] for op in rows])
        features = np.array([[op["macs"], op["outputs"], 1.0] for op in rows], np.float64) / target[:, None]
        scale = features.max(axis=0)
        scale[scale == 0] = 1
        solution, _ = nnls(features / scale, np.ones(len(rows)))
        a, b, c = solution / scale
        costs[kind] = {"per_mac": round(float(a), 4), "per_output": round(float(b), 4), "per_op": round(float(c), 1)}
    return costs


def _family(model: dict) -> str:
    """The architecture a model shares with others of the set (the demo's variants, FSDD's seeds, the
    MobileNet v1 and its block-pruned forms)."""
    return model["model"].split()[0]


def estimate(model: dict, costs: dict) -> float | None:
    """The instruction model compress uses (measure.cortex_m4), on a profiled model's ops."""
    return modelled_instructions([Work(op["kind"], op["macs"], op["outputs"]) for op in model["ops"]], costs)


def markdown(models: list[dict], costs: dict, held_out: dict) -> str:
    lines = ["# The engine's Cortex-M4 instruction model, calibrated on QEMU", "",
             "Command: `python reports/benchmarks/engine_costs.py` (see its docstring). Per kernel path: "
             "instructions ≈ a · MACs + b · outputs + c, non-negative least squares of the relative error over every "
             "op of that path (QEMU mps2-an386, `-icount shift=0`, each op timed by the profiling bench). `compress` uses it "
             "without QEMU, labelled an estimate.", "",
             "| kernel path | ops | a (per MAC) | b (per output) | c (per op) |", "|---|---:|---:|---:|---:|"]
    for kind, cost in costs.items():
        count = sum(op["kind"] == kind for m in models for op in m["ops"])
        lines.append(f"| {kind} | {count} | {cost['per_mac']:.3f} | {cost['per_output']:.2f} | {cost['per_op']:.0f} |")
    lines += ["", "Each architecture left out of the fit (the demo's variants together, FSDD's two seeds together) "
              "and its models estimated from the others (– where a kernel path appears in it alone):", "", "| model | measured | estimated, all models | estimated, left out | error, left out |",
              "|---|---:|---:|---:|---:|"]
    for m in models:
        measured = sum(op["instructions"] for op in m["ops"])
        out = held_out[m["model"]]
        error = f"{(out / measured - 1) * 100:+.1f} %" if out is not None else "–"
        lines.append(f"| {m['model']} | {measured / 1e6:.2f} M | {estimate(m, costs) / 1e6:.2f} M | "
                     f"{'–' if out is None else f'{out / 1e6:.2f} M'} | {error} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compressed", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-demo/compressed"))
    parser.add_argument("--fsdd", type=Path, nargs="*", default=[COMPRESS_FSDD / "dscnn-40x49-theo-s0",
                                                                 COMPRESS_FSDD / "dscnn-40x49-theo-s1"])
    args = parser.parse_args()
    sources = [(f"demo {name}", args.compressed / name) for name in int8_variants(args.compressed)]
    sources += [(f"FSDD {folder.name}: {name}", folder / name) for folder in args.fsdd if folder.is_dir()
                for name in int8_variants(folder)]
    sources += [("MobileNet v1 α=0.25, 96×96×3", mobilenet_v1(ENGINE_TMP / "mobilenet_v1_025_96.tflite")),
                ("MobileNetV2 α=0.35, 96×96×3", random_backbone(ENGINE_TMP / "mobilenet_v2_035_96.tflite",
                                                                "mobilenet_v2", 96, 0.35)),
                ("DenseNet121, 64×64×3", random_backbone(ENGINE_TMP / "densenet121_64.tflite", "densenet121", 64,
                                                         1.0)),
                ("golden tiny model (tests/golden)", ROOT / "tests" / "golden" / "tiny.tflite")]
    models = [profile(name, path) for name, path in sources]
    models += [profile(f"MobileNet v1 α=0.25, {kept:.0%} of blocks kept", mobilenet_v1(
        ENGINE_TMP / f"mobilenet_v1_025_96_kept{round(kept * 100)}.tflite", kept), sparse_where="smaller")
        for kept in KEPT_SHARES]
    costs = fit(models)
    held_out = {m["model"]: estimate(m, fit([o for o in models if _family(o) != _family(m)])) for m in models}
    COSTS_PATH.write_text(json.dumps({"command": "python reports/benchmarks/engine_costs.py", "costs": costs},
                                     indent=2) + "\n")
    (HERE / "engine_costs.json").write_text(json.dumps({"models": models, "costs": costs}, indent=2) + "\n")
    (HERE / "engine_costs.md").write_text(markdown(models, costs, held_out))
    print(markdown(models, costs, held_out))


if __name__ == "__main__":
    main()

"""The generated int8 engine (``dslite-tiny export --target engine``) against TFLite Micro: bit-exactness
with the tflite-micro wheel on the host and on QEMU's Cortex-M4 (mps2-an386, ``-icount shift=0``:
instruction counts), its flash (kernels + generated code + constants, compiled for the Cortex-M4F) and its
RAM (arena + input + output), beside the TFLM figures of ``tflm_m4.json``.

Inputs per variant: ``--random`` random int8 tensors and ``--real`` real ones (the first chunk of FSDD
recordings through the variant's own frontend, quantized as the host does). The host runs the portable C
path on all of them, the Cortex-M4 the DSP path on ``--m4`` of them, half random and half real. Besides
the demo's variants: a MobileNet v1 α=0.25 at 96×96×3 as ``mcu-mobilenet`` builds it (the shared ImageNet
weights, a random head), and a MobileNetV2 α=0.35 and a DenseNet121 with random weights (BatchNorm
statistics from the calibration images), all converted by compress's int8 converter.

    python reports/benchmarks/engine_m4.py [--compressed $TMPDIR/dslite-tiny-demo/compressed] [--random 200]
        [--real 200] [--m4 200] [--fsdd $TMPDIR/dslite-tiny-compress/dscnn-theo-s0 ...]

``--fsdd`` names compress folders of FSDD-trained models (by default the DS-CNN and MobileNet v1 α=0.25
that ``compress_fsdd.py --part mcu`` trains and compresses); each of their int8 variants is measured too.

Writes ``engine_m4.json`` and ``engine_m4.md`` next to this script.
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from dslite_tiny.audio.frontend import Frontend  # noqa: E402
from dslite_tiny.config import FrontendConfig, load_config  # noqa: E402
from dslite_tiny.audio.io import load_audio  # noqa: E402
from dslite_tiny.engine.codegen import generate  # noqa: E402
from dslite_tiny.export.variant import load_variant, with_tflm_check  # noqa: E402
from dslite_tiny.measure.litert import quantize_input  # noqa: E402
from firmware_host.qemu import engine_flash, engine_on_cortex_m4, engine_op_instructions  # noqa: E402
from tflm_m4 import wheel_outputs  # noqa: E402

FSDD = ROOT.parent / "shared" / "datasets" / "fsdd" / "recordings"
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
COMPRESS_FSDD = Path(tempfile.gettempdir(), "dslite-tiny-compress")  # compress_fsdd.py's default output folder
KB = 1024


def mobilenet_v1(path: Path, kept: float = 1.0) -> Path:
    """MobileNet v1 α=0.25 at 96×96×3 with the shared ImageNet weights and a random 64-unit head, as int8
    through compress's converter, calibrated on 16 random images (a model like ``mcu-mobilenet``'s). With
    ``kept`` below 1, every pointwise and dense kernel keeps that share of the engine's blocks (the largest
    by magnitude, ``compress.prune.block_mask``)."""
    if not path.is_file():
        from dslite_tiny.compress.convert import convert_model
        from dslite_tiny.compress.prune import block_mask
        from dslite_tiny.models.arelu import fold_arelu
        from dslite_tiny.models.registry import create_model

        model = create_model("mobilenet", input_shape=(96, 96, 3), num_classes=10, units=64, alpha=0.25,
                             weights=str(WEIGHTS))
        for layer in model.layers if kept < 1 else []:
            kernel = getattr(layer, "kernel", None)
            if kernel is not None and kernel.shape[:-2] in ((), (1, 1)):
                kernel.assign(kernel.numpy() * block_mask(kernel.numpy(), 1 - kept))
        images = np.random.default_rng(0).uniform(-1, 1, (16, 96, 96, 3)).astype(np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(convert_model(fold_arelu(model), "int8", representative=images))
    return path


def calibrated(model, images: np.ndarray):
    """``model`` with each BatchNormalization's statistics those of its inputs on ``images``: random weights
    keep their activations' scale (with the initial statistics deep layers collapse to scales of 1e-12,
    which TFLite Micro aborts on)."""
    import tf_keras as keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inputs = keras.Model(model.input, layer.input).predict(images, verbose=0)
            axes = tuple(range(inputs.ndim - 1))
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, inputs.mean(axis=axes), inputs.var(axis=axes) + 1e-3])
    return model


def random_backbone(path: Path, backbone: str, size: int, alpha: float) -> Path:
    """A backbone with random weights (no ImageNet MobileNetV2 or DenseNet121 weights offline), BatchNorm
    calibrated, as int8 through compress's converter."""
    if not path.is_file():
        from dslite_tiny.compress.convert import convert_model
        from dslite_tiny.models.arelu import fold_arelu
        from dslite_tiny.models.registry import create_model

        model = create_model(backbone, input_shape=(size, size, 3), num_classes=10, units=64, alpha=alpha)
        images = np.random.default_rng(0).uniform(-1, 1, (16, size, size, 3)).astype(np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(convert_model(fold_arelu(calibrated(model, images)), "int8", representative=images))
    return path


def real_inputs(variant, count: int, frontend_config=None) -> np.ndarray:
    """The first chunk of ``count`` FSDD recordings (every 15th file) as the variant's int8 input, through
    its own frontend (or ``frontend_config`` for a bare .tflite)."""
    frontend = Frontend(frontend_config or variant.frontend)
    detail = {"dtype": np.int8, "quantization": (variant.description["input"]["scale"],
                                                 variant.description["input"]["zero_point"])}
    rows = []
    for path in sorted(FSDD.glob("*.wav"))[::15][:count]:
        chunk = frontend.chunk(load_audio(path, sr=frontend.config.sr)).data[0]
        rows.append(quantize_input(frontend(chunk), detail).ravel())
    return np.stack(rows)


def host_outputs(engine, inputs: np.ndarray, work: Path) -> np.ndarray:
    for name, text in engine.files.items():
        (work / name).write_text(text)
    library = work / "libengine.so"
    subprocess.run(["cc", "-std=c99", "-O2", "-fPIC", "-shared", str(work / "model_engine.c"),
                    *(str(work / n) for n in engine.kernel_sources), "-o", str(library)], check=True)
    lib = ctypes.CDLL(str(library))
    out = np.zeros((len(inputs), engine.output_bytes), np.int8)
    for x, y in zip(inputs, out):
        lib.model_invoke(x.ctypes.data_as(ctypes.c_void_p), y.ctypes.data_as(ctypes.c_void_p))
    return out


def measure(variant_dir: Path, args, frontend_config=None, *, per_layer: bool = False) -> dict:
    """One row; ``per_layer``: each op's instructions on the Cortex-M4 (the profiling bench, two inputs; the
    engine generated without bands, so that each op's count is its own) beside the planner's choice for its
    output."""
    variant = with_tflm_check(load_variant(variant_dir))
    engine = generate(variant.data, variant.path, name="model", provenance=["engine_m4 benchmark"])
    size = int(np.prod(variant.description["input"]["shape"]))
    inputs = np.vstack([np.random.default_rng(0).integers(-128, 128, (args.random, size)).astype(np.int8),
                        real_inputs(variant, args.real, frontend_config)])
    expected = wheel_outputs(variant, inputs)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        host = host_outputs(engine, inputs, work)
    m4, instructions = np.zeros((0, engine.output_bytes), np.int8), [0]
    on_m4 = np.r_[:min(args.m4 // 2, args.random), args.random:args.random + min(args.m4 - args.m4 // 2, args.real)]
    if len(on_m4):  # half random, half real inputs
        m4, instructions, _ = engine_on_cortex_m4(engine, "model", inputs[on_m4],
                                                  cache_dir=Path(tempfile.gettempdir(), "dslite-tiny-qemu"))
    layers = []
    if per_layer and len(on_m4):
        unbanded = generate(variant.data, variant.path, name="model", provenance=["engine_m4 benchmark"], bands=False)
        profile = engine_op_instructions(unbanded, "model", inputs[on_m4][:2],
                                         cache_dir=Path(tempfile.gettempdir(), "dslite-tiny-qemu"))
        layers = [{"kind": w.kind, "instructions": int(n), "memory": m}
                  for w, n, m in zip(engine.work, np.median(profile, axis=0), engine.memory)]
    return {"variant": variant.name, "sha256": variant.sha256, "inputs": len(inputs), "real_inputs": args.real,
            "bands": [band.describe() for band in engine.bands], "layers": layers,
            "host_bit_exact": int((host == expected).all(axis=1).sum()),
            "m4_inputs": len(m4), "m4_bit_exact": int((m4 == expected[on_m4][:len(m4)]).all(axis=1).sum()),
            "instructions_median": int(np.median(instructions)),
            **engine_flash(engine, "model", cache_dir=Path(tempfile.gettempdir(), "dslite-tiny-qemu")),
            "arena_bytes": engine.arena_bytes, "io_bytes": engine.input_bytes + engine.output_bytes,
            "tflm_model_bytes": len(variant.data), "tflm_host_arena_bytes": variant.arena_bytes}


def int8_variants(compressed: Path) -> list[str]:
    """The full-int8 variants of a compress folder (int16x8 is not an engine model)."""
    if not compressed.is_dir():
        raise SystemExit(f"{compressed}: no such compress folder (run compress_fsdd.py, or pass --fsdd)")
    return [p.parent.name for p in sorted(compressed.glob("*/model.tflite"))
            if p.parent.name.endswith("int8") and not p.parent.name.startswith("int16")]


def markdown(rows: list[dict], tflm: dict) -> str:
    cmsis = next(r for r in tflm["rows"] if r["tree"] == "tflm + CMSIS-NN")
    lines = ["# The generated int8 engine on a Cortex-M4 (QEMU mps2-an386) against TFLite Micro", "",
             "Command: `python reports/benchmarks/engine_m4.py` (see its docstring). Bit-exact: outputs equal to the "
             "tflite-micro wheel's, per input (random int8 tensors and FSDD recordings through each variant's "
             "frontend). Flash: the kernels (`dt_*.c`) and the generated model (code, then weights, biases, "
             "multipliers, shifts and parameter blocks), compiled with `arm-none-eabi-gcc -O2` for a Cortex-M4F. "
             "RAM: the static arena plus the caller's input and output; ÷ TFLM: that RAM over TFLite Micro's arena "
             "(which holds the input and output). Where a chain of convolutions holds the arena's peak, the planner "
             "runs it in bands of rows (engine/bands.py; the table below the first one). TFLM + CMSIS-NN: "
             "`tflm_m4.py` (its docstring: `--more-models` for the MobileNets), tflite-micro 90b983c.", "",
             "| variant | bit-exact, host | bit-exact, Cortex-M4 | instructions per inference | kernel code | "
             "model code | constants | arena (+ I/O) | RAM ÷ TFLM | TFLM: flatbuffer, arena on the host | "
             "TFLM + CMSIS-NN on the M4: instructions (engine ÷), arena |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        m4 = (f"{r['m4_bit_exact']} of {r['m4_inputs']} | {r['instructions_median'] / 1e6:.2f} M" if r["m4_inputs"]
              else "— | —")
        ram = (r["arena_bytes"] + r["io_bytes"]) / r["tflm_host_arena_bytes"]
        lines.append(f"| {r['variant']} | {r['host_bit_exact']} of {r['inputs']} | {m4} | {r['kernel_code_bytes'] / KB:.1f} KB | "
                     f"{r['model_code_bytes'] / KB:.1f} KB | {r['constant_bytes'] / KB:.1f} KB | "
                     f"{r['arena_bytes'] / KB:.1f} KB (+ {r['io_bytes']} B) | {ram:.2f}× | "
                     f"{r['tflm_model_bytes'] / KB:.1f} KB, {r['tflm_host_arena_bytes'] / KB:.1f} KB | "
                     f"{_cmsis(r, tflm, cmsis)} |")
    first = next((r for r in rows if r["variant"] == tflm["model"]), rows[0])
    flash_total = first["kernel_code_bytes"] + first["model_code_bytes"] + first["constant_bytes"]
    lines += ["", f"TFLite Micro for `{tflm['model']}` (tflm_m4.md, tflite-micro 90b983c + CMSIS-NN): "
              f"{cmsis['instructions_median'] / 1e6:.2f} M instructions, {cmsis['code_bytes'] / KB:.1f} KB of code "
              f"(TFLM, six kernels, backend) + the {first['tflm_model_bytes'] / KB:.1f} KB flatbuffer, arena "
              f"{cmsis['minimum_arena_bytes']} B on the Cortex-M4 (input and output inside it). The engine for "
              f"`{first['variant']}`: {flash_total / KB:.1f} KB of flash in all, "
              f"{(first['arena_bytes'] + first['io_bytes']) / KB:.1f} KB of RAM with its input and output."]
    lines += ["", "Chains run in bands:", ""] + [f"- {r['variant']}: {band}" for r in rows for band in r["bands"]]
    tflm_ops = tflm.get("more", {}).get(first["sha256"], {}).get("op_instructions", [None] * len(first["layers"]))
    lines += ["", f"Per op, `{first['variant']}` on the Cortex-M4 (median of two inputs; the engine generated without "
              "bands, so that each op's count is its own: the bands add the difference between the totals above and "
              "this column's sum), TFLite Micro + CMSIS-NN's instructions for the same op (a profiler around each "
              "op's Invoke; `tflm_m4.py --more-models`) and the planner's choice for the op's output:", "",
              "| op | kernel | instructions | TFLM + CMSIS-NN | output |", "|---:|---|---:|---:|---|"]
    lines += [f"| {i} | {layer['kind']} | {layer['instructions']} | {'—' if t is None else int(t)} | "
              f"{layer['memory']} |" for i, (layer, t) in enumerate(zip(first["layers"], tflm_ops))]
    return "\n".join(lines) + "\n"


def _cmsis(row: dict, tflm: dict, cmsis: dict) -> str:
    """TFLM + CMSIS-NN's figures for the row's model, where tflm_m4.json has them: by the model's SHA-256 (a
    rebuilt variant of the same name is another model), else the main table's model by name."""
    other = tflm.get("more", {}).get(row["sha256"]) or (cmsis if row["variant"] == tflm["model"] else None)
    if other is None:
        return "—"
    return (f"{other['instructions_median'] / 1e6:.2f} M ({row['instructions_median'] / other['instructions_median']:.2f}×), "
            f"{other['minimum_arena_bytes'] / KB:.1f} KB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compressed", type=Path, default=Path(tempfile.gettempdir(), "dslite-tiny-demo/compressed"))
    parser.add_argument("--random", type=int, default=200)
    parser.add_argument("--real", type=int, default=200)
    parser.add_argument("--m4", type=int, default=200)
    parser.add_argument("--fsdd", type=Path, nargs="*", default=[COMPRESS_FSDD / "dscnn-theo-s0",
                                                                 COMPRESS_FSDD / "mobilenet-theo-s0"],
                        help="compress folders of FSDD-trained models (compress_fsdd.py writes them)")
    args = parser.parse_args()
    if not args.compressed.is_dir():
        subprocess.run(["dslite-tiny", "demo", "--out", str(args.compressed.parent)], check=True)
    tflm = json.loads((HERE / "tflm_m4.json").read_text())
    rows = [measure(args.compressed / name, args, per_layer=name == tflm["model"])
            for name in int8_variants(args.compressed)]
    for folder in args.fsdd:  # FSDD-trained models, every int8 variant (compress_fsdd.py's outputs)
        for name in int8_variants(folder):
            rows.append(measure(folder / name, args))
            rows[-1]["variant"] = f"FSDD {folder.name}: {name}"
    rows.append(measure(mobilenet_v1(Path(tempfile.gettempdir(), "dslite-tiny-engine/mobilenet_v1_025_96.tflite")), args,
                        load_config(FrontendConfig, "fsdd", stage="frontend")))
    rows[-1]["variant"] = "MobileNet v1 α=0.25, 96×96×3 (ImageNet weights, random head; FSDD through `fsdd`)"
    fsdd = load_config(FrontendConfig, "fsdd", stage="frontend")
    rows.append(measure(random_backbone(Path(tempfile.gettempdir(), "dslite-tiny-engine/mobilenet_v2_035_96.tflite"), "mobilenet_v2",
                                        96, 0.35), args, fsdd))
    rows[-1]["variant"] = "MobileNetV2 α=0.35, 96×96×3 (random weights, BatchNorm from data; FSDD through `fsdd`)"
    dense = dataclasses.replace(fsdd, image_height=64, image_width=64, normalization="torch")
    rows.append(measure(random_backbone(Path(tempfile.gettempdir(), "dslite-tiny-engine/densenet121_64.tflite"), "densenet121", 64, 1.0),
                        args, dense))
    rows[-1]["variant"] = ("DenseNet121, 64×64×3 (random weights, BatchNorm from data; FSDD through `fsdd` at 64×64; "
                           "its 7 MB of weights in the emulated board's 16 MB PSRAM)")
    (HERE / "engine_m4.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    (HERE / "engine_m4.md").write_text(markdown(rows, tflm))
    print(markdown(rows, tflm))


if __name__ == "__main__":
    main()

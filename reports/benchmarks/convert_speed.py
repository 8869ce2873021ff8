"""Seconds per TFLite conversion: ``compress.convert.convert_model`` (the model's function traced into a light
module) against TensorFlow's ``from_keras_model`` (which first saves the whole Keras model as a SavedModel),
per kind of quantization, on the toolkit's own backbones with random weights (nothing is downloaded), and
whether both give the same graph.

Each model is built with ``create_model`` and AReLU-folded as compress folds it; each (model, kind, path) is
converted ``--repeats`` times in this process and the median kept (the first conversion of a process also
pays TensorFlow's one-time set-up, so a warm-up conversion runs first). "Same graph": every tensor (name,
shape, type, quantization, constant bytes) and operator equal, metadata aside.

    python reports/benchmarks/convert_speed.py [--repeats 3] [--backbones dscnn mobilenet densenet121]

Results: ``convert_speed.json`` and ``convert_speed.md``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# (backbone, input shape, alpha): the MCU DS-CNN on micro_speech's 49×40 input, the MobileNet v1 α = 0.25 on
# its 96×96 colour plots, and DeepSpectrumLite's DenseNet121 at 224×224
MODELS = {"dscnn": ((49, 40, 1), 1.0), "mobilenet": ((96, 96, 3), 0.25), "densenet121": ((224, 224, 3), 1.0)}
KINDS = ("float32", "dynamic", "int8")


def timed(convert, repeats: int) -> tuple[float, bytes]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        data = convert()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), data


def measure(backbone: str, repeats: int) -> list[dict]:
    import tensorflow as tf

    from dslite_tiny.compress import convert
    from dslite_tiny.measure.flatbuffer import graph_contents
    from dslite_tiny.models.arelu import fold_arelu
    from dslite_tiny.models.registry import create_model

    shape, alpha = MODELS[backbone]
    model = fold_arelu(create_model(backbone, input_shape=shape, num_classes=12, units=64, alpha=alpha))
    images = np.random.default_rng(0).normal(size=(20, *shape)).astype(np.float32)
    rows = []
    for kind in KINDS:
        def ours():
            return convert.convert_model(model, kind, representative=images)
        ours_s, ours_data = timed(ours, repeats)
        own = convert._converter
        convert._converter = tf.lite.TFLiteConverter.from_keras_model
        try:
            keras_s, keras_data = timed(ours, repeats)
        finally:
            convert._converter = own
        rows.append({"backbone": backbone, "input": list(shape), "params": int(model.count_params()), "kind": kind,
                     "keras_s": round(keras_s, 2), "ours_s": round(ours_s, 2),
                     "same_graph": graph_contents(ours_data) == graph_contents(keras_data)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(result: dict) -> str:
    lines = ["# TFLite conversion time", "", f"`{result['command']}` (2 cores, median of {result['repeats']}).", "",
             "`from_keras_model`: TensorFlow's converter of a Keras model, which saves the model as a SavedModel "
             "first; traced: `convert_model`'s module of the model's inference function and its variables. "
             "Random weights; int8 calibrated on 20 random inputs.", "",
             "| backbone | input | parameters | kind | from_keras_model s | traced s | speed-up | same graph |",
             "|---|---|---:|---|---:|---:|---:|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['backbone']} | {'×'.join(map(str, r['input']))} | {r['params']:,} | {r['kind']} | "
                     f"{r['keras_s']:.2f} | {r['ours_s']:.2f} | {r['keras_s'] / r['ours_s']:.1f}× | "
                     f"{'yes' if r['same_graph'] else 'no'} |")
    return "\n".join(lines + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbones", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args()
    from dslite_tiny.native import import_tensorflow_quietly

    import_tensorflow_quietly()
    measure("dscnn", 1)  # warm-up: TensorFlow's one-time set-up is not a conversion's cost
    rows = [row for backbone in args.backbones for row in measure(backbone, args.repeats)]
    result = {"command": "python reports/benchmarks/convert_speed.py " + " ".join(sys.argv[1:]),
              "repeats": args.repeats, "rows": rows}
    (HERE / "convert_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "convert_speed.md").write_text(markdown(result))


if __name__ == "__main__":
    main()

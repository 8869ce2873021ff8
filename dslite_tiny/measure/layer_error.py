"""Where a quantized model's accuracy goes: the error of every int8 tensor against the float Keras model.

Each operator's output in the ``.tflite`` (LiteRT's reference kernels, the arithmetic TFLite Micro shares,
with every intermediate tensor kept) is dequantized and compared with the output of the Keras layer it
stands for, on the same float images. The error is end to end (it includes what earlier layers passed
on), so the layer where it jumps is where quantization breaks the model. Two figures per tensor:

- ``rmse_scale``: RMS error in units of the tensor's quantization step (TFLite's QuantizationDebugger
  uses the same measure; pure rounding of an exact value gives 1/√12 ≈ 0.29);
- ``sqnr_db``: signal-to-quantization-noise ratio, 10·log10(Σ float² / Σ error²).

Tensors are matched to layers by name and value: the converter names a fused op's output after some of
the layers folded into it (``model/conv_pw_13_relu/Relu6;model/conv_pw_13_bn/...``, QAT wrappers add
``quant_``; sometimes only the conv's name survives), so the candidates are the named layers and the
chain of weightless layers after them (BatchNorm, ReLU, Dropout) of the same size, and the candidate the
tensor is closest to is the one it stands for. The model's output is compared with the model's output.
"""
from __future__ import annotations

import math

import numpy as np

from dslite_tiny.measure.flatbuffer import WRAPPER_PREFIX
from dslite_tiny.measure.litert import create_interpreter, dequantize_output, quantize_input
from dslite_tiny.models.probe import probe_batches

WORST = 3  # layers named as the largest SQNR drops
_FLOAT_BATCH = 4  # images whose float outputs (every candidate layer's) are held at once
# Activations an int8 tensor of a layer's own op can hold; a softmax is a separate op after the layer.
_STORABLE = ("linear", "relu", "relu6")


def layer_errors(tflite: bytes, float_model, images: np.ndarray) -> dict:
    """Per-tensor error of a quantized model against ``float_model`` (the AReLU-folded Keras model) on
    ``images``; the record ``metrics.json`` keeps."""
    interpreter = create_interpreter(tflite, reference_kernels=True, preserve_all_tensors=True)
    tensors = _quantized_tensors(interpreter, float_model)
    if not tensors:
        return {"chunks": 0, "tensors": [], "worst": []}
    names = sorted({name for t in tensors for name in t["candidates"]})
    outputs = [float_model.get_layer(name).output for name in names]
    sums = [np.zeros((len(t["candidates"]), 2)) for t in tensors]  # Σ float², Σ error² per candidate
    input_detail = interpreter.get_input_details()[0]
    quantized = quantize_input(images, input_detail)
    done = 0
    # A few images at a time: every layer's float output for 100 DenseNet121 images at 224×224 is ~20 GB.
    for batch in probe_batches(float_model, outputs, images, batch_size=_FLOAT_BATCH):
        reference = dict(zip(names, batch))
        for n in range(len(batch[0])):
            interpreter.set_tensor(input_detail["index"], quantized[done + n][None])
            interpreter.invoke()
            for tensor, total in zip(tensors, sums):
                value = dequantize_output(interpreter.get_tensor(tensor["index"]), tensor["detail"]).reshape(-1)
                for k, name in enumerate(tensor["candidates"]):
                    expected = reference[name][n].reshape(-1).astype(np.float64)
                    total[k] += (float(np.sum(expected ** 2)), float(np.sum((value - expected) ** 2)))
        done += len(batch[0])
    records = []
    for tensor, total in zip(tensors, sums):
        k = int(np.argmin(total[:, 1]))
        records.append(_record(tensor, tensor["candidates"][k], *total[k], tensor["elements"] * len(images)))
    return {"chunks": int(len(images)), "tensors": records, "worst": [name for name, _ in largest_drops([(r["layer"], r["sqnr_db"]) for r in records])]}


def largest_drops(sqnr: list[tuple[str, float | None]], *, count: int = WORST) -> list[tuple[str, float]]:
    """(layer, dB) of the tensors whose SQNR (given as (layer, dB) in execution order) falls most below the
    tensor before them: where the model is lost (a tensor's end-to-end error carries all its predecessors';
    rmse_scale is in each tensor's own steps, which are not comparable between int8 and int16)."""
    known = [(layer, db) for layer, db in sqnr if db is not None]
    drops = sorted(((before[1] - after[1], after[0]) for before, after in zip(known, known[1:])), reverse=True)
    return [(layer, drop) for drop, layer in drops[:count] if drop > 0]


def _record(tensor: dict, layer: str, signal: float, noise: float, count: float) -> dict:
    rmse = math.sqrt(noise / count)
    sqnr = 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else None
    return {"op": tensor["op"], "layer": layer, "dtype": tensor["dtype"], "scale": tensor["scale"],
            "rmse": round(rmse, 8), "rmse_scale": round(rmse / tensor["scale"], 4),
            "sqnr_db": None if sqnr is None else round(sqnr, 2)}


def _quantized_tensors(interpreter, float_model) -> list[dict]:
    """Every quantized operator output with the Keras layers it may stand for, in execution order."""
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    output_index = interpreter.get_output_details()[0]["index"]
    found = []
    for op in interpreter._get_ops_details():  # noqa: SLF001  (LiteRT's only view of the op graph)
        index = int(op["outputs"][0])
        detail = details[index]
        scale = float(detail["quantization"][0])
        if detail["dtype"] == np.float32 or not scale:
            continue
        elements = int(np.prod(detail["shape"]))
        candidates = [float_model.layers[-1].name] if index == output_index else \
            _candidates(detail["name"], float_model, elements)
        if candidates:
            found.append({"index": index, "detail": detail, "op": op["op_name"], "candidates": candidates,
                          "scale": scale, "dtype": np.dtype(detail["dtype"]).name, "elements": elements})
    return found


def _candidates(tensor_name: str, float_model, elements: int) -> list[str]:
    """The layers a converted tensor may hold: those its name mentions, and the weightless layers that
    follow them one after another, of ``elements`` values and with an activation int8 can hold."""
    names = {layer.name for layer in float_model.layers}
    mentioned = {token.removeprefix(WRAPPER_PREFIX) for part in tensor_name.split(";") for token in part.split("/")}
    chosen = []
    for name in sorted(mentioned & names):
        layer = float_model.get_layer(name)
        while layer is not None:
            if _holds(layer, elements) and layer.name not in chosen:
                chosen.append(layer.name)
            layer = _weightless_successor(layer)
    return chosen


def _holds(layer, elements: int) -> bool:
    activation = getattr(getattr(layer, "activation", None), "__name__", "linear")
    shape = layer.output_shape
    return activation in _STORABLE and isinstance(shape, tuple) and int(np.prod(shape[1:])) == elements


def _weightless_successor(layer):
    """The only layer ``layer`` feeds, if it has no kernel (BatchNorm, activation, Dropout), else None."""
    if len(layer.outbound_nodes) != 1:
        return None
    successor = layer.outbound_nodes[0].outbound_layer
    return None if hasattr(successor, "kernel") or hasattr(successor, "depthwise_kernel") else successor

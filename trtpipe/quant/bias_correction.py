"""Bias correction: remove the mean shift that INT8 rounding adds to every quantized layer's output.

Rounding a layer's input to INT8 steps and its weights to per-channel INT8 steps is not zero-mean per
output channel: after a ReLU6 most of an activation's mass sits in a few steps, and a 3x3 depthwise
kernel has only nine weights to average its rounding out. The biased error passes every following
layer and accumulates (Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
Correction", ICCV 2019; the "empirical bias correction" of AIMET and Vitis AI). The fix is free at
run time: subtract the expected shift from the layer's floating-point bias, which TensorRT adds in
the convolution's epilogue whatever the precision.

The shift of output channel ``o`` is ``E[(Wq * Q(x))_o] - E[(W * x)_o]``, where ``x`` is the layer's
input in the FP32 model on calibration images, ``Q`` is the calibrated activation Q/DQ and ``Wq`` the
dequantized INT8 weights. Both convolutions are linear, so only per-channel means of ``x`` and
``Q(x)`` are needed (one pass, no per-layer model runs); border taps of padded convolutions are
approximated by the interior mean. The correction is *local*: each layer corrects only the error it
adds itself, so corrections do not count an upstream layer's shift twice. (Correcting every layer
by its whole measured output shift at once does, and diverged on EfficientNet-Lite0.)

Measured (EfficientNet-Lite0, real weights, percentile, 240 held-out crops): top-1 agreement
0.825 -> 0.883 with every layer INT8, 0.908 -> 0.950 with 6 layers kept in FP (tests/perf/bench_fidelity.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np

from trtpipe.quant.qdq import INT8, QdqPlan, QuantFormat, quantize_weight

log = logging.getLogger("trtpipe")

_MIN_AMAX = 1e-8


@dataclass(frozen=True)
class _Target:
    """A quantized Conv/Gemm whose bias can absorb the shift."""

    layer: str
    node_index: int
    activation: str  # the calibrated input tensor
    weight: str  # initializer name
    axis: int | None  # per-channel axis of the weight's quantization (as placed by qdq.py)


def fake_quantize(values: np.ndarray, amax: float, fmt: QuantFormat = INT8) -> np.ndarray:
    """QuantizeLinear then DequantizeLinear in ``fmt``, symmetric with scale amax / max_value (saturating; INT8
    rounds ties to even, FP8 E4M3 to the nearest representable value)."""
    scale = np.float32(max(amax, _MIN_AMAX) / fmt.max_value)
    if fmt.name == "int8":  # QuantizeLinear saturates activations to -128..127 (weights are kept to +-127)
        return np.clip(np.rint(values / scale), -128, 127).astype(np.float32) * scale
    return fmt.cast(values / scale).astype(np.float32) * scale


def correction_targets(model, plan: QdqPlan) -> list[_Target]:
    """The layers of ``plan`` whose output shift a bias can absorb: Conv and Gemm (not transA) with constant weights."""
    initializers = {init.name for init in model.graph.initializer}
    nodes = model.graph.node
    targets = []
    for layer in plan.layers:
        node = nodes[layer.node_index]
        if layer.op_type not in ("Conv", "Gemm") or _attribute(node, "transA", 0):
            continue
        if layer.op_type == "Gemm" and _attribute(node, "beta", 1.0) == 0.0:
            continue
        activations = [item for item in layer.inputs if not item.is_weight and item.index == 0]
        weights = [item for item in layer.inputs if item.is_weight]
        if len(activations) != 1 or len(weights) != 1 or weights[0].tensor not in initializers:
            continue
        targets.append(_Target(layer.name, layer.node_index, activations[0].tensor, weights[0].tensor, weights[0].axis))
    return targets


@dataclass(frozen=True)
class BiasShifts:
    """Per-channel output shift of each corrected layer (subtract from its bias), and what measured it."""

    shifts: dict[str, np.ndarray]  # layer name -> shift per output channel
    images: int
    seconds: float

    def to_json(self) -> dict:
        return {"images": self.images, "shifts": {name: [float(v) for v in s] for name, s in self.shifts.items()}}

    @classmethod
    def from_json(cls, data: Mapping) -> "BiasShifts":
        shifts = {str(name): np.asarray(values, np.float32) for name, values in data["shifts"].items()}
        return cls(shifts, int(data["images"]), 0.0)


def measure_bias_shifts(
    model,
    plan: QdqPlan,
    ranges: Mapping[str, float],
    batches: Iterable[np.ndarray],
    progress: Callable[[int], None] | None = None,
    fmt: QuantFormat = INT8,
) -> BiasShifts:
    """Runs the FP32 ``model`` over ``batches`` once and computes every quantized layer's mean output shift
    (``fmt``: the type the layers are quantized to, INT8 or FP8 E4M3).

    Args:
        model: FP32 onnx.ModelProto (the model ``plan`` was made for).
        plan: the layers that will run in INT8 (kept layers already removed).
        ranges: calibrated amax of every activation in ``plan``.
        batches: preprocessed calibration images.
        progress: called with the number of images after each batch.
    """
    from onnx import numpy_helper

    from trtpipe.quant.calibrate import augmented_session
    from trtpipe.quant.feeds import as_feed, feed_size, image_input_name, onnxruntime_errors

    start = time.perf_counter()
    targets = correction_targets(model, plan)
    if not targets:
        return BiasShifts({}, 0, time.perf_counter() - start)
    activations = list(dict.fromkeys(t.activation for t in targets))
    input_name = image_input_name(model)
    sums = {name: 0.0 for name in activations}
    quantized_sums = {name: 0.0 for name in activations}
    images = 0
    with onnxruntime_errors(f"model {model.graph.name!r}", "run it to measure bias shifts"):
        session, names = augmented_session(model, activations)
        wanted = [(i, name) for i, name in enumerate(names) if name in set(activations)]
        for batch in batches:
            outputs = session.run(None, as_feed(batch, input_name))
            size = feed_size(batch)
            for index, name in wanted:
                values = outputs[index]
                axes = (0,) + tuple(range(2, values.ndim))  # all but the channel axis (NCHW; Gemm input is N x K)
                count = values.size / values.shape[1]
                sums[name] = sums[name] + values.sum(axis=axes, dtype=np.float64) / count * size
                quantized = fake_quantize(values, float(ranges[name]), fmt)
                quantized_sums[name] = quantized_sums[name] + quantized.sum(axis=axes, dtype=np.float64) / count * size
            images += size
            if progress is not None:
                progress(size)
    initializers = {init.name: init for init in model.graph.initializer}
    shifts = {}
    for target in targets:
        node = model.graph.node[target.node_index]
        weight = numpy_helper.to_array(initializers[target.weight]).astype(np.float32)
        values, scale = quantize_weight(weight, target.axis, fmt)
        shape = [1] * weight.ndim
        if target.axis is not None:
            shape[target.axis] = -1
        dequantized = values.astype(np.float64) * scale.reshape(shape).astype(np.float64)
        mean = sums[target.activation] / images
        quantized_mean = quantized_sums[target.activation] / images
        shifts[target.layer] = _output_shift(node, weight.astype(np.float64), dequantized, mean, quantized_mean)
    seconds = time.perf_counter() - start
    log.debug("bias shifts of %d layers on %d images in %.1f s", len(shifts), images, seconds)
    return BiasShifts(shifts, images, seconds)


def _output_shift(node, weight, dequantized, mean, quantized_mean) -> np.ndarray:
    """E[Wq Q(x)] - E[W x] per output channel, from per-channel input means (linear layers only)."""
    if node.op_type == "Conv":
        group = int(_attribute(node, "group", 1))
        taps = tuple(range(2, weight.ndim))
        summed, summed_q = weight.sum(axis=taps), dequantized.sum(axis=taps)  # (O, C / group)
        outputs, per_group = summed.shape
        group_of = np.arange(outputs) // (outputs // group)
        mean = mean.reshape(group, per_group)[group_of]
        quantized_mean = quantized_mean.reshape(group, per_group)[group_of]
        shift = (summed_q * quantized_mean).sum(axis=1) - (summed * mean).sum(axis=1)
    else:  # Gemm: Y = alpha * A B' + beta * C
        if not _attribute(node, "transB", 0):
            weight, dequantized = weight.T, dequantized.T
        shift = _attribute(node, "alpha", 1.0) * (dequantized @ quantized_mean - weight @ mean)
        shift = shift / _attribute(node, "beta", 1.0)
    return shift.astype(np.float32)


def apply_bias_shifts(model, plan: QdqPlan, shifts: BiasShifts):
    """Returns a copy of ``model`` whose corrected layers' biases have their shift subtracted.

    A layer without a bias gets one; a bias shared with another node is copied first. The node order
    is unchanged, so ``plan`` still indexes the copy.
    """
    import onnx
    from onnx import numpy_helper

    corrected = onnx.ModelProto()
    corrected.CopyFrom(model)
    graph = corrected.graph
    initializers = {init.name: init for init in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    for target in correction_targets(corrected, plan):
        shift = shifts.shifts.get(target.layer)
        if shift is None:
            continue
        node = graph.node[target.node_index]
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in initializers:
                continue  # a computed bias: leave it
            bias = numpy_helper.to_array(initializers[node.input[2]]).astype(np.float32)
            if bias.shape != shift.shape:
                continue  # a broadcast Gemm C: no per-channel bias to adjust
        else:
            bias = np.zeros_like(shift)
        name = node.input[2] if len(node.input) > 2 and node.input[2] and uses.get(node.input[2], 0) == 1 else None
        new = numpy_helper.from_array((bias - shift).astype(np.float32), name or f"{target.layer}_corrected_bias")
        if name is not None:
            initializers[name].CopyFrom(new)
        else:
            graph.initializer.append(new)
            while len(node.input) < 3:
                node.input.append("")
            node.input[2] = new.name
    return corrected


def _attribute(node, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return attribute.i if attribute.type == attribute.INT else attribute.f
    return default

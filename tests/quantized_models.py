"""Tiny ONNX models that arrive already quantized, or with odd inputs and outputs, built in code (issue 19).

The kinds of ../shared/cases R23-R31 in other shapes: FP8 per channel, INT4/UINT4 per block, INT8 per channel from a
QAT export, UINT8 with ONNX Runtime's zero point 128, E5M2, an output listed three times, a float64 input, a batch-only
int64 output, a plugin node, a bfloat16 MatMul, an IR version newer than onnx reads, an input that is also an output,
a batch axis of 0. Each writer saves ``<folder>/<name>.onnx`` and its 32x32 preprocess spec, and returns the path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T, helper, numpy_helper

SIZE = 32


def _save(model, folder: Path, name: str, ir: int = 9) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.ir_version = ir
    path = folder / f"{name}.onnx"
    onnx.save(model, str(path))
    (folder / f"{name}.preprocess.json").write_text(json.dumps({"model": name, "height": SIZE, "width": SIZE}))
    return path


def _x(dtype=T.FLOAT, batch="N"):
    return helper.make_tensor_value_info("x", dtype, [batch, 3, SIZE, SIZE])


def _head(nodes, inits, conv_input: str, conv_weight: str, seed: int = 0):
    """Conv(3x3) -> Relu -> GAP -> Flatten -> MatMul: the classifier behind the Q/DQ (or the odd input)."""
    rng = np.random.default_rng(seed)
    inits = inits + [numpy_helper.from_array(np.zeros(8, np.float32), "B"),
                     numpy_helper.from_array(rng.normal(0, 0.2, (8, 10)).astype(np.float32), "FW")]
    nodes = nodes + [helper.make_node("Conv", [conv_input, conv_weight, "B"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
                     helper.make_node("Relu", ["c"], ["r"], name="relu0"),
                     helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
                     helper.make_node("Flatten", ["g"], ["f"], name="flat"),
                     helper.make_node("MatMul", ["f", "FW"], ["logits"], name="fc")]
    return nodes, inits


def _weights(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32)


def fp8_model(folder: Path, name: str = "fp8", *, per_channel: bool = True, qtype: int = T.FLOAT8E4M3FN) -> Path:
    """ModelOpt's FP8 shape: activation Q->DQ with an FP8 zero point, FP8 weights behind a DequantizeLinear (per
    output channel, axis 0, or per tensor), opset 19."""
    weights = _weights()
    scale = (np.abs(weights).reshape(8, -1).max(1) / 448).astype(np.float32) if per_channel else np.float32(0.002)
    stored = weights / (scale[:, None, None, None] if per_channel else scale)
    zeros = [0.0] * 8 if per_channel else [0.0]
    inits = [helper.make_tensor("Wq", qtype, weights.shape, stored.flatten().tolist()),
             numpy_helper.from_array(np.asarray(scale, np.float32), "w_scale"),
             helper.make_tensor("w_zp", qtype, [8] if per_channel else [], zeros),
             helper.make_tensor("x_zp", qtype, [], [0.0]),
             numpy_helper.from_array(np.array(3.0 / 448, np.float32), "x_scale")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="x_q"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xdq"], name="x_dq"),
             helper.make_node("DequantizeLinear", ["Wq", "w_scale", "w_zp"], ["Wdq"], name="w_dq",
                              **({"axis": 0} if per_channel else {}))]
    nodes, inits = _head(nodes, inits, "xdq", "Wdq")
    graph = helper.make_graph(nodes, "fp8", [_x()], [helper.make_tensor_value_info("logits", T.FLOAT, ["N", 10])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), folder, name)


def int8_qat_model(folder: Path, name: str = "qat", *, zero_point: int = 0, dtype: int = T.INT8, opset: int = 13) -> Path:
    """A QAT / quantize_static export: Q->DQ on the activation and on float weights (per channel for int8; uint8
    per tensor with ``zero_point``, as ONNX Runtime's asymmetric default writes 128)."""
    weights = _weights()
    np_type = np.int8 if dtype == T.INT8 else np.uint8
    per_channel = dtype == T.INT8
    w_scale = (np.abs(weights).reshape(8, -1).max(1) / 127).astype(np.float32) if per_channel else np.float32(0.004)
    inits = [numpy_helper.from_array(np.array(3.0 / 127, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(zero_point, np_type), "x_zp"),
             numpy_helper.from_array(weights, "W"), numpy_helper.from_array(np.asarray(w_scale, np.float32), "w_scale"),
             numpy_helper.from_array(np.full(8 if per_channel else (), zero_point, np_type), "w_zp")]
    axis = {"axis": 0} if per_channel else {}
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="x_q"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xdq"], name="x_dq"),
             helper.make_node("QuantizeLinear", ["W", "w_scale", "w_zp"], ["Wq"], name="w_q", **axis),
             helper.make_node("DequantizeLinear", ["Wq", "w_scale", "w_zp"], ["Wdq"], name="w_dq", **axis)]
    nodes, inits = _head(nodes, inits, "xdq", "Wdq")
    graph = helper.make_graph(nodes, "qat", [_x()], [helper.make_tensor_value_info("logits", T.FLOAT, ["N", 10])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), folder, name, ir=8)


def int4_block_model(folder: Path, name: str = "int4", *, qtype: int = T.INT4, scale_type=np.float32) -> Path:
    """Weight-only INT4 (or UINT4) per block (block_size 16 along K, axis 0) on a MatMul, opset 21, as ModelOpt's
    int4 mode writes linear layers; ``scale_type`` float16 makes it an FP16 model's quantization (FP16 MatMul)."""
    rng = np.random.default_rng(1)
    fw = rng.normal(0, 0.2, (48, 10)).astype(np.float32)
    blocks = (np.abs(fw).reshape(3, 16, 10).max(1) / 7).astype(np.float32)
    stored = np.clip(np.round(fw / np.repeat(blocks, 16, axis=0)), -8, 7) + (8 if qtype == T.UINT4 else 0)
    inits = [helper.make_tensor("Wq", qtype, fw.shape, stored.flatten().astype(int).tolist()),
             numpy_helper.from_array(blocks.astype(scale_type), "w_scale"),
             numpy_helper.from_array(np.array([-1, 3 * SIZE * SIZE], np.int64), "flat_shape"),
             numpy_helper.from_array(np.array([0], np.int64), "start"),
             numpy_helper.from_array(np.array([48], np.int64), "end"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    nodes = [helper.make_node("Reshape", ["x", "flat_shape"], ["xf"], name="flatten"),
             helper.make_node("Slice", ["xf", "start", "end", "axes"], ["x48"], name="take48"),
             helper.make_node("DequantizeLinear", ["Wq", "w_scale"], ["Wdq"], name="w_dq", axis=0, block_size=16)]
    if scale_type == np.float16:
        nodes += [helper.make_node("Cast", ["x48"], ["x48h"], name="to_fp16", to=T.FLOAT16),
                  helper.make_node("MatMul", ["x48h", "Wdq"], ["mm"], name="fc"),
                  helper.make_node("Cast", ["mm"], ["logits"], name="to_fp32", to=T.FLOAT)]
    else:
        nodes.append(helper.make_node("MatMul", ["x48", "Wdq"], ["logits"], name="fc"))
    graph = helper.make_graph(nodes, "int4", [_x()], [helper.make_tensor_value_info("logits", T.FLOAT, ["N", 10])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), folder, name, ir=10)


def plain_model(folder: Path, name: str, *, input_dtype: int = T.FLOAT, batch="N", extra_outputs=(), ir: int = 8,
                outputs_listed: int = 1, batch_only_output: bool = False, plugin: bool = False, bf16: bool = False) -> Path:
    """The float classifier with one odd thing: a float64 input (cast inside), an output listed several times, a
    batch-only int64 ArgMax output, an EfficientNMS-style plugin node, a bfloat16 MatMul, a fixed batch, an IR
    version, or ``extra_outputs`` naming graph inputs that are also outputs."""
    nodes, inits = [], [numpy_helper.from_array(_weights(), "W")]
    conv_input = "x"
    if input_dtype != T.FLOAT:
        nodes.append(helper.make_node("Cast", ["x"], ["xf"], name="to_float", to=T.FLOAT))
        conv_input = "xf"
    nodes, inits = _head(nodes, inits, conv_input, "W")
    opsets = [helper.make_opsetid("", 17)]
    if bf16:  # the classifier MatMul in bfloat16: Cast, MatMul with bf16 weights, Cast back
        fw = next(i for i in inits if i.name == "FW")
        inits = [i for i in inits if i.name != "FW"] + [
            helper.make_tensor("FWb", T.BFLOAT16, fw.dims, numpy_helper.to_array(fw).flatten().tolist())]
        nodes[-1] = helper.make_node("Cast", ["f"], ["fb"], name="f_to_bf16", to=T.BFLOAT16)
        nodes += [helper.make_node("MatMul", ["fb", "FWb"], ["lb"], name="fc"),
                  helper.make_node("Cast", ["lb"], ["logits"], name="out_to_float", to=T.FLOAT)]
    outputs = [helper.make_tensor_value_info("logits", T.FLOAT, [batch, 10])] * outputs_listed
    if batch_only_output:
        nodes.append(helper.make_node("ArgMax", ["logits"], ["class_id"], name="argmax", axis=1, keepdims=0))
        outputs.append(helper.make_tensor_value_info("class_id", T.INT64, [batch]))
    if plugin:
        nodes.append(helper.make_node("BatchedNMSDynamic_TRT", ["logits"], ["num_dets"], name="nms", domain="TRT"))
        outputs = [helper.make_tensor_value_info("num_dets", T.INT32, [batch, 1])]
        opsets.append(helper.make_opsetid("TRT", 1))
    outputs += [helper.make_tensor_value_info(name, input_dtype, [batch, 3, SIZE, SIZE]) for name in extra_outputs]
    graph = helper.make_graph(nodes, name, [_x(input_dtype, batch)], outputs, inits)
    return _save(helper.make_model(graph, opset_imports=opsets), folder, name, ir=ir)

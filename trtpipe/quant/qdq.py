"""Q/DQ placement where TensorRT fuses it: which tensors get QuantizeLinear/DequantizeLinear, and writing them.

The placement follows TensorRT's explicit-quantization rules (and NVIDIA's pytorch-quantization toolkit):

- the activation inputs of Conv, ConvTranspose, Gemm and MatMul get one symmetric per-tensor INT8 Q/DQ
  pair, shared by every quantized consumer of that tensor;
- their constant weights become INT8 initializers behind a per-channel DequantizeLinear (symmetric,
  scale = max|w| / 127 per output channel); biases stay float, because TensorRT-RTX's parser rejects
  an int32 bias behind DequantizeLinear;
- a residual Add gets Q/DQ on the input that does *not* come straight from a single-consumer Conv, so
  TensorRT fuses the add into that convolution's epilogue;
- nothing else: quantizing an op TensorRT runs in floating point anyway only adds rounding error.

A *layer* is one node whose inputs are quantized; ``keep_fp`` names layers left in floating point. Kept layers
can run in FP16 (``insert_qdq(..., fp16_layers=...)``): TensorRT users mix INT8 and FP16, and a strongly typed
network computes a layer in the type of its tensors, so the layer's inputs are cast to FP16 in the ONNX, its
weights and bias stored in FP16, and its output cast back to FP32 (where an FP32 op reads it).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Input positions whose values TensorRT multiplies in INT8 (the bias, input 2, is never quantized).
_QUANTIZED_INPUTS = {"Conv": (0, 1), "ConvTranspose": (0, 1), "Gemm": (0, 1), "MatMul": (0, 1)}
INT8_MAX = 127.0
_MIN_AMAX = 1e-8  # a tensor that is all zeros still needs a positive scale


@dataclass(frozen=True)
class QuantFormat:
    """What Q/DQ quantizes to: INT8 (symmetric, zero point 0) or FP8 E4M3 (zero point 0), scale = amax / max_value."""

    name: str  # int8 | fp8: the --precision that writes it
    label: str  # for people: "INT8", "FP8 (E4M3)"
    max_value: float  # the largest magnitude the type holds: 127, or 448 for E4M3 (OCP FP8 spec; ONNX FLOAT8E4M3FN)
    onnx_type: int  # TensorProto.INT8 (3) | TensorProto.FLOAT8E4M3FN (17)
    min_opset: int  # 13: per-channel DequantizeLinear; 19: Q/DQ with float8 types

    def cast(self, scaled: np.ndarray) -> np.ndarray:
        """``scaled`` (values / scale, float32) rounded to the type as QuantizeLinear rounds (saturating): INT8 ties
        to even; E4M3 to the nearest representable value, ties to even (ml_dtypes, which onnx itself depends on)."""
        clipped = np.clip(scaled, -self.max_value, self.max_value)
        if self.name == "int8":
            return np.rint(clipped).astype(np.int8)
        import ml_dtypes

        return clipped.astype(ml_dtypes.float8_e4m3fn)


INT8 = QuantFormat("int8", "INT8", INT8_MAX, 3, 13)
FP8_E4M3 = QuantFormat("fp8", "FP8 (E4M3)", 448.0, 17, 19)
QUANT_FORMATS = {f.name: f for f in (INT8, FP8_E4M3)}


@dataclass(frozen=True)
class QuantizedInput:
    """One input of a layer that gets Q/DQ: an activation (calibrated) or a constant weight."""

    index: int  # input position on the node
    tensor: str
    is_weight: bool
    axis: int | None = None  # weights: per-channel axis; None means per-tensor


@dataclass(frozen=True)
class Layer:
    """A node whose inputs are quantized, named as in the ONNX (``op#index`` when the node has no name)."""

    name: str
    op_type: str
    node_index: int
    inputs: tuple[QuantizedInput, ...]


@dataclass(frozen=True)
class QdqPlan:
    """Where Q/DQ goes in one model: the layers, and the activations that need calibrated ranges."""

    layers: tuple[Layer, ...]

    @property
    def activations(self) -> tuple[str, ...]:
        """Activation tensors to calibrate, in graph order, each once."""
        seen: dict[str, None] = {}
        for layer in self.layers:
            for item in layer.inputs:
                if not item.is_weight:
                    seen.setdefault(item.tensor)
        return tuple(seen)

    def without(self, keep_fp: Iterable[str]) -> "QdqPlan":
        """The same plan with the layers named in ``keep_fp`` left in floating point."""
        keep = set(keep_fp)
        return QdqPlan(tuple(layer for layer in self.layers if layer.name not in keep))

    def only(self, names: Iterable[str]) -> "QdqPlan":
        """The plan restricted to the layers named (sensitivity analysis quantizes one at a time)."""
        wanted = set(names)
        return QdqPlan(tuple(layer for layer in self.layers if layer.name in wanted))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)


def default_opset(model) -> int:
    """The model's ai.onnx opset version."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def layer_name(node, index: int) -> str:
    return node.name or f"{node.op_type}#{index}"


def plan_qdq(model) -> QdqPlan:
    """Finds every layer TensorRT would run in INT8 given Q/DQ on its inputs.

    Args:
        model: onnx.ModelProto (FP32, without Q/DQ).

    Returns:
        QdqPlan in graph order.
    """
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumer_count: dict[str, int] = defaultdict(int)
    for node in graph.node:
        for name in node.input:
            consumer_count[name] += 1
    for output in graph.output:
        consumer_count[output.name] += 1

    not_float = _non_float32_tensors(model)
    layers = []
    for index, node in enumerate(graph.node):
        if node.op_type in QUANTIZED_OPS:
            inputs = _matmul_like_inputs(node, initializers)
        elif node.op_type == "Add":
            inputs = _residual_inputs(node, initializers, producers, consumer_count)
        else:
            continue
        if any(item.tensor in not_float for item in inputs):
            continue  # a layer computed in bfloat16/float16 by the model itself: its Q/DQ would need opset 19 types
        if inputs:
            layers.append(Layer(layer_name(node, index), node.op_type, index, tuple(inputs)))
    return QdqPlan(tuple(layers))


def _non_float32_tensors(model) -> set[str]:
    """Tensors whose element type is known and not float32 (a bfloat16 MatMul, an FP16 island), from the initializers
    and shape inference; empty when inference fails (every layer is then taken as FP32, as before)."""
    import onnx

    found = {init.name for init in model.graph.initializer if init.data_type != onnx.TensorProto.FLOAT}
    if not any(node.op_type == "Cast" for node in model.graph.node) and not found:
        return found  # an FP32 graph without Casts: nothing to infer (large models skip the inference)
    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - the types only narrow the plan
        return found
    for value in (*graph.input, *graph.value_info):
        elem_type = value.type.tensor_type.elem_type
        if elem_type and elem_type != onnx.TensorProto.FLOAT:
            found.add(value.name)
    return found


def _matmul_like_inputs(node, initializers) -> list[QuantizedInput]:
    inputs = []
    for position in _QUANTIZED_INPUTS[node.op_type]:
        if position >= len(node.input) or not node.input[position]:
            continue
        tensor = node.input[position]
        if tensor in initializers and position == 1:
            inputs.append(QuantizedInput(position, tensor, True, _weight_axis(node, initializers[tensor])))
        elif tensor not in initializers:
            inputs.append(QuantizedInput(position, tensor, False))
    if not any(not item.is_weight for item in inputs) and len(inputs) < 2:
        return []  # constant-only inputs: TensorRT folds them, nothing to run in INT8
    return inputs


def _weight_axis(node, weight) -> int | None:
    """Per-channel axis of a weight: the output channels TensorRT scales separately."""
    rank = len(weight.dims)
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        return 1 if group == 1 else None  # grouped deconvolution: per-tensor
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return rank - 1 if rank >= 2 else None  # MatMul: [.., K, N], channels along N


def _residual_inputs(node, initializers, producers, consumer_count) -> list[QuantizedInput]:
    """Quantizes the Add input TensorRT cannot fuse as a convolution's epilogue (the residual branch)."""
    if len(node.input) != 2 or any(name in initializers for name in node.input):
        return []
    producer_ops = [producers[name].op_type if name in producers else None for name in node.input]
    if producer_ops[0] == producer_ops[1] == "Constant":
        return []
    fusable = [
        op in ("Conv", "ConvTranspose") and consumer_count[name] == 1
        for name, op in zip(node.input, producer_ops)
    ]
    if not any(fusable):
        return []  # no convolution to fuse into: TensorRT runs this add in floating point
    position = 1 if fusable[0] else 0
    return [QuantizedInput(position, node.input[position], False)]


# ----------------------------------------------------------------------------------------------
# Writing Q/DQ
# ----------------------------------------------------------------------------------------------


def quantize_weight(weight: np.ndarray, axis: int | None, fmt: QuantFormat = INT8) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric weights in ``fmt``: returns (int8 or float8_e4m3fn values, float32 scale per channel, or a scalar)."""
    weight = weight.astype(np.float32)
    if axis is None:
        amax = np.float32(max(float(np.abs(weight).max(initial=0.0)), _MIN_AMAX))
        scale = np.float32(amax / fmt.max_value)
        return fmt.cast(weight / scale), np.asarray(scale)
    reduce_axes = tuple(i for i in range(weight.ndim) if i != axis)
    amax = np.maximum(np.abs(weight).max(axis=reduce_axes), _MIN_AMAX).astype(np.float32)
    scale = (amax / fmt.max_value).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    return fmt.cast(weight / scale.reshape(shape)), scale


def insert_qdq(model, plan: QdqPlan, amax: Mapping[str, float], fp16_layers: Iterable[Layer] = (), fmt: QuantFormat = INT8):
    """Returns a copy of ``model`` with Q/DQ written as ``plan`` says.

    Args:
        model: onnx.ModelProto (FP32).
        plan: from :func:`plan_qdq`, possibly ``.without(keep_fp)``.
        amax: calibrated absolute maximum of every activation in ``plan.activations``.
        fp16_layers: layers left out of ``plan`` (kept in floating point) that run in FP16 rather than FP32:
            FP16 Casts before their activation inputs (one per tensor, shared), FP16 copies of their constant
            inputs, and an FP32 Cast after each output that an FP32 op or the graph output reads. A kept layer
            that reads another's output reads its FP16 value directly. Indexes as in ``plan_qdq(model)``.
        fmt: INT8 (default) or FP8_E4M3 (per-tensor E4M3 activations, per-channel E4M3 weights).

    Raises:
        KeyError: an activation of the plan has no range (a bug: calibrate the plan's activations).
        ValueError: the model's opset is below ``fmt.min_opset`` (13 for INT8's per-channel DequantizeLinear, 19 for
            FP8; the callers convert first, see ``trtpipe.quant.prepare``).
    """
    from onnx import numpy_helper

    if default_opset(model) < fmt.min_opset:
        raise ValueError(f"{fmt.label} Q/DQ needs opset {fmt.min_opset}, the model is at {default_opset(model)}")

    model = _copy_model(model)
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    new_initializers = []
    # tensor -> name of its dequantized copy; pending Q/DQ nodes are emitted before their first consumer.
    dequantized: dict[str, str] = {}
    pending: dict[str, list] = {}
    rewire: dict[int, dict[int, str]] = defaultdict(dict)

    for layer in plan.layers:
        for item in layer.inputs:
            if item.tensor not in dequantized:
                if item.is_weight:
                    nodes, inits = _weight_dq(item, numpy_helper.to_array(initializers[item.tensor]), fmt)
                else:
                    nodes, inits = _activation_qdq(item.tensor, float(amax[item.tensor]), fmt)
                dequantized[item.tensor] = nodes[-1].output[0]
                pending[item.tensor] = nodes
                new_initializers += inits
            rewire[layer.node_index][item.index] = dequantized[item.tensor]

    half = _Fp16Writer(initializers)
    fp16_indices = {layer.node_index for layer in fp16_layers}
    nodes = []
    for index, node in enumerate(graph.node):
        for position, name in rewire.get(index, {}).items():
            source = node.input[position]
            nodes.extend(pending.pop(source, []))
            node.input[position] = name
        if index in fp16_indices:
            nodes.extend(half.wrap(node))
        else:
            nodes.append(node)
    graph.ClearField("node")
    graph.node.extend(half.drop_unread_casts(nodes, {o.name for o in graph.output}))
    graph.initializer.extend(new_initializers + half.initializers)
    _drop_unused_initializers(graph)
    _mark_as_trtpipes(model, fmt)
    return model


def _mark_as_trtpipes(model, fmt: QuantFormat = INT8) -> None:
    """Records in ``metadata_props`` that these Q/DQ are trtpipe's calibration: such a model is named "int8" / "fp8"
    (what ``--precision`` asked for), one that came quantized by its own Q/DQ (``trtpipe.onnx.quantized``)."""
    from trtpipe.onnx.quantized import TRTPIPE_QDQ_KEY

    for entry in model.metadata_props:
        if entry.key == TRTPIPE_QDQ_KEY:
            entry.value = f"{fmt.name} calibration"
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = TRTPIPE_QDQ_KEY, f"{fmt.name} calibration"


class _Fp16Writer:
    """Rewrites kept layers to compute in FP16 (see :func:`insert_qdq`'s ``fp16_layers``)."""

    def __init__(self, initializers: Mapping[str, object]):
        self.constants = initializers
        self.fp16_of: dict[str, str] = {}  # FP32 tensor -> its FP16 value (a Cast's output, a copy, a layer's output)
        self.initializers: list = []
        self.cast_backs: set[str] = set()  # names of the FP32 Casts after FP16 layers

    def wrap(self, node) -> list:
        """[Casts to FP16 of new inputs, the node reading and writing FP16, Casts back to FP32 of its outputs]."""
        from onnx import TensorProto, helper, numpy_helper

        before = []
        for position, name in enumerate(node.input):
            if not name:
                continue
            if name not in self.fp16_of:
                if name in self.constants:
                    values = numpy_helper.to_array(self.constants[name]).astype(np.float16)
                    self.initializers.append(numpy_helper.from_array(values, f"{name}_fp16"))
                else:
                    before.append(helper.make_node("Cast", [name], [f"{name}_fp16"], name=f"{name}_to_fp16",
                                                   to=TensorProto.FLOAT16))
                self.fp16_of[name] = f"{name}_fp16"
            node.input[position] = self.fp16_of[name]
        after = []
        for position, name in enumerate(node.output):
            if not name:
                continue
            node.output[position] = f"{name}_fp16"
            self.fp16_of[name] = f"{name}_fp16"
            after.append(helper.make_node("Cast", [f"{name}_fp16"], [name], name=f"{name}_to_fp32", to=TensorProto.FLOAT))
            self.cast_backs.add(after[-1].name)
        return before + [node] + after

    def drop_unread_casts(self, nodes: list, graph_outputs: set[str]) -> list:
        """``nodes`` without the FP32 Casts that nothing reads (every reader was an FP16 layer)."""
        read = set(graph_outputs)
        for node in nodes:
            read.update(node.input)
            for attribute in node.attribute:  # If/Loop bodies read outer-scope tensors by name
                for body in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                    read |= _names_used(body)
        return [n for n in nodes if n.name not in self.cast_backs or n.output[0] in read]


def _activation_qdq(tensor: str, amax: float, fmt: QuantFormat = INT8):
    from onnx import TensorProto, helper

    scale = np.float32(max(amax, _MIN_AMAX) / fmt.max_value)
    scale_name, zero_name = f"{tensor}_qdq_scale", f"{tensor}_qdq_zero_point"
    inits = [
        helper.make_tensor(scale_name, TensorProto.FLOAT, [], [float(scale)]),
        helper.make_tensor(zero_name, fmt.onnx_type, [], [0]),  # the zero point's type is the quantized type
    ]
    quantized, dequantized = f"{tensor}_quantized", f"{tensor}_dequantized"
    nodes = [
        helper.make_node("QuantizeLinear", [tensor, scale_name, zero_name], [quantized], name=f"{tensor}_QuantizeLinear"),
        helper.make_node(
            "DequantizeLinear", [quantized, scale_name, zero_name], [dequantized], name=f"{tensor}_DequantizeLinear"
        ),
    ]
    return nodes, inits


def _weight_dq(item: QuantizedInput, weight: np.ndarray, fmt: QuantFormat = INT8):
    from onnx import helper, numpy_helper

    values, scale = quantize_weight(weight, item.axis, fmt)
    base = item.tensor
    zero = np.zeros(scale.shape, values.dtype)
    inits = [
        numpy_helper.from_array(values, f"{base}_quantized"),
        numpy_helper.from_array(scale, f"{base}_scale"),
        numpy_helper.from_array(zero, f"{base}_zero_point"),
    ]
    attributes = {"axis": item.axis} if item.axis is not None else {}
    node = helper.make_node(
        "DequantizeLinear",
        [f"{base}_quantized", f"{base}_scale", f"{base}_zero_point"],
        [f"{base}_dequantized"],
        name=f"{base}_DequantizeLinear",
        **attributes,
    )
    return [node], inits


def _copy_model(model):
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _drop_unused_initializers(graph) -> None:
    used = _names_used(graph) | {o.name for o in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    graph.ClearField("initializer")
    graph.initializer.extend(kept)


def _names_used(graph) -> set[str]:
    """Every tensor name a node of ``graph`` reads, including nodes of its If/Loop/Scan bodies (outer-scope reads)."""
    used = set()
    for node in graph.node:
        used.update(node.input)
        for attribute in node.attribute:
            for body in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                used |= _names_used(body) | {o.name for o in body.output}
    return used


# ----------------------------------------------------------------------------------------------
# Checking a Q/DQ model
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QdqCounts:
    """How much of a model runs in INT8, and whether its Q/DQ nodes are well formed."""

    quantized_layers: int  # Conv/ConvTranspose/Gemm/MatMul whose multiplied inputs all come from DequantizeLinear
    total_layers: int  # Conv/ConvTranspose/Gemm/MatMul in the graph
    quantize_nodes: int
    dequantize_nodes: int
    dangling: tuple[str, ...]  # Q without a DQ consumer, DQ fed by neither Q nor an INT8 constant, unused outputs
    subgraph_layers: int = 0  # Conv/Gemm/MatMul inside If/Loop/Scan bodies: placement does not enter them, so float

    def summary(self) -> str:
        text = (
            f"{self.quantized_layers}/{self.total_layers} Conv/Gemm/MatMul quantized, "
            f"{self.quantize_nodes} Q + {self.dequantize_nodes} DQ nodes, {len(self.dangling)} dangling"
        )
        if self.subgraph_layers:
            text += f"; {self.subgraph_layers} more inside If/Loop subgraphs left in float"
        return text


def count_qdq(model) -> QdqCounts:
    """Counts quantized layers and Q/DQ nodes, and lists Q/DQ nodes not paired as TensorRT needs."""
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    graph_outputs = {o.name for o in graph.output}
    # quantized constants a DequantizeLinear may read directly: INT8 (3) and FP8 E4M3 (17) weights
    int8_constants = {init.name for init in graph.initializer if init.data_type in (3, 17)}

    quantized = total = 0
    for node in graph.node:
        if node.op_type in QUANTIZED_OPS:
            total += 1
            positions = [p for p in _QUANTIZED_INPUTS[node.op_type] if p < len(node.input)]
            fed = [producers.get(node.input[p]) for p in positions]
            quantized += all(n is not None and n.op_type == "DequantizeLinear" for n in fed)

    dangling = []
    for node in graph.node:
        label = node.name or node.output[0]
        users = consumers.get(node.output[0], [])
        if node.op_type == "QuantizeLinear":
            if not users or any(u.op_type != "DequantizeLinear" for u in users):
                dangling.append(f"QuantizeLinear {label}")
        elif node.op_type == "DequantizeLinear":
            source = producers.get(node.input[0])
            if (source is None or source.op_type != "QuantizeLinear") and node.input[0] not in int8_constants:
                dangling.append(f"DequantizeLinear {label} (input is neither Q nor an INT8 constant)")
            elif not users and node.output[0] not in graph_outputs:
                dangling.append(f"DequantizeLinear {label} (output unused)")
    count = lambda op: sum(n.op_type == op for n in graph.node)  # noqa: E731
    return QdqCounts(
        quantized, total, count("QuantizeLinear"), count("DequantizeLinear"), tuple(dangling), _subgraph_layers(graph)
    )


def _subgraph_layers(graph) -> int:
    """Conv/ConvTranspose/Gemm/MatMul nodes inside the If/Loop/Scan bodies of ``graph`` (at any depth)."""
    found = 0
    for node in graph.node:
        for attribute in node.attribute:
            for body in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                found += sum(n.op_type in QUANTIZED_OPS for n in body.node) + _subgraph_layers(body)
    return found

"""Models that arrive already quantized: what their QuantizeLinear/DequantizeLinear nodes are, and what TensorRT takes.

ModelOpt, ONNX Runtime's ``quantize_static``, PyTorch QAT exports and TensorRT's own tools all write explicit Q/DQ:
INT8 or UINT8, FP8 (E4M3, E5M2), INT4/UINT4 (weight-only, often per block), per tensor, per channel (``axis``) or per
block (``block_size``, opset 21), with zero points. :func:`scan_quantization` reads them once, so that every place that
names a model's precision (sidecar, ``inspect``, ``infer``, bench, reports, Triton) names it the same way
(:attr:`Quantization.precision`), and so that build, calibrate and fidelity refuse the same things, naming the node,
before any work (:func:`check_tensorrt_takes`).

Written by hand over ``onnx`` protos: onnx-graphsurgeon and Polygraphy place or fold Q/DQ but neither describes an
existing placement, and the deployment path (``runtime/``, which labels an ONNX it runs) must not import build tooling.
"""

from __future__ import annotations

from dataclasses import dataclass

from trtpipe.errors import OnnxModelError

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# ONNX's own Q/DQ, and ONNX Runtime's contrib ones (int16/int4 before opset 21), which are a quantization all the same
_QDQ_DOMAINS = ("", "ai.onnx", "com.microsoft")

# ONNX TensorProto element type -> (trtpipe's dtype name, how a precision label says it). Numbers, not onnx's names:
# this table is read without importing onnx.
_QUANTIZED_TYPES = {
    3: ("int8", "int8"), 2: ("uint8", "uint8"), 5: ("int16", "int16"), 4: ("uint16", "uint16"),
    6: ("int32", "int32"),  # ONNX Runtime's quantize_static stores biases as int32 behind a DequantizeLinear
    17: ("float8e4m3fn", "fp8 (E4M3)"), 18: ("float8e4m3fnuz", "fp8 (E4M3 FNUZ)"),
    19: ("float8e5m2", "fp8 (E5M2)"), 20: ("float8e5m2fnuz", "fp8 (E5M2 FNUZ)"),
    22: ("int4", "int4"), 21: ("uint4", "uint4"), 23: ("float4e2m1", "fp4 (E2M1)"),
}
_FLOAT_LABELS = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp64"}

# What TensorRT's ONNX parser builds behind Q/DQ (10.x, 11 and RTX): TensorRT's FP8 is E4M3 (DataType.FP8), its FP4 E2M1,
# its INT4 signed. Measured with TensorRT-RTX 1.7 on a Conv: int8, fp8 E4M3 and int4 weights parse and build; fp8 E5M2
# and uint4 weights fail in importInitializers, uint8 Q/DQ "Found unsupported input type of UINT8". The rest is refused
# before any work, naming the node, instead of after a calibration.
TENSORRT_QDQ_TYPES = ("int8", "float8e4m3fn", "int4", "float4e2m1")

# metadata_props key trtpipe's calibration writes into its own Q/DQ ONNX: that INT8 is trtpipe's ("int8"), a model that
# came quantized is named from its Q/DQ ("int8 as quantized in the ONNX")
TRTPIPE_QDQ_KEY = "trtpipe.qdq"


@dataclass(frozen=True)
class QdqNode:
    """One QuantizeLinear or DequantizeLinear node of a model."""

    name: str  # the node's name (``op#index`` when it has none)
    op_type: str  # QuantizeLinear | DequantizeLinear
    dtype: str  # the quantized side's type: int8, uint8, float8e4m3fn, float8e5m2, int4, uint4, int32, ... or unknown
    granularity: str  # "per tensor", "per channel (axis 0)" or "per block (axis 1, block_size 32)"
    weight: bool  # its value is a constant (stored quantized weights, or Q of a float weight); else an activation
    zero_point: float | None  # the largest |zero point| (0.0: symmetric), None when it has none or it is not constant
    float_dtype: str | None  # the float side's type (the scale's): fp32, fp16, bf16; None when not known
    domain: str = ""  # "" (ONNX's op) or "com.microsoft" (ONNX Runtime's contrib Q/DQ, quantize_static UseQDQContribOps)

    @property
    def label(self) -> str:
        """The type as a precision label says it: ``int8``, ``fp8 (E4M3)``, ``int4`` ..."""
        return next((label for name, label in _QUANTIZED_TYPES.values() if name == self.dtype), self.dtype)

    @property
    def asymmetric(self) -> bool:
        return bool(self.zero_point)


@dataclass(frozen=True)
class Quantization:
    """The Q/DQ nodes of one model (empty for a float model) and the precision they give it."""

    nodes: tuple[QdqNode, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.nodes)

    @property
    def precision(self) -> str | None:
        """How the model computes, named from its own Q/DQ: "int8 as quantized in the ONNX", "fp8 (E4M3) weights and
        activations", "int4 weights, fp16 activations", "int8 weights, fp8 (E4M3) activations"; None without Q/DQ.

        Integer biases (int32 behind a DequantizeLinear) are part of an INT8 layer, not a precision of their own."""
        if not self.nodes:
            return None
        nodes = [n for n in self.nodes if n.dtype != "int32"] or list(self.nodes)
        weights = _labels(n for n in nodes if n.weight)
        activations = _labels(n for n in nodes if not n.weight)
        every = _labels(nodes)
        if set(every) <= {"int8", "uint8"}:
            return f"{'/'.join(every)} as quantized in the ONNX"
        floats = _labels((n for n in nodes if n.float_dtype), attribute="float_dtype") or ["fp32"]
        if weights == activations:
            return f"{'/'.join(weights)} weights and activations"
        return f"{'/'.join(weights) or '/'.join(floats)} weights, {'/'.join(activations) or '/'.join(floats)} activations"

    @property
    def key(self) -> str | None:
        """One word for the precision, as tables and file names use: int8, uint8, fp8, int4, fp4 or mixed."""
        if not self.nodes:
            return None
        words = {n.label.split(" ")[0] for n in self.nodes if n.dtype != "int32"} or {"int8"}
        return words.pop() if len(words) == 1 else "mixed"

    def names(self, shown: int = 4) -> str:
        """The nodes' names for a message: ``x_q, x_dq, w_dq (+3 more)``."""
        names = [n.name for n in self.nodes]
        return ", ".join(names[:shown]) + (f" (+{len(names) - shown} more)" if len(names) > shown else "")

    def summary(self) -> str:
        """One line for notes: the precision, the node count, the granularities and zero points."""
        kinds = sorted({n.granularity.split(" (")[0] for n in self.nodes})
        asymmetric = [n.name for n in self.nodes if n.asymmetric]
        zero = f"asymmetric zero points at {', '.join(asymmetric[:3])}" if asymmetric else "symmetric (zero points 0)"
        return f"{self.precision}: {len(self.nodes)} Q/DQ nodes ({self.names()}), {', '.join(kinds)}, {zero}"


def model_quantization_label(model) -> str | None:
    """The precision of a Q/DQ model as trtpipe names it everywhere: "int8" / "fp8" for the Q/DQ ONNX trtpipe's
    calibration wrote (the ``--precision`` it was asked for), else :attr:`Quantization.precision`; None without Q/DQ."""
    quantization = scan_quantization(model)
    if not quantization:
        return None
    if any(p.key == TRTPIPE_QDQ_KEY for p in model.metadata_props) and quantization.key in ("int8", "fp8"):
        return quantization.key  # what --precision int8 / fp8 asked for
    return quantization.precision


def precision_key(precision: str | None) -> str | None:
    """The one-word precision of a label: "fp8 (E4M3) weights and activations" -> "fp8", "int8 as quantized in the
    ONNX" -> "int8", "fp16" -> "fp16" (what ``--precision`` options and table columns compare)."""
    if not precision:
        return precision
    return precision.split(" ")[0].split("/")[0].rstrip(",")


def _labels(nodes, attribute: str = "label") -> list[str]:
    seen: dict[str, None] = {}
    for node in nodes:
        seen.setdefault(getattr(node, attribute))
    return list(seen)


def scan_quantization(model) -> Quantization:
    """Every QuantizeLinear/DequantizeLinear of ``model`` (the main graph), described.

    Args:
        model: an onnx.ModelProto; its weights need not be loaded unless zero points are external data (then their
            values read as unknown, ``zero_point=None``).

    Returns:
        Quantization; falsy for a model without Q/DQ.
    """
    graph = model.graph
    nodes = [node for node in graph.node if node.op_type in QDQ_OPS and node.domain in _QDQ_DOMAINS]
    if not nodes:
        return Quantization()
    constants = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            value = next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)
            if value is not None:
                constants[node.output[0]] = value
    declared = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info, *graph.output)}
    producers = {out: node for node in graph.node for out in node.output}
    found = []
    for index, node in enumerate(graph.node):
        if node.op_type not in QDQ_OPS or node.domain not in _QDQ_DOMAINS:
            continue
        source = node.input[0]
        quantize = producers.get(source) if node.op_type == "DequantizeLinear" else None
        weight = source in constants or (
            quantize is not None and quantize.op_type == "QuantizeLinear" and quantize.input[0] in constants
        )
        found.append(QdqNode(
            name=node.name or f"{node.op_type}#{index}",
            op_type=node.op_type,
            dtype=_quantized_type(node, constants, declared, producers),
            granularity=_granularity(node, constants),
            weight=weight,
            zero_point=_zero_point(node, constants),
            float_dtype=_float_type(node, constants, declared),
            domain="" if node.domain == "ai.onnx" else node.domain,
        ))
    return Quantization(tuple(found))


def _type_name(elem_type: int | None) -> str | None:
    return _QUANTIZED_TYPES[elem_type][0] if elem_type in _QUANTIZED_TYPES else None


def _quantized_type(node, constants, declared, producers) -> str:
    """The integer/FP8/FP4 side: Q's output, DQ's input (the zero point's type, else the stored value's, else opset
    21's output_dtype, else what the producing Q makes, else the value_info); ONNX's default is uint8."""
    zero_point = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if zero_point in constants:
        return _type_name(constants[zero_point].data_type) or "unknown"
    if node.op_type == "DequantizeLinear":
        source = node.input[0]
        if source in constants:
            return _type_name(constants[source].data_type) or "unknown"
        producer = producers.get(source)
        if producer is not None and producer.op_type == "QuantizeLinear":
            return _quantized_type(producer, constants, declared, producers)
        return _type_name(declared.get(source)) or "unknown"
    output_dtype = next((a.i for a in node.attribute if a.name == "output_dtype"), 0)
    if output_dtype:
        return _type_name(output_dtype) or "unknown"
    return _type_name(declared.get(node.output[0])) or "uint8"


def _granularity(node, constants) -> str:
    attributes = {a.name: a.i for a in node.attribute if a.type == 2}  # INT attributes
    scale = constants.get(node.input[1]) if len(node.input) > 1 else None
    dims = list(scale.dims) if scale is not None else []
    if attributes.get("block_size", 0) > 0:
        return f"per block (axis {attributes.get('axis', 1)}, block_size {attributes['block_size']})"
    if scale is not None and (len(dims) == 0 or (len(dims) == 1 and dims[0] == 1)):
        return "per tensor"
    if scale is None:
        return "per tensor (scale not constant)"
    return f"per channel (axis {attributes.get('axis', 1)})"


def _zero_point(node, constants) -> float | None:
    if len(node.input) < 3 or not node.input[2]:
        return 0.0  # absent: zero
    tensor = constants.get(node.input[2])
    if tensor is None:
        return None
    from onnx import numpy_helper

    try:
        values = numpy_helper.to_array(tensor).astype("float32")
    except Exception:  # noqa: BLE001 - external data not loaded, or a type this onnx cannot unpack
        return None
    return float(abs(values).max()) if values.size else 0.0


def _float_type(node, constants, declared) -> str | None:
    scale = node.input[1] if len(node.input) > 1 else None
    elem = constants[scale].data_type if scale in constants else declared.get(scale)
    return _FLOAT_LABELS.get(elem)


def check_tensorrt_takes(quantization: Quantization, path, verb: str, takes: tuple[str, ...] = TENSORRT_QDQ_TYPES,
                         who: str = "TensorRT's parser") -> None:
    """Refuses, naming the node, Q/DQ that TensorRT's parser rejects: a nonzero zero point (TensorRT quantizes
    symmetrically) or a type outside :data:`TENSORRT_QDQ_TYPES` (E5M2, UINT4, INT16, int32 biases ...).

    Build, calibrate and fidelity call it first thing, so that a model that cannot be built is refused by each of them
    the same way, before any calibration or measurement.

    Args:
        quantization: :func:`scan_quantization` of the model.
        path: the ONNX file, for the message.
        verb: what was asked (``build``, ``calibrate``, ``fidelity``), for the message.
        takes: the Q/DQ types accepted (a build passes its flavour's, ``Flavor.qdq_types``).
        who: what takes them, for the message ("TensorRT-RTX 1.7.1").

    Raises:
        OnnxModelError: naming the first node of each problem, what it has and what TensorRT takes.
    """
    contrib = [n for n in quantization.nodes if n.domain]
    if contrib:
        node = contrib[0]
        raise OnnxModelError(
            f"{path}: {node.op_type} {node.name!r} is ONNX Runtime's contrib op (domain {node.domain!r}), which "
            f"TensorRT's parser does not import, so {verb} refuses the model before any work",
            "quantize it again with ONNX's own Q/DQ (quantize_static(..., extra_options={'UseQDQContribOps': False}), "
            "int8 or fp8), or build the float model",
        )
    asymmetric = [n for n in quantization.nodes if n.asymmetric]
    if asymmetric:
        node = asymmetric[0]
        others = f" (and {len(asymmetric) - 1} more)" if len(asymmetric) > 1 else ""
        raise OnnxModelError(
            f"{path}: {node.op_type} {node.name!r}{others} has zero point {node.zero_point:g} ({node.dtype}, "
            f"asymmetric); TensorRT takes symmetric Q/DQ only (zero point 0), so {verb} refuses the model before any work",
            "quantize it again symmetrically from the float model (ONNX Runtime's quantize_static with "
            "activation_type=QuantType.QInt8, extra_options={'ActivationSymmetric': True, 'WeightSymmetric': True}; "
            "or trtpipe calibrate on the float model)",
        )
    unsupported = [n for n in quantization.nodes if n.dtype not in takes]
    if unsupported:
        node = unsupported[0]
        kinds = sorted({n.dtype for n in unsupported})
        bias = " (ONNX Runtime's quantize_static stores biases so; QuantizeBias=False keeps them float)" \
            if "int32" in kinds else ""
        raise OnnxModelError(
            f"{path}: {node.op_type} {node.name!r} quantizes to {node.dtype}{bias}"
            f"{f' ({len(unsupported)} such nodes, types {kinds})' if len(unsupported) > 1 else ''}; {who} "
            f"takes Q/DQ of {', '.join(takes)} only, so {verb} refuses the model before any work",
            "quantize the float model again to a type TensorRT takes (int8, or fp8 E4M3 for Hopper/Ada), "
            "or build the float model",
        )


def already_quantized_error(quantization: Quantization, path, verb: str) -> OnnxModelError:
    """The refusal of a verb that would quantize a model again (``calibrate``, an INT8 fidelity row)."""
    return OnnxModelError(
        f"{path} is already quantized ({quantization.precision}: Q/DQ nodes {quantization.names()}); {verb} would "
        "quantize it a second time (Q -> DQ -> Q -> DQ), so nothing was calibrated or written",
        f"build it as it is (trtpipe build {path} uses its own Q/DQ), or run {verb} on the float model it was "
        "quantized from",
    )

"""FP16 ONNX for strongly typed builds: FP16 inside, FP32 inputs and outputs, what FP16 cannot hold kept FP32.

The conversion itself is ONNX Runtime's ``onnxruntime.transformers.float16`` (the converter of
onnxconverter-common, which is not a dependency here; Polygraphy's ``--fp-to-fp16`` wraps the same
code). trtpipe decides what stays FP32, in three ways:

- by op type (``SENSITIVE_OPS``): exponentials and logs overflow, norms and reductions accumulate rounding;
- by measurement: before converting, an FP32 pass over images (:func:`measure_ranges`) finds the tensors whose
  magnitude exceeds FP16's range (largest finite value 65504) or whose values flush to zero in FP16 (below
  2**-24), and the ops that produce *and* read them stay FP32, so the tensor is never stored in FP16. This is
  the input/output range rule of NVIDIA ModelOpt's AutoCast (``data_max``); float weights beyond 65504 keep
  their readers FP32 the same way (AutoCast's ``init_max``);
- by name (``--keep-fp``).

The converter casts every tensor between two FP32 ops to FP16 and back (it stores all activations as FP16),
which still overflows; :func:`convert_to_fp16` replaces each such FP32->FP16->FP32 round trip with the FP32
tensor itself.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

log = logging.getLogger("trtpipe")

# Ops whose FP16 result loses range or precision that matters: exponentials and logs overflow, norms and
# reductions accumulate rounding, and Pow/Sqrt/Div on small values underflow. Everything else (convs,
# matmuls, activations, pooling, resizes) runs in FP16 as TensorRT's FP16 mode would run it.
SENSITIVE_OPS = (
    "Exp", "Log", "Pow", "Sqrt", "Reciprocal", "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp",
    "LayerNormalization", "InstanceNormalization", "GroupNormalization",
    "Range", "TopK", "NonMaxSuppression", "RoiAlign", "CumSum",
)
FP16_MAX = 65504.0  # IEEE 754 binary16's largest finite value
FP16_SMALLEST = 2.0**-24  # its smallest positive (subnormal) value; smaller magnitudes round to zero
# A tensor counts as out of range from half of FP16_MAX: the images measured are a sample, and an input a
# little brighter than any of them must not overflow at once (ModelOpt's AutoCast defaults to a far stricter 512).
RANGE_LIMIT = FP16_MAX / 2
FLUSH_SHARE = 0.01  # out of range when more than 1% of a tensor's nonzero values would flush to zero
RANGE_IMAGES = 32  # images in the range pass: extremes show on a few dozen; each costs one FP32 run
RANGE_BATCH = 2  # the pass returns every float tensor of the model at once: small batches bound its memory

_FLOAT = 1  # onnx.TensorProto.FLOAT
_FLOAT16 = 10  # onnx.TensorProto.FLOAT16


@dataclass(frozen=True)
class TensorRange:
    """What FP32 values one tensor took over the range pass."""

    name: str
    max_abs: float  # largest |x| seen (inf when a value was infinite)
    flushed: float  # share of the nonzero values with |x| < FP16_SMALLEST (0 to FP16)

    @property
    def problem(self) -> str | None:
        """Why FP16 cannot hold this tensor (``"reaches 1.2e+05"``), or None."""
        if not math.isfinite(self.max_abs) or self.max_abs > RANGE_LIMIT:
            return f"reaches {self.max_abs:.3g}"
        if self.flushed > FLUSH_SHARE:
            return f"has {self.flushed:.0%} of its nonzero values below {FP16_SMALLEST:.3g}, which flush to zero"
        return None


@dataclass(frozen=True)
class Fp16Result:
    model: object  # onnx.ModelProto
    kept_fp32: tuple[str, ...]  # node names left in FP32 (op type, range and name rules together)
    range_kept: Mapping[str, str] = field(default_factory=dict)  # node -> why the range pass kept it FP32
    range_images: int = 0  # images the range pass ran over (0: no range pass)
    round_trips_removed: int = 0  # FP32->FP16->FP32 Cast pairs between FP32 ops replaced by the FP32 tensor
    out_of_range: Mapping[str, str] = field(default_factory=dict)  # tensor (or weight) -> what FP16 cannot hold

    @property
    def notes(self) -> tuple[str, ...]:
        if not self.kept_fp32:
            notes = ["FP16 ONNX with FP32 inputs/outputs; every op in FP16"]
        else:
            shown = ", ".join(self.kept_fp32[:5]) + (" ..." if len(self.kept_fp32) > 5 else "")
            notes = [f"FP16 ONNX with FP32 inputs/outputs; {len(self.kept_fp32)} nodes kept FP32: {shown}"]
        if self.range_images == 0:
            notes.append("FP16 range check skipped (no images given): a tensor beyond FP16's range would overflow")
        if self.out_of_range:
            tensors = ", ".join(f"{name!r} {why}" for name, why in list(self.out_of_range.items())[:4])
            more = f" (and {len(self.out_of_range) - 4} more)" if len(self.out_of_range) > 4 else ""
            nodes = ", ".join(list(self.range_kept)[:6]) + (" ..." if len(self.range_kept) > 6 else "")
            where = f"on {self.range_images} images" if self.range_images else "of the weights"
            notes.append(
                f"FP16 range check {where}: {len(self.out_of_range)} tensors FP16 cannot hold ({tensors}{more}; "
                f"limit {RANGE_LIMIT:g}, half of FP16's largest {FP16_MAX:g}), so the {len(self.range_kept)} nodes "
                f"that write or read them stay FP32: {nodes}"
            )
        elif self.range_images:
            notes.append(f"FP16 range check on {self.range_images} images: every tensor fits FP16")
        return tuple(notes)


# ----------------------------------------------------------------------------------------------
# The range pass
# ----------------------------------------------------------------------------------------------


def name_nodes(model) -> None:
    """Gives every unnamed node of ``model`` the name ``op#index`` (in place): FP32 rules name nodes."""
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}#{index}"


def float_tensors(model) -> list[str]:
    """Names of the FP32 tensors of the main graph that nodes produce or graph inputs bring, in graph order."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception:  # noqa: BLE001 - inference is a help: tensors it cannot type are not measured
        inferred = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.input) + list(inferred.value_info) + list(inferred.output)}
    initializers = {init.name for init in model.graph.initializer}
    names = [v.name for v in model.graph.input if v.name not in initializers]
    names += [name for node in model.graph.node for name in node.output if name]
    return [name for name in dict.fromkeys(names) if types.get(name) == _FLOAT]


def measure_ranges(
    model, batches: Iterable, progress: Callable[[int], None] | None = None
) -> tuple[dict[str, TensorRange], int]:
    """Runs the FP32 ``model`` over ``batches`` and records every float tensor's magnitude.

    Args:
        model: FP32 onnx.ModelProto (initializers listed as inputs removed, see ``quant.feeds``).
        batches: image batches for its image input (``ImageSet.batches``), or feed dictionaries.
        progress: called with the number of images after each batch.

    Returns:
        ({tensor name: TensorRange}, images run).

    Raises:
        OnnxModelError: ONNX Runtime cannot load or run the model.
    """
    from trtpipe.quant.calibrate import augmented_session
    from trtpipe.quant.feeds import as_feed, feed_size, image_input_name, onnxruntime_errors

    tensors = float_tensors(model)
    graph_inputs = {v.name for v in model.graph.input}
    input_name = image_input_name(model)
    largest = dict.fromkeys(tensors, 0.0)
    nonzero = dict.fromkeys(tensors, 0)
    tiny = dict.fromkeys(tensors, 0)

    def add(name, values) -> None:
        magnitude = np.abs(np.asarray(values, np.float32))
        largest[name] = max(largest[name], float(magnitude.max(initial=0.0)))
        positive = magnitude > 0
        nonzero[name] += int(positive.sum())
        tiny[name] += int((positive & (magnitude < FP16_SMALLEST)).sum())

    images = 0
    with onnxruntime_errors(f"model {model.graph.name!r}", "run it to measure FP16 ranges"):
        session, names = augmented_session(model, [t for t in tensors if t not in graph_inputs])
        for batch in batches:
            feed = as_feed(batch, input_name)
            for name, values in list(zip(names, session.run(None, feed))) + list(feed.items()):
                if name in largest:
                    add(name, values)
            images += feed_size(batch)
            if progress is not None:
                progress(feed_size(batch))
    ranges = {
        name: TensorRange(name, largest[name], tiny[name] / nonzero[name] if nonzero[name] else 0.0) for name in tensors
    }
    return ranges, images


def range_kept_nodes(model, ranges: Mapping[str, TensorRange]) -> tuple[dict[str, str], dict[str, str]]:
    """The nodes that must stay FP32 so that no tensor FP16 cannot hold is stored in FP16.

    Both the producer and every reader of such a tensor stay FP32 (a reader in FP16 would cast it to FP16).
    Readers of a float initializer beyond FP16's range stay FP32 too. ``model``'s nodes must be named
    (:func:`name_nodes`).

    Returns:
        ({node name: why it stays FP32}, {tensor or weight name: what FP16 cannot hold}).
    """
    from onnx import numpy_helper

    why: dict[str, str] = {}
    problems = {name: r.problem for name, r in ranges.items() if r.problem}
    readers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.name)
    for node in model.graph.node:
        for name in node.output:
            problem = ranges[name].problem if name in ranges else None
            if problem:
                why.setdefault(node.name, f"output {name!r} {problem}")
                for reader in readers.get(name, []):
                    why.setdefault(reader, f"input {name!r} {problem}")
    for value in model.graph.input:
        problem = ranges[value.name].problem if value.name in ranges else None
        for reader in readers.get(value.name, []) if problem else []:
            why.setdefault(reader, f"input {value.name!r} {problem}")
    for init in model.graph.initializer:
        if init.data_type != _FLOAT or init.name not in readers:
            continue
        largest = float(np.abs(numpy_helper.to_array(init)).max(initial=0.0))
        if largest > FP16_MAX:
            problems[init.name] = f"(a weight) reaches {largest:.3g}"
            for reader in readers[init.name]:
                why.setdefault(reader, f"weight {init.name!r} {problems[init.name]}")
    return why, problems


# ----------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------


def convert_to_fp16(
    model,
    keep_ops: Iterable[str] = SENSITIVE_OPS,
    keep_nodes: Iterable[str] = (),
    ranges: Mapping[str, TensorRange] | None = None,
    range_images: int = 0,
) -> Fp16Result:
    """Converts an FP32 ModelProto to FP16 with FP32 I/O.

    Args:
        model: onnx.ModelProto (FP32).
        keep_ops: op types left in FP32 (Cast nodes are inserted around them).
        keep_nodes: node names left in FP32.
        ranges: from :func:`measure_ranges` on this model (its nodes named by :func:`name_nodes` first):
            producers and readers of tensors FP16 cannot hold stay FP32. None: no range rule.
        range_images: how many images ``ranges`` were measured on (for the notes).

    Returns:
        Fp16Result with the converted model (topologically sorted, passing the full ONNX checker) and the
        nodes kept FP32.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    source = onnx.ModelProto()
    source.CopyFrom(model)
    name_nodes(source)
    range_kept, out_of_range = range_kept_nodes(source, ranges or {})
    # Q/DQ stay FP32 (their scales too): QuantizeLinear/DequantizeLinear below opset 19 take float32 only, so a
    # float16 input or scale there is invalid ONNX that TensorRT may build and ONNX Runtime refuses; at opset 19 the
    # model's own FP32 scales are its quantization, which converting them would round
    block_ops = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(keep_ops) | {"QuantizeLinear", "DequantizeLinear"})
    block_nodes = list(dict.fromkeys(list(keep_nodes) + list(range_kept)))
    kept = tuple(n.name for n in source.graph.node if n.op_type in block_ops or n.name in block_nodes)
    converted = convert_float_to_float16(
        source, keep_io_types=True, op_block_list=block_ops, node_block_list=block_nodes, disable_shape_infer=False
    )
    removed = drop_fp16_round_trips(converted)
    # The converter appends the Casts of the FP32 inputs at the end of the node list; the ONNX checker
    # (and so the builder's intake) requires topological order.
    import onnx_graphsurgeon as gs

    sorted_model = gs.export_onnx(gs.import_onnx(converted).cleanup().toposort())
    sorted_model.ir_version = converted.ir_version
    onnx.checker.check_model(sorted_model)
    return Fp16Result(sorted_model, kept, range_kept, range_images if ranges is not None else 0, removed, out_of_range)


def drop_fp16_round_trips(model) -> int:
    """Replaces every FP32 -> Cast(FP16) -> Cast(FP32) chain with the FP32 tensor itself (in place).

    The FP32 Cast becomes an ``Identity`` of the FP32 source, so readers (and graph outputs, and If/Loop bodies
    that read it by name) keep their names; the FP16 Cast stays only if an FP16 op still reads it (a later
    ``cleanup`` drops it otherwise). Returns how many chains were replaced.
    """
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    types.update({init.name: init.data_type for init in graph.initializer})
    producer = {name: node for node in graph.node for name in node.output}
    removed = 0
    for node in graph.node:
        if _cast_target(node) != _FLOAT:
            continue
        first = producer.get(node.input[0])
        if first is None or _cast_target(first) != _FLOAT16:
            continue
        source = first.input[0]
        source_type = types.get(source)
        if source_type is None and source in producer and _cast_target(producer[source]) is not None:
            source_type = _cast_target(producer[source])
        if source_type != _FLOAT:
            continue
        node.op_type = "Identity"
        node.input[0] = source
        del node.attribute[:]
        removed += 1
    return removed


def _cast_target(node) -> int | None:
    if node.op_type != "Cast":
        return None
    return next((a.i for a in node.attribute if a.name == "to"), None)


def write_fp16_onnx(
    onnx_path: str | Path,
    output: str | Path,
    keep_nodes: Iterable[str] = (),
    range_batches: Callable[[object], Iterable] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Fp16Result:
    """Reads ``onnx_path``, measures FP16 ranges, converts it and writes ``output`` atomically.

    Args:
        range_batches: called with the FP32 model (initializer inputs removed), returns the image batches of the
            range pass (``ImageSet.batches``); None skips the pass (the notes say so).
        progress: called with the number of images after each batch of the range pass.

    Raises:
        OnnxModelError: ONNX Runtime cannot run the FP32 model over the range pass's images.
    """
    from trtpipe.io import atomic_output
    from trtpipe.onnx.load import load_onnx

    import onnx

    model = load_onnx(onnx_path, check=False)  # initializers listed as graph inputs are dropped there
    name_nodes(model)
    ranges, images = None, 0
    if range_batches is not None:
        ranges, images = measure_ranges(model, range_batches(model), progress)
    result = convert_to_fp16(model, keep_nodes=keep_nodes, ranges=ranges, range_images=images)
    with atomic_output(output) as tmp:
        onnx.save(result.model, str(tmp))
    return result

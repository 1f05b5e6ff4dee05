"""FP16 ONNX for strongly typed builds: FP16 inside, FP32 inputs and outputs, sensitive ops kept FP32.

The conversion itself is ONNX Runtime's ``onnxruntime.transformers.float16`` (the converter of
onnxconverter-common, which is not a dependency here; Polygraphy's ``--fp-to-fp16`` wraps the same
code). trtpipe adds the choice of what stays FP32, the FP32 I/O, and the checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

# Ops whose FP16 result loses range or precision that matters: exponentials and logs overflow, norms and
# reductions accumulate rounding, and Pow/Sqrt/Div on small values underflow. Everything else (convs,
# matmuls, activations, pooling, resizes) runs in FP16 as TensorRT's FP16 mode would run it.
SENSITIVE_OPS = (
    "Exp", "Log", "Pow", "Sqrt", "Reciprocal", "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp",
    "LayerNormalization", "InstanceNormalization", "GroupNormalization",
    "Range", "TopK", "NonMaxSuppression", "RoiAlign", "CumSum",
)


@dataclass(frozen=True)
class Fp16Result:
    model: object  # onnx.ModelProto
    kept_fp32: tuple[str, ...]  # node names left in FP32

    @property
    def notes(self) -> tuple[str, ...]:
        if not self.kept_fp32:
            return ("FP16 ONNX with FP32 inputs/outputs; every op in FP16",)
        shown = ", ".join(self.kept_fp32[:5]) + (" ..." if len(self.kept_fp32) > 5 else "")
        return (f"FP16 ONNX with FP32 inputs/outputs; {len(self.kept_fp32)} numerically sensitive nodes kept FP32: {shown}",)


def convert_to_fp16(model, keep_ops: Iterable[str] = SENSITIVE_OPS, keep_nodes: Iterable[str] = ()) -> Fp16Result:
    """Converts an FP32 ModelProto to FP16 with FP32 I/O.

    Args:
        model: onnx.ModelProto (FP32).
        keep_ops: op types left in FP32 (Cast nodes are inserted around them).
        keep_nodes: node names left in FP32.

    Returns:
        Fp16Result with the converted model and the nodes kept FP32.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    source = onnx.ModelProto()
    source.CopyFrom(model)
    block_ops = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(keep_ops))
    keep_nodes = list(keep_nodes)
    kept = tuple(n.name or n.output[0] for n in source.graph.node if n.op_type in block_ops or n.name in keep_nodes)
    converted = convert_float_to_float16(
        source, keep_io_types=True, op_block_list=block_ops, node_block_list=keep_nodes, disable_shape_infer=False
    )
    # The converter appends the Casts of the FP32 inputs at the end of the node list; the ONNX checker
    # (and so the builder's intake) requires topological order.
    import onnx_graphsurgeon as gs

    sorted_model = gs.export_onnx(gs.import_onnx(converted).toposort())
    sorted_model.ir_version = converted.ir_version
    onnx.checker.check_model(sorted_model)
    return Fp16Result(sorted_model, kept)


def write_fp16_onnx(onnx_path: str | Path, output: str | Path, keep_nodes: Iterable[str] = ()) -> Fp16Result:
    """Reads ``onnx_path``, converts it and writes ``output`` atomically."""
    from trtpipe.io import atomic_output
    from trtpipe.onnx.load import load_onnx

    import onnx

    result = convert_to_fp16(load_onnx(onnx_path, check=False), keep_nodes=keep_nodes)
    with atomic_output(output) as tmp:
        onnx.save(result.model, str(tmp))
    return result

"""Graph surgery for patterns TensorRT's ONNX parser rejects, with onnx-graphsurgeon.

What deployment engineers do when ``trtpipe inspect`` says REJECTED: fold what is constant (shape
arithmetic included), then rewrite the patterns TensorRT has no importer or no type for. Each rewrite
is a small registered function ``graph -> number of changes``; :func:`apply_surgery` runs them all
and says which ones changed something, so a coverage report can record per model what was done.

    model, applied = apply_surgery(onnx.load("m.onnx"))   # applied: ["fold_constants", "float64_to_float32"]
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import onnx

from trtpipe.errors import DependencyError

log = logging.getLogger("trtpipe.onnx")

Rewrite = Callable[[object], int]  # onnx_graphsurgeon.Graph -> number of changes
_REWRITES: dict[str, Rewrite] = {}


def register_rewrite(name: str) -> Callable[[Rewrite], Rewrite]:
    """Registers a rewrite under ``name``; rewrites run in registration order."""

    def decorator(rewrite: Rewrite) -> Rewrite:
        _REWRITES[name] = rewrite
        return rewrite

    return decorator


def apply_surgery(model: onnx.ModelProto, rewrites: list[str] | None = None) -> tuple[onnx.ModelProto, list[str]]:
    """Runs the rewrites on a copy of ``model``.

    Args:
        model: the ONNX model; it is not modified.
        rewrites: names to run. Defaults to every registered rewrite.

    Returns:
        (the rewritten model, the names of the rewrites that changed something, e.g. "float64_to_float32 (3)").
    """
    gs = _import_graphsurgeon()
    graph = gs.import_onnx(model)
    applied = []
    for name in rewrites or list(_REWRITES):
        changes = _REWRITES[name](graph)
        if changes:
            applied.append(f"{name} ({changes})")
            log.info("surgery %s: %d change(s)", name, changes)
    graph.cleanup().toposort()
    rewritten = gs.export_onnx(graph)
    rewritten.ir_version = model.ir_version
    del rewritten.metadata_props[:]
    rewritten.metadata_props.extend(model.metadata_props)
    return rewritten, applied


def _import_graphsurgeon():
    try:
        import onnx_graphsurgeon as gs
    except ImportError:
        raise DependencyError(
            "ONNX graph surgery needs onnx-graphsurgeon, which is not installed",
            "pip install onnx-graphsurgeon (part of 'trtpipe[export]')",
        ) from None
    return gs


@register_rewrite("fold_constants")
def fold_constants(graph) -> int:
    """Folds constant subgraphs, shape computations included (Polygraphy's ``surgeon sanitize --fold-constants``)."""
    before = len(graph.nodes)
    graph.fold_constants(fold_shapes=True, partitioning="basic", error_ok=True).cleanup()
    return before - len(graph.nodes)


@register_rewrite("float64_to_float32")
def float64_to_float32(graph) -> int:
    """Turns float64 constants and Casts to float32: TensorRT has no DOUBLE type; the values fit FP32."""
    import onnx_graphsurgeon as gs

    changes = 0
    for tensor in graph.tensors().values():
        if isinstance(tensor, gs.Constant) and tensor.values.dtype == np.float64:
            tensor.values = tensor.values.astype(np.float32)
            changes += 1
        elif isinstance(tensor, gs.Variable) and tensor.dtype == np.float64:
            tensor.dtype = np.float32
            changes += 1
    for node in graph.nodes:
        if node.op == "Cast" and node.attrs.get("to") == onnx.TensorProto.DOUBLE:
            node.attrs["to"] = onnx.TensorProto.FLOAT
            changes += 1
    return changes

"""Graph cleanup after export: fold constants, drop dead nodes, sort topologically (onnx-graphsurgeon).

torch's exporter leaves shape arithmetic, Identity chains and unused initializers behind; TensorRT's
parser handles most of it, but a folded graph parses faster, quantizes cleanly (no Q/DQ placed on
constant subgraphs) and reads better in Netron and ``trtpipe inspect``.
"""

from __future__ import annotations

import logging

import onnx

from trtpipe.errors import DependencyError

log = logging.getLogger("trtpipe.onnx")


def cleanup_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    """Returns ``model`` with constants folded, unused nodes and tensors removed, nodes toposorted.

    The opsets, IR version, producer and metadata of ``model`` are kept. Folding evaluates constant
    subgraphs with ONNX Runtime (as Polygraphy does); shapes that depend on a dynamic axis stay.

    Args:
        model: the ONNX model; it is not modified.

    Returns:
        A new, cleaned ModelProto.
    """
    try:
        import onnx_graphsurgeon as gs
    except ImportError:
        raise DependencyError(
            "ONNX graph cleanup needs onnx-graphsurgeon, which is not installed",
            "pip install onnx-graphsurgeon (part of 'trtpipe[export]')",
        ) from None
    nodes_before = len(model.graph.node)
    graph = gs.import_onnx(model)
    graph.fold_constants().cleanup(remove_unused_graph_inputs=False).toposort()
    cleaned = gs.export_onnx(graph)
    # export_onnx builds a fresh ModelProto: carry over what it does not know about.
    cleaned.ir_version = model.ir_version
    cleaned.producer_name = model.producer_name
    cleaned.producer_version = model.producer_version
    cleaned.doc_string = model.doc_string
    del cleaned.metadata_props[:]
    cleaned.metadata_props.extend(model.metadata_props)
    log.debug("ONNX cleanup: %d -> %d nodes", nodes_before, len(cleaned.graph.node))
    return cleaned

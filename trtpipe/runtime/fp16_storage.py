"""FP16 storage in ONNX Runtime: run an FP16 ONNX so that every FP16 tensor is really stored as FP16.

ONNX Runtime's CPU provider has few FP16 kernels: it wraps FP16 ops in FP32 Casts and then removes every adjacent
FP32->FP16->FP32 Cast pair (``RemoveDuplicateCastTransformer`` treats all float types as one group), at every
graph optimisation level, so an FP16 graph whose activations exceed 65504 computes them in FP32 and hides the
overflow TensorRT's FP16 kernels would hit. :func:`keep_fp16_rounding` rewrites a graph so that cannot happen.

Used by fidelity measurement (``trtpipe.quant.fidelity``) and by the ONNX Runtime engine, so a CPU fallback of
an FP16 engine computes what FP16 computes. Part of the deployment path: it needs ``onnx`` (imported when
called), nothing of the build tooling.
"""

from __future__ import annotations


def keep_fp16_rounding(model):
    """A copy of ``model`` in which ONNX Runtime's CPU provider cannot compute FP16 tensors in FP32.

    Every FP16 tensor a node produces (that is not already a graph output) is routed through an FP16
    ``Identity`` whose output is also a graph output, and its consumers read that output. ONNX Runtime must
    produce a graph output in its declared type, so the FP32->FP16 Cast it inserts after an FP32-computed op
    stays, and the Identity (which has an FP16 kernel) separates it from the FP16->FP32 Cast before the next
    op: ``RemoveDuplicateCastTransformer`` only removes adjacent Casts. The routing also blocks fusions across
    FP16 tensors, so ops run one by one (measured: 2.3x to 3.8x a plain session's time on EfficientNet-Lite0,
    ``tests/perf/bench_fp16_storage.py``). Subgraphs (If/Loop bodies) are left as they are.

    Args:
        model: onnx.ModelProto.

    Returns:
        (the routed copy, number of FP16 tensors routed); ``(model, 0)`` itself when it has no FP16 tensor to route.
    """
    import onnx
    from onnx import TensorProto, helper

    types, known = tensor_types(model)
    graph_outputs = {o.name for o in model.graph.output}
    routed = [
        name
        for node in model.graph.node
        for name in node.output
        if name
        and types.get(name) == TensorProto.FLOAT16
        and name not in graph_outputs
        and f"{name}__fp16_stored" not in graph_outputs  # routed already
    ]
    if not routed:
        return model, 0
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    stored = {name: f"{name}__fp16_stored" for name in routed}
    nodes = []
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in stored:
                node.input[position] = stored[name]
        nodes.append(node)
        for name in node.output:
            if name in stored:
                nodes.append(helper.make_node("Identity", [name], [stored[name]], name=f"{stored[name]}_identity"))
                output = graph.output.add()
                if name in known:  # the inferred shape, so that the ONNX checker accepts the output too
                    output.CopyFrom(known[name])
                else:
                    output.CopyFrom(helper.make_tensor_value_info(name, TensorProto.FLOAT16, None))
                output.name = stored[name]
    graph.ClearField("node")
    graph.node.extend(nodes)
    return copy, len(routed)


def tensor_types(model) -> tuple[dict[str, int], dict[str, object]]:
    """(ONNX element type of every tensor, the ValueInfo of those shape inference typed with a shape).

    Types come from ONNX shape inference; what it leaves untyped gets a Cast's target or its first input's type.
    """
    import onnx

    graph = model.graph
    types = {init.name: init.data_type for init in graph.initializer}
    known = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
    except Exception:  # noqa: BLE001 - shape inference is a help here, not a requirement
        inferred = graph
    for value in list(inferred.input) + list(inferred.value_info) + list(inferred.output):
        if value.type.tensor_type.elem_type:
            types[value.name] = value.type.tensor_type.elem_type
            if value.type.tensor_type.HasField("shape"):
                known[value.name] = value
    for node in graph.node:  # what inference left untyped: a Cast's target, else the first input's type
        for name in node.output:
            if name in types:
                continue
            if node.op_type == "Cast":
                types[name] = next(a.i for a in node.attribute if a.name == "to")
            elif node.input and node.input[0] in types:
                types[name] = types[node.input[0]]
    return types, known


def has_fp16(model) -> bool:
    """True when ``model`` (onnx.ModelProto) has FP16 weights or casts to FP16."""
    from onnx import TensorProto

    if any(init.data_type == TensorProto.FLOAT16 for init in model.graph.initializer):
        return True
    return any(
        node.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.FLOAT16 for a in node.attribute)
        for node in model.graph.node
    )

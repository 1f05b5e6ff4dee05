"""An ONNX graph's structure without its weight values: what a refit may keep and what it may change.

TensorRT's refitter replaces weight *values*; everything else (ops, their attributes, how tensors connect, every
tensor's name, dtype and shape) was compiled into the plan. ``graph_structure`` lists that per tensor, so
``trtpipe refit`` can say which tensor of a new ONNX differs from the one the engine was built from, and
``graph_structure_sha256`` is the one value the sidecar keeps. Written here because onnx has no structural
hash (``onnx.helper.printable_graph`` prints values of small initializers and drops dims of big ones).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from trtpipe.errors import InputError


def graph_structure(model) -> list[tuple[str, str]]:
    """``(tensor name, description)`` for every graph input, initializer and node output, in graph order.

    An initializer is described by dtype and dims (not its values); a node output by the node's op, domain,
    input names and attributes (a tensor attribute, as in Constant, by dtype and dims only), so two ONNX files
    with the same graph and other weights describe every tensor alike.
    """
    graph = model.graph
    entries: list[tuple[str, str]] = []
    initializers = {tensor.name for tensor in graph.initializer}
    for value in graph.input:
        if value.name not in initializers:
            entries.append((value.name, "input " + _value_type(value)))
    for tensor in graph.initializer:
        entries.append((tensor.name, f"weights {_tensor_type(tensor)}"))
    for node in graph.node:
        attributes = ",".join(f"{a.name}={_attribute(a)}" for a in sorted(node.attribute, key=lambda a: a.name))
        described = f"{node.domain or 'ai.onnx'}::{node.op_type}({','.join(node.input)}) [{attributes}]"
        for index, output in enumerate(node.output):
            entries.append((output, f"{described} output {index}"))
    for value in graph.output:
        entries.append((value.name, "graph output " + _value_type(value)))
    return entries


def graph_structure_sha256(model) -> str:
    """sha256 of :func:`graph_structure`: equal for two ONNX files that differ in weight values only."""
    return hashlib.sha256(json.dumps(graph_structure(model)).encode()).hexdigest()


def weights_sha256(model) -> str:
    """sha256 over the initializers' names and values (external data read): what a refit changes."""
    from onnx import numpy_helper

    digest = hashlib.sha256()
    for tensor in model.graph.initializer:
        digest.update(tensor.name.encode() + b"\0")
        digest.update(numpy_helper.to_array(tensor).tobytes())
    return digest.hexdigest()


def first_difference(expected: list[tuple[str, str]], seen: list[tuple[str, str]]) -> str | None:
    """Names the first tensor where ``seen`` departs from ``expected`` (:func:`graph_structure` lists), else None."""
    for index in range(max(len(expected), len(seen))):
        want = expected[index] if index < len(expected) else None
        got = seen[index] if index < len(seen) else None
        if want == got:
            continue
        if want is None:
            return f"tensor {got[0]!r} ({got[1]}) is not in the engine's graph"
        if got is None:
            return f"tensor {want[0]!r} ({want[1]}) is missing"
        if want[0] != got[0]:
            return f"tensor {want[0]!r} ({want[1]}) is {got[0]!r} ({got[1]}) there"
        return f"tensor {want[0]!r} is {got[1]}, the engine's is {want[1]}"
    return None


def load_structure_model(path: str | Path):
    """The ONNX at ``path`` with its weights (external data too), for structure and weight hashes.

    Raises:
        InputError: the file is missing or not ONNX (see ``trtpipe.onnx.load``).
    """
    from trtpipe.onnx.load import load_onnx

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file", "give the ONNX that holds the new weights")
    return load_onnx(path, check=False)


def _tensor_type(tensor) -> str:
    import onnx

    return f"{onnx.TensorProto.DataType.Name(tensor.data_type)}[{'x'.join(str(d) for d in tensor.dims)}]"


def _value_type(value) -> str:
    import onnx

    tensor = value.type.tensor_type
    dims = "x".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim)
    return f"{onnx.TensorProto.DataType.Name(tensor.elem_type)}[{dims}]"


def _attribute(attribute) -> str:
    import onnx

    if attribute.type == onnx.AttributeProto.TENSOR:
        return _tensor_type(attribute.t)
    if attribute.type == onnx.AttributeProto.GRAPH:
        return hashlib.sha256(json.dumps(graph_structure(onnx.helper.make_model(attribute.g))).encode()).hexdigest()[:16]
    return repr(onnx.helper.get_attribute_value(attribute))

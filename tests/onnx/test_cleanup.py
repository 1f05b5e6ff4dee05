"""cleanup_onnx folds constant subgraphs, drops dead nodes, sorts nodes, and keeps what the model means."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from trtpipe.onnx.cleanup import cleanup_onnx


def _messy_model() -> onnx.ModelProto:
    """y = x * (a + b), with the constant Add, a dead branch, and nodes listed out of order."""
    a = numpy_helper.from_array(np.full((1, 4), 2.0, np.float32), "a")
    b = numpy_helper.from_array(np.full((1, 4), 3.0, np.float32), "b")
    unused = numpy_helper.from_array(np.ones((1000,), np.float32), "unused")
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["y"], name="mul"),  # consumer listed before its producer
        helper.make_node("Add", ["a", "b"], ["scale"], name="constant_add"),
        helper.make_node("Relu", ["x"], ["dead"], name="dead_relu"),  # feeds no output
    ]
    graph = helper.make_graph(
        nodes,
        "messy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[a, b, unused],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    model.ir_version = 8
    helper.set_model_props(model, {"trtpipe.export": "{}"})
    return model


def test_folds_constants_and_drops_dead_nodes():
    cleaned = cleanup_onnx(_messy_model())
    assert [n.op_type for n in cleaned.graph.node] == ["Mul"]
    initializers = {i.name: numpy_helper.to_array(i) for i in cleaned.graph.initializer}
    assert "unused" not in initializers
    (folded,) = initializers.values()
    np.testing.assert_array_equal(folded, np.full((1, 4), 5.0, np.float32))
    onnx.checker.check_model(cleaned, full_check=True)


def test_keeps_meaning_opset_and_metadata():
    model = _messy_model()
    cleaned = cleanup_onnx(model)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    session = ort.InferenceSession(cleaned.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], x * 5.0)
    assert [(o.domain, o.version) for o in cleaned.opset_import] == [("", 17)]
    assert cleaned.ir_version == 8 and cleaned.producer_name == "test"
    assert {p.key: p.value for p in cleaned.metadata_props} == {"trtpipe.export": "{}"}
    assert cleaned.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert len(model.graph.node) == 3, "the input model must not be modified"


def test_toposorts_nodes():
    model = _messy_model()
    # Keep the Add from being folded by making it depend on the input: x + a, then (x + a) * x.
    del model.graph.node[:]
    model.graph.node.extend(
        [
            helper.make_node("Mul", ["sum", "x"], ["y"], name="mul"),
            helper.make_node("Add", ["x", "a"], ["sum"], name="add"),
        ]
    )
    cleaned = cleanup_onnx(model)
    assert [n.name for n in cleaned.graph.node] == ["add", "mul"]

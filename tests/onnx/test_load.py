"""ONNX intake: every way an ONNX file can be bad gets an error that says which and how to fix it."""

import pytest
from onnx import TensorProto, helper

from trtpipe.errors import InputError, OnnxModelError
from trtpipe.onnx.load import graph_io, load_onnx, onnx_sha256, opset_of


def test_loads_a_good_model_and_describes_its_io(tiny_onnx):
    path = tiny_onnx(input_shape=("batch", 3, 16, 16))
    model = load_onnx(path)
    inputs, outputs = graph_io(model)
    assert [(t.name, t.shape, t.dtype) for t in inputs] == [("input", (-1, 3, 16, 16), "float32")]
    assert [(t.name, t.shape) for t in outputs] == [("output", (-1, 8, 16, 16))]
    assert opset_of(model) == 17
    assert len(onnx_sha256(path, model)) == 64


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(InputError, match="no such file.*Hint:"):
        load_onnx(tmp_path / "nope.onnx")
    with pytest.raises(InputError, match="is a directory"):
        load_onnx(tmp_path)


def test_file_that_is_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file, not a protobuf\n" * 10)
    with pytest.raises(OnnxModelError, match="not a readable ONNX model.*Hint: the file is truncated, corrupt"):
        load_onnx(path)


def test_truncated_onnx(tiny_onnx):
    path = tiny_onnx()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(OnnxModelError, match="Hint:"):
        load_onnx(path)


def test_model_that_fails_the_checker(tmp_path):
    # Relu with two inputs violates its schema.
    node = helper.make_node("Relu", ["x", "x"], ["y"])
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "bad.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(OnnxModelError, match="fails the ONNX checker"):
        load_onnx(path)


def test_empty_graph(tmp_path):
    graph = helper.make_graph([], "empty", [], [])
    path = tmp_path / "empty.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(OnnxModelError, match="graph has no nodes"):
        load_onnx(path)

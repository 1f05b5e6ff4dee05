"""ONNX intake: every way an ONNX file can be bad gets an error that says which and how to fix it."""

import logging

import pytest
from onnx import TensorProto, helper, numpy_helper

from trtpipe.errors import InputError, OnnxModelError
from trtpipe.onnx.load import graph_io, load_onnx, onnx_sha256, opset_of, read_onnx, weight_like_inputs

from tests.intake_models import external_data_model, initializers_as_inputs_model, rank_clash_model, shapeless_output_model


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


def test_checker_findings_are_warnings_naming_the_node(tmp_path, caplog):
    # Relu with two inputs violates its schema; TensorRT-RTX's parser builds it anyway (measured), so it is
    # the parser's call, not the checker's.
    node = helper.make_node("Relu", ["x", "x"], ["y"], name="relu_two")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "bad.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    intake = read_onnx(path)
    assert intake.checker_findings[0].startswith("checker: Node(relu_two) with schema(::Relu:14) has input size 2")
    assert intake.checker_findings[1].startswith("strict shape inference:")
    with caplog.at_level(logging.WARNING, logger="trtpipe.onnx"):
        load_onnx(path)
    assert "relu_two" in caplog.text and "a warning only" in caplog.text


def test_outputs_without_a_shape_field_are_read_with_a_finding_naming_them(tmp_path):
    intake = read_onnx(shapeless_output_model(tmp_path / "shapeless.onnx"))
    assert intake.checker_findings == (
        "checker: Field 'shape' of 'type' is required but missing (no shape field: y, c)",
    )
    inputs, outputs = graph_io(intake.model)
    assert [(t.name, t.shape) for t in outputs] == [("y", ())]


def test_a_value_info_rank_clash_is_a_strict_shape_inference_finding(tmp_path):
    intake = read_onnx(rank_clash_model(tmp_path / "clash.onnx"))
    assert len(intake.checker_findings) == 1
    assert intake.checker_findings[0].startswith("strict shape inference:")
    assert "node name: conv" in intake.checker_findings[0] and "differ in rank: (4) vs (0)" in intake.checker_findings[0]


def test_missing_external_data_file_is_named(tmp_path):
    path = external_data_model(tmp_path / "m", missing="backbone.conv1.weight")
    for load_weights in (True, False):
        with pytest.raises(OnnxModelError, match=r"external data file 'backbone.conv1.weight' of tensor "
                                                 r"'backbone.conv1.weight' is missing.*Hint: keep the .onnx"):
            read_onnx(path, load_weights=load_weights)


def test_truncated_external_data_file_is_named(tmp_path):
    path = external_data_model(tmp_path / "m", truncate="backbone.conv0.weight")
    with pytest.raises(OnnxModelError, match=r"'backbone.conv0.weight' of tensor 'backbone.conv0.weight' has 100 bytes, "
                                             r"the tensor needs bytes 0..864"):
        read_onnx(path)


def test_external_data_loads_and_its_bytes_are_in_the_hash(tmp_path):
    path = external_data_model(tmp_path / "m")
    intake = read_onnx(path)
    assert intake.checker_findings == ()
    assert numpy_helper.to_array(intake.model.graph.initializer[1]).shape == (8, 8, 3, 3)
    before = onnx_sha256(path, intake.model)  # a model with its weights loaded no longer names its files
    data = path.parent / "backbone.conv1.weight"
    data.write_bytes(bytes(len(data.read_bytes())))  # new weights, same .onnx
    assert onnx_sha256(path) != before and onnx_sha256(path, intake.model) == onnx_sha256(path)


def test_initializers_listed_as_inputs_are_constants(tmp_path):
    intake = read_onnx(initializers_as_inputs_model(tmp_path / "m.onnx"))
    assert [v.name for v in intake.model.graph.input] == ["x"]
    assert intake.constant_inputs == ("W1", "W2") and intake.weight_like_inputs == ()
    assert "treated as constant weights, not network inputs" in intake.notes[0]
    # IR 3 requires initializers to be listed as inputs: kept, still described as constants.
    old = read_onnx(initializers_as_inputs_model(tmp_path / "ir3.onnx", ir_version=3), check=False)
    assert [v.name for v in old.model.graph.input] == ["x", "W1", "W2"]
    assert [t.name for t in graph_io(old.model)[0]] == ["x"]


def test_weights_exported_as_inputs_are_named(tmp_path):
    intake = read_onnx(initializers_as_inputs_model(tmp_path / "m.onnx", without_weights=True))
    assert intake.weight_like_inputs == (("W1", "Conv 'conv_a'"), ("W2", "Conv 'conv_b'"))
    assert "W1 (Conv 'conv_a'), W2 (Conv 'conv_b') have no initializer" in intake.notes[-1]
    assert "export_params=True" in intake.notes[-1]
    # An input that is data somewhere (Conv's X) is data, even where it also feeds a weight operand.
    node = helper.make_node("Conv", ["x", "x"], ["y"], name="self_conv")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 3, 1, 1])])
    assert weight_like_inputs(helper.make_model(graph)) == ()


def test_empty_graph(tmp_path):
    graph = helper.make_graph([], "empty", [], [])
    path = tmp_path / "empty.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(OnnxModelError, match="graph has no nodes"):
        load_onnx(path)

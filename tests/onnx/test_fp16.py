"""FP16 ONNX: FP16 inside, FP32 I/O, sensitive ops FP32, runs in ONNX Runtime, builds strongly typed."""

from __future__ import annotations

import numpy as np
import pytest

from trtpipe.onnx.fp16 import convert_to_fp16


def _model():
    """conv -> relu -> softmax over channels, opset 17."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Softmax", ["r"], ["y"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "fp16_test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_io_stays_fp32_weights_become_fp16_and_softmax_stays_fp32():
    result = convert_to_fp16(_model())
    graph = result.model.graph
    assert graph.input[0].type.tensor_type.elem_type == 1 and graph.output[0].type.tensor_type.elem_type == 1
    assert {init.name: init.data_type for init in graph.initializer}["w"] == 10  # FLOAT16
    assert result.kept_fp32 == ("softmax",)
    assert "1 numerically sensitive nodes kept FP32" in result.notes[0]


def test_fp16_model_matches_fp32_in_onnxruntime():
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(convert_to_fp16(_model()).model), run(_model()), atol=2e-3)


def test_fp16_onnx_builds_strongly_typed_with_tensorrt_rtx(tmp_path):
    trt = pytest.importorskip("tensorrt_rtx")
    import onnx

    path = tmp_path / "m.fp16.onnx"
    onnx.save(convert_to_fp16(_model()).model, str(path))
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(path))
    assert builder.build_serialized_network(network, builder.create_builder_config()) is not None


def test_fp16_onnx_is_topologically_sorted_and_passes_the_full_checker(tmp_path):
    import onnx

    from trtpipe.onnx.load import load_onnx

    path = tmp_path / "m.fp16.onnx"
    onnx.save(convert_to_fp16(_model()).model, str(path))
    load_onnx(path)  # the builder's intake: full checker, which requires topological order

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
    assert result.notes[0].endswith("1 nodes kept FP32: softmax")


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


# --------------------------------------------------------------------------------------------
# What FP16 cannot hold stays FP32: the range pass, and no FP32->FP16->FP32 round trips
# --------------------------------------------------------------------------------------------


def _overflowing_model():
    """x -> Mul 1000 ('up') -> Relu -> Mul 0.001 ('down') -> + x: 'a' and 'b' reach 1e5 for x = 100, y does not."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Mul", ["x", "k"], ["a"], name="up"),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Mul", ["b", "s"], ["c"], name="down"),
        helper.make_node("Add", ["c", "x"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes, "overflow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array(1000, np.float32), "k"), numpy_helper.from_array(np.array(0.001, np.float32), "s")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


X = np.array([[100.0, -1.0, 2.0, 3.0]], np.float32)  # 100 * 1000 = 1e5 > 65504


def _run_as_fp16_stores(model):
    """ONNX Runtime with every FP16 tensor stored in FP16 (as TensorRT's FP16 kernels store it)."""
    import onnxruntime as ort

    from trtpipe.quant.fidelity import keep_fp16_rounding

    rounded, _ = keep_fp16_rounding(model)
    session = ort.InferenceSession(rounded.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": X})[0]


def test_without_the_range_pass_the_fp16_model_overflows():
    assert np.isinf(_run_as_fp16_stores(convert_to_fp16(_overflowing_model()).model)).any()


def test_the_range_pass_keeps_producers_and_readers_of_out_of_range_tensors_fp32_and_names_them():
    from trtpipe.onnx.fp16 import measure_ranges

    ranges, images = measure_ranges(_overflowing_model(), [X])
    assert images == 1 and ranges["a"].max_abs == pytest.approx(1e5) and ranges["y"].problem is None
    result = convert_to_fp16(_overflowing_model(), ranges=ranges, range_images=images)
    assert set(result.range_kept) == {"up", "relu", "down"} and set(result.out_of_range) == {"a", "b"}
    assert "2 tensors FP16 cannot hold ('a' reaches 1e+05, 'b' reaches 1e+05" in result.notes[1]
    assert "stay FP32: up, relu, down" in result.notes[1]
    np.testing.assert_allclose(_run_as_fp16_stores(result.model), [[200.0, -1.0, 4.0, 6.0]], rtol=1e-3)


def test_a_tensor_between_two_fp32_ops_stays_fp32():
    """--keep-fp up,relu,down: no FP32->FP16->FP32 Cast pair is left between them (it would still overflow)."""
    result = convert_to_fp16(_overflowing_model(), keep_nodes=("up", "relu", "down"))
    graph = result.model.graph
    producer = {out: node for node in graph.node for out in node.output}

    def source_of(name):  # follows Identity nodes; returns the node that computes the value
        node = producer.get(name)
        while node is not None and node.op_type == "Identity":
            node = producer.get(node.input[0])
        return node

    relu = next(n for n in graph.node if n.name == "relu")
    down = next(n for n in graph.node if n.name == "down")
    assert source_of(relu.input[0]).name == "up" and source_of(down.input[0]).name == "relu"
    assert result.round_trips_removed >= 2
    np.testing.assert_allclose(_run_as_fp16_stores(result.model), [[200.0, -1.0, 4.0, 6.0]], rtol=1e-3)


def test_a_float_weight_beyond_fp16_keeps_its_readers_fp32():
    from onnx import numpy_helper

    model = _model()
    weight = next(init for init in model.graph.initializer if init.name == "w")
    weight.CopyFrom(numpy_helper.from_array(np.full((4, 3, 3, 3), 1e5, np.float32), "w"))
    result = convert_to_fp16(model, ranges={})
    assert result.range_kept == {"conv": "weight 'w' (a weight) reaches 1e+05"}
    assert {init.name: init.data_type for init in result.model.graph.initializer}["w"] == 1  # FLOAT, not clipped


def test_prepare_fp16_runs_the_range_pass_on_images_and_says_when_it_could_not(tmp_path):
    """The builder's FP16 path: with --images the output names what stays FP32; without, that nothing was checked."""
    import cv2
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from trtpipe.quant.prepare import prepare_fp16
    from trtpipe.spec import PreprocessSpec

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "big"], ["amplified"], name="amplify"),
        helper.make_node("Relu", ["amplified"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "small"], ["back"], name="attenuate"),
        helper.make_node("GlobalAveragePool", ["back"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["y"], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes, "amplifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
         numpy_helper.from_array(np.array(1e5, np.float32), "big"), numpy_helper.from_array(np.array(1e-5, np.float32), "small")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "amp.onnx"
    onnx.save(model, str(path))
    PreprocessSpec(model="amp", height=16, width=16).save(tmp_path / "amp.preprocess.json")
    images = tmp_path / "images"
    images.mkdir()
    for index in range(6):
        cv2.imwrite(str(images / f"{index}.png"), rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))

    checked = prepare_fp16(path, tmp_path / "amp.fp16.onnx", images=images)
    assert "FP16 range check on 6 images" in checked.summary and "3 nodes kept FP32" in checked.summary
    note = next(n for n in checked.notes if n.startswith("FP16 range check on 6 images"))
    assert "'amplified' reaches" in note and "amplify, relu, attenuate" in note
    unchecked = prepare_fp16(path, tmp_path / "amp.unchecked.fp16.onnx")
    assert any(n.startswith("FP16 range check skipped (no images given)") for n in unchecked.notes)


def test_range_kept_fp16_onnx_builds_strongly_typed_with_tensorrt_rtx(tmp_path):
    trt = pytest.importorskip("tensorrt_rtx")
    import onnx

    from trtpipe.onnx.fp16 import measure_ranges

    ranges, images = measure_ranges(_overflowing_model(), [X])
    path = tmp_path / "overflow.fp16.onnx"
    onnx.save(convert_to_fp16(_overflowing_model(), ranges=ranges, range_images=images).model, str(path))
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(path))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("x", (1, 4), (1, 4), (4, 4))
    config.add_optimization_profile(profile)
    types = {network.get_layer(i).name: network.get_layer(i).get_output(0).dtype for i in range(network.num_layers)}
    assert types["up"] == trt.DataType.FLOAT and types["relu"] == trt.DataType.FLOAT
    assert builder.build_serialized_network(network, config) is not None

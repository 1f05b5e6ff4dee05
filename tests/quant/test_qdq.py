"""Q/DQ placement: where TensorRT fuses, per-channel weights, float biases, no dangling nodes, builds."""

from __future__ import annotations

import numpy as np
import pytest

from trtpipe.quant.qdq import count_qdq, insert_qdq, plan_qdq, quantize_weight


def _ranges(plan, value=4.0):
    return {name: value for name in plan.activations}


def test_plan_quantizes_convs_gemm_and_the_residual_branch(make_tiny_model):
    plan = plan_qdq(make_tiny_model())
    assert plan.names == ("stem_conv", "block_conv_a", "block_conv_b", "residual_add", "fc")
    residual = next(layer for layer in plan.layers if layer.name == "residual_add")
    # block_conv_b's output fuses into the conv; the skip branch (stem_relu) is the one quantized
    assert [(item.index, item.tensor) for item in residual.inputs] == [(1, "stem_relu")]
    assert set(plan.activations) == {"input", "stem_relu", "a_relu", "flat"}
    weights = {item.tensor: item.axis for layer in plan.layers for item in layer.inputs if item.is_weight}
    assert weights == {"stem_w": 0, "a_w": 0, "b_w": 0, "fc_w": 0}  # fc: transB=1 -> rows are channels


def test_written_model_shares_qdq_keeps_biases_float_and_has_nothing_dangling(make_tiny_model):
    model = make_tiny_model()
    plan = plan_qdq(model)
    qdq = insert_qdq(model, plan, _ranges(plan))
    counts = count_qdq(qdq)
    assert (counts.quantized_layers, counts.total_layers) == (4, 4)
    assert counts.quantize_nodes == 4  # one per activation, shared by conv_a and the residual add
    assert counts.dequantize_nodes == 8  # 4 activations + 4 weights
    assert counts.dangling == ()
    initializers = {init.name: init for init in qdq.graph.initializer}
    for bias in ("stem_b", "a_b", "b_b", "fc_b"):
        assert initializers[bias].data_type == 1  # FLOAT: TensorRT-RTX rejects int32 bias DQ
    assert "stem_w" not in initializers and initializers["stem_w_quantized"].data_type == 3  # INT8


def test_keep_fp_leaves_a_layer_and_its_weights_float(make_tiny_model):
    model = make_tiny_model()
    plan = plan_qdq(model).without(["fc", "stem_conv"])
    counts = count_qdq(insert_qdq(model, plan, _ranges(plan)))
    assert (counts.quantized_layers, counts.total_layers, counts.dangling) == (2, 4, ())


def test_per_channel_weights_round_trip_within_half_a_step():
    weight = np.random.default_rng(0).standard_normal((6, 4, 3, 3)).astype(np.float32)
    weight[2] *= 50  # one loud channel must not coarsen the others
    values, scale = quantize_weight(weight, axis=0)
    assert values.dtype == np.int8 and scale.shape == (6,)
    restored = values.astype(np.float32) * scale[:, None, None, None]
    assert np.all(np.abs(restored - weight) <= scale[:, None, None, None] / 2 + 1e-7)
    assert np.abs(values).max() <= 127


def test_qdq_model_runs_in_onnxruntime_close_to_fp32(make_tiny_model):
    import onnxruntime as ort

    from trtpipe.quant.calibrate import collect_histograms

    model = make_tiny_model()
    plan = plan_qdq(model)
    data = np.random.default_rng(1).standard_normal((8, 3, 32, 32)).astype(np.float32)
    ranges = collect_histograms(model, plan.activations, [data]).ranges("max")
    qdq = insert_qdq(model, plan, ranges)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": data})[0]  # noqa: E731
    reference, output = run(model), run(qdq)
    cosine = (reference * output).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(output, axis=1)
    assert cosine.min() > 0.99


def test_qdq_onnx_parses_and_builds_with_tensorrt_rtx(make_tiny_model, tmp_path, rtx_build):
    import onnx

    model = make_tiny_model()
    plan = plan_qdq(model)
    path = tmp_path / "tiny.int8.onnx"
    onnx.save(insert_qdq(model, plan, _ranges(plan)), str(path))
    assert rtx_build(path, (1, 3, 32, 32)) > 0


def test_kept_layers_in_fp16_read_and_write_fp16_with_casts_at_the_boundaries(make_tiny_model):
    import onnx
    import onnxruntime as ort

    model = make_tiny_model()
    full = plan_qdq(model)
    kept = ("block_conv_a", "block_conv_b", "residual_add")
    qdq = insert_qdq(model, full.without(kept), _ranges(full), full.only(kept).layers)
    onnx.checker.check_model(qdq, full_check=True)
    nodes = {n.name: n for n in qdq.graph.node}
    initializers = {init.name: init.data_type for init in qdq.graph.initializer}
    FP16 = onnx.TensorProto.FLOAT16
    assert nodes["block_conv_a"].input[:] == ["stem_relu_fp16", "a_w_fp16", "a_b_fp16"]
    assert initializers["a_w_fp16"] == FP16 and initializers["a_b_fp16"] == FP16
    # the residual add reads the FP16 output of block_conv_b directly and shares stem_relu's one FP16 Cast
    assert nodes["residual_add"].input[:] == ["b_fp16", "stem_relu_fp16"]
    assert sum(n.op_type == "Cast" and n.input[0] == "stem_relu" for n in qdq.graph.node) == 1
    assert "b_to_fp32" not in nodes  # nothing FP32 reads block_conv_b's output: no Cast back
    assert nodes["sum_to_fp32"].output[:] == ["sum"]  # sum_relu (FP32) reads the add through a Cast back
    assert count_qdq(qdq).dangling == ()
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # noqa: E731
    reference = run(insert_qdq(model, full.without(kept), _ranges(full)))  # the same layers kept in FP32
    np.testing.assert_allclose(run(qdq), reference, atol=5e-3 * np.abs(reference).max())


def test_kept_fp16_layers_are_fp16_in_tensorrt_rtx_strongly_typed(make_tiny_model, tmp_path):
    trt = pytest.importorskip("tensorrt_rtx")
    import onnx

    model = make_tiny_model()
    full = plan_qdq(model)
    kept = ("block_conv_a", "residual_add")
    path = tmp_path / "mixed.onnx"
    onnx.save(insert_qdq(model, full.without(kept), _ranges(full), full.only(kept).layers), str(path))
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(path))
    types = {network.get_layer(i).name: network.get_layer(i).get_output(0).dtype for i in range(network.num_layers)}
    assert types["block_conv_a"] == trt.DataType.HALF and types["residual_add"] == trt.DataType.HALF
    assert types["stem_conv"] == trt.DataType.FLOAT  # INT8 conv with an FP32 output (no Q after it)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, 32, 32), (2, 3, 32, 32), (4, 3, 32, 32))
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is not None

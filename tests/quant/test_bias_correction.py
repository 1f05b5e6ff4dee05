"""Bias correction: the measured shift is the mean output error INT8 adds to a layer, and the corrected bias removes it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trtpipe.quant.bias_correction import (
    BiasShifts,
    apply_bias_shifts,
    correction_targets,
    fake_quantize,
    measure_bias_shifts,
)
from trtpipe.quant.calibrate import collect_histograms
from trtpipe.quant.qdq import insert_qdq, plan_qdq
from trtpipe.quant.sensitivity import run_model


def _batches(seed=0, count=4):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (8, 3, 32, 32)).astype(np.float32) for _ in range(count)]


def _outputs(model, names, batches):
    from trtpipe.quant.calibrate import augmented_session

    session, outputs = augmented_session(model, names)
    got = {name: [] for name in names}
    for batch in batches:
        for name, value in zip(outputs, session.run(None, {"input": batch})):
            if name in got:
                got[name].append(value)
    return {name: np.concatenate(values) for name, values in got.items()}


@pytest.fixture
def calibrated(make_tiny_model):
    model = make_tiny_model()
    plan = plan_qdq(model)
    batches = _batches()
    ranges = collect_histograms(model, plan.activations, batches).ranges("max")
    return model, plan, ranges, batches


def test_fake_quantize_matches_onnx_runtime_quantize_dequantize():
    from onnx import TensorProto, helper

    import onnxruntime as ort

    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
    ]
    scale = np.float32(2.5 / 127)
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1000])],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [float(scale)]), helper.make_tensor("z", TensorProto.INT8, [], [0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = np.random.default_rng(0).uniform(-4, 4, 1000).astype(np.float32)
    x[:4] = np.array([0.5, 1.5, -2.5, 200.0]) * scale  # ties go to even; far outside saturates
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(fake_quantize(x, 2.5), session.run(None, {"x": x})[0])


def test_targets_are_the_quantized_convs_and_gemm_not_the_residual_add(calibrated):
    model, plan, _, _ = calibrated
    names = [t.layer for t in correction_targets(model, plan)]
    assert names == ["stem_conv", "block_conv_a", "block_conv_b", "fc"]
    assert "residual_add" in plan.names


@pytest.mark.parametrize("layer, output", [("block_conv_b", "b"), ("fc", "logits")])
def test_shift_is_the_mean_output_error_of_quantizing_that_layer(calibrated, layer, output):
    """Unpadded 1x1 conv and Gemm: the shift from per-channel means is exact, and correcting it leaves no mean error."""
    model, plan, ranges, batches = calibrated
    shifts = measure_bias_shifts(model, plan, ranges, batches)
    alone = plan.only([layer])
    reference = _outputs(model, [output], batches)[output]
    quantized = _outputs(insert_qdq(model, alone, ranges), [output], batches)[output]
    axes = (0, 2, 3) if reference.ndim == 4 else (0,)
    error = (quantized - reference).mean(axis=axes)
    assert np.abs(error).max() > 1e-4  # INT8 does shift this layer's mean
    np.testing.assert_allclose(shifts.shifts[layer], error, rtol=1e-3, atol=1e-5)
    corrected = _outputs(insert_qdq(apply_bias_shifts(model, alone, shifts), alone, ranges), [output], batches)[output]
    assert np.abs((corrected - reference).mean(axis=axes)).max() < 1e-4 * max(1.0, np.abs(error).max() * 100)


def test_correction_reduces_the_whole_models_output_bias(calibrated):
    model, plan, ranges, batches = calibrated
    shifts = measure_bias_shifts(model, plan, ranges, batches)
    held = _batches(seed=1, count=2)  # images the shifts were not measured on
    reference = run_model(model, held)
    plain = run_model(insert_qdq(model, plan, ranges), held)
    corrected = run_model(insert_qdq(apply_bias_shifts(model, plan, shifts), plan, ranges), held)
    bias_plain = np.abs((plain - reference).mean(axis=0)).mean()
    bias_corrected = np.abs((corrected - reference).mean(axis=0)).mean()
    assert bias_corrected < bias_plain


def test_apply_adds_a_missing_bias_and_copies_a_shared_one(calibrated):
    from onnx import numpy_helper

    model, plan, ranges, batches = calibrated
    nodes = {node.name: node for node in model.graph.node}
    del nodes["block_conv_b"].input[2]  # no bias
    nodes["block_conv_a"].input[2] = "stem_b"  # shares the stem's bias (both 8 channels)
    shifts = measure_bias_shifts(model, plan, ranges, batches)
    corrected = apply_bias_shifts(model, plan, shifts)
    inits = {init.name: numpy_helper.to_array(init) for init in corrected.graph.initializer}
    by_name = {node.name: node for node in corrected.graph.node}
    np.testing.assert_allclose(inits[by_name["block_conv_b"].input[2]], -shifts.shifts["block_conv_b"], rtol=1e-6)
    stem_bias, a_bias = by_name["stem_conv"].input[2], by_name["block_conv_a"].input[2]
    assert stem_bias != a_bias
    original = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "stem_b"))
    np.testing.assert_allclose(inits[a_bias], original - shifts.shifts["block_conv_a"], rtol=1e-6)
    np.testing.assert_allclose(inits[stem_bias], original - shifts.shifts["stem_conv"], rtol=1e-6)
    assert len(model.graph.node[4].input) == 2  # the input model is left alone


def test_shifts_round_trip_through_json(calibrated):
    model, plan, ranges, batches = calibrated
    shifts = measure_bias_shifts(model, plan, ranges, batches)
    again = BiasShifts.from_json(json.loads(json.dumps(shifts.to_json())))
    assert again.images == 32 and set(again.shifts) == set(shifts.shifts)
    for name, values in shifts.shifts.items():
        np.testing.assert_allclose(again.shifts[name], values, rtol=1e-6)

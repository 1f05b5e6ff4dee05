"""Models that arrive quantized: what their Q/DQ are called, and what TensorRT refuses, before any work (issue 19)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T, helper, numpy_helper

from tests.quantized_models import fp8_model, int4_block_model, int8_qat_model
from trtpipe.errors import OnnxModelError
from trtpipe.onnx.load import onnxruntime_reason
from trtpipe.onnx.quantized import check_tensorrt_takes, precision_key, scan_quantization
from trtpipe.runtime.onnxruntime_engine import model_precision


@pytest.mark.parametrize("make, precision, granularities", [
    (lambda d: fp8_model(d), "fp8 (E4M3) weights and activations", ["per tensor", "per tensor", "per channel (axis 0)"]),
    (lambda d: fp8_model(d, per_channel=False), "fp8 (E4M3) weights and activations", ["per tensor"] * 3),
    (lambda d: fp8_model(d, qtype=T.FLOAT8E5M2), "fp8 (E5M2) weights and activations", None),
    (lambda d: int8_qat_model(d), "int8 as quantized in the ONNX",
     ["per tensor", "per tensor", "per channel (axis 0)", "per channel (axis 0)"]),
    (lambda d: int8_qat_model(d, zero_point=128, dtype=T.UINT8), "uint8 as quantized in the ONNX", None),
    (lambda d: int4_block_model(d), "int4 weights, fp32 activations", ["per block (axis 0, block_size 16)"]),
    (lambda d: int4_block_model(d, scale_type=np.float16), "int4 weights, fp16 activations", None),
    (lambda d: int4_block_model(d, qtype=T.UINT4), "uint4 weights, fp32 activations", None),
])
def test_a_quantized_model_is_named_by_its_own_qdq(tmp_path, make, precision, granularities):
    model = onnx.load(str(make(tmp_path)))
    quantization = scan_quantization(model)
    assert quantization.precision == precision
    assert model_precision(model) == precision  # what infer, bench and the ONNX Runtime fallback print
    if granularities is not None:
        assert [node.granularity for node in quantization.nodes] == granularities


def test_mixed_types_name_weights_and_activations_apart(tmp_path):
    """INT8 weights under FP8 activations (a hand-mixed export): neither one alone names it."""
    model = onnx.load(str(fp8_model(tmp_path)))
    weights = _weights_as_int8(model)
    assert scan_quantization(weights).precision == "int8 weights, fp8 (E4M3) activations"
    assert precision_key(scan_quantization(weights).precision) == "int8" and scan_quantization(weights).key == "mixed"


def test_trtpipes_own_calibration_is_int8_and_a_given_int8_model_says_so(tmp_path):
    from trtpipe.quant.qdq import insert_qdq, plan_qdq

    float_model = onnx.load(str(int8_qat_model(tmp_path)))
    for node in [n for n in float_model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]:
        float_model.graph.node.remove(node)
    for node in float_model.graph.node:  # the Conv reads x and W directly again
        node.input[:] = [{"xdq": "x", "Wdq": "W"}.get(name, name) for name in node.input]
    plan = plan_qdq(float_model)
    ours = insert_qdq(float_model, plan, {name: 1.0 for name in plan.activations})
    assert model_precision(ours) == "int8"  # the --precision int8 it was asked for
    ours.ClearField("metadata_props")
    assert model_precision(ours) == "int8 as quantized in the ONNX"


@pytest.mark.parametrize("make, node, said", [
    (lambda d: int8_qat_model(d, zero_point=128, dtype=T.UINT8), "QuantizeLinear 'x_q'", "zero point 128 (uint8, asymmetric)"),
    (lambda d: fp8_model(d, qtype=T.FLOAT8E5M2), "QuantizeLinear 'x_q'", "quantizes to float8e5m2"),
    (lambda d: int4_block_model(d, qtype=T.UINT4), "DequantizeLinear 'w_dq'", "quantizes to uint4"),
    (lambda d: int8_qat_model(d, dtype=T.UINT8), "QuantizeLinear 'x_q'", "quantizes to uint8"),
])
def test_what_tensorrt_refuses_is_refused_naming_the_node(tmp_path, make, node, said):
    path = make(tmp_path)
    with pytest.raises(OnnxModelError) as caught:
        check_tensorrt_takes(scan_quantization(onnx.load(str(path))), path, "calibration")
    message = str(caught.value)
    assert node in message and said in message and "calibration refuses the model before any work" in message
    assert "Hint:" in message


@pytest.mark.parametrize("make", [fp8_model, int8_qat_model, int4_block_model])
def test_what_tensorrt_builds_passes(tmp_path, make):
    check_tensorrt_takes(scan_quantization(onnx.load(str(make(tmp_path)))), "m.onnx", "build")


def test_an_int32_bias_behind_dequantize_is_named_with_the_fix(tmp_path):
    """ONNX Runtime's quantize_static default: TensorRT-RTX's parser rejects it (DESIGN: QuantizeBias False)."""
    model = onnx.load(str(int8_qat_model(tmp_path)))
    model.graph.initializer.extend([numpy_helper.from_array(np.zeros(8, np.int32), "Bq"),
                                    numpy_helper.from_array(np.full(8, 0.01, np.float32), "b_scale")])
    model.graph.node.insert(0, helper.make_node("DequantizeLinear", ["Bq", "b_scale"], ["Bdq"], name="bias_dq", axis=0))
    with pytest.raises(OnnxModelError, match=r"DequantizeLinear 'bias_dq' quantizes to int32 .*QuantizeBias=False"):
        check_tensorrt_takes(scan_quantization(model), "m.onnx", "build")
    assert scan_quantization(model).precision == "int8 as quantized in the ONNX"  # the bias is part of INT8 layers


def test_a_float_model_has_no_quantization(tmp_path):
    model = onnx.load(str(int4_block_model(tmp_path)))
    model.graph.ClearField("node")
    assert not scan_quantization(model) and scan_quantization(model).precision is None


def test_onnxruntime_reason_drops_the_cpp_signature_and_keeps_the_reason():
    said = ("[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:/onnxruntime_src/onnxruntime/core/graph/"
            "model.cc:181 onnxruntime::Model::Model(onnx::ModelProto&&, const PathString&, const "
            "IOnnxRuntimeOpSchemaRegistryList*, const onnxruntime::logging::Logger&, const onnxruntime::ModelOptions&) "
            "Unsupported model IR version: 15, max supported IR version: 11")
    reason = onnxruntime_reason(RuntimeError(said), limit=120)
    assert reason.endswith("Unsupported model IR version: 15, max supported IR version: 11") and "Logger" not in reason


def _weights_as_int8(model):
    """The FP8 model with its stored weights and their zero point as INT8."""
    weights = next(i for i in model.graph.initializer if i.name == "Wq")
    values = np.clip(np.round(numpy_helper.to_array(weights).astype(np.float32)), -127, 127).astype(np.int8)
    weights.CopyFrom(numpy_helper.from_array(values, "Wq"))
    zero = next(i for i in model.graph.initializer if i.name == "w_zp")
    zero.CopyFrom(numpy_helper.from_array(np.zeros(8, np.int8), "w_zp"))
    return model


def test_onnx_runtimes_contrib_qdq_is_a_quantization_tensorrt_refuses(tmp_path):
    """quantize_static(..., UseQDQContribOps=True) writes com.microsoft Q/DQ: never taken for a float model."""
    model = onnx.load(str(int8_qat_model(tmp_path)))
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            node.domain = "com.microsoft"
    quantization = scan_quantization(model)
    assert quantization.precision == "int8 as quantized in the ONNX" and len(quantization.nodes) == 4
    with pytest.raises(OnnxModelError, match="QuantizeLinear 'x_q' is ONNX Runtime's contrib op .*UseQDQContribOps"):
        check_tensorrt_takes(quantization, "m.onnx", "build")


def test_a_flavour_takes_the_qdq_types_its_datatype_has():
    """FP4 arrived in TensorRT 10.8: a flavour whose DataType lacks FP4 refuses an FP4 model at the build."""
    from types import SimpleNamespace

    from trtpipe.flavors import Flavor

    old = Flavor("tensorrt", "10.0.1", SimpleNamespace(DataType=SimpleNamespace(INT8=1, FP8=2, INT4=3)))
    assert old.qdq_types == ("int8", "float8e4m3fn", "int4")
    tensorrt_rtx = pytest.importorskip("tensorrt_rtx", reason="the recorded flavour is checked on the real module")
    assert Flavor("tensorrt_rtx", "1.7", tensorrt_rtx).qdq_types == ("int8", "float8e4m3fn", "int4", "float4e2m1")


def test_a_model_local_function_is_no_plugin_but_a_trt_domain_node_is(tmp_path):
    """torch dynamo exports call functions of their own domain (ONNX Runtime inlines them): not plugin nodes."""
    from tests.quantized_models import plain_model
    from trtpipe.onnx.load import plugin_nodes

    model = onnx.load(str(plain_model(tmp_path, "f")))
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type, relu.domain = "MyRelu", "pkg.local"
    model.functions.append(helper.make_function("pkg.local", "MyRelu", ["X"], ["Y"],
                                                [helper.make_node("Relu", ["X"], ["Y"])],
                                                [helper.make_opsetid("", 17)]))
    model.opset_import.append(helper.make_opsetid("pkg.local", 1))
    assert plugin_nodes(model) == []
    model.functions.pop()
    assert [n.name for n in plugin_nodes(model)] == ["relu0"]

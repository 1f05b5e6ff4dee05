"""Builds of models that came quantized and of odd inputs/outputs (issue 19): real TensorRT-RTX builds on the CPU.

Each refusal is checked for what the user reads (the node or tensor by its ONNX name, a Hint) and for what it leaves
on disk: nothing beside the engine path, not even the rewritten ONNX of the precision step.
"""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T

from tests.quantized_models import fp8_model, int4_block_model, int8_qat_model, plain_model
from trtpipe.builder.builder import build_engine
from trtpipe.errors import BuildError, OnnxModelError
from trtpipe.spec import BuildConfig, EngineSidecar

pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds engines on the CPU; pip install 'trtpipe[rtx]'")

RTX = BuildConfig(flavor="tensorrt_rtx")
FP16 = BuildConfig(flavor="tensorrt_rtx", precision="fp16")


def _strings(node, skip=("preprocess",)):
    """Every string value in a sidecar's JSON, paths and hashes aside."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in skip and not any(part in key for part in ("path", "file", "sha256")):
                yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


@pytest.mark.parametrize("make, precision", [
    (lambda d: fp8_model(d), "fp8 (E4M3) weights and activations"),
    (lambda d: int4_block_model(d), "int4 weights, fp32 activations"),
    (lambda d: int4_block_model(d, scale_type=np.float16), "int4 weights, fp16 activations"),
])
def test_a_quantized_model_builds_and_is_never_called_int8(tmp_path, make, precision):
    """R23's kind: per-channel FP8 and per-block INT4 weights build with their own Q/DQ, named for what they are."""
    result = build_engine(make(tmp_path), tmp_path / "m.engine", RTX)
    side = EngineSidecar.load(tmp_path / "m.engine.json")
    assert side.network_onnx_precision == precision and side.precision_realised.startswith(precision)
    assert side.precision_shown == precision and f"({precision}, " in result.summary()
    assert not [text for text in _strings(json.loads((tmp_path / "m.engine.json").read_text())) if "int8" in text.lower()]


def test_int8_of_an_int8_qdq_model_uses_its_qdq_and_says_so(tmp_path):
    """R24's kind through build: no calibration (no cache written), the model's own Q/DQ are the engine's."""
    config = BuildConfig(flavor="tensorrt_rtx", precision="int8", calib_images=str(tmp_path / "no-images"))
    result = build_engine(int8_qat_model(tmp_path / "m"), tmp_path / "m" / "q.engine", config)
    assert result.sidecar.network_onnx_precision == "int8 as quantized in the ONNX"
    assert any("uses the model's own Q/DQ, nothing calibrated" in note for note in result.sidecar.notes)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["q.engine", "q.engine.json", "qat.onnx",
                                                                   "qat.preprocess.json"]


@pytest.mark.parametrize("make", [fp8_model, int4_block_model])
def test_int8_of_a_model_quantized_otherwise_is_refused_naming_its_qdq(tmp_path, make):
    """An FP8 or INT4 model is not made INT8 by asking: never quantized again, never labelled INT8."""
    from trtpipe.errors import ConfigError

    source = make(tmp_path)
    config = BuildConfig(flavor="tensorrt_rtx", precision="int8", calib_images=str(tmp_path / "no-images"))
    with pytest.raises(ConfigError, match=r"came quantized as (fp8|int4) .*\(Q/DQ nodes .*w_dq\).*Hint: build it without"):
        build_engine(source, tmp_path / "m.engine", config)
    assert not list(tmp_path.glob("m.engine*"))


@pytest.mark.parametrize("make, said", [
    (lambda d: int8_qat_model(d, zero_point=128, dtype=T.UINT8), "has zero point 128"),
    (lambda d: fp8_model(d, qtype=T.FLOAT8E5M2), "quantizes to float8e5m2"),
    (lambda d: int4_block_model(d, qtype=T.UINT4), "quantizes to uint4"),
])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_qdq_tensorrt_lacks_is_refused_before_any_work(tmp_path, make, said, precision):
    source = make(tmp_path / "m")
    before = sorted(p.name for p in source.parent.iterdir())
    config = BuildConfig(flavor="tensorrt_rtx", precision=precision, calib_images=str(tmp_path / "none"))
    with pytest.raises(OnnxModelError, match=said + ".*build refuses the model before any work"):
        build_engine(source, source.parent / "m.engine", config)
    assert sorted(p.name for p in source.parent.iterdir()) == before


@pytest.mark.parametrize("opset", [13, 17])
def test_fp16_of_a_qdq_model_keeps_qdq_fp32_and_runs_in_onnxruntime(tmp_path, opset):
    """R25's kind: QuantizeLinear below opset 19 takes float32 only; the FP16 network ONNX must stay valid."""
    from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine

    result = build_engine(int8_qat_model(tmp_path, opset=opset), tmp_path / "h.engine", FP16)
    network = onnx.load(result.sidecar.network_onnx_path)
    onnx.checker.check_model(network, full_check=True)
    types = {i.name: i.data_type for i in network.graph.initializer}
    scales = [n.input[1] for n in network.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert scales and all(types[name] == T.FLOAT for name in scales)
    with OnnxRuntimeEngine(result.sidecar.network_onnx_path) as engine:
        outputs = engine.infer({"x": np.random.default_rng(0).random((1, 3, 32, 32), np.float32)})
    assert np.isfinite(outputs["logits"]).all()


@pytest.mark.parametrize("config", [RTX, FP16])
def test_an_input_that_is_an_output_is_refused_by_its_onnx_name(tmp_path, config):
    """R31's kind, with two such inputs' worth of outputs: never TensorRT's renamed __x, nothing left behind."""
    source = plain_model(tmp_path, "io", extra_outputs=("x",))
    with pytest.raises(OnnxModelError) as caught:
        build_engine(source, tmp_path / "io.engine", config)
    assert "graph input 'x' is also a graph output" in str(caught.value) and "__x" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["io.onnx", "io.preprocess.json"]


@pytest.mark.parametrize("config", [RTX, FP16])
def test_an_output_listed_three_times_builds_and_is_listed_once(tmp_path, config):
    result = build_engine(plain_model(tmp_path, "out3", outputs_listed=3), tmp_path / "o.engine", config)
    assert [t.name for t in result.sidecar.outputs] == ["logits"]
    assert any("'logits' is listed 3 times" in note for note in result.sidecar.notes)


def test_a_float64_input_is_recorded_as_tensorrts_network_has_it(tmp_path):
    """R28's kind: TensorRT has no float64; the engine binds FLOAT, and its Triton plan config says TYPE_FP32."""
    from trtpipe.serve.triton_export import export_repository

    result = build_engine(plain_model(tmp_path, "f64", input_dtype=T.DOUBLE), tmp_path / "f.engine", RTX)
    assert [(t.name, t.dtype) for t in result.sidecar.inputs] == [("x", "float32")]
    assert any("'x' is float64 in the ONNX and float32 in TensorRT's network" in n for n in result.sidecar.notes)
    export_repository(tmp_path / "f.engine", tmp_path / "repo", pipeline=False, force=True)
    config = (tmp_path / "repo" / "f" / "config.pbtxt").read_text()
    assert 'name: "x"\n  data_type: TYPE_FP32' in config and "TYPE_FP64" not in config


def test_a_batch_axis_of_zero_is_refused_naming_the_input(tmp_path):
    with pytest.raises(OnnxModelError, match=r"input 'x' has shape \[0, 3, 32, 32\]: its batch axis has fixed size 0"):
        build_engine(plain_model(tmp_path, "b0", batch=0), tmp_path / "b0.engine", RTX)


def test_an_ir_version_onnx_cannot_read_fp32_builds_fp16_is_refused_saying_so(tmp_path):
    """R30's kind: TensorRT's parser reads it; the FP16 rewrite needs onnx, which says which IR versions it reads."""
    source = plain_model(tmp_path, "ir", ir=onnx.IR_VERSION + 1)
    build_engine(source, tmp_path / "ir_fp32.engine", RTX)
    with pytest.raises(OnnxModelError, match=f"IR version {onnx.IR_VERSION + 1}, newer than the installed onnx "
                                             rf".* \(IR version up to {onnx.IR_VERSION};"):
        build_engine(source, tmp_path / "ir_fp16.engine", FP16)
    assert not list(tmp_path.glob("ir_fp16*")) and not list(tmp_path.glob("*.fp16.onnx"))


def test_a_plugin_node_is_named_and_the_hint_speaks_of_plugins(tmp_path):
    """R26's kind with another plugin (BatchedNMSDynamic_TRT), at FP16: the rewritten ONNX goes with the refusal."""
    source = plain_model(tmp_path, "plug", plugin=True)
    for config in (RTX, FP16):
        with pytest.raises(BuildError) as caught:
            build_engine(source, tmp_path / "plug.engine", config)
        message = str(caught.value)
        assert "BatchedNMSDynamic_TRT" in message and "a TensorRT plugin op" in message.split("Hint:")[1]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["plug.onnx", "plug.preprocess.json"]


def test_fp16_of_an_fp8_model_is_named_by_both_and_inspect_says_so(tmp_path):
    from trtpipe.inspect import inspect_engine

    build_engine(fp8_model(tmp_path), tmp_path / "h.engine", FP16)
    side = EngineSidecar.load(tmp_path / "h.engine.json")
    assert side.network_onnx_precision == side.precision_shown == "fp8 (E4M3) weights and activations; fp16 elsewhere"
    shown = inspect_engine(tmp_path / "h.engine").format()
    assert "precision fp8 (E4M3) weights and activations; fp16 elsewhere (strongly typed FP16 ONNX" in shown
    assert "built with --precision fp16)" in shown

"""--precision fp8: E4M3 Q/DQ at opset 19 with INT8's calibration, search and checks; refused where FP8 cannot run."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from trtpipe.builder.builder import _sm
from trtpipe.cli.main import main
from trtpipe.quant.prepare import prepare_precision_onnx
from trtpipe.quant.qdq import FP8_E4M3, INT8, count_qdq, insert_qdq, plan_qdq, quantize_weight
from trtpipe.spec import BuildConfig


def test_fp8_weights_round_to_e4m3_per_channel():
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 0.2, (8, 4, 3, 3)).astype(np.float32)
    values, scale = quantize_weight(weight, 0, FP8_E4M3)
    assert str(values.dtype) == "float8_e4m3fn" and scale.shape == (8,)
    restored = values.astype(np.float32) * scale.reshape(-1, 1, 1, 1)
    assert np.abs(values.astype(np.float32)).max() == 448.0  # each channel's amax lands on E4M3's largest value
    relative = np.abs(restored - weight) / np.abs(weight).max(axis=(1, 2, 3), keepdims=True)
    assert relative.max() <= 2 ** -4  # 3 mantissa bits: half a step is at most 1/16 of the value
    int8_values, _ = quantize_weight(weight, 0, INT8)
    assert int8_values.dtype == np.int8  # the INT8 path is unchanged


def test_fp8_qdq_model_is_valid_onnx_that_onnx_runtime_runs(make_tiny_model):
    model = onnx.version_converter.convert_version(make_tiny_model(), 19)
    plan = plan_qdq(model)
    rng = np.random.default_rng(1)
    amax = {name: 4.0 for name in plan.activations}
    fp8 = insert_qdq(model, plan, amax, fmt=FP8_E4M3)
    onnx.checker.check_model(fp8)
    counts = count_qdq(fp8)
    assert not counts.dangling and counts.quantized_layers == counts.total_layers
    zero_points = [i for i in fp8.graph.initializer if i.name.endswith("zero_point")]
    assert zero_points and all(i.data_type == onnx.TensorProto.FLOAT8E4M3FN for i in zero_points)
    x = rng.normal(0, 1, (2, 3, 32, 32)).astype(np.float32)
    reference = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    out = ort.InferenceSession(fp8.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    cosine = (reference * out).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(out, axis=1)
    # E4M3 keeps 3 mantissa bits (up to 1/16 relative error per value, where INT8 at a fitting scale keeps 1/254 of
    # amax): on this small random network FP8 measured cosine 0.96-0.97 against INT8's 0.99999 with exact ranges
    assert cosine.min() > 0.9
    with pytest.raises(ValueError, match="FP8 \\(E4M3\\) Q/DQ needs opset 19"):
        insert_qdq(make_tiny_model(), plan_qdq(make_tiny_model()), amax, fmt=FP8_E4M3)


def test_prepare_fp8_converts_to_opset_19_and_writes_its_own_cache(tiny_onnx, image_dir, tmp_path):
    config = BuildConfig(precision="fp8", calib_images=str(image_dir), calib_max_images=64, fidelity_target="none")
    prepared = prepare_precision_onnx(tiny_onnx, config, None, tmp_path / "engines")
    assert prepared.path.name == "tiny.fp8.onnx" and (tmp_path / "engines" / "tiny.fp8.calib.json").is_file()
    model = onnx.load(str(prepared.path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 19
    assert "FP8 (E4M3)" in prepared.precision_realised
    assert any("converted opset 17 -> 19 with onnx.version_converter" in note for note in prepared.notes)


@pytest.fixture
def tiny_with_spec(tiny_onnx):
    from trtpipe.spec import PreprocessSpec

    PreprocessSpec(model="tiny", height=32, width=32).save(tiny_onnx.with_name("tiny.preprocess.json"))
    return tiny_onnx


def test_build_fp8_with_tensorrt_rtx_targets_sm89_and_newer(tiny_with_spec, image_dir, tmp_path, capsys):
    pytest.importorskip("tensorrt_rtx")
    engine = tmp_path / "tiny_fp8.engine"
    code = main(["build", str(tiny_with_spec), "--precision", "fp8", "--images", str(image_dir), "--fidelity-target",
                 "none", "-o", str(engine)])
    out = capsys.readouterr()
    assert code == 0, out.err
    sidecar = json.loads((tmp_path / "tiny_fp8.engine.json").read_text())
    assert sidecar["precision"] == "fp8" and "FP8 (E4M3)" in sidecar["precision_realised"]
    targets = sidecar["target"]["compute_capabilities"]
    assert targets and all(_sm(cc) >= (8, 9) for cc in targets) and "SM89" in targets


def test_fp8_for_a_target_without_fp8_tensor_cores_is_refused_before_any_work(tiny_with_spec, image_dir, tmp_path, capsys):
    pytest.importorskip("tensorrt_rtx")
    engine = tmp_path / "tiny_fp8.engine"
    code = main(["build", str(tiny_with_spec), "--precision", "fp8", "--images", str(image_dir), "--compute-capability",
                 "SM86,SM89", "-o", str(engine)])
    err = capsys.readouterr().err
    assert code == 2 and "FP8 needs FP8 tensor cores" in err and "--compute-capability SM86" in err and "Hint:" in err
    assert not list(tmp_path.glob("tiny_fp8*")) and not list(tiny_with_spec.parent.glob("*.fp8.*"))


def test_calibrate_and_fidelity_take_fp8(tiny_with_spec, image_dir, tmp_path, capsys):
    code = main(["calibrate", str(tiny_with_spec), "--images", str(image_dir), "--precision", "fp8",
                 "--fidelity-target", "none"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert tiny_with_spec.with_name("tiny.fp8.onnx").is_file() and "FP8 (E4M3)" in out.out
    code = main(["fidelity", str(tiny_with_spec), "--precisions", "fp32,int8,fp8", "--images", str(image_dir),
                 "--calib", str(image_dir), "--work-dir", str(tmp_path / "fid")])
    out = capsys.readouterr()
    assert code == 0, out.err
    rows = [line.split()[0] for line in out.out.splitlines() if line.split()[:1] in (["fp32"], ["int8"], ["fp8"])]
    assert rows == ["fp32", "int8", "fp8"]
    assert (tmp_path / "fid" / "tiny.fidelity.fp8.onnx").is_file()


def test_trtpipes_own_fp8_model_is_named_fp8_and_never_quantized_again(tiny_onnx, image_dir, tmp_path):
    from trtpipe.onnx.quantized import model_quantization_label
    from trtpipe.runtime.onnxruntime_engine import model_precision

    config = BuildConfig(precision="fp8", calib_images=str(image_dir), calib_max_images=64, fidelity_target="none")
    prepared = prepare_precision_onnx(tiny_onnx, config, None, tmp_path / "engines")
    model = onnx.load(str(prepared.path))
    assert model_quantization_label(model) == "fp8"
    assert model_precision(model) == "fp8"


def test_an_fp8_model_with_a_clip_before_its_quantizer_runs_in_onnx_runtime(tmp_path):
    """ReLU6 (Clip) before QuantizeLinear: ONNX Runtime's ClipQuantRewrite fails such a session for FP8 zero points
    unless trtpipe turns the rewrite off (it only drops a redundant Clip)."""
    from onnx import TensorProto, helper, numpy_helper

    from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["relu6"]),
             helper.make_node("Conv", ["relu6", "w"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "clip_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])],
                              [numpy_helper.from_array(np.array(0, np.float32), "lo"),
                               numpy_helper.from_array(np.array(6, np.float32), "hi"),
                               numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    plan = plan_qdq(model)
    path = tmp_path / "clip.fp8.onnx"
    onnx.save(insert_qdq(model, plan, {"relu6": 6.0}, fmt=FP8_E4M3), str(path))
    engine = OnnxRuntimeEngine(path, providers=["CPUExecutionProvider"])
    out = engine.infer({"x": rng.normal(0, 2, (2, 3, 8, 8)).astype(np.float32)})
    assert out["y"].shape == (2, 4, 8, 8) and np.isfinite(out["y"]).all()

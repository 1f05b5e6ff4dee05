"""Shape specialisation and constant folding (Polygraphy) when the profile fixes what the ONNX leaves dynamic."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.quant.conftest import build_strongly_typed, write_model
from trtpipe.errors import BuildError
from trtpipe.onnx.load import onnx_sha256
from trtpipe.onnx.specialise import dims_fixed_by_profile, specialise_and_fold
from trtpipe.spec import BuildConfig, ShapeRange, TensorInfo

needs_rtx = pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None, reason="tensorrt-rtx is not installed")


def paddle_style_classifier(path):
    """x: [-1, 3, ?, ?] -> Conv -> ... -> a shape computed from Shape(x) -> [N, 2], as paddle2onnx writes them.

    Height and width share the one dimension name ``?``: TensorRT-RTX then takes them for one dimension and refuses
    any profile where they differ, as it refuses PaddleOCR's direction classifier at 48x192.
    """
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(0, 0.2, (8, 2)).astype(np.float32), "FW"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu0"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        # shape arithmetic: [Shape(g)[0], -1], which folding cannot remove while the batch is dynamic, and the
        # height x width product, which it can once they are fixed
        helper.make_node("Shape", ["g"], ["g_shape"], name="shape_g"),
        helper.make_node("Gather", ["g_shape", "zero"], ["n"], name="batch_of", axis=0),
        helper.make_node("Concat", ["n", "minus_one"], ["flat_shape"], name="flat_shape", axis=0),
        helper.make_node("Reshape", ["g", "flat_shape"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "FW"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "cls", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, "?", "?"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [-1, 2])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.save(model, str(path))
    return path


def test_the_profile_fixes_height_and_width_and_the_batch_stays_dynamic():
    inputs = (TensorInfo("x", (-1, 3, -1, -1), "float32"), TensorInfo("static", (1, 4), "float32"))
    ranges = [ShapeRange("x", (1, 3, 48, 192), (4, 3, 48, 192), (16, 3, 48, 192)), ShapeRange("static", (1, 4), (1, 4), (1, 4))]
    assert dims_fixed_by_profile(inputs, ranges) == {"x": ("N", 3, 48, 192)}
    ranging = [ShapeRange("x", (1, 3, 32, 32), (1, 3, 48, 192), (1, 3, 64, 256)), ranges[1]]
    assert dims_fixed_by_profile(inputs, ranging) == {}


def test_specialising_fixes_the_input_and_keeps_the_outputs(tmp_path):
    import onnxruntime as ort

    path = paddle_style_classifier(tmp_path / "cls.onnx")
    model = onnx.load(str(path))
    specialised, done = specialise_and_fold(model, {"x": ("N", 3, 48, 192)})
    dims = [d.dim_value or d.dim_param for d in specialised.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, 48, 192]
    assert done.nodes_before == 8 and done.to_json()["inputs"] == {"x": ["N", 3, 48, 192]}
    x = np.random.default_rng(1).standard_normal((3, 3, 48, 192)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(run(specialised), run(model), rtol=1e-5, atol=1e-6)


@needs_rtx
def test_tensorrt_rtx_refuses_the_model_as_given_and_builds_it_specialised(tmp_path):
    from trtpipe.builder.builder import build_engine

    source = tmp_path / "models"
    source.mkdir()
    path = paddle_style_classifier(source / "cls.onnx")
    out = tmp_path / "engines"
    out.mkdir()
    import tensorrt_rtx as trt

    # raw TensorRT-RTX, static profile: refused (what the specialisation is for)
    with pytest.raises(AssertionError, match="None is not None"):
        build_strongly_typed(trt, path, (1, 3, 48, 192))
    fixed = BuildConfig(flavor="tensorrt_rtx", shapes=(ShapeRange.parse("x:1x3x48x192:4x3x48x192:16x3x48x192"),))
    result = build_engine(path, out / "cls.engine", fixed)
    (step,) = result.sidecar.onnx_rewrites
    parsed = out / "cls.specialised.onnx"
    assert step["step"] == "specialise_and_fold" and step["inputs"] == {"x": ["N", 3, 48, 192]}
    assert step["onnx_sha256"] == onnx_sha256(parsed) == result.sidecar.network_onnx_sha256
    assert result.sidecar.inputs[0].shape == (-1, 3, 48, 192)
    assert any("specialised x:[N,3,48,192]" in note for note in result.sidecar.notes)
    assert sorted(p.name for p in source.iterdir()) == ["cls.onnx"]  # nothing written beside the original

    # a profile that leaves height and width ranging cannot be specialised: folding is tried, then TensorRT's
    # own message is in the error, and nothing is left behind
    ranging = BuildConfig(flavor="tensorrt_rtx", shapes=(ShapeRange.parse("x:1x3x32x48:1x3x48x64:1x3x64x96"),))
    with pytest.raises(BuildError, match=r"Dimensions with name \? must be equal.*before, TensorRT said") as caught:
        build_engine(path, out / "ranging.engine", ranging)
    assert "fixes the dynamic image dimensions" in caught.value.hint
    assert not (out / "ranging.engine").exists() and not (out / "ranging.specialised.onnx").exists()


@needs_rtx
def test_a_static_model_parses_as_given(tmp_path):
    from trtpipe.builder.builder import build_engine

    path = write_model(tmp_path / "models")
    result = build_engine(path, tmp_path / "tiny.engine", BuildConfig(flavor="tensorrt_rtx"))
    assert result.sidecar.onnx_rewrites == () and result.sidecar.network_onnx_path == str(path)

"""Old opsets are converted (onnx.version_converter), checked against the original, and recorded; not refused."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quant"))
from conftest import SIZE, tiny_resnet, write_images  # noqa: E402

from trtpipe.errors import OnnxModelError
from trtpipe.onnx.opset import default_opset, upgrade_opset, with_error
from trtpipe.spec import BuildConfig, PreprocessSpec

needs_rtx = pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx") is None, reason="tensorrt-rtx is not installed")


def opset11_model(folder: Path) -> Path:
    """tiny_resnet as paddle2onnx would write it: opset 11, IR 6, with its preprocess spec beside it."""
    model = tiny_resnet(seed=3)
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 11))
    model.ir_version = 6
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "old.onnx"
    onnx.save(model, str(path))
    PreprocessSpec(model="old", height=SIZE, width=SIZE).save(folder / "old.preprocess.json")
    return path


def upsample_model() -> onnx.ModelProto:
    """Upsample as opset-10 exporters still wrote it (deprecated there): the converter has no adapter to Resize for it."""
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    node = helper.make_node("Upsample", ["x", "scales"], ["y"], name="up0", mode="nearest")
    graph = helper.make_graph(
        [node], "up", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])], [scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)])
    model.ir_version = 6
    return model


def test_an_opset_11_model_is_converted_to_17_and_its_outputs_checked(tmp_path):
    model = onnx.load(str(opset11_model(tmp_path)))
    converted, conversion = upgrade_opset(model, 13, "old.onnx", "per-channel Q/DQ needs opset 13")
    assert (conversion.from_opset, conversion.to_opset, default_opset(converted)) == (11, 17, 17)
    batches = [np.random.default_rng(0).standard_normal((4, 3, SIZE, SIZE)).astype(np.float32)] * 3
    checked = with_error(conversion, model, converted, batches, max_images=8)
    assert checked.images == 8 and 0 <= checked.max_abs_error < 1e-5
    assert "opset 11 -> 17" in checked.summary() and "8 images" in checked.summary()


def test_a_model_at_the_opset_needed_is_left_as_it_is():
    model = tiny_resnet()
    same, conversion = upgrade_opset(model, 13, "m.onnx", "why")
    assert same is model and conversion is None


def test_a_conversion_that_changes_the_outputs_is_refused(tmp_path):
    model = onnx.load(str(opset11_model(tmp_path)))
    converted, conversion = upgrade_opset(model, 13, "old.onnx", "why")
    broken = onnx.ModelProto()
    broken.CopyFrom(converted)
    weight = next(t for t in broken.graph.initializer if t.name == "fc_w")
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 2, "fc_w"))
    batch = np.random.default_rng(0).standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    with pytest.raises(OnnxModelError, match="conversion changed the outputs"):
        with_error(conversion, model, broken, [batch])


def test_a_failed_conversion_names_the_op_that_blocked_it():
    with pytest.raises(OnnxModelError, match=r"Upsample \(node 'up0'.*blocks opset 17") as caught:
        upgrade_opset(upsample_model(), 13, "up.onnx", "per-channel Q/DQ needs opset 13")
    assert "Hint: replace Upsample" in str(caught.value)


@needs_rtx
def test_int8_builds_an_opset_11_model_and_the_sidecar_records_the_conversion(tmp_path):
    from trtpipe.builder.builder import build_engine

    onnx_path = opset11_model(tmp_path / "models")
    images = write_images(tmp_path / "images", 24)
    config = BuildConfig(precision="int8", flavor="tensorrt_rtx", calib_images=str(images), fidelity_target="none",
                         calib_method="max")
    result = build_engine(onnx_path, tmp_path / "old_int8.engine", config)
    (step,) = result.sidecar.onnx_rewrites
    assert step["step"] == "opset_conversion" and (step["from"], step["to"]) == (11, 17)
    assert step["images"] >= 8 and step["max_abs_error"] < 1e-5
    assert any("converted opset 11 -> 17" in note for note in result.sidecar.notes)
    qdq = onnx.load(result.sidecar.network_onnx_path)
    assert default_opset(qdq) == 17 and any(n.op_type == "QuantizeLinear" for n in qdq.graph.node)
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == ["old.onnx", "old.preprocess.json"]


def test_the_cli_exits_2_naming_the_op_when_conversion_fails(tmp_path, capsys):
    from trtpipe.cli.main import main

    path = tmp_path / "up.onnx"
    onnx.save(upsample_model(), str(path))
    PreprocessSpec(model="up", height=4, width=4).save(tmp_path / "up.preprocess.json")
    images = write_images(tmp_path / "images", 24)
    assert main(["calibrate", str(path), "--images", str(images)]) == 2
    err = capsys.readouterr().err
    assert "Upsample (node 'up0'" in err and "Hint:" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "up.onnx", "up.preprocess.json"]

"""What the builder takes in: models the strict ONNX checker refuses, --batch with --shapes, the spec's image size,
weights listed as inputs. Real TensorRT-RTX builds on the CPU."""

import onnx
import pytest

from tests.intake_models import (
    dynamic_hw_model,
    initializers_as_inputs_model,
    rank_clash_model,
    shapeless_output_model,
)
from trtpipe.builder.builder import build_engine
from trtpipe.errors import BuildError, ConfigError
from trtpipe.spec import BatchRange, BuildConfig, EngineSidecar, PreprocessSpec, ShapeRange, preprocess_path_for, sidecar_path_for

pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds engines on the CPU; pip install 'trtpipe[rtx]'")

RTX = BuildConfig(flavor="tensorrt_rtx")


@pytest.mark.parametrize("make, finding", [
    (shapeless_output_model, "ONNX checker: Field 'shape' of 'type' is required but missing (no shape field: y, c)"),
    (rank_clash_model, "ONNX strict shape inference: [ShapeInferenceError]"),
])
def test_models_the_strict_checker_refuses_build_with_the_finding_as_a_note(tmp_path, make, finding):
    """R22: TensorRT's parser builds them (as ONNX Runtime runs them), so the checker's finding is a warning."""
    result = build_engine(make(tmp_path / "m.onnx"), tmp_path / "m.engine", RTX)
    assert result.engine_path.stat().st_size == result.sidecar.engine_bytes > 0
    assert any(note.startswith(finding) and "a warning only" in note for note in result.sidecar.notes)
    assert [t.name for t in result.sidecar.outputs] == ["y"]


def test_a_parser_rejection_names_the_node_and_the_checker_finding(tmp_path, tiny_onnx):
    path = tiny_onnx(custom_op=True)
    model = onnx.load(str(path))
    model.graph.output[0].type.tensor_type.ClearField("shape")  # a checker finding on top of the unknown op
    onnx.save(model, str(path))
    with pytest.raises(BuildError) as caught:
        build_engine(path, tmp_path / "out" / "bad.engine", RTX)
    message = str(caught.value)
    assert "node 2 'weird0' (MyCustomOp)" in message
    assert "the ONNX checker also reports: checker: Field 'shape' of 'type' is required but missing (no shape field: output)" in message
    assert not (tmp_path / "out" / "bad.engine").exists()


def test_batch_with_shapes_builds_the_profile_asked_for(tmp_path):
    """R4: the sidecar's profile is what TensorRT was given, and it is what was asked."""
    onnx_path = dynamic_hw_model(tmp_path / "dynhw.onnx")
    config = BuildConfig(flavor="tensorrt_rtx", batch=BatchRange(1, 8, 32),
                         shapes=(ShapeRange.parse("images:1x3x32x32:1x3x48x64:1x3x96x128"),))
    result = build_engine(onnx_path, tmp_path / "d.engine", config)
    assert result.sidecar.profiles == (
        {"images": {"min": [1, 3, 32, 32], "opt": [8, 3, 48, 64], "max": [32, 3, 96, 128]}},
    )
    assert EngineSidecar.load(sidecar_path_for(result.engine_path)).build_config["batch"] == "1:8:32"
    contradiction = BuildConfig(flavor="tensorrt_rtx", batch=BatchRange(1, 8, 32),
                                shapes=(ShapeRange.parse("images:2x3x32x32:2x3x48x64:2x3x96x128"),))
    with pytest.raises(ConfigError, match="two batch ranges"):
        build_engine(onnx_path, tmp_path / "e.engine", contradiction)
    assert not (tmp_path / "e.engine").exists()


def test_an_engine_whose_sidecar_records_another_profile_is_rebuilt(tmp_path):
    """An engine built by an older trtpipe (which ignored --batch beside --shapes) is not 'up to date'."""
    onnx_path = dynamic_hw_model(tmp_path / "dynhw.onnx")
    config = BuildConfig(flavor="tensorrt_rtx", batch=BatchRange(1, 8, 32),
                         shapes=(ShapeRange.parse("images:1x3x32x32:1x3x48x64:1x3x96x128"),))
    out = tmp_path / "d.engine"
    first = build_engine(onnx_path, out, config)
    assert build_engine(onnx_path, out, config).skipped
    stale = first.sidecar.to_dict()
    stale["profiles"] = [{"images": {"min": [1, 3, 32, 32], "opt": [1, 3, 48, 64], "max": [1, 3, 96, 128]}}]
    EngineSidecar.from_dict(stale).save(sidecar_path_for(out))
    assert not build_engine(onnx_path, out, config).skipped


def test_a_profile_that_cannot_take_the_spec_image_size_is_warned_about_at_build(tmp_path):
    onnx_path = dynamic_hw_model(tmp_path / "dynhw.onnx", height=48, width=64)
    config = BuildConfig(flavor="tensorrt_rtx", shapes=(ShapeRange.parse("images:1x3x32x32"),))
    result = build_engine(onnx_path, tmp_path / "d.engine", config)
    warning = [note for note in result.sidecar.notes if note.startswith("WARNING: the profile of input 'images'")]
    assert len(warning) == 1 and "makes 48x64" in warning[0] and "--optShapes images:1x3x48x64" in warning[0]
    fits = BuildConfig(flavor="tensorrt_rtx", shapes=(ShapeRange.parse("images:1x3x48x64"),))
    assert not any("WARNING" in note for note in build_engine(onnx_path, tmp_path / "f.engine", fits).sidecar.notes)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_initializers_listed_as_inputs_never_become_engine_inputs(tmp_path, precision):
    """R15 (build half): keep_initializers_as_inputs=True exports build in every precision with --batch."""
    import cv2
    import numpy as np

    onnx_path = initializers_as_inputs_model(tmp_path / "m.onnx")
    PreprocessSpec(model="m", height=16, width=16).save(preprocess_path_for(onnx_path))
    images = tmp_path / "calib"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(8):  # the calibration loader wants at least 8 images
        cv2.imwrite(str(images / f"{index}.png"), rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    config = BuildConfig(flavor="tensorrt_rtx", precision=precision, batch=BatchRange(1, 2, 4),
                         calib_images=str(images), calib_max_images=8, fidelity_target="none")  # too few to hold back
    result = build_engine(onnx_path, tmp_path / f"m_{precision}.engine", config)
    assert [t.name for t in result.sidecar.inputs] == ["x"]
    assert result.sidecar.profiles == ({"x": {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4, 3, 16, 16]}},)
    assert any("W1, W2; treated as constant weights" in note for note in result.sidecar.notes)


def test_weights_exported_as_inputs_build_with_a_warning_and_keep_their_shape(tmp_path):
    onnx_path = initializers_as_inputs_model(tmp_path / "m.onnx", without_weights=True)
    result = build_engine(onnx_path, tmp_path / "m.engine", BuildConfig(flavor="tensorrt_rtx", batch=BatchRange(1, 2, 4)))
    assert [t.name for t in result.sidecar.inputs] == ["x", "W1", "W2"]
    assert result.sidecar.profiles[0]["W1"] == {"min": [3, 3, 3, 3], "opt": [3, 3, 3, 3], "max": [3, 3, 3, 3]}
    assert any("W1 (Conv 'conv_a'), W2 (Conv 'conv_b') have no initializer" in note for note in result.sidecar.notes)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_a_spec_that_does_not_fit_the_image_input_is_refused_before_any_work(tiny_onnx, tmp_path, precision):
    """Issue 10 req 3 at build: the spec's layout and size are checked against the input, naming it, in every
    precision and before calibration (no calibration cache, no network ONNX, no engine is written)."""
    from trtpipe.errors import InputError

    onnx_path = tiny_onnx(name="m.onnx", input_shape=("N", 3, 32, 32))
    PreprocessSpec(model="m", height=32, width=32, layout="NHWC").save(preprocess_path_for(onnx_path))
    before = set(tmp_path.iterdir())
    config = BuildConfig(flavor="tensorrt_rtx", precision=precision, calib_images=str(tmp_path / "no-images"))
    with pytest.raises(InputError, match=r"m.onnx: input 'input' has shape .*3x32x32.*NHWC.*Hint: set \"layout\": \"NCHW\""):
        build_engine(onnx_path, tmp_path / "m.engine", config)
    assert set(tmp_path.iterdir()) == before


def test_a_bad_profile_is_refused_before_calibration(tiny_onnx, tmp_path):
    onnx_path = tiny_onnx(name="m.onnx", input_shape=("N", 3, 32, 32))
    PreprocessSpec(model="m", height=32, width=32).save(preprocess_path_for(onnx_path))
    before = set(tmp_path.iterdir())
    config = BuildConfig(flavor="tensorrt_rtx", precision="int8", calib_images=str(tmp_path / "no-images"),
                         shapes=(ShapeRange.parse("other:1x3x32x32"),))
    with pytest.raises(ConfigError, match=r"name \['other'\], but the network's inputs are \['input'\]"):
        build_engine(onnx_path, tmp_path / "m.engine", config)
    assert set(tmp_path.iterdir()) == before

"""PreprocessSpec, BuildConfig and EngineSidecar: validation and JSON round trips."""

import json

import pytest

from trtpipe.errors import ConfigError, InputError
from trtpipe.spec import (
    BatchRange,
    BuildConfig,
    EngineSidecar,
    PreprocessSpec,
    ShapeRange,
    TensorInfo,
    parse_frame_size,
    parse_fuse_preprocess,
    preprocess_path_for,
    sidecar_path_for,
)


def test_batch_range_parses_fixed_and_ranges():
    assert BatchRange.parse("8") == BatchRange(8, 8, 8)
    assert BatchRange.parse("1:8:32") == BatchRange(1, 8, 32)


@pytest.mark.parametrize("text", ["4:2:1", "0:1:2", "1:8", "a:b:c", "1:9:8", ""])
def test_batch_range_rejects_bad_ranges_with_a_hint(text):
    with pytest.raises(ConfigError, match="Hint: write --batch MIN:OPT:MAX"):
        BatchRange.parse(text)


def test_shape_range_parses_names_with_colons():
    shape = ShapeRange.parse("input:0:1x3x224x224:8x3x224x224:32x3x224x224")
    assert shape.name == "input:0"
    assert (shape.min, shape.opt, shape.max) == ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))
    assert str(shape) == "input:0:1x3x224x224:8x3x224x224:32x3x224x224"
    assert ShapeRange.parse("x:1x3x8x8").max == (1, 3, 8, 8)


@pytest.mark.parametrize("text", ["x:8x3:1x3:4x3", "x:1x3:1x3x3:1x3", "nothing", "x:1x3:a:b"])
def test_shape_range_rejects_unordered_or_malformed(text):
    with pytest.raises(ConfigError, match="Hint:"):
        ShapeRange.parse(text)


def test_build_config_rejects_invalid_combinations_when_built():
    with pytest.raises(ConfigError, match="precision"):
        BuildConfig(precision="int4")
    with pytest.raises(ConfigError, match="optimization level"):
        BuildConfig(optimization_level=7)
    with pytest.raises(ConfigError, match="calibration images"):
        BuildConfig(precision="int8", int8_mode="implicit")
    with pytest.raises(ConfigError, match="SM86"):
        BuildConfig(compute_capabilities=("86",))


def test_fingerprint_ignores_where_caches_live_but_not_what_changes_the_engine():
    base = BuildConfig(batch=BatchRange(1, 8, 32))
    assert base.fingerprint() == BuildConfig(batch=BatchRange(1, 8, 32), timing_cache="x.cache").fingerprint()
    assert base.fingerprint() != BuildConfig(batch=BatchRange(1, 4, 32)).fingerprint()
    assert base.fingerprint() != BuildConfig(batch=BatchRange(1, 8, 32), precision="fp16").fingerprint()


def test_preprocess_spec_round_trips_and_rejects_unknown_fields(tmp_path):
    spec = PreprocessSpec(model="m", height=224, width=224, labels="imagenet1k", weights="random")
    path = spec.save(tmp_path / "m.preprocess.json")
    assert PreprocessSpec.load(path) == spec
    data = spec.to_dict() | {"colour": "blue"}
    with pytest.raises(InputError, match="unknown PreprocessSpec fields \\['colour'\\]"):
        PreprocessSpec.from_dict(data)
    with pytest.raises(ConfigError, match="resize"):
        PreprocessSpec(model="m", height=224, width=224, resize="squash")


def test_preprocess_spec_head_defaults_to_the_task_head_and_old_json_loads(tmp_path):
    old = {"model": "detr", "height": 512, "width": 512, "task": "detection", "weights": "random"}  # before `head`
    path = tmp_path / "detr.preprocess.json"
    path.write_text(json.dumps(old))
    assert PreprocessSpec.load(path).head is None
    spec = PreprocessSpec(model="rt_detr", height=640, width=640, task="detection", head="detr_sigmoid")
    assert PreprocessSpec.load(spec.save(tmp_path / "rt_detr.preprocess.json")).head == "detr_sigmoid"


def test_paths_beside_the_model():
    assert preprocess_path_for("engines/mobilenetv2.onnx").name == "mobilenetv2.preprocess.json"
    assert preprocess_path_for("engines/m.int8.onnx").name == "m.preprocess.json"
    assert sidecar_path_for("engines/m_fp32.engine").name == "m_fp32.engine.json"


def _sidecar(**changes):
    fields = dict(
        engine_file="m.engine", engine_sha256="0" * 64, engine_bytes=10, onnx_path="m.onnx",
        onnx_sha256="1" * 64, precision="fp32", precision_realised="fp32",
        profiles=({"x": {"min": [1, 3], "opt": [1, 3], "max": [4, 3]}},),
        inputs=(TensorInfo("x", (-1, 3), "float32"),), outputs=(TensorInfo("y", (-1, 2), "float32"),),
        trt_flavor="tensorrt_rtx", trt_version="1.7.1.116", target={"kind": "aot", "compute_capabilities": []},
        build_config={"precision": "fp32"}, build_seconds=0.5, built_at="2026-11-22T00:00:00+00:00",
        trtpipe_version="0.1.0", weights="random",
    )
    return EngineSidecar(**(fields | changes))


def test_sidecar_round_trips_through_json(tmp_path):
    sidecar = _sidecar(notes=("a note",))
    path = sidecar.save(tmp_path / "m.engine.json")
    assert EngineSidecar.load(path) == sidecar


def test_sidecar_of_another_schema_or_corrupt_is_a_clear_error(tmp_path):
    path = tmp_path / "m.engine.json"
    path.write_text(json.dumps(_sidecar().to_dict() | {"schema_version": 99}))
    with pytest.raises(InputError, match="schema version 99, expected 1"):
        EngineSidecar.load(path)
    path.write_text('{"engine_file": ')
    with pytest.raises(InputError, match="not valid JSON"):
        EngineSidecar.load(path)


@pytest.mark.parametrize("text, height, width", [("0x0", 0, 0), ("1080x0", 1080, 0), ("-1x224", -1, 224), (" 0X5 ", 0, 5)])
def test_a_frame_size_below_one_pixel_says_so_not_that_it_is_malformed(text, height, width):
    message = (rf"^frame size '{text}' has height {height} and width {width}, expected both at least 1 pixel\. "
               r"Hint: give the frames' real size, height first, e.g\. 1080x1920, or 'dynamic'")
    for parse in (parse_frame_size, parse_fuse_preprocess):
        with pytest.raises(ConfigError, match=message):
            parse(text)
    with pytest.raises(ConfigError, match=message):
        BuildConfig(fuse_preprocess=text)
    assert parse_fuse_preprocess(" 1080X1920") == "1080x1920" and parse_frame_size("1x1") == (1, 1)


def test_a_legacy_shapes_profile_with_a_dynamic_marker_says_what_is_wrong():
    with pytest.raises(ConfigError, match=r"^input 'x': shapes -1x3:1x3:8x3 have a dimension of -1, expected every "
                                          r"dimension at least 1\. Hint: a profile gives concrete sizes"):
        ShapeRange.parse("x:-1x3:1x3:8x3")

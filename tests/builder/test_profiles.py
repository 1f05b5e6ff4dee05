"""Optimization profiles: trtexec's defaults for the batch axis, errors for everything guessed."""

import pytest

from trtpipe.builder.profiles import check_image_size, resolve_profile
from trtpipe.errors import ConfigError
from trtpipe.spec import BatchRange, BuildConfig, PreprocessSpec, ShapeRange, TensorInfo

DYNAMIC_BATCH = TensorInfo("input", (-1, 3, 224, 224), "float32")


def test_dynamic_batch_without_batch_gets_1_1_1_and_a_note():
    ranges, notes = resolve_profile((DYNAMIC_BATCH,), BuildConfig())
    assert (ranges[0].min, ranges[0].opt, ranges[0].max) == ((1, 3, 224, 224),) * 3
    assert "1:1:1 (as trtexec does)" in notes[0]


def test_batch_range_fills_the_batch_axis():
    ranges, notes = resolve_profile((DYNAMIC_BATCH,), BuildConfig(batch=BatchRange(1, 8, 32)))
    assert ranges[0].opt == (8, 3, 224, 224) and ranges[0].max == (32, 3, 224, 224)
    assert notes == []


def test_other_dynamic_dims_need_shapes():
    tensor = TensorInfo("images", (-1, 3, -1, -1), "float32")
    with pytest.raises(ConfigError, match="dynamic dimensions besides the batch.*Hint: give its range with real sizes in place of H/W, e.g. --minShapes images:1x"):
        resolve_profile((tensor,), BuildConfig())
    shapes = (ShapeRange.parse("images:1x3x320x320:2x3x640x640:4x3x640x640"),)
    ranges, _ = resolve_profile((tensor,), BuildConfig(shapes=shapes))
    assert ranges[0].max == (4, 3, 640, 640)


def test_shapes_must_name_real_inputs_and_respect_static_dims():
    with pytest.raises(ConfigError, match="inputs are \\['input'\\]"):
        resolve_profile((DYNAMIC_BATCH,), BuildConfig(shapes=(ShapeRange.parse("x:1x3x224x224"),)))
    with pytest.raises(ConfigError, match="axis 2 of input 'input', which is fixed at 224"):
        resolve_profile((DYNAMIC_BATCH,), BuildConfig(shapes=(ShapeRange.parse("input:1x3x256x256"),)))


def test_batch_range_on_a_fixed_batch_input_is_an_error():
    fixed = TensorInfo("input", (1, 3, 224, 224), "float32")
    assert resolve_profile((fixed,), BuildConfig())[0][0].max == (1, 3, 224, 224)
    with pytest.raises(ConfigError, match="fixed shape 1x3x224x224.*re-export"):
        resolve_profile((fixed,), BuildConfig(batch=BatchRange(1, 8, 32)))


DYNAMIC_HW = TensorInfo("images", (-1, 3, -1, -1), "float32")


def test_batch_fills_the_batch_axis_of_shapes_given_with_batch_1():
    """R4: --batch 1:8:32 --shapes images:1x3x32x32:1x3x48x64:1x3x96x128 on a [N,3,H,W] input."""
    config = BuildConfig(batch=BatchRange(1, 8, 32), shapes=(ShapeRange.parse("images:1x3x32x32:1x3x48x64:1x3x96x128"),))
    ranges, notes = resolve_profile((DYNAMIC_HW,), config)
    assert (ranges[0].min, ranges[0].opt, ranges[0].max) == ((1, 3, 32, 32), (8, 3, 48, 64), (32, 3, 96, 128))
    assert notes == []


def test_batch_and_shapes_that_disagree_on_the_batch_are_refused():
    config = BuildConfig(batch=BatchRange(1, 8, 32), shapes=(ShapeRange.parse("images:2x3x32x32:4x3x48x64:4x3x96x128"),))
    with pytest.raises(ConfigError, match=r"--batch 1:8:32 and --minShapes images:.* give input 'images' two batch ranges "
                                          r"\(1:8:32 and 2:4:4\).*Hint: give the batch once"):
        resolve_profile((DYNAMIC_HW,), config)
    same = BuildConfig(batch=BatchRange(2, 4, 4), shapes=(ShapeRange.parse("images:2x3x32x32:4x3x48x64:4x3x96x128"),))
    assert resolve_profile((DYNAMIC_HW,), same)[0][0].opt == (4, 3, 48, 64)


def test_batch_with_shapes_for_a_fixed_batch_input_is_refused():
    fixed_batch = TensorInfo("images", (1, 3, -1, -1), "float32")
    config = BuildConfig(batch=BatchRange(1, 8, 32), shapes=(ShapeRange.parse("images:1x3x32x32:1x3x48x64:1x3x96x128"),))
    with pytest.raises(ConfigError, match="--batch 1:8:32 asks for a batch range, but input 'images' has a fixed batch"):
        resolve_profile((fixed_batch,), config)


def test_batch_leaves_weight_like_inputs_at_their_fixed_shape():
    weight = TensorInfo("0.weight", (8, 3, 3, 3), "float32")
    ranges, _ = resolve_profile((DYNAMIC_BATCH, weight), BuildConfig(batch=BatchRange(1, 2, 4)),
                                weight_inputs=frozenset({"0.weight"}))
    assert ranges[0].max == (4, 3, 224, 224)
    assert (ranges[1].min, ranges[1].max) == ((8, 3, 3, 3), (8, 3, 3, 3))
    with pytest.raises(ConfigError, match="fixed shape 8x3x3x3"):  # not a weight: --batch cannot apply
        resolve_profile((DYNAMIC_BATCH, weight), BuildConfig(batch=BatchRange(1, 2, 4)))


def spec(height, width, layout="NCHW"):
    return PreprocessSpec(model="m", height=height, width=width, layout=layout)


def test_a_profile_that_excludes_the_spec_image_size_is_warned_about():
    shapes = (ShapeRange.parse("images:1x3x32x32:1x3x32x32:1x3x32x32"),)
    ranges, _ = resolve_profile((DYNAMIC_HW,), BuildConfig(shapes=shapes))
    warning = check_image_size(ranges, (DYNAMIC_HW,), spec(48, 64))
    assert "profile of input 'images' takes images of 32x32..32x32 (height x width)" in warning
    assert "preprocess spec (m) makes 48x64" in warning
    assert "--minShapes/--maxShapes for 'images' with 48x64 inside, e.g. --optShapes images:1x3x48x64" in warning and "--batch" not in warning
    wide = (ShapeRange.parse("images:1x3x32x32:1x3x48x64:1x3x96x128"),)
    assert check_image_size(resolve_profile((DYNAMIC_HW,), BuildConfig(shapes=wide))[0], (DYNAMIC_HW,), spec(48, 64)) is None
    assert check_image_size(ranges, (DYNAMIC_HW,), None) is None


def test_image_size_check_follows_the_layout_and_static_inputs():
    nhwc = TensorInfo("input", (-1, 224, 224, 3), "uint8")
    ranges, _ = resolve_profile((nhwc,), BuildConfig())
    assert check_image_size(ranges, (nhwc,), spec(224, 224, "NHWC")) is None
    warning = check_image_size(ranges, (nhwc,), spec(256, 256, "NHWC"))
    assert "224x224..224x224" in warning and "export the model at the spec's size" in warning


def test_a_fused_preprocessing_network_is_checked_against_its_frame_size():
    frames = TensorInfo("frames", (-1, 1080, 1920, 3), "uint8")
    ranges, _ = resolve_profile((frames,), BuildConfig())
    fused = spec(224, 224).replace(fused_preprocess="1080x1920")  # NCHW network input, NHWC frames in
    assert check_image_size(ranges, (frames,), fused) is None
    warning = check_image_size(ranges, (frames,), spec(224, 224).replace(fused_preprocess="720x1280"))
    assert "1080x1920..1080x1920" in warning and "takes 720x1280 frames" in warning
    dynamic = TensorInfo("frames", (-1, -1, -1, 3), "uint8")
    ranges, _ = resolve_profile((dynamic,), BuildConfig(shapes=(ShapeRange.parse("frames:1x64x64x3:1x480x640x3:1x1080x1920x3"),)))
    assert check_image_size(ranges, (dynamic,), spec(224, 224).replace(fused_preprocess="dynamic")) is None

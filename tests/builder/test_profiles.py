"""Optimization profiles: trtexec's defaults for the batch axis, errors for everything guessed."""

import pytest

from trtpipe.builder.profiles import resolve_profile
from trtpipe.errors import ConfigError
from trtpipe.spec import BatchRange, BuildConfig, ShapeRange, TensorInfo

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
    with pytest.raises(ConfigError, match="dynamic dimensions besides the batch.*Hint: give its range, e.g. --shapes images:"):
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

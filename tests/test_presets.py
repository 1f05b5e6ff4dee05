"""trtpipe.presets and trtpipe.onnx.facts: a spec from what the ONNX says, a preset and flags, lowest first."""

from __future__ import annotations

import pytest
from onnx import TensorProto

from tests.intake_models import channels_classifier
from trtpipe.errors import ConfigError, InputError
from trtpipe.onnx.facts import read_facts
from trtpipe.presets import PRESETS, SpecOverrides, assumed_line, resolve_spec
from trtpipe.spec import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec, preprocess_path_for


def test_every_preset_names_its_source_and_makes_a_valid_spec(tmp_path):
    model = channels_classifier(tmp_path / "m.onnx", 3, size=(32, 48))
    assert set(PRESETS) >= {"imagenet", "yolo", "paddle", "unit", "raw"}
    for name, preset in PRESETS.items():
        assert len(preset.source) > 20, name
        spec = resolve_spec(model, SpecOverrides(preset=name))
        assert (spec.height, spec.width, spec.channels) == (32, 48, 3)  # the input's fixed size wins over the preset's
        assert not any(line.startswith("normalisation") for line in spec.assumed), name


def test_a_grayscale_model_without_a_spec_gets_one_channel_and_says_what_it_assumed(tmp_path):
    model = channels_classifier(tmp_path / "gray.onnx", 1, size=(32, 32))
    spec = resolve_spec(model)
    assert (spec.channel_order, spec.channels, spec.height, spec.width, spec.layout) == ("GRAY", 1, 32, 32, "NCHW")
    # the imagenet preset's colour values averaged into one channel, as timm does for in_chans=1
    assert spec.mean == pytest.approx((sum(IMAGENET_MEAN) / 3,)) and spec.std == pytest.approx((sum(IMAGENET_STD) / 3,))
    assert [line.split(" ")[0] for line in spec.assumed] == ["normalisation", "task"]  # size and layout were facts
    assert "gray.onnx" in assumed_line(spec, model) and "--preset" in assumed_line(spec, model)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec  # the assumptions survive the spec file and the sidecar


def test_a_uint8_rgba_nhwc_input_takes_raw_pixels_whatever_the_preset(tmp_path):
    model = channels_classifier(tmp_path / "u8.onnx", 4, layout="NHWC", dtype=TensorProto.UINT8)
    for overrides in (SpecOverrides(), SpecOverrides(preset="imagenet")):
        spec = resolve_spec(model, overrides)
        assert (spec.channel_order, spec.layout, spec.pixel_scale) == ("RGBA", "NHWC", 1.0)
        assert spec.mean == (0.0,) * 4 and spec.std == (1.0,) * 4
        assert not any(line.startswith("normalisation") for line in spec.assumed)


def test_presets_adapt_their_colour_values_to_the_channel_count(tmp_path):
    paddle = SpecOverrides(preset="paddle")
    bgra = resolve_spec(channels_classifier(tmp_path / "c4.onnx", 4), paddle)
    assert bgra.channel_order == "BGRA"
    assert bgra.mean == pytest.approx((*IMAGENET_MEAN, 0.0)) and bgra.std == pytest.approx((*IMAGENET_STD, 1.0))
    # ImageNet's values are listed for R, G, B: an RGB order with a BGR preset's normalisation reorders them
    rgb = resolve_spec(channels_classifier(tmp_path / "c3.onnx", 3), SpecOverrides(preset="paddle", channel_order="RGB"))
    assert rgb.mean == pytest.approx(IMAGENET_MEAN[::-1])


def test_flags_win_over_presets_and_settle_assumptions(tmp_path):
    model = channels_classifier(tmp_path / "dyn.onnx", 3, size=(None, None))
    guessed = resolve_spec(model)
    assert (guessed.height, guessed.width) == (224, 224) and any(a.startswith("input size") for a in guessed.assumed)
    yolo = resolve_spec(model, SpecOverrides(preset="yolo"))
    assert (yolo.height, yolo.width, yolo.resize, yolo.pad_value, yolo.task) == (640, 640, "letterbox", 114, "detection")
    assert yolo.mean == (0.0,) * 3 and yolo.pixel_scale == pytest.approx(1 / 255)
    flagged = resolve_spec(model, SpecOverrides(preset="yolo", input_size="320x256", mean=(0.5,), std=(0.25,),
                                                channel_order="BGR", interpolation="area", task="classification"))
    assert (flagged.height, flagged.width, flagged.channel_order, flagged.interpolation) == (320, 256, "BGR", "area")
    assert flagged.mean == (0.5,) * 3 and flagged.std == (0.25,) * 3 and flagged.task == "classification"
    assert flagged.assumed == ()


def test_ultralytics_metadata_gives_size_names_and_task(tmp_path):
    names = "{0: 'person', 1: 'bicycle', 2: 'car'}"
    model = channels_classifier(tmp_path / "yolov8n.onnx", 3, size=(None, None), metadata={
        "author": "Ultralytics", "imgsz": "[480, 640]", "names": names, "task": "detect", "stride": "32"})
    facts = read_facts(model)
    assert (facts.family, facts.height, facts.width, facts.task) == ("yolo", 480, 640, "detection")
    spec = resolve_spec(model, facts=facts)
    assert (spec.height, spec.width, spec.resize, spec.task) == (480, 640, "letterbox", "detection")
    assert spec.labels == ("person", "bicycle", "car") and spec.assumed == ()


def test_paddleocr_character_lists_are_labels_with_ctc_blank_and_space(tmp_path):
    layout = channels_classifier(tmp_path / "layout.onnx", 3, classes=3, metadata={"character": "text\ntitle\nfigure"})
    assert read_facts(layout).labels == ("text", "title", "figure")
    recognizer = channels_classifier(tmp_path / "rec.onnx", 3, classes=5, metadata={"character": "a\nb\nc\n"})
    assert read_facts(recognizer).labels == ("blank", "a", "b", "c", " ")  # PaddleOCR's CTCLabelDecode


def test_a_spec_file_beside_the_model_is_the_base_and_a_preset_changes_only_its_habits(tmp_path):
    model = channels_classifier(tmp_path / "m.onnx", 3, size=(None, None))
    written = PreprocessSpec(model="m", height=96, width=128, labels="imagenet1k", weights="pretrained:x")
    written.save(preprocess_path_for(model))
    assert resolve_spec(model) == written
    unit = resolve_spec(model, SpecOverrides(preset="unit"))
    assert (unit.height, unit.width, unit.labels, unit.weights) == (96, 128, "imagenet1k", "pretrained:x")
    assert unit.mean == (0.0,) * 3 and unit.resize == "stretch"
    gray = resolve_spec(model, SpecOverrides(channel_order="GRAY"))  # the file's three values become one
    assert gray.channels == 1 and gray.mean == pytest.approx((sum(written.mean) / 3,))


def test_what_no_preset_can_describe_is_refused_with_the_flags_that_can(tmp_path):
    model = channels_classifier(tmp_path / "six.onnx", 6)
    with pytest.raises(ConfigError, match=r"six.onnx: input 'x' has 6 channels.*Hint: .*--channel-order .*RGBRGB"):
        resolve_spec(model)
    spec = resolve_spec(model, SpecOverrides(channel_order="RGBRGB"))
    assert spec.channels == 6 and spec.mean == pytest.approx(IMAGENET_MEAN * 2)
    with pytest.raises(ConfigError, match=r"preset 'yolov8' is unknown.*Hint: did you mean --preset yolo"):
        SpecOverrides(preset="yolov8")
    with pytest.raises(ConfigError, match=r"channel_order is 'RGBX'.*Hint: e.g. RGB, BGR, GRAY"):
        SpecOverrides(channel_order="RGBX")
    with pytest.raises(ConfigError, match=r"mean \[0.1, 0.2\] / std .* are not 3 values.*Hint: give one value per channel"):
        PreprocessSpec(model="m", height=8, width=8, mean=(0.1, 0.2))


def test_a_label_file_goes_into_the_spec_and_a_bundled_set_stays_a_name(tmp_path):
    model = channels_classifier(tmp_path / "m.onnx", 3)
    names = tmp_path / "classes.txt"
    names.write_text("# inspection classes\nok\nscratch\n")
    assert resolve_spec(model, SpecOverrides(labels=str(names))).labels == ("ok", "scratch")
    assert resolve_spec(model, SpecOverrides(labels="coco80")).labels == "coco80"
    with pytest.raises(InputError, match=r"neither a bundled set .* nor an existing file"):
        resolve_spec(model, SpecOverrides(labels=str(tmp_path / "missing.txt")))

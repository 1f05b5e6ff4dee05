"""`trtpipe spec` and the preprocessing flags as a new user runs them on an ONNX with no spec beside it."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.intake_models import channels_classifier
from trtpipe.cli.main import main
from trtpipe.spec import PreprocessSpec


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def photos(folder, count=12):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        cv2.imwrite(str(folder / f"{index:02d}.jpg"), cv2.GaussianBlur(rng.integers(0, 256, (40, 56, 3), np.uint8), (5, 5), 0))
    return folder


def test_spec_writes_beside_the_model_prints_it_and_never_replaces_one_unasked(tmp_path, capsys):
    model = channels_classifier(tmp_path / "m.onnx", 3, size=(None, None))
    code, out, _ = run_cli(capsys, "spec", model, "yolo", "--input-size", "320x320")
    written = PreprocessSpec.load(tmp_path / "m.preprocess.json")
    assert code == 0 and (written.height, written.resize, written.task) == (320, "letterbox", "detection")
    assert '"resize": "letterbox"' in out and "wrote" in out.splitlines()[-1]
    before = (tmp_path / "m.preprocess.json").read_bytes()
    code, _, err = run_cli(capsys, "spec", model, "--preset", "imagenet")
    assert code == 2 and "exists" in err and "Hint: pass --force" in err
    assert (tmp_path / "m.preprocess.json").read_bytes() == before
    code, _, _ = run_cli(capsys, "spec", model, "--preset", "imagenet", "--force")
    assert code == 0 and PreprocessSpec.load(tmp_path / "m.preprocess.json").resize == "resize_crop"


def test_spec_records_assumptions_and_refuses_a_spec_that_cannot_feed_the_model(tmp_path, capsys):
    model = channels_classifier(tmp_path / "gray.onnx", 1, size=(32, 32))
    code, out, _ = run_cli(capsys, "spec", model)
    assert code == 0 and "assumed normalisation" in out
    assert json.loads((tmp_path / "gray.preprocess.json").read_text())["assumed"][0].startswith("normalisation")
    code, _, err = run_cli(capsys, "spec", model, "--input-size", "64x64", "--force")
    assert code == 2 and "32x32" in err and "Hint:" in err
    assert PreprocessSpec.load(tmp_path / "gray.preprocess.json").height == 32  # the earlier spec is untouched


def test_a_one_channel_model_with_no_spec_builds_int8_and_runs(tmp_path, capsys, caplog):
    """Case R32: a grayscale model shipped without a spec; build --precision int8 and infer exit 0."""
    pytest.importorskip("tensorrt_rtx")
    model = channels_classifier(tmp_path / "gray.onnx", 1, size=(32, 32))
    images = photos(tmp_path / "calib", 12)
    code, out, err = run_cli(capsys, "build", model, "--precision", "int8", "--images", images,
                             "--fidelity-target", "none", "-o", tmp_path / "g.engine")
    assert code == 0 and (tmp_path / "g.engine").stat().st_size > 0, err
    warned = [r for r in caplog.records if "calibrating gray.onnx with an ASSUMED preprocessing" in r.getMessage()]
    assert len(warned) == 1 and "assumed normalisation" in err  # loudly, once; and the one-line note
    sidecar = json.loads((tmp_path / "g.engine.json").read_text())
    assert sidecar["preprocess"]["channel_order"] == "GRAY" and sidecar["preprocess"]["assumed"]
    assert any(note.startswith("preprocess spec ASSUMED") for note in sidecar["notes"])
    assert not (tmp_path / "gray.preprocess.json").exists()  # nothing written beside the user's model
    code, out, err = run_cli(capsys, "infer", model, next(images.iterdir()))
    assert code == 0 and "1 result, 0 errors" in out, err


def test_a_preset_says_the_normalisation_so_calibration_does_not_warn(tmp_path, capsys, caplog):
    model = channels_classifier(tmp_path / "c4.onnx", 4, layout="NHWC", size=(24, 24))
    images = photos(tmp_path / "calib", 12)
    code, out, err = run_cli(capsys, "calibrate", model, "--images", images, "--preset", "unit",
                             "--fidelity-target", "none")
    assert code == 0 and (tmp_path / "c4.int8.onnx").is_file(), err
    assert not any("ASSUMED" in r.getMessage() for r in caplog.records) and "assumed normalisation" not in err
    assert "assumed task classification" in err  # the unit preset has no task: that one is still a guess
    code, _, err = run_cli(capsys, "calibrate", model, "--images", images, "--mean", "0.1,0.2", "-o", tmp_path / "x.onnx")
    assert code == 2 and "are not 4 values" in err and "Hint:" in err and not (tmp_path / "x.onnx").exists()


def test_bench_pipeline_runs_an_rgba_model_with_a_preset(tmp_path, capsys):
    model = channels_classifier(tmp_path / "rgba.onnx", 4, layout="NHWC", size=(None, None))
    images = photos(tmp_path / "images", 4)
    code, out, err = run_cli(capsys, "bench", model, "--pipeline", "--images", images, "--batch", "2", "--preset", "yolo",
                             "--input-size", "32x32", "--task", "classification", "--json", tmp_path / "p.json")
    assert code == 0, err
    assert "assumed" not in err  # the preset and --input-size said it all (the layout and channels are facts)
    assert json.loads((tmp_path / "p.json").read_text())["images"] == 4


def test_an_fp32_build_needs_no_spec_even_where_none_can_be_derived(tmp_path, capsys):
    pytest.importorskip("tensorrt_rtx")
    model = channels_classifier(tmp_path / "six.onnx", 6, size=(16, 16))
    code, out, err = run_cli(capsys, "build", model, "-o", tmp_path / "six.engine")
    assert code == 0 and "no preprocess spec recorded" in err, err
    assert json.loads((tmp_path / "six.engine.json").read_text())["preprocess"] is None
    code, _, err = run_cli(capsys, "build", model, "--precision", "int8", "--images", tmp_path, "-o", tmp_path / "i.engine")
    assert code == 2 and "6 channels" in err and "Hint: give --channel-order" in err
    assert not (tmp_path / "i.engine").exists()

"""Fidelity as the task measures it: detections and masks against FP32's, where a raw-output cosine is blind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_images
from onnx import TensorProto, helper, numpy_helper

from trtpipe.pipeline.heads.detection import Detections
from trtpipe.quant.fidelity import format_table, measure_fidelity
from trtpipe.quant.prepare import Int8Options, prepare_int8
from trtpipe.quant.search import FidelityTargetError, meets, shortfall
from trtpipe.quant.task_fidelity import (
    MIN_REFERENCE_BOXES, detection_agreement, mask_agreement, per_output_figures,
)
from trtpipe.spec import FidelityTarget, resolve_fidelity_target

# --------------------------------------------------------------------------------------------
# Tiny models whose INT8 keeps the cosine at 1.0000 and moves what the task delivers
# --------------------------------------------------------------------------------------------


def _save(model, path, spec: dict):
    import onnx

    model = helper.make_model(model, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    path.with_name(path.stem + ".preprocess.json").write_text(
        json.dumps({"height": 32, "width": 32, "resize": "stretch", "weights": "pretrained:test", **spec})
    )
    return path


def _near_ties(source: str, output: str, gain: float) -> list:
    """``output = source + gain * mean over channels``: every channel moved by the same large amount, so INT8's
    activation step (its range grows with ``gain``) is coarse against the differences between channels."""
    return [
        helper.make_node("ReduceMean", [source], [f"{output}_mean"], name=f"{output}_mean", axes=[1], keepdims=1),
        helper.make_node("Mul", [f"{output}_mean", "gain"], [f"{output}_shift"], name=f"{output}_scale"),
        helper.make_node("Add", [source, f"{output}_shift"], [output], name=f"{output}_add"),
    ]


def tied_detector(path, gain: float = 30.0):
    """YOLOv8 layout (N, 4 + 2, 16): 16 fixed, non-overlapping 6x6 boxes (pixels) on a 4x4 grid; each box's class is
    whichever of the first two channels of the 8x8-pooled image is larger (a 1x1 Conv that also takes the
    ``_near_ties`` shift back out, so the logits are the channels themselves and the sigmoid scores 0.1..0.9).

    INT8's activation step on the shifted channels is ~(1 + gain) times the channels' own: boxes whose channels are
    close change class, while the raw output, dominated by box coordinates of 4..28, moves by ~1e-3: cosine 1.0000.
    FP16 keeps the classes (measured: F1 0.997 in FP16, 0.91 in INT8).
    """
    weight = np.full((2, 3, 1, 1), -gain / (3 * (1 + gain)), np.float32)
    weight[0, 0] += 1.0
    weight[1, 1] += 1.0
    grid = np.arange(4, 32, 8, dtype=np.float32)
    cy, cx = np.meshgrid(grid, grid, indexing="ij")
    boxes = np.stack([cx.ravel(), cy.ravel(), np.full(16, 6.0), np.full(16, 6.0)])[None].astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["images"], ["pooled"], name="cells", kernel_shape=[8, 8], strides=[8, 8]),
        *_near_ties("pooled", "near", gain),
        helper.make_node("Conv", ["near", "W"], ["logits"], name="classes"),
        helper.make_node("Reshape", ["logits", "flat"], ["flat_logits"], name="to_anchors"),
        helper.make_node("Sigmoid", ["flat_logits"], ["scores"], name="scores"),
        helper.make_node("Shape", ["images"], ["shape"], name="shape", end=1),
        helper.make_node("Concat", ["shape", "box_shape"], ["expand_to"], name="box_shape_n", axis=0),
        helper.make_node("Expand", ["boxes", "expand_to"], ["batch_boxes"], name="boxes"),
        helper.make_node("Concat", ["batch_boxes", "scores"], ["output0"], name="yolo_out", axis=1),
    ]
    inits = [
        numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.array(gain, np.float32), "gain"),
        numpy_helper.from_array(np.array([0, 2, 16], np.int64), "flat"), numpy_helper.from_array(boxes, "boxes"),
        numpy_helper.from_array(np.array([4, 16], np.int64), "box_shape"),
    ]
    graph = helper.make_graph(
        nodes, "tied_detector", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 6, 16])], inits,
    )
    return _save(graph, path, {"model": "tied_detector", "task": "detection"})


def tied_segmenter(path, gain: float = 10.0):
    """(N, 3, 32, 32) logits: a 1x1 identity Conv over ``_near_ties``-shifted pixels, so a pixel's class is its
    strongest channel and every logit carries a large common part: INT8 flips the pixels whose channels are close
    while the logits' cosine stays above 0.9999 (measured: mIoU 0.998 in FP16, 0.85 in INT8)."""
    weight = np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)
    nodes = [*_near_ties("images", "near", gain), helper.make_node("Conv", ["near", "W"], ["logits"], name="classes")]
    graph = helper.make_graph(
        nodes, "tied_segmenter", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.array(gain, np.float32), "gain")],
    )
    return _save(graph, path, {"model": "tied_segmenter", "task": "segmentation"})


@pytest.fixture
def folders(tmp_path):
    return write_images(tmp_path / "calib", 48, seed=1), write_images(tmp_path / "eval", 24, seed=2)


# --------------------------------------------------------------------------------------------
# The measures
# --------------------------------------------------------------------------------------------


def _detections(boxes, classes, scores=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.linspace(0.9, 0.5, len(boxes)).astype(np.float32) if scores is None else np.asarray(scores, np.float32)
    return Detections(boxes, scores, np.asarray(classes, np.int64), tuple(str(c) for c in classes))


def _grid_boxes(count: int) -> np.ndarray:
    return np.array([[20 * i, 0, 20 * i + 10, 10] for i in range(count)], np.float32)


def test_detections_match_fp32_at_iou_half_with_the_same_class():
    boxes = _grid_boxes(12)
    reference = _detections(boxes, [0] * 12)
    moved = boxes.copy()
    moved[0] += [6, 0, 6, 0]  # IoU 4/16 with its FP32 box: a miss and a false detection
    moved[1] += [2, 0, 2, 0]  # IoU 8/12: still a match
    classes = [0] * 12
    classes[2] = 1  # the right box with another class: a miss
    figures = detection_agreement([reference], [_detections(moved, classes)]).figures
    assert figures["detection_recall"] == pytest.approx(10 / 12)
    assert figures["detection_precision"] == pytest.approx(10 / 12)
    assert figures["detection_f1"] == pytest.approx(10 / 12)
    assert figures["detection_mean_iou"] == pytest.approx((9 + 8 / 12) / 10)
    assert 0 < figures["detection_map50"] < 1
    same = detection_agreement([reference], [reference]).figures
    assert same["detection_f1"] == same["detection_map50"] == same["detection_mean_iou"] == 1.0


def test_no_detections_at_all_score_zero_not_a_pass():
    reference = _detections(_grid_boxes(12), [0] * 12)
    figures = detection_agreement([reference], [_detections(np.zeros((0, 4)), [])]).figures
    assert figures["detection_f1"] == 0.0 and figures["detection_map50"] == 0.0
    assert figures["detection_mean_iou"] is None and figures["detected_boxes"] == 0


def test_a_detection_figure_on_too_few_fp32_boxes_is_not_measurable_and_never_passes():
    few = _detections(_grid_boxes(MIN_REFERENCE_BOXES - 1), [0] * (MIN_REFERENCE_BOXES - 1))
    result = detection_agreement([few], [few])
    assert result.figures.get("detection_f1") is None
    assert f"FP32 detected {MIN_REFERENCE_BOXES - 1} boxes" in result.note
    figures = {"cosine_mean": 1.0, **result.figures}
    assert meets(FidelityTarget(f1=0.95), figures) == (False, ("detection F1",))
    assert meets(FidelityTarget(cosine=0.999, top1_confident=0.99), figures) == (True, ("top-1 agreement on confident images",))


def test_mask_agreement_is_the_mean_iou_over_fp32_classes_and_names_the_rare_ones():
    reference = np.zeros((2, 16, 16), np.int64)
    reference[:, :, 8:] = 1
    reference[0, 0, 0] = 2  # one pixel of class 2: too few for an IoU
    masks = reference.copy()
    masks[:, :4, 8:] = 0  # a quarter of class 1 taken by class 0
    result = mask_agreement(reference, masks)
    iou_0 = (2 * 128 - 1) / (2 * 128 - 1 + 64)
    assert result.figures["mask_miou"] == pytest.approx((iou_0 + 192 / 256) / 2)
    assert result.figures["pixel_agreement"] == pytest.approx(1 - 64 / 512)
    assert "1 classes in fewer than 64 FP32 pixels" in result.note


def test_every_output_gets_cosine_max_and_relative_error():
    reference = {"boxes": np.full((2, 4), 100.0), "scores": np.array([[0.5, 0.0], [1.0, 0.0]])}
    output = {"boxes": np.full((2, 4), 101.0), "scores": np.array([[0.0, 0.5], [1.0, 0.0]])}
    rows = {row["name"]: row for row in per_output_figures(reference, output)}
    assert rows["boxes"]["cosine"] == pytest.approx(1.0) and rows["boxes"]["relative_error"] == pytest.approx(0.01)
    assert rows["scores"]["cosine"] == pytest.approx(0.5) and rows["scores"]["max_abs_error"] == 0.5


def test_the_search_drives_the_task_shortfall_beside_the_cosine():
    assert shortfall({"cosine_mean": 0.9999}) == pytest.approx(1e-4)
    assert shortfall({"cosine_mean": 0.9999, "detection_f1": 0.9}) == pytest.approx(0.1001)
    assert shortfall({"cosine_mean": 0.9999, "mask_miou": 0.8}) == pytest.approx(0.2001)


# --------------------------------------------------------------------------------------------
# The blind spot, with real INT8 in ONNX Runtime
# --------------------------------------------------------------------------------------------


def test_fidelity_catches_int8_detections_that_the_cosine_calls_perfect(tmp_path, folders):
    model = tied_detector(tmp_path / "tied_detector.onnx")
    calib, evaluation = folders
    results, _ = measure_fidelity(
        model, ["fp32", "int8"], evaluation, calib, tmp_path / "work", method="percentile", progress=False,
        fidelity_target="cosine=0.999",  # the old default: the INT8 row is what it let through
    )
    int8 = results[1]
    assert int8.cosine_mean >= 0.9999  # the raw output barely moved ...
    assert int8.reference_boxes == 24 * 16
    assert int8.detection_f1 < 0.95  # ... while many boxes changed class
    assert "detection" in format_table(results) and "F1" in format_table(results)


def test_fidelity_catches_int8_masks_that_the_cosine_calls_perfect(tmp_path, folders):
    model = tied_segmenter(tmp_path / "tied_segmenter.onnx")
    calib, evaluation = folders
    results, _ = measure_fidelity(
        model, ["fp32", "int8"], evaluation, calib, tmp_path / "work", method="percentile", progress=False,
        fidelity_target="cosine=0.999",
    )
    int8 = results[1]
    assert int8.cosine_mean >= 0.9999
    assert int8.mask_miou < 0.95 and int8.pixel_agreement < 0.95
    assert int8.reference_pixels == 24 * 32 * 32


def test_the_default_detection_target_keeps_the_layer_that_moves_detections(tmp_path, folders):
    model = tied_detector(tmp_path / "tied_detector.onnx")
    calib, _ = folders
    blind = prepare_int8(model, Int8Options(calib, fidelity_target="cosine=0.999"), None, tmp_path / "blind.int8.onnx")
    assert blind.fidelity["met"] and blind.fidelity["kept"] == []  # the cosine calls every-layer INT8 fine
    assert blind.fidelity["figures"]["detection_f1"] < 0.95  # the sidecar's figures say otherwise
    assert resolve_fidelity_target("auto", "detection").f1 is not None
    held = prepare_int8(model, Int8Options(calib), None, tmp_path / "held.int8.onnx")
    assert held.fidelity["met"] and held.fidelity["kept"] == ["classes"]
    assert held.fidelity["figures"]["detection_f1"] >= 0.95
    assert "detection F1" in held.summary


def test_a_detection_target_on_images_without_objects_refuses_instead_of_passing(tmp_path, folders):
    model = tied_detector(tmp_path / "tied_detector.onnx")
    spec_path = model.with_name("tied_detector.preprocess.json")
    spec = json.loads(spec_path.read_text())
    spec_path.write_text(json.dumps({**spec, "mean": [10, 10, 10]}))  # logits ~ -40: no score reaches 0.25
    calib, _ = folders
    with pytest.raises(FidelityTargetError, match="detection F1 not measurable .*FP32 detected 0 boxes") as error:
        prepare_int8(model, Int8Options(calib, fidelity_target="f1=0.95"), None, tmp_path / "m.int8.onnx")
    assert "Hint:" in str(error.value)
    assert not (tmp_path / "m.int8.onnx").exists()


# --------------------------------------------------------------------------------------------
# fidelity measures what a build ships
# --------------------------------------------------------------------------------------------


def test_fidelity_fp16_is_range_passed_and_int8_names_the_held_back_images(tmp_path, folders, capsys):
    from trtpipe.cli.main import main

    model = tied_segmenter(tmp_path / "tied_segmenter.onnx")
    calib, evaluation = folders
    code = main([
        "fidelity", str(model), "--images", str(evaluation), "--calib", str(calib), "--calib-method", "percentile",
        "--work-dir", str(tmp_path / "work"), "--json", str(tmp_path / "f.json"),
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "FP16 range check on" in out and "no images given" not in out
    assert "held back from calibration for the INT8 search's check (12 images)" in out
    rows = {row["precision"]: row for row in json.loads((tmp_path / "f.json").read_text())}
    held = rows["int8"]["held_back_files"]
    assert len(held) == 12 and all(str(calib) in name for name in held)
    assert rows["fp16"]["mask_miou"] is not None and rows["int8"]["outputs"][0]["name"] == "logits"


def test_a_detection_spec_whose_head_gives_no_boxes_is_not_measurable_rather_than_passing():
    from trtpipe.quant.task_fidelity import task_figures
    from trtpipe.spec import PreprocessSpec

    spec = PreprocessSpec(model="m", height=32, width=32, task="detection", head="classification")
    logits = {"logits": np.eye(12, 10, dtype=np.float32)}
    result = task_figures(spec, logits, logits)
    assert result.figures == {} and "the classification head decodes no boxes" in result.note
    assert meets(resolve_fidelity_target("auto", "detection"), {"cosine_mean": 1.0, **result.figures})[0] is False


def test_build_records_the_detection_figures_in_the_sidecar_and_its_closing_line(tmp_path, folders, capsys):
    pytest.importorskip("tensorrt_rtx")
    from trtpipe.cli.main import main

    model = tied_detector(tmp_path / "tied_detector.onnx")
    calib, _ = folders
    engine = tmp_path / "tied_int8.engine"
    assert main(["build", str(model), "--precision", "int8", "--images", str(calib), "-o", str(engine)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "target f1>=0.95 met" in last and "detection F1" in last
    fidelity = json.loads(engine.with_name(engine.name + ".json").read_text())["fidelity"]
    assert fidelity["figures"]["detection_f1"] >= 0.95 and fidelity["figures"]["reference_boxes"] == 12 * 16
    assert fidelity["steps"][0]["detection_f1"] < 0.95  # every layer INT8 missed it; the kept layer made it

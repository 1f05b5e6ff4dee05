"""Task heads: registry, YOLO/DETR detection decode with NMS and letterbox undone, segmentation masks."""

from __future__ import annotations

import numpy as np
import pytest

from trtpipe.errors import ConfigError
from trtpipe.pipeline.heads import create_head
from trtpipe.pipeline.preprocess import ResizeMeta

LETTERBOX = ResizeMeta(source_height=100, source_width=200, scale_x=0.32, scale_y=0.32, offset_x=0.0, offset_y=16.0)


def test_unknown_task_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'detection'"):
        create_head("detektion")


def test_yolov8_decode_nms_and_letterbox_undone():
    raw = np.zeros((1, 4 + 2, 3), np.float32)  # 3 anchors, 2 classes
    raw[0, :4, 0] = [32, 32, 20, 20]
    raw[0, :4, 1] = [33, 32, 20, 20]  # overlaps anchor 0, same class: suppressed
    raw[0, :4, 2] = [33, 32, 20, 20]  # same box, other class: kept
    raw[0, 4, :2] = [0.9, 0.8]
    raw[0, 5, 2] = 0.7
    (result,) = create_head("detection", labels=["cat", "dog"], layout="yolov8")({"out": raw}, [LETTERBOX], None)
    assert result.labels == ("cat", "dog") and len(result) == 2
    np.testing.assert_allclose(result.boxes[0], [(22 - 0) / 0.32, (22 - 16) / 0.32, 42 / 0.32, (42 - 16) / 0.32], rtol=1e-5)


def test_yolov5_and_detr_layouts():
    v5 = np.zeros((1, 2, 5 + 1), np.float32)
    v5[0, 0] = [32, 32, 10, 10, 0.9, 0.9]
    v5[0, 1] = [10, 10, 4, 4, 0.1, 0.9]  # objectness * class = 0.09: below threshold
    (r5,) = create_head("detection", layout="yolov5")({"out": v5}, [LETTERBOX], None)
    assert len(r5) == 1 and r5.scores[0] == pytest.approx(0.81)
    logits = np.array([[[5.0, 0.0, 0.0], [0.0, 0.0, 5.0]]], np.float32)  # query 1 is "no object"
    boxes = np.array([[[0.5, 0.5, 0.25, 0.25], [0.1, 0.1, 0.1, 0.1]]], np.float32)
    (rd,) = create_head("detection", input_size=(64, 64))({"pred_logits": logits, "pred_boxes": boxes}, [LETTERBOX], None)
    assert len(rd) == 1 and rd.class_ids[0] == 0
    np.testing.assert_allclose(rd.boxes[0], [24 / 0.32, 8 / 0.32, 40 / 0.32, 24 / 0.32], rtol=1e-5)


def test_segmentation_mask_maps_back_to_source_and_overlays():
    logits = np.zeros((1, 3, 16, 16), np.float32)
    logits[0, 2, 8:, :] = 1.0  # lower half of the network input is class 2
    meta = ResizeMeta(source_height=32, source_width=32, scale_x=2.0, scale_y=2.0, offset_x=0.0, offset_y=0.0)
    (result,) = create_head("segmentation", input_size=(64, 64))({"out": logits}, [meta], None)
    assert result.mask.shape == (32, 32)
    assert (result.mask[:16] == 0).all() and (result.mask[16:] == 2).all()
    overlay = result.overlay(np.full((32, 32, 3), 200, np.uint8))
    assert overlay.shape == (32, 32, 3) and not np.array_equal(overlay[0], overlay[-1])

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


def _set_prediction():
    """Two queries, two classes + DETR's "no object": query 0 says class 1, query 1 says "no object"."""
    logits = np.array([[[0.0, 4.0, -2.0], [-4.0, -4.0, 3.0]]], np.float32)
    boxes = np.array([[[0.5, 0.5, 0.25, 0.25], [0.25, 0.25, 0.5, 0.5]]], np.float32)
    return logits, boxes


def test_set_prediction_decode_is_shared_by_softmax_and_sigmoid_detr_heads():
    from trtpipe.pipeline.heads.detection import decode_set_prediction, sigmoid, softmax

    logits, boxes = _set_prediction()
    (decoded,) = decode_set_prediction(softmax(logits)[..., :-1], boxes, (64, 128), 0.0, 10)
    np.testing.assert_allclose(decoded[0][0], [48, 24, 80, 40])  # cx, cy, w, h in 0..1 -> xyxy input pixels
    meta = ResizeMeta(64, 128, 1.0, 1.0, 0.0, 0.0)
    for head, probs in (("detection", softmax(logits)[..., :-1]), ("detr_sigmoid", sigmoid(logits))):
        (result,) = create_head(head, input_size=(64, 128), score_threshold=0.0)({"logits": logits, "boxes": boxes}, [meta], None)
        (want,) = decode_set_prediction(probs, boxes, (64, 128), 0.0, 300)
        np.testing.assert_allclose(result.boxes, want[0], rtol=1e-6)
        np.testing.assert_allclose(result.scores, want[1], rtol=1e-6)
        assert result.class_ids.tolist() == want[2].tolist()


def test_sigmoid_detr_head_scores_every_class_independently():
    logits, boxes = _set_prediction()
    meta = ResizeMeta(64, 128, 1.0, 1.0, 0.0, 0.0)
    head = create_head("detr_sigmoid", input_size=(64, 128), score_threshold=0.5)
    (result,) = head({"logits": logits, "boxes": boxes}, [meta], None)
    # The last class is a real class here (softmax DETR would drop it as "no object"): query 1 keeps it.
    assert result.class_ids.tolist() == [1, 2]
    np.testing.assert_allclose(result.scores, 1 / (1 + np.exp(-np.array([4.0, 3.0]))), rtol=1e-6)
    (softmax_result,) = create_head("detection", input_size=(64, 128), score_threshold=0.5)(
        {"logits": logits, "boxes": boxes}, [meta], None
    )
    assert softmax_result.class_ids.tolist() == [1]


def test_unknown_head_variant_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'detr_sigmoid'"):
        create_head("detr_sigmoi")


def test_segmentation_summary_ranks_classes_by_area():
    mask = np.zeros((10, 10), np.uint16)
    mask[:, :6] = 2  # 60%
    mask[:3, 6:] = 1  # 12%; class 0 keeps the other 28%
    result = create_head("segmentation", labels=["background", "cat", "sofa"])({"out": mask[None].astype(np.int64)}, [
        ResizeMeta(source_height=10, source_width=10, scale_x=51.2, scale_y=51.2, offset_x=0.0, offset_y=0.0)], None)[0]
    assert [(c, n) for c, n, _ in result.class_areas()] == [(2, "sofa"), (0, "background"), (1, "cat")]
    assert result.summary(top=2) == "sofa 60.0%, background 28.0%, +1 more"
    assert [c["label"] for c in result.to_dict()["classes"]] == ["sofa", "background", "cat"]


def test_a_label_set_of_the_wrong_size_is_warned_about_once(caplog):
    import logging

    logits = np.zeros((1, 4 + 3, 5), np.float32)  # YOLOv8 layout, 3 classes
    head = create_head("detection", labels=["a", "b"], layout="yolov8")
    with caplog.at_level(logging.WARNING, logger="trtpipe.pipeline"):
        head({"out": logits}, [LETTERBOX], None)
        head({"out": logits}, [LETTERBOX], None)
    assert caplog.text.count("output has 3 classes but its label set has 2 names") == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="trtpipe.pipeline"):
        create_head("classification", labels=["x"] * 4)({"out": np.zeros((1, 5), np.float32)}, [LETTERBOX], None)
    assert "label set" not in caplog.text  # 5 outputs, 4 names: a background class 0 (TensorFlow-style)


def test_classification_ties_rank_the_lowest_class_first_for_every_k():
    """A random-weight model's scores can all tie: top-1 was class 984 while top-5 listed 988 first."""
    tied = np.zeros((2, 1000), np.float32)
    heads = {k: create_head("classification", topk=k) for k in (1, 2, 5, 1000)}
    results = {k: head({"logits": tied}, None, None) for k, head in heads.items()}
    assert [r.indices for r in results[1]] == [(0,), (0,)] and results[5][0].indices == (0, 1, 2, 3, 4)
    assert results[1000][1].indices == tuple(range(1000))
    logits = np.log(np.array([[1, 3, 3, 2, 3, 2, 1]], np.float32))  # ties inside the top k and across its cut
    ranked = [create_head("classification", topk=k)({"logits": logits}, None, None)[0].indices for k in range(1, 8)]
    assert ranked == [(1, 2, 4, 3, 5, 0, 6)[:k] for k in range(1, 8)]


def test_classes_are_ranked_by_the_logits_where_softmax_rounds_them_to_ties():
    """A random-weight MobileNetV2's logits span +-3e-9: all 1000 probabilities are 0.001 in float32."""
    logits = np.random.default_rng(0).uniform(-3e-9, 3e-9, (2, 1000)).astype(np.float32)
    (result, _) = create_head("classification", topk=5)({"logits": logits}, None, None)
    assert result.indices == tuple(np.argsort(-logits[0], kind="stable")[:5]) and result.top1 == logits[0].argmax()
    assert len(set(result.scores)) == 1  # the shown probabilities do tie


def test_top_classes_is_a_stable_ranking_of_every_row():
    from trtpipe.pipeline.heads.classification import top_classes

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, (64, 50)).astype(np.float32)  # many ties across the cut: each row sorted whole
    scores[32:] = rng.random((32, 50), dtype=np.float32)  # no ties: the top k picked out, then sorted
    scores[5, 3] = np.nan  # NaN ranks last
    for k in (1, 2, 5, 49, 50, 80):
        np.testing.assert_array_equal(top_classes(scores, k), np.argsort(-scores, axis=1, kind="stable")[:, :k])


def test_nms_suppresses_before_it_keeps_the_best_max_detections():
    """OpenCV's top_k cut the candidates before suppression: 300 boxes on one object hid 100 other objects."""
    from trtpipe.pipeline.heads.detection import nms_per_class

    one_object = np.tile(np.array([[10, 10, 50, 50]], np.float32), (300, 1)) + np.linspace(0, 2, 300, dtype=np.float32)[:, None]
    others = np.array([[100 + 60 * i, 10, 150 + 60 * i, 60] for i in range(100)], np.float32)
    boxes = np.concatenate([one_object, others])
    scores = np.concatenate([np.linspace(0.99, 0.9, 300), np.full(100, 0.5)]).astype(np.float32)  # others all tie
    class_ids = np.zeros(400, np.int64)
    kept = nms_per_class(boxes, scores, class_ids, 0.45, 1000)
    assert kept.tolist() == [0, *range(300, 400)]  # the best box of the object, then the others in index order
    for max_det in (1, 2, 50, 300):
        assert nms_per_class(boxes, scores, class_ids, 0.45, max_det).tolist() == kept[:max_det].tolist()

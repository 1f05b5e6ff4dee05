"""--fuse-postprocess: the head appended as ONNX gives what the host head gives (ONNX Runtime), and TensorRT-RTX builds it.

Each fixture network is an Identity from a raw-output input, so any raw outputs (overlapping boxes, ties, images with
no candidate and with more than max_det) go straight into both heads.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from trtpipe.errors import ConfigError, InputError
from trtpipe.onnx.fuse_postprocess import fuse_postprocess
from trtpipe.pipeline.heads import create_head
from trtpipe.pipeline.preprocess import ResizeMeta
from trtpipe.spec import FusedPostprocess, PreprocessSpec

META = ResizeMeta(480, 640, 0.5, 0.5, 0.0, 40.0)  # a 640x480 source letterboxed into 320x320


def identity_model(inputs: dict[str, tuple], opset: int = 17, softmax: bool = False) -> onnx.ModelProto:
    nodes, outputs, values = [], [], []
    for name, shape in inputs.items():
        values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        op = "Softmax" if softmax else "Identity"
        nodes.append(helper.make_node(op, [name], [f"{name}_out"], **({"axis": -1} if softmax else {})))
        outputs.append(helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, list(shape)))
    model = helper.make_model(helper.make_graph(nodes, "raw", values, outputs), opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def run(model: onnx.ModelProto, feeds: dict) -> dict:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def spec_for(task: str, head: str | None = None) -> PreprocessSpec:
    return PreprocessSpec(model="t", height=320, width=320, task=task, resize="letterbox", head=head)


def yolo_raw(rng, batch: int, classes: int, anchors: int, layout: str) -> np.ndarray:
    """Clustered boxes (many overlaps), scores with exact ties, image 1 with no candidate above 0.25."""
    centres = rng.uniform(40, 280, (batch, 6, 2))[:, rng.integers(0, 6, anchors)]  # (N, A, 2) around 6 objects
    cxcy = centres + rng.normal(0, 6, (batch, anchors, 2))
    wh = rng.uniform(20, 60, (batch, anchors, 2))
    scores = rng.choice([0.3, 0.5, 0.7, 0.9], (batch, anchors, classes)) * rng.uniform(0.2, 1.0, (batch, anchors, 1))
    scores = np.round(scores, 2)  # exact ties between anchors (and between classes of one anchor)
    scores[1] = rng.uniform(0.0, 0.2, (anchors, classes))  # nothing reaches the threshold
    if layout == "yolov8":
        return np.concatenate([cxcy, wh, scores], axis=2).transpose(0, 2, 1).astype(np.float32)
    objectness = np.round(rng.uniform(0.5, 1.0, (batch, anchors, 1)), 1)
    return np.concatenate([cxcy, wh, objectness, scores], axis=2).astype(np.float32)


def assert_same_detections(host, fused):
    assert len(host) == len(fused)
    for h, f in zip(host, fused):
        assert len(h) == len(f)
        np.testing.assert_array_equal(h.class_ids, f.class_ids)
        np.testing.assert_allclose(f.scores, h.scores, rtol=1e-6)
        np.testing.assert_allclose(f.boxes, h.boxes, rtol=1e-4, atol=1e-3)
        assert h.labels == f.labels


@pytest.mark.parametrize("nms", ["onnx", "loop"])
@pytest.mark.parametrize("layout", ["yolov8", "yolov5"])
@pytest.mark.parametrize(("anchors", "max_det"), [(96, 10), (96, 300), (8, 20)])
def test_yolo_fused_detections_equal_the_host_heads(layout, anchors, max_det, nms):
    rng = np.random.default_rng(anchors + max_det)
    classes = 3
    raw = yolo_raw(rng, 3, classes, anchors, layout)
    model = identity_model({"raw": raw.shape})
    fused = fuse_postprocess(model, spec_for("detection"), max_detections=max_det, nms=nms)
    assert fused.outputs == ("num_detections", "boxes", "scores", "classes")
    assert FusedPostprocess.parse(fused.spec.fused_postprocess) == FusedPostprocess(
        "detection", layout=layout, classes=classes, score_threshold=0.25, iou_threshold=0.45, max_detections=max_det,
        nms=nms)
    outputs = run(fused.model, {"raw": raw})
    assert outputs["boxes"].shape == (3, max_det, 4) and outputs["classes"].dtype == np.int32  # fixed, padded
    labels = ["a", "b", "c"]
    host = create_head("detection", labels=labels, max_detections=max_det)({"raw_out": raw}, [META] * 3, [None] * 3)
    got = create_head("fused_detection", labels=labels, fused=fused.spec.fused_postprocess)(outputs, [META] * 3, [None] * 3)
    assert_same_detections(host, got)
    assert len(got[1]) == 0 and outputs["num_detections"][1, 0] == 0  # the image with no candidate
    padded = outputs["num_detections"][0, 0]
    assert (outputs["scores"][0, padded:] == 0).all() and (outputs["classes"][0, padded:] == -1).all()
    if max_det == 10:
        assert [len(d) for d in host] == [10, 0, 10]  # more candidates than max_det survive NMS


@pytest.mark.parametrize("head", [None, "detr_sigmoid"])
def test_detr_fused_detections_equal_the_host_heads(head):
    rng = np.random.default_rng(3)
    queries, classes = 20, 4
    logits = rng.normal(0, 3, (2, queries, classes + (head is None))).astype(np.float32)
    logits[0, 5] = logits[0, 6]  # a tie between two queries
    boxes = rng.uniform(0.1, 0.9, (2, queries, 4)).astype(np.float32)
    model = identity_model({"logits": logits.shape, "pred_boxes": boxes.shape})
    fused = fuse_postprocess(model, spec_for("detection", head), max_detections=8, score_threshold=0.3)
    outputs = run(fused.model, {"logits": logits, "pred_boxes": boxes})
    host_head = create_head(head or "detection", max_detections=8, score_threshold=0.3, input_size=(320, 320))
    host = host_head({"logits_out": logits, "pred_boxes_out": boxes}, [META] * 2, [None] * 2)
    got = create_head("fused_detection", fused=fused.spec.fused_postprocess)(outputs, [META] * 2, [None] * 2)
    assert_same_detections(host, got)
    assert FusedPostprocess.parse(fused.spec.fused_postprocess).layout == ("detr_sigmoid" if head else "detr")


@pytest.mark.parametrize("softmax", [False, True])
def test_fused_topk_equals_the_host_classification_head(softmax):
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2, (4, 10)).astype(np.float32)
    logits[1, [2, 7, 9]] = 5.0  # a three-way tie at the top: lower class first
    model = identity_model({"logits": logits.shape}, softmax=softmax)
    fused = fuse_postprocess(model, spec_for("classification"), topk=4)
    assert fused.spec.head == "fused_classification"
    feeds = {"logits": logits}
    outputs = run(fused.model, feeds)
    raw = run(model, feeds)
    host = create_head("classification", topk=4)(raw, [META] * 4, [None] * 4)
    got = create_head("fused_classification", topk=4, fused=fused.spec.fused_postprocess)(outputs, [META] * 4, [None] * 4)
    assert [h.indices for h in host] == [g.indices for g in got]
    assert got[1].indices[:3] == (2, 7, 9)
    for h, g in zip(host, got):
        np.testing.assert_allclose(g.scores, h.scores, rtol=1e-5)


@pytest.mark.parametrize("classes", [5, 300])
def test_fused_argmax_mask_equals_the_host_segmentation_head(classes):
    rng = np.random.default_rng(classes)
    logits = rng.normal(0, 1, (2, classes, 12, 16)).astype(np.float32)
    model = identity_model({"logits": logits.shape})
    fused = fuse_postprocess(model, spec_for("segmentation"))
    outputs = run(fused.model, {"logits": logits})
    assert outputs["mask"].dtype == (np.uint8 if classes <= 256 else np.int32) and outputs["mask"].shape == (2, 12, 16)
    np.testing.assert_array_equal(outputs["mask"], logits.argmax(axis=1))
    host = create_head("segmentation", input_size=(320, 320))(run(model, {"logits": logits}), [META] * 2, [None] * 2)
    got = create_head(fused.spec.head or "segmentation", input_size=(320, 320))(outputs, [META] * 2, [None] * 2)
    for h, g in zip(host, got):
        np.testing.assert_array_equal(h.mask, g.mask)


def test_loop_nms_keeps_a_chain_exactly_as_greedy_nms_does():
    """a overlaps b, b overlaps c, a does not overlap c: greedy keeps a and c (b is gone before it could suppress c);
    suppressing with every higher box, kept or not (Fast NMS), would drop c."""
    boxes = np.array([[0, 0, 10, 10], [6, 0, 16, 10], [12, 0, 22, 10], [100, 100, 110, 110]] + [[200, 200, 210, 210]] * 4,
                     np.float32)
    cxcywh = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)
    scores = np.array([[0.9], [0.8], [0.7], [0.6]] + [[0.01]] * 4, np.float32)  # 8 anchors: the YOLOv8 layout
    raw = np.concatenate([cxcywh, scores], axis=1).T[None]  # (1, 5, 4): YOLOv8, one class
    fused = fuse_postprocess(identity_model({"raw": raw.shape}), spec_for("detection"), iou_threshold=0.2, nms="loop")
    outputs = run(fused.model, {"raw": raw})
    assert outputs["num_detections"][0, 0] == 3
    np.testing.assert_allclose(outputs["boxes"][0, :3], boxes[[0, 2, 3]])


def test_outputs_no_layout_matches_and_an_old_opset_are_refused_with_a_hint():
    with pytest.raises(InputError, match=r"detection outputs have shapes \['1x7'\].*Hint:"):
        fuse_postprocess(identity_model({"x": (1, 7)}), spec_for("detection"))
    with pytest.raises(ConfigError, match="opset 11.*Hint: export at opset 17"):
        fuse_postprocess(identity_model({"x": (1, 84, 100)}, opset=11), spec_for("detection"))
    fused = fuse_postprocess(identity_model({"x": (1, 10)}), spec_for("classification"))
    with pytest.raises(ConfigError, match="already ends in its post-processing"):
        fuse_postprocess(fused.model, fused.spec)


def test_a_network_whose_raw_outputs_have_the_fused_names_is_renamed_not_refused():
    """DETR exports name their raw output ``boxes``: it becomes ``boxes_raw`` inside, and the head's ``boxes`` goes out."""
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 3, (1, 10, 5)).astype(np.float32)
    boxes = rng.uniform(0.1, 0.9, (1, 10, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["l"], ["logits"]), helper.make_node("Identity", ["b"], ["boxes"])], "detr",
        [helper.make_tensor_value_info("l", TensorProto.FLOAT, [1, 10, 5]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 10, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10, 5]),
         helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 10, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    fused = fuse_postprocess(model, spec_for("detection"), score_threshold=0.0, max_detections=5)
    outputs = run(fused.model, {"l": logits, "b": boxes})
    host = create_head("detection", max_detections=5, score_threshold=0.0, input_size=(320, 320))(
        {"logits": logits, "boxes": boxes}, [META], [None])
    got = create_head("fused_detection", fused=fused.spec.fused_postprocess)(outputs, [META], [None])
    assert_same_detections(host, got)


def test_the_fused_text_round_trips_and_bad_text_is_refused():
    text = "detection:yolov8,classes=80,conf=0.25,iou=0.45,max_det=300"
    assert FusedPostprocess.parse(text).text() == text
    assert spec_for("detection").replace(fused_postprocess=text).fused_postprocess == text
    with pytest.raises(ConfigError, match="is not what trtpipe writes"):
        FusedPostprocess.parse("detection:yolov8,maxdet=3")


def test_fused_heads_build_with_tensorrt_rtx(tmp_path):
    pytest.importorskip("tensorrt_rtx")
    from trtpipe.builder.builder import build_engine
    from trtpipe.spec import BuildConfig

    rng = np.random.default_rng(0)
    cases = {
        "yolo": (identity_model({"raw": (2, 84, 2100)}), spec_for("detection")),
        "topk": (identity_model({"logits": (1, 1000)}), spec_for("classification")),
        "mask": (identity_model({"logits": (1, 19, 64, 64)}), spec_for("segmentation")),
    }
    del rng
    for name, (model, spec) in cases.items():
        fused = fuse_postprocess(model, spec, nms="loop")  # TensorRT-RTX has no NonMaxSuppression runner
        path = tmp_path / f"{name}.onnx"
        onnx.save(fused.model, str(path))
        result = build_engine(path, tmp_path / f"{name}.engine", config=BuildConfig(precision="fp32"))
        assert result.engine_path.stat().st_size > 0
        assert [o.name for o in result.sidecar.outputs] == list(fused.outputs)

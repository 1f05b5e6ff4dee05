"""Post-processing inside the network (``export``/``build --fuse-postprocess``): final boxes, masks or top-k out.

    fused = fuse_postprocess(onnx.load("yolov8n.onnx"), spec)   # decode + class-wise NMS + best max_det, padded
    fused.model   # outputs num_detections (N, 1) int32, boxes (N, D, 4) float32, scores (N, D), classes (N, D) int32
    fused.spec    # spec.fused_postprocess == "detection:yolov8,conf=0.25,iou=0.45,max_det=300", spec.head "fused_detection"

What is appended, in standard ONNX ops that TensorRT 10, 11 and TensorRT-RTX import (NonMaxSuppression becomes
TensorRT's INMSLayer; TopK, GatherElements, GatherND and ScatterND have layers of their own):

- **detection**, YOLOv8 ``(N, 4 + C, A)`` / YOLOv5 ``(N, A, 5 + C)`` (score = class x objectness): each anchor's
  best class and score (as the host head takes them), xyxy boxes in network-input pixels, class-wise
  NonMaxSuppression of each anchor under its best class only (the other classes' scores are set below any
  threshold), then the ``max_det`` best kept boxes by score (TopK; ties: the lower anchor first, as the host's stable
  sort) in fixed-size outputs: no output shape depends on the data. DETR ``logits (N, Q, C [+1])`` + ``boxes
  (N, Q, 4)``: softmax (dropping "no object") or sigmoid (``detr_sigmoid``), the threshold, the best ``max_det``.
  Padding rows have score 0, class -1 and a zero box; ``num_detections`` counts the real ones.
- **classification**: TopK(k) of the logits (ties: lower class first, as the host head) and their softmax scores
  (the network's own outputs when it already ends in Softmax).
- **segmentation**: ArgMax over the classes, as uint8 (int32 past 256 classes), at the network's output size; the
  host only maps the mask back through the letterbox/crop.

Scores are kept at ``>= conf``, as the host head keeps them (before NonMaxSuppression, whose own threshold keeps
scores strictly above it). Build tooling (imports onnx); the
deployment path only reads ``spec.fused_postprocess`` and the heads ``fused_detection``/``fused_classification``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtpipe.errors import ConfigError, InputError
from trtpipe.spec import FusedPostprocess, PreprocessSpec

SENTINEL = -3.0e38  # score of an anchor NMS did not keep: finite (TensorRT has no IsInf on every flavour), below any
VALID_ABOVE = -1.0e38  # real scores are above this; padding rows are below
NMS_KINDS = ("onnx", "loop")
FUSED_OUTPUT_NAMES = ("num_detections", "boxes", "scores", "classes", "indices", "mask")


@dataclass(frozen=True)
class FusedModel:
    """A network with its task head appended, and the spec that says so."""

    model: onnx.ModelProto
    spec: PreprocessSpec  # fused_postprocess set; head set to the fused head that reads its outputs
    outputs: tuple[str, ...]  # the new graph outputs, in order

    @property
    def note(self) -> str:
        return f"post-processing fused into the network ({self.spec.fused_postprocess}): outputs {', '.join(self.outputs)}"


def fuse_postprocess(
    model: onnx.ModelProto,
    spec: PreprocessSpec,
    *,
    topk: int = 5,
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 300,
    nms: str = "onnx",
) -> FusedModel:
    """Appends the task head of ``spec.task`` to ``model`` (a copy; ``model`` is not changed).

    Args:
        model: the network (FP32, FP16 or Q/DQ), with its outputs as the host head reads them.
        spec: its preprocess spec (task, head variant, input size).
        topk: classification: classes kept per image.
        score_threshold, iou_threshold, max_detections: detection: as the host head's (defaults 0.25, 0.45, 300).
        nms: YOLO detection: "onnx" (NonMaxSuppression, TensorRT 10/11's INMSLayer) or "loop" (greedy NMS as an
            ONNX Loop that picks the best remaining box and suppresses its class's overlaps, at most ``max_detections``
            times: TensorRT-RTX 1.7 has no NonMaxSuppression runner, as it has none for NonZero,
            NVIDIA/TensorRT-RTX#32). Both give the host head's boxes exactly. Defaults to "onnx".

    Returns:
        The fused model and spec. Output names: detection ``num_detections``, ``boxes``, ``scores``, ``classes``;
        classification ``scores``, ``indices``; segmentation ``mask``.

    Raises:
        ConfigError: already fused, or options out of range.
        InputError: outputs that no layout of the task matches (their shapes named).
    """
    if spec.fused_postprocess is not None:
        raise ConfigError(f"the network of {spec.model} already ends in its post-processing ({spec.fused_postprocess})",
                          "fuse the network ONNX it was made from, or use this one as it is")
    model = _copy(model)
    builder = _Graph(model)
    if spec.task == "classification":
        if topk < 1:
            raise ConfigError(f"--topk {topk}: expected at least 1", "keep at least one class, e.g. --topk 5")
        fused, outputs = _classification(builder, topk)
    elif spec.task == "segmentation":
        fused, outputs = _segmentation(builder)
    else:
        if max_detections < 1 or not 0.0 <= iou_threshold <= 1.0:
            raise ConfigError(f"max_det {max_detections} / iou {iou_threshold}: expected max_det >= 1 and 0 <= iou <= 1",
                              "e.g. --max-det 300 --iou 0.45")
        if nms not in NMS_KINDS:
            raise ConfigError(f"nms {nms!r}: expected one of {', '.join(NMS_KINDS)}", "use onnx (TensorRT 10/11) or loop")
        fused, outputs = _detection(builder, spec, score_threshold, iou_threshold, max_detections, nms)
    builder.finish(outputs)
    props = {p.key: p.value for p in model.metadata_props}
    helper.set_model_props(model, {**props, "trtpipe.fused_postprocess": fused.text()})
    head = {"classification": "fused_classification", "detection": "fused_detection"}.get(spec.task, spec.head)
    new_spec = spec.replace(fused_postprocess=fused.text(), head=head)
    return FusedModel(model, new_spec, tuple(name for name, *_ in outputs))


def write_fused_postprocess_onnx(source, spec: PreprocessSpec, destination, *, keep_spec=None, **options) -> FusedModel:
    """:func:`fuse_postprocess` of the ONNX file ``source``, saved (atomically) to ``destination`` with its spec beside
    it, unless that spec file is ``keep_spec`` (the user's own spec of the source model, which is never overwritten:
    the engine's sidecar carries the fused spec then)."""
    from pathlib import Path

    from trtpipe.io import atomic_write_bytes
    from trtpipe.spec import preprocess_path_for

    fused = fuse_postprocess(onnx.load(str(source)), spec, **options)
    destination = Path(destination)
    atomic_write_bytes(destination, fused.model.SerializeToString())
    spec_path = preprocess_path_for(destination)
    if keep_spec is None or spec_path.resolve() != Path(keep_spec).resolve():
        fused.spec.save(spec_path)
    return fused


# ---------------------------------------------------------------------------------------------
# The heads, as ONNX
# ---------------------------------------------------------------------------------------------


def _classification(g: "_Graph", topk: int):
    (logits_name, shape, _), = g.outputs[:1]
    classes = shape[-1] if shape and isinstance(shape[-1], int) else None
    logits = g.node("Flatten", [g.as_float(logits_name)], axis=1)
    is_probability = g.producer(logits_name) == "Softmax"  # the host head takes probabilities as they are
    k = min(topk, classes) if classes else topk
    _, indices = g.node("TopK", [logits, g.const(np.array([k], np.int64))], outputs=2, axis=-1, largest=1, sorted=1)
    probs = logits if is_probability else g.node("Softmax", [logits], axis=-1)
    scores = g.node("GatherElements", [probs, indices], axis=1)
    fused = FusedPostprocess("classification", topk=k, classes=classes)
    return fused, [(g.rename(scores, "scores"), ("N", k), TensorProto.FLOAT),
                   (g.rename(g.node("Cast", [indices], to=TensorProto.INT32), "indices"), ("N", k), TensorProto.INT32)]


def _segmentation(g: "_Graph"):
    (name, shape, _), = g.outputs[:1]
    if len(shape) != 4:
        raise InputError(f"segmentation output {name} has shape {_shape(shape)}; expected logits (N, C, h, w)",
                         "fuse post-processing into a network whose first output is per-class logits")
    classes = shape[1] if isinstance(shape[1], int) else None
    dtype = TensorProto.UINT8 if classes is not None and classes <= 256 else TensorProto.INT32
    ids = g.node("ArgMax", [name], axis=1, keepdims=0)
    mask = g.rename(g.node("Cast", [ids], to=dtype), "mask")
    fused = FusedPostprocess("segmentation", classes=classes, mask_dtype="uint8" if dtype == TensorProto.UINT8 else "int32")
    return fused, [(mask, ("N", shape[2], shape[3]), dtype)]


def _detection(g: "_Graph", spec: PreprocessSpec, conf: float, iou: float, max_det: int, nms: str):
    shapes = [shape for _, shape, _ in g.outputs]
    three_d = [(n, s) for n, s, _ in g.outputs if len(s) == 3]
    if len(g.outputs) >= 2 and any(len(s) == 3 and s[-1] == 4 for s in shapes):
        return _detr(g, spec, conf, max_det)
    if len(three_d) != 1 or not all(isinstance(d, int) for d in three_d[0][1][1:]):
        raise InputError(
            f"detection outputs have shapes {[_shape(s) for s in shapes]}; --fuse-postprocess takes YOLOv8 (N, 4+C, A), "
            "YOLOv5 (N, A, 5+C) with fixed anchors and classes, or DETR (logits + boxes)",
            "export at a fixed input size, or run the host head (leave --fuse-postprocess out)",
        )
    name, shape = three_d[0]
    layout = "yolov8" if shape[1] < shape[2] else "yolov5"  # as the host head tells them apart
    if (shape[1] if layout == "yolov8" else shape[2]) < (5 if layout == "yolov8" else 6):
        raise InputError(f"detection output {name} has shape {_shape(shape)}: read as {layout}, it has no class scores",
                         "fuse a YOLOv8 (N, 4+C, A) or YOLOv5 (N, A, 5+C) output with at least one class")
    raw = g.as_float(name)
    if layout == "yolov8":
        raw = g.node("Transpose", [raw], perm=[0, 2, 1])  # (N, A, 4 + C)
        anchors, classes = shape[2], shape[1] - 4
        class_scores = g.slice(raw, 4, classes + 4, axis=2)
    else:
        anchors, classes = shape[1], shape[2] - 5
        class_scores = g.node("Mul", [g.slice(raw, 5, classes + 5, axis=2), g.slice(raw, 4, 5, axis=2)])
    centre, size = g.slice(raw, 0, 2, axis=2), g.slice(raw, 2, 4, axis=2)
    half = g.node("Div", [size, g.const(np.array(2.0, np.float32))])  # w / 2, as the host's cxcywh_to_xyxy
    boxes = g.node("Concat", [g.node("Sub", [centre, half]), g.node("Add", [centre, half])], axis=2)  # (N, A, 4) xyxy
    best = g.reduce_max(class_scores, axis=2)  # (N, A)
    best_class = g.node("Cast", [g.node("ArgMax", [class_scores], axis=2, keepdims=0)], to=TensorProto.INT32)
    passed = g.node("GreaterOrEqual", [best, g.const(np.array(conf, np.float32))])  # (N, A): the host keeps >= conf
    fused = FusedPostprocess("detection", layout=layout, classes=classes, score_threshold=conf, iou_threshold=iou,
                             max_detections=max_det, nms=nms)
    if nms == "loop":
        dense = g.node("Where", [passed, best, g.const(np.array(SENTINEL, np.float32))])
        return _loop_nms(g, dense, boxes, best_class, anchors, iou, max_det, fused)
    # NMS sees each anchor under its best class only (the host head suppresses (box, best class) pairs), and only
    # anchors whose best score is >= conf (NonMaxSuppression's own threshold keeps > only, so it is given one that
    # passes every real score and stops the sentinel).
    per_class = g.node("Transpose", [class_scores], perm=[0, 2, 1])  # (N, C, A)
    is_best = g.node("Equal", [g.const(np.arange(classes, dtype=np.int32).reshape(1, classes, 1)),
                               g.node("Unsqueeze", [best_class, g.const(np.array([1], np.int64))])])
    candidate = g.node("And", [is_best, g.node("Unsqueeze", [passed, g.const(np.array([1], np.int64))])])
    nms_scores = g.node("Where", [candidate, per_class, g.const(np.array(SENTINEL, np.float32))])
    selected = g.node("NonMaxSuppression", [boxes, nms_scores, g.const(np.array([max_det], np.int64)),
                                            g.const(np.array([iou], np.float32)),
                                            g.const(np.array([VALID_ABOVE], np.float32))],
                      center_point_box=0)  # (K, 3): batch, class, anchor
    kept_scores = g.node("GatherND", [nms_scores, selected])  # (K,)
    batch_anchor = g.node("Gather", [selected, g.const(np.array([0, 2], np.int64))], axis=1)  # (K, 2)
    dense = g.node("ConstantOfShape", [g.node("Shape", [best])],
                   value=numpy_helper.from_array(np.array([SENTINEL], np.float32)))
    dense = g.node("ScatterND", [dense, batch_anchor, kept_scores])  # (N, A): kept anchors' scores, the rest SENTINEL
    return _select(g, dense, boxes, best_class, anchors, max_det, fused)


def _loop_nms(g: "_Graph", dense: str, boxes: str, best_class: str, anchors: int, iou: float, max_det: int, fused):
    """Greedy class-wise NMS without NonMaxSuppression (for TensorRT-RTX), exactly as the host head's.

    An ONNX Loop picks the best remaining candidate (TopK 1: ties go to the lower anchor, as the host's stable sort),
    then removes it and every remaining candidate of its class that overlaps it by IoU > ``iou``; it stops when
    nothing remains or after ``max_det`` picks. Each pick costs O(anchors) work and memory, whatever the number of
    candidates: there is no pre-NMS cut.
    """
    x1, y1, x2, y2 = (g.node("Squeeze", [g.slice(boxes, i, i + 1, axis=2), g.const(np.array([2], np.int64))])
                      for i in range(4))  # (N, A) each
    area = g.node("Mul", [g.node("Sub", [x2, x1]), g.node("Sub", [y2, y1])])
    anchor_ids = g.const(np.arange(anchors, dtype=np.int64).reshape(1, anchors))
    b = _Body(g)
    remaining = "remaining_in"
    score, pick = b.node("TopK", [remaining, b.const(np.array([1], np.int64))], outputs=2, axis=1, largest=1, sorted=1)
    picked = {name: b.node("GatherElements", [tensor, pick], axis=1)
              for name, tensor in (("x1", x1), ("y1", y1), ("x2", x2), ("y2", y2), ("area", area), ("cls", best_class))}
    zero = b.const(np.array(0.0, np.float32))
    width = b.node("Max", [b.node("Sub", [b.node("Min", [picked["x2"], x2]), b.node("Max", [picked["x1"], x1])]), zero])
    height = b.node("Max", [b.node("Sub", [b.node("Min", [picked["y2"], y2]), b.node("Max", [picked["y1"], y1])]), zero])
    inter = b.node("Mul", [width, height])
    union = b.node("Sub", [b.node("Add", [picked["area"], area]), inter])
    # inter > iou * union is IoU > iou without dividing by a zero union (an empty box suppresses nothing but itself)
    overlaps = b.node("Greater", [inter, b.node("Mul", [union, b.const(np.array(iou, np.float32))])])
    suppressed = b.node("And", [overlaps, b.node("Equal", [picked["cls"], best_class])])
    removed = b.node("Or", [suppressed, b.node("Equal", [anchor_ids, pick])])
    left = b.node("Where", [removed, b.const(np.array(SENTINEL, np.float32)), remaining])
    more = b.node("Greater", [b.node("ReduceMax", [left], keepdims=0), b.const(np.array(VALID_ABOVE, np.float32))])
    squeeze = b.const(np.array([1], np.int64))
    body = b.graph("greedy_nms_pick", carried=[("remaining", left)], scanned=[
        ("score", b.node("Squeeze", [score, squeeze]), TensorProto.FLOAT),
        ("pick", b.node("Squeeze", [pick, squeeze]), TensorProto.INT64)], condition=more)
    trips = min(max_det, anchors)
    _, scores, index = g.node("Loop", [g.const(np.array(trips, np.int64)), g.const(np.array(True)), dense], outputs=3,
                              body=body)  # scan outputs (T, N), T <= trips
    scores = g.node("Transpose", [scores], perm=[1, 0])
    index = g.node("Transpose", [index], perm=[1, 0])
    return _finish(g, scores, index, boxes, best_class, max_det, fused)


def _detr(g: "_Graph", spec: PreprocessSpec, conf: float, max_det: int):
    arrays = [(n, s) for n, s, _ in g.outputs]
    boxes_name, boxes_shape = next((n, s) for n, s in arrays if len(s) == 3 and s[-1] == 4)
    logits_name, logits_shape = next((n, s) for n, s in arrays if n != boxes_name and len(s) == 3)
    queries = logits_shape[1]
    if not isinstance(queries, int):
        raise InputError(f"DETR logits {logits_name} have shape {_shape(logits_shape)}; expected a fixed query count",
                         "export with a fixed number of queries, or run the host head")
    logits = g.as_float(logits_name)
    sigmoid = spec.head == "detr_sigmoid"
    if sigmoid:
        probs = g.node("Sigmoid", [logits])
        classes = logits_shape[2]
    else:  # softmax over the classes and "no object" (the last), which is then dropped
        classes = logits_shape[2] - 1
        probs = g.slice(g.node("Softmax", [logits], axis=-1), 0, classes, axis=2)
    best = g.reduce_max(probs, axis=2)  # (N, Q)
    best_class = g.node("Cast", [g.node("ArgMax", [probs], axis=2, keepdims=0)], to=TensorProto.INT32)
    passed = g.node("GreaterOrEqual", [best, g.const(np.array(conf, np.float32))])  # the host keeps >= conf
    dense = g.node("Where", [passed, best, g.const(np.array(SENTINEL, np.float32))])
    raw_boxes = g.as_float(boxes_name)
    centre, size = g.slice(raw_boxes, 0, 2, axis=2), g.slice(raw_boxes, 2, 4, axis=2)
    half = g.node("Div", [size, g.const(np.array(2.0, np.float32))])
    xyxy = g.node("Concat", [g.node("Sub", [centre, half]), g.node("Add", [centre, half])], axis=2)
    scale = np.array([spec.width, spec.height, spec.width, spec.height], np.float32)
    boxes = g.node("Mul", [xyxy, g.const(scale)])  # normalised -> network-input pixels, after xyxy as the host
    return _select(g, dense, boxes, best_class, queries, max_det,
                   FusedPostprocess("detection", layout="detr_sigmoid" if sigmoid else "detr", classes=classes,
                                    score_threshold=conf, max_detections=max_det))


def _select(g: "_Graph", dense: str, boxes: str, best_class: str, candidates: int, max_det: int, fused):
    """The ``max_det`` best of ``dense`` (N, A) scores (SENTINEL: not kept) with their boxes and classes, padded."""
    k = min(max_det, candidates)
    top_scores, top_index = g.node("TopK", [dense, g.const(np.array([k], np.int64))], outputs=2, axis=1, largest=1,
                                   sorted=1)
    return _finish(g, top_scores, top_index, boxes, best_class, max_det, fused)


def _finish(g: "_Graph", top_scores: str, top_index: str, boxes: str, best_class: str, max_det: int, fused):
    """(N, T) scores best first (SENTINEL: none) and their anchors -> the four fixed-size outputs, padded to max_det."""
    valid = g.node("Greater", [top_scores, g.const(np.array(VALID_ABOVE, np.float32))])  # (N, T)
    count = g.node("ReduceSum", [g.node("Cast", [valid], to=TensorProto.INT32), g.const(np.array([1], np.int64))],
                   keepdims=1)  # (N, 1)
    index4 = g.node("Expand", [g.node("Unsqueeze", [top_index, g.const(np.array([2], np.int64))]),
                               g.node("Concat", [g.node("Shape", [top_index]), g.const(np.array([4], np.int64))], axis=0)])
    top_boxes = g.node("GatherElements", [boxes, index4], axis=1)  # (N, T, 4)
    top_classes = g.node("GatherElements", [best_class, top_index], axis=1)
    valid4 = g.node("Unsqueeze", [valid, g.const(np.array([2], np.int64))])
    top_boxes = g.node("Where", [valid4, top_boxes, g.const(np.array(0.0, np.float32))])
    top_scores = g.node("Where", [valid, top_scores, g.const(np.array(0.0, np.float32))])
    top_classes = g.node("Where", [valid, top_classes, g.const(np.array(-1, np.int32))])
    # T may be below max_det (fewer candidates, or the NMS loop ran out): pad to the fixed size the outputs promise
    taken = g.node("Slice", [g.node("Shape", [top_index]), g.const(np.array([1], np.int64)),
                             g.const(np.array([2], np.int64))])
    short = g.node("Sub", [g.const(np.array([max_det], np.int64)), taken])
    pads2 = g.node("Concat", [g.const(np.zeros(3, np.int64)), short], axis=0)  # [0, 0, 0, short]: (N, T) -> (N, D)
    pads3 = g.node("Concat", [g.const(np.zeros(4, np.int64)), short, g.const(np.zeros(1, np.int64))], axis=0)
    top_boxes = g.node("Pad", [top_boxes, pads3])
    top_scores = g.node("Pad", [top_scores, pads2])
    top_classes = g.node("Pad", [top_classes, pads2, g.const(np.array(-1, np.int32))])
    outputs = [(g.rename(count, "num_detections"), ("N", 1), TensorProto.INT32),
               (g.rename(top_boxes, "boxes"), ("N", max_det, 4), TensorProto.FLOAT),
               (g.rename(top_scores, "scores"), ("N", max_det), TensorProto.FLOAT),
               (g.rename(top_classes, "classes"), ("N", max_det), TensorProto.INT32)]
    return fused, outputs


class _Body:
    """The body graph of an ONNX Loop: nodes whose inputs may be outer-scope tensors of the main graph."""

    def __init__(self, outer: "_Graph"):
        self.outer = outer
        self.nodes: list = []
        self.initializers: list = []

    def node(self, op: str, inputs, outputs: int = 1, **attributes):
        names = [self.outer._name(f"loop_{op.lower()}") for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), names, name=self.outer._name(f"loop_{op}"), **attributes))
        return names[0] if outputs == 1 else names

    def const(self, value: np.ndarray) -> str:
        name = self.outer._name("loop_const")
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def graph(self, name: str, carried, scanned, condition: str):
        """The body: inputs (iteration, condition, each carried ``<name>_in``), outputs (condition, carried, scanned)."""
        self.nodes.append(helper.make_node("Identity", [condition], ["cond_out"]))
        outputs = [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])]
        for carried_name, tensor in carried:
            self.nodes.append(helper.make_node("Identity", [tensor], [f"{carried_name}_out"]))
            outputs.append(helper.make_tensor_value_info(f"{carried_name}_out", TensorProto.FLOAT, None))
        for scanned_name, tensor, dtype in scanned:
            self.nodes.append(helper.make_node("Identity", [tensor], [f"{scanned_name}_out"]))
            outputs.append(helper.make_tensor_value_info(f"{scanned_name}_out", dtype, None))
        inputs = [helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
                  helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])]
        inputs += [helper.make_tensor_value_info(f"{n}_in", TensorProto.FLOAT, None) for n, _ in carried]
        return helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)


# ---------------------------------------------------------------------------------------------
# A small graph builder (onnx.helper underneath): the head is a few dozen nodes appended in order
# ---------------------------------------------------------------------------------------------


class _Graph:
    """Appends nodes to ``model``'s graph with unique names; ``finish`` makes the given tensors its outputs."""

    PREFIX = "trtpipe_post"

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.graph = model.graph
        self.count = 0
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
        if self.opset < 13:
            raise ConfigError(
                f"the network is at opset {self.opset}; the fused head needs opset 13 or later (Unsqueeze and ReduceSum "
                "with axes as inputs)", "export at opset 17 (trtpipe export --opset 17)",
            )
        self.outputs = [(o.name, _dims(o), o.type.tensor_type.elem_type) for o in self.graph.output]
        if any(not isinstance(d, int) for _, shape, _ in self.outputs for d in shape[1:]):
            self.outputs = _measured_outputs(model, self.outputs)
        if not self.outputs:
            raise InputError("the network has no outputs", "export the model again")
        taken = {o.name for o in self.graph.output} | {t for n in self.graph.node for t in n.output}
        self.taken = taken | {i.name for i in self.graph.input} | {i.name for i in self.graph.initializer}
        self._producers = {t: n.op_type for n in self.graph.node for t in n.output}
        # The head's outputs take these names; a network tensor that has one already (DETR's raw ``boxes`` output)
        # is renamed ``<name>_raw``: once the head is appended it is no graph output any more.
        for name in FUSED_OUTPUT_NAMES:
            if name in self.taken:
                self._rename_existing(name)

    def _rename_existing(self, name: str) -> None:
        new = f"{name}_raw"
        while new in self.taken:
            new += "_"
        for node in _all_nodes(self.graph):
            node.input[:] = [new if t == name else t for t in node.input]
            node.output[:] = [new if t == name else t for t in node.output]
        for value in (*self.graph.input, *self.graph.output, *self.graph.value_info):
            if value.name == name:
                value.name = new
        for tensor in self.graph.initializer:
            if tensor.name == name:
                tensor.name = new
        self.outputs = [(new if n == name else n, shape, dtype) for n, shape, dtype in self.outputs]
        self._producers = {(new if t == name else t): op for t, op in self._producers.items()}
        self.taken = (self.taken - {name}) | {new}

    def _name(self, hint: str) -> str:
        self.count += 1
        return f"{self.PREFIX}/{hint}_{self.count}"

    def producer(self, tensor: str) -> str | None:
        return self._producers.get(tensor)

    def node(self, op: str, inputs, outputs: int = 1, **attributes):
        names = [self._name(op.lower()) for _ in range(outputs)]
        self.graph.node.append(helper.make_node(op, list(inputs), names, name=self._name(op), **attributes))
        return names[0] if outputs == 1 else names

    def const(self, value: np.ndarray) -> str:
        name = self._name("const")
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def reduce_max(self, tensor: str, axis: int) -> str:
        """ReduceMax over one axis, dropped (its axes are an attribute before opset 18, an input from 18)."""
        if self.opset >= 18:
            return self.node("ReduceMax", [tensor, self.const(np.array([axis], np.int64))], keepdims=0)
        return self.node("ReduceMax", [tensor], axes=[axis], keepdims=0)

    def slice(self, tensor: str, start: int, end: int, axis: int) -> str:
        return self.node("Slice", [tensor, self.const(np.array([start], np.int64)), self.const(np.array([end], np.int64)),
                                   self.const(np.array([axis], np.int64))])

    def as_float(self, tensor: str) -> str:
        dtype = next((t for n, _, t in self.outputs if n == tensor), TensorProto.FLOAT)
        return tensor if dtype == TensorProto.FLOAT else self.node("Cast", [tensor], to=TensorProto.FLOAT)

    def rename(self, tensor: str, name: str) -> str:
        """Gives the node that makes ``tensor`` the output name ``name``."""
        for node in self.graph.node:
            for i, out in enumerate(node.output):
                if out == tensor:
                    node.output[i] = name
        for node in self.graph.node:
            for i, inp in enumerate(node.input):
                if inp == tensor:
                    node.input[i] = name
        return name

    def finish(self, outputs) -> None:
        del self.graph.output[:]
        for name, shape, dtype in outputs:
            self.graph.output.append(helper.make_tensor_value_info(name, dtype, list(shape)))
        # The head's constants that no node reads (the raw outputs' slices a layout does not use): dropped, as ONNX
        # Runtime would drop them with a warning.
        read = {name for node in _all_nodes(self.graph) for name in node.input}
        unused = [t for t in self.graph.initializer if t.name.startswith(self.PREFIX) and t.name not in read]
        for tensor in unused:
            self.graph.initializer.remove(tensor)
        onnx.checker.check_model(self.model)


def _measured_outputs(model: onnx.ModelProto, declared):
    """Output shapes with every axis but the batch made concrete by running the model once (batch 1) in ONNX Runtime.

    Exporters often leave output axes symbolic (``Concatoutput_dim_1``) that a fixed input size decides, and
    ONNX shape inference does not resolve them through Concat/Reshape chains; one run on zeros does. Inputs with
    symbolic axes other than the batch cannot be run: their outputs stay as declared.
    """
    import onnxruntime as ort

    feeds = {}
    for value in model.graph.input:
        if value.name in {i.name for i in model.graph.initializer}:
            continue
        dims = _dims(value)
        if any(not isinstance(d, int) for d in dims[1:]):
            return declared
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        feeds[value.name] = np.zeros((1, *dims[1:]), dtype)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    return [(name, (shape[0] if shape else "N", *values[name].shape[1:]) if name in values else shape, dtype)
            for name, shape, dtype in declared]


def _all_nodes(graph):
    """Every node of ``graph`` and of its subgraphs (a Loop's body reads outer-scope tensors too)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attribute.g)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _dims(value_info) -> tuple:
    shape = value_info.type.tensor_type.shape
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim)


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape) or "scalar"

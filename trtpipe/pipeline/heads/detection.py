"""Detection: YOLOv5/v8-style dense heads (decode + class-wise NMS) and DETR-style set predictions.

Two heads: ``detection`` (YOLO layouts, and DETR with softmax scores over classes + "no object") and
``detr_sigmoid`` (Conditional/DAB/Deformable DETR, RT-DETR, RF-DETR: an independent sigmoid per class,
no "no object" class). Both DETR paths share :func:`decode_set_prediction`; only the class scoring differs.

Boxes come back in source-image pixels: the letterbox (or crop/stretch) applied by preprocessing is
undone with each image's ResizeMeta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from trtpipe.errors import InputError
from trtpipe.pipeline.heads import RunInfo, check_label_count, register_head
from trtpipe.pipeline.heads.classification import softmax
from trtpipe.runtime.base import StageTimes


@dataclass(frozen=True)
class Detections(RunInfo):
    """Boxes of one image, best score first, in source-image pixels (x1, y1, x2, y2)."""

    boxes: np.ndarray  # (K, 4) float32
    scores: np.ndarray  # (K,) float32
    class_ids: np.ndarray  # (K,) int64
    labels: tuple[str, ...]
    backend: str = ""
    times: StageTimes | None = None
    precision: str = ""  # what the network computed in: fp32 | fp16 | int8
    fallback: str | None = None  # why ONNX Runtime ran instead of TensorRT; None: no fallback

    def __len__(self) -> int:
        return len(self.scores)

    def to_dict(self) -> dict:
        return {
            **self._run_dict(),
            "detections": [
                {"label": l, "class_id": int(c), "score": float(s), "box_xyxy": [round(float(v), 1) for v in b]}
                for b, s, c, l in zip(self.boxes, self.scores, self.class_ids, self.labels)
            ],
        }


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    cx, cy, w, h = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function, without overflow warnings for large negative logits."""
    return 0.5 * (np.tanh(0.5 * logits) + 1.0)


def split_set_prediction(outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, Q, C), boxes (N, Q, 4)) of a DETR-style model, told apart by the boxes' last axis of 4."""
    arrays = list(outputs.values())
    boxes = next((a for a in arrays if a.ndim == 3 and a.shape[-1] == 4), None)
    logits = next((a for a in arrays if a is not boxes and a.ndim == 3), None)
    if boxes is None or logits is None:
        raise InputError(
            f"DETR-style outputs have shapes {[a.shape for a in arrays]}; expected logits (N, Q, C) and boxes (N, Q, 4)",
            "check the spec's head: detr_sigmoid and DETR decoding need a set-prediction model",
        )
    return logits, boxes


def decode_set_prediction(
    probs: np.ndarray, boxes: np.ndarray, input_size: tuple[int, int], score_threshold: float, max_detections: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """DETR-style set prediction -> per image (xyxy boxes in input pixels, scores, class ids), best first.

    Args:
        probs: (N, Q, C) class probabilities of each query, however the model scores them.
        boxes: (N, Q, 4) cx, cy, w, h normalised to 0..1.
        input_size: (height, width) of the network input, which the normalised boxes are scaled to.
        score_threshold: minimum score of a query's best class.
        max_detections: queries kept per image.
    """
    class_ids = probs.argmax(axis=-1)
    scores = probs.max(axis=-1)
    height, width = input_size
    xyxy = cxcywh_to_xyxy(boxes.astype(np.float32)) * np.array([width, height, width, height], np.float32)
    per_image = []
    for b, s, c in zip(xyxy, scores, class_ids):
        order = np.argsort(-s, kind="stable")
        order = order[s[order] >= score_threshold][:max_detections]
        per_image.append((b[order], s[order], c[order]))
    return per_image


def nms_per_class(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Indices kept by class-wise NMS (OpenCV's batched NMS), best score first, at most ``max_det``.

    Equal scores keep the lower index first (OpenCV sorts stably), so the first j of ``max_det`` kept are the first j
    of any larger ``max_det``.
    """
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    # top_k=0: OpenCV's top_k cuts the candidates *before* suppression, so 300 overlapping boxes of one object would
    # leave one detection where suppression first keeps every separate object (then the cut below).
    keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), class_ids.tolist(), 0.0, iou, top_k=0)
    keep = np.asarray(keep, np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")][:max_det]


@register_head("detection")
class DetectionHead:
    """Raw detector outputs -> :class:`Detections` per image.

    Recognised output layouts:
      - YOLOv8: one output ``(N, 4 + C, A)``: cx, cy, w, h in input pixels, then class scores;
      - YOLOv5: one output ``(N, A, 5 + C)``: cx, cy, w, h, objectness, class scores;
      - DETR: two outputs, logits ``(N, Q, C + 1)`` (last = no object) and boxes ``(N, Q, 4)``
        (cx, cy, w, h normalised to 0..1).

    Args:
        labels: class names. Defaults to class indices.
        score_threshold: minimum score kept. Defaults to 0.25.
        iou_threshold: NMS IoU for boxes of one class. Defaults to 0.45.
        max_detections: per image. Defaults to 300.
        layout: "yolov8", "yolov5", "detr" or None to recognise it from the output shapes.
    """

    def __init__(
        self,
        labels: Sequence[str] | None = None,
        score_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 300,
        layout: str | None = None,
        input_size: tuple[int, int] = (640, 640),
        **_ignored,
    ):
        self.labels = list(labels) if labels else None
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.layout = layout
        self.input_size = input_size  # (height, width): DETR's normalised boxes are scaled by it

    task = "detection"
    auto = False  # the task's default head

    @classmethod
    def fits(cls, outputs, input_size: tuple[int, int]) -> bool:
        """One 3-D output (YOLOv5/v8), or DETR's logits and (N, Q, 4) boxes."""
        shapes = [tuple(o.shape) for o in outputs]
        three_d = [s for s in shapes if len(s) == 3]
        return len(three_d) == 1 or (len(three_d) == 2 and any(s[-1] == 4 for s in three_d))

    def __call__(self, outputs: dict[str, np.ndarray], metas, images) -> list[Detections]:
        layout = self.layout or self._recognise(outputs)
        if layout == "detr":
            per_image = self._decode_detr(outputs)
        else:
            (raw,) = (o for o in outputs.values() if o.ndim == 3)
            per_image = self._decode_yolo(raw.astype(np.float32, copy=False), layout)
        return self._results(per_image, metas)

    def _results(self, per_image, metas) -> list[Detections]:
        """(boxes xyxy in input pixels, scores, class ids) per image -> Detections in source-image pixels."""
        results = []
        for (boxes, scores, class_ids), meta in zip(per_image, metas):
            boxes = meta.boxes_to_source(boxes) if len(boxes) else boxes.reshape(0, 4)
            names = tuple(self._name(int(c)) for c in class_ids)
            results.append(Detections(boxes.astype(np.float32), scores.astype(np.float32), class_ids.astype(np.int64), names))
        return results

    @staticmethod
    def _recognise(outputs: dict[str, np.ndarray]) -> str:
        shapes = [o.shape for o in outputs.values()]
        if len(shapes) >= 2 and any(len(s) == 3 and s[-1] == 4 for s in shapes):
            return "detr"
        three_d = [s for s in shapes if len(s) == 3]
        if len(three_d) == 1:
            return "yolov8" if three_d[0][1] < three_d[0][2] else "yolov5"
        raise InputError(
            f"detection outputs have shapes {shapes}; expected YOLOv5/v8 (one 3-D output) or DETR (logits + boxes)",
            "pass layout='yolov8'|'yolov5'|'detr' to the head, or export the model with a standard head",
        )

    def _decode_yolo(self, raw: np.ndarray, layout: str):
        if layout == "yolov8":
            raw = raw.transpose(0, 2, 1)  # (N, A, 4 + C)
            class_scores = raw[..., 4:]
        else:
            class_scores = raw[..., 5:] * raw[..., 4:5]
        check_label_count(self.head_name, self.labels, class_scores.shape[-1])
        class_ids = class_scores.argmax(axis=-1)
        scores = np.take_along_axis(class_scores, class_ids[..., None], axis=-1)[..., 0]
        per_image = []
        for boxes, score, ids in zip(raw[..., :4], scores, class_ids):
            keep = score >= self.score_threshold
            xyxy, score, ids = cxcywh_to_xyxy(boxes[keep]), score[keep], ids[keep]
            kept = nms_per_class(xyxy, score, ids, self.iou_threshold, self.max_detections)
            per_image.append((xyxy[kept], score[kept], ids[kept]))
        return per_image

    def _decode_detr(self, outputs: dict[str, np.ndarray]):
        logits, boxes = split_set_prediction(outputs)
        probs = self._class_probabilities(logits.astype(np.float32))
        check_label_count(self.head_name, self.labels, probs.shape[-1])
        return decode_set_prediction(probs, boxes, self.input_size, self.score_threshold, self.max_detections)

    @staticmethod
    def _class_probabilities(logits: np.ndarray) -> np.ndarray:
        """DETR: softmax over the classes and "no object" (the last), which is then dropped."""
        return softmax(logits)[..., :-1]

    def _name(self, index: int) -> str:
        return self.labels[index] if self.labels and 0 <= index < len(self.labels) else str(index)


@register_head("detr_sigmoid")
class SigmoidDetrHead(DetectionHead):
    """DETR set prediction scored with independent sigmoids (Conditional/DAB/Deformable DETR, RT-DETR, RF-DETR).

    These models have no "no object" class: the softmax of plain DETR would both mis-score them and drop
    their last real class. Same outputs as DETR: logits ``(N, Q, C)`` and boxes ``(N, Q, 4)``. The
    arguments are DetectionHead's; the layout is always "detr".
    """

    def __init__(self, **options):
        options["layout"] = "detr"
        super().__init__(**options)

    @staticmethod
    def _class_probabilities(logits: np.ndarray) -> np.ndarray:
        return sigmoid(logits)

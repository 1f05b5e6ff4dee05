"""Fidelity as the task measures it: FP16/INT8 detections and masks against FP32's, taken as the ground truth.

A raw-output cosine does not measure what a detector or a segmenter delivers (measured: an INT8 YOLOv8n at cosine
0.9997 agreed with FP32's detections at F1 0.874, and ONNX Runtime's own INT8 of it at cosine 0.999 detected
nothing): a detector's output is dominated by box coordinates in pixels, and the class scores that decide what is
detected barely move it. So each task has its measure, registered by task name (:func:`register_measure`):

- **detection**: the spec's head (its decoding and its class-wise NMS, as the Pipeline runs it) decodes FP32's and
  the reduced precision's outputs; FP32's detections are the ground truth. A detection matches an unmatched FP32
  box of the same class at IoU >= :data:`MATCH_IOU`, best score first (the COCO/VOC rule). Figures: precision,
  recall, F1, mAP@0.5 (COCO's 101-point interpolation, over the classes FP32 detected) and the mean IoU of the
  matched boxes. With fewer than :data:`MIN_REFERENCE_BOXES` FP32 boxes the figures are absent and the note says so:
  a few boxes cannot show that detections hold.
- **segmentation**: argmax masks (the segmentation head's) of both; mIoU over the classes FP32 gives at least
  :data:`MIN_CLASS_PIXELS` pixels (rarer classes are named, not averaged: a dozen pixels swing an IoU from 0 to 1),
  and pixel agreement.
- **classification**: top-1/top-5 agreement, computed by ``fidelity.compare`` as before (nothing here).
- every model, every output: cosine, max absolute error and relative error (max |error| / max |FP32|) per output
  (:func:`per_output_figures`), as Polygraphy compares outputs.

Matching and AP are written here with numpy: onnx, ONNX Runtime, OpenCV and Polygraphy have none, pycocotools is not
a dependency (and wants COCO-format annotation files), and the libraries that have them (Ultralytics, supervision)
pull in torch, which the quantization path does not need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

MATCH_IOU = 0.5  # a detection matches an FP32 box at this IoU or more (mAP@0.5's threshold)
MIN_REFERENCE_BOXES = 10  # fewer FP32 boxes than this: detection figures are not measurable
MIN_CLASS_PIXELS = 64  # a class in fewer FP32 pixels than this is left out of the mIoU (and named)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's interpolation of the precision/recall curve


@dataclass(frozen=True)
class TaskFigures:
    """A task's figures of one precision against FP32 (a figure is None where it could not be measured)."""

    figures: Mapping[str, float | int | None] = field(default_factory=dict)  # FidelityResult field -> value
    note: str = ""  # why a figure is absent (too few boxes), what was left out


Measure = Callable[[object, Mapping[str, np.ndarray], Mapping[str, np.ndarray]], TaskFigures]
_MEASURES: dict[str, Measure] = {}


def register_measure(task: str) -> Callable[[Measure], Measure]:
    """Function decorator: ``measure(spec, reference_outputs, outputs) -> TaskFigures`` is task ``task``'s measure."""

    def decorate(function: Measure) -> Measure:
        _MEASURES[task] = function
        return function

    return decorate


def measure_for(task: str) -> Measure | None:
    """The registered measure of ``task`` (detection, segmentation), or None (classification: compare's own)."""
    return _MEASURES.get(task)


def task_figures(spec, reference: Mapping[str, np.ndarray], output: Mapping[str, np.ndarray]) -> TaskFigures:
    """The figures of ``spec.task``'s measure, or empty ones for a task without a measure of its own.

    Args:
        spec: the model's PreprocessSpec (task, head, input size).
        reference: FP32's outputs, {name: (images, ...)} in the model's output order.
        output: the reduced precision's outputs, the same names and shapes.
    """
    measure = measure_for(spec.task)
    return measure(spec, reference, output) if measure is not None else TaskFigures()


# ----------------------------------------------------------------------------------------------
# Detection
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _IdentityMeta:
    """Boxes stay in network-input pixels: IoU does not change under the per-axis scale and shift preprocessing did."""

    def boxes_to_source(self, boxes: np.ndarray) -> np.ndarray:
        return boxes


def decode_detections(spec, outputs: Mapping[str, np.ndarray]) -> list | None:
    """Every image's Detections from ``outputs`` ({name: (images, ...)}), decoded by the spec's head with its NMS;
    None when that head gives no boxes (a head that passes arrays through).

    Raises:
        InputError: the head cannot decode these outputs (it says which layout it expected).
    """
    from trtpipe.pipeline.heads import create_head, head_name, run_head

    head = create_head(head_name(spec), input_size=(spec.height, spec.width))
    count = len(next(iter(outputs.values())))
    results = run_head(head, dict(outputs), [_IdentityMeta()] * count, [None] * count)
    return results if all(hasattr(r, "boxes") and hasattr(r, "class_ids") for r in results) else None


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (M, 4) with every box of ``b`` (K, 4), xyxy: (M, K) float64."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_detections(reference, detections, iou: float = MATCH_IOU) -> tuple[np.ndarray, np.ndarray]:
    """Greedy COCO matching of one image: (IoU of each detection's match or 0.0, whether it matched), per detection.

    Detections are taken best score first; each takes the unmatched reference box of its class with the highest
    IoU, if that IoU is at least ``iou``.
    """
    count = len(detections.scores)
    matched, overlap = np.zeros(count, bool), np.zeros(count)
    if count == 0 or len(reference.scores) == 0:
        return overlap, matched
    ious = box_iou(detections.boxes, reference.boxes)
    ious[detections.class_ids[:, None] != reference.class_ids[None, :]] = 0.0
    taken = np.zeros(len(reference.scores), bool)
    for index in np.argsort(-detections.scores, kind="stable"):
        candidates = np.where(taken, -1.0, ious[index])
        best = int(candidates.argmax())
        if candidates[best] >= iou:
            taken[best], matched[index], overlap[index] = True, True, candidates[best]
    return overlap, matched


def average_precision(scores: np.ndarray, hits: np.ndarray, positives: int) -> float:
    """COCO's 101-point interpolated AP of detections (``scores``, ``hits``: matched or not) over ``positives`` boxes."""
    if len(scores) == 0:
        return 0.0  # the class was never detected
    order = np.argsort(-scores, kind="stable")
    true_positives = np.cumsum(hits[order])
    precision = true_positives / np.arange(1, len(order) + 1)
    recall = true_positives / positives
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at this recall or more
    at = np.searchsorted(recall, RECALL_POINTS, side="left")
    return float(np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)], 0.0).mean())


def detection_agreement(reference: Sequence, detections: Sequence) -> TaskFigures:
    """Precision, recall, F1, mAP@0.5 and mean matched IoU of ``detections`` against ``reference`` (FP32's), per image.

    Args:
        reference, detections: Detections (boxes xyxy, scores, class_ids) of the same images, in order.

    Returns:
        TaskFigures with detection_precision, detection_recall, detection_f1, detection_map50 and
        detection_mean_iou (None, with a note, when FP32 found fewer than MIN_REFERENCE_BOXES boxes),
        reference_boxes and detected_boxes (counts).
    """
    reference_boxes = int(sum(len(r.scores) for r in reference))
    detected_boxes = int(sum(len(d.scores) for d in detections))
    counts = {"reference_boxes": reference_boxes, "detected_boxes": detected_boxes}
    if reference_boxes < MIN_REFERENCE_BOXES:
        return TaskFigures(
            counts,
            f"detection figures not measurable: FP32 detected {reference_boxes} boxes on {len(reference)} images, "
            f"at least {MIN_REFERENCE_BOXES} are needed (images with the objects this model detects)",
        )
    overlaps, hits, scores, classes = [], [], [], []
    for ref, det in zip(reference, detections):
        overlap, matched = match_detections(ref, det)
        overlaps.append(overlap), hits.append(matched), scores.append(det.scores), classes.append(det.class_ids)
    overlap, hit = np.concatenate(overlaps), np.concatenate(hits)
    score, found_class = np.concatenate(scores).astype(np.float64), np.concatenate(classes)
    true_positives = int(hit.sum())
    precision = true_positives / detected_boxes if detected_boxes else 0.0
    recall = true_positives / reference_boxes
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    reference_classes = np.concatenate([r.class_ids for r in reference])
    per_class = [
        average_precision(score[found_class == c], hit[found_class == c], int((reference_classes == c).sum()))
        for c in np.unique(reference_classes)
    ]
    return TaskFigures({
        "detection_precision": precision, "detection_recall": recall, "detection_f1": f1,
        "detection_map50": float(np.mean(per_class)),
        "detection_mean_iou": float(overlap[hit].mean()) if true_positives else None, **counts,
    })


@register_measure("detection")
def _detection(spec, reference: Mapping[str, np.ndarray], output: Mapping[str, np.ndarray]) -> TaskFigures:
    from trtpipe.pipeline.heads import head_name

    reference_detections = decode_detections(spec, reference)
    if reference_detections is None:
        return TaskFigures({}, f"detection figures not measurable: the {head_name(spec)} head decodes no boxes")
    return detection_agreement(reference_detections, decode_detections(spec, output))


# ----------------------------------------------------------------------------------------------
# Segmentation
# ----------------------------------------------------------------------------------------------


def class_masks(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """(images, h, w) class ids from the first output: argmax over axis 1 of (N, C, h, w) logits, or (N, h, w) ids.

    The segmentation head's rule, at the output's own resolution (mapping both masks onto the source image by the
    same nearest-neighbour warp would only repeat pixels).
    """
    raw = np.asarray(next(iter(outputs.values())))
    return raw.argmax(axis=1) if raw.ndim == 4 else raw.astype(np.int64)


def mask_agreement(reference: np.ndarray, masks: np.ndarray) -> TaskFigures:
    """mIoU and pixel agreement of ``masks`` against ``reference`` (FP32's), both (images, h, w) class ids.

    The IoU of a class sums its pixels over all images (as semantic segmentation benchmarks do); classes with fewer
    than MIN_CLASS_PIXELS FP32 pixels are left out of the mean and counted in the note. A pixel with a NaN logit
    gets argmax's class like any other; ``compare`` counts the image as failed.

    Returns:
        TaskFigures with mask_miou (None when no class has enough pixels), pixel_agreement, reference_pixels.
    """
    reference, masks = np.asarray(reference).ravel(), np.asarray(masks).ravel()
    figures = {"pixel_agreement": float((reference == masks).mean()) if reference.size else None,
               "reference_pixels": int(reference.size)}
    classes, counts = np.unique(reference, return_counts=True)
    measured = classes[counts >= MIN_CLASS_PIXELS]
    rare = len(classes) - len(measured)
    note = f"{rare} classes in fewer than {MIN_CLASS_PIXELS} FP32 pixels left out of the mIoU" if rare else ""
    if not len(measured):
        return TaskFigures({**figures, "mask_miou": None},
                           f"mIoU not measurable: no class has {MIN_CLASS_PIXELS} FP32 pixels")
    ious = []
    for c in measured:
        ref, out = reference == c, masks == c
        ious.append((ref & out).sum() / (ref | out).sum())
    return TaskFigures({**figures, "mask_miou": float(np.mean(ious))}, note)


@register_measure("segmentation")
def _segmentation(spec, reference: Mapping[str, np.ndarray], output: Mapping[str, np.ndarray]) -> TaskFigures:
    return mask_agreement(class_masks(reference), class_masks(output))


# ----------------------------------------------------------------------------------------------
# Every output
# ----------------------------------------------------------------------------------------------


def per_output_figures(reference: Mapping[str, np.ndarray], output: Mapping[str, np.ndarray]) -> tuple[dict, ...]:
    """Per output: {name, cosine (mean per image), max_abs_error, relative_error (max |error| / max |FP32|)}.

    Figures over values finite on both sides; None where an output has none, or its FP32 is all zero (relative).
    """
    from trtpipe.quant.sensitivity import cosine_rows

    rows = []
    for name, ref in reference.items():
        out = output.get(name)
        if out is None or np.shape(out) != np.shape(ref) or len(ref) == 0:
            rows.append({"name": name, "cosine": None, "max_abs_error": None, "relative_error": None})
            continue
        ref64, out64 = np.asarray(ref, np.float64), np.asarray(out, np.float64)
        finite = np.isfinite(ref64) & np.isfinite(out64)
        error = float(np.abs(ref64 - out64)[finite].max()) if finite.any() else None
        scale = float(np.abs(ref64[finite]).max()) if finite.any() else 0.0
        rows.append({
            "name": name, "cosine": float(cosine_rows(ref64, out64).mean()), "max_abs_error": error,
            "relative_error": error / scale if error is not None and scale > 0 else None,
        })
    return tuple(rows)

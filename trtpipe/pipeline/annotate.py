"""Pictures of results: boxes and labels drawn on the image, a class's colour per pixel, the top class written.

    cv2.imwrite("out.jpg", annotate(image, detections))     # boxes with "label 0.87"
    cv2.imwrite("mask.png", annotate(image, segmentation))  # the colour mask, one colour per class
    cv2.imwrite("out.jpg", annotate(image, classification)) # the top-1 label and score in a band at the top

Colours come from ``heads.segmentation.palette`` so that a class has the same colour in boxes and masks.
"""

from __future__ import annotations

import cv2
import numpy as np

from trtpipe.pipeline.heads.segmentation import palette

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def annotate(image: np.ndarray, result) -> np.ndarray:
    """A new BGR uint8 picture of ``result`` for ``image`` (which is not modified).

    Detections: each box with its label and score. Segmentation: the colour mask (class 0 black), the size of
    ``image``. Classification: ``image`` with the top-1 label and score written at the top left.
    """
    if hasattr(result, "boxes"):
        return _draw_detections(image, result)
    if hasattr(result, "mask"):
        return palette(result.num_classes)[result.mask.clip(0, result.num_classes - 1)]
    if hasattr(result, "arrays"):
        return _draw_outputs(image, result)
    return _draw_classification(image, result)


def _scale(image: np.ndarray) -> tuple[float, int]:
    """Font scale and line thickness that read at this image size (about 2% of the shorter side per text line)."""
    short = min(image.shape[:2])
    return max(0.4, short / 900), max(1, round(short / 400))


def _label(canvas: np.ndarray, text: str, x: int, y: int, colour, font_scale: float, thickness: int) -> None:
    (w, h), baseline = cv2.getTextSize(text, _FONT, font_scale, thickness)
    y = max(y, h + baseline)
    cv2.rectangle(canvas, (x, y - h - baseline), (x + w, y), colour, cv2.FILLED)
    bright = sum(int(c) for c in colour) > 380
    cv2.putText(canvas, text, (x, y - baseline), _FONT, font_scale, (0, 0, 0) if bright else (255, 255, 255), thickness, cv2.LINE_AA)


def _draw_detections(image: np.ndarray, detections) -> np.ndarray:
    canvas = image.copy()
    font_scale, thickness = _scale(canvas)
    colours = palette(int(detections.class_ids.max()) + 2 if len(detections) else 1)
    for box, score, class_id, label in zip(detections.boxes, detections.scores, detections.class_ids, detections.labels):
        colour = tuple(int(c) for c in colours[int(class_id) + 1])  # + 1: palette's class 0 is black
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness + 1)
        _label(canvas, f"{label} {score:.2f}", x1, y1, colour, font_scale, thickness)
    return canvas


def _draw_outputs(image: np.ndarray, outputs) -> np.ndarray:
    """The generic head's result: nothing to draw on the image, so each output's shape and range, one per line."""
    canvas = image.copy()
    font_scale, thickness = _scale(canvas)
    line = cv2.getTextSize("Ag", _FONT, font_scale, thickness)[0][1] * 2
    for index, stats in enumerate(outputs.statistics):
        _label(canvas, stats.summary(), 0, (index + 1) * line, (32, 32, 32), font_scale, thickness)
    return canvas


def _draw_classification(image: np.ndarray, classification) -> np.ndarray:
    canvas = image.copy()
    font_scale, thickness = _scale(canvas)
    if classification.labels:
        _label(canvas, f"{classification.labels[0]} {classification.scores[0]:.2f}", 0, 0, (32, 32, 32), font_scale, thickness)
    return canvas

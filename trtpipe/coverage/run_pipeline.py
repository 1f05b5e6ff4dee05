"""Detection and segmentation models through ``Pipeline`` (preprocess -> ONNX Runtime -> task head) on real photos.

With random weights the boxes and masks mean nothing; what is checked is that the pipeline runs and its
results are well formed: boxes inside the image with finite scores in [0, 1], masks of the photo's size
with class ids below the class count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from trtpipe.errors import InputError


def run_on_photos(name: str, onnx_path: Path, photos: Sequence[str]) -> str:
    """Runs the photos through the model's Pipeline; returns a one-line summary, raises InputError if malformed."""
    import cv2
    from skimage import data

    from trtpipe.pipeline.pipeline import Pipeline

    images = [cv2.cvtColor(getattr(data, photo)(), cv2.COLOR_RGB2BGR) for photo in photos]
    # Random weights score every query alike; a zero threshold keeps boxes so that their form is checked.
    # The head is the one the spec names (detr_sigmoid for focal-loss DETRs), as for any user of Pipeline.
    with Pipeline.from_onnx(onnx_path, score_threshold=0.0, max_detections=100) as pipe:
        results = pipe(images)
    for image, result in zip(images, results):
        _check(name, image, result)
    if pipe.spec.task == "detection":
        return f"{pipe.head.head_name} head: {sum(len(r) for r in results)} boxes (top score {max(float(r.scores.max()) for r in results if len(r)):.2f}), well formed"
    classes = sorted({int(c) for r in results for c in np.unique(r.mask)})
    return f"masks {results[0].mask.shape[1]}x{results[0].mask.shape[0]}.. with {len(classes)} classes present, well formed"


def _check(name: str, image: np.ndarray, result) -> None:
    height, width = image.shape[:2]
    if hasattr(result, "boxes"):
        boxes, scores = result.boxes, result.scores
        ok = (boxes.shape == (len(scores), 4) and np.isfinite(boxes).all() and (boxes[:, 0::2] >= 0).all()
              and (boxes[:, 0::2] <= width).all() and (boxes[:, 1::2] <= height).all()
              and np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all() and len(scores) > 0)
    else:
        ok = result.mask.shape == (height, width) and int(result.mask.max()) < result.num_classes
    if not ok:
        raise InputError(f"{name}: malformed {type(result).__name__} on a {width}x{height} photo", "check the head")

"""DETR-style detectors scored with independent sigmoids (Conditional/DAB/Deformable DETR, RT-DETR, RF-DETR).

These models have no "no object" class: each query's class scores are ``sigmoid(logits)``, and the
softmax of the plain DETR decode would both mis-score them and drop their last real class. Same
outputs as DETR: logits ``(N, Q, C)`` and boxes ``(N, Q, 4)`` (cx, cy, w, h normalised to 0..1).
"""

from __future__ import annotations

import numpy as np

from trtpipe.pipeline.heads import register_head
from trtpipe.pipeline.heads.detection import DetectionHead, cxcywh_to_xyxy


@register_head("detection_sigmoid")
class SigmoidSetPredictionHead(DetectionHead):
    """DETR set prediction with sigmoid class scores; the arguments are DetectionHead's."""

    def __init__(self, **options):
        options["layout"] = "detr"
        super().__init__(**options)

    def _decode_detr(self, outputs: dict[str, np.ndarray]):
        arrays = list(outputs.values())
        boxes = next(a for a in arrays if a.ndim == 3 and a.shape[-1] == 4)
        logits = next(a for a in arrays if a is not boxes).astype(np.float32)
        probs = 1.0 / (1.0 + np.exp(-logits))
        class_ids = probs.argmax(axis=-1)
        scores = probs.max(axis=-1)
        height, width = self.input_size
        xyxy = cxcywh_to_xyxy(boxes.astype(np.float32)) * np.array([width, height, width, height], np.float32)
        per_image = []
        for b, s, c in zip(xyxy, scores, class_ids):
            order = np.argsort(-s, kind="stable")
            order = order[s[order] >= self.score_threshold][: self.max_detections]
            per_image.append((b[order], s[order], c[order]))
        return per_image

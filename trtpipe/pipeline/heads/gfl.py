"""PicoDet / NanoDet detectors: Generalized Focal Loss (GFL) outputs, decoded per stride, then class-wise NMS.

PaddleDetection exports PicoDet without its post-processing: for each stride s (8, 16, 32, 64, ...) one output of
class scores ``(N, A_s, C)`` (already through a sigmoid) and one of box distributions ``(N, A_s, 4 * (R + 1))``:
for each side (left, top, right, bottom) a softmax over R + 1 bins whose expectation is the distance from the
anchor centre in strides (GFL's "distribution focal loss" regression). The export lists every stride's scores
first, then every stride's distributions, as PaddleDetection's (and RapidLayout's) post-processing reads them.
Anchor centres are ``(i + 0.5) * s`` over a ``ceil(H / s) x ceil(W / s)`` grid, as there.
"""

from __future__ import annotations

import math

import numpy as np

from trtpipe.errors import InputError
from trtpipe.pipeline.heads import check_label_count, register_head
from trtpipe.pipeline.heads.classification import softmax
from trtpipe.pipeline.heads.detection import DetectionHead, nms_per_class

STRIDES = (8, 16, 32, 64, 128)  # the strides PicoDet/NanoDet exports use; each output's is told by its anchor count


@register_head("picodet")
class GflDetectionHead(DetectionHead):
    """PicoDet/NanoDet (GFL) outputs -> :class:`~trtpipe.pipeline.heads.detection.Detections` per image.

    Outputs, in the export's order: class scores ``(N, A_s, C)`` for every stride, then box distributions
    ``(N, A_s, 4 * (R + 1))`` for the same strides (float32; boxes in network-input pixels before the
    preprocessing is undone). Each anchor keeps its best class (as the YOLO layouts do), then class-wise NMS.
    The arguments are DetectionHead's (``score_threshold`` 0.25, ``iou_threshold`` 0.45, ``input_size``
    (height, width) from the spec); ``layout`` is ignored.

    Raises (when called):
        InputError: outputs that are not score/distribution pairs of the same anchor counts, or an anchor count
            that no stride of the input size gives.
    """

    def __call__(self, outputs: dict[str, np.ndarray], metas, images):
        return self._results(self._decode_gfl(list(outputs.values())), metas)

    def _decode_gfl(self, arrays: list[np.ndarray]):
        half = len(arrays) // 2
        scores, distributions = arrays[:half], arrays[half:]
        shapes = [list(a.shape) for a in arrays]
        if (
            not half or len(arrays) % 2 or any(a.ndim != 3 for a in arrays)
            or any(s.shape[1] != d.shape[1] or d.shape[2] % 4 for s, d in zip(scores, distributions))
        ):
            raise InputError(
                f"picodet head: outputs have shapes {shapes}; expected class scores (N, A, C) for each stride, then "
                "box distributions (N, A, 4 * (R + 1)) for the same strides",
                "set the spec's head to detection (YOLO/DETR layouts) if this is not a PicoDet/NanoDet export",
            )
        check_label_count(self.head_name, self.labels, scores[0].shape[-1])
        boxes, best, classes = [], [], []
        for score, distribution in zip(scores, distributions):
            centres, stride = self._centres(score.shape[1], shapes)
            bins = distribution.shape[2] // 4
            expected = (softmax(distribution.reshape(*distribution.shape[:2], 4, bins).astype(np.float32))
                        * np.arange(bins, dtype=np.float32)).sum(axis=-1) * stride  # (N, A, 4) distances in pixels
            boxes.append(np.concatenate([centres - expected[..., :2], centres + expected[..., 2:]], axis=-1))
            classes.append(score.argmax(axis=-1))
            best.append(np.take_along_axis(score, classes[-1][..., None], axis=-1)[..., 0])
        boxes, best, classes = (np.concatenate(parts, axis=1) for parts in (boxes, best, classes))
        per_image = []
        for image_boxes, image_scores, image_classes in zip(boxes, best, classes):
            keep = image_scores >= self.score_threshold
            xyxy, score, ids = image_boxes[keep], image_scores[keep], image_classes[keep]
            kept = nms_per_class(xyxy, score, ids, self.iou_threshold, self.max_detections)
            per_image.append((xyxy[kept], score[kept], ids[kept]))
        return per_image

    def _centres(self, anchors: int, shapes) -> tuple[np.ndarray, int]:
        """((A, 2) anchor centres x, y in input pixels, stride) of the stride whose grid has ``anchors`` cells."""
        height, width = self.input_size
        for stride in STRIDES:
            rows, cols = math.ceil(height / stride), math.ceil(width / stride)
            if rows * cols == anchors:
                y, x = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
                return np.stack([x.ravel(), y.ravel()], axis=1).astype(np.float32) * stride + 0.5 * stride, stride
        raise InputError(
            f"picodet head: an output has {anchors} anchors, which no stride of {STRIDES} gives for a "
            f"{height}x{width} input (outputs {shapes})",
            "check the preprocess spec's height and width: they must be the network input's",
        )

"""Heads for networks whose post-processing is fused in (``--fuse-postprocess``): they read final outputs.

The network already decoded, suppressed and kept the best ``max_det`` boxes (or the top-k classes): the host only
maps boxes back through the letterbox/crop and names the classes. Results are the same objects as the host heads'.
A stricter ``score_threshold`` than the one built in filters further; a looser one cannot bring back what the
engine dropped and is said once.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from trtpipe.errors import InputError
from trtpipe.pipeline.heads import check_label_count, register_head
from trtpipe.pipeline.heads.classification import Classification
from trtpipe.pipeline.heads.detection import Detections
from trtpipe.spec import FusedPostprocess

log = logging.getLogger("trtpipe.pipeline")


def _outputs(outputs: dict[str, np.ndarray], names: tuple[str, ...], head: str) -> list[np.ndarray]:
    missing = [name for name in names if name not in outputs]
    if missing:
        raise InputError(
            f"the {head} head reads outputs {', '.join(names)}; the network returned {', '.join(outputs)}",
            "the spec says post-processing is fused in (fused_postprocess): use the engine built with "
            "--fuse-postprocess, or remove fused_postprocess and head from the spec",
        )
    return [outputs[name] for name in names]


@register_head("fused_detection")
class FusedDetectionHead:
    """``num_detections`` (N, 1), ``boxes`` (N, D, 4) xyxy in network-input pixels, ``scores`` and ``classes`` (N, D)
    -> :class:`~trtpipe.pipeline.heads.detection.Detections` per image, in source-image pixels.

    Args:
        labels: class names. Defaults to class indices.
        score_threshold: keep scores >= this (only a stricter value than the engine's changes anything).
        max_detections: per image, at most the engine's.
        fused: the spec's ``fused_postprocess`` text (the thresholds built in).
    """

    task = "detection"
    auto = False  # chosen by the spec (fused_postprocess sets head), never from output shapes

    def __init__(self, labels: Sequence[str] | None = None, score_threshold: float | None = None,
                 max_detections: int | None = None, fused: str | None = None, **_ignored):
        self.labels = list(labels) if labels else None
        self.built = FusedPostprocess.parse(fused) if fused else None
        built_conf = self.built.score_threshold if self.built else None
        if score_threshold is not None and built_conf is not None and score_threshold < built_conf:
            log.warning("score_threshold %.3g is below the %.3g fused into the engine: boxes under %.3g were dropped "
                        "on the GPU; rebuild with --conf %.3g to see them", score_threshold, built_conf, built_conf,
                        score_threshold)
        self.score_threshold = score_threshold
        self.max_detections = max_detections

    def __call__(self, outputs: dict[str, np.ndarray], metas, images) -> list[Detections]:
        count, boxes, scores, classes = _outputs(outputs, ("num_detections", "boxes", "scores", "classes"), "fused_detection")
        if self.built and self.built.classes:
            check_label_count("fused_detection", self.labels, self.built.classes)
        results = []
        for n, b, s, c, meta in zip(count.reshape(len(count), -1)[:, 0], boxes, scores, classes, metas):
            n = int(n)
            b, s, c = b[:n].astype(np.float32), s[:n].astype(np.float32), c[:n].astype(np.int64)
            if self.score_threshold is not None:
                keep = s >= self.score_threshold
                b, s, c = b[keep], s[keep], c[keep]
            if self.max_detections is not None:
                b, s, c = b[: self.max_detections], s[: self.max_detections], c[: self.max_detections]
            b = meta.boxes_to_source(b) if len(b) else b.reshape(0, 4)
            names = tuple(self._name(int(i)) for i in c)
            results.append(Detections(b.astype(np.float32), s, c, names))
        return results

    def _name(self, index: int) -> str:
        return self.labels[index] if self.labels and 0 <= index < len(self.labels) else str(index)


@register_head("fused_classification")
class FusedClassificationHead:
    """``scores`` (N, k) probabilities and ``indices`` (N, k) -> :class:`Classification` per image.

    Args:
        labels: class names; a network with one class more than names has a TensorFlow-style background class 0.
        topk: classes kept, at most the engine's k.
        fused: the spec's ``fused_postprocess`` text (k and the class count built in).
    """

    task = "classification"
    auto = False  # chosen by the spec (fused_postprocess sets head), never from output shapes

    def __init__(self, labels: Sequence[str] | None = None, topk: int = 5, fused: str | None = None, **_ignored):
        self.labels = list(labels) if labels else None
        self.built = FusedPostprocess.parse(fused) if fused else None
        if self.built and self.built.topk and topk > self.built.topk:
            log.warning("topk %d is above the %d fused into the engine: %d classes per image; rebuild with --topk %d",
                        topk, self.built.topk, self.built.topk, topk)
        self.topk = topk

    def __call__(self, outputs: dict[str, np.ndarray], metas, images) -> list[Classification]:
        scores, indices = _outputs(outputs, ("scores", "indices"), "fused_classification")
        classes = self.built.classes if self.built else None
        if classes:
            check_label_count("fused_classification", self.labels, classes, background_offset_ok=True)
        offset = 1 if self.labels and classes == len(self.labels) + 1 else 0
        results = []
        for row_scores, row_indices in zip(scores[:, : self.topk], indices[:, : self.topk]):
            ids = tuple(int(i) for i in row_indices)
            names = tuple(self._name(i - offset) for i in ids)
            results.append(Classification(ids, names, tuple(float(s) for s in row_scores)))
        return results

    def _name(self, index: int) -> str:
        if self.labels and 0 <= index < len(self.labels):
            return self.labels[index]
        return "background" if index < 0 else str(index)

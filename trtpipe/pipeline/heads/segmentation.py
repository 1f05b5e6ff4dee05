"""Segmentation: per-pixel argmax mask mapped back onto the source image, and a colour overlay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from trtpipe.pipeline.heads import RunInfo, check_label_count, register_head
from trtpipe.runtime.base import StageTimes


def palette(classes: int, seed: int = 7) -> np.ndarray:
    """A fixed BGR colour per class (class 0, usually background, is black)."""
    colours = np.random.default_rng(seed).integers(40, 256, size=(max(classes, 1), 3), dtype=np.uint8)
    colours[0] = 0
    return colours


@dataclass(frozen=True)
class Segmentation(RunInfo):
    """Class index per source-image pixel."""

    mask: np.ndarray  # (H, W) uint16, source image size
    num_classes: int
    labels: tuple[str, ...] = ()
    backend: str = ""
    times: StageTimes | None = None
    precision: str = ""  # what the network computed in: fp32 | fp16 | int8
    fallback: str | None = None  # why ONNX Runtime ran instead of TensorRT; None: no fallback

    def overlay(self, image: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The BGR ``image`` with each class painted in its colour at opacity ``alpha``."""
        colours = palette(self.num_classes)[self.mask.clip(0, self.num_classes - 1)]
        return cv2.addWeighted(image, 1.0 - alpha, colours, alpha, 0.0)

    def class_areas(self) -> list[tuple[int, str, float]]:
        """(class id, name, fraction of the image's pixels) of every class present, largest area first."""
        present, counts = np.unique(self.mask, return_counts=True)
        order = np.argsort(-counts, kind="stable")  # ties: lower class id first
        return [(int(present[i]), self._name(int(present[i])), float(counts[i]) / self.mask.size) for i in order]

    def summary(self, top: int = 5) -> str:
        """The ``top`` largest classes with their share of the image: "wall 41.2%, floor 20.3%, ..."."""
        areas = self.class_areas()
        text = ", ".join(f"{name} {fraction:.1%}" for _, name, fraction in areas[:top])
        return text + (f", +{len(areas) - top} more" if len(areas) > top else "")

    def to_dict(self) -> dict:
        return {
            **self._run_dict(),
            "classes": [{"class_id": c, "label": n, "fraction": round(f, 4)} for c, n, f in self.class_areas()],
        }

    def _name(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else str(index)


@register_head("segmentation")
class SegmentationHead:
    """(N, C, h, w) logits (or (N, h, w) class ids) -> :class:`Segmentation` per image.

    Logits at a lower resolution than the input (SegFormer: 1/4) are argmaxed first, then the mask
    is scaled with nearest-neighbour and the preprocessing's crop/letterbox is undone.
    """

    task = "segmentation"
    auto = False  # the task's default head

    @classmethod
    def fits(cls, outputs, input_size: tuple[int, int]) -> bool:
        """The first output is (N, C, h, w) logits of two classes or more, or (N, h, w) class ids."""
        shape = tuple(outputs[0].shape) if outputs else ()
        return len(shape) == 3 or (len(shape) == 4 and shape[1] >= 2)

    def __init__(self, labels: Sequence[str] | None = None, input_size: tuple[int, int] = (512, 512), **_ignored):
        self.labels = tuple(labels) if labels else ()
        self.input_size = input_size  # (height, width) of the network input

    def __call__(self, outputs: dict[str, np.ndarray], metas, images) -> list[Segmentation]:
        raw = next(iter(outputs.values()))
        if raw.ndim == 4:
            classes = raw.shape[1]
            check_label_count("segmentation", self.labels, classes)
            masks = raw.argmax(axis=1).astype(np.uint16)
        else:
            masks = raw.astype(np.uint16)
            classes = int(masks.max()) + 1
        return [Segmentation(self._to_source(m, meta), max(classes, len(self.labels)), self.labels) for m, meta in zip(masks, metas)]

    def _to_source(self, mask: np.ndarray, meta) -> np.ndarray:
        height, width = self.input_size
        # Scale from mask to network-input pixels, then from network input to source pixels.
        fx, fy = width / mask.shape[1], height / mask.shape[0]
        sx, sy = meta.scale_x / fx, meta.scale_y / fy
        ox, oy = meta.offset_x / fx, meta.offset_y / fy
        # source pixel centre (x + 0.5) lies at mask coordinate (x + 0.5) * sx + ox; cv2 centres are at +0.5.
        matrix = np.array([[sx, 0, 0.5 * sx + ox - 0.5], [0, sy, 0.5 * sy + oy - 0.5]], np.float64)
        return cv2.warpAffine(
            mask, matrix, (meta.source_width, meta.source_height),
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
        )

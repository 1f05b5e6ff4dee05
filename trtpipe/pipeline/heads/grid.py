"""Anchor-free grid detectors: YOLOX and YOLOv6 outputs ``(N, A, 5 + C)``, one row per grid cell of every stride.

YOLOX's ONNX export (``tools/export_onnx.py``, ``decode_in_inference`` off by default) leaves boxes raw: per cell,
x/y offsets in cells and log width/height, with objectness and class scores already through a sigmoid. Decoding
is YOLOX's own ``demo_postprocess``: ``xy = (xy + grid) * stride``, ``wh = exp(wh) * stride``, cells ordered stride
by stride, row-major. YOLOv6 exports (and YOLOX with decoding on) write the decoded boxes in input pixels; then the
rows are YOLOv5's layout and :class:`~trtpipe.pipeline.heads.detection.DetectionHead` does the rest.

What tells a grid output from YOLOv5's: ``A`` equals the number of grid cells over the strides (8400 at 640x640
with strides 8, 16, 32), where YOLOv5 has three anchors per cell (25200).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from trtpipe.errors import InputError
from trtpipe.pipeline.heads import register_head
from trtpipe.pipeline.heads.detection import DetectionHead

DEFAULT_STRIDES = (8, 16, 32)  # YOLOX/YOLOv6 P3-P5; p6 models add 64 (strides=(8, 16, 32, 64))


def grid_cells(input_size: tuple[int, int], strides: Sequence[int]) -> int:
    """Rows of a grid output for a ``(height, width)`` input: ceil(h / s) * ceil(w / s) summed over the strides."""
    height, width = input_size
    return sum(-(-height // s) * -(-width // s) for s in strides)


def grid_and_strides(input_size: tuple[int, int], strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """((A, 2) cell x, y; (A, 1) stride of each row), in the order YOLOX's head concatenates them."""
    height, width = input_size
    cells, steps = [], []
    for stride in strides:
        ys, xs = np.meshgrid(np.arange(-(-height // stride)), np.arange(-(-width // stride)), indexing="ij")
        cells.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
        steps.append(np.full((cells[-1].shape[0], 1), stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(steps).astype(np.float32)


@register_head("yolox")
class GridDetectionHead(DetectionHead):
    """YOLOX / YOLOv6 grid outputs -> :class:`~trtpipe.pipeline.heads.detection.Detections` per image.

    Args:
        strides: the feature strides, in the order the rows come. Defaults to (8, 16, 32).
        decoded: True: boxes are already cx, cy, w, h in input pixels (YOLOv6, YOLOX with ``--decode_in_inference``);
            False: raw cell offsets and log sizes (YOLOX's default export). None: recognised per batch: raw
            outputs have negative widths or heights (log sizes below one stride), decoded ones never do.
        The other arguments are DetectionHead's (labels, score_threshold, iou_threshold, max_detections, input_size).
    """

    task = "detection"
    auto = True  # chosen for a detection spec whose output fits (see heads.choose_head)

    def __init__(self, strides: Sequence[int] = DEFAULT_STRIDES, decoded: bool | None = None, **options):
        options["layout"] = "yolov5"  # after decoding: cx, cy, w, h, objectness, class scores
        super().__init__(**options)
        self.strides = tuple(int(s) for s in strides)
        self.decoded = decoded
        self._grid = grid_and_strides(self.input_size, self.strides)

    @classmethod
    def fits(cls, outputs, input_size: tuple[int, int]) -> bool:
        """One 3-D output of ``grid_cells`` rows and at least 6 columns (box, objectness, one class)."""
        three_d = [o.shape for o in outputs if len(o.shape) == 3]
        return (
            len(outputs) == 1 and len(three_d) == 1 and three_d[0][-1] >= 6
            and three_d[0][1] == grid_cells(input_size, DEFAULT_STRIDES)
        )

    def __call__(self, outputs: dict[str, np.ndarray], metas, images):
        (raw,) = (o for o in outputs.values() if o.ndim == 3)
        raw = raw.astype(np.float32, copy=False)
        cells, steps = self._grid
        if raw.shape[1] != len(cells) or raw.shape[2] < 6:
            raise InputError(
                f"the grid output has shape {raw.shape}; with strides {self.strides} at {self.input_size[0]}x"
                f"{self.input_size[1]} it should be (N, {len(cells)}, 5 + classes)",
                "pass strides=(...) for this model (p6 models: 8, 16, 32, 64), or the spec's input size",
            )
        decoded = self.decoded if self.decoded is not None else bool((raw[..., 2:4] >= 0).all())
        if not decoded:
            raw = raw.copy()
            raw[..., 0:2] = (raw[..., 0:2] + cells) * steps
            raw[..., 2:4] = np.exp(raw[..., 2:4]) * steps
        return super().__call__({"output": raw}, metas, images)

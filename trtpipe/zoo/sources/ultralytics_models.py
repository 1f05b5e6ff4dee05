"""Ultralytics YOLO detectors (YOLOv8n, YOLOv5nu) built from their model yaml, with random weights.

Pretrained ``.pt`` files download from GitHub releases, which this machine cannot reach. In eval mode
the detection model returns ``(decoded, raw)``; the first, ``(N, 4 + 80, anchors)`` with cx, cy, w, h in
input pixels and sigmoid class scores, is the YOLOv8 layout trtpipe's detection head decodes (NMS
runs in the head). YOLOv5nu is Ultralytics' YOLOv5 backbone with the anchor-free v8 head, so it has
the same output layout.
"""

from __future__ import annotations

import os

from trtpipe.spec import PreprocessSpec
from trtpipe.zoo.sources.coverage_common import adapt_outputs, import_or_explain, register_config_model

YOLO_SIZE = 640
COCO_CLASSES = 80
MODELS = (
    ("yolov8n", "yolov8n.yaml", "YOLOv8n, anchor-free head, output (N, 84, 8400)"),
    ("yolov5nu", "yolov5nu.yaml", "YOLOv5nu (YOLOv5 backbone, anchor-free v8 head), output (N, 84, 8400)"),
)


def _decoded(model, images):
    return model(images)[0]


def _build(yaml: str):
    def build():
        # Ultralytics checks for updates and installs missing requirements on import unless offline.
        os.environ.setdefault("YOLO_OFFLINE", "1")
        tasks = import_or_explain("ultralytics.nn.tasks", "YOLO models", "ultralytics")
        model = tasks.DetectionModel(yaml, nc=COCO_CLASSES, verbose=False)
        return adapt_outputs(model, _decoded, ("output",))

    return build


for _name, _yaml, _description in MODELS:
    register_config_model(
        _name, source="ultralytics", task="detection", description=_description,
        preprocess=PreprocessSpec(model=_name, height=YOLO_SIZE, width=YOLO_SIZE, task="detection",
                                  resize="letterbox", interpolation="bilinear", antialias=False,
                                  mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), labels="coco80"),
        build=_build(_yaml),
    )

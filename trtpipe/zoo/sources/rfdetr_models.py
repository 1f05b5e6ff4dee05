"""RF-DETR Nano (Roboflow's ``rfdetr`` package), random weights, in the export form rfdetr itself uses.

``RFDETRNano(pretrain_weights=None)`` builds the network without downloading anything. ``export()``
switches the LW-DETR module to its tracing-friendly forward, which returns ``(boxes, logits)``:
boxes cx, cy, w, h in 0..1, logits scored per class with a sigmoid (91 COCO category ids).
"""

from __future__ import annotations

from trtpipe.spec import PreprocessSpec
from trtpipe.zoo.sources.coverage_common import DETECTION_OUTPUTS, adapt_outputs, import_or_explain, register_config_model

SIZE = 384  # RF-DETR Nano's native resolution: the DINOv2 position embedding needs no interpolation


def _logits_boxes(model, images):
    boxes, logits = model(images)[:2]
    return logits, boxes


def _rfdetr_nano():
    rfdetr = import_or_explain("rfdetr", "rfdetr_nano", "rfdetr")
    network = rfdetr.RFDETRNano(pretrain_weights=None).model.model
    network.eval()
    network.export()
    return adapt_outputs(network, _logits_boxes, DETECTION_OUTPUTS)


register_config_model(
    "rfdetr_nano", source="rfdetr", task="detection",
    description="RF-DETR Nano (DINOv2-S backbone, LW-DETR decoder), 300 queries",
    preprocess=PreprocessSpec(model="rfdetr_nano", height=SIZE, width=SIZE, task="detection", resize="stretch",
                              head="detr_sigmoid", labels="coco91"),
    build=_rfdetr_nano,
)

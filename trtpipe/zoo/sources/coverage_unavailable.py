"""Networks of the coverage list that no package installable here provides; listed so users see why.

MMSegmentation/MMDetection models need mmcv 2.x compiled against the installed torch; mmcv publishes
no wheel for torch 2.14 and its source build needs CUDA toolchains, so it does not install here.
The DETR variants below live only in their authors' repositories (not on the package registries).
"""

from __future__ import annotations

from trtpipe.zoo.sources.coverage_common import register_unavailable

MMSEG = "an MMSegmentation model; mmcv 2.x has no wheel for torch 2.14 and does not build here"
AUTHORS_ONLY = "only in its authors' repository, not on the package registries"

UNAVAILABLE = (
    ("dn_detr", "detection", "DN-DETR", AUTHORS_ONLY),
    ("dino_detr", "detection", "DINO (DETR with improved denoising anchor boxes)",
     AUTHORS_ONLY + " (detrex/IDEA-Research); transformers has no DINO detector"),
    ("sparse_detr", "detection", "Sparse DETR", AUTHORS_ONLY),
    ("sam_detr", "detection", "SAM-DETR", AUTHORS_ONLY),
    ("vidt", "detection", "ViDT", AUTHORS_ONLY),
    ("mimdet", "detection", "MIMDet", AUTHORS_ONLY),
    ("topformer", "segmentation", "TopFormer", MMSEG),
    ("segmenter", "segmentation", "Segmenter", MMSEG),
    ("ann_r50", "segmentation", "ANN (ResNet-50)", MMSEG),
    ("dnl_r50", "segmentation", "DNL (ResNet-50)", MMSEG),
    ("danet_r50", "segmentation", "DANet (ResNet-50)", MMSEG),
)

for _name, _task, _description, _reason in UNAVAILABLE:
    register_unavailable(_name, task=_task, description=_description, reason=_reason)

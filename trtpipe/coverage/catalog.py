"""The coverage list of issue 6, in the issue's order: the zoo name of each network users deploy.

Importing :data:`SOURCE_MODULES` registers the coverage models with the zoo (until the registry imports
every module of ``trtpipe/zoo/sources`` by itself). How a detector's outputs are scored is its zoo
entry's business: ``PreprocessSpec.head`` (e.g. ``detr_sigmoid``), which Pipeline follows.
"""

from __future__ import annotations

import importlib

SOURCE_MODULES = (
    "trtpipe.zoo.sources.timm_catalog",
    "trtpipe.zoo.sources.transformers_models",
    "trtpipe.zoo.sources.ultralytics_models",
    "trtpipe.zoo.sources.smp_models",
    "trtpipe.zoo.sources.coverage_fcn",
    "trtpipe.zoo.sources.rfdetr_models",
    "trtpipe.zoo.sources.coverage_unavailable",
)

CLASSIFICATION = (
    "resnet18", "resnet50", "mobilenetv2", "repvgg_a0", "mobileone_s0", "poolformer_s12", "cait_xxs24_224",
    "deit_tiny_patch16_224", "efficientformer_l1", "efficientnet_b0", "mnasnet_100", "mobilenetv3_large_100",
    "mobilenetv4_conv_small", "mobilenetv4_hybrid_medium", "mobilevit_s", "moganet", "pvt_v2_b0", "repvit_m1",
    "swin_tiny_patch4_window7_224", "swinv2_base_window8_256", "t2t_vit", "tiny_vit_5m_224", "vit_base_patch16_224",
    "xcit_tiny_12_p16_224", "densenet121", "regnetx_320",
)
DETECTION = (
    "yolov8n", "yolov5nu", "detr_resnet50", "conditional_detr", "dn_detr", "dab_detr", "deformable_detr", "dino_detr",
    "rt_detr", "rfdetr_nano", "sparse_detr", "sam_detr", "vidt", "grounding_dino", "mimdet",
)
SEGMENTATION = (
    "segformer_b0", "maskformer_swin_tiny", "topformer", "upernet_deit_small", "segmenter", "fcn_r50", "fcn_hrnet_w18",
    "pspnet_r50", "pspnet_mobilenetv2", "ann_r50", "dnl_r50", "danet_r50",
)
ALL = CLASSIFICATION + DETECTION + SEGMENTATION
# A fast, representative subset for the default test run: one per task and source, small inputs.
QUICK = ("repvgg_a0", "yolov8n", "pspnet_mobilenetv2")


def load_sources() -> None:
    """Registers the coverage models with the zoo."""
    for module in SOURCE_MODULES:
        importlib.import_module(module)

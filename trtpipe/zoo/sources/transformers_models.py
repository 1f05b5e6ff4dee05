"""Hugging Face transformers detectors and segmenters of the coverage list, built from their config classes.

Weights on the hub cannot be downloaded here, so every model is random (labelled as such) and built
at the size and class count users deploy: 80 COCO classes for detectors, 150 ADE20K classes for
segmenters (their specs name the bundled label sets coco80 and ade20k150). Each network is wrapped to return what trtpipe's heads read:

- DETR-style detectors: ``logits (N, Q, C[+1])`` and ``boxes (N, Q, 4)`` (cx, cy, w, h in 0..1);
  DETR's logits end with a "no object" class (softmax: the detection head's default), the others score
  each class with a sigmoid (their spec names the ``detr_sigmoid`` head).
- segmenters: per-pixel class logits ``(N, C, h, w)``; MaskFormer's mask classification is turned
  into them as its semantic inference does (softmax class probabilities x sigmoid masks).
"""

from __future__ import annotations

from trtpipe.spec import PreprocessSpec
from trtpipe.zoo.sources.coverage_common import (
    DETECTION_OUTPUTS,
    adapt_outputs,
    import_or_explain,
    register_config_model,
)

COCO_CLASSES = 80
ADE20K_CLASSES = 150
# Mask classification models fuse their class and mask predictions into semantic logits in the graph.
SEMANTIC_OUTPUT = ("logits",)
# GroundingDINO detects what a text prompt names; the prompt is fixed in the exported graph.
# BERT-base-uncased ids of "[CLS] a person . a cat . a dog . [SEP]".
GROUNDING_PROMPT_IDS = (101, 1037, 2711, 1012, 1037, 4937, 1012, 1037, 3899, 1012, 102)


def _transformers():
    return import_or_explain("transformers", "this model", "transformers")


def _detection_spec(size: int, head: str | None = None, labels: str | None = "coco80") -> PreprocessSpec:
    return PreprocessSpec(model="", height=size, width=size, task="detection", resize="letterbox",
                          interpolation="bilinear", antialias=False, head=head, labels=labels)


def _segmentation_spec(size: int) -> PreprocessSpec:
    return PreprocessSpec(model="", height=size, width=size, task="segmentation", resize="stretch",
                          interpolation="bilinear", labels="ade20k150")


def _set_prediction(model, images):
    out = model(pixel_values=images)
    return out.logits, out.pred_boxes


def _semantic_logits(model, images):
    return model(pixel_values=images).logits


def _mask_classification_to_semantic(model, images):
    import torch

    out = model(pixel_values=images)
    classes = out.class_queries_logits.softmax(-1)[..., :-1]  # drop "no object"
    masks = out.masks_queries_logits.sigmoid()
    return torch.einsum("nqc,nqhw->nchw", classes, masks)


def _detector(model_class: str, config_class: str, **config):
    def build():
        transformers = _transformers()
        cfg = getattr(transformers, config_class)(num_labels=COCO_CLASSES, **config)
        return adapt_outputs(getattr(transformers, model_class)(cfg), _set_prediction, DETECTION_OUTPUTS)

    return build


SIGMOID = "detr_sigmoid"  # focal-loss DETRs: an independent sigmoid per class, no "no object" class
DETECTORS = (
    # name, model class, config class, input size, head (None: softmax DETR), description
    ("detr_resnet50", "DetrForObjectDetection", "DetrConfig", 512, None, "DETR, ResNet-50 backbone, 100 queries"),
    ("conditional_detr", "ConditionalDetrForObjectDetection", "ConditionalDetrConfig", 512, SIGMOID,
     "Conditional DETR, ResNet-50 backbone, 300 queries"),
    ("dab_detr", "DabDetrForObjectDetection", "DabDetrConfig", 512, SIGMOID, "DAB-DETR, ResNet-50 backbone, 300 queries"),
    ("deformable_detr", "DeformableDetrForObjectDetection", "DeformableDetrConfig", 512, SIGMOID,
     "Deformable DETR, ResNet-50 backbone, multi-scale deformable attention"),
    ("rt_detr", "RTDetrForObjectDetection", "RTDetrConfig", 640, SIGMOID, "RT-DETR, ResNet-50-vd backbone, 300 queries"),
)

for _name, _model, _config, _size, _head, _description in DETECTORS:
    register_config_model(
        _name, source="transformers", task="detection", description=_description,
        preprocess=_detection_spec(_size, _head), build=_detector(_model, _config),
    )


def _grounding_dino():
    import torch

    transformers = _transformers()
    model = transformers.GroundingDinoForObjectDetection(transformers.GroundingDinoConfig())
    prompt = torch.tensor([GROUNDING_PROMPT_IDS])

    def forward(net, images):
        ids = prompt.expand(images.shape[0], -1)
        out = net(pixel_values=images, input_ids=ids, attention_mask=torch.ones_like(ids))
        return out.logits, out.pred_boxes

    return adapt_outputs(model, forward, DETECTION_OUTPUTS)


register_config_model(
    "grounding_dino", source="transformers", task="detection",
    description="GroundingDINO, Swin-T + BERT, fixed prompt 'a person. a cat. a dog.' (logits per prompt token)",
    # Its classes are the prompt's tokens, not a dataset's: no label set.
    preprocess=_detection_spec(512, SIGMOID, labels=None), build=_grounding_dino,
)


def _segformer():
    transformers = _transformers()
    config = transformers.SegformerConfig(num_labels=ADE20K_CLASSES)  # the defaults are MiT-B0
    return adapt_outputs(transformers.SegformerForSemanticSegmentation(config), _semantic_logits, SEMANTIC_OUTPUT)


def _maskformer():
    transformers = _transformers()
    swin_tiny = transformers.MaskFormerSwinConfig(
        embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = transformers.MaskFormerConfig(backbone_config=swin_tiny, num_labels=ADE20K_CLASSES)
    model = transformers.MaskFormerForInstanceSegmentation(config)
    return adapt_outputs(model, _mask_classification_to_semantic, SEMANTIC_OUTPUT)


def _upernet_vit():
    transformers = _transformers()
    # DeiT-S sized plain ViT (transformers has no DeiT backbone for UperNet; VitDet is the plain-ViT one).
    deit_small = transformers.VitDetConfig(
        hidden_size=384, num_attention_heads=6, num_hidden_layers=12, image_size=512, pretrain_image_size=224,
        out_features=["stage3", "stage6", "stage9", "stage12"],
    )
    config = transformers.UperNetConfig(backbone_config=deit_small, num_labels=ADE20K_CLASSES)
    return adapt_outputs(transformers.UperNetForSemanticSegmentation(config), _semantic_logits, SEMANTIC_OUTPUT)


SEGMENTERS = (
    ("segformer_b0", _segformer, "SegFormer MiT-B0, logits at 1/4 resolution"),
    ("maskformer_swin_tiny", _maskformer, "MaskFormer Swin-T, semantic logits = class probs x mask probs"),
    ("upernet_deit_small", _upernet_vit, "UperNet on a DeiT-S sized plain ViT (VitDet backbone)"),
)

for _name, _build, _description in SEGMENTERS:
    register_config_model(
        _name, source="transformers", task="segmentation", description=_description,
        preprocess=_segmentation_spec(512), build=_build,
    )

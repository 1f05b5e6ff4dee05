"""The timm classifiers of the coverage list (issue 6) under their own names: ``repvgg_a0``, ``swin_tiny...``.

Any timm model already works as ``timm:<name>``; these entries put the networks users deploy in
``trtpipe zoo list``. Their preprocessing is copied from timm's pretrained config of the tag named
here (a test checks the copy), so listing the zoo imports neither timm nor torch. Weights download
from the Hugging Face Hub; offline, ``--weights auto`` falls back to random weights.

MogaNet and T2T-ViT are not in timm, and no package installable here provides them: they are listed
as such.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from trtpipe.spec import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec
from trtpipe.zoo.registry import register_model
from trtpipe.zoo.sources.coverage_common import register_unavailable
from trtpipe.zoo.sources.timm import weights_status as timm_weights_status

INCEPTION = (0.5, 0.5, 0.5)
ZERO, ONE = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class TimmClassifier:
    """One timm classifier and the preprocessing of its pretrained tag."""

    name: str  # zoo name = timm architecture
    tag: str  # pretrained tag, "<arch>.<tag>": decides the weights and the number of classes
    size: int  # square input size
    crop_fraction: float  # timm crop_pct
    interpolation: str
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    description: str = ""


CLASSIFIERS = (
    TimmClassifier("repvgg_a0", "repvgg_a0.rvgg_in1k", 224, 0.875, "bilinear", description="RepVGG-A0"),
    TimmClassifier("mobileone_s0", "mobileone_s0.apple_in1k", 224, 0.875, "bilinear", description="MobileOne-S0"),
    TimmClassifier("poolformer_s12", "poolformer_s12.sail_in1k", 224, 0.9, "bicubic", description="PoolFormer-S12"),
    TimmClassifier("cait_xxs24_224", "cait_xxs24_224.fb_dist_in1k", 224, 1.0, "bicubic", description="CaiT-XXS24"),
    TimmClassifier("deit_tiny_patch16_224", "deit_tiny_patch16_224.fb_in1k", 224, 0.9, "bicubic", description="DeiT-Tiny"),
    TimmClassifier("efficientformer_l1", "efficientformer_l1.snap_dist_in1k", 224, 0.95, "bicubic",
                   description="EfficientFormer-L1"),
    TimmClassifier("efficientnet_b0", "efficientnet_b0.ra_in1k", 224, 0.875, "bicubic", description="EfficientNet-B0"),
    TimmClassifier("mnasnet_100", "mnasnet_100.rmsp_in1k", 224, 0.875, "bicubic", description="MnasNet-A1 1.0"),
    TimmClassifier("mobilenetv3_large_100", "mobilenetv3_large_100.ra_in1k", 224, 0.875, "bicubic",
                   description="MobileNetV3-Large 1.0"),
    TimmClassifier("mobilenetv4_conv_small", "mobilenetv4_conv_small.e2400_r224_in1k", 224, 0.875, "bicubic",
                   description="MobileNetV4 conv small"),
    TimmClassifier("mobilenetv4_hybrid_medium", "mobilenetv4_hybrid_medium.e200_r256_in12k_ft_in1k", 256, 0.95,
                   "bicubic", description="MobileNetV4 hybrid medium"),
    TimmClassifier("mobilevit_s", "mobilevit_s.cvnets_in1k", 256, 0.9, "bicubic", ZERO, ONE, description="MobileViT-S"),
    TimmClassifier("pvt_v2_b0", "pvt_v2_b0.in1k", 224, 0.9, "bicubic", description="PVT-v2-B0"),
    TimmClassifier("repvit_m1", "repvit_m1.dist_in1k", 224, 0.95, "bicubic", description="RepViT-M1"),
    TimmClassifier("swin_tiny_patch4_window7_224", "swin_tiny_patch4_window7_224.ms_in1k", 224, 0.9, "bicubic",
                   description="Swin-T"),
    TimmClassifier("swinv2_base_window8_256", "swinv2_base_window8_256.ms_in1k", 256, 0.9, "bicubic",
                   description="SwinV2-B window 8"),
    TimmClassifier("tiny_vit_5m_224", "tiny_vit_5m_224.dist_in22k_ft_in1k", 224, 0.95, "bicubic",
                   description="TinyViT-5M"),
    TimmClassifier("vit_base_patch16_224", "vit_base_patch16_224.augreg2_in21k_ft_in1k", 224, 0.9, "bicubic",
                   INCEPTION, INCEPTION, description="ViT-B/16"),
    TimmClassifier("xcit_tiny_12_p16_224", "xcit_tiny_12_p16_224.fb_in1k", 224, 1.0, "bicubic", description="XCiT-T12/16"),
    TimmClassifier("densenet121", "densenet121.ra_in1k", 224, 0.875, "bicubic", description="DenseNet-121"),
    TimmClassifier("regnetx_320", "regnetx_320.tv2_in1k", 224, 0.965, "bicubic", description="RegNetX-32GF"),
)


def _create(model: TimmClassifier, weights: str):
    from trtpipe.zoo.registry import get_model  # the timm: family shares its offline-aware hub loading

    return get_model(f"timm:{model.tag}").create(weights)


def _register(model: TimmClassifier) -> None:
    preprocess = PreprocessSpec(
        model=model.name,
        height=model.size,
        width=model.size,
        resize="resize_crop",
        crop_fraction=model.crop_fraction,
        interpolation=model.interpolation,
        mean=model.mean,
        std=model.std,
        labels="imagenet1k",
    )
    register_model(
        model.name,
        source="timm",
        preprocess=preprocess,
        description=f"{model.description} (timm {model.tag}), ImageNet-1k",
        pretrained_tag=model.tag,
        weights_status=functools.partial(timm_weights_status, model.tag),
    )(functools.partial(_create, model))


for _model in CLASSIFIERS:
    _register(_model)

register_unavailable(
    "moganet", task="classification", description="MogaNet",
    reason="not in timm; its authors' repository is not on the package registries",
)
register_unavailable(
    "t2t_vit", task="classification", description="T2T-ViT",
    reason="not in timm; its authors' repository is not on the package registries",
)

"""segmentation-models-pytorch PSPNets (ResNet-50 and MobileNetV2 encoders), random weights.

Encoder weights download at build time (``encoder_weights="imagenet"``), which fails here, so the
encoders are random too. smp's PSPNet upsamples its logits to the input size: output ``(N, 150, H, W)``.
"""

from __future__ import annotations

from trtpipe.spec import PreprocessSpec
from trtpipe.zoo.sources.coverage_common import adapt_outputs, import_or_explain, register_config_model

ADE20K_CLASSES = 150
SIZE = 512
MODELS = (
    ("pspnet_r50", "resnet50", "PSPNet, ResNet-50 encoder"),
    ("pspnet_mobilenetv2", "mobilenet_v2", "PSPNet, MobileNetV2 encoder"),
)


def _logits(model, images):
    return model(images)


def _build(encoder: str):
    def build():
        smp = import_or_explain("segmentation_models_pytorch", "PSPNet", "segmentation-models-pytorch")
        model = smp.PSPNet(encoder_name=encoder, encoder_weights=None, classes=ADE20K_CLASSES)
        return adapt_outputs(model, _logits, ("logits",))

    return build


for _name, _encoder, _description in MODELS:
    register_config_model(
        _name, source="segmentation_models_pytorch", task="segmentation", description=_description,
        preprocess=PreprocessSpec(model=_name, height=SIZE, width=SIZE, task="segmentation", resize="stretch",
                                  labels="ade20k150"),
        build=_build(_encoder),
    )

"""FCN segmenters of the coverage list: FCN-ResNet50 (torchvision) and FCN-HRNetV2-W18 (timm encoder), random.

torchvision's ``fcn_resnet50`` is the reference FCN (21 VOC classes, logits at input size). HRNet+FCN is
MMSegmentation's model, which does not install here; it is rebuilt from timm's ``hrnet_w18`` features
and MMSegmentation's FCN head for HRNetV2 (all four branches upsampled to 1/4 and concatenated, one
1x1 conv-BN-ReLU, a 1x1 classifier), so logits come at 1/4 resolution.
"""

from __future__ import annotations

import functools

from trtpipe.spec import PreprocessSpec
from trtpipe.zoo.sources.coverage_common import adapt_outputs, import_or_explain, register_config_model

VOC_CLASSES = 21
ADE20K_CLASSES = 150
SIZE = 512


def _torchvision_out(model, images):
    return model(images)["out"]


def _fcn_resnet50():
    torchvision = import_or_explain("torchvision", "fcn_r50", "torchvision")
    model = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=VOC_CLASSES)
    return adapt_outputs(model, _torchvision_out, ("logits",))


@functools.cache
def _hrnet_fcn_class():
    import torch
    import torch.nn.functional as F

    class HRNetFCN(torch.nn.Module):
        """timm HRNetV2 features -> MMSegmentation's FCN head (concat of upsampled branches)."""

        def __init__(self, encoder, classes: int):
            super().__init__()
            self.encoder = encoder
            channels = sum(encoder.feature_info.channels())
            self.fuse = torch.nn.Sequential(
                torch.nn.Conv2d(channels, channels, 1, bias=False), torch.nn.BatchNorm2d(channels), torch.nn.ReLU()
            )
            self.classifier = torch.nn.Conv2d(channels, classes, 1)

        def forward(self, images):
            features = self.encoder(images)
            size = features[0].shape[-2:]
            upsampled = [features[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features[1:]]
            return self.classifier(self.fuse(torch.cat(upsampled, dim=1)))

    return HRNetFCN


def _fcn_hrnet():
    timm = import_or_explain("timm", "fcn_hrnet_w18", "timm")
    # feature_location="" gives the four raw branch outputs (18/36/72/144 channels at 1/4..1/32), HRNetV2's
    # input to the FCN head; "incre" would give the classification neck's widened features instead.
    encoder = timm.create_model("hrnet_w18", pretrained=False, features_only=True, out_indices=(1, 2, 3, 4),
                                feature_location="")
    return _hrnet_fcn_class()(encoder, ADE20K_CLASSES)


for _name, _source, _build, _labels, _description in (
    ("fcn_r50", "torchvision", _fcn_resnet50, "voc21", "FCN-ResNet50 (torchvision fcn_resnet50), 21 VOC classes"),
    ("fcn_hrnet_w18", "timm", _fcn_hrnet, "ade20k150",
     "FCN head on HRNetV2-W18 (timm encoder + MMSeg-style FCN head), 1/4 resolution"),
):
    register_config_model(
        _name, source=_source, task="segmentation", description=_description,
        preprocess=PreprocessSpec(model=_name, height=SIZE, width=SIZE, task="segmentation", resize="stretch",
                                  labels=_labels),
        build=_build,
    )

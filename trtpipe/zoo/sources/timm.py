"""Any timm model as ``timm:<name>`` (``timm:resnet18``, ``timm:convnext_tiny.fb_in1k``, ...).

Entries are resolved on demand: input size, mean/std, interpolation and crop come from the model's
timm pretrained config, so the exported ONNX is prepared exactly as timm evaluates it. Pretrained
weights download from the Hugging Face Hub; when huggingface.co cannot even be resolved (offline),
the hub client is put in offline mode so that cached weights still load and missing ones fail at
once instead of after a minute of retries.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import os
import socket
from pathlib import Path
from typing import Iterator

from trtpipe.errors import DependencyError, ModelNotFoundError, WeightsError
from trtpipe.spec import INTERPOLATIONS, PreprocessSpec
from trtpipe.zoo import registry
from trtpipe.zoo.registry import RANDOM_HERE, ModelEntry, download_status, register_family

log = logging.getLogger("trtpipe.zoo")

HUB_HOST = "huggingface.co"
# timm crop_mode -> PreprocessSpec.resize. "squash" resizes both sides to the same size before the
# centre crop; with no aspect ratio kept, "stretch" is its nearest match.
CROP_MODES = {"center": "resize_crop", "squash": "stretch", "border": "resize_crop"}


def _import_timm():
    try:
        import timm
    except ImportError as exc:
        raise DependencyError(
            f"timm models need timm, which cannot be imported ({exc})", "pip install 'trtpipe[export]'"
        ) from None
    return timm


def hf_hub_cache_dir() -> Path:
    """huggingface_hub's cache folder, computed as its constants module does but without importing it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(hf_home) / "hub"


def weights_cached(tag: str) -> bool:
    """True when timm's weights ``<arch>.<tag>`` (hub repo ``timm/<arch>.<tag>``) are in the local hub cache."""
    snapshots = hf_hub_cache_dir() / f"models--timm--{tag}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def weights_status(tag: str) -> str:
    """What --weights auto gives here for timm tag ``<arch>.<tag>`` (see registry.download_status)."""
    return download_status(HUB_HOST, cached=weights_cached(tag))


def _family_status() -> str:
    return "pretrained (download)" if registry.host_reachable(HUB_HOST) else RANDOM_HERE + " unless cached"


@register_family("timm", description="any timm model (weights from the Hugging Face Hub)", weights_status=_family_status)
def resolve_timm(arch: str) -> ModelEntry:
    """Builds the zoo entry of timm model ``arch`` (optionally with a pretrained tag, ``resnet18.a1_in1k``)."""
    timm = _import_timm()
    from timm.models import get_pretrained_cfg

    name = f"timm:{arch}"
    if not timm.is_model(arch):
        candidates = timm.list_models() + timm.list_models(pretrained=True)
        close = difflib.get_close_matches(arch, candidates, n=3, cutoff=0.6)
        raise ModelNotFoundError(
            f"timm has no model {arch!r} ({name})",
            (f"did you mean {', '.join('timm:' + c for c in close)}? " if close else "")
            + "python -c \"import timm; print(timm.list_models('*pattern*'))\" lists timm's models",
        )
    cfg = get_pretrained_cfg(arch)
    if cfg is None:
        raise ModelNotFoundError(
            f"timm model {arch!r} has no pretrained config", "pick a model listed by timm.list_models(pretrained=True)"
        )
    tag = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture
    return ModelEntry(
        name=name,
        source="timm",
        task="classification",
        description=f"timm {arch}",
        preprocess=_spec_from_cfg(name, cfg),
        pretrained_tag=tag,
        create=lambda weights: _create(arch, weights),
        weights_status=functools.partial(weights_status, tag),
    )


def _spec_from_cfg(name: str, cfg) -> PreprocessSpec:
    """timm's pretrained config (input_size, mean, std, interpolation, crop_pct, crop_mode) -> PreprocessSpec."""
    _, height, width = cfg.input_size
    interpolation = cfg.interpolation if cfg.interpolation in INTERPOLATIONS else "bilinear"
    crop_mode = cfg.crop_mode or "center"
    if crop_mode != "center" or interpolation != cfg.interpolation:
        log.info("%s: timm crop_mode %r / interpolation %r approximated as %s / %s", name, crop_mode,
                 cfg.interpolation, CROP_MODES.get(crop_mode, "resize_crop"), interpolation)
    return PreprocessSpec(
        model=name,
        height=int(height),
        width=int(width),
        resize=CROP_MODES.get(crop_mode, "resize_crop"),
        crop_fraction=float(cfg.crop_pct or 1.0),
        interpolation=interpolation,
        mean=tuple(float(v) for v in cfg.mean),
        std=tuple(float(v) for v in cfg.std),
        labels="imagenet1k" if cfg.num_classes == 1000 and not cfg.label_offset else None,
        source="timm",
    )


def _create(arch: str, weights: str):
    timm = _import_timm()
    if weights == "random":
        return timm.create_model(arch, pretrained=False)
    try:
        with _hub_offline_unless_reachable():
            return timm.create_model(arch, pretrained=True)
    except (OSError, RuntimeError) as exc:  # hub errors are OSErrors (LocalEntryNotFoundError, ...)
        raise WeightsError(
            f"pretrained weights of timm model {arch!r} could not be loaded ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160]}; no network here?)",
            "connect to the network once (timm caches weights in ~/.cache/huggingface), "
            "or use --weights random / --weights PATH",
        ) from None


@contextlib.contextmanager
def _hub_offline_unless_reachable() -> Iterator[None]:
    """Puts huggingface_hub in offline mode for the block when its host does not resolve."""
    try:
        socket.getaddrinfo(HUB_HOST, 443)
        reachable = True
    except OSError:
        reachable = False
    try:
        from huggingface_hub import constants
    except ImportError:
        constants = None
    if reachable or constants is None:
        yield
        return
    log.info("%s does not resolve: looking for timm weights in the local cache only", HUB_HOST)
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    # timm logs "Loading pretrained weights from Hugging Face hub" (INFO) before it looks: offline that line only
    # precedes the random-weights warning (the line above says where it looked).
    builder_log = logging.getLogger("timm.models._builder")
    saved_level = builder_log.level
    builder_log.setLevel(max(logging.WARNING, saved_level))
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved
        builder_log.setLevel(saved_level)

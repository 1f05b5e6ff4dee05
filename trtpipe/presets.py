"""Preprocessing presets from the field, and the one function that turns what is known about a model into its spec.

A user's ONNX rarely comes with a ``.preprocess.json``. :func:`resolve_spec` builds one from, lowest first:

1. what nothing says: assumed (the ``imagenet`` preset's normalisation and resize, 224x224 where the size is
   dynamic, a classifier), each assumption recorded in ``PreprocessSpec.assumed``;
2. the ONNX's own facts (:class:`ModelFacts`, read by ``trtpipe.onnx.facts``): fixed height, width, channels and
   layout, an integer input (the graph normalises: raw pixels), exporters' metadata (size, class names, task, and
   the family: an Ultralytics export gets the ``yolo`` preset);
3. ``--preset NAME``: resize, interpolation, normalisation and colour order of a named family of models;
4. flags (:class:`SpecOverrides`): ``--input-size``, ``--mean`` ... win over everything.

A spec file beside the model replaces 1 and 2 (it was written for this model, by an exporter or by ``trtpipe
spec``); a preset and flags still go over it. Facts the input shape fixes (size, channels, layout, an integer dtype)
win over a preset: a preset is about a model family's habits, the shape about this file. A flag that contradicts them
is kept, and then refused by the input check (``trtpipe.quant.feeds.check_image_input``), which names both.

Plain data and the standard library only: part of the deployment path (reading facts imports onnx, lazily).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trtpipe.errors import ConfigError
from trtpipe.spec import GRAY, IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec, check_channel_order, parse_frame_size, preprocess_path_for

log = logging.getLogger("trtpipe.presets")

DEFAULT_SIZE = (224, 224)  # assumed where the input's height and width are dynamic and nothing else says


@dataclass(frozen=True)
class Preset:
    """How a family of models prepares images; fields named as in PreprocessSpec (colour: RGB or BGR)."""

    name: str
    source: str  # where these values come from (the library and function that preprocess for these models)
    resize: str = "stretch"
    interpolation: str = "bilinear"
    antialias: bool = False
    crop_fraction: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # in `colour` order, 0..1 units
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pixel_scale: float = 1.0 / 255.0
    colour: str = "RGB"  # the order of the three colour planes; adapted to 1 (GRAY) and 4 (alpha added) channels
    pad_value: int = 114
    size: tuple[int, int] = DEFAULT_SIZE  # (height, width) where the input's are dynamic
    task: str | None = None  # the family's task, where it has one

    def per_letter(self) -> dict[str, tuple[float, float]]:
        """{'R': (mean, std), 'G': ..., 'B': ...}: the preset's normalisation by colour, whatever order it lists."""
        return {letter: (m, s) for letter, m, s in zip(self.colour, self.mean, self.std)}


PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    """Adds ``preset`` to the registry under its name (a second one of the same name is a bug)."""
    if preset.name in PRESETS:
        raise ValueError(f"preset {preset.name!r} is registered twice")
    PRESETS[preset.name] = preset
    return preset


register_preset(Preset(
    "imagenet", "timm resolve_data_config defaults / torchvision ImageNet classification transforms: resize the shorter "
    "side to size/0.875, centre crop, bilinear with antialias, /255, ImageNet mean/std, RGB",
    resize="resize_crop", antialias=True, crop_fraction=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    task="classification",
))
register_preset(Preset(
    "yolo", "Ultralytics LetterBox (cv2.INTER_LINEAR, border 114, centred) then /255, RGB, no mean/std",
    resize="letterbox", size=(640, 640), task="detection",
))
register_preset(Preset(
    "paddle", "PaddleOCR / PaddleDetection NormalizeImage on the cv2-decoded BGR image: resize, /255, ImageNet "
    "mean/std listed as they are applied to B, G, R",
    mean=IMAGENET_MEAN, std=IMAGENET_STD, colour="BGR", size=(640, 640),
))
register_preset(Preset("unit", "pixels /255 into 0..1, no mean/std (many segmentation and research exports), RGB"))
register_preset(Preset("raw", "pixels 0..255 as they are (a graph that normalises itself, e.g. a uint8 input)",
                       pixel_scale=1.0))


def get_preset(name: str) -> Preset:
    """The registered preset ``name``.

    Raises:
        ConfigError: an unknown name, listing the known ones and the closest.
    """
    if name in PRESETS:
        return PRESETS[name]
    close = difflib.get_close_matches(name, PRESETS, n=1)
    raise ConfigError(
        f"preset {name!r} is unknown, expected one of {', '.join(PRESETS)}",
        (f"did you mean --preset {close[0]}? " if close else "") + "run `trtpipe spec --help` for what each one does",
    )


@dataclass(frozen=True)
class SpecOverrides:
    """What the command line says about preprocessing (None: not given). Fields as in PreprocessSpec."""

    preset: str | None = None
    input_size: str | None = None  # "HxW"
    resize: str | None = None
    interpolation: str | None = None
    mean: tuple[float, ...] | None = None  # one per channel, or one for all
    std: tuple[float, ...] | None = None
    pixel_scale: float | None = None
    channel_order: str | None = None
    layout: str | None = None
    task: str | None = None
    labels: str | None = None  # a bundled set or a file

    def __post_init__(self) -> None:
        if self.preset is not None:
            get_preset(self.preset)
        if self.input_size is not None:
            parse_frame_size(self.input_size)
        if self.channel_order is not None:
            check_channel_order(self.channel_order)

    @property
    def given(self) -> bool:
        return any(value is not None for value in dataclasses.asdict(self).values())


@dataclass(frozen=True)
class ModelFacts:
    """What an ONNX file says about its image input (None: it does not say). See ``trtpipe.onnx.facts``."""

    model: str  # the file's stem
    input_name: str | None = None  # the first network input's (the one images feed)
    inputs: int = 1  # how many network inputs the graph has
    dtype: str = "float32"
    layout: str | None = None  # NCHW | NHWC, from where a channel-sized axis is
    channels: int | None = None
    height: int | None = None
    width: int | None = None
    size_from: str = "input shape"  # what fixed height/width: "input shape" | "metadata imgsz"
    labels: tuple[str, ...] | None = None  # class names from the metadata
    labels_from: str | None = None  # which metadata key
    task: str | None = None
    family: str | None = None  # a preset the metadata points to ("yolo" for an Ultralytics export)
    notes: tuple[str, ...] = field(default=(), compare=False)  # what was read, for the one-line summary

    @property
    def takes_pixels(self) -> bool:
        """An integer (uint8 ...) image input: the graph normalises, so it is fed 0..255 as they are."""
        return self.dtype not in ("float32", "float16", "float64", "bfloat16")


def _count(order: str) -> int:
    return 1 if order == GRAY else len(order)


def _colour_order(colour: str, channels: int) -> str:
    """RGB/BGR adapted to a channel count: 1 -> GRAY, 3 -> as is, 4 -> alpha added (RGBA/BGRA)."""
    return {1: GRAY, 3: colour, 4: colour + "A"}.get(channels, "")


def _normalisation(preset: Preset, order: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The preset's mean/std for ``order``'s channels: colours by letter, GRAY their average, alpha 0/1."""
    by_letter = preset.per_letter()
    if order == GRAY:
        return (sum(preset.mean) / 3,), (sum(preset.std) / 3,)
    pairs = [by_letter.get(letter, (0.0, 1.0)) for letter in order]
    return tuple(m for m, _ in pairs), tuple(s for _, s in pairs)


def resolve_spec(
    model_path: str | Path,
    overrides: SpecOverrides = SpecOverrides(),
    facts: ModelFacts | None = None,
    *,
    spec_file: bool = True,
) -> PreprocessSpec:
    """The preprocess spec of ``model_path`` from its spec file, its facts, a preset and flags (see the module doc).

    Args:
        model_path: the ONNX file (its ``<stem>.preprocess.json`` is read when ``spec_file``).
        overrides: the command line's preset and flags. Defaults to none.
        facts: what the ONNX says. Defaults to reading them (``trtpipe.onnx.facts.read_facts``, needs onnx).
        spec_file: read the spec file beside the model. Defaults to True.

    Returns:
        A PreprocessSpec; ``assumed`` lists what nothing said (empty when the spec file or flags said it all).

    Raises:
        ConfigError: an unknown preset, a malformed flag, a channel count nothing can describe.
        InputError: a corrupt spec file.
    """
    model_path = Path(model_path)
    path = preprocess_path_for(model_path)
    base = PreprocessSpec.load(path) if spec_file and path.is_file() else None
    if facts is None and (base is None or overrides.preset is not None):
        facts = _read_facts(model_path)
    if base is not None:
        return override_spec(base, overrides, facts)
    base, assumed = _from_facts(model_path, facts, overrides)
    return _apply_flags(base, overrides, assumed)


def _read_facts(model_path: Path) -> ModelFacts:
    """The ONNX's facts; the onnx package reads them, which a slim deployment image may lack."""
    try:
        from trtpipe.onnx.facts import read_facts
    except ImportError as exc:
        raise ConfigError(
            f"{model_path.name}: no preprocess spec beside it, and deriving one needs the onnx package ({exc})",
            f"pip install onnx, or write the spec where it is installed (`trtpipe spec {model_path.name} ...`) and "
            "copy the .preprocess.json beside the model",
        ) from None
    return read_facts(model_path)


def override_spec(spec: PreprocessSpec, overrides: SpecOverrides, facts: ModelFacts | None = None) -> PreprocessSpec:
    """``spec`` (a spec file's, an engine sidecar's) with ``--preset``'s habits and then the flags laid over it.

    Args:
        facts: the ONNX's facts, where known: an integer input keeps its raw normalisation whatever the preset says.
    """
    if not overrides.given:
        return spec
    return _apply_flags(_apply_preset(spec, overrides, facts), overrides, list(spec.assumed))


def _short(values: tuple[float, ...]) -> str:
    return "/".join(f"{v:.3g}" for v in values)


def _from_facts(model_path: Path, facts: ModelFacts, overrides: SpecOverrides) -> tuple[PreprocessSpec, list[str]]:
    """A spec from the ONNX's facts alone, and what had to be assumed (flags given are not assumptions)."""
    assumed: list[str] = []
    chosen = overrides.preset or facts.family
    preset = get_preset(chosen or "imagenet")
    channels = facts.channels
    if channels is None:
        channels = 3
        if overrides.channel_order is None:
            assumed.append("3 colour channels (the input's channel axis is dynamic)")
    order = overrides.channel_order or _colour_order(preset.colour, channels)
    if not order:
        raise ConfigError(
            f"{model_path.name}: input {facts.input_name!r} has {channels} channels, and no preset says what a "
            f"{channels}-channel input takes from an image",
            "give --channel-order with one letter per channel from R, G, B and A (alpha, 255), e.g. RGBRGB for 6, and "
            "--mean/--std with one value per channel (or one for all)",
        )
    normalisation_given = overrides.mean is not None or overrides.std is not None or overrides.pixel_scale is not None
    if facts.takes_pixels:
        mean, std, scale = (0.0,), (1.0,), 1.0  # the graph normalises: it takes pixels
    else:
        mean, std = _normalisation(preset, order)
        scale = preset.pixel_scale
        if chosen is None and not normalisation_given:
            assumed.append(f"normalisation and resize of the imagenet preset (mean {_short(mean)}, std {_short(std)}, "
                           f"/255, {preset.resize} {preset.crop_fraction:g}, {order})")
    height, width = facts.height, facts.width
    if height is None or width is None:
        if overrides.input_size is None:
            height, width = height or preset.size[0], width or preset.size[1]
            assumed.append(f"input size {height}x{width} (the input's height/width are dynamic)")
        else:
            height, width = parse_frame_size(overrides.input_size)
    layout = facts.layout or "NCHW"
    if facts.layout is None and overrides.layout is None:
        assumed.append("layout NCHW")
    task = facts.task or preset.task
    if task is None or (facts.task is None and chosen is None):
        task = task or "classification"
        if overrides.task is None:
            assumed.append(f"task {task}")
    resize = preset.resize
    if preset.name == "yolo" and task == "classification":  # Ultralytics classify_transforms: shorter side + crop
        resize = "resize_crop"
    spec = PreprocessSpec(
        model=model_path.name.split(".")[0], height=height, width=width, task=task, resize=resize,
        crop_fraction=preset.crop_fraction, interpolation=preset.interpolation, antialias=preset.antialias,
        mean=mean, std=std, pixel_scale=scale, channel_order=order, layout=layout, pad_value=preset.pad_value,
        labels=facts.labels, source="onnx",
    )
    return spec, assumed


def _label_names(source: str) -> str | tuple[str, ...]:
    """``--labels``: a bundled set stays its name; a file's names go into the spec, which then needs no file beside it
    wherever it is copied (an engine sidecar, a Triton repository).

    Raises:
        InputError: a missing or empty file (see ``trtpipe.labels.load_labels``).
    """
    from trtpipe.labels import BUNDLED_LABELS, load_labels

    return source if source in BUNDLED_LABELS else tuple(load_labels(source))


def _apply_preset(base: PreprocessSpec, overrides: SpecOverrides, facts: ModelFacts | None) -> PreprocessSpec:
    """A spec file's ``base`` with ``--preset``'s habits (resize, interpolation, normalisation, colour order)."""
    if overrides.preset is None:
        if overrides.channel_order is not None and _count(overrides.channel_order) != base.channels:
            # the file's per-channel values were for another channel count: one value for all, their average
            return dataclasses.replace(base, channel_order=overrides.channel_order,
                                       mean=(sum(base.mean) / len(base.mean),), std=(sum(base.std) / len(base.std),))
        return base
    preset = get_preset(overrides.preset)
    order = overrides.channel_order or _colour_order(preset.colour, base.channels) or base.channel_order
    changes: dict[str, Any] = dict(resize=preset.resize, interpolation=preset.interpolation, antialias=preset.antialias,
                                   crop_fraction=preset.crop_fraction, pad_value=preset.pad_value, channel_order=order)
    if not (facts is not None and facts.takes_pixels):  # an integer input takes pixels whatever the preset normalises
        mean, std = _normalisation(preset, order)
        changes.update(mean=mean, std=std, pixel_scale=preset.pixel_scale)
    return dataclasses.replace(base, **changes)


_FLAG_FIELDS: dict[str, Callable[[Any], dict[str, Any]]] = {  # SpecOverrides field -> PreprocessSpec changes
    "input_size": lambda v: dict(zip(("height", "width"), parse_frame_size(v))),
    "resize": lambda v: {"resize": v},
    "interpolation": lambda v: {"interpolation": v},
    "mean": lambda v: {"mean": tuple(v)},
    "std": lambda v: {"std": tuple(v)},
    "pixel_scale": lambda v: {"pixel_scale": v},
    "channel_order": lambda v: {"channel_order": v},
    "layout": lambda v: {"layout": v},
    "task": lambda v: {"task": v},
    "labels": lambda v: {"labels": _label_names(v)},
}
# The start of an assumption line -> the spec field a flag sets that turns the assumption into a choice.
_ASSUMPTION_FIELDS = {"input size": "height", "layout": "layout", "task": "task", "normalisation": "mean",
                      "3 colour": "channel_order"}


def _apply_flags(base: PreprocessSpec, overrides: SpecOverrides, assumed: list[str]) -> PreprocessSpec:
    """``base`` with every flag given laid over it; assumptions a flag settled are dropped from ``assumed``."""
    changes: dict[str, Any] = {}
    for name, to_changes in _FLAG_FIELDS.items():
        value = getattr(overrides, name)
        if value is not None:
            changes.update(to_changes(value))
    kept = tuple(line for line in assumed if not any(line.startswith(key) and field_name in changes
                                                     for key, field_name in _ASSUMPTION_FIELDS.items()))
    return dataclasses.replace(base, **changes, assumed=kept)


def assumed_line(spec: PreprocessSpec, model: str | Path) -> str | None:
    """One line saying what was assumed for ``model``'s spec, or None where nothing was."""
    if not spec.assumed:
        return None
    name = Path(model).name
    return (f"{name}: nothing said it, so trtpipe assumed {'; '.join(spec.assumed)} (say it with --preset NAME, "
            f"--mean/--std/--input-size/--task ..., or write it once with `trtpipe spec {name} ...`)")


_WARNED: set[str] = set()


def warn_assumed_calibration(spec: PreprocessSpec, model: str | Path) -> None:
    """Warns once per model and process that INT8 ranges are being measured with an assumed normalisation."""
    guessed = [line for line in spec.assumed if line.startswith(("normalisation", "input size", "3 colour"))]
    key = str(model)
    if not guessed or key in _WARNED:
        return
    _WARNED.add(key)
    log.warning(
        "WARNING: calibrating %s with an ASSUMED preprocessing (%s): the INT8 ranges measured on these images match "
        "deployment only if the deployed model is fed the same way. Give --preset NAME or --mean/--std/--scale (or "
        "write the spec with `trtpipe spec %s ...`) to calibrate on what the model really sees.",
        Path(model).name, "; ".join(guessed), Path(model).name,
    )

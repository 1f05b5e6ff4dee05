"""Frozen configuration records: PreprocessSpec, BuildConfig, EngineSidecar, and their JSON form.

Everything here is plain data with validation; nothing imports TensorRT, torch or ONNX, so the
deployment path (runtime, pipeline) can read sidecars and specs in a slim image.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from trtpipe.errors import ConfigError, InputError
from trtpipe.io import atomic_write_text

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PRECISIONS = ("fp32", "fp16", "int8", "fp8")
RESIZE_MODES = ("resize_crop", "stretch", "letterbox")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")
TASKS = ("classification", "detection", "segmentation")
# What each letter of a channel_order takes from the decoded BGR image: a colour plane, or alpha (opaque, 255: a decoded
# photo has none). "GRAY" (one channel) is luma with OpenCV's BT.601 weights, as cv2.cvtColor(COLOR_BGR2GRAY) uses.
CHANNEL_LETTERS = {"B": "blue", "G": "green", "R": "red", "A": "alpha, 255"}
GRAY = "GRAY"
GRAY_WEIGHTS = {"B": 0.114, "G": 0.587, "R": 0.299}
SIDECAR_SCHEMA_VERSION = 1
# What TensorRT-RTX targets when no compute capability is set (its documentation: Ampere and later).
RTX_DEFAULT_TARGETS = "RTX GPUs SM80/SM86/SM89/SM120 and later (TensorRT-RTX's default; Turing needs --compute-capability SM75)"


def _check_choice(field_name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f"{field_name} is {value!r}, expected one of {', '.join(choices)}",
            f"choose one of {', '.join(choices)}",
        )


def _from_mapping(cls, data: Mapping[str, Any], source: str):
    """Builds dataclass ``cls`` from a mapping, rejecting unknown keys with a clear error."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(
            f"{source}: unknown {cls.__name__} fields {unknown}",
            f"known fields are {sorted(known)}; was the file written by a newer trtpipe?",
        )
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            value = data[f.name]
            # JSON has no tuples; the dataclasses are frozen and hashable, so lists become tuples.
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


class _JsonFile:
    """``save``/``load`` for a record with ``to_dict``/``from_dict``; writes are atomic."""

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path):
        path = Path(path)
        return cls.from_dict(read_json(path), source=str(path))


@dataclass(frozen=True)
class PreprocessSpec(_JsonFile):
    """How an image becomes the network's input, plus what the model is (task, labels, weights).

    One record serves calibration, fidelity checks, the runtime and the benchmarks, so the
    calibration images are prepared exactly as the deployed model sees them.
    """

    model: str  # zoo name or ONNX file stem
    height: int  # network input height in pixels
    width: int  # network input width in pixels
    task: str = "classification"  # classification | detection | segmentation
    resize: str = "resize_crop"  # resize_crop (shorter side, then centre crop) | stretch | letterbox
    crop_fraction: float = 0.875  # resize_crop: crop size / resized shorter side (timm's crop_pct)
    interpolation: str = "bilinear"  # nearest | bilinear | bicubic | area
    antialias: bool = True  # antialias when downscaling, as torchvision's PIL resize does
    mean: tuple[float, ...] = IMAGENET_MEAN  # per channel, in 0..1 pixel units, in channel_order (one value: all)
    std: tuple[float, ...] = IMAGENET_STD
    pixel_scale: float = 1.0 / 255.0  # applied to uint8 pixels before mean/std
    # The network's channels, one letter each from the decoded BGR image (R, G, B; A: alpha, 255): RGB | BGR | RGBA |
    # BGRA | ..., or GRAY for one luma channel. See CHANNEL_LETTERS.
    channel_order: str = "RGB"
    layout: str = "NCHW"  # NCHW | NHWC
    pad_value: int = 114  # letterbox border value (uint8)
    # bundled label set ("imagenet1k"), a label file, the class names themselves (from the ONNX's metadata), or None
    labels: str | tuple[str, ...] | None = None
    weights: str = "unknown"  # "pretrained:<tag>", "random", "checkpoint:<path>" or "unknown" (user ONNX)
    source: str = "onnx"  # where the model came from: torchvision, timm, efficientnet_lite, onnx
    head: str | None = None  # registered task head variant, e.g. "detr_sigmoid"; None: the task's default head
    # None: the host preprocesses and the network takes float tensors. "HxW" (e.g. "1080x1920") or "dynamic": the
    # network itself takes uint8 NHWC BGR frames of that size (or any size within its profile) and does the resize,
    # channel order, normalisation and layout above on the GPU (export/build --fuse-preprocess).
    fused_preprocess: str | None = None
    # None: the network returns its raw outputs and the host runs the task head. Otherwise the head is in the network
    # (export/build --fuse-postprocess), as FusedPostprocess.text() writes it: "detection:yolov8,classes=80,conf=0.25,
    # iou=0.45,max_det=300", "classification:topk=5,classes=1000", "segmentation:classes=19,mask=uint8".
    fused_postprocess: str | None = None
    # What nothing (no spec file, preset, flag or fact of the ONNX) said and was assumed, one line each: a spec that
    # says so is a guess, and calibration ranges measured with it may not match deployment.
    assumed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_choice("task", self.task, TASKS)
        _check_choice("resize", self.resize, RESIZE_MODES)
        _check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        check_channel_order(self.channel_order)
        _check_choice("layout", self.layout, ("NCHW", "NHWC"))
        if self.height <= 0 or self.width <= 0:
            raise ConfigError(
                f"preprocess size is {self.height}x{self.width}, expected positive height and width",
                "give the network's input size, e.g. 224x224",
            )
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ConfigError(
                f"crop_fraction is {self.crop_fraction}, expected a value in (0, 1]",
                "use 0.875 for the usual ImageNet resize-256/crop-224, or 1.0 for no crop",
            )
        if self.fused_preprocess is not None and self.fused_preprocess != "dynamic":
            parse_frame_size(self.fused_preprocess)  # raises for anything but HxW
        if self.fused_postprocess is not None:
            FusedPostprocess.parse(self.fused_postprocess)  # raises for text trtpipe does not write
        channels = self.channels
        for name in ("mean", "std"):
            values = getattr(self, name)
            if isinstance(values, (int, float)):
                values = (values,)
            if len(values) == 1 and channels > 1:  # one value stands for every channel
                values = tuple(values) * channels
            # frozen: the broadcast is stored once here, so every consumer sees one value per channel
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if len(self.mean) != channels or len(self.std) != channels or min(self.std) <= 0:
            raise ConfigError(
                f"mean {list(self.mean)} / std {list(self.std)} are not {channels} values (channel_order "
                f"{self.channel_order}) with positive std",
                f"give one value per channel, or one for all (e.g. --mean 0.5 --std 0.5); ImageNet's RGB values are "
                "0.485,0.456,0.406 / 0.229,0.224,0.225",
            )
        if self.labels is not None and not isinstance(self.labels, (str, tuple)):
            raise ConfigError(f"labels is {self.labels!r}, expected a label set name, a file or a list of names",
                              'write "labels": "imagenet1k", "labels": "classes.txt" or "labels": ["cat", "dog"]')

    @property
    def channels(self) -> int:
        """How many channels the network's image input has (1 for GRAY, else one per channel_order letter)."""
        return 1 if self.channel_order == GRAY else len(self.channel_order)

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"

    @property
    def fused_frame_size(self) -> tuple[int, int] | None:
        """(height, width) of the frames a fused-preprocessing network takes; None when dynamic or not fused."""
        if self.fused_preprocess in (None, "dynamic"):
            return None
        return parse_frame_size(self.fused_preprocess)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists, not tuples), equal to what ``load`` reads back."""
        data = {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()}
        if not data["assumed"]:  # only when set: specs (and sidecars, cache keys) written before the field still match
            del data["assumed"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "preprocess spec") -> "PreprocessSpec":
        return _from_mapping(cls, data, source)

    def replace(self, **changes: Any) -> "PreprocessSpec":
        """A copy with ``changes``; a new channel count keeps mean/std that are one value for all channels."""
        order = changes.get("channel_order", self.channel_order)
        if (1 if order == GRAY else len(order)) != self.channels:
            for name in ("mean", "std"):
                values = getattr(self, name)
                if name not in changes and len(set(values)) == 1:
                    changes[name] = values[:1]
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class FusedPostprocess:
    """What a network with its post-processing fused in returns (``PreprocessSpec.fused_postprocess`` is its text).

    Detection: ``num_detections`` (N, 1) int32, ``boxes`` (N, max_detections, 4) float32 xyxy in network-input pixels,
    ``scores`` (N, max_detections) float32, ``classes`` (N, max_detections) int32 (padding: score 0, class -1).
    Classification: ``scores`` (N, topk) float32 probabilities, ``indices`` (N, topk) int32. Segmentation: ``mask``
    (N, h, w) uint8 (int32 past 256 classes) class ids.
    """

    task: str
    layout: str | None = None  # detection: yolov8 | yolov5 | detr | detr_sigmoid
    classes: int | None = None
    topk: int | None = None
    score_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int | None = None
    mask_dtype: str | None = None  # segmentation: uint8 | int32
    nms: str | None = None  # YOLO detection: onnx (NonMaxSuppression) | loop (an ONNX Loop, for TensorRT-RTX)

    _KEYS = (("classes", "classes", int), ("topk", "topk", int), ("conf", "score_threshold", float),
             ("iou", "iou_threshold", float), ("max_det", "max_detections", int), ("mask", "mask_dtype", str),
             ("nms", "nms", str))

    def text(self) -> str:
        """``detection:yolov8,classes=80,conf=0.25,iou=0.45,max_det=300`` (what the spec and sidecar store)."""
        parts = [self.layout] if self.layout else []
        parts += [f"{key}={getattr(self, field)}" for key, field, _ in self._KEYS if getattr(self, field) is not None]
        return f"{self.task}:{','.join(parts)}"

    @classmethod
    def parse(cls, text: str) -> "FusedPostprocess":
        """The inverse of :meth:`text`.

        Raises:
            ConfigError: text that :meth:`text` does not write.
        """
        task, _, rest = str(text).partition(":")
        values: dict[str, Any] = {}
        by_key = {key: (field, kind) for key, field, kind in cls._KEYS}
        try:
            for part in filter(None, rest.split(",")):
                key, eq, value = part.partition("=")
                if not eq:
                    values["layout"] = key
                    continue
                field, kind = by_key[key]
                values[field] = kind(value)
            _check_choice("fused_postprocess task", task, TASKS)
        except (KeyError, ValueError):
            raise ConfigError(f"fused_postprocess {text!r} is not what trtpipe writes",
                              "e.g. detection:yolov8,classes=80,conf=0.25,iou=0.45,max_det=300; rebuild with "
                              "--fuse-postprocess") from None
        return cls(task, **values)


def postprocess_options(score_threshold: float = 0.25, iou_threshold: float = 0.45, max_detections: int = 300,
                        topk: int = 5) -> str:
    """``BuildConfig.fuse_postprocess`` text: ``conf=0.25,iou=0.45,max_det=300,topk=5`` (the host heads' defaults)."""
    return f"conf={score_threshold:g},iou={iou_threshold:g},max_det={int(max_detections)},topk={int(topk)}"


def parse_postprocess_options(text: str) -> dict[str, float | int]:
    """The inverse of :func:`postprocess_options`, as ``fuse_postprocess()`` keyword arguments.

    Raises:
        ConfigError: text postprocess_options does not write.
    """
    names = {"conf": ("score_threshold", float), "iou": ("iou_threshold", float), "max_det": ("max_detections", int),
             "topk": ("topk", int)}
    options = {}
    try:
        for part in filter(None, str(text).split(",")):
            key, _, value = part.partition("=")
            name, kind = names[key]
            options[name] = kind(value)
    except (KeyError, ValueError):
        raise ConfigError(f"--fuse-postprocess options {text!r} are not conf=,iou=,max_det=,topk=",
                          "e.g. conf=0.25,iou=0.45,max_det=300,topk=5") from None
    return options


def check_channel_order(order: str) -> None:
    """Raises ConfigError unless ``order`` is GRAY or one letter per channel from CHANNEL_LETTERS (RGB, BGRA, ...)."""
    if order == GRAY or (isinstance(order, str) and order and set(order) <= set(CHANNEL_LETTERS)):
        return
    raise ConfigError(
        f"channel_order is {order!r}, expected GRAY or one letter per channel from R, G, B and A (alpha, 255)",
        "e.g. RGB, BGR, GRAY (one luma channel), RGBA or BGRA",
    )


def channel_mix(order: str) -> tuple[tuple[tuple[float, float, float], ...], tuple[float, ...]]:
    """How each network channel is made from a BGR pixel: (weights on (B, G, R) per channel, offset per channel).

    ``RGB`` -> ((0,0,1), (0,1,0), (1,0,0)) and offsets 0; ``GRAY`` -> ((0.114, 0.587, 0.299),); ``A`` -> weights 0 and
    offset 255 (opaque). Values are in 0..255 pixel units, before pixel_scale and mean/std.
    """
    check_channel_order(order)
    letters = [GRAY] if order == GRAY else list(order)
    weights, offsets = [], []
    for letter in letters:
        if letter == GRAY:
            weights.append(tuple(GRAY_WEIGHTS[c] for c in "BGR"))
        else:
            weights.append(tuple(1.0 if c == letter else 0.0 for c in "BGR"))
        offsets.append(255.0 if letter == "A" else 0.0)
    return tuple(weights), tuple(offsets)


def parse_frame_size(text: str) -> tuple[int, int]:
    """``"1080x1920"`` -> (1080, 1920): a frame's height and width, as numpy and TensorRT shapes order them.

    Raises:
        ConfigError: anything but two whole numbers joined by ``x`` (or ``X``); a side below 1, with its own message.
    """
    match = re.fullmatch(r"\s*(-?\d+)\s*[xX]\s*(-?\d+)\s*", str(text))
    if not match:
        raise ConfigError(
            f"frame size {text!r} is not HEIGHTxWIDTH",
            "write the camera's frame size height first, e.g. 1080x1920, or 'dynamic' for any size within the profile",
        )
    height, width = int(match[1]), int(match[2])
    if min(height, width) < 1:
        raise ConfigError(
            f"frame size {text!r} has height {height} and width {width}, expected both at least 1 pixel",
            "give the frames' real size, height first, e.g. 1080x1920, or 'dynamic' for any size within the profile",
        )
    return height, width


def parse_fuse_preprocess(text: str) -> str:
    """A ``--fuse-preprocess`` value: "dynamic", or a frame size normalised to ``HxW`` (" 1080X1920" -> "1080x1920")."""
    if str(text).strip().lower() == "dynamic":
        return "dynamic"
    height, width = parse_frame_size(text)
    return f"{height}x{width}"


def preprocess_path_for(onnx_path: str | Path) -> Path:
    """``engines/mobilenetv2.onnx`` -> ``engines/mobilenetv2.preprocess.json``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.name.split(".")[0] + ".preprocess.json")


def read_json(path: Path) -> Any:
    """Reads a JSON file, turning a missing or corrupt file into an InputError naming it."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file", "check the path") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, expected a JSON file", "give the file's path") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})",
            "the file is corrupt or truncated; regenerate it",
        ) from None


# ----------------------------------------------------------------------------------------------
# Shapes and optimization profiles
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchRange:
    """A MIN:OPT:MAX batch-size range for the optimization profile (trtexec's min/opt/max shapes)."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if self.min < 1 or not (self.min <= self.opt <= self.max):
            raise ConfigError(
                f"batch range {self.min}:{self.opt}:{self.max} is invalid, expected 1 <= MIN <= OPT <= MAX",
                "write --batch MIN:OPT:MAX, e.g. --batch 1:8:32, or one number for a fixed batch",
            )

    @classmethod
    def parse(cls, text: str) -> "BatchRange":
        """Parses ``"8"`` (fixed) or ``"1:8:32"``."""
        parts = str(text).split(":")
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            numbers = []
        if len(numbers) == 1:
            numbers *= 3
        if len(numbers) != 3:
            raise ConfigError(
                f"batch range {text!r} is not N or MIN:OPT:MAX",
                "write --batch MIN:OPT:MAX with whole numbers, e.g. --batch 1:8:32",
            )
        return cls(*numbers)

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"


@dataclass(frozen=True)
class ShapeRange:
    """Min/opt/max shapes of one network input: an optimization profile's entry, given on the command line as
    trtexec gives it (``--minShapes x:1x3x224x224 --optShapes x:8x3x224x224 --maxShapes x:32x3x224x224``)."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ConfigError(
                f"input {self.name!r}: min/opt/max shapes {self.min}/{self.opt}/{self.max} differ in rank",
                "give three shapes of the same rank",
            )
        if any(d < 1 for d in self.min):
            raise ConfigError(
                f"input {self.name!r}: shapes {_dims(self.min)}:{_dims(self.opt)}:{_dims(self.max)} have a dimension "
                f"of {min(self.min)}, expected every dimension at least 1",
                f"a profile gives concrete sizes (no 0 or -1 for a dynamic axis): the smallest, tuned-for and largest, "
                f"e.g. {ShapeRange.example(self.name)}",
            )
        for low, mid, high in zip(self.min, self.opt, self.max):
            if not (low <= mid <= high):
                raise ConfigError(
                    f"input {self.name!r}: shapes {_dims(self.min)}:{_dims(self.opt)}:{_dims(self.max)} are "
                    "not ordered, expected 1 <= MIN <= OPT <= MAX in every dimension",
                    f"give --minShapes/--optShapes/--maxShapes in that order of size, e.g. "
                    f"{ShapeRange.example(self.name)}",
                )

    @staticmethod
    def example(name: str, shape: str = "3x224x224", batch: tuple[int, int, int] = (1, 8, 32)) -> str:
        """trtexec's profile options for input ``name`` with ``batch`` (min, opt, max) over ``shape``, for hints."""
        low, opt, high = batch
        return f"--minShapes {name}:{low}x{shape} --optShapes {name}:{opt}x{shape} --maxShapes {name}:{high}x{shape}"

    def as_options(self) -> str:
        """This range as trtexec's ``--minShapes/--optShapes/--maxShapes`` (how hints and notes name it)."""
        return (f"--minShapes {self.name}:{_dims(self.min)} --optShapes {self.name}:{_dims(self.opt)} "
                f"--maxShapes {self.name}:{_dims(self.max)}")

    @classmethod
    def parse(cls, text: str) -> "ShapeRange":
        """Parses the deprecated ``build --shapes name:1x3x224x224:8x3x224x224:32x3x224x224`` (one shape: fixed)."""
        parts = text.split(":")
        # Input names may contain ':' (e.g. 'input:0'); the shapes are the trailing 1 or 3 fields.
        for count in (3, 1):
            if len(parts) > count and all(re.fullmatch(r"-?\d+(x-?\d+)*", p) for p in parts[-count:]):
                name = ":".join(parts[:-count])
                shapes = [tuple(int(d) for d in p.split("x")) for p in parts[-count:]]
                if count == 1:
                    shapes *= 3
                return cls(name, *shapes)
        raise ConfigError(
            f"shape spec {text!r} is not NAME:MIN:OPT:MAX",
            f"give the profile as trtexec does: {ShapeRange.example('images', '3x640x640')}",
        )

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    def __str__(self) -> str:
        return f"{self.name}:{_dims(self.min)}:{_dims(self.opt)}:{_dims(self.max)}"


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


# ----------------------------------------------------------------------------------------------
# Build configuration
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# INT8 fidelity target
# ----------------------------------------------------------------------------------------------

# What an INT8 Q/DQ ONNX must keep of FP32's outputs on the held-back calibration images, by task. Chosen from
# measurement (tests/perf/bench_fidelity.py, EfficientNet-Lite0 with real weights): cosine on the held-back images
# tracks cosine on independent photos within 0.0003, and cosine >= 0.999 there went with top-1 agreement >= 0.95
# on 480 independent crops. Top-1 agreement over *all* held-back images is not in the default: on a few dozen
# images it is decided by the near-ties (top-2 probabilities within a few percent), which any rounding flips, so
# it moved by +-0.03 between neighbouring searches; agreement on the images FP32 is confident about does not.
DEFAULT_FIDELITY_TARGETS = {
    "classification": "cosine>=0.999,top1_confident>=0.99",
    "detection": "f1>=0.95",
    "segmentation": "miou>=0.95",
}
FIDELITY_METRICS = {  # target name -> (FidelityResult field, how a message names it)
    "cosine": ("cosine_mean", "cosine"),
    "top1": ("top1_agreement", "top-1 agreement"),
    "top1_confident": ("top1_agreement_confident", "top-1 agreement on confident images"),
    # the task's own measure (trtpipe/quant/task_fidelity.py): FP32's detections / masks as the ground truth
    "f1": ("detection_f1", "detection F1"),
    "map50": ("detection_map50", "detection mAP@0.5"),
    "box_iou": ("detection_mean_iou", "mean IoU of matched boxes"),
    "miou": ("mask_miou", "mask mIoU"),
    "pixels": ("pixel_agreement", "pixel agreement"),
}
# Bounds a target cannot skip when their figure is absent: a detection F1 on too few FP32 boxes is "not measurable",
# and passing it would be the blind spot over again (top-1 on confident images, absent without confident images,
# is skipped and named instead, as before).
REQUIRED_METRICS = frozenset({"f1", "map50", "box_iou", "miou", "pixels"})
KEEP_PRECISIONS = ("auto", "fp16", "fp32")


@dataclass(frozen=True)
class FidelityTarget:
    """Lower bounds on fidelity figures against FP32 (``None``: that figure is not part of the target)."""

    cosine: float | None = None  # mean per-image cosine similarity of the first output
    top1: float | None = None  # share of images whose top-1 class is FP32's (classifiers)
    top1_confident: float | None = None  # the same on images where FP32's top-1 probability is >= 0.5
    f1: float | None = None  # detections against FP32's (IoU 0.5, same class, after the head's NMS)
    map50: float | None = None  # mAP@0.5 of the detections, FP32's as the ground truth
    box_iou: float | None = None  # mean IoU of the detections matched to FP32's
    miou: float | None = None  # mean IoU of the argmax masks against FP32's, over the classes FP32 gives
    pixels: float | None = None  # share of mask pixels with FP32's class

    def __post_init__(self) -> None:
        for name in FIDELITY_METRICS:
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ConfigError(
                    f"fidelity target {name} is {value}, expected a value in (0, 1]",
                    "e.g. --fidelity-target cosine=0.999,top1=0.95",
                )
        if not self.bounds:
            raise ConfigError("the fidelity target names no figure", "e.g. --fidelity-target cosine=0.999 (or none)")

    @property
    def bounds(self) -> dict[str, float]:
        """{metric: lower bound} of the figures in the target."""
        return {name: getattr(self, name) for name in FIDELITY_METRICS if getattr(self, name) is not None}

    @classmethod
    def parse(cls, text: str) -> "FidelityTarget":
        """Parses ``cosine>=0.999,top1>=0.95`` (``=`` works as ``>=``; metrics: :data:`FIDELITY_METRICS`).

        Raises:
            ConfigError: an unknown metric, a value that is not a number in (0, 1].
        """
        values: dict[str, float] = {}
        for part in (p.strip() for p in text.split(",")):
            match = re.fullmatch(r"([a-z0-9_]+)\s*>?=\s*([0-9.eE+-]+)", part)
            if not match or match.group(1) not in FIDELITY_METRICS:
                raise ConfigError(
                    f"fidelity target {text!r}: {part!r} is not METRIC>=VALUE with METRIC one of "
                    f"{', '.join(FIDELITY_METRICS)}",
                    "write e.g. --fidelity-target cosine=0.999,top1_confident=0.99, or auto, or none",
                )
            try:
                values[match.group(1)] = float(match.group(2))
            except ValueError:
                raise ConfigError(
                    f"fidelity target {text!r}: {match.group(2)!r} is not a number", "e.g. cosine=0.999"
                ) from None
        return cls(**values)

    def __str__(self) -> str:
        """The canonical text, e.g. ``cosine>=0.999,top1_confident>=0.99`` (what ``parse`` reads back)."""
        return ",".join(f"{name}>={value:g}" for name, value in self.bounds.items())

    def describe(self) -> str:
        """For people: ``cosine >= 0.999 and top-1 agreement on confident images >= 0.99``."""
        return " and ".join(f"{FIDELITY_METRICS[name][1]} >= {value:g}" for name, value in self.bounds.items())


def resolve_fidelity_target(text: str, task: str = "classification") -> FidelityTarget | None:
    """``auto`` -> the task's default target, ``none`` -> None (unchecked), else :meth:`FidelityTarget.parse`."""
    if text == "none":
        return None
    if text == "auto":
        return FidelityTarget.parse(DEFAULT_FIDELITY_TARGETS.get(task, DEFAULT_FIDELITY_TARGETS["detection"]))
    return FidelityTarget.parse(text)


#: trtexec's ``--hardwareCompatibilityLevel`` values -> TensorRT's ``HardwareCompatibilityLevel`` member.
HARDWARE_COMPATIBILITY_LEVELS = {
    "none": "NONE",  # the engine runs on the compute capability it was built on (TensorRT's default)
    "ampere+": "AMPERE_PLUS",  # any GPU of compute capability 8.0 or later (Ampere, Ada, Hopper, Blackwell)
    "sameComputeCapability": "SAME_COMPUTE_CAPABILITY",  # any GPU of the build GPU's compute capability
}


@dataclass(frozen=True)
class ProfileOptions:
    """One optimization profile as the command line gives it: ``--batch`` and/or ``--minShapes/--optShapes/--maxShapes``
    (trtexec's ``--profile=N`` groups); resolved against the network's inputs by ``trtpipe.builder.profiles``."""

    batch: BatchRange | None = None  # batch range of every dynamic-batch input; None: 1:1:1 (or the shapes')
    shapes: tuple[ShapeRange, ...] = ()  # per-input ranges; override batch for the inputs named

    def __post_init__(self) -> None:
        names = [s.name for s in self.shapes]
        if len(set(names)) != len(names):
            raise ConfigError(f"the optimization profile names an input twice: {names}", "give each input once")

    def describe(self) -> str:
        parts = ([f"--batch {self.batch}"] if self.batch else []) + [s.as_options() for s in self.shapes]
        return " ".join(parts) or "(defaults)"


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides what engine a build produces. ``None`` means "the default"."""

    precision: str = "fp32"  # fp32 | fp16 | int8
    batch: BatchRange | None = None  # profile for the batch axis; None: 1:1:1 for a dynamic batch
    shapes: tuple[ShapeRange, ...] = ()  # per-input profiles; override batch for the inputs named
    workspace_mib: int | None = None  # workspace memory pool limit; None: TensorRT's default
    optimization_level: int | None = None  # builder optimization level 0..5; None: TensorRT's default (3)
    flavor: str | None = None  # tensorrt | tensorrt_rtx; None: the one installed (tensorrt first)
    compute_capabilities: tuple[str, ...] = ()  # TensorRT-RTX AOT targets, e.g. ("SM86",); (): flavour default
    timing_cache: str | None = None  # timing cache file; None: engines/timing.cache beside the engine
    # INT8 (explicit Q/DQ by default; "implicit" is TensorRT 10's BuilderFlag.INT8 + calibrator)
    int8_mode: str = "explicit"  # explicit | implicit
    fp16_mode: str = "explicit"  # explicit (FP16 ONNX, strongly typed) | flag (BuilderFlag.FP16, TensorRT 10)
    calib_images: str | None = None  # folder of calibration images (int8)
    calib_method: str = "percentile"  # percentile | entropy | max | mse (percentile measured best, README "FP16 and INT8")
    calib_max_images: int = 256
    keep_fp: tuple[str, ...] = ()  # node names kept in floating point (int8 mixed precision)
    auto_keep: int = 0  # keep the K most sensitive layers in floating point
    bias_correction: bool = True  # int8: cancel each layer's mean rounding shift through its bias
    # int8: what the Q/DQ ONNX must keep of FP32 on held-back calibration images; layers are kept in floating
    # point, most harmful first, until it does. "auto": the task's DEFAULT_FIDELITY_TARGETS; "none": unchecked.
    fidelity_target: str = "auto"
    keep_precision: str = "auto"  # int8: kept layers in fp16 | fp32 | auto (FP16 where it meets the target)
    max_fp_share: float = 0.25  # int8: the search keeps at most this share of the quantizable layers in FP
    fuse_preprocess: str | None = None  # "HxW" | "dynamic": the engine takes uint8 NHWC BGR frames, preprocesses on the GPU
    # The task head inside the engine (--fuse-postprocess), as "conf=0.25,iou=0.45,max_det=300,topk=5"
    # (postprocess_options() writes it); None: the engine returns the raw outputs.
    fuse_postprocess: str | None = None
    # Profiles 1.. (trtexec's --profile=1 ...); profile 0 is ``batch``/``shapes`` above. (): one profile.
    extra_profiles: tuple[ProfileOptions, ...] = ()
    # trtexec's --hardwareCompatibilityLevel: None/"none" (the build GPU's compute capability), "ampere+",
    # "sameComputeCapability" (TensorRT 10/11); TensorRT-RTX maps "ampere+" to its SM80+ targets.
    hardware_compatibility: str | None = None
    version_compatible: bool = False  # --versionCompatible: runs on later TensorRT of the same major
    exclude_lean_runtime: bool = False  # --excludeLeanRuntime: the plan leaves out the lean runtime (needs --vc)
    strip_weights: bool = False  # --stripWeights: STRIP_PLAN + REFIT_IDENTICAL, refitted from the ONNX at load
    refit: bool = False  # --refit: BuilderFlag.REFIT, weights can be replaced later (trtpipe refit)

    def __post_init__(self) -> None:
        _check_choice("precision", self.precision, PRECISIONS)
        if self.hardware_compatibility is not None:
            _check_choice("--hardwareCompatibilityLevel", self.hardware_compatibility,
                          tuple(HARDWARE_COMPATIBILITY_LEVELS))
        if self.exclude_lean_runtime and not self.version_compatible:
            raise ConfigError(
                "--excludeLeanRuntime without --versionCompatible: only a version-compatible plan carries a lean "
                "runtime to leave out (TensorRT refuses the flag alone)",
                "add --versionCompatible (--vc), or drop --excludeLeanRuntime",
            )
        _check_choice("int8 mode", self.int8_mode, ("explicit", "implicit"))
        _check_choice("fp16 mode", self.fp16_mode, ("explicit", "flag"))
        _check_choice("calibration method", self.calib_method, ("entropy", "max", "mse", "percentile"))
        _check_choice("keep precision", self.keep_precision, KEEP_PRECISIONS)
        resolve_fidelity_target(self.fidelity_target)  # a malformed target fails here, not after calibrating
        if not 0.0 <= self.max_fp_share <= 1.0:
            raise ConfigError(
                f"--max-fp-share is {self.max_fp_share}, expected a share in [0, 1]",
                "e.g. --max-fp-share 0.25 (a quarter of the quantizable layers may stay in floating point)",
            )
        if self.flavor is not None:
            _check_choice("flavor", self.flavor, ("tensorrt", "tensorrt_rtx"))
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise ConfigError(
                f"builder optimization level is {self.optimization_level}, expected 0..5",
                "use --opt-level 3 (TensorRT's default); higher builds slower and may run faster",
            )
        if self.workspace_mib is not None and self.workspace_mib <= 0:
            raise ConfigError(
                f"workspace is {self.workspace_mib} MiB, expected a positive size", "e.g. --workspace 4096"
            )
        ProfileOptions(self.batch, self.shapes)  # an input named twice fails here
        if self.precision == "int8" and self.calib_images is None and self.int8_mode == "implicit":
            raise ConfigError(
                "--precision int8 --int8-mode implicit needs calibration images, none given",
                "add --images calib_data/ (make calib-data fills it)",
            )
        if self.fuse_preprocess is not None and self.fuse_preprocess != "dynamic":
            parse_frame_size(self.fuse_preprocess)
        for cc in self.compute_capabilities:
            if not re.fullmatch(r"SM\d{2,3}", cc):
                raise ConfigError(
                    f"compute capability {cc!r} is not of the form SM86",
                    "write e.g. --compute-capability SM86,SM89 (SM75 for Turing)",
                )

    def fingerprint(self) -> dict[str, Any]:
        """The fields that change the engine (not where caches live), for the sidecar's rebuild check."""
        data = {
            "precision": self.precision,
            "batch": str(self.batch) if self.batch else None,
            "shapes": [str(s) for s in self.shapes],
            "workspace_mib": self.workspace_mib,
            "optimization_level": self.optimization_level,
            "compute_capabilities": list(self.compute_capabilities),
        }
        if self.precision in ("int8", "fp8"):
            data.update(
                int8_mode=self.int8_mode,
                calib_method=self.calib_method,
                calib_max_images=self.calib_max_images,
                keep_fp=sorted(self.keep_fp),
                auto_keep=self.auto_keep,
                bias_correction=self.bias_correction,
                fidelity_target=self.fidelity_target,
                keep_precision=self.keep_precision,
                max_fp_share=self.max_fp_share,
            )
        if self.precision == "fp16":
            data.update(fp16_mode=self.fp16_mode)
        if self.fuse_preprocess is not None:  # only when set: sidecars written before the option still match
            data.update(fuse_preprocess=self.fuse_preprocess)
        if self.fuse_postprocess is not None:
            data.update(fuse_postprocess=self.fuse_postprocess)
        # The options of issue 20, likewise only when set.
        if self.extra_profiles:
            data.update(extra_profiles=[{"batch": str(p.batch) if p.batch else None, "shapes": [str(s) for s in p.shapes]}
                                        for p in self.extra_profiles])
        if self.hardware_compatibility not in (None, "none"):
            data.update(hardware_compatibility=self.hardware_compatibility)
        for name in ("version_compatible", "exclude_lean_runtime", "strip_weights", "refit"):
            if getattr(self, name):
                data[name] = True
        return data

    @property
    def profile_options(self) -> tuple[ProfileOptions, ...]:
        """Every optimization profile, profile 0 first (``batch``/``shapes``, then ``extra_profiles``)."""
        return (ProfileOptions(self.batch, self.shapes), *self.extra_profiles)


# ----------------------------------------------------------------------------------------------
# Engine sidecar
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape (-1 for dynamic) and dtype (numpy name) of one engine I/O tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorInfo":
        return cls(str(data["name"]), tuple(int(d) for d in data["shape"]), str(data["dtype"]))


@dataclass(frozen=True)
class EngineSidecar(_JsonFile):
    """What an engine is and how it was built; written as ``ENGINE.json`` beside every engine."""

    engine_file: str  # engine file name (the sidecar sits beside it)
    engine_sha256: str
    engine_bytes: int
    onnx_path: str  # the ONNX the engine was built from, as given to the builder
    onnx_sha256: str  # sha256 of that ONNX (and its external data, if any)
    precision: str  # fp32 | fp16 | int8
    precision_realised: str  # how: e.g. "fp32", "strongly typed FP16 ONNX", "Q/DQ ONNX (entropy)"
    profiles: tuple[dict, ...]  # one dict per profile: {input name: {"min", "opt", "max"}}
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    trt_flavor: str  # tensorrt | tensorrt_rtx
    trt_version: str
    target: dict  # {"kind": "gpu", "gpu_name", "compute_capability"} or {"kind": "aot", "compute_capabilities"}
    build_config: dict  # BuildConfig.fingerprint() of the build
    build_seconds: float
    built_at: str  # ISO 8601, UTC
    trtpipe_version: str
    weights: str  # from the preprocess spec: "pretrained:...", "random", ... or "unknown"
    preprocess: dict | None = None  # PreprocessSpec.to_dict(), when known
    calibration_cache_sha256: str | None = None
    notes: tuple[str, ...] = ()  # what the user should know: defaults taken, layers kept in FP, ...
    schema_version: int = SIDECAR_SCHEMA_VERSION
    # The ONNX TensorRT parsed: the FP16 or Q/DQ ONNX written for this build, else onnx_path itself. ONNX Runtime
    # runs it for `--backend onnxruntime` on this engine, so the CPU fallback computes in the precision built.
    network_onnx_path: str | None = None  # as given to the parser (relative paths: to the working directory)
    network_onnx_sha256: str | None = None  # of that file and its external data, checked before it is run
    # fp32 | fp16 | int8 for what trtpipe wrote; a model that came quantized: its own ("fp8 (E4M3) weights and
    # activations", "int8 as quantized in the ONNX", see trtpipe.onnx.quantized)
    network_onnx_precision: str | None = None
    # int8: the fidelity check of the Q/DQ ONNX (trtpipe.quant.search.SearchResult.to_json): target, figures on the
    # held-back images, image counts, layers kept and why; None when nothing was checked (fp32/fp16, given Q/DQ)
    fidelity: dict | None = None
    # Weight-stripped and refittable engines (build --stripWeights / --refit; trtpipe refit).
    weights_stripped: bool = False  # the plan lacks its refittable weights: refit from an ONNX before it runs
    refittable: bool = False  # built with REFIT / REFIT_IDENTICAL: trtpipe refit can replace its weights
    graph_sha256: str | None = None  # trtpipe.onnx.structure.graph_structure_sha256 of the network ONNX (no values)
    weights_sha256: str | None = None  # sha256 of the weights in the plan (the network ONNX's initializer values)
    weights_onnx: str | None = None  # the ONNX the plan's weights came from, when a refit replaced them
    # What was done to the given ONNX before TensorRT parsed it, in order: {"step": "opset_conversion", "from", "to",
    # "max_abs_error", ...} or {"step": "specialise_and_fold" | "fold_constants", "inputs", "onnx", "onnx_sha256", ...}
    onnx_rewrites: tuple[dict, ...] = ()
    # class names the exporter stored in the ONNX's metadata (Ultralytics `names`, PaddleOCR `character`); () if none
    class_names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["inputs"] = [t.to_dict() for t in self.inputs]
        data["outputs"] = [t.to_dict() for t in self.outputs]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "sidecar") -> "EngineSidecar":
        version = data.get("schema_version")
        if version != SIDECAR_SCHEMA_VERSION:
            raise InputError(
                f"{source}: sidecar schema version {version}, expected {SIDECAR_SCHEMA_VERSION}",
                "rebuild the engine with this trtpipe (trtpipe build ... --force)",
            )
        data = dict(data)
        try:
            data["inputs"] = [TensorInfo.from_dict(t) for t in data["inputs"]]
            data["outputs"] = [TensorInfo.from_dict(t) for t in data["outputs"]]
            return _from_mapping(cls, data, source)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"{source}: sidecar is incomplete or malformed ({exc})",
                "rebuild the engine with trtpipe build ... --force",
            ) from None

    @property
    def precision_shown(self) -> str:
        """The precision to print: the asked one (``precision``), or for a model that came quantized, what its own
        Q/DQ make it (``--precision fp32`` of an FP8 Q/DQ model builds an FP8 engine; ``fp16`` of it, "fp8 (E4M3)
        weights and activations; fp16 elsewhere"). Classic BuilderFlag builds get their precision from the flags."""
        named = self.network_onnx_precision
        if named and named not in PRECISIONS and "BuilderFlag" not in self.precision_realised:
            return named
        return self.precision

    @property
    def flavor_label(self) -> str:
        """``"TensorRT-RTX 1.7.1.116"`` or ``"TensorRT 10.3.0"``."""
        return f"{'TensorRT-RTX' if self.trt_flavor == 'tensorrt_rtx' else 'TensorRT'} {self.trt_version}"

    @property
    def target_description(self) -> str:
        """The GPU the engine was built for, e.g. "NVIDIA A100 (compute capability 8.0)", or its RTX AOT targets."""
        target = self.target or {}
        if target.get("kind") == "gpu":
            return f"{target.get('gpu_name', 'an unknown GPU')} (compute capability {target.get('compute_capability', '?')})"
        capabilities = target.get("compute_capabilities")
        if capabilities:
            return "RTX GPUs " + "/".join(capabilities) + " (ahead-of-time build, kernels compiled on first run)"
        return RTX_DEFAULT_TARGETS + ", ahead-of-time build, kernels compiled on first run"

    @property
    def built_by(self) -> str:
        """``"built by TensorRT-RTX 1.7.1.116 for RTX GPUs ..."``: the one wording every message uses."""
        return f"built by {self.flavor_label} for {self.target_description}"

    @property
    def preprocess_spec(self) -> PreprocessSpec | None:
        return PreprocessSpec.from_dict(self.preprocess) if self.preprocess else None


def sidecar_path_for(engine_path: str | Path) -> Path:
    """``engines/m_fp32.engine`` -> ``engines/m_fp32.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")

"""What calibration, sensitivity and fidelity feed a network: its image input, in that input's dtype and batch size.

The builder takes models whose image input is not a dynamic-batch float NCHW tensor: a uint8 NHWC image (TF
detection exports), a fixed batch, weights listed as graph inputs (``keep_initializers_as_inputs`` exports), a
second non-image input. ``infer`` feeds such a model the preprocessed image cast to the input's dtype; this module
makes the ONNX Runtime passes of ``trtpipe.quant`` feed them the same way, and refuses, naming the input, what no
image folder can feed (two network inputs, a preprocess spec whose layout or size disagrees with the input).

A :class:`Feeder` is attached to an :class:`~trtpipe.quant.images.ImageSet` (``images.for_network(feeder)``);
``ImageSet.batches`` then yields what ``session.run`` takes for the image input, and :func:`as_feed` turns a batch
into the feed dictionary. Python callers with a multi-input model pass a ``feeds`` hook instead.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np

from trtpipe.errors import InputError, OnnxModelError
from trtpipe.spec import PreprocessSpec, TensorInfo, preprocess_path_for

log = logging.getLogger("trtpipe")

# feeds(images) -> {input name: array} for every network input; ``images`` is one batch of preprocessed images
# (the spec's layout, float32). The hook of a multi-input model's Python caller.
FeedsHook = Callable[[np.ndarray], Mapping[str, np.ndarray]]

_FLOAT_DTYPES = ("float32", "float16", "float64")
_INTEGER_DTYPES = ("uint8", "int8", "uint16", "int16", "int32", "int64")


@dataclass(frozen=True)
class Feeder:
    """How one network is fed from image batches.

    Attributes:
        image_input: the network input the images go to (name, shape with -1 for dynamic axes, numpy dtype).
        inputs: every real network input (initializers listed as graph inputs excluded).
        hook: builds the full feed dictionary from an image batch (multi-input models, Python API only).
    """

    image_input: TensorInfo
    inputs: tuple[TensorInfo, ...]
    hook: FeedsHook | None = None

    @property
    def fixed_batch(self) -> int | None:
        """The input's batch size when the ONNX fixes it, else None (any batch size runs)."""
        if not self.image_input.shape or self.image_input.shape[0] <= 0:
            return None
        return int(self.image_input.shape[0])

    def batch_size(self, wanted: int) -> int:
        """``wanted`` for a dynamic batch axis, else the fixed batch (a fixed-batch network runs no other)."""
        return self.fixed_batch or wanted

    def feed(self, batch: np.ndarray):
        """A preprocessed float32 batch -> what ``session.run`` takes: an array in the input's dtype, or the hook's dict."""
        if self.hook is not None:
            return dict(self.hook(batch))
        return cast_batch(batch, self.image_input.dtype)


def cast_batch(batch: np.ndarray, dtype: str) -> np.ndarray:
    """The preprocessed batch in the network input's dtype, as ``Pipeline`` casts it.

    Integer types are rounded and clipped to their range first; for the raw pixels an integer input receives
    (:func:`check_image_input` refuses a normalising spec) that is the same as Pipeline's plain cast.
    """
    target = np.dtype(dtype)
    if batch.dtype == target:
        return batch
    if np.issubdtype(target, np.integer):
        info = np.iinfo(target)
        return np.clip(np.rint(batch), info.min, info.max).astype(target)
    return batch.astype(target)


def real_inputs(model) -> tuple[TensorInfo, ...]:
    """The model's network inputs: graph inputs that are not initializers (name, shape with -1, numpy dtype)."""
    from trtpipe.onnx.load import graph_io

    return graph_io(model)[0]


def image_input_name(model) -> str:
    """The name of the first network input that is not an initializer (the one an image batch feeds)."""
    inputs = real_inputs(model)
    if not inputs:
        raise OnnxModelError(
            f"model {model.graph.name!r} has no network input (every graph input is an initializer)",
            "export the model with its image input",
        )
    return inputs[0].name


def as_feed(batch, input_name: str) -> dict:
    """``session.run``'s feed dictionary: a dict passes through (a feeds hook's), an array feeds ``input_name``."""
    return dict(batch) if isinstance(batch, Mapping) else {input_name: batch}


def feed_size(batch) -> int:
    """Images in one batch (an array's first axis, or a feed dictionary's first value's)."""
    if isinstance(batch, Mapping):
        return len(next(iter(batch.values()))) if batch else 0
    return len(batch)


def is_onnxruntime_error(exc: BaseException) -> bool:
    """ONNX Runtime's own exceptions (Fail, InvalidArgument, ...) all live in its pybind module, subclassing Exception."""
    return type(exc).__module__.startswith("onnxruntime")


@contextlib.contextmanager
def onnxruntime_errors(source: str, doing: str, model=None) -> Iterator[None]:
    """Turns an ONNX Runtime error inside the block into an OnnxModelError naming ``source`` and ONNX Runtime's reason
    (``model``, when given, lets a missing bfloat16 kernel be named as such)."""
    from trtpipe.onnx.load import onnxruntime_reason

    try:
        yield
    except Exception as exc:
        if not is_onnxruntime_error(exc):
            raise
        reason = onnxruntime_reason(exc, model)
        hint = ("calibration, sensitivity and fidelity run the model in ONNX Runtime on the CPU; check that "
                "onnxruntime.InferenceSession loads and runs it (an op or opset it lacks, a type it has no CPU kernel for)")
        if "no bfloat16 kernel" in reason:
            hint = ("TensorRT builds bfloat16 layers (trtpipe build MODEL.onnx, --precision fp32 or fp16), but calibration "
                    "and fidelity run the model in ONNX Runtime on the CPU, which cannot: export that part in float32 to "
                    "calibrate or measure it")
        raise OnnxModelError(f"{source}: ONNX Runtime {_version('onnxruntime')} cannot {doing}: {reason}", hint) from None


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def network_feeder(model, spec: PreprocessSpec, source: str | Path, hook: FeedsHook | None = None) -> Feeder:
    """How ``model`` is fed from images prepared by ``spec``; checks that the spec fits the image input.

    Args:
        model: onnx.ModelProto (weights may be absent: only the graph inputs are read).
        spec: the model's preprocess spec (size, layout, normalisation).
        source: the ONNX file, for messages.
        hook: builds the feeds of a multi-input model from an image batch (then no input is checked).

    Raises:
        InputError: several network inputs and no hook; an image input whose rank, channels, size or layout
            disagrees with ``spec``; an integer input the spec normalises to fractions.
        OnnxModelError: no network input, or an input dtype no image can become (bool, string).
    """
    inputs = real_inputs(model)
    name = Path(source).name
    if not inputs:
        raise OnnxModelError(
            f"{name}: no network input (every graph input is an initializer)", "export the model with its image input"
        )
    if hook is not None:
        return Feeder(inputs[0], inputs, hook)
    if len(inputs) > 1:
        listed = ", ".join(f"{i.name} {_shape_text(i.shape)} {i.dtype}" for i in inputs)
        raise InputError(
            f"{name} has {len(inputs)} network inputs ({listed}); calibration, sensitivity and fidelity feed "
            "one image tensor",
            "export the model with the image as its only input, or call trtpipe.quant.fidelity.measure_fidelity / "
            "trtpipe.quant.prepare.prepare_int8 from Python with feeds=FUNCTION (image batch -> a dict of every input)",
        )
    image = inputs[0]
    check_image_input(spec, image, name)
    return Feeder(image, inputs)


def check_image_input(spec: PreprocessSpec, tensor: TensorInfo, source: str | Path) -> None:
    """Checks that images prepared by ``spec`` fit ``tensor``: 4-D, ``spec.channels`` where the layout puts them, the size.

    Dynamic (-1) dimensions fit anything. Also checks that an integer input is not fed normalised fractions.
    For export and build too: ``source`` is the ONNX file (its name is in the messages; the spec file named in
    the hints is the ``<stem>.preprocess.json`` beside it).

    Raises:
        InputError: naming the input, the shape seen and the shape the spec makes. OnnxModelError: a bool/string input.
    """
    source = Path(source).name
    shape = tuple(tensor.shape)
    channels = spec.channels
    made = (-1, channels, spec.height, spec.width) if spec.layout == "NCHW" else (-1, spec.height, spec.width, channels)
    spec_file = preprocess_path_for(source).name
    if spec.fused_preprocess is not None:  # the network preprocesses itself: it takes uint8 NHWC BGR frames
        height, width = spec.fused_frame_size or (-1, -1)
        frames = (-1, height, width, 3)
        fits = len(shape) == 4 and all(seen <= 0 or want <= 0 or seen == want for seen, want in zip(shape, frames))
        if tensor.dtype != "uint8" or not fits:
            raise InputError(
                f"{source}: input {tensor.name!r} is {tensor.dtype} {_shape_text(shape)}, but {spec_file} says the "
                f"preprocessing is fused in ({spec.fused_preprocess}): the network takes uint8 frames {_shape_text(frames)}",
                f'remove "fused_preprocess" from {spec_file} if this ONNX takes preprocessed tensors, or use the ONNX '
                "written by --fuse-preprocess",
            )
        return
    if tensor.dtype not in _FLOAT_DTYPES + _INTEGER_DTYPES:
        raise OnnxModelError(
            f"{source}: input {tensor.name!r} has dtype {tensor.dtype}; images become float or integer tensors",
            "export the model with a float32 (or uint8) image input",
        )
    if len(shape) != 4:
        raise InputError(
            f"{source}: input {tensor.name!r} has shape {_shape_text(shape)} ({len(shape)}-D), but the preprocess spec "
            f"makes 4-D {spec.layout} images {_shape_text(made)}",
            "give the model's image input (N, C, H, W or N, H, W, C); a model fed other tensors needs "
            "feeds=FUNCTION from Python",
        )
    mismatched = [axis for axis, (seen, want) in enumerate(zip(shape, made)) if seen > 0 and want > 0 and seen != want]
    if mismatched:
        other = "NHWC" if spec.layout == "NCHW" else "NCHW"
        flipped = (-1, channels, spec.height, spec.width) if other == "NCHW" else (-1, spec.height, spec.width, channels)
        fits_other = all(seen <= 0 or want <= 0 or seen == want for seen, want in zip(shape, flipped))
        seen_channels = shape[1] if spec.layout == "NCHW" else shape[3]
        if fits_other:
            hint = f'set "layout": "{other}" in {spec_file} (or --layout {other})'
        elif seen_channels > 0 and seen_channels != channels:
            order = {1: "GRAY", 3: "RGB", 4: "RGBA"}.get(seen_channels, "one letter of R, G, B, A per channel")
            hint = (f"the input takes {seen_channels} channels: give --channel-order {order} (and one --mean/--std "
                    f"value per channel, or one for all), or set them in {spec_file}; `trtpipe spec {source}` "
                    "writes a spec that fits the input")
        else:
            hint = (f"give --input-size HxW (and --layout) for the input's {_shape_text(shape)}, or set them in "
                    f"{spec_file}; `trtpipe spec {source}` writes a spec that fits the input")
        raise InputError(
            f"{source}: input {tensor.name!r} has shape {_shape_text(shape)}, but the preprocess spec ({spec.layout}, "
            f"{spec.channel_order}, {spec.height}x{spec.width}) makes images {_shape_text(made)}",
            hint,
        )
    if tensor.dtype in _INTEGER_DTYPES:
        scale = np.float32(spec.pixel_scale) / np.asarray(spec.std, np.float32)
        shift = np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)
        if not (np.allclose(scale, 1.0) and np.allclose(shift, 0.0)):
            raise InputError(
                f"{source}: input {tensor.name!r} is {tensor.dtype}, but {spec_file} normalises pixels "
                f"(pixel_scale {spec.pixel_scale}, mean {list(spec.mean)}, std {list(spec.std)}), so the {tensor.dtype} "
                "batches would hold rounded fractions, not pixels",
                f'a network with an integer image input normalises inside the graph: give --preset raw, or set '
                f'"pixel_scale": 1.0, "mean": [0], "std": [1] in {spec_file}',
            )


def batch_indices(
    indices: np.ndarray, batch_size: int, fixed: bool, ragged: str = "drop"
) -> tuple[list[np.ndarray], str | None]:
    """Splits ``indices`` into batches; a fixed batch size gets only full batches.

    Args:
        indices: the images to feed, in order.
        batch_size: images per batch.
        fixed: the network runs no other batch size (a smaller last batch would be refused by ONNX Runtime).
        ragged: what a fixed batch does with the images left over: ``"drop"`` them (calibration: duplicated
            images would weigh twice in the histograms) or ``"pad"`` the last batch by repeating images from the
            start (evaluation: the caller keeps only the first ``len(indices)`` output rows). With fewer images
            than one batch, ``"drop"`` pads too, so the network still sees every image.

    Returns:
        (the batches' indices, a sentence saying what was dropped or padded, or None).
    """
    indices = np.asarray(indices)
    count = len(indices)
    batches = [indices[start : start + batch_size] for start in range(0, count, batch_size)]
    rest = count % batch_size
    if not fixed or rest == 0 or count == 0:
        return batches, None
    if ragged == "drop" and count >= batch_size:
        return batches[:-1], (
            f"the network's batch is fixed at {batch_size}: the last {rest} of {count} images are left out "
            f"(ragged end dropped)"
        )
    pad = batch_size - rest
    filler = np.resize(indices, pad)  # repeats from the start as often as needed
    batches[-1] = np.concatenate([batches[-1], filler])
    return batches, (
        f"the network's batch is fixed at {batch_size}: the last batch of {rest} images is padded with {pad} "
        f"repeated images{' (their outputs are not counted)' if ragged == 'pad' else ''}"
    )


def _shape_text(shape) -> str:
    return "x".join("?" if d <= 0 else str(d) for d in shape) if shape else "scalar"

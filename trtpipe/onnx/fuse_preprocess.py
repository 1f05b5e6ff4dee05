"""Preprocessing inside the network: uint8 NHWC BGR frames in, the model's own input made by the graph.

    fused = fuse_preprocess(onnx.load("mobilenetv2.onnx"), spec, "1080x1920")
    fused.model   # input "frames": uint8 (N, 1080, 1920, 3) BGR, as cv2 gives frames; outputs unchanged
    fused.spec    # spec.fused_preprocess == "1080x1920": Pipeline feeds raw frames to engines built from it

The prepended ops do what ``trtpipe.pipeline.preprocess`` does on the host (resize_crop / letterbox / stretch with
the same geometry, channel order, ``(x * pixel_scale - mean) / std``, layout), so TensorRT runs them on the GPU and
the host only decodes and copies uint8 frames. What the host copies changes: a uint8 frame of the network's input
size is a quarter of the float32 tensor's bytes, but a 1920x1080 frame for a 224x224 network is 10.3x more
(6,220,800 vs 602,112 bytes); the gain is the host time, not the bytes, unless frames are near the input size.

Two resamplers, because TensorRT's Resize cannot antialias (TensorRT-RTX 1.7's parser rejects ONNX Resize with
``antialias=1``: "Antialiasing is not supported currently"):

- a fixed frame size ("1080x1920"): separable resampling with taps computed here, one Gather + Mul + Add per tap
  and axis, with PIL's filters (triangle, bicubic a=-0.5, box) widened by the shrink factor: the antialiased resize
  torchvision applies to PIL images in training, without PIL's 8-bit rounding between its two passes. The CPU
  path approximates the same filter with box halvings and INTER_AREA; with ``antialias=False`` the taps are
  OpenCV's (bilinear, bicubic a=-0.75) at their plain support.
- a dynamic frame size ("dynamic"): ONNX Resize (half_pixel, as cv2.resize maps pixels) to sizes computed from the
  frame's shape with the CPU path's integer rounding, then Slice (crop) or Pad (letterbox). No antialiasing: when
  shrinking it aliases like the CPU path's fast mode (``antialias=False``), whatever the spec asks.

Build tooling (imports onnx); the deployment path only reads ``spec.fused_preprocess``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtpipe.errors import ConfigError, OnnxModelError
from trtpipe.pipeline.preprocess import crop_resize_size, letterbox_size
from trtpipe.spec import PreprocessSpec, parse_frame_size, parse_fuse_preprocess

log = logging.getLogger("trtpipe.onnx")

FRAMES_INPUT = "frames"  # the fused network's input: uint8 (N, H, W, 3) BGR
PREFIX = "trtpipe_preprocess/"  # names of every prepended node and tensor
_FLOAT_TYPES = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16}


@dataclass(frozen=True)
class FusedModel:
    """What fuse_preprocess made."""

    model: onnx.ModelProto  # input FRAMES_INPUT (uint8 NHWC BGR), the original outputs
    spec: PreprocessSpec  # the input spec with ``fused_preprocess`` set
    resampler: str  # what resizes, in words, e.g. "antialiased bicubic taps (PIL's filter), 18x18 per pixel"

    @property
    def note(self) -> str:
        return (f"preprocessing fused into the network ({self.spec.fused_preprocess} uint8 BGR frames in): "
                f"{self.spec.resize} by {self.resampler}")


def fuse_preprocess(model: onnx.ModelProto, spec: PreprocessSpec, frames: str) -> FusedModel:
    """Prepends ``spec``'s preprocessing to ``model``, whose one input then takes uint8 NHWC BGR frames.

    Args:
        model: an ONNX model with one image input of shape (N, 3, H, W) (or (N, H, W, 3) for an NHWC spec) matching
            the spec's size, float32 or float16; opset 13 or newer.
        spec: the model's preprocessing (resize mode, interpolation, antialias, mean/std, channel order, layout).
        frames: "HxW" (a fixed frame size, e.g. "1080x1920": antialiased taps) or "dynamic" (any size within the
            engine's profile: ONNX Resize, not antialiased).

    Returns:
        The fused model and its spec (``fused_preprocess`` set to ``frames``).

    Raises:
        ConfigError: a spec already fused, nearest-neighbour interpolation, or a bad ``frames`` value.
        OnnxModelError: a model with other than one input, an input that does not match the spec, or an old opset.
    """
    frames = parse_fuse_preprocess(frames)
    if spec.fused_preprocess is not None:
        raise ConfigError(
            f"the preprocess spec of {spec.model} is already fused into its network ({spec.fused_preprocess} frames)",
            "fuse the original ONNX (without --fuse-preprocess at export), or build this one without --fuse-preprocess",
        )
    if spec.interpolation == "nearest":
        raise ConfigError(
            f"{spec.model}: fused preprocessing resamples with bilinear, bicubic or area filters; the spec asks for nearest",
            "set the spec's interpolation to bilinear, or preprocess on the host (no --fuse-preprocess)",
        )
    graph = model.graph
    initializer_names = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializer_names]
    if len(inputs) != 1:
        raise OnnxModelError(
            f"{spec.model} has {len(inputs)} inputs {[i.name for i in inputs]}; fused preprocessing feeds one image input",
            "fuse preprocessing into single-input image models only",
        )
    net_input = inputs[0]
    elem_type = net_input.type.tensor_type.elem_type
    dims = [d.dim_param or d.dim_value for d in net_input.type.tensor_type.shape.dim]
    expected = [3, spec.height, spec.width] if spec.layout == "NCHW" else [spec.height, spec.width, 3]
    if elem_type not in _FLOAT_TYPES or len(dims) != 4 or dims[1:] != expected:
        raise OnnxModelError(
            f"{spec.model}: input {net_input.name!r} is {TensorProto.DataType.Name(elem_type)} {dims}, expected float "
            f"(N, {', '.join(map(str, expected))}) as the preprocess spec ({spec.layout}, {spec.height}x{spec.width}) says",
            "fix the spec's size/layout to match the network, or export the model again",
        )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise OnnxModelError(f"{spec.model} is opset {opset}; fused preprocessing needs opset 13 or newer", "export with --opset 17")
    frame_size = None if frames == "dynamic" else parse_frame_size(frames)
    pre, resampler = _preprocess_graph(spec, frame_size, dims[0], elem_type, opset)
    clash = {n for node in graph.node for n in node.output if n.startswith(PREFIX)} | ({FRAMES_INPUT} & _names(graph))
    if clash:
        raise OnnxModelError(f"{spec.model} already uses the names {sorted(clash)[:3]}", "rename them in the ONNX")
    pre_model = helper.make_model(pre, opset_imports=[helper.make_opsetid("", opset)], ir_version=model.ir_version)
    fused = onnx.compose.merge_models(pre_model, model, io_map=[(PREFIX + "output", net_input.name)])
    onnx.helper.set_model_props(fused, {**{p.key: p.value for p in model.metadata_props}, "trtpipe.fused_preprocess": frames})
    onnx.checker.check_model(fused)
    fused_spec = spec.replace(fused_preprocess=frames)
    return FusedModel(fused, fused_spec, resampler)


def preprocess_model(spec: PreprocessSpec, frames: str, opset: int = 17) -> onnx.ModelProto:
    """The prepended preprocessing alone as a model (frames in, float32 network input out): for checks and tests."""
    frames = parse_fuse_preprocess(frames)
    frame_size = None if frames == "dynamic" else parse_frame_size(frames)
    graph, _ = _preprocess_graph(spec, frame_size, "batch", TensorProto.FLOAT, opset)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def difference_from_cpu(spec: PreprocessSpec, frames: str, images: list[np.ndarray]) -> tuple[float, float]:
    """Mean and max |fused - CPU path| over ``images`` in 1/255 pixel units (ONNX Runtime runs the fused ops).

    The difference is measured on the network input and scaled back by std / pixel_scale, so 1.0 means one
    uint8 step of the source image.
    """
    import onnxruntime as ort

    from trtpipe.pipeline.preprocess import preprocess_batch

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(preprocess_model(spec, frames).SerializeToString(), options, providers=["CPUExecutionProvider"])
    # normalized = pixel * pixel_scale / std - mean / std, so one normalized unit is std / pixel_scale pixel steps.
    steps = (np.asarray(spec.std, np.float64) / spec.pixel_scale).reshape((1, 3, 1, 1) if spec.layout == "NCHW" else (1, 1, 1, 3))
    means, maxes = [], []
    for image in images:
        fused = session.run(None, {FRAMES_INPUT: image[None]})[0]
        cpu = preprocess_batch([image], spec)
        diff = np.abs(fused.astype(np.float64) - cpu) * steps
        means.append(float(diff.mean()))
        maxes.append(float(diff.max()))
    return float(np.mean(means)), float(np.max(maxes))


def write_fused_onnx(onnx_path: str | Path, spec: PreprocessSpec, frames: str, output: str | Path) -> FusedModel:
    """Reads ``onnx_path``, fuses ``spec``'s preprocessing for ``frames`` and writes ``output`` (+ its spec) atomically."""
    import json

    from trtpipe.io import atomic_output
    from trtpipe.onnx.load import load_onnx
    from trtpipe.spec import preprocess_path_for

    fused = fuse_preprocess(load_onnx(onnx_path, check=False), spec, frames)
    with atomic_output(output) as tmp, atomic_output(preprocess_path_for(output)) as spec_tmp:
        onnx.save(fused.model, str(tmp))
        spec_tmp.write_text(json.dumps(fused.spec.to_dict(), indent=2) + "\n")
    log.info("%s -> %s", fused.note, output)
    return fused


def parity_note(fused: FusedModel) -> str:
    """The fused preprocessing against the CPU path on one test frame, in ONNX Runtime, as a sidecar note.

    The frame is a scikit-image photo scaled to the frame size when scikit-image is installed, else a
    deterministic texture (gradients and noise). Dynamic frames are measured at 720x1280.
    """
    spec = fused.spec
    height, width = spec.fused_frame_size or (720, 1280)
    frame = _test_frame(height, width)
    mean, worst = difference_from_cpu(spec.replace(fused_preprocess=None), spec.fused_preprocess, [frame])
    return (f"fused preprocessing vs the CPU path on a {height}x{width} test frame (ONNX Runtime): mean |difference| "
            f"{mean:.2f}/255, max {worst:.0f}/255")


def _test_frame(height: int, width: int) -> np.ndarray:
    import cv2

    try:
        import skimage.data

        photo = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])
    except ImportError:
        y, x = np.mgrid[0:256, 0:256]
        noise = np.random.default_rng(0).integers(0, 64, (256, 256, 3))
        photo = np.stack([x, y, (x + y) // 2], axis=-1).astype(np.int64) * 3 // 4 + noise
        photo = photo.clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC))


def _names(graph) -> set[str]:
    return {v.name for v in (*graph.input, *graph.output, *graph.value_info, *graph.initializer)}


# ----------------------------------------------------------------------------------------------
# A small graph writer: every name prefixed, constants as initializers
# ----------------------------------------------------------------------------------------------


class _Writer:
    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{PREFIX}{hint}_{self._count}"

    def const(self, value, dtype=np.int64, hint: str = "const") -> str:
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attributes) -> str:
        output = out or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=output, **attributes))
        return output


# ----------------------------------------------------------------------------------------------
# The graph: frames -> float -> resample -> (letterbox padding) -> channel order, normalise, layout -> network input
# ----------------------------------------------------------------------------------------------


def _preprocess_graph(spec: PreprocessSpec, frame_size, batch_dim, out_type: int, opset: int) -> tuple[onnx.GraphProto, str]:
    g = _Writer()
    frames = g.op("Cast", FRAMES_INPUT, to=TensorProto.FLOAT)  # (N, H, W, 3) float32, BGR
    if frame_size is None:
        resized, resampler = _dynamic_resample(g, frames, spec)
        layout = "NCHW"
    else:
        resized, resampler = _fixed_resample(g, frames, spec, *frame_size)
        layout = "NHWC"
    # resized: (N, th, tw, 3) or (N, 3, th, tw) float32, BGR, 0..255
    channel_axis, channel_shape = (3, (3,)) if layout == "NHWC" else (1, (3, 1, 1))
    if spec.channel_order == "RGB":
        resized = g.op("Gather", resized, g.const([2, 1, 0]), axis=channel_axis)
    scale = (np.float32(spec.pixel_scale) / np.asarray(spec.std, np.float32)).reshape(channel_shape)
    shift = (np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)).reshape(channel_shape)
    out = g.op("Sub", g.op("Mul", resized, g.const(scale, np.float32, "scale")), g.const(shift, np.float32, "shift"))
    if spec.layout != layout:
        out = g.op("Transpose", out, perm=[0, 3, 1, 2] if spec.layout == "NCHW" else [0, 2, 3, 1])
    g.op("Cast", out, out=PREFIX + "output", to=out_type)
    height, width = frame_size if frame_size else ("frame_height", "frame_width")
    out_shape = [batch_dim, 3, spec.height, spec.width] if spec.layout == "NCHW" else [batch_dim, spec.height, spec.width, 3]
    graph = helper.make_graph(
        g.nodes,
        "trtpipe_preprocess",
        [helper.make_tensor_value_info(FRAMES_INPUT, TensorProto.UINT8, [batch_dim, height, width, 3])],
        [helper.make_tensor_value_info(PREFIX + "output", out_type, out_shape)],
        g.initializers,
    )
    return graph, resampler


# -- fixed frame size: separable taps ------------------------------------------------------------


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - np.abs(x))


def _cubic(a: float) -> Callable[[np.ndarray], np.ndarray]:
    """Keys' cubic convolution kernel: a = -0.5 is PIL's (and torchvision's antialiased) bicubic, -0.75 OpenCV's."""

    def kernel(x: np.ndarray) -> np.ndarray:
        x = np.abs(x)
        inner = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        outer = (((x - 5.0) * x + 8.0) * x - 4.0) * a
        return np.where(x < 1.0, inner, np.where(x < 2.0, outer, 0.0))

    return kernel


@dataclass(frozen=True)
class AxisTaps:
    """Resampling one axis: output i = sum_k weight[i, k] * source[index[i, k]]."""

    index: np.ndarray  # (n_out, K) int64, clamped into the source
    weight: np.ndarray  # (n_out, K) float64; zero for taps past the source and for letterbox padding rows

    @property
    def taps(self) -> int:
        return self.index.shape[1]


def axis_taps(n_in: int, n_resized: int, offset: int, n_out: int, interpolation: str, antialias: bool) -> AxisTaps:
    """Taps that resize an axis of ``n_in`` pixels to ``n_resized`` and take ``n_out`` of them from ``offset`` on.

    Output pixel i is resized pixel ``i + offset`` (a centre crop's offset is positive; a letterbox's negative, and
    outputs outside ``0..n_resized`` get no taps). Follows PIL's ``precompute_coeffs`` (Resample.c): centre
    ``(r + 0.5) * scale``, filter widened by ``max(scale, 1)`` when antialiasing, taps from
    ``int(centre - support + 0.5)`` to ``int(centre + support + 0.5)`` clipped to the source, weights normalised
    per output pixel. ``area`` is OpenCV's INTER_AREA: each source pixel weighted by its overlap (bilinear when
    enlarging).
    """
    scale = n_in / n_resized
    resized_index = np.arange(n_out) + offset
    inside = (resized_index >= 0) & (resized_index < n_resized)
    centre = (resized_index + 0.5) * scale
    if interpolation == "area" and scale > 1.0:
        support, filter_scale = 0.5 * scale + 0.5, 1.0

        def kernel(x: np.ndarray) -> np.ndarray:  # x = source pixel centre - centre, in source pixels
            return np.clip(np.minimum(x + 0.5, 0.5 * scale) - np.maximum(x - 0.5, -0.5 * scale), 0.0, None)
    else:
        base = {"bilinear": (1.0, _triangle), "area": (1.0, _triangle), "bicubic": (2.0, _cubic(-0.5 if antialias else -0.75))}
        support, kernel = base[interpolation]
        filter_scale = max(scale, 1.0) if antialias else 1.0
        support *= filter_scale
    low = np.clip((centre - support + 0.5).astype(np.int64), 0, n_in)
    high = np.clip((centre + support + 0.5).astype(np.int64), 0, n_in)
    count = int(max(1, (high - low).max()))
    source = low[:, None] + np.arange(count)[None, :]
    weight = kernel((source + 0.5 - centre[:, None]) / filter_scale)
    weight = np.where(source < high[:, None], weight, 0.0)
    total = weight.sum(axis=1, keepdims=True)
    weight = np.where(total != 0.0, weight / np.where(total == 0.0, 1.0, total), 0.0)
    weight[~inside] = 0.0
    return AxisTaps(np.clip(source, 0, n_in - 1).astype(np.int64), weight)


def frame_taps(spec: PreprocessSpec, height: int, width: int) -> tuple[AxisTaps, AxisTaps]:
    """The (rows, columns) taps that map a ``height x width`` frame onto the network input under ``spec``."""
    th, tw = spec.height, spec.width
    if spec.resize == "stretch":
        (rh, rw), (top, left) = (th, tw), (0, 0)
    elif spec.resize == "letterbox":
        rh, rw = letterbox_size(height, width, spec)
        top, left = -((th - rh) // 2), -((tw - rw) // 2)
    else:
        rh, rw = crop_resize_size(height, width, spec)
        top, left = int(round((rh - th) / 2.0)), int(round((rw - tw) / 2.0))
    rows = axis_taps(height, rh, top, th, spec.interpolation, spec.antialias)
    columns = axis_taps(width, rw, left, tw, spec.interpolation, spec.antialias)
    return rows, columns


def _fixed_resample(g: _Writer, frames: str, spec: PreprocessSpec, height: int, width: int) -> tuple[str, str]:
    rows, columns = frame_taps(spec, height, width)
    th, tw = spec.height, spec.width
    # Resample the axis first that leaves less to gather for the second one.
    columns_first = columns.taps * height * tw + rows.taps * th * tw <= rows.taps * th * width + columns.taps * th * tw
    order = ((columns, 2), (rows, 1)) if columns_first else ((rows, 1), (columns, 2))
    out = frames
    for taps, axis in order:
        shape = (-1, 1) if axis == 2 else (-1, 1, 1)  # broadcast over (N, H, tw, 3) / (N, th, W, 3)
        total = None
        for k in range(taps.taps):
            gathered = g.op("Gather", out, g.const(taps.index[:, k], hint="taps"), axis=axis)
            term = g.op("Mul", gathered, g.const(taps.weight[:, k].reshape(shape), np.float32, "weights"))
            total = term if total is None else g.op("Add", total, term)
        # Cubic taps overshoot at edges; PIL stores each pass in 8 bits, so clip as it does.
        out = g.op("Clip", total, g.const(0.0, np.float32, "low"), g.const(255.0, np.float32, "high")) \
            if spec.interpolation == "bicubic" else total
    if spec.resize == "letterbox":
        covered = (rows.weight.sum(axis=1) > 0)[:, None] & (columns.weight.sum(axis=1) > 0)[None, :]
        padding = np.where(covered, 0.0, float(spec.pad_value)).astype(np.float32)[:, :, None]
        out = g.op("Add", out, g.const(padding, np.float32, "padding"))
    kind = spec.interpolation if spec.interpolation != "area" else "area (pixel overlap)"
    filters = "PIL's filter widened by the shrink factor, as torchvision" if spec.antialias else "OpenCV's, not antialiased"
    return out, f"{kind} taps ({filters}), {rows.taps} per row x {columns.taps} per column"


# -- dynamic frame size: ONNX Resize with sizes from the frame's shape ---------------------------


def _dynamic_resample(g: _Writer, frames: str, spec: PreprocessSpec) -> tuple[str, str]:
    th, tw = spec.height, spec.width
    shape = g.op("Shape", frames)

    def dim(axis: int) -> str:  # a 1-element int64 tensor: TensorRT keeps these as shape tensors
        return g.op("Slice", shape, g.const([axis]), g.const([axis + 1]), g.const([0]))

    batch, height, width = dim(0), dim(1), dim(2)
    c = lambda value: g.const([value])  # noqa: E731
    mul = lambda a, b: g.op("Mul", a, b)  # noqa: E731
    div = lambda a, b: g.op("Div", a, b)  # noqa: E731 - int64: truncates, i.e. floors these positive values
    add = lambda a, b: g.op("Add", a, b)  # noqa: E731
    sub = lambda a, b: g.op("Sub", a, b)  # noqa: E731

    def as_int(condition: str) -> str:
        return g.op("Cast", condition, to=TensorProto.INT64)

    def round_half_even(numerator: str, denominator: str) -> str:
        """round(numerator / denominator) as Python rounds (half to even), in integers."""
        quotient = div(numerator, denominator)
        twice_remainder = mul(sub(numerator, mul(quotient, denominator)), c(2))
        odd = sub(quotient, mul(div(quotient, c(2)), c(2)))
        up = as_int(g.op("Greater", twice_remainder, denominator))
        tie = as_int(g.op("Equal", twice_remainder, denominator))
        return add(quotient, add(up, mul(tie, odd)))

    def where(condition: str, a: str, b: str) -> str:
        return g.op("Where", condition, a, b)

    if spec.resize == "stretch":
        rh, rw = c(th), c(tw)
    elif spec.resize == "letterbox":
        height_bound = g.op("Greater", mul(c(th), width), mul(c(tw), height))  # th/h > tw/w: the width bounds
        nh = where(height_bound, g.op("Max", round_half_even(mul(height, c(tw)), width), c(1)), c(th))
        nw = where(height_bound, c(tw), g.op("Max", round_half_even(mul(width, c(th)), height), c(1)))
        rh, rw = nh, nw
    elif th == tw:
        short = c(math.floor(th / spec.crop_fraction))
        landscape = g.op("Greater", width, height)
        rh = where(landscape, short, div(mul(short, height), width))
        rw = where(landscape, div(mul(short, width), height), short)
    else:
        bh, bw = math.floor(th / spec.crop_fraction), math.floor(tw / spec.crop_fraction)
        height_bound = g.op("Less", mul(c(bw), height), mul(c(bh), width))  # bh/h > bw/w: cover = bh/h
        rh = where(height_bound, c(max(th, bh)), g.op("Max", round_half_even(mul(height, c(bw)), width), c(th)))
        rw = where(height_bound, g.op("Max", round_half_even(mul(width, c(bh)), height), c(tw)), c(max(tw, bw)))
    mode = {"bilinear": "linear", "area": "linear", "bicubic": "cubic"}[spec.interpolation]
    attributes = {"cubic_coeff_a": -0.75} if mode == "cubic" else {}
    # Each channel as an (N, 1, H, W) plane, by Slice + Reshape rather than a Transpose: ONNX Runtime's transpose
    # optimizer would move the Resize to NHWC, where its cubic mode refuses to shrink.
    plane_shape = g.op("Concat", batch, c(1), height, width, axis=0)
    sizes = g.op("Concat", batch, c(1), rh, rw, axis=0)
    planes = []
    for channel in range(3):
        plane = g.op("Slice", frames, c(channel), c(channel + 1), c(3))
        plane = g.op("Reshape", plane, plane_shape)
        planes.append(g.op("Resize", plane, "", "", sizes, mode=mode, coordinate_transformation_mode="half_pixel", **attributes))
    resized = g.op("Concat", *planes, axis=1)  # (N, 3, rh, rw), BGR
    if spec.resize == "letterbox":
        top, left = div(sub(c(th), rh), c(2)), div(sub(c(tw), rw), c(2))
        bottom, right = sub(sub(c(th), rh), top), sub(sub(c(tw), rw), left)
        pads = g.op("Concat", c(0), c(0), top, left, c(0), c(0), bottom, right, axis=0)
        resized = g.op("Pad", resized, pads, g.const(float(spec.pad_value), np.float32, "pad_value"), mode="constant")
    elif spec.resize == "resize_crop":
        top = round_half_even(sub(rh, c(th)), c(2))
        left = round_half_even(sub(rw, c(tw)), c(2))
        starts = g.op("Concat", top, left, axis=0)
        ends = g.op("Concat", add(top, c(th)), add(left, c(tw)), axis=0)
        resized = g.op("Slice", resized, starts, ends, g.const([2, 3]))
    kind = "bicubic (a=-0.75)" if mode == "cubic" else "bilinear"
    return resized, f"ONNX Resize, {kind}, half_pixel, NOT antialiased (TensorRT's Resize cannot antialias)"

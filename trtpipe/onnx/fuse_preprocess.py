"""Preprocessing inside the network: uint8 NHWC BGR frames in, the model's own input made by the graph.

    fused = fuse_preprocess(onnx.load("mobilenetv2.onnx"), spec, "1080x1920")
    fused.model   # input "frames": uint8 (N, 1080, 1920, 3) BGR, as cv2 gives frames; outputs unchanged
    fused.spec    # spec.fused_preprocess == "1080x1920": Pipeline feeds raw frames to engines built from it

The prepended ops do what ``trtpipe.pipeline.preprocess`` does on the host (resize_crop / letterbox / stretch with
the same geometry, channel order, ``(x * pixel_scale - mean) / std``, layout), so TensorRT runs them on the GPU and
the host only decodes and copies uint8 frames. What the host copies changes: a uint8 frame of the network's input
size is a quarter of the float32 tensor's bytes, but a 1920x1080 frame for a 224x224 network is 10.3x more
(6,220,800 vs 602,112 bytes); the gain is the host time, not the bytes, unless frames are near the input size.

Two resamplers:

- a fixed frame size ("1080x1920"): the CPU path's own steps for that size (``resize_steps``: the region, 2x2
  halvings, INTER_AREA, the final resize or warpAffine, the letterbox border), each as ops that compute what
  OpenCV computes for uint8 images, rounding included (Gather + Mul + Add per tap and axis, Reshape + ReduceSum
  for halvings, Floor/Round). warpAffine follows the installed OpenCV (:func:`warp_arithmetic`): 4.x warps in
  1/32-pixel fixed point, 5.x in float, up to 4 steps apart. The fused engine sees the pixels the CPU path makes on
  the build machine's OpenCV, antialiasing included, but for sums that land near a half: one step on under 0.01%
  of values, and with OpenCV 5.x up to ~2% where a bilinear warpAffine resamples (5.x interpolates 8-bit images in
  SIMD arithmetic chosen per CPU). Nothing here imitates PIL: the CPU path's own distance from torchvision's PIL
  resize (README, "Preprocessing") carries over unchanged.
- a dynamic frame size ("dynamic"): ONNX Resize (half_pixel, as cv2.resize maps pixels) to sizes computed from the
  frame's shape with the CPU path's integer rounding, then Slice (crop) or Pad (letterbox). TensorRT's Resize cannot
  antialias (TensorRT-RTX 1.7's parser rejects ONNX Resize with ``antialias=1``: "Antialiasing is not supported
  currently"), so when shrinking it aliases like the CPU path's fast mode (``antialias=False``), whatever the spec
  asks.

Build tooling (imports onnx); the deployment path only reads ``spec.fused_preprocess``.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trtpipe.errors import ConfigError, OnnxModelError
from trtpipe.pipeline.preprocess import ResampleSteps, resize_steps
from trtpipe.spec import PreprocessSpec, channel_mix, parse_frame_size, parse_fuse_preprocess

log = logging.getLogger("trtpipe.onnx")

FRAMES_INPUT = "frames"  # the fused network's input: uint8 (N, H, W, 3) BGR
PREFIX = "trtpipe_preprocess/"  # names of every prepended node and tensor
_FLOAT_TYPES = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16}


@dataclass(frozen=True)
class FusedModel:
    """What fuse_preprocess made."""

    model: onnx.ModelProto | None  # input FRAMES_INPUT (uint8 NHWC BGR), the original outputs (None: notes only)
    spec: PreprocessSpec  # the input spec with ``fused_preprocess`` set
    resampler: str  # what resizes, in words, e.g. "the CPU path's steps with OpenCV's arithmetic (...)"

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
        frames: "HxW" (a fixed frame size, e.g. "1080x1920": the CPU path's steps, antialiasing included) or "dynamic" (any size within the
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
    c = spec.channels
    expected = [c, spec.height, spec.width] if spec.layout == "NCHW" else [spec.height, spec.width, c]
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
    steps = (np.asarray(spec.std, np.float64) / spec.pixel_scale).reshape((1, -1, 1, 1) if spec.layout == "NCHW" else (1, 1, 1, -1))
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


def fused_notes(spec: PreprocessSpec) -> list[str]:
    """The sidecar notes of a network whose preprocessing is fused in (``spec.fused_preprocess`` set), as a build
    from an ONNX fused at export records them: what resamples, and :func:`parity_note`."""
    frames = spec.fused_preprocess
    frame_size = None if frames == "dynamic" else parse_frame_size(frames)
    _, resampler = _preprocess_graph(spec.replace(fused_preprocess=None), frame_size, "batch", TensorProto.FLOAT, 17)
    described = FusedModel(None, spec, resampler)
    return [described.note, parity_note(described)]


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
    channels = spec.channels
    weights, offsets = channel_mix(spec.channel_order)
    if any(offsets) or any(sorted(row) != [0.0, 0.0, 1.0] for row in weights):
        # luma or alpha: each channel a weighted sum of B, G, R plus an offset, as normalize_batch computes it
        if layout == "NCHW":
            resized, layout = g.op("Transpose", resized, perm=[0, 2, 3, 1]), "NHWC"
        mix = g.const(np.asarray(weights, np.float32).T, np.float32, "channel_mix")  # (3, C)
        resized = g.op("MatMul", resized, mix)
        if any(offsets):
            resized = g.op("Add", resized, g.const(np.asarray(offsets, np.float32), np.float32, "alpha"))
    else:
        source = [row.index(1.0) for row in weights]  # the BGR plane each network channel copies
        if source != [0, 1, 2]:
            resized = g.op("Gather", resized, g.const(source), axis=3 if layout == "NHWC" else 1)
    channel_shape = (channels,) if layout == "NHWC" else (channels, 1, 1)
    scale = (np.float32(spec.pixel_scale) / np.asarray(spec.std, np.float32)).reshape(channel_shape)
    shift = (np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)).reshape(channel_shape)
    out = g.op("Sub", g.op("Mul", resized, g.const(scale, np.float32, "scale")), g.const(shift, np.float32, "shift"))
    if spec.layout != layout:
        out = g.op("Transpose", out, perm=[0, 3, 1, 2] if spec.layout == "NCHW" else [0, 2, 3, 1])
    g.op("Cast", out, out=PREFIX + "output", to=out_type)
    height, width = frame_size if frame_size else ("frame_height", "frame_width")
    out_shape = [batch_dim, channels, spec.height, spec.width] if spec.layout == "NCHW" else [batch_dim, spec.height, spec.width, channels]
    graph = helper.make_graph(
        g.nodes,
        "trtpipe_preprocess",
        [helper.make_tensor_value_info(FRAMES_INPUT, TensorProto.UINT8, [batch_dim, height, width, 3])],
        [helper.make_tensor_value_info(PREFIX + "output", out_type, out_shape)],
        g.initializers,
    )
    return graph, resampler


# -- fixed frame size: the CPU path's steps, op for op ------------------------------------------
#
# ``resample_steps`` (trtpipe.pipeline.preprocess) decides how the host resamples a frame; here each of its OpenCV
# calls becomes ops that compute what OpenCV computes for uint8 images, rounding included (measured against
# opencv-python-headless 4.10 to 4.13 and 5.1 on random and photo frames: tests/onnx/test_fuse_preprocess.py):
#
# - a 2x2 halving (cv2.resize at exactly 1/2): (a + b + c + d + 2) // 4;
# - INTER_AREA: each source pixel weighted by its overlap (OpenCV's computeResizeAreaTab), in float, rounded;
# - INTER_LINEAR resize: OpenCV's fixed point, 11-bit weights, the horizontal sum shifted right by 4 and each
#   vertical term by 16 before the final (sum + 2) >> 2; kept below 2^15 here, so that no FP16 layer overflows;
# - INTER_CUBIC resize: float weights at float32 source coordinates, rounded;
# - warpAffine (bilinear, bicubic): OpenCV 4.x's fixed point (positions in 1/32 pixel, 15-bit weights, exact), or
#   OpenCV 5.x's float weights at float32 positions, rounded (see warp_arithmetic).
#
# Rounding is ONNX Round (half to even, as cvRound); the values between steps are whole numbers 0..255, as the
# CPU path's uint8 images are. What can differ: sums that land within float rounding of a half (cv2's SIMD code
# adds in another order, or fused multiply-adds), a few pixels per frame, each one step.

_RESIZE_COEF = 2048  # OpenCV's INTER_RESIZE_COEF_SCALE: INTER_LINEAR's fixed-point weight scale for 8-bit images


@dataclass(frozen=True)
class AxisTaps:
    """Resampling one axis: output i = sum_k weight[i, k] * source[index[i, k]]."""

    index: np.ndarray  # (n_out, K) int64, clamped into the source (BORDER_REPLICATE)
    weight: np.ndarray  # (n_out, K) float64

    @property
    def taps(self) -> int:
        return self.index.shape[1]


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """OpenCV's interpolateCubic (A = -0.75) at fractions ``t``, in float32 as OpenCV computes it: (n, 4)."""
    a = np.float32(-0.75)
    x = np.asarray(t, np.float32)
    c0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
    c1 = ((a + 2) * x - (a + 3)) * x * x + 1
    c2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
    return np.stack([c0, c1, c2, 1 - c0 - c1 - c2], axis=-1).astype(np.float64)


def _point_taps(n_in: int, position: np.ndarray, cubic: bool) -> AxisTaps:
    """Bilinear or bicubic taps at float32 source positions (pixel-centre coordinates), indices clamped."""
    position = np.asarray(position, np.float32)
    base = np.floor(position)
    t = (position - base).astype(np.float32)
    base = base.astype(np.int64)
    if cubic:
        index, weight = base[:, None] + np.arange(-1, 3)[None, :], _cubic_weights(t)
    else:
        index, weight = base[:, None] + np.arange(2)[None, :], np.stack([1 - t, t], axis=-1).astype(np.float64)
    return AxisTaps(np.clip(index, 0, n_in - 1), weight)


def warp_taps(n_in: int, n_out: int, scale: float, offset: float, cubic: bool) -> AxisTaps:
    """cv2.warpAffine (inverse map, axis-aligned) along one axis: output u samples ``offset + scale * u``."""
    u = np.arange(n_out, dtype=np.float32)
    return _point_taps(n_in, np.float32(scale) * u + np.float32(offset), cubic)


def resize_taps(n_in: int, n_out: int, interpolation: int, scale: float | None = None, rows: bool = False,
                area_mode: bool = False) -> AxisTaps:
    """cv2.resize along one axis: ``n_in`` to ``n_out`` pixels. ``scale``: source pixels per output pixel, as OpenCV
    holds it (1 / fx when fx was given; n_in / n_out otherwise).

    INTER_LINEAR: the two nearest pixels; along columns (``rows=False``) a position past an edge takes the edge
    pixel alone, along rows the weights stay and the indices are clamped (both as OpenCV's resizeGeneric does).
    ``area_mode``: INTER_AREA where it cannot shrink both axes: bilinear at OpenCV's area positions. INTER_CUBIC: four
    taps, indices clamped. INTER_AREA when shrinking: each source pixel's overlap with the output pixel's cell, over
    the cell's width (OpenCV's computeResizeAreaTab).
    """
    scale = _cv_scale(n_in, n_out) if scale is None else scale
    d = np.arange(n_out)
    if interpolation == cv2.INTER_AREA:
        cells = []
        for dx in d:
            start = dx * scale
            end = start + scale
            cell = min(scale, n_in - start)
            first, last = math.ceil(start), math.floor(end)
            last = min(last, n_in - 1)
            first = min(first, last)
            taps = [(first - 1, (first - start) / cell)] if first - start > 1e-3 else []
            taps += [(s, 1.0 / cell) for s in range(first, last)]
            if end - last > 1e-3:
                taps.append((last, min(min(end - last, 1.0), cell) / cell))
            cells.append(taps)
        count = max(len(t) for t in cells)
        index, weight = np.zeros((n_out, count), np.int64), np.zeros((n_out, count))
        for i, taps in enumerate(cells):
            for k, (source, w) in enumerate(taps):
                index[i, k], weight[i, k] = source, w
        return AxisTaps(np.clip(index, 0, n_in - 1), weight)
    if area_mode:
        start = np.floor(d * scale).astype(np.int64)
        t = ((d + 1) - (start + 1) * (1.0 / scale)).astype(np.float32)
        t = np.where(t <= 0, np.float32(0), t - np.floor(t)).astype(np.float32)
        position = (start + t).astype(np.float64)
    else:
        position = ((d + 0.5) * scale - 0.5).astype(np.float32)
    if interpolation == cv2.INTER_CUBIC:
        return _point_taps(n_in, position, cubic=True)
    if area_mode:  # the fraction as OpenCV computed it, not re-derived from a float32 position
        index = np.clip(start[:, None] + np.arange(2)[None, :], 0, n_in - 1)
        taps = AxisTaps(index, np.stack([1 - t, t], axis=-1).astype(np.float64))
    else:
        taps = _point_taps(n_in, position, cubic=False)
    if rows:
        return taps
    index, weight = taps.index.copy(), taps.weight.copy()
    base = np.floor(position)
    low, high = base < 0, base >= n_in - 1
    weight[low | high] = (1.0, 0.0)  # OpenCV: the edge pixel alone
    index[low] = 0
    return AxisTaps(index, weight)


def _cv_scale(n_in: int, n_out: int) -> float:
    """Source pixels per output pixel as cv2.resize holds them when given a size: 1 / inv_scale."""
    return 1.0 / (n_out / n_in)


def _gather_sum(g: _Writer, x: str, taps: AxisTaps, axis: int, each: Callable[[str], str] | None = None) -> str:
    """sum_k each(weight_k * x[index_k]) along ``axis`` (1: rows, 2: columns) of an (N, H, W, 3) tensor."""
    shape = (-1, 1) if axis == 2 else (-1, 1, 1)
    total = None
    for k in range(taps.taps):
        gathered = g.op("Gather", x, g.const(taps.index[:, k], hint="taps"), axis=axis)
        term = g.op("Mul", gathered, g.const(taps.weight[:, k].reshape(shape), np.float32, "weights"))
        term = each(term) if each else term
        total = term if total is None else g.op("Add", total, term)
    return total


def _clip(g: _Writer, x: str) -> str:
    """saturate_cast<uchar>: cubic taps overshoot below 0 and above 255."""
    return g.op("Clip", x, g.const(0.0, np.float32, "low"), g.const(255.0, np.float32, "high"))


def _round(g: _Writer, x: str, clip: bool = False) -> str:
    out = g.op("Round", x)
    return _clip(g, out) if clip else out


def _floor_div(g: _Writer, x: str, divisor: float) -> str:
    return g.op("Floor", g.op("Mul", x, g.const(1.0 / divisor, np.float32, "scale")))


def _halve(g: _Writer, x: str, height: int, width: int) -> str:
    """(a + b + c + d + 2) // 4 over 2x2 blocks of an (N, height, width, 3) tensor (odd last row/column dropped)."""
    if height % 2 or width % 2:
        x = g.op("Slice", x, g.const([0, 0]), g.const([height // 2 * 2, width // 2 * 2]), g.const([1, 2]))
    blocks = g.op("Reshape", x, g.const([0, height // 2, 2, width // 2, 2, 3]))
    total = g.op("ReduceSum", blocks, g.const([2, 4]), keepdims=0)
    return _floor_div(g, g.op("Add", total, g.const(2.0, np.float32, "half")), 4.0)


def _resize(g: _Writer, x: str, height: int, width: int, out_height: int, out_width: int, interpolation: int,
            scale: tuple[float, float] | None = None) -> str:
    """cv2.resize of an (N, height, width, 3) tensor of whole numbers 0..255 to (out_height, out_width)."""
    sy, sx = scale or (_cv_scale(height, out_height), _cv_scale(width, out_width))
    shrinks = sy >= 1.0 and sx >= 1.0
    if interpolation == cv2.INTER_AREA and shrinks:
        if abs(sy - 2.0) < np.finfo(float).eps and abs(sx - 2.0) < np.finfo(float).eps:  # OpenCV's 2x2 fast path
            return _halve(g, x, height, width)
        columns = _gather_sum(g, x, resize_taps(width, out_width, cv2.INTER_AREA, sx), axis=2)
        return _round(g, _gather_sum(g, columns, resize_taps(height, out_height, cv2.INTER_AREA, sy), axis=1))
    if interpolation == cv2.INTER_CUBIC:
        columns = _gather_sum(g, x, resize_taps(width, out_width, cv2.INTER_CUBIC, sx), axis=2)
        rows = resize_taps(height, out_height, cv2.INTER_CUBIC, sy, rows=True)
        return _round(g, _gather_sum(g, columns, rows, axis=1), clip=True)
    area_mode = interpolation == cv2.INTER_AREA  # enlarging an axis: OpenCV resamples bilinearly at its own positions
    # INTER_LINEAR in OpenCV's fixed point: S = sum(x * round(w * 2048)); out = (sum_k (b_k * (S_k >> 4)) >> 16 + 2) >> 2
    # with b_k = round(w_k * 2048). Computed as S / 2048 and b_k / 2048 (exact in float32, and below 2^15).
    columns = resize_taps(width, out_width, cv2.INTER_LINEAR, sx, area_mode=area_mode)
    rows = resize_taps(height, out_height, cv2.INTER_LINEAR, sy, rows=True, area_mode=area_mode)
    fixed = lambda taps: AxisTaps(taps.index, np.rint(taps.weight * _RESIZE_COEF) / _RESIZE_COEF)  # noqa: E731
    horizontal = _gather_sum(g, x, fixed(columns), axis=2)  # S / 2048
    shifted = g.op("Floor", g.op("Mul", horizontal, g.const(_RESIZE_COEF / 16, np.float32, "scale")))  # S >> 4
    vertical = _gather_sum(g, shifted, fixed(rows), axis=1, each=lambda term: _floor_div(g, term, 65536 / _RESIZE_COEF))
    return _floor_div(g, g.op("Add", vertical, g.const(2.0, np.float32, "half")), 4.0)


@functools.lru_cache(maxsize=1)
def warp_arithmetic() -> str:
    """How the installed OpenCV's warpAffine computes 8-bit images: "fixed" (OpenCV 4.x: source positions in 1/32
    pixel, 15-bit weights, as remap's INTER_TAB) or "float" (OpenCV 5.x: float32 positions and weights).

    Probed, not read from the version: a shift of 0.01 pixel between 0 and 255 rounds to 0 in 1/32 steps, and
    gives 255 * 0.01 = 3 in float.
    """
    source = np.zeros((1, 2, 3), np.uint8)
    source[0, 1] = 255
    out = cv2.warpAffine(source, np.array([[1.0, 0.0, 0.01], [0.0, 1.0, 0.0]]), (1, 1),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return "fixed" if int(out[0, 0, 0]) == 0 else "float"


def _warp(g: _Writer, x: str, height: int, width: int, steps: ResampleSteps) -> str:
    """cv2.warpAffine (inverse map, BORDER_REPLICATE) of an (N, height, width, 3) tensor by ``steps.warp``, in the
    installed OpenCV's arithmetic (:func:`warp_arithmetic`)."""
    if warp_arithmetic() == "fixed":
        return _warp_fixed_point(g, x, height, width, steps)
    sy, oy, sx, ox = steps.warp
    out_height, out_width = steps.size
    cubic = steps.interpolation == cv2.INTER_CUBIC
    columns = _gather_sum(g, x, warp_taps(width, out_width, sx, ox, cubic), axis=2)
    return _round(g, _gather_sum(g, columns, warp_taps(height, out_height, sy, oy, cubic), axis=1), clip=cubic)


_AB_SCALE, _TAB = 1024, 32  # OpenCV 4.x warpAffine: positions in 1/1024 (AB_BITS 10), then 1/32 pixel (INTER_BITS 5)
_COEF = 32768  # INTER_REMAP_COEF_SCALE: remap's 15-bit fixed-point weights


def fixed_point_positions(n_out: int, scale: float, offset: float, rows: bool) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV 4.x warpAffine's source positions along one axis of an axis-aligned inverse map: (whole pixel,
    32nds) per output pixel. Columns: round(offset * 1024) + round(scale * x * 1024); rows: round((scale * y +
    offset) * 1024) (WarpAffineInvoker rounds the two differently), each + 16 and shifted right by 5."""
    d = np.arange(n_out, dtype=np.float64)
    if rows:
        position = np.rint((scale * d + offset) * _AB_SCALE).astype(np.int64)
    else:
        position = np.int64(np.rint(offset * _AB_SCALE)) + np.rint(scale * d * _AB_SCALE).astype(np.int64)
    position = (position + _AB_SCALE // _TAB // 2) >> 5
    return position >> 5, position & (_TAB - 1)


def _cubic_table() -> np.ndarray:
    """remap's INTER_CUBIC weights, (32, 32, 4, 4) int: for each (32nd of y, 32nd of x), the 4x4 taps' weights in
    1/32768, rounded, and adjusted to sum to 32768 at the first largest (or smallest) of taps [2:4, 2:4]
    (initInterTab2D starts that search at ksize / 2)."""
    one_d = _cubic_weights(np.arange(_TAB, dtype=np.float32) / np.float32(_TAB)).astype(np.float32)
    table = np.zeros((_TAB, _TAB, 4, 4), np.int64)
    for ty in range(_TAB):
        for tx in range(_TAB):
            weights = np.rint((one_d[ty][:, None] * one_d[tx][None, :]).astype(np.float32) * np.float32(_COEF)).astype(np.int64)
            excess = int(weights.sum()) - _COEF
            if excess:
                block = weights[2:4, 2:4]
                i, j = np.unravel_index(np.argmax(block) if excess < 0 else np.argmin(block), (2, 2))
                weights[2 + i, 2 + j] -= excess
            table[ty, tx] = weights
    return table


def _warp_fixed_point(g: _Writer, x: str, height: int, width: int, steps: ResampleSteps) -> str:
    """OpenCV 4.x warpAffine of whole numbers 0..255: (sum of weight * pixel + 16384) >> 15, weights in 1/32768.

    Bilinear weights are (32 - t) and t in 32nds per axis, whose products are the table's: separable, exact in
    float32. Bicubic weights are rounded per 4x4 tap pair, so not separable: 16 gathers and a weight per output
    pixel and tap (every product and partial sum is an integer below 2^24, so float32 adds them exactly).
    """
    sy, oy, sx, ox = steps.warp
    out_height, out_width = steps.size
    row_base, row_t = fixed_point_positions(out_height, sy, oy, rows=True)
    column_base, column_t = fixed_point_positions(out_width, sx, ox, rows=False)
    half = g.const(float(_COEF // 2), np.float32, "half")
    if steps.interpolation != cv2.INTER_CUBIC:
        linear = lambda n, base, t: AxisTaps(np.clip(base[:, None] + np.arange(2)[None, :], 0, n - 1),  # noqa: E731
                                            np.stack([_TAB - t, t], axis=-1).astype(np.float64) / _TAB)
        columns = _gather_sum(g, x, linear(width, column_base, column_t), axis=2)
        total = _gather_sum(g, columns, linear(height, row_base, row_t), axis=1)  # sum / 32768, exact
        return _floor_div(g, g.op("Add", g.op("Mul", total, g.const(float(_COEF), np.float32, "scale")), half), _COEF)
    table = _cubic_table()[row_t[:, None], column_t[None, :]]  # (out_height, out_width, 4, 4)
    total = None
    for i in range(4):
        rows = g.op("Gather", x, g.const(np.clip(row_base + i - 1, 0, height - 1), hint="taps"), axis=1)
        for j in range(4):
            taps = g.op("Gather", rows, g.const(np.clip(column_base + j - 1, 0, width - 1), hint="taps"), axis=2)
            term = g.op("Mul", taps, g.const(table[:, :, i, j, None], np.float32, "weights"))
            total = term if total is None else g.op("Add", total, term)
    return _clip(g, _floor_div(g, g.op("Add", total, half), _COEF))


def _fixed_resample(g: _Writer, frames: str, spec: PreprocessSpec, height: int, width: int) -> tuple[str, str]:
    """The CPU path's steps for ``height x width`` frames (``resize_steps``), as ops; (N, th, tw, 3) float32 out."""
    steps, (top, bottom, left, right) = resize_steps(height, width, spec)
    y0, y1, x0, x1 = steps.region
    out = frames
    if (y0, y1, x0, x1) != (0, height, 0, width):
        out = g.op("Slice", out, g.const([y0, x0]), g.const([y1, x1]), g.const([1, 2]))
    rh, rw = y1 - y0, x1 - x0
    for _ in range(steps.halvings):
        out = _halve(g, out, rh, rw)
        rh, rw = rh // 2, rw // 2
    names = {cv2.INTER_LINEAR: "bilinear", cv2.INTER_CUBIC: "bicubic", cv2.INTER_AREA: "area"}
    done = [f"{y1 - y0}x{x1 - x0} region" + (f", {steps.halvings} 2x2 halving(s)" if steps.halvings else "")]
    if steps.final == "resize":
        out = _resize(g, out, rh, rw, *steps.size, steps.interpolation)
        done.append(f"{names[steps.interpolation]} resize")
    elif steps.final == "warp":
        if steps.area is not None:
            lead_y, lead_x, fy, fx, ah, aw = steps.area
            if lead_y or lead_x:
                out = g.op("Slice", out, g.const([lead_y, lead_x]), g.const([rh, rw]), g.const([1, 2]))
            out = _resize(g, out, rh - lead_y, rw - lead_x, ah, aw, cv2.INTER_AREA, scale=(1.0 / fy, 1.0 / fx))
            rh, rw = ah, aw
            done.append("area resize")
        out = _warp(g, out, rh, rw, steps)
        arithmetic = "OpenCV 4.x fixed point" if warp_arithmetic() == "fixed" else "OpenCV 5.x float"
        done.append(f"{names[steps.interpolation]} warpAffine in {arithmetic}")
    if top or bottom or left or right:
        pads = g.const([0, top, left, 0, 0, bottom, right, 0])
        out = g.op("Pad", out, pads, g.const(float(spec.pad_value), np.float32, "pad_value"), mode="constant")
        done.append("letterbox border")
    return out, f"the CPU path's steps with OpenCV's arithmetic ({', '.join(done)})"


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

"""Images -> network input, from one PreprocessSpec: load, resize (crop / stretch / letterbox), normalize.

Every path here is vectorised: one ``cv2.resize`` per image, then one numpy expression per channel for
the whole batch. The same functions serve calibration, fidelity checks, the runtime and the benchmarks.

Two resize qualities, chosen by ``spec.antialias``:

- ``antialias=True`` (the spec's default): when an image is made smaller, 2x2 box halvings and a final
  ``cv2.INTER_AREA`` stand in for the antialiased resize torchvision/PIL apply during training; on
  scikit-image's photos, native and upscaled to 1080p, it agrees with torchvision's ``Resize(256) +
  CenterCrop(224)`` to 0.6-1.9/255 mean absolute difference (bilinear without antialias: up to 3.1/255).
  It is the default because models trained on antialiased inputs lose accuracy on aliased ones, and it
  costs about 0.2 ms more than bilinear on a 1080p frame.
- ``antialias=False``: ``spec.interpolation`` as is (bilinear by default), no antialiasing: the fastest
  path, and what YOLO-style letterboxing conventionally uses.

When an image is enlarged, both use ``spec.interpolation`` (antialiasing only matters when shrinking).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from trtpipe.errors import InputError
from trtpipe.spec import PreprocessSpec, channel_mix

_INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}

# Float pixels may stray this far outside 0..1 (rounding in the user's own arithmetic): half a step of 8 bits, so that
# they still land on 0 or 255.
FLOAT_TOLERANCE = 0.5 / 255


@dataclass(frozen=True)
class ResizeMeta:
    """How one image was mapped onto the network input, so that outputs can be mapped back.

    Network coordinates are ``x_net = x_src * scale_x + offset_x`` (likewise y): positive offsets are
    letterbox borders, negative offsets are the part cut away by a centre crop.
    """

    source_height: int
    source_width: int
    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    def to_source(self, xy: np.ndarray) -> np.ndarray:
        """Maps network-space coordinates ``(..., 2k)`` laid out x, y, x, y... back onto the source image."""
        xy = np.asarray(xy, dtype=np.float32).copy()
        xy[..., 0::2] = (xy[..., 0::2] - self.offset_x) / self.scale_x
        xy[..., 1::2] = (xy[..., 1::2] - self.offset_y) / self.scale_y
        return xy

    def boxes_to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Maps ``(N, 4)`` x1, y1, x2, y2 boxes from network space to the source image, clipped to it."""
        out = self.to_source(boxes)
        out[..., 0::2] = out[..., 0::2].clip(0, self.source_width)
        out[..., 1::2] = out[..., 1::2].clip(0, self.source_height)
        return out


# ----------------------------------------------------------------------------------------------
# Loading and checking images
# ----------------------------------------------------------------------------------------------


def load_image(path: str | Path) -> np.ndarray:
    """Reads an image file as BGR uint8 ``(H, W, 3)``, as cv2 gives it.

    Grayscale becomes three channels, alpha is dropped, 16-bit images are scaled to 8 bits.

    Raises:
        InputError: the file is missing or not an image OpenCV can decode; the message names it.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {path}: no such file", "check the path (a shell glob that matched nothing?)")
    # imdecode from bytes also handles non-ASCII paths on every platform, unlike cv2.imread.
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise InputError(
            f"image {path}: OpenCV cannot decode it ({data.size} bytes)",
            "give a JPEG, PNG, BMP, TIFF or WebP file; the file may be truncated or not an image",
        )
    return as_bgr_uint8(image, name=str(path))


def as_bgr_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Returns ``image`` as contiguous BGR uint8 ``(H, W, 3)``; converts grayscale, BGRA, 16-bit and float images.

    Floats must be in 0..1 (skimage.img_as_float's range), give or take :data:`FLOAT_TOLERANCE`.

    Raises:
        InputError: for None, empty images, shapes/channel counts that are not an image, other dtypes, and float
            images with values outside 0..1 (a 0..255 float image would otherwise turn white), NaN or inf.
    """
    if image is None:
        raise InputError(f"{name} is None, expected an image array", "cv2.imread returns None for unreadable files; check the path")
    image = np.asarray(image)
    if image.size == 0:
        raise InputError(f"{name} is empty (shape {image.shape})", "pass a decoded image with at least one pixel")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InputError(
            f"{name} has shape {image.shape}, expected (H, W) grayscale or (H, W, 3|4) BGR(A)",
            "pass one HxWxC image as cv2.imread returns it; for a batch pass a list of images",
        )
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype.kind == "f":
        # Floats are 0..1, as skimage.img_as_float gives them; 0..255 floats (frame.astype(np.float32)) would be
        # clipped to white, so anything else is refused rather than guessed at.
        _check_unit_floats(image, name)
        image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError(f"{name} has dtype {image.dtype}, expected uint8 (or uint16, or floats in 0..1)",
                         "convert with image.astype(np.uint8)")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def _check_unit_floats(image: np.ndarray, name: str) -> None:
    """Refuses a float image whose values are not all within 0..1 (give or take FLOAT_TOLERANCE), NaN and inf too."""
    low, high = float(image.min()), float(image.max())  # NaN propagates into both and fails the test below
    if low >= -FLOAT_TOLERANCE and high <= 1.0 + FLOAT_TOLERANCE:
        return
    finite = np.isfinite(image)
    bad = image.size - int(np.count_nonzero(finite))
    seen = f"values {float(image[finite].min()):.4g}..{float(image[finite].max()):.4g}" if bad < image.size else "no finite values"
    if bad:
        seen += f" and {bad} NaN/inf pixel value(s)"
        hint = "replace NaN/inf (np.nan_to_num) and pass floats in 0..1, or a uint8 image"
    elif low >= -FLOAT_TOLERANCE and high <= 255.0 + FLOAT_TOLERANCE:
        hint = ("for 0..255 floats (e.g. frame.astype(np.float32)) pass the uint8 image itself "
                "(image.astype(np.uint8)), or divide by 255")
    else:
        hint = "scale the image to 0..1 (skimage.img_as_float's range), or pass it as uint8 0..255"
    raise InputError(f"{name} is {image.dtype} with {seen}, expected floats in 0..1 (as skimage.img_as_float gives)", hint)


# ----------------------------------------------------------------------------------------------
# Resizing
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResampleSteps:
    """How a source rectangle becomes ``size`` pixels: :func:`resample_steps` decides, ``_resample`` runs the steps
    with OpenCV, and a fused-preprocessing network (``trtpipe.onnx.fuse_preprocess``) runs the same steps as ONNX
    ops, so the two give the same pixels. Sizes are (height, width); ``cv2`` flags name the interpolation.
    """

    region: tuple[int, int, int, int]  # (y0, y1, x0, x1): the source pixels used (the box and what its filter reaches)
    halvings: int  # 2x2 box averages, each of the region cut to an even height and width
    area: tuple[int, int, float, float, int, int] | None  # (lead_y, lead_x, fy, fx, height, width): INTER_AREA of
    # region[lead_y:, lead_x:] at exactly (fy, fx), to (height, width) pixels
    final: str  # "none" (the region is the output), "resize" (cv2.resize of the whole region) or "warp"
    interpolation: int  # of the final step: cv2.INTER_LINEAR / INTER_CUBIC / INTER_AREA
    warp: tuple[float, float, float, float] | None  # (sy, oy, sx, ox): output pixel (u, v) samples source pixel
    # centre (oy + sy * v, ox + sx * u) (cv2.warpAffine's inverse map, with BORDER_REPLICATE)
    size: tuple[int, int]  # the output


def resample_steps(
    height: int, width: int, box: tuple[float, float, float, float], out_width: int, out_height: int, spec: PreprocessSpec
) -> ResampleSteps:
    """The steps that resample the rectangle ``box = (x0, y0, x1, y1)`` (pixel edges, may be fractional) of a
    ``height x width`` source to ``out_width x out_height``.

    With ``spec.antialias`` and a shrink, the region is first halved with 2x2 box averages (``INTER_LINEAR`` at
    exactly 1/2 is one) while it is at least twice the target, then finished with ``INTER_AREA`` when a shrink of
    1.25x or more remains. A direct ``INTER_AREA`` from 1080p matches torchvision as well but costs ~2 ms at a
    fractional scale; the halving chain costs ~0.2 ms. Fractional boxes (centre crops) end with ``cv2.warpAffine`` at
    the box's exact scale and offset, so that the geometry is exactly torchvision's.
    """
    x0, y0, x1, y1 = box
    h, w = height, width
    # The region keeps the pixels around the box that the filter of an edge pixel reaches (as a resize of the whole
    # image, then a crop, would use them): cut at the box, the edge rows would see replicated pixels instead (up to
    # 61/255 off torchvision in the last row of a centre crop), and a halving would drop the box's odd last row.
    # A multiple of 16, so that up to four halvings pair the same pixels as without it (and INTER_AREA, below, can
    # start its cells where it would without it).
    support = 2.0 if spec.interpolation == "bicubic" else 1.0
    margin = 16 * math.ceil(((support + 1.0) * max(1.0, (x1 - x0) / out_width, (y1 - y0) / out_height) + 2) / 16)
    ix0, iy0 = max(0, math.floor(x0 + 1e-6) - margin), max(0, math.floor(y0 + 1e-6) - margin)
    ix1, iy1 = min(w, math.ceil(x1 - 1e-6) + margin), min(h, math.ceil(y1 - 1e-6) + margin)
    region = (iy0, iy1, ix0, ix1)
    rh, rw = iy1 - iy0, ix1 - ix0
    x0, x1, y0, y1 = x0 - ix0, x1 - ix0, y0 - iy0, y1 - iy0
    interpolation = _INTERPOLATION[spec.interpolation]
    halvings = 0
    if spec.antialias and (x1 - x0 > out_width or y1 - y0 > out_height):
        while x1 - x0 >= 2 * out_width and y1 - y0 >= 2 * out_height:
            rh, rw = rh // 2, rw // 2
            x0, x1, y0, y1 = x0 / 2, x1 / 2, y0 / 2, y1 / 2
            halvings += 1
        if x1 - x0 >= 1.25 * out_width or y1 - y0 >= 1.25 * out_height:
            interpolation = cv2.INTER_AREA
    size = (out_height, out_width)
    whole = abs(x0) < 1e-6 and abs(y0) < 1e-6 and abs(x1 - rw) < 1e-3 and abs(y1 - rh) < 1e-3
    if whole:
        final = "none" if (rh, rw) == size else "resize"
        return ResampleSteps(region, halvings, None, final, interpolation, None, size)
    area = None
    if interpolation == cv2.INTER_AREA:
        # A fractional box still 1.25x+ too large (a 720p frame's crop after one halving): INTER_AREA the region at the
        # box's exact scale (fx, fy given, so OpenCV keeps them exact), leaving only a sub-pixel shift for warpAffine;
        # warpAffine alone would sample it bilinearly, aliased.
        # INTER_AREA's cells start at the region's origin: start it at the box's first whole pixel, as it would
        # without the margin (the margin after the box stays, for the last row and column).
        lead_x, lead_y = math.floor(x0 + 1e-6), math.floor(y0 + 1e-6)
        x0, x1, y0, y1 = x0 - lead_x, x1 - lead_x, y0 - lead_y, y1 - lead_y
        fx, fy = out_width / (x1 - x0), out_height / (y1 - y0)
        # cv2.resize(dsize=None, fx, fy) makes round(n * f) pixels (cvRound: half to even, as Python's round)
        area = (lead_y, lead_x, fy, fx, round((rh - lead_y) * fy), round((rw - lead_x) * fx))
        x0, x1, y0, y1 = x0 * fx, x1 * fx, y0 * fy, y1 * fy
        interpolation = cv2.INTER_LINEAR
    # Output pixel centre u + 0.5 maps to source edge coordinate x0 + (u + 0.5) * sx; cv2's pixel centres are at +0.5.
    sx, sy = (x1 - x0) / out_width, (y1 - y0) / out_height
    warp = (sy, y0 + 0.5 * sy - 0.5, sx, x0 + 0.5 * sx - 0.5)
    return ResampleSteps(region, halvings, area, "warp", interpolation, warp, size)


def _resample(image: np.ndarray, steps: ResampleSteps) -> np.ndarray:
    """Runs :func:`resample_steps`' steps on ``image`` with OpenCV."""
    y0, y1, x0, x1 = steps.region
    region = image[y0:y1, x0:x1]
    for _ in range(steps.halvings):
        rh, rw = region.shape[0] // 2, region.shape[1] // 2
        region = cv2.resize(region[: 2 * rh, : 2 * rw], (rw, rh), interpolation=cv2.INTER_LINEAR)
    out_height, out_width = steps.size
    if steps.final == "none":
        return region
    if steps.final == "resize":
        return cv2.resize(region, (out_width, out_height), interpolation=steps.interpolation)
    if steps.area is not None:
        lead_y, lead_x, fy, fx, _, _ = steps.area
        region = cv2.resize(region[lead_y:, lead_x:], None, fx=fx, fy=fy, interpolation=cv2.INTER_AREA)
    # warpAffine (given the inverse map) resamples the 3 channels in one pass: 0.06 ms for 224x224 where remap took
    # 0.29 ms (OpenCV 5.1, 2 threads, measured on this path).
    sy, oy, sx, ox = steps.warp
    matrix = np.array([[sx, 0.0, ox], [0.0, sy, oy]], np.float64)
    return cv2.warpAffine(region, matrix, (out_width, out_height), flags=steps.interpolation | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def resize_steps(
    height: int, width: int, spec: PreprocessSpec, meta: ResizeMeta | None = None
) -> tuple[ResampleSteps, tuple[int, int, int, int]]:
    """How a ``height x width`` source becomes the network's ``spec.height x spec.width`` pixels under ``spec.resize``:
    the resampling steps, and the letterbox border (top, bottom, left, right) of ``spec.pad_value`` around their
    output (zeros for resize_crop and stretch). ``meta``: its :func:`resize_meta`, when the caller has it."""
    th, tw = spec.height, spec.width
    meta = meta or resize_meta(height, width, spec)
    if spec.resize == "letterbox":
        nh, nw = letterbox_size(height, width, spec)
        top, left = int(meta.offset_y), int(meta.offset_x)
        return resample_steps(height, width, (0, 0, width, height), nw, nh, spec), (top, th - nh - top, left, tw - nw - left)
    # stretch and resize_crop: the network input is the source rectangle that maps onto 0..tw x 0..th.
    box = (-meta.offset_x / meta.scale_x, -meta.offset_y / meta.scale_y,
           (tw - meta.offset_x) / meta.scale_x, (th - meta.offset_y) / meta.scale_y)
    return resample_steps(height, width, box, tw, th, spec), (0, 0, 0, 0)


def resize_one(image: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, ResizeMeta]:
    """Resizes one BGR uint8 image to ``spec.height x spec.width`` by ``spec.resize``; returns it and its meta."""
    h, w = image.shape[:2]
    meta = resize_meta(h, w, spec)
    steps, (top, bottom, left, right) = resize_steps(h, w, spec, meta)
    out = _resample(image, steps)
    if top or bottom or left or right:
        out = cv2.copyMakeBorder(out, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(spec.pad_value,) * 3)
    return out, meta


def resize_meta(height: int, width: int, spec: PreprocessSpec) -> ResizeMeta:
    """Where a ``height x width`` source lands on the network input under ``spec.resize``, without resizing.

    resize_crop: resize so the image covers ``target / crop_fraction``, then take the centre ``target``. For
    square targets this is torchvision's ``Resize(floor(224 / 0.875) = 256)`` + ``CenterCrop(224)``, with the
    same rounding (the resized size truncated, the crop offset rounded half to even). letterbox: scale to fit
    inside the target keeping the aspect ratio, centred (YOLO). stretch: scale each axis to the target.
    The fused-preprocessing graph (``trtpipe.onnx.fuse_preprocess``) uses the same geometry.
    """
    h, w = height, width
    th, tw = spec.height, spec.width
    if spec.resize == "stretch":
        return ResizeMeta(h, w, tw / w, th / h, 0.0, 0.0)
    if spec.resize == "letterbox":
        nh, nw = letterbox_size(h, w, spec)
        return ResizeMeta(h, w, nw / w, nh / h, float((tw - nw) // 2), float((th - nh) // 2))
    rh, rw = crop_resize_size(h, w, spec)
    top, left = int(round((rh - th) / 2.0)), int(round((rw - tw) / 2.0))  # torchvision's CenterCrop
    return ResizeMeta(h, w, rw / w, rh / h, -float(left), -float(top))


def crop_resize_size(height: int, width: int, spec: PreprocessSpec) -> tuple[int, int]:
    """resize_crop: the (height, width) the whole source is resized to before the centre crop."""
    h, w = height, width
    th, tw = spec.height, spec.width
    if th == tw:
        # torchvision: short side -> floor(size / crop_pct); long side -> int(short * long / short_src).
        short = math.floor(th / spec.crop_fraction)
        return (int(short * h / w), short) if w <= h else (short, int(short * w / h))
    rh, rw = math.floor(th / spec.crop_fraction), math.floor(tw / spec.crop_fraction)
    cover = max(rh / h, rw / w)
    return max(th, round(h * cover)), max(tw, round(w * cover))


def letterbox_size(height: int, width: int, spec: PreprocessSpec) -> tuple[int, int]:
    """letterbox: the (height, width) the source is scaled to inside the target (the rest is padding)."""
    scale = min(spec.height / height, spec.width / width)
    return max(1, round(height * scale)), max(1, round(width * scale))


# ----------------------------------------------------------------------------------------------
# Normalizing a batch
# ----------------------------------------------------------------------------------------------


def normalize_batch(resized: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 BGR ``(N, H, W, 3)`` -> float32 ``(N, C, H, W)`` (NCHW) or ``(N, H, W, C)`` (NHWC), normalized.

    ``C`` and each channel's content follow ``spec.channel_order`` (see :func:`trtpipe.spec.channel_mix`): planes of
    the BGR image (RGB, BGR, ...), luma (GRAY, BT.601 weights in float, not rounded to uint8), or alpha 255 (RGBA).
    ``(pixel * pixel_scale - mean) / std`` is folded into one multiply-add per channel (float32, so results agree
    with a float64 reference to about 1e-6 of the normalized range).
    """
    scale = np.float32(spec.pixel_scale) / np.asarray(spec.std, np.float32)
    shift = np.asarray(spec.mean, np.float32) / np.asarray(spec.std, np.float32)
    source = _plane_sources(spec.channel_order)
    n, h, w, _ = resized.shape
    if source is None:  # luma or alpha: a weighted sum of the planes plus an offset, per channel
        weights, offsets = channel_mix(spec.channel_order)
        mixed = resized.reshape(-1, 3).astype(np.float32) @ np.asarray(weights, np.float32).T
        mixed += np.asarray(offsets, np.float32)
        mixed *= scale
        mixed -= shift
        out = mixed.reshape(n, h, w, -1)
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2)) if spec.layout == "NCHW" else out
    if spec.layout == "NCHW":
        out = np.empty((n, len(source), h, w), np.float32)
        for i in range(n):
            # cv2.split gives contiguous planes and addWeighted does scale * x - shift with the uint8 -> float32
            # conversion in one SIMD pass into the output plane: 0.05 ms for 3x224x224, where numpy on the
            # strided channel views takes 0.09 ms.
            planes = cv2.split(resized[i])
            for c, src in enumerate(source):
                cv2.addWeighted(planes[src], float(scale[c]), planes[src], 0.0, float(-shift[c]), dst=out[i, c], dtype=cv2.CV_32F)
        return out
    out = resized[..., list(source)] if source != (0, 1, 2) else resized
    out = out.astype(np.float32)
    out *= scale
    out -= shift
    return out


def _plane_sources(order: str) -> tuple[int, ...] | None:
    """The BGR plane each network channel copies (RGB -> (2, 1, 0)), or None where a channel is not one plane."""
    weights, offsets = channel_mix(order)
    if any(offsets) or any(sorted(row) != [0.0, 0.0, 1.0] for row in weights):
        return None
    return tuple(row.index(1.0) for row in weights)


def preprocess_with_meta(
    images: Sequence[np.ndarray], spec: PreprocessSpec, names: Sequence[str] | None = None
) -> tuple[np.ndarray, list[ResizeMeta]]:
    """Like :func:`preprocess_batch`, also returning each image's :class:`ResizeMeta` (to undo letterboxing).

    ``names`` name the images in errors (a stream's source names). Defaults to "image i" ("image" for one).
    """
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        images = [images]
    if len(images) == 0:
        raise InputError("the batch is empty, expected at least one image", "pass one image or a non-empty list")
    resized = np.empty((len(images), spec.height, spec.width, 3), np.uint8)
    metas = []
    for i, image in enumerate(images):
        name = names[i] if names is not None else f"image {i}" if len(images) > 1 else "image"
        image = as_bgr_uint8(image, name=name)
        resized[i], meta = resize_one(image, spec)
        metas.append(meta)
    return normalize_batch(resized, spec), metas


def preprocess_batch(images: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """BGR uint8 images (as cv2 gives them) -> float32 network input.

    Args:
        images: a list of ``(H, W, 3)`` BGR uint8 images (grayscale, BGRA, 16-bit and 0..1 float images are
            converted), or one image.
        spec: size, resize mode, interpolation/antialias, mean/std (0..1 units), pixel_scale,
            channel order and layout.

    Returns:
        ``(N, C, H, W)`` for NCHW or ``(N, H, W, C)`` for NHWC, float32, contiguous; C is ``spec.channels``.

    Raises:
        InputError: for an empty batch, None/empty images, wrong channel counts or dtypes, floats outside 0..1.
    """
    return preprocess_with_meta(images, spec)[0]


# ----------------------------------------------------------------------------------------------
# Raw frames, for networks that preprocess themselves (export/build --fuse-preprocess)
# ----------------------------------------------------------------------------------------------


FrameRange = tuple[tuple[int, int], tuple[int, int]]  # ((min height, min width), (max height, max width))


def check_frame(image: np.ndarray, spec: PreprocessSpec, frame_range: FrameRange | None, name: str = "image") -> np.ndarray:
    """One image as the uint8 BGR ``(H, W, 3)`` frame a fused-preprocessing network takes.

    Args:
        image: a BGR image as cv2 gives it (grayscale, BGRA and 16-bit are converted).
        spec: the network's preprocess spec (its ``fused_preprocess`` says what frames it takes).
        frame_range: the (height, width) sizes the network takes, ``(min, max)``: one size for a fixed frame size,
            the engine's optimization profile for a dynamic one; None when any size goes (ONNX Runtime).

    Raises:
        InputError: for what :func:`as_bgr_uint8` refuses, and for a frame of a size the network does not take.
    """
    frame = as_bgr_uint8(image, name=name)
    if frame_range is None:
        return frame
    (low_h, low_w), (high_h, high_w) = frame_range
    h, w = frame.shape[:2]
    if (low_h, low_w) == (high_h, high_w) and (h, w) != (low_h, low_w):
        raise InputError(
            f"{name} is {h}x{w}, but the network preprocesses {low_h}x{low_w} frames itself "
            f"(built with --fuse-preprocess {low_h}x{low_w})",
            f"feed {low_h}x{low_w} frames (cv2.resize them), or build the engine with --fuse-preprocess dynamic and "
            "--minShapes/--optShapes/--maxShapes that cover your frame sizes",
        )
    if not (low_h <= h <= high_h and low_w <= w <= high_w):
        raise InputError(
            f"{name} is {h}x{w}, outside the {low_h}x{low_w} to {high_h}x{high_w} frames the engine's optimization "
            "profile takes (it preprocesses frames itself, --fuse-preprocess dynamic)",
            f"resize frames into that range (cv2.resize), or rebuild with --minShapes/--maxShapes "
            f"frames:NxHxWx3 that cover {h}x{w}",
        )
    return frame


def prepare_frames(
    images: Sequence[np.ndarray], spec: PreprocessSpec, frame_range: FrameRange | None
) -> tuple[np.ndarray, list[ResizeMeta]]:
    """BGR images -> one uint8 NHWC batch for a fused-preprocessing network, and each image's :class:`ResizeMeta`.

    The host only checks and stacks the frames: the resize, normalisation and layout happen in the network.

    Raises:
        InputError: an empty batch, a bad image, a frame of a size outside ``frame_range`` (see
            :func:`check_frame`), or frames of different sizes in one batch (a tensor has one height and width).
    """
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        images = [images]
    if len(images) == 0:
        raise InputError("the batch is empty, expected at least one image", "pass one image or a non-empty list")
    frames = [check_frame(image, spec, frame_range, f"image {i}" if len(images) > 1 else "image") for i, image in enumerate(images)]
    sizes = sorted({f.shape[:2] for f in frames})
    if len(sizes) > 1:
        raise InputError(
            f"one batch holds frames of {len(sizes)} sizes ({', '.join(f'{h}x{w}' for h, w in sizes)}); the network "
            "preprocesses frames itself and a batch tensor has one height and width",
            "pass frames of one size per call, or use Pipeline.stream, which batches frames of equal size together",
        )
    metas = [resize_meta(f.shape[0], f.shape[1], spec) for f in frames]
    return np.stack(frames), metas


def prepare_inputs(
    images: Sequence[np.ndarray], spec: PreprocessSpec, *, frames: bool, frame_range: FrameRange | None = None
) -> tuple[np.ndarray, list[ResizeMeta]]:
    """The network input for ``images``: host-preprocessed float tensors, or raw uint8 frames when ``frames``."""
    return prepare_frames(images, spec, frame_range) if frames else preprocess_with_meta(images, spec)

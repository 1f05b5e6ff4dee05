"""Preprocessing: layouts, channel order, normalization, resize modes, bad images, and torchvision parity."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from trtpipe.errors import InputError
from trtpipe.pipeline.preprocess import (
    FLOAT_TOLERANCE, as_bgr_uint8, check_frame, load_image, prepare_frames, preprocess_batch, preprocess_with_meta,
)
from trtpipe.spec import PreprocessSpec

SPEC = PreprocessSpec(model="t", height=224, width=224)


def photo(name="chelsea"):
    import skimage.data

    return np.ascontiguousarray(getattr(skimage.data, name)()[:, :, ::-1])  # RGB -> BGR, as cv2 gives


def test_layouts_channel_order_and_normalization():
    image = np.zeros((10, 10, 3), np.uint8)
    image[..., 0] = 255  # pure blue in BGR
    spec = PreprocessSpec(model="t", height=4, width=4, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="stretch")
    nchw = preprocess_batch([image], spec)
    assert nchw.shape == (1, 3, 4, 4) and nchw.dtype == np.float32
    np.testing.assert_allclose(nchw[0, :, 0, 0], [-1, -1, 1], atol=1e-6)  # RGB: blue is channel 2
    bgr = preprocess_batch([image], spec.replace(channel_order="BGR", layout="NHWC"))
    assert bgr.shape == (1, 4, 4, 3)
    np.testing.assert_allclose(bgr[0, 0, 0], [1, -1, -1], atol=1e-6)


@pytest.mark.parametrize("antialias", [True, False])
def test_matches_torchvision_within_2_of_255(antialias):
    """Antialiased mode matches torchvision's PIL Resize(256)+CenterCrop(224) to < 2/255 mean abs difference."""
    torchvision = pytest.importorskip("torchvision")
    from PIL import Image

    T = torchvision.transforms
    reference = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
    frame = cv2.resize(photo("coffee"), (1920, 1080), interpolation=cv2.INTER_CUBIC)
    ref = reference(Image.fromarray(frame[:, :, ::-1].copy())).numpy()
    out = preprocess_batch([frame], SPEC.replace(mean=(0, 0, 0), std=(1, 1, 1), antialias=antialias))[0]
    diff = np.abs(out - ref).mean() * 255
    if antialias:
        assert diff < 2.0
    else:
        assert diff > 1.2  # the fast mode aliases: measurably further from torchvision


@pytest.mark.parametrize("name, interpolation", [("coffee", "bilinear"), ("rocket", "bicubic")])
def test_the_edges_of_a_centre_crop_match_torchvision_as_well_as_its_inside(name, interpolation):
    """The crop's first and last rows and columns are resampled from the pixels around the box, as torchvision's
    resize-then-crop does (cut at the box, they saw replicated pixels: twice the mean difference, up to 69/255)."""
    torchvision = pytest.importorskip("torchvision")
    from PIL import Image

    T = torchvision.transforms
    mode = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}[interpolation]
    frame = cv2.resize(photo(name), (1920, 1080), interpolation=cv2.INTER_CUBIC)
    ref = T.Compose([T.Resize(256, interpolation=mode), T.CenterCrop(224), T.ToTensor()])(
        Image.fromarray(frame[:, :, ::-1].copy())).numpy()
    spec = SPEC.replace(mean=(0, 0, 0), std=(1, 1, 1), interpolation=interpolation)
    diff = np.abs(preprocess_batch([frame], spec)[0] - ref) * 255
    edges = np.concatenate([diff[:, 0].ravel(), diff[:, -1].ravel(), diff[:, :, 0].ravel(), diff[:, :, -1].ravel()])
    assert edges.mean() < 1.5 * diff.mean() and edges.max() < 40


def test_letterbox_meta_undoes_the_mapping():
    image = np.full((100, 200, 3), 50, np.uint8)
    spec = SPEC.replace(height=64, width=64, resize="letterbox", antialias=False)
    batch, (meta,) = preprocess_with_meta([image], spec)
    assert batch.shape == (1, 3, 64, 64)
    assert (meta.scale_x, meta.offset_y) == (0.32, 16.0)
    np.testing.assert_allclose(meta.boxes_to_source(np.array([[0, 16, 64, 48]])), [[0, 0, 200, 100]])


def test_grayscale_bgra_and_16_bit_are_converted():
    gray = np.full((30, 40), 128, np.uint8)
    bgra = np.full((30, 40, 4), 128, np.uint8)
    deep = np.full((30, 40, 3), 128 << 8, np.uint16)
    out = preprocess_batch([gray, bgra, deep], SPEC.replace(height=16, width=16))
    assert np.allclose(out[0], out[1]) and np.allclose(out[0], out[2])


@pytest.mark.parametrize(
    "image, message",
    [
        (None, "image is None"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10, 2), np.uint8), r"shape \(10, 10, 2\)"),
        (np.zeros((2, 10, 10, 3), np.uint8), r"shape \(2, 10, 10, 3\)"),
    ],
)
def test_bad_images(image, message):
    with pytest.raises(InputError, match=message + ".*Hint:"):
        preprocess_batch([image], SPEC)


def test_float_images_in_0_to_1_are_scaled_to_8_bits():
    image = photo()[:40, :50]
    for dtype in (np.float16, np.float32, np.float64):
        assert np.array_equal(as_bgr_uint8(image.astype(dtype) / dtype(255)), image), dtype
    near = image / np.float32(255)
    near[0, 0], near[0, 1] = -FLOAT_TOLERANCE / 2, 1 + FLOAT_TOLERANCE / 2  # arithmetic that strays a hair outside 0..1
    assert as_bgr_uint8(near)[0, :2].tolist() == [[0, 0, 0], [255, 255, 255]]


@pytest.mark.parametrize(
    "values, seen, hint",
    [
        ("0..255", r"float32 with values 0\.\.255, expected floats in 0\.\.1", r"image\.astype\(np\.uint8\).*divide by 255"),
        ("NaN", r"float32 with values 0\.\.1 and 1 NaN/inf pixel value\(s\)", "np.nan_to_num"),
        ("inf", r"float32 with values 0\.\.1 and 1 NaN/inf", "np.nan_to_num"),
        ("negative", r"float32 with values -0\.5\.\.1, expected floats in 0\.\.1", r"scale the image to 0\.\.1"),
    ],
)
def test_float_images_outside_0_to_1_are_refused_in_every_path(values, seen, hint):
    """A 0..255 float frame (frame.astype(np.float32)) used to be clipped to white without a word."""
    image = photo()[:40, :50].astype(np.float32)
    image[0, 0], image[0, 1] = 0, 255
    if values != "0..255":
        image /= 255
        image[3, 4, 1] = {"NaN": np.nan, "inf": np.inf, "negative": -0.5}[values]
    pattern = rf"^image 7 is {seen}.*Hint: .*{hint}"
    with pytest.raises(InputError, match=pattern):
        as_bgr_uint8(image, name="image 7")
    with pytest.raises(InputError, match=pattern):
        check_frame(image, SPEC, None, name="image 7")
    with pytest.raises(InputError, match=pattern.replace("image 7", "image 1")):
        preprocess_batch([np.zeros_like(image), image], SPEC)  # the batch's second image is named
    with pytest.raises(InputError, match=pattern.replace("image 7", "cam0 frame 3")):
        preprocess_with_meta([image], SPEC, names=["cam0 frame 3"])
    with pytest.raises(InputError, match=pattern.replace("image 7", "image 1")):
        prepare_frames([np.zeros_like(image), image], SPEC, None)


def test_load_image(tmp_path):
    path = tmp_path / "cat.png"
    cv2.imwrite(str(path), photo()[:50, :60])
    assert load_image(path).shape == (50, 60, 3)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(InputError, match="broken.jpg.*cannot decode.*Hint"):
        load_image(tmp_path / "broken.jpg")
    with pytest.raises(InputError, match="missing.jpg: no such file"):
        load_image(tmp_path / "missing.jpg")


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_gray_and_alpha_channels_come_from_the_decoded_bgr_image(layout):
    image = np.random.default_rng(3).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    plain = PreprocessSpec(model="t", height=8, width=8, resize="stretch", mean=(0.5,), std=(0.25,), layout=layout,
                           channel_order="BGR")
    bgr = preprocess_batch([image], plain)[0]
    bgr = bgr if layout == "NCHW" else bgr.transpose(2, 0, 1)
    gray = preprocess_batch([image], plain.replace(channel_order="GRAY"))[0]
    assert gray.shape == ((1, 8, 8) if layout == "NCHW" else (8, 8, 1))
    gray = gray if layout == "NCHW" else gray.transpose(2, 0, 1)
    pixels = bgr * 0.25 + 0.5  # back to 0..1 units; luma with OpenCV's BT.601 weights (COLOR_BGR2GRAY)
    np.testing.assert_allclose(gray[0], ((0.114 * pixels[0] + 0.587 * pixels[1] + 0.299 * pixels[2]) - 0.5) / 0.25, atol=1e-5)
    rgba = preprocess_batch([image], plain.replace(channel_order="RGBA", mean=(0.5, 0.5, 0.5, 0.0), std=(0.25, 0.25, 0.25, 1.0)))[0]
    rgba = rgba if layout == "NCHW" else rgba.transpose(2, 0, 1)
    np.testing.assert_allclose(rgba[:3], bgr[::-1], atol=1e-6)
    assert np.all(rgba[3] == 1.0)  # alpha 255 (opaque) at scale 1/255, mean 0, std 1

"""Preprocessing fused into the network: for fixed frame sizes the CPU path's own pixels (its steps with OpenCV's
arithmetic), for dynamic ones its fast path's geometry; raw frames through the Pipeline and the stream, and
TensorRT-RTX builds of the fused graph."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import onnx
import pytest

from trtpipe.errors import ConfigError, InputError, OnnxModelError
from trtpipe.onnx.fuse_preprocess import FRAMES_INPUT, difference_from_cpu, fuse_preprocess, preprocess_model
from trtpipe.pipeline.pipeline import Pipeline
from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine
from trtpipe.spec import BuildConfig, PreprocessSpec

SPEC = PreprocessSpec(model="t", height=32, width=32)


def photo(height, width, name="astronaut"):
    skimage_data = pytest.importorskip("skimage.data")
    image = np.ascontiguousarray(getattr(skimage_data, name)()[:, :, ::-1])
    return np.ascontiguousarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC))


def run(model, frames):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {FRAMES_INPUT: frames})[0]


def cpu_and_fused_pixels(spec, frame):
    """The CPU path's resized uint8 pixels and the fused graph's (ONNX Runtime), both (H, W, 3) float64 BGR."""
    from trtpipe.pipeline.preprocess import resize_one

    plain = spec.replace(mean=(0, 0, 0), std=(1, 1, 1), pixel_scale=1.0, channel_order="BGR", layout="NHWC")
    height, width = frame.shape[:2]
    fused = run(preprocess_model(plain, f"{height}x{width}"), frame[None])[0].astype(np.float64)
    return resize_one(frame, plain)[0].astype(np.float64), fused


@pytest.mark.parametrize("resize", ["resize_crop", "letterbox", "stretch"])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "area"])
@pytest.mark.parametrize("antialias", [True, False])
def test_fixed_frames_give_the_cpu_paths_pixels(resize, interpolation, antialias):
    """A fixed frame size runs the CPU path's own steps (halvings, INTER_AREA, resize or warpAffine, border) with
    OpenCV's arithmetic: the same uint8 pixels but where a sum lands near a half. Bilinear warpAffine rounds most
    of those (up to 1.7% of pixels when enlarging): OpenCV 5.x interpolates in SIMD arithmetic chosen per CPU, which
    the graph does not copy; every other step differs on under 0.01%."""
    spec = PreprocessSpec(model="t", height=48, width=40, resize=resize, interpolation=interpolation, antialias=antialias)
    for height, width in ((270, 480), (61, 83), (20, 30)):  # shrink by halvings, an odd fractional shrink, enlarge
        cpu, fused = cpu_and_fused_pixels(spec, photo(height, width))
        differ = np.abs(fused - cpu)
        assert differ.max() <= 1.0 and (differ > 0).mean() < 0.03, (height, width, differ.max(), (differ > 0).mean())


def opencv4_cubic_table():
    """initInterTab2D's INTER_CUBIC table, (32, 32, 4, 4), written here apart from trtpipe's: interpolateCubic in
    float32, products rounded to 1/32768, the excess taken off the first extreme of taps [2:4, 2:4]."""
    a = np.float32(-0.75)
    table = np.zeros((32, 32, 4, 4), np.int64)
    coefficients = []
    for t in range(32):
        x = np.float32(t) / np.float32(32)
        c0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
        c1 = ((a + 2) * x - (a + 3)) * x * x + 1
        c2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
        coefficients.append(np.array([c0, c1, c2, 1 - c0 - c1 - c2], np.float32))
    for ty in range(32):
        for tx in range(32):
            weights = table[ty, tx]
            for i in range(4):
                for j in range(4):
                    weights[i, j] = int(np.rint(np.float32(coefficients[ty][i] * coefficients[tx][j]) * np.float32(32768)))
            excess = int(weights.sum()) - 32768
            if excess:
                low = high = (2, 2)
                for i in (2, 3):
                    for j in (2, 3):
                        if weights[i, j] < weights[low]:
                            low = (i, j)
                        elif weights[i, j] > weights[high]:
                            high = (i, j)
                weights[high if excess < 0 else low] -= excess
    return table


def opencv4_warp_affine(src, matrix, out_width, out_height, cubic):
    """OpenCV 4.x's cv2.warpAffine (WARP_INVERSE_MAP, BORDER_REPLICATE) of a uint8 image, written from its
    algorithm (WarpAffineInvoker + remap's INTER_TAB): positions in 1/32 pixel, 15-bit weights. Checked against
    opencv-python-headless 4.10.0.84, 4.11.0.86, 4.12.0.88 and 4.13.0.90: 0 of 150,528 values differ, bilinear and
    bicubic (OpenCV 5.x computes in float and is what the installed cv2 does here)."""
    xs, ys = np.arange(out_width), np.arange(out_height)
    x = (np.rint(matrix[0, 2] * 1024).astype(np.int64) + np.rint(matrix[0, 0] * xs * 1024).astype(np.int64) + 16) >> 5
    y = (np.rint((matrix[1, 1] * ys + matrix[1, 2]) * 1024).astype(np.int64) + 16) >> 5
    ix, tx, iy, ty = x >> 5, x & 31, y >> 5, y & 31
    h, w = src.shape[:2]
    total = np.zeros((out_height, out_width, src.shape[2]), np.int64)
    if cubic:
        table = opencv4_cubic_table()
        for i in range(4):
            for j in range(4):
                pixels = src[np.clip(iy + i - 1, 0, h - 1)][:, np.clip(ix + j - 1, 0, w - 1)].astype(np.int64)
                total += table[ty[:, None], tx[None, :], i, j][..., None] * pixels
    else:
        for i, wy in enumerate((32 - ty, ty)):
            for j, wx in enumerate((32 - tx, tx)):
                pixels = src[np.clip(iy + i, 0, h - 1)][:, np.clip(ix + j, 0, w - 1)].astype(np.int64)
                total += (wy[:, None] * wx[None, :] * 32)[..., None] * pixels
    return np.clip((total + 16384) >> 15, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_with_opencv_4_the_graph_follows_its_fixed_point_warp(interpolation, monkeypatch):
    """OpenCV 4.x warps in 1/32 pixel steps (up to 4 steps and 23% of values away from 5.x's float warp): where it
    is installed, the fused graph computes that instead, to the value."""
    import trtpipe.onnx.fuse_preprocess as fuse_module
    from trtpipe.pipeline.preprocess import resize_steps

    assert fuse_module.warp_arithmetic() in ("fixed", "float")  # probed from the installed cv2
    monkeypatch.setattr(fuse_module, "warp_arithmetic", lambda: "fixed")
    spec = PreprocessSpec(model="t", height=48, width=40, interpolation=interpolation, antialias=False,
                          mean=(0, 0, 0), std=(1, 1, 1), pixel_scale=1.0, channel_order="BGR", layout="NHWC")
    frame = photo(61, 83)
    steps, _ = resize_steps(61, 83, spec)
    assert steps.final == "warp" and steps.area is None and steps.halvings == 0
    y0, y1, x0, x1 = steps.region
    sy, oy, sx, ox = steps.warp
    expected = opencv4_warp_affine(frame[y0:y1, x0:x1], np.array([[sx, 0, ox], [0, sy, oy]]), 40, 48,
                                   cubic=interpolation == "bicubic")
    assert np.array_equal(run(preprocess_model(spec, "61x83"), frame[None])[0], expected)


def test_fused_efficientnet_preprocessing_of_a_1080p_frame_is_the_cpu_paths():
    """EfficientNet-Lite0's spec (bicubic, antialiased, crop 224 of 256) on 1080p: 2 halvings then a bicubic warp."""
    spec = PreprocessSpec(model="t", height=224, width=224, resize="resize_crop", crop_fraction=224 / 256,
                          interpolation="bicubic", antialias=True)
    frames = [photo(1080, 1920, name) for name in ("astronaut", "coffee", "chelsea")]
    differ = np.concatenate([np.abs(np.subtract(*cpu_and_fused_pixels(spec, f))).ravel() for f in frames])
    assert differ.max() <= 1.0 and (differ > 0).mean() < 1e-4  # OpenCV 5.1: 1e-5 of values; 4.10: none


def test_halving_rounds_half_up_as_opencv():
    """cv2's exact 1/2 resize rounds (a + b + c + d + 2) >> 2: a block summing to 2 gives 1, where a half-to-even
    Round would give 0. Two halvings (8x8 -> 4x4 -> 2x2) make it visible in the output."""
    spec = PreprocessSpec(model="t", height=2, width=2, resize="stretch", interpolation="area", antialias=True)
    frame = np.zeros((8, 8, 3), np.uint8)
    frame[0:4:2, 0:4:2] = 2  # each 2x2 block of the top-left 4x4 sums to 2 -> four 1s -> (4 + 2) >> 2 = 1
    cpu, fused = cpu_and_fused_pixels(spec, frame)
    assert cpu[0, 0, 0] == 1.0
    assert np.array_equal(cpu, fused)


@pytest.mark.parametrize("resize", ["resize_crop", "letterbox", "stretch"])
@pytest.mark.parametrize("size", [(64, 48), (40, 40)])
def test_dynamic_frames_follow_the_cpu_fast_path(resize, size):
    """Dynamic frames: ONNX Resize (not antialiased) samples where the CPU path's fast mode (antialias=False) does."""
    spec = PreprocessSpec(model="t", height=size[0], width=size[1], resize=resize, mean=(0, 0, 0), std=(1, 1, 1),
                          antialias=False)
    mean, worst = difference_from_cpu(spec, "dynamic", [photo(120, 200)])
    assert mean < 0.5 and worst < 6  # cv2 works in 1/32 pixel steps and rounds to uint8


def test_dynamic_frames_take_any_size_with_the_cpu_rounding():
    spec = PreprocessSpec(model="t", height=24, width=24, antialias=False, layout="NHWC", channel_order="BGR")
    model = preprocess_model(spec, "dynamic")
    for height, width in ((50, 90), (91, 37), (64, 64)):  # landscape, portrait (odd sizes: rounding), square
        mean, worst = difference_from_cpu(spec, "dynamic", [photo(height, width, "coffee")])
        assert mean < 0.5 and worst < 6, (height, width)  # cv2 works in 1/32 pixel steps and rounds to uint8
        assert run(model, photo(height, width)[None]).shape == (1, 24, 24, 3)


def test_fused_model_gives_the_network_output_of_the_cpu_path(tiny_onnx):
    source = onnx.load(tiny_onnx(input_shape=("N", 3, 32, 32)))
    spec = SPEC.replace(antialias=False)  # the CPU path's own antialiasing is an approximation; this checks wiring
    fused = fuse_preprocess(source, spec, "60x80")
    assert fused.spec.fused_preprocess == "60x80" and fused.spec.replace(fused_preprocess=None) == spec
    (graph_input,) = fused.model.graph.input
    assert graph_input.name == FRAMES_INPUT and graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    frames = np.stack([photo(60, 80), photo(60, 80, "coffee")])
    from trtpipe.pipeline.preprocess import preprocess_batch

    import onnxruntime as ort

    expected = ort.InferenceSession(source.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input": preprocess_batch(list(frames), spec)})[0]
    got = run(fused.model, frames)
    assert got.shape == expected.shape
    assert np.abs(got - expected).mean() < 0.01 * np.abs(expected).mean()


def test_what_cannot_be_fused_is_refused(tiny_onnx):
    source = onnx.load(tiny_onnx(input_shape=("N", 3, 32, 32)))
    with pytest.raises(ConfigError, match="nearest"):
        fuse_preprocess(source, SPEC.replace(interpolation="nearest"), "60x80")
    with pytest.raises(ConfigError, match="already fused"):
        fuse_preprocess(source, SPEC.replace(fused_preprocess="60x80"), "60x80")
    with pytest.raises(OnnxModelError, match=r"input 'input' is FLOAT \['N', 3, 32, 32\], expected float \(N, 3, 64, 64\)"):
        fuse_preprocess(source, SPEC.replace(height=64, width=64), "60x80")
    with pytest.raises(ConfigError, match="frame size '60by80' is not HEIGHTxWIDTH"):
        fuse_preprocess(source, SPEC, "60by80")
    with pytest.raises(ConfigError, match="is not HEIGHTxWIDTH"):
        BuildConfig(fuse_preprocess="1080")


def test_pipeline_and_stream_feed_raw_frames_to_a_fused_model(tiny_classifier_onnx, tmp_path):
    from trtpipe.runtime.simulation import tiny_spec

    spec = tiny_spec()
    fused = fuse_preprocess(onnx.load(tiny_classifier_onnx), spec, "dynamic")
    path = tmp_path / "fused.onnx"
    onnx.save(fused.model, str(path))
    frames = [photo(40, 60), photo(30, 30, "coffee"), photo(40, 60, "chelsea"), photo(30, 30)]
    plain = spec.replace(antialias=False)  # what the dynamic graph does: no antialiasing
    with Pipeline(OnnxRuntimeEngine(tiny_classifier_onnx), plain) as reference:
        expected = [reference(f).indices for f in frames]
    with Pipeline(OnnxRuntimeEngine(path), fused.spec) as pipe:
        assert pipe.feeds_frames and pipe.frame_size is None
        assert [pipe(f).indices for f in frames] == expected
        with pytest.raises(InputError, match="frames of 2 sizes"):
            pipe(frames)
        with pipe.stream(frames, batch_size=4, workers=2) as stream:
            items = list(stream)
        assert [i.result.indices for i in items] == expected  # frames of one size batched together
        assert all(i.times.batch == 2 for i in items) or all(i.times.batch <= 2 for i in items)


def test_a_fixed_size_engine_reports_frames_of_another_size_as_errors(tiny_classifier_onnx, tmp_path):
    from trtpipe.runtime.simulation import tiny_spec

    fused = fuse_preprocess(onnx.load(tiny_classifier_onnx), tiny_spec(), "40x60")
    path = tmp_path / "fused.onnx"
    onnx.save(fused.model, str(path))
    with Pipeline(OnnxRuntimeEngine(path), fused.spec) as pipe:
        assert pipe.frame_size == (40, 60)
        items = list(pipe.stream([photo(40, 60), photo(30, 30)], workers=1))
    assert items[0].ok and not items[1].ok
    assert "image 1 is 30x30, but the network preprocesses 40x60 frames itself" in str(items[1].error)
    assert "--minShapes/--optShapes/--maxShapes" in str(items[1].error)  # trtexec's options, not build --shapes


def test_tensorrt_rtx_builds_fused_engines_and_the_sidecar_records_it(tiny_onnx, tmp_path):
    pytest.importorskip("tensorrt_rtx")
    from trtpipe.builder.builder import build_engine

    source = tiny_onnx("m.onnx", input_shape=("N", 3, 32, 32))
    SPEC.save(tmp_path / "m.preprocess.json")
    fixed = build_engine(source, tmp_path / "m_fixed.engine", BuildConfig(fuse_preprocess="120x160", flavor="tensorrt_rtx"))
    assert fixed.sidecar.preprocess_spec.fused_preprocess == "120x160"
    assert [(t.name, t.shape, t.dtype) for t in fixed.sidecar.inputs] == [(FRAMES_INPUT, (-1, 120, 160, 3), "uint8")]
    assert any("the CPU path's steps" in n for n in fixed.sidecar.notes) and any("test frame" in n for n in fixed.sidecar.notes)
    assert not any("WARNING" in n for n in fixed.sidecar.notes)  # the frames input is checked as frames, not as NCHW
    assert fixed.sidecar.build_config["fuse_preprocess"] == "120x160"
    assert json.loads((tmp_path / "m_fixed.preprocess.json").read_text())["fused_preprocess"] == "120x160"
    dynamic = build_engine(
        source, tmp_path / "m_dyn.engine",
        BuildConfig(fuse_preprocess="dynamic", flavor="tensorrt_rtx", shapes=(
            __import__("trtpipe.spec", fromlist=["ShapeRange"]).ShapeRange.parse("frames:1x48x64x3:1x480x640x3:2x1080x1920x3"),)),
    )
    assert any("NOT antialiased" in n for n in dynamic.sidecar.notes)
    assert dynamic.sidecar.profiles[0]["frames"]["max"] == [2, 1080, 1920, 3]
    # The CPU fallback stands in for the engine, profile included: it refuses what TensorRT would refuse.
    with Pipeline.from_engine(tmp_path / "m_dyn.engine", backend="onnxruntime") as pipe:
        assert pipe.engine.max_batch == 2 and pipe.frame_range == ((48, 64), (1080, 1920))
        with pytest.raises(InputError, match=r"outside the optimization profile"):
            pipe.engine.infer({FRAMES_INPUT: np.zeros((3, 60, 80, 3), np.uint8)})  # batch 3 > the profile's 2
        items = list(pipe.stream([photo(60, 80), photo(40, 40), photo(60, 80)], workers=1))
    assert [i.ok for i in items] == [True, False, True]
    assert "image 1 is 40x40, outside the 48x64 to 1080x1920 frames" in str(items[1].error)
    assert "--minShapes/--maxShapes" in str(items[1].error)
    with pytest.raises(ConfigError, match="INT8 calibration feeds preprocessed float tensors"):
        fused_spec = SPEC.replace(fused_preprocess="120x160")
        build_engine(tmp_path / "m_fixed.fused.onnx", tmp_path / "x.engine", BuildConfig(precision="int8"), spec=fused_spec)


def test_an_onnx_fused_at_export_builds_and_its_spec_is_checked_as_frames(tiny_onnx, tmp_path):
    pytest.importorskip("tensorrt_rtx")
    from trtpipe.builder.builder import build_engine
    from trtpipe.onnx.fuse_preprocess import write_fused_onnx
    from trtpipe.quant.feeds import check_image_input
    from trtpipe.spec import TensorInfo

    source = tiny_onnx("m.onnx", input_shape=("N", 3, 32, 32))
    fused = write_fused_onnx(source, SPEC, "120x160", tmp_path / "m_frames.onnx").spec  # + m_frames.preprocess.json
    built = build_engine(tmp_path / "m_frames.onnx", tmp_path / "m_frames.engine", BuildConfig(flavor="tensorrt_rtx"))
    assert [(t.name, t.shape, t.dtype) for t in built.sidecar.inputs] == [(FRAMES_INPUT, (-1, 120, 160, 3), "uint8")]
    assert built.sidecar.preprocess_spec.fused_preprocess == "120x160"
    assert not any("WARNING" in n for n in built.sidecar.notes)
    # The notes a --fuse-preprocess build writes: what resamples, and the parity with the CPU path.
    assert any("the CPU path's steps" in n for n in built.sidecar.notes)
    assert any("test frame" in n and re.search(r"max [01]/255", n) for n in built.sidecar.notes)
    with pytest.raises(InputError, match=r"says the preprocessing is fused in \(120x160\): the network takes uint8 "
                                         r"frames \?x120x160x3.*Hint: remove \"fused_preprocess\""):
        check_image_input(fused, TensorInfo("input", (-1, 3, 32, 32), "float32"), source)


@pytest.mark.parametrize("order", ["GRAY", "RGBA", "BGRA", "RGBRGB"])
def test_fused_preprocessing_makes_any_channel_order_as_the_cpu_path(order):
    frames = [np.random.default_rng(i).integers(0, 256, (60, 80, 3), dtype=np.uint8) for i in range(2)]
    spec = PreprocessSpec(model="t", height=16, width=24, resize="letterbox", antialias=False, channel_order=order,
                          mean=(0.5,), std=(0.25,))
    mean_difference, max_difference = difference_from_cpu(spec, "60x80", frames)
    assert max_difference < 1e-3  # in uint8 steps: the same pixels
    fused = run(preprocess_model(spec, "60x80"), np.stack(frames))
    assert fused.shape == (2, spec.channels, 16, 24)

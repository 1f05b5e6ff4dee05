"""Preprocessing fused into the network: same geometry and values as the CPU path, PIL-exact antialiasing for fixed
frame sizes, raw frames through the Pipeline and the stream, and TensorRT-RTX builds of the fused graph."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest

from trtpipe.errors import ConfigError, InputError, OnnxModelError
from trtpipe.onnx.fuse_preprocess import FRAMES_INPUT, axis_taps, difference_from_cpu, fuse_preprocess, preprocess_model
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


def test_taps_follow_pil_and_opencv():
    # Halving: PIL's antialiased triangle spans 4 source pixels per output (1/8, 3/8, 3/8, 1/8).
    half = axis_taps(8, 4, 0, 4, "bilinear", antialias=True)
    np.testing.assert_allclose(half.weight[1][half.weight[1] > 0], [1 / 8, 3 / 8, 3 / 8, 1 / 8])
    # Without antialiasing it is OpenCV's INTER_LINEAR: the two nearest pixels, half each, at an exact 2x.
    plain = axis_taps(8, 4, 0, 4, "bilinear", antialias=False)
    np.testing.assert_allclose(plain.weight[1][plain.weight[1] > 0], [0.5, 0.5])
    # Letterbox rows outside the image get no taps; every other row's weights sum to 1.
    boxed = axis_taps(10, 5, -2, 9, "bicubic", antialias=True)
    sums = boxed.weight.sum(axis=1)
    np.testing.assert_allclose(sums, [0, 0, 1, 1, 1, 1, 1, 0, 0], atol=1e-9)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_fixed_frames_match_torchvision_on_pil_images(interpolation):
    """A fixed frame size resamples with PIL's filters: torchvision's Resize(256) + CenterCrop(224) within 0.5/255."""
    torchvision = pytest.importorskip("torchvision")
    from PIL import Image

    T = torchvision.transforms
    mode = T.InterpolationMode.BILINEAR if interpolation == "bilinear" else T.InterpolationMode.BICUBIC
    reference = T.Compose([T.Resize(256, interpolation=mode), T.CenterCrop(224), T.ToTensor()])
    frame = photo(540, 960)
    spec = PreprocessSpec(model="t", height=224, width=224, interpolation=interpolation, mean=(0, 0, 0), std=(1, 1, 1))
    fused = run(preprocess_model(spec, "540x960"), frame[None])[0]
    expected = reference(Image.fromarray(frame[:, :, ::-1].copy())).numpy()
    assert np.abs(fused - expected).mean() * 255 < 0.5  # PIL rounds to 8 bits between its passes; we do not


def pil_reference(frame, spec):
    """resize_crop / letterbox / stretch done with PIL's antialiased bilinear resize, in 0..1 RGB, NCHW."""
    from PIL import Image

    from trtpipe.pipeline.preprocess import crop_resize_size, letterbox_size

    h, w = frame.shape[:2]
    image = Image.fromarray(frame[:, :, ::-1].copy())
    th, tw = spec.height, spec.width
    if spec.resize == "stretch":
        out = np.asarray(image.resize((tw, th), Image.BILINEAR))
    elif spec.resize == "letterbox":
        nh, nw = letterbox_size(h, w, spec)
        out = np.full((th, tw, 3), spec.pad_value, np.uint8)
        top, left = (th - nh) // 2, (tw - nw) // 2
        out[top : top + nh, left : left + nw] = np.asarray(image.resize((nw, nh), Image.BILINEAR))
    else:
        rh, rw = crop_resize_size(h, w, spec)
        top, left = int(round((rh - th) / 2.0)), int(round((rw - tw) / 2.0))
        out = np.asarray(image.resize((rw, rh), Image.BILINEAR))[top : top + th, left : left + tw]
    return out.transpose(2, 0, 1).astype(np.float32) / 255.0


@pytest.mark.parametrize("resize", ["resize_crop", "letterbox", "stretch"])
@pytest.mark.parametrize("size", [(64, 48), (40, 40)])
def test_fused_geometry_matches_pil_and_the_cpu_fast_path(resize, size):
    """Fixed frames: PIL's antialiased resize with the CPU path's geometry. Not antialiased: the CPU fast path."""
    pytest.importorskip("PIL")
    spec = PreprocessSpec(model="t", height=size[0], width=size[1], resize=resize, mean=(0, 0, 0), std=(1, 1, 1))
    frame = photo(120, 200)
    fused = run(preprocess_model(spec, "120x200"), frame[None])[0]
    assert np.abs(fused - pil_reference(frame, spec)).mean() * 255 < 0.5
    fast = spec.replace(antialias=False)
    for frames in ("dynamic", "120x200"):  # ONNX Resize, and taps at their plain support, sample where cv2 does
        mean, worst = difference_from_cpu(fast, frames, [frame])
        assert mean < 0.5 and worst < 6, frames  # cv2 works in 1/32 pixel steps and rounds to uint8


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


def test_tensorrt_rtx_builds_fused_engines_and_the_sidecar_records_it(tiny_onnx, tmp_path):
    pytest.importorskip("tensorrt_rtx")
    from trtpipe.builder.builder import build_engine

    source = tiny_onnx("m.onnx", input_shape=("N", 3, 32, 32))
    SPEC.save(tmp_path / "m.preprocess.json")
    fixed = build_engine(source, tmp_path / "m_fixed.engine", BuildConfig(fuse_preprocess="120x160", flavor="tensorrt_rtx"))
    assert fixed.sidecar.preprocess_spec.fused_preprocess == "120x160"
    assert [(t.name, t.shape, t.dtype) for t in fixed.sidecar.inputs] == [(FRAMES_INPUT, (-1, 120, 160, 3), "uint8")]
    assert any("PIL's filter" in n for n in fixed.sidecar.notes) and any("test frame" in n for n in fixed.sidecar.notes)
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
    with pytest.raises(InputError, match=r"says the preprocessing is fused in \(120x160\): the network takes uint8 "
                                         r"frames \?x120x160x3.*Hint: remove \"fused_preprocess\""):
        check_image_input(fused, TensorInfo("input", (-1, 3, 32, 32), "float32"), source)

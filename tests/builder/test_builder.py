"""Real engine builds with TensorRT-RTX on the CPU: sidecar, up-to-date skips, failures that leave nothing."""

import os

import pytest

from trtpipe.builder.builder import build_engine, default_engine_path
from trtpipe.errors import BuildError, ConfigError, DependencyError, InputError
from trtpipe.spec import BatchRange, BuildConfig, EngineSidecar, PreprocessSpec, preprocess_path_for, sidecar_path_for

tensorrt_rtx = pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds engines on the CPU; pip install 'trtpipe[rtx]'")

RTX = BuildConfig(flavor="tensorrt_rtx")


def test_builds_engine_and_sidecar(tiny_onnx, tmp_path):
    onnx_path = tiny_onnx()
    spec = PreprocessSpec(model="tiny", height=32, width=32, weights="random")
    spec.save(preprocess_path_for(onnx_path))
    result = build_engine(onnx_path, tmp_path / "out" / "tiny_fp32.engine", BuildConfig(flavor="tensorrt_rtx", batch=BatchRange(1, 2, 4)))

    assert not result.skipped
    engine = result.engine_path
    assert engine.stat().st_size == result.sidecar.engine_bytes > 10_000
    sidecar = EngineSidecar.load(sidecar_path_for(engine))
    assert sidecar == result.sidecar
    assert (sidecar.trt_flavor, sidecar.trt_version) == ("tensorrt_rtx", tensorrt_rtx.__version__)
    assert sidecar.target == {"kind": "aot", "compute_capabilities": []}
    assert sidecar.profiles == ({"input": {"min": [1, 3, 32, 32], "opt": [2, 3, 32, 32], "max": [4, 3, 32, 32]}},)
    assert [(t.name, t.shape, t.dtype) for t in sidecar.inputs] == [("input", (-1, 3, 32, 32), "float32")]
    assert sidecar.weights == "random" and sidecar.preprocess["height"] == 32
    assert any("RANDOM WEIGHTS" in note for note in sidecar.notes)
    assert "built" in result.summary() and "TensorRT-RTX" in result.summary()
    assert oct(engine.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_second_build_is_a_no_op_until_something_changes(tiny_onnx, tmp_path):
    onnx_path = tiny_onnx()
    out = tmp_path / "tiny_fp32.engine"
    first = build_engine(onnx_path, out, RTX)
    mtime = out.stat().st_mtime_ns

    again = build_engine(onnx_path, out, RTX)
    assert again.skipped and "up to date" in again.summary()
    assert out.stat().st_mtime_ns == mtime and again.sidecar == first.sidecar

    assert not build_engine(onnx_path, out, RTX, force=True).skipped
    assert not build_engine(onnx_path, out, BuildConfig(flavor="tensorrt_rtx", batch=BatchRange(1, 4, 8))).skipped
    tiny_onnx(seed=1)  # same name, other weights: the ONNX's sha256 changes
    assert not build_engine(onnx_path, out, BuildConfig(flavor="tensorrt_rtx", batch=BatchRange(1, 4, 8))).skipped


def test_a_tampered_engine_is_rebuilt(tiny_onnx, tmp_path):
    onnx_path = tiny_onnx()
    out = tmp_path / "tiny_fp32.engine"
    build_engine(onnx_path, out, RTX)
    out.write_bytes(out.read_bytes()[:1000])
    assert not build_engine(onnx_path, out, RTX).skipped


def test_default_engine_path_sits_beside_the_onnx(tmp_path):
    assert default_engine_path(tmp_path / "mobilenetv2.onnx", "fp16") == tmp_path / "mobilenetv2_fp16.engine"


def test_compute_capabilities_are_set_and_recorded(tiny_onnx, tmp_path):
    config = BuildConfig(flavor="tensorrt_rtx", compute_capabilities=("SM75", "SM86"))
    result = build_engine(tiny_onnx(), tmp_path / "t.engine", config)
    assert result.sidecar.target == {"kind": "aot", "compute_capabilities": ["SM75", "SM86"]}
    assert "SM75/SM86" in result.summary()


def test_parser_rejection_names_the_node_and_leaves_nothing(tiny_onnx, tmp_path):
    out_dir = tmp_path / "out"
    with pytest.raises(BuildError) as caught:
        build_engine(tiny_onnx(custom_op=True), out_dir / "bad.engine", RTX)
    message = str(caught.value)
    assert "node 2 'weird0' (MyCustomOp)" in message and "Hint: run `trtpipe inspect" in message
    assert list(out_dir.iterdir()) == []


def test_classic_precision_modes_are_refused_on_rtx(tiny_onnx, tmp_path):
    with pytest.raises(ConfigError, match="strongly typed networks only.*Hint: drop the option"):
        build_engine(tiny_onnx(), tmp_path / "t.engine", BuildConfig(flavor="tensorrt_rtx", precision="fp16", fp16_mode="flag"))
    assert not (tmp_path / "t.engine").exists()


def test_output_directory_that_cannot_be_written(tiny_onnx, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="exists and is not a directory"):
        build_engine(tiny_onnx(), blocker / "t.engine", RTX)
    # Running as root makes chmod meaningless, so ask the permission check directly.
    monkeypatch.setattr(os, "access", lambda *args: False)
    with pytest.raises(InputError, match="is not writable"):
        build_engine(tiny_onnx(), tmp_path / "ro" / "t.engine", RTX)


def test_interrupted_write_leaves_no_partial_engine_and_keeps_the_old_one(tiny_onnx, tmp_path, monkeypatch):
    onnx_path = tiny_onnx()
    out = tmp_path / "t.engine"
    build_engine(onnx_path, out, RTX)
    old = out.read_bytes()

    import trtpipe.io

    real_replace = os.replace

    def interrupted_replace(src, dst):
        raise KeyboardInterrupt  # Ctrl-C between writing the temp file and renaming it

    monkeypatch.setattr(trtpipe.io.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        build_engine(onnx_path, out, RTX, force=True)
    monkeypatch.setattr(trtpipe.io.os, "replace", real_replace)
    assert out.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_no_tensorrt_installed_names_what_to_install(tiny_onnx, tmp_path, monkeypatch):
    import trtpipe.flavors

    monkeypatch.setattr(trtpipe.flavors, "_try_import", lambda name: None)
    with pytest.raises(DependencyError, match=r"no TensorRT is installed.*pip install 'trtpipe\[trt-cu13\]'.*'trtpipe\[rtx\]'"):
        build_engine(tiny_onnx(), tmp_path / "t.engine")
    with pytest.raises(DependencyError, match=r"'tensorrt_rtx' is not installed"):
        build_engine(tiny_onnx(), tmp_path / "t.engine", RTX)


def test_mobilenetv2_builds_with_rtx_on_the_cpu(zoo_onnx, tmp_path):
    onnx_path = zoo_onnx("mobilenetv2", weights="random")
    result = build_engine(onnx_path, tmp_path / "mobilenetv2_fp32.engine", BuildConfig(flavor="tensorrt_rtx", batch=BatchRange(1, 8, 32)))
    assert result.sidecar.engine_bytes > 5_000_000
    assert result.sidecar.weights == "random"
    assert result.sidecar.preprocess["model"] == "mobilenetv2"
    assert result.sidecar.profiles[0]["input"]["max"] == [32, 3, 224, 224]


def _image_folder(folder, count=12):
    import cv2
    import numpy as np

    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        cv2.imwrite(str(folder / f"{index}.png"), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    return folder


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_explicit_precision_engines_build_through_the_builder(tiny_onnx, tmp_path, precision):
    onnx_path = tiny_onnx()
    PreprocessSpec(model="tiny", height=32, width=32).save(preprocess_path_for(onnx_path))
    # int8: 40 images, so the fidelity check can hold back 10; fp16: the same images for the range check
    images = str(_image_folder(tmp_path / "images", count=40))
    config = BuildConfig(flavor="tensorrt_rtx", precision=precision, calib_images=images, calib_max_images=40)
    result = build_engine(onnx_path, tmp_path / f"tiny_{precision}.engine", config)
    side = result.sidecar
    assert side.precision == precision and side.engine_bytes > 10_000
    assert ("FP16" in side.precision_realised) if precision == "fp16" else ("Q/DQ" in side.precision_realised)
    if precision == "int8":
        assert side.calibration_cache_sha256 and any("Q/DQ placement" in note for note in side.notes)
        assert side.fidelity["held_back_images"] == 10 and side.fidelity["target"] and side.fidelity["met"]
    else:
        assert side.fidelity is None and any(note.startswith("FP16 range check on 32 images") for note in side.notes)
    assert build_engine(onnx_path, tmp_path / f"tiny_{precision}.engine", config).skipped


def test_int8_without_images_is_a_clear_error(tiny_onnx, tmp_path):
    with pytest.raises(ConfigError, match="Hint: .*calib_data"):
        build_engine(tiny_onnx(), tmp_path / "t.engine", BuildConfig(flavor="tensorrt_rtx", precision="int8"))
    assert not (tmp_path / "t.engine").exists()

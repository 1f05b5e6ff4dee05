"""build_engine -> TensorRTEngine -> inspect against each simulated TensorRT (10.13, 11.4, RTX 1.7; recorded APIs).

The builder, the classic calibrator, inspect and the runtime meet the same strict simulation here, once per flavour;
a call that exists in one flavour only fails here the way it would fail on that flavour's GPU machine.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from trtpipe.builder.builder import build_engine
from trtpipe.errors import BuildError, ConfigError
from trtpipe.runtime.simulation import make_tiny_classifier, tiny_spec
from trtpipe.runtime.tensorrt_engine import TensorRTEngine
from trtpipe.spec import BatchRange, BuildConfig, preprocess_path_for


def _images(folder, count=12):
    import cv2

    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        cv2.imwrite(str(folder / f"{index}.png"), rng.integers(0, 255, (12, 14, 3), dtype=np.uint8))
    return folder


@pytest.fixture
def tiny(tmp_path):
    onnx = make_tiny_classifier(tmp_path / "tiny.onnx")
    tiny_spec().save(preprocess_path_for(onnx))
    return onnx


def test_build_run_and_inspect_on_each_flavour(simulated_machine, tiny, tmp_path):
    from trtpipe.inspect import inspect_engine

    flavor = simulated_machine.flavor
    result = build_engine(tiny, tmp_path / "tiny_fp32.engine", BuildConfig(batch=BatchRange(1, 2, 4)))
    side = result.sidecar
    assert (side.trt_flavor, side.trt_version) == (flavor.name, flavor.version)
    assert side.target["kind"] == ("aot" if flavor.is_rtx else "gpu")
    x = np.random.default_rng(0).normal(size=(3, 3, 8, 8)).astype(np.float32)
    with TensorRTEngine(result.engine_path) as engine:
        assert engine.flavor is flavor and engine.max_batch == 4
        assert engine.infer({"input": x})["logits"].shape == (3, 5)
    report = inspect_engine(result.engine_path)
    assert report.not_loaded_because is None, report.not_loaded_because
    assert report.loaded["device_memory_bytes"] > 0 and report.layers == ("pool", "flatten", "fc")
    assert "TensorRT: loaded" in report.format()
    assert build_engine(tiny, tmp_path / "tiny_fp32.engine", BuildConfig(batch=BatchRange(1, 2, 4))).skipped


def test_classic_int8_on_each_flavour(simulated_machine, tiny, tmp_path):
    """TensorRT 10 calibrates at the profile's OPT batch (16 of --batch 1:16:32); 11 and RTX refuse the mode."""
    config = BuildConfig(precision="int8", int8_mode="implicit", calib_images=str(_images(tmp_path / "calib", 40)),
                         batch=BatchRange(1, 16, 32))
    if simulated_machine.flavor.supports_classic_precision:
        allocations = simulated_machine.cuda.live_allocations
        result = build_engine(tiny, tmp_path / "tiny_int8.engine", config)
        assert "batches of 16" in " ".join(result.sidecar.notes)
        assert (tmp_path / "tiny_int8.calib.cache").read_bytes().startswith(b"TRT-simulated")
        assert simulated_machine.cuda.live_allocations == allocations, "the calibrator's device memory is freed"
    else:
        with pytest.raises(ConfigError, match="strongly typed networks only"):
            build_engine(tiny, tmp_path / "tiny_int8.engine", config)


def test_the_classic_calibrator_is_freed_after_the_build(simulated_machine, tiny, tmp_path, monkeypatch):
    """Defect 9: nothing keeps the calibrator (and its device memory) once build_engine returns."""
    if not simulated_machine.flavor.supports_classic_precision:
        pytest.skip("implicit INT8 is TensorRT 10 only")
    import trtpipe.builder.classic as classic

    made = []
    real = classic.make_entropy_calibrator

    def spy(trt):
        cls = real(trt)

        class Spied(cls):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                made.append(weakref.ref(self))

        return Spied

    monkeypatch.setattr(classic, "make_entropy_calibrator", spy)
    config = BuildConfig(precision="int8", int8_mode="implicit", calib_images=str(_images(tmp_path / "calib")), batch=BatchRange(1, 4, 8))
    build_engine(tiny, tmp_path / "tiny_int8.engine", config)
    gc.collect()
    assert len(made) == 1 and made[0]() is None, "the calibrator outlived the build"


def test_a_failed_build_names_tensorrts_error_in_a_long_lived_process(simulated_machine, tiny, tmp_path, monkeypatch):
    """Defect 10: TensorRT keeps the first logger of the process; a second build's errors must still be reported."""
    if not simulated_machine.flavor.supports_classic_precision:
        pytest.skip("the failing build here is an implicit INT8 one (TensorRT 10)")
    import trtpipe.builder.classic as classic
    from trtpipe.errors import CudaError

    build_engine(tiny, tmp_path / "first.engine", BuildConfig(batch=BatchRange(1, 2, 4)))  # registers a logger

    def failing_copy(self, batch):
        raise CudaError("CUDA call cudaMemcpyAsync failed with cudaErrorIllegalAddress (700)", "restart")

    # The bindings print a get_batch exception and end calibration; TensorRT then fails the build with an error.
    monkeypatch.setattr(classic.CudaDeviceInput, "copy_from", failing_copy)
    config = BuildConfig(precision="int8", int8_mode="implicit", calib_images=str(_images(tmp_path / "calib")), batch=BatchRange(1, 4, 8))
    with pytest.raises(BuildError, match="Calibration failure occurred"):
        build_engine(tiny, tmp_path / "second.engine", config)


@pytest.mark.parametrize("asked", ["SM61", "SM90"])
def test_an_unknown_compute_capability_lists_the_valid_ones(simulated_machine, tiny, tmp_path, asked):
    """Defect 5: --compute-capability is checked against the installed flavour's targets before any work."""
    config = BuildConfig(compute_capabilities=(asked,))
    with pytest.raises(ConfigError) as caught:
        build_engine(tiny, tmp_path / "t.engine", config)
    message = str(caught.value)
    if simulated_machine.flavor.is_rtx:
        assert f"{asked}: TensorRT-RTX 1.7.1.116 has no such target" in message
        assert "SM75, SM80, SM86, SM89, SM120, SM121" in message and "Hint:" in message
    else:
        assert "applies to TensorRT-RTX" in message
    assert not list(tmp_path.glob("t.engine*"))


def test_rtx_targets_are_set_and_honoured(simulated_machine, tiny, tmp_path):
    if not simulated_machine.flavor.is_rtx:
        pytest.skip("TensorRT-RTX only")
    result = build_engine(tiny, tmp_path / "t.engine", BuildConfig(compute_capabilities=("SM86", "SM89")))
    assert result.sidecar.target == {"kind": "aot", "compute_capabilities": ["SM86", "SM89"]}
    with TensorRTEngine(result.engine_path) as engine:  # the simulated GPU is SM89
        assert engine.infer({"input": np.zeros((1, 3, 8, 8), np.float32)})["logits"].shape == (1, 5)

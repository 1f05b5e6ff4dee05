"""TensorRT 10's classic path, without a GPU: a fake trt module and simulated device memory."""

from __future__ import annotations

import enum
import types

import numpy as np
import pytest

from trtpipe.builder.classic import configure_classic, make_entropy_calibrator
from trtpipe.errors import ConfigError
from trtpipe.spec import BuildConfig, PreprocessSpec


class FakeCalibratorBase:
    def __init__(self):
        self.base_initialised = True


def fake_trt(with_int8: bool = True):
    flags = {"FP16": 1, "INT8": 2} if with_int8 else {"FP16": 1}
    module = types.SimpleNamespace(__version__="10.9.0", BuilderFlag=enum.Enum("BuilderFlag", flags))
    if with_int8:
        module.IInt8EntropyCalibrator2 = FakeCalibratorBase
    return module


class SimulatedDevice:
    """Device memory as a host array: ``ptr`` is stable, copies are recorded."""

    allocations: list["SimulatedDevice"] = []

    def __init__(self, nbytes):
        self.memory = np.zeros(nbytes, np.uint8)
        self.ptr = self.memory.ctypes.data
        self.copies = 0
        self.closed = False
        SimulatedDevice.allocations.append(self)

    def copy_from(self, batch):
        self.memory[:] = np.ascontiguousarray(batch).view(np.uint8).reshape(-1)
        self.copies += 1

    def close(self):
        self.closed = True


def test_calibrator_feeds_full_batches_from_one_kept_buffer(tmp_path):
    SimulatedDevice.allocations.clear()
    batches = [np.full((4, 3, 2, 2), i, np.float32) for i in range(3)] + [np.zeros((2, 3, 2, 2), np.float32)]
    calibrator = make_entropy_calibrator(fake_trt())(batches, 4, tmp_path / "m.calib.cache", allocate=SimulatedDevice)
    assert calibrator.base_initialised and calibrator.get_batch_size() == 4
    pointers = [calibrator.get_batch(["input"]) for _ in range(3)]
    device = SimulatedDevice.allocations[0]
    assert len(SimulatedDevice.allocations) == 1 and pointers == [[device.ptr]] * 3
    assert device.memory.view(np.float32)[0] == 2.0  # the last batch fed is what the buffer holds
    assert calibrator.get_batch(["input"]) is None  # the short last batch is dropped, then done
    assert calibrator.batches_fed == 3 and device.copies == 3
    calibrator.close()
    assert device.closed


def test_calibration_cache_is_written_atomically_and_read_back(tmp_path):
    cache = tmp_path / "m.calib.cache"
    calibrator = make_entropy_calibrator(fake_trt())([], 1, cache, allocate=SimulatedDevice)
    assert calibrator.read_calibration_cache() is None
    calibrator.write_calibration_cache(memoryview(b"TRT-1000-EntropyCalibration2\ninput: 3c010a14\n"))
    assert cache.read_bytes().startswith(b"TRT-1000")
    assert make_entropy_calibrator(fake_trt())([], 1, cache).read_calibration_cache() == cache.read_bytes()
    assert not list(tmp_path.glob("*.partial"))


class FakeConfig:
    def __init__(self):
        self.flags = set()
        self.int8_calibrator = None

    def set_flag(self, flag):
        self.flags.add(flag.name)


class FakeNetwork:
    def get_input(self, index):
        return types.SimpleNamespace(shape=(-1, 3, 8, 8), name="input")


def test_configure_classic_sets_flags_and_attaches_the_calibrator(tmp_path):
    import cv2

    for i in range(10):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((10, 10, 3), i * 20, np.uint8))
    trt, builder_config = fake_trt(), FakeConfig()
    config = BuildConfig(precision="int8", int8_mode="implicit", calib_images=str(tmp_path))
    spec = PreprocessSpec(model="m", height=8, width=8)
    notes = configure_classic(trt, None, FakeNetwork(), builder_config, config, spec, tmp_path / "m.calib.cache")
    assert builder_config.flags == {"FP16", "INT8"}
    assert builder_config.int8_calibrator.get_batch_size() == 8
    assert builder_config.trtpipe_calibrator is builder_config.int8_calibrator  # kept alive with the config
    assert "IInt8EntropyCalibrator2 on 10 images" in notes[-1]
    fp16 = FakeConfig()
    assert configure_classic(trt, None, FakeNetwork(), fp16, BuildConfig(precision="fp16", fp16_mode="flag"), spec, None)
    assert fp16.flags == {"FP16"} and fp16.int8_calibrator is None


def test_refused_without_tensorrt_10_classic_api():
    with pytest.raises(ConfigError, match="explicit mode"):
        configure_classic(fake_trt(with_int8=False), None, FakeNetwork(), FakeConfig(), BuildConfig(precision="fp16"), None, None)


def test_refused_on_tensorrt_rtx_module():
    trt = pytest.importorskip("tensorrt_rtx")
    with pytest.raises(ConfigError, match="explicit mode"):
        configure_classic(trt, None, FakeNetwork(), FakeConfig(), BuildConfig(precision="fp16"), None, None)

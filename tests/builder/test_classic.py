"""TensorRT 10's classic path, without a GPU: the simulated TensorRT of each flavour (its recorded API) and CUDA."""

from __future__ import annotations

import numpy as np
import pytest

from trtpipe.builder.classic import configure_classic, make_entropy_calibrator
from trtpipe.errors import ConfigError, InputError
from trtpipe.runtime.simulation import SimulatedCuda, make_tiny_classifier, simulated_trt
from trtpipe.spec import BuildConfig, PreprocessSpec


def trt10():
    return simulated_trt(SimulatedCuda(), "10.13.3.9", "tensorrt")


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
    calibrator = make_entropy_calibrator(trt10())(batches, 4, tmp_path / "m.calib.cache", allocate=SimulatedDevice)
    assert calibrator.get_batch_size() == 4
    pointers = [calibrator.get_batch(["input"]) for _ in range(3)]
    device = SimulatedDevice.allocations[0]
    assert len(SimulatedDevice.allocations) == 1 and pointers == [[device.ptr]] * 3
    assert device.memory.view(np.float32)[0] == 2.0  # the last batch fed is what the buffer holds
    assert calibrator.get_batch(["input"]) is None  # the short last batch is dropped, then done
    assert calibrator.batches_fed == 3 and device.copies == 3
    calibrator.close()
    assert device.closed


def test_calibrator_returns_one_pointer_per_input_in_tensorrts_order(tmp_path):
    SimulatedDevice.allocations.clear()
    batches = [{"image": np.ones((2, 3, 4, 4), np.float32), "scale": np.full((2, 2), 7, np.float32)}]
    calibrator = make_entropy_calibrator(trt10())(batches, 2, tmp_path / "c", allocate=SimulatedDevice, input_names=("image", "scale"))
    pointers = calibrator.get_batch(["scale", "image"])
    by_ptr = {d.ptr: d for d in SimulatedDevice.allocations}
    assert len(pointers) == 2 and by_ptr[pointers[0]].memory.view(np.float32)[0] == 7.0
    assert by_ptr[pointers[1]].memory.nbytes == 2 * 3 * 4 * 4 * 4
    with pytest.raises(InputError, match=r"none for \['other'\]"):
        make_entropy_calibrator(trt10())(batches, 2, tmp_path / "c").get_batch(["image", "other"])


def test_calibration_cache_is_written_atomically_and_read_back(tmp_path):
    cache = tmp_path / "m.calib.cache"
    calibrator = make_entropy_calibrator(trt10())([], 1, cache, allocate=SimulatedDevice)
    assert calibrator.read_calibration_cache() is None
    calibrator.write_calibration_cache(memoryview(b"TRT-1000-EntropyCalibration2\ninput: 3c010a14\n"))
    assert cache.read_bytes().startswith(b"TRT-1000")
    assert make_entropy_calibrator(trt10())([], 1, cache).read_calibration_cache() == cache.read_bytes()
    assert not list(tmp_path.glob("*.partial"))


def _parsed_network(trt, onnx_path):
    from trtpipe.flavors import Flavor, make_logger

    logger = make_logger(Flavor("tensorrt", trt.__version__, trt))
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # weakly typed: what the classic flags need
    assert trt.OnnxParser(network, logger).parse_from_file(str(onnx_path))
    return builder, network


def test_configure_classic_calibrates_at_the_calibration_profiles_opt_batch(tmp_path):
    import cv2

    for i in range(10):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((10, 10, 3), i * 20, np.uint8))
    trt = trt10()
    builder, network = _parsed_network(trt, make_tiny_classifier(tmp_path / "tiny.onnx"))
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, 8, 8), (3, 3, 8, 8), (6, 3, 8, 8))
    builder_config = builder.create_builder_config()
    config = BuildConfig(precision="int8", int8_mode="implicit", calib_images=str(tmp_path))
    spec = PreprocessSpec(model="m", height=8, width=8)
    notes, calibrator = configure_classic(trt, builder, network, builder_config, config, spec, tmp_path / "m.calib.cache", profile)
    assert builder_config.get_flag(trt.BuilderFlag.INT8) and builder_config.get_flag(trt.BuilderFlag.FP16)
    assert builder_config.int8_calibrator is calibrator and builder_config.get_calibration_profile() is profile
    assert calibrator.get_batch_size() == 3  # the OPT batch TensorRT reads, not a fixed 8
    assert "IInt8EntropyCalibrator2 on 10 images in batches of 3" in notes[-1]
    fp16 = builder.create_builder_config()
    notes, none = configure_classic(trt, builder, network, fp16, BuildConfig(precision="fp16", fp16_mode="flag"), spec, None)
    assert notes == ["BuilderFlag.FP16"] and none is None and not fp16.get_flag(trt.BuilderFlag.INT8)


@pytest.mark.parametrize("flavor, version", [("tensorrt", "11.4.0.106"), ("tensorrt_rtx", "1.7.1.116")])
def test_refused_where_the_classic_api_is_gone(flavor, version):
    trt = simulated_trt(SimulatedCuda(), version, flavor)
    with pytest.raises(ConfigError, match="explicit mode"):
        configure_classic(trt, None, None, None, BuildConfig(precision="fp16"), None, None)


def test_refused_on_the_installed_tensorrt_rtx_module():
    trt = pytest.importorskip("tensorrt_rtx")
    with pytest.raises(ConfigError, match="explicit mode"):
        configure_classic(trt, None, None, None, BuildConfig(precision="fp16"), None, None)


def test_a_uint8_image_input_is_calibrated_with_uint8_pixels(tmp_path):
    """The classic calibrator writes the bytes TensorRT reads: uint8 pixels for a uint8 input, not float32."""
    import cv2
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    for i in range(6):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), 40 * i + 3, np.uint8))
    weight = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Cast", ["input"], ["x"], to=TensorProto.FLOAT), helper.make_node("Conv", ["x", "W"], ["output"])],
        "u8", [helper.make_tensor_value_info("input", TensorProto.UINT8, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [2, 4, 8, 8])], [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "u8.onnx"))
    trt = trt10()
    builder, network = _parsed_network(trt, tmp_path / "u8.onnx")
    config = BuildConfig(precision="int8", int8_mode="implicit", calib_images=str(tmp_path))
    spec = PreprocessSpec(model="u8", height=8, width=8, pixel_scale=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    SimulatedDevice.allocations.clear()
    _, calibrator = configure_classic(trt, builder, network, builder.create_builder_config(), config, spec,
                                      tmp_path / "u8.calib.cache")
    calibrator._allocate = SimulatedDevice
    assert calibrator.get_batch(["input"]) is not None
    device = SimulatedDevice.allocations[0]
    assert device.memory.nbytes == 2 * 3 * 8 * 8  # one byte per pixel
    assert set(np.unique(device.memory)) <= {40 * i + 3 for i in range(6)}

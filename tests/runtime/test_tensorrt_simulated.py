"""The TensorRT engine against a strict simulation of the TensorRT/CUDA contract (backend "tensorrt-simulated").

The simulated engine runs the real ONNX in ONNX Runtime, so outputs are compared with a direct ORT run.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from trtpipe.errors import EngineMismatchError, InputError
from trtpipe.runtime.base import ClosedError
from trtpipe.runtime.simulation import SimulationError, simulated_flavor, write_simulated_engine
from trtpipe.runtime.tensorrt_engine import TensorRTEngine


def reference(onnx_path, x):
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_outputs_match_onnxruntime_for_each_batch_size(sim_engine, sim_flavor, sim_cuda, tiny_classifier_onnx, cuda_graph):
    with TensorRTEngine(sim_engine, flavor=sim_flavor, cuda_graph=cuda_graph) as engine:
        assert engine.backend == f"{sim_flavor.name}-simulated"
        assert engine.max_batch == 4
        for batch in (1, 3, 4, 1, 3):
            x = np.random.default_rng(batch).normal(size=(batch, 3, 8, 8)).astype(np.float32)
            outputs, times = engine.infer_timed({"input": x})
            np.testing.assert_allclose(outputs["logits"], reference(tiny_classifier_onnx, x), rtol=1e-5, atol=1e-5)
            assert times.h2d > 0 and times.compute > 0 and times.d2h > 0 and times.end_to_end > 0
    assert sim_cuda.live_allocations == 0, "close() must free every device and pinned buffer"
    assert not sim_cuda.streams and not any(sim_cuda.events)


def test_outputs_are_copies_that_survive_the_next_call(sim_engine, sim_flavor):
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine:
        first = engine.infer({"input": np.ones((1, 3, 8, 8), np.float32)})["logits"]
        kept = first.copy()
        engine.infer({"input": np.zeros((1, 3, 8, 8), np.float32)})
        np.testing.assert_array_equal(first, kept)


def test_calls_follow_the_v3_order(sim_engine, sim_flavor, sim_cuda):
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine:
        sim_cuda.calls.clear()
        engine.infer({"input": np.ones((2, 3, 8, 8), np.float32)})
        calls = [c for c in sim_cuda.calls if c != "eventRecord"]
        assert calls == ["memcpyHtoD", "execute_async_v3", "memcpyDtoH", "synchronize"]


# -- the simulation is strict: each contract violation fails loudly ------------------------------


def test_simulation_rejects_unset_dynamic_shape(sim_engine, sim_flavor, sim_cuda):
    trt = sim_flavor.module
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(sim_engine.read_bytes())
    context = engine.create_execution_context()
    for name in ("input", "logits"):
        context.set_tensor_address(name, sim_cuda.cudaMalloc(4096)[1])
    with pytest.raises(SimulationError, match="set_input_shape"):
        context.execute_async_v3(sim_cuda.cudaStreamCreateWithFlags(1)[1])


def test_simulation_rejects_unset_tensor_address(sim_engine, sim_flavor, sim_cuda):
    trt = sim_flavor.module
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(sim_engine.read_bytes())
    context = engine.create_execution_context()
    context.set_input_shape("input", (1, 3, 8, 8))
    context.set_tensor_address("input", sim_cuda.cudaMalloc(768)[1])
    with pytest.raises(SimulationError, match="no address for tensor 'logits'"):
        context.execute_async_v3(sim_cuda.cudaStreamCreateWithFlags(1)[1])


def test_simulation_rejects_wrong_dtype_copy(sim_engine, sim_flavor, sim_cuda):
    trt = sim_flavor.module
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(sim_engine.read_bytes())
    context = engine.create_execution_context()
    context.set_input_shape("input", (1, 3, 8, 8))
    device_in, device_out = sim_cuda.cudaMalloc(2 * 768)[1], sim_cuda.cudaMalloc(20)[1]
    host = sim_cuda.cudaMallocHost(2 * 768)[1]
    context.set_tensor_address("input", device_in)
    context.set_tensor_address("logits", device_out)
    stream = sim_cuda.cudaStreamCreateWithFlags(1)[1]
    sim_cuda.cudaMemcpyAsync(device_in, host, 2 * 768, 1, stream)  # float64 bytes into a float32 input
    context.execute_async_v3(stream)
    with pytest.raises(SimulationError, match="wrong dtype"):
        sim_cuda.cudaStreamSynchronize(stream)


def test_simulation_poisons_output_read_before_synchronize(sim_engine, sim_flavor, sim_cuda, monkeypatch):
    """Without cudaStreamSynchronize the pinned output is garbage (NaN here); the engine must synchronize."""
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine:
        monkeypatch.setattr(engine._contexts[0].stream, "synchronize", lambda: None)
        monkeypatch.setattr(type(engine._contexts[0].events[0]), "elapsed_ms", lambda self, end: 0.0)
        outputs = engine.infer({"input": np.ones((1, 3, 8, 8), np.float32)})
        assert np.isnan(outputs["logits"]).all()


# -- bad input -------------------------------------------------------------------------------------


def test_wrong_dtype_is_an_input_error(sim_engine, sim_flavor):
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine:
        with pytest.raises(InputError, match=r"dtype float64, expected float32.*Hint: convert"):
            engine.infer({"input": np.ones((1, 3, 8, 8))})


def test_wrong_shape_and_batch_above_profile(sim_engine, sim_flavor):
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine:
        with pytest.raises(InputError, match=r"shape \(1, 3, 9, 9\)"):
            engine.infer({"input": np.ones((1, 3, 9, 9), np.float32)})
        with pytest.raises(InputError, match=r"outside the optimization profile.*Hint: keep the batch within 1..4"):
            engine.infer({"input": np.ones((5, 3, 8, 8), np.float32)})
        with pytest.raises(InputError, match="expected \\['input'\\]"):
            engine.infer({"images": np.ones((1, 3, 8, 8), np.float32)})


def test_use_after_close(sim_engine, sim_flavor):
    engine = TensorRTEngine(sim_engine, flavor=sim_flavor)
    engine.close()
    engine.close()
    with pytest.raises(ClosedError, match="Hint"):
        engine.infer({"input": np.ones((1, 3, 8, 8), np.float32)})


def test_truncated_engine_file(sim_engine, sim_flavor):
    data = sim_engine.read_bytes()
    sim_engine.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated.*Hint: rebuild"):
        TensorRTEngine(sim_engine, flavor=sim_flavor)


def test_corrupt_engine_with_matching_size(sim_engine, sim_flavor, sim_cuda):
    data = sim_engine.read_bytes()
    sim_engine.write_bytes(b"\0" * len(data))
    with pytest.raises(EngineMismatchError, match="could not deserialize.*Hint: rebuild"):
        TensorRTEngine(sim_engine, flavor=sim_flavor)
    assert sim_cuda.live_allocations == 0


def test_engine_of_another_tensorrt_version(tiny_classifier_onnx, tmp_path, sim_cuda):
    path = write_simulated_engine(tiny_classifier_onnx, tmp_path / "old.engine", {"input": ((1, 3, 8, 8),) * 3}, version="10.3.0")
    with pytest.raises(EngineMismatchError, match=r"built by TensorRT 10\.3\.0 .*this machine has TensorRT 10\.13\.3\.9.*Hint: rebuild"):
        TensorRTEngine(path, flavor=simulated_flavor(sim_cuda, version="10.13.3.9"))


def test_engine_of_another_flavor(tiny_classifier_onnx, tmp_path, sim_cuda):
    path = write_simulated_engine(tiny_classifier_onnx, tmp_path / "rtx.engine", {"input": ((1, 3, 8, 8),) * 3}, flavor="tensorrt_rtx", version="1.7.1.116")
    with pytest.raises(EngineMismatchError, match="built by TensorRT-RTX 1.7.1.*this machine has TensorRT 10"):
        TensorRTEngine(path, flavor=simulated_flavor(sim_cuda))


def test_engine_for_another_gpu(tiny_classifier_onnx, tmp_path, sim_cuda):
    target = {"kind": "gpu", "gpu_name": "NVIDIA A100", "compute_capability": "8.0"}
    path = write_simulated_engine(tiny_classifier_onnx, tmp_path / "a100.engine", {"input": ((1, 3, 8, 8),) * 3}, target=target)
    with pytest.raises(EngineMismatchError, match=r"for NVIDIA A100 \(compute capability 8.0\).*GPU is NVIDIA Simulated RTX 4090 \(compute capability 8.9\)"):
        TensorRTEngine(path, flavor=simulated_flavor(sim_cuda))


def test_aot_engine_without_this_gpu_target(tiny_classifier_onnx, tmp_path, sim_cuda):
    target = {"kind": "aot", "compute_capabilities": ["SM75", "SM86"]}
    path = write_simulated_engine(tiny_classifier_onnx, tmp_path / "aot.engine", {"input": ((1, 3, 8, 8),) * 3}, flavor="tensorrt_rtx", version="1.7.1.116", target=target)
    with pytest.raises(EngineMismatchError, match="SM75,SM86.*Hint: .*--compute-capability SM89"):
        TensorRTEngine(path, flavor=simulated_flavor(sim_cuda, "tensorrt_rtx", "1.7.1.116"))
    target["compute_capabilities"].append("SM89")
    path = write_simulated_engine(tiny_classifier_onnx, tmp_path / "aot.engine", {"input": ((1, 3, 8, 8),) * 3}, flavor="tensorrt_rtx", version="1.7.1.116", target=target)
    with TensorRTEngine(path, flavor=simulated_flavor(sim_cuda, "tensorrt_rtx", "1.7.1.116")) as engine:
        assert engine.backend == "tensorrt_rtx-simulated"


def test_image_size_outside_the_profile_names_the_profile_options_not_the_batch():
    from trtpipe.runtime.base import validate_feeds
    from trtpipe.spec import TensorInfo

    inputs = (TensorInfo("images", (-1, 3, -1, -1), "float32"),)
    limits = {"images": ((1, 3, 32, 32), (8, 3, 64, 64))}
    validate_feeds({"images": np.ones((2, 3, 48, 48), np.float32)}, inputs, "m.engine", limits)  # inside: fine
    with pytest.raises(InputError, match=r"outside the optimization profile.*Hint: axis 2, 3 is outside the profile.*"
                                         r"--minShapes images:SHAPE --optShapes images:SHAPE --maxShapes images:SHAPE"):
        validate_feeds({"images": np.ones((2, 3, 96, 96), np.float32)}, inputs, "m.engine", limits)

"""The simulation refuses what a GPU refuses (or silently corrupts): each rule the review found missing, shown failing."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from trtpipe import cuda
from trtpipe.errors import CudaError
from trtpipe.runtime.simulation import SimulatedCuda, SimulationError, cudaError_t, write_simulated_engine

ThreadLocal = 1


def test_capture_on_the_legacy_default_stream_fails():
    sim = SimulatedCuda()
    assert sim.cudaStreamBeginCapture(0, ThreadLocal) == (cudaError_t.cudaErrorStreamCaptureUnsupported,)
    assert sim.cudaGetLastError() == (cudaError_t.cudaErrorStreamCaptureUnsupported,)
    assert sim.cudaGetLastError() == (cudaError_t.cudaSuccess,), "reading the last error clears it"


@pytest.mark.parametrize("call", ["cudaStreamSynchronize", "cudaMalloc", "cudaMallocHost"])
def test_synchronizing_or_allocating_during_a_capture_fails_and_breaks_it(call):
    sim = SimulatedCuda()
    stream = sim.cudaStreamCreateWithFlags(1)[1]
    assert sim.cudaStreamBeginCapture(stream, ThreadLocal) == (cudaError_t.cudaSuccess,)
    result = getattr(sim, call)(stream if call == "cudaStreamSynchronize" else 64)
    assert result[0] == cudaError_t.cudaErrorStreamCaptureUnsupported
    assert sim.cudaStreamEndCapture(stream) == (cudaError_t.cudaErrorStreamCaptureInvalidated, None)
    assert not sim.captures


def test_thread_local_capture_does_not_stop_other_threads_allocating():
    sim = SimulatedCuda()
    stream = sim.cudaStreamCreateWithFlags(1)[1]
    sim.cudaStreamBeginCapture(stream, ThreadLocal)
    other = []
    thread = threading.Thread(target=lambda: other.append(sim.cudaMalloc(64)))
    thread.start()
    thread.join()
    assert other[0][0] == cudaError_t.cudaSuccess
    assert sim.cudaStreamEndCapture(stream)[0] == cudaError_t.cudaSuccess


def test_an_event_recorded_in_a_capture_cannot_be_waited_for():
    sim = SimulatedCuda()
    stream, event = sim.cudaStreamCreateWithFlags(1)[1], sim.cudaEventCreateWithFlags(0)[1]
    sim.cudaStreamBeginCapture(stream, ThreadLocal)
    sim.cudaEventRecord(event, stream)
    assert sim.cudaEventSynchronize(event) == (cudaError_t.cudaErrorCapturedEvent,)


def test_cuda_graph_helper_ends_a_broken_capture_and_clears_the_error(sim_cuda):
    with cuda.Stream() as stream:
        with pytest.raises(cuda.GraphCaptureError, match="cudaErrorStreamCaptureInvalidated"):
            cuda.Graph.capture(stream, lambda: bool(sim_cuda.cudaMalloc(16)))  # allocating inside a capture breaks it
        assert not sim_cuda.captures and sim_cuda.cudaGetLastError()[0] == 0
        with pytest.raises(CudaError, match="cudaMalloc"):
            cuda.Graph.capture(stream, lambda: cuda.DeviceBuffer(16))  # an exception inside: capture ended, re-raised
        assert not sim_cuda.captures and sim_cuda.live_graphs == 0
        stream.synchronize()  # the stream works on
    with pytest.raises(CudaError, match="cudaStreamBeginCapture failed"):
        cuda.Graph.capture(type("Legacy", (), {"handle": 0})(), lambda: None)


def test_stream_work_needs_the_streams_device_current_in_the_calling_thread():
    sim = SimulatedCuda(devices=[("A", 8, 9), ("B", 8, 9)])
    sim.cudaSetDevice(1)
    stream = sim.cudaStreamCreateWithFlags(1)[1]
    event = sim.cudaEventCreateWithFlags(0)[1]
    assert sim.cudaEventRecord(event, stream) == (cudaError_t.cudaSuccess,)
    seen = []
    thread = threading.Thread(target=lambda: seen.append((sim.cudaGetDevice(), sim.cudaEventRecord(event, stream))))
    thread.start()
    thread.join()
    assert seen == [((cudaError_t.cudaSuccess, 0), (cudaError_t.cudaErrorInvalidResourceHandle,))]


def test_a_graph_replayed_after_its_contexts_shapes_changed_fails(sim_engine, sim_flavor, sim_cuda):
    trt = sim_flavor.module
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(sim_engine.read_bytes())
    context = engine.create_execution_context()
    stream = sim_cuda.cudaStreamCreateWithFlags(1)[1]
    host = sim_cuda.cudaMallocHost(4 * 768)[1]
    for name, nbytes in (("input", 4 * 768), ("logits", 4 * 20)):
        context.set_tensor_address(name, sim_cuda.cudaMalloc(nbytes)[1])
    context.set_input_shape("input", (2, 3, 8, 8))
    sim_cuda.cudaMemcpyAsync(context.get_tensor_address("input"), host, 2 * 768, 1, stream)
    assert context.execute_async_v3(stream)  # the plain launch a shape change needs first
    sim_cuda.cudaStreamSynchronize(stream)
    sim_cuda.cudaStreamBeginCapture(stream, ThreadLocal)
    assert context.execute_async_v3(stream)
    error, graph = sim_cuda.cudaStreamEndCapture(stream)
    graph_exec = sim_cuda.cudaGraphInstantiate(graph, 0)[1]
    sim_cuda.cudaGraphLaunch(graph_exec, stream)
    sim_cuda.cudaStreamSynchronize(stream)  # same shapes: fine
    context.set_input_shape("input", (3, 3, 8, 8))
    sim_cuda.cudaGraphLaunch(graph_exec, stream)
    with pytest.raises(SimulationError, match="replayed after the execution context.s input shapes were set again"):
        sim_cuda.cudaStreamSynchronize(stream)


def test_capturing_the_first_launch_after_a_shape_change_breaks_the_capture(sim_engine, sim_flavor, sim_cuda):
    trt = sim_flavor.module
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(sim_engine.read_bytes())
    context = engine.create_execution_context()
    for name in ("input", "logits"):
        context.set_tensor_address(name, sim_cuda.cudaMalloc(4096)[1])
    context.set_input_shape("input", (1, 3, 8, 8))
    stream = sim_cuda.cudaStreamCreateWithFlags(1)[1]
    sim_cuda.cudaStreamBeginCapture(stream, ThreadLocal)
    assert context.execute_async_v3(stream) is False
    assert sim_cuda.cudaStreamEndCapture(stream)[0] == cudaError_t.cudaErrorStreamCaptureInvalidated


def _dynamic_output_model(path):
    """x (N,) -> NonZero -> (1, ?) : the output's size depends on the data."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["idx"])], "nz",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
                              [helper.make_tensor_value_info("idx", TensorProto.INT64, [1, "K"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_data_dependent_output_shapes_are_minus_one(tmp_path, sim_cuda, sim_flavor):
    from trtpipe.errors import InputError
    from trtpipe.runtime.tensorrt_engine import TensorRTEngine

    path = write_simulated_engine(_dynamic_output_model(tmp_path / "nz.onnx"), tmp_path / "nz.engine", {"x": ((1,), (4,), (8,))},
                                  flavor=sim_flavor.name, version=sim_flavor.version)
    trt = sim_flavor.module
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(path.read_bytes())
    context = engine.create_execution_context()
    context.set_input_shape("x", (4,))
    assert tuple(context.get_tensor_shape("idx")) == (1, -1)
    with pytest.raises(InputError, match="data-dependent shape"):
        TensorRTEngine(path, flavor=sim_flavor)


def test_types_tensorrt_lacks_are_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "f64",
                              [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "f64.onnx"))
    with pytest.raises(SimulationError, match="input 'x' is ONNX DOUBLE, which TensorRT has no DataType for"):
        write_simulated_engine(tmp_path / "f64.onnx", tmp_path / "f64.engine", {"x": ((2,),) * 3})


def test_tensorrt_keeps_the_first_logger_of_the_process(sim_flavor):
    trt = sim_flavor.module
    seen: dict[str, list] = {"first": [], "second": []}

    def logger(name):
        class Collect(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)

            def log(self, severity, msg):
                seen[name].append(msg)

        return Collect()

    trt.Runtime(logger("first"))
    trt.Runtime(logger("second")).deserialize_cuda_engine(b"not an engine")
    assert any("differs from one already provided" in m for m in seen["second"])
    assert any("Magic tag does not match" in m for m in seen["first"]), "errors go to the process's first logger"


def test_the_copy_kind_and_sizes_are_checked(sim_cuda):
    with cuda.Stream() as stream, cuda.PinnedBuffer((4,), np.float32) as host, cuda.DeviceBuffer(16) as device:
        with pytest.raises(SimulationError, match="is host memory, expected device"):
            sim_cuda.cudaMemcpyAsync(host.ptr, host.ptr, 16, 1, stream.handle)
        cuda.copy_htod_async(device, host, 16, stream)
        stream.synchronize()

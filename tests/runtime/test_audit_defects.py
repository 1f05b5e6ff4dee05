"""The runtime defects the review against the real bindings found (issue 11), each against the simulated flavours.

Defect 1 (inspect reading the removed ``device_memory_size``) is caught by the flavour-parametrised inspect run in
tests/builder/test_simulated_builds.py; the builder's defects (4, 5, 9, 10) are there too.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from trtpipe.errors import EngineMismatchError, InputError
from trtpipe.runtime.simulation import SimulatedCuda, simulated_flavor, write_simulated_engine
from trtpipe.runtime.tensorrt_engine import TensorRTEngine


def images(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 3, 8, 8)).astype(np.float32)


def reference(onnx_path, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_inspect_reports_device_memory_on_each_flavour(simulated_machine, sim_engine):
    """Defect 1, as written for it; the flavour-parametrised build/run/inspect test catches it too."""
    from trtpipe.inspect import inspect_engine

    report = inspect_engine(sim_engine)
    assert report.not_loaded_because is None, report.not_loaded_because
    assert report.loaded["device_memory_bytes"] > 0


def test_graphs_are_never_replayed_after_the_contexts_shapes_changed(sim_engine, sim_flavor, tiny_classifier_onnx):
    """Defect 2: alternating batch sizes (4, 2, 4 ...) with CUDA graphs give the right outputs every time."""
    with TensorRTEngine(sim_engine, flavor=sim_flavor, cuda_graph=True) as engine:
        for step, batch in enumerate((4, 2, 4, 2, 4)):
            x = images(batch, seed=step)
            np.testing.assert_allclose(engine.infer({"input": x})["logits"], reference(tiny_classifier_onnx, x), rtol=1e-5, atol=1e-5)


def test_a_failed_capture_falls_back_to_plain_launches(tiny_classifier_onnx, tmp_path, sim_cuda, sim_flavor, caplog):
    """Defect 3: the capture is ended, the error cleared, a warning given, and no later call captures again."""
    if sim_flavor.is_rtx:
        pytest.skip("TensorRT-RTX captures its own graphs (cuda_graph_strategy); trtpipe does not capture there")
    path = write_simulated_engine(tiny_classifier_onnx, tmp_path / "plugin.engine", {"input": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))},
                                  flavor=sim_flavor.name, version=sim_flavor.version, capturable=False)
    with caplog.at_level(logging.WARNING, logger="trtpipe.runtime"), TensorRTEngine(path, flavor=sim_flavor, cuda_graph=True) as engine:
        for step in range(3):
            x = images(2, seed=step)
            np.testing.assert_allclose(engine.infer({"input": x})["logits"], reference(tiny_classifier_onnx, x), rtol=1e-5, atol=1e-5)
        assert engine.cuda_graph_failure and "capture failed" in engine.cuda_graph_failure
        assert not sim_cuda.captures and sim_cuda.cudaGetLastError()[0] == 0
        assert sim_cuda.live_graphs == 0
    assert [r for r in caplog.records if "running without CUDA graphs" in r.getMessage()], "one warning"
    assert len([r for r in caplog.records if "capture failed" in r.getMessage()]) == 1


def test_rtx_uses_its_own_graph_strategy(sim_engine, sim_flavor, sim_cuda):
    if not sim_flavor.is_rtx:
        pytest.skip("TensorRT-RTX only")
    with TensorRTEngine(sim_engine, flavor=sim_flavor, cuda_graph=True) as engine:
        engine.infer({"input": images(2)})
        context = engine._contexts[0].context
        assert context._own_graphs and context._own_graph_captures >= 1
        assert sim_cuda.live_graphs == 0 and engine._contexts[0].graph is None  # trtpipe captured nothing itself


def test_rtx_engine_on_a_gpu_it_has_no_target_for_is_refused_before_deserializing(tiny_classifier_onnx, tmp_path):
    """Defect 5: Hopper (SM90) has no TensorRT-RTX target; the message names the GPU and what runs there."""
    cuda = SimulatedCuda("NVIDIA H200", 9, 0)
    from trtpipe import cuda as cuda_layer

    with cuda_layer.using_runtime(cuda):
        flavor = simulated_flavor(cuda, "tensorrt_rtx")
        path = write_simulated_engine(tiny_classifier_onnx, tmp_path / "rtx.engine", {"input": ((1, 3, 8, 8),) * 3}, flavor="tensorrt_rtx")
        with pytest.raises(EngineMismatchError) as caught:
            TensorRTEngine(path, flavor=flavor)
    message = str(caught.value)
    assert "NVIDIA H200 (compute capability 9.0)" in message and "has no target" in message
    assert "TensorRT 10/11" in message and "--flavor tensorrt" in message and "could not deserialize" not in message


def test_rtx_default_targets_leave_out_turing(tiny_classifier_onnx, tmp_path):
    cuda = SimulatedCuda("NVIDIA GeForce RTX 2080 Ti", 7, 5)
    from trtpipe import cuda as cuda_layer

    with cuda_layer.using_runtime(cuda):
        flavor = simulated_flavor(cuda, "tensorrt_rtx")
        path = write_simulated_engine(tiny_classifier_onnx, tmp_path / "rtx.engine", {"input": ((1, 3, 8, 8),) * 3}, flavor="tensorrt_rtx")
        with pytest.raises(EngineMismatchError, match=r"default targets are SM80, SM86.*Hint: .*--compute-capability SM75"):
            TensorRTEngine(path, flavor=flavor)


def _narrow_io_model(path, elem_type):
    """x (N, 4) of ``elem_type`` -> Cast(float) * 2 -> Cast back -> y (N, 4) of ``elem_type``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["xf", "two"], ["yf"]),
         helper.make_node("Cast", ["yf"], ["y"], to=elem_type)],
        "narrow", [helper.make_tensor_value_info("x", elem_type, ["N", 4])],
        [helper.make_tensor_value_info("y", elem_type, ["N", 4])],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("onnx_type, dtype", [(16, "bfloat16"), (17, "float8_e4m3fn")])
def test_bf16_and_fp8_tensors_are_fed_and_read_as_ml_dtypes_arrays(tmp_path, sim_cuda, sim_flavor, onnx_type, dtype):
    """Defect 7: buffers sized from TensorRT's itemsize; arrays are ml_dtypes arrays of TensorRT's layout."""
    import ml_dtypes

    onnx = _narrow_io_model(tmp_path / "narrow.onnx", onnx_type)
    path = write_simulated_engine(onnx, tmp_path / "narrow.engine", {"x": ((1, 4), (2, 4), (3, 4))},
                                  flavor=sim_flavor.name, version=sim_flavor.version)
    numpy_type = getattr(ml_dtypes, dtype)
    with TensorRTEngine(path, flavor=sim_flavor) as engine:
        assert [i.dtype for i in engine.inputs] == [dtype] and [o.dtype for o in engine.outputs] == [dtype]
        assert engine._contexts[0].device["x"].nbytes == 3 * 4 * np.dtype(numpy_type).itemsize
        x = np.array([[0.5, 1, 1.5, -2], [3, 0.25, -1, 4]], np.float32).astype(numpy_type)
        y = engine.infer({"x": x})["y"]
        assert y.dtype == np.dtype(numpy_type)
        np.testing.assert_allclose(y.astype(np.float32), (x.astype(np.float32) * 2).astype(numpy_type).astype(np.float32))
        with pytest.raises(InputError, match=f"expected {dtype}"):
            engine.infer({"x": x.astype(np.float32)})


def test_four_bit_tensors_are_refused_with_the_tensors_name(tmp_path, sim_cuda, sim_flavor):
    from onnx import TensorProto

    onnx = _narrow_io_model(tmp_path / "int4.onnx", TensorProto.INT4)
    path = write_simulated_engine(onnx, tmp_path / "int4.engine", {"x": ((1, 4),) * 3}, flavor=sim_flavor.name, version=sim_flavor.version)
    with pytest.raises(EngineMismatchError, match=r"tensor 'x' is INT4, which trtpipe cannot feed.*Hint: keep the model's inputs"):
        TensorRTEngine(path, flavor=sim_flavor)
    assert sim_cuda.live_allocations == 0


def test_the_device_is_set_in_every_calling_thread(tiny_classifier_onnx, tmp_path):
    """Defect 8: an engine on device 1 runs there when infer comes from another thread."""
    from trtpipe import cuda as cuda_layer

    cuda = SimulatedCuda(devices=[("NVIDIA Simulated A", 8, 9), ("NVIDIA Simulated B", 8, 9)])
    with cuda_layer.using_runtime(cuda):
        path = write_simulated_engine(tiny_classifier_onnx, tmp_path / "e.engine", {"input": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))})
        with TensorRTEngine(path, flavor=simulated_flavor(cuda), device=1) as engine:
            x, results = images(2), []
            thread = threading.Thread(target=lambda: results.append(engine.infer({"input": x})["logits"]))
            thread.start()
            thread.join()
            assert results, "infer from another thread failed"
            np.testing.assert_allclose(results[0], reference(tiny_classifier_onnx, x), rtol=1e-5, atol=1e-5)
        assert cuda.live_allocations == 0


def test_work_in_flight_is_waited_for_before_a_context_is_destroyed(sim_engine, sim_flavor, sim_cuda, monkeypatch):
    """Also: an error after the launch (here: queueing the outputs) must not free a context with queued work."""
    engine = TensorRTEngine(sim_engine, flavor=sim_flavor)

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure after the launch")

    monkeypatch.setattr(engine, "_queue_outputs", broken)
    with pytest.raises(RuntimeError, match="after the launch"):
        engine.infer({"input": images(2)})
    engine.close()
    assert sim_cuda.destroyed_with_work == [] and sim_cuda.live_allocations == 0


def test_a_refused_shape_in_the_profiling_context_is_an_error(sim_engine, sim_flavor, monkeypatch):
    """Also: set_input_shape's result is checked everywhere (here: the separate profiling context)."""
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine:
        engine.infer({"input": images(2)})
        context_class = type(engine._contexts[0].context)
        monkeypatch.setattr(context_class, "set_input_shape", lambda self, name, shape: False)
        with pytest.raises(InputError, match="TensorRT rejected shape"):
            engine.profile_layers({"input": images(2)}, iterations=1)

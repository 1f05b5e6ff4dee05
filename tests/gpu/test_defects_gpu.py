"""Each defect of the review (issue 11) on a real GPU with real TensorRT (make test-gpu); skipped, saying why, without.

The same defects are tested against the simulated flavours in the CPU suite (tests/runtime/test_audit_defects.py,
tests/builder/test_simulated_builds.py); these run the real bindings.
"""

from __future__ import annotations

import gc
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from trtpipe.runtime.simulation import make_tiny_classifier, tiny_spec
from trtpipe.spec import BatchRange, BuildConfig, preprocess_path_for
from trtpipe.testing import tensorrt_unavailable_reason

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(tensorrt_unavailable_reason() is not None, reason=f"{tensorrt_unavailable_reason()}")]


def images(batch, seed=0, size=16):
    return np.random.default_rng(seed).normal(size=(batch, 3, size, size)).astype(np.float32)


def reference(onnx, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


@pytest.fixture
def tiny(tmp_path):
    onnx = make_tiny_classifier(tmp_path / "tiny.onnx", size=16)
    tiny_spec(16).save(preprocess_path_for(onnx))
    return onnx


@pytest.fixture
def engine_path(tiny, tmp_path):
    from trtpipe.builder.builder import build_engine

    return build_engine(tiny, tmp_path / "tiny.engine", BuildConfig(batch=BatchRange(1, 4, 8))).engine_path


def test_1_inspect_loads_and_reports_device_memory(engine_path):
    from trtpipe.inspect import inspect_engine

    report = inspect_engine(engine_path)
    assert report.not_loaded_because is None and report.loaded["device_memory_bytes"] >= 0


@pytest.mark.parametrize("contexts", [1, 2])
def test_2_graphs_with_alternating_batches(engine_path, tiny, contexts):
    from trtpipe.runtime.tensorrt_engine import TensorRTEngine

    with TensorRTEngine(engine_path, cuda_graph=True, contexts=contexts) as engine:
        for step, batch in enumerate((8, 4, 8, 4, 8, 1)):
            x = images(batch, seed=step)
            np.testing.assert_allclose(engine.infer({"input": x})["logits"], reference(tiny, x), rtol=1e-3, atol=1e-3)
        assert engine.cuda_graph_failure is None


def test_3_a_broken_capture_falls_back(engine_path, tiny, monkeypatch):
    from trtpipe import cuda
    from trtpipe.runtime.tensorrt_engine import TensorRTEngine

    with TensorRTEngine(engine_path, cuda_graph=True) as engine:
        if engine._native_graphs:
            pytest.skip("TensorRT-RTX captures its own graphs")
        real = engine._enqueue

        def breaks_capture(slot):
            cuda.runtime().cudaMalloc(256)  # forbidden inside a thread-local capture: CUDA invalidates it
            return real(slot)

        monkeypatch.setattr(engine, "_enqueue", breaks_capture)
        for step in range(3):
            x = images(4, seed=step)
            np.testing.assert_allclose(engine.infer({"input": x})["logits"], reference(tiny, x), rtol=1e-3, atol=1e-3)
        assert engine.cuda_graph_failure and int(cuda.runtime().cudaGetLastError()[0]) == 0


def test_4_and_9_classic_int8_at_the_opt_batch_and_the_calibrator_freed(tiny, tmp_path, monkeypatch):
    import cv2

    from trtpipe.builder import classic
    from trtpipe.builder.builder import build_engine
    from trtpipe.flavors import get_flavor

    if not get_flavor().supports_classic_precision:
        pytest.skip(f"{get_flavor().label} has no implicit INT8 (TensorRT 10 only)")
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(48):
        cv2.imwrite(str(folder / f"{i}.png"), np.random.default_rng(i).integers(0, 255, (20, 20, 3), dtype=np.uint8))
    made, real = [], classic.make_entropy_calibrator

    def spy(trt):
        cls = real(trt)

        class Spied(cls):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                made.append(weakref.ref(self))

        return Spied

    monkeypatch.setattr(classic, "make_entropy_calibrator", spy)
    config = BuildConfig(precision="int8", int8_mode="implicit", calib_images=str(folder), batch=BatchRange(1, 16, 32))
    result = build_engine(tiny, tmp_path / "int8.engine", config)
    assert "batches of 16" in " ".join(result.sidecar.notes)
    gc.collect()
    assert made and made[0]() is None


def test_5_rtx_engines_are_refused_on_a_gpu_without_a_target(tiny, tmp_path):
    from trtpipe import cuda
    from trtpipe.builder.builder import build_engine
    from trtpipe.errors import EngineMismatchError
    from trtpipe.flavors import installed_flavors
    from trtpipe.runtime.tensorrt_engine import TensorRTEngine

    rtx = [f for f in installed_flavors() if f.is_rtx]
    if not rtx:
        pytest.skip("TensorRT-RTX is not installed")
    gpu = cuda.device_info(0)
    if gpu.sm in rtx[0].default_compute_capabilities:
        pytest.skip(f"{gpu.name} ({gpu.sm}) is a TensorRT-RTX target")
    path = build_engine(tiny, tmp_path / "rtx.engine", BuildConfig(flavor="tensorrt_rtx")).engine_path
    with pytest.raises(EngineMismatchError, match=f"{gpu.name}.*TensorRT 10/11"):
        TensorRTEngine(path, flavor=rtx[0])


def test_7_bf16_inputs_and_outputs(tmp_path):
    import ml_dtypes
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from trtpipe.builder.builder import build_engine
    from trtpipe.runtime.tensorrt_engine import TensorRTEngine

    graph = helper.make_graph(
        [helper.make_node("Cast", ["input"], ["xf"], to=TensorProto.FLOAT), helper.make_node("Mul", ["xf", "two"], ["yf"]),
         helper.make_node("Cast", ["yf"], ["output"], to=TensorProto.BFLOAT16)],
        "bf16", [helper.make_tensor_value_info("input", TensorProto.BFLOAT16, ["N", 8])],
        [helper.make_tensor_value_info("output", TensorProto.BFLOAT16, ["N", 8])], [numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.save(model, str(tmp_path / "bf16.onnx"))
    path = build_engine(tmp_path / "bf16.onnx", tmp_path / "bf16.engine", BuildConfig(batch=BatchRange(1, 2, 4))).engine_path
    with TensorRTEngine(path) as engine:
        x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(3, 8).astype(ml_dtypes.bfloat16)
        y = engine.infer({"input": x})["output"]
        assert y.dtype == np.dtype(ml_dtypes.bfloat16)
        np.testing.assert_allclose(y.astype(np.float32), x.astype(np.float32) * 2, rtol=1e-2)


def test_8_and_c1_threads_and_contexts(engine_path, tiny):
    """N contexts serve N threads; each thread's calls run on the engine's device whatever its current device was."""
    from trtpipe import cuda
    from trtpipe.runtime.tensorrt_engine import TensorRTEngine

    with TensorRTEngine(engine_path, contexts=3) as engine, ThreadPoolExecutor(6) as pool:
        assert engine.num_contexts == 3
        xs = [images(1 + s % 8, seed=s) for s in range(30)]
        outs = list(pool.map(lambda x: engine.infer({"input": x})["logits"], xs))
        for x, out in zip(xs, outs):
            np.testing.assert_allclose(out, reference(tiny, x), rtol=1e-3, atol=1e-3)
        seen = []
        thread = threading.Thread(target=lambda: seen.append((engine.infer({"input": xs[0]})["logits"], cuda.current_device())))
        thread.start()
        thread.join()
        assert seen and seen[0][1] == engine.device.index


def test_10_tensorrts_own_error_reaches_the_message(engine_path, tmp_path):
    from trtpipe.errors import EngineMismatchError
    from trtpipe.runtime.tensorrt_engine import TensorRTEngine

    with TensorRTEngine(engine_path):
        pass  # a logger is registered with TensorRT now
    data = bytearray(engine_path.read_bytes())
    data[:64] = bytes(64)  # same size, so the sidecar check passes and TensorRT itself must refuse it
    engine_path.write_bytes(bytes(data))
    with pytest.raises(EngineMismatchError) as caught:
        TensorRTEngine(engine_path)
    assert "no error message from TensorRT" not in str(caught.value)

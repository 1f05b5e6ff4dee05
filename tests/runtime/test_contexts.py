"""Several execution contexts per engine (contract C1; trtexec's --infStreams), against each simulated flavour."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from trtpipe.errors import ConfigError
from trtpipe.runtime.base import ClosedError
from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine
from trtpipe.runtime.tensorrt_engine import TensorRTEngine


def images(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 3, 8, 8)).astype(np.float32)


def reference(onnx_path, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_one_engine_n_contexts_each_with_its_own_stream_and_buffers(sim_engine, sim_flavor, sim_cuda, monkeypatch):
    runtime_class = sim_flavor.module.Runtime
    deserialized = []
    real = runtime_class.deserialize_cuda_engine
    monkeypatch.setattr(runtime_class, "deserialize_cuda_engine", lambda self, data: deserialized.append(1) or real(self, data))
    with TensorRTEngine(sim_engine, flavor=sim_flavor, contexts=3) as engine:
        assert engine.num_contexts == 3 and len(deserialized) == 1
        contexts = engine._contexts
        assert len({id(c.context) for c in contexts}) == 3 and len({c.stream.ptr for c in contexts}) == 3
        assert len({c.device["input"].ptr for c in contexts}) == 3 and len(sim_cuda.streams) == 3
    assert sim_cuda.live_allocations == 0 and not sim_cuda.streams


def test_threads_run_on_different_contexts_at_the_same_time(sim_engine, sim_flavor, tiny_classifier_onnx, monkeypatch):
    """Two inferences meet inside the (simulated) GPU work: they run in parallel, not one after the other."""
    with TensorRTEngine(sim_engine, flavor=sim_flavor, contexts=2) as engine:
        engine.infer({"input": images(2)})  # the ORT session is made once, before the threads race
        meeting = threading.Barrier(2, timeout=20)
        session_run = engine._engine._session_run

        def run_together(names, feeds):
            meeting.wait()  # both launches must be in flight at once, else this times out
            return session_run(names, feeds)

        monkeypatch.setattr(engine._engine, "_session_run", run_together)
        with ThreadPoolExecutor(2) as pool:
            xs = [images(2, seed=s) for s in (1, 2)]
            outs = list(pool.map(lambda x: engine.infer({"input": x})["logits"], xs))
        for x, out in zip(xs, outs):
            np.testing.assert_allclose(out, reference(tiny_classifier_onnx, x), rtol=1e-5, atol=1e-5)


def test_many_threads_on_few_contexts_all_get_their_own_results(sim_engine, sim_flavor, tiny_classifier_onnx):
    with TensorRTEngine(sim_engine, flavor=sim_flavor, contexts=2, cuda_graph=True) as engine, ThreadPoolExecutor(6) as pool:
        xs = [images(1 + s % 4, seed=s) for s in range(24)]
        outs = list(pool.map(lambda x: engine.infer_timed({"input": x}), xs))
    for x, (out, times) in zip(xs, outs):
        np.testing.assert_allclose(out["logits"], reference(tiny_classifier_onnx, x), rtol=1e-5, atol=1e-5)
        assert times.compute > 0 and times.end_to_end > 0


def test_a_graph_per_context_and_shape_so_alternating_batches_capture_once_each(sim_engine, sim_flavor, sim_cuda):
    if sim_flavor.is_rtx:
        pytest.skip("TensorRT-RTX captures its own graphs")
    with TensorRTEngine(sim_engine, flavor=sim_flavor, contexts=2, cuda_graph=True) as engine:
        captures = 0
        real_begin = sim_cuda.cudaStreamBeginCapture

        def counting(stream, mode):
            nonlocal captures
            captures += 1
            return real_begin(stream, mode)

        sim_cuda.cudaStreamBeginCapture = counting
        for batch in (4, 2, 4, 2, 4, 2):
            engine.infer({"input": images(batch)})
        assert captures == 2, "one graph for batch 4 on one context, one for batch 2 on the other"
        assert sorted(c.graph[0] for c in engine._contexts) == [((2, 3, 8, 8),), ((4, 3, 8, 8),)]


def test_with_one_context_a_shape_change_drops_the_stale_graph(sim_engine, sim_flavor, sim_cuda):
    if sim_flavor.is_rtx:
        pytest.skip("TensorRT-RTX captures its own graphs")
    with TensorRTEngine(sim_engine, flavor=sim_flavor, cuda_graph=True) as engine:
        for batch in (4, 2, 4):
            engine.infer({"input": images(batch)})
            assert engine._contexts[0].graph[0] == ((batch, 3, 8, 8),)
            assert sim_cuda.live_graphs == 2, "exactly one graph (and its instance) alive"


def test_close_waits_for_calls_in_flight_and_refuses_new_ones(sim_engine, sim_flavor, sim_cuda, monkeypatch):
    engine = TensorRTEngine(sim_engine, flavor=sim_flavor, contexts=2)
    started, release = threading.Event(), threading.Event()
    session_run = engine._engine._session_run

    def slow(names, feeds):
        started.set()
        release.wait(20)
        return session_run(names, feeds)

    monkeypatch.setattr(engine._engine, "_session_run", slow)
    result = []
    worker = threading.Thread(target=lambda: result.append(engine.infer({"input": images(1)})))
    worker.start()
    assert started.wait(20)
    closer = threading.Thread(target=engine.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "close() must wait for the call in flight"
    with pytest.raises(ClosedError):
        engine.infer({"input": images(1)})
    release.set()
    worker.join(20)
    closer.join(20)
    assert result and sim_cuda.live_allocations == 0 and not sim_cuda.destroyed_with_work


def test_contexts_must_be_positive(sim_engine, sim_flavor):
    with pytest.raises(ConfigError, match="contexts=0"):
        TensorRTEngine(sim_engine, flavor=sim_flavor, contexts=0)


def test_enqueue_ahead_and_infer_share_context_zero_safely(sim_engine, sim_flavor, tiny_classifier_onnx):
    with TensorRTEngine(sim_engine, flavor=sim_flavor, contexts=2) as engine:
        x = images(3)
        with engine.enqueue_ahead({"input": x}) as queue, ThreadPoolExecutor(2) as pool:
            handles = [queue.enqueue() for _ in range(3)]
            others = list(pool.map(lambda s: engine.infer({"input": images(2, seed=s)})["logits"], range(6)))
            for handle in handles:
                queue.wait(handle)
                np.testing.assert_allclose(queue.outputs(handle)["logits"], reference(tiny_classifier_onnx, x), rtol=1e-5, atol=1e-5)
        for s, out in enumerate(others):
            np.testing.assert_allclose(out, reference(tiny_classifier_onnx, images(2, seed=s)), rtol=1e-5, atol=1e-5)


def test_every_engine_says_how_many_contexts_it_has(tiny_classifier_onnx):
    with OnnxRuntimeEngine(tiny_classifier_onnx) as engine:
        assert engine.num_contexts == 1

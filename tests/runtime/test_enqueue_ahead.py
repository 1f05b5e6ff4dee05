"""The engine's measurement API against the simulation: enqueue-ahead, the per-layer profile, device_timed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from trtpipe.runtime.base import ClosedError, NotReadyError
from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine
from trtpipe.runtime.tensorrt_engine import TensorRTEngine


def images(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 3, 8, 8)).astype(np.float32)


def stream_of(sim_cuda) -> list:
    (queue,) = sim_cuda.streams.values()  # the engine's one stream
    return queue


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_enqueue_ahead_gives_the_outputs_of_infer(sim_engine, sim_flavor, cuda_graph):
    with TensorRTEngine(sim_engine, flavor=sim_flavor, cuda_graph=cuda_graph) as engine:
        x = images(3)
        expected = engine.infer({"input": x})["logits"]
        with engine.enqueue_ahead({"input": x}) as queue:
            handles = [queue.enqueue() for _ in range(3)]  # one more than the default depth: a slot is added
            for handle in handles:
                times = queue.wait(handle)
                assert times["h2d"] > 0 and times["compute"] > 0 and times["d2h"] > 0
                np.testing.assert_array_equal(queue.outputs(handle)["logits"], expected)


def test_enqueue_does_not_synchronize_and_wait_drains_only_up_to_its_inference(sim_engine, sim_flavor, sim_cuda):
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine, engine.enqueue_ahead({"input": images(2)}) as queue:
        sim_cuda.calls.clear()
        first, second = queue.enqueue(), queue.enqueue()
        assert "synchronize" not in sim_cuda.calls and "eventSynchronize" not in sim_cuda.calls
        assert [c for c in sim_cuda.calls if c != "eventRecord"] == ["memcpyHtoD", "execute_async_v3", "memcpyDtoH"] * 2
        queue.wait(first)
        assert stream_of(sim_cuda), "the second inference must still be queued (the GPU stays busy)"
        queue.wait(second)
        assert not stream_of(sim_cuda)


def test_reading_outputs_before_wait_is_refused(sim_engine, sim_flavor):
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine, engine.enqueue_ahead({"input": images(1)}) as queue:
        handle = queue.enqueue()
        with pytest.raises(NotReadyError, match=r"before wait\(\).*Hint: call queue.wait\(handle\) first"):
            queue.outputs(handle)
        queue.wait(handle)
        assert np.isfinite(queue.outputs(handle)["logits"]).all()
        with pytest.raises(NotReadyError, match="already waited for"):
            queue.wait(handle)


def test_a_handle_whose_slot_was_reused_is_refused(sim_engine, sim_flavor):
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine, engine.enqueue_ahead({"input": images(1)}, depth=1) as queue:
        old = queue.enqueue()
        queue.wait(old)
        queue.wait(queue.enqueue())  # reuses the only slot
        with pytest.raises(NotReadyError, match="reused by a later enqueue"):
            queue.outputs(old)


def test_without_transfers_only_compute_is_queued_and_timed(sim_engine, sim_flavor, sim_cuda):
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine, engine.enqueue_ahead({"input": images(2)}, transfers=False) as queue:
        queue.wait(queue.enqueue())  # the first one stages the inputs, outside its timed events
        sim_cuda.calls.clear()
        times = queue.wait(queue.enqueue())
        assert [c for c in sim_cuda.calls if c not in ("eventRecord", "eventSynchronize")] == ["execute_async_v3"]
        assert times["h2d"] is None and times["d2h"] is None and times["compute"] > 0
        with pytest.raises(NotReadyError, match="transfers=False"):
            queue.outputs(queue.enqueue())


def test_infer_in_between_does_not_disturb_the_queue(sim_engine, sim_flavor):
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine:
        x, other = images(2, seed=1), images(4, seed=2)
        expected = engine.infer({"input": x})["logits"]
        for transfers in (True, False):
            with engine.enqueue_ahead({"input": x}, transfers=transfers) as queue:
                handle = queue.enqueue()
                engine.infer({"input": other})  # other shape and data on the shared context and device buffers
                queue.wait(handle)
                queue.wait(queue.enqueue())
        with engine.enqueue_ahead({"input": x}) as queue:
            queue.wait(queue.enqueue())
            engine.infer({"input": other})
            handle = queue.enqueue()
            queue.wait(handle)
            np.testing.assert_array_equal(queue.outputs(handle)["logits"], expected)
        np.testing.assert_array_equal(engine.infer({"input": other})["logits"], engine.infer({"input": other})["logits"])


def test_close_frees_everything_the_queue_allocated(sim_engine, sim_flavor, sim_cuda):
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine:
        engine.infer({"input": images(1)})
        allocations, events = sim_cuda.live_allocations, len(sim_cuda.events)
        queue = engine.enqueue_ahead({"input": images(4)}, depth=3)
        assert sim_cuda.live_allocations > allocations and len(sim_cuda.events) == events + 3 * 4
        queue.enqueue()  # still in flight: close waits for it before freeing its pinned memory
        queue.close()
        queue.close()
        assert (sim_cuda.live_allocations, len(sim_cuda.events)) == (allocations, events)
        assert not stream_of(sim_cuda)
        with pytest.raises(ClosedError):
            queue.enqueue()
        open_queue = engine.enqueue_ahead({"input": images(1)})
        open_queue.enqueue()
    assert sim_cuda.live_allocations == 0 and not sim_cuda.events and not sim_cuda.streams, "engine.close() frees open queues too"
    open_queue.close()  # harmless after the engine closed
    with pytest.raises(ClosedError):
        open_queue.enqueue()


def test_enqueue_ahead_validates_its_inputs(sim_engine, sim_flavor):
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine:
        with pytest.raises(Exception, match=r"outside the optimization profile.*Hint"):
            engine.enqueue_ahead({"input": images(5)})
        with pytest.raises(Exception, match="dtype float64"):
            engine.enqueue_ahead({"input": images(1).astype(np.float64)})
    with pytest.raises(ClosedError):
        engine.enqueue_ahead({"input": images(1)})


# -- per-layer profile -------------------------------------------------------------------------------


def test_profile_layers_uses_its_own_context_and_reports_every_layer(sim_engine, sim_flavor):
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine:
        before = engine.infer({"input": images(2)})["logits"]
        profile = engine.profile_layers({"input": images(3)}, iterations=4)
        assert set(profile.times_ms) == {"pool", "flatten", "fc"}  # the simulation's layers are the ONNX nodes
        assert all(len(times) == 4 for times in profile.times_ms.values()), "warm-up runs are not recorded"
        assert [layer["Name"] for layer in json.loads(profile.engine_information)["Layers"]] == ["pool", "flatten", "fc"]
        np.testing.assert_array_equal(engine.infer({"input": images(2)})["logits"], before)


# -- the Engine interface --------------------------------------------------------------------------


def test_device_timed_and_simulated_say_where_times_come_from(sim_engine, sim_flavor, tiny_classifier_onnx):
    with TensorRTEngine(sim_engine, flavor=sim_flavor) as engine:
        assert engine.device_timed and engine.simulated
    with OnnxRuntimeEngine(tiny_classifier_onnx) as engine:
        assert not engine.device_timed and not engine.simulated
        assert engine.enqueue_ahead({"input": images(1)}) is None  # no asynchronous queue on ONNX Runtime


def test_the_simulation_imports_no_build_tooling():
    code = (
        "import sys, trtpipe.runtime.simulation, trtpipe.runtime.tensorrt_engine\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'onnx_graphsurgeon', 'tensorrt', 'tensorrt_rtx', 'trtpipe.builder', 'trtpipe.quant') if m in sys.modules]\n"
        "print(heavy)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"

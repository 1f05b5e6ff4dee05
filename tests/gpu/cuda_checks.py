"""The CUDA layer (trtpipe.cuda) checked for real: plain functions, no pytest, so a bare GPU machine can run them.

Each check raises AssertionError on a wrong result, :class:`Skip` when something it needs is missing (torch with
CUDA for the known workload), and returns a short note of what it measured. ``make test-gpu`` runs them through
pytest (tests/gpu/test_cuda_gpu.py) or, where pytest is not installed, directly (tests/gpu/run_gpu_checks.py).
Checks marked ``simulable`` also run in the CPU suite against the CUDA simulation, which holds to the same rules.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from trtpipe import cuda
from trtpipe.errors import CudaError


class Skip(Exception):
    """The check cannot run here; the message says why."""


CHECKS = []


def check(simulable: bool):
    def register(function):
        function.simulable = simulable
        CHECKS.append(function)
        return function

    return register


@check(simulable=True)
def device_and_driver() -> str:
    count = cuda.device_count()
    assert count >= 1
    gpu = cuda.device_info(0)
    assert gpu.name and gpu.major >= 5, gpu
    driver, runtime = cuda.driver_version(), cuda.runtime_version()
    assert driver // 1000 >= runtime // 1000, f"driver CUDA {driver} is older than cuda-python's {runtime}"
    return f"{count} device(s); {gpu.name} ({gpu.sm}); driver CUDA {driver}, cuda-python runtime {runtime}"


@check(simulable=True)
def pinned_and_device_round_trip() -> str:
    n = 4 << 20  # 16 MiB of float32
    with cuda.Stream() as stream, cuda.PinnedBuffer((n,), np.float32) as host, cuda.DeviceBuffer(host.nbytes) as device, \
            cuda.PinnedBuffer((n,), np.float32) as back:
        host.array[:] = np.arange(n, dtype=np.float32)
        cuda.copy_htod_async(device, host, host.nbytes, stream)
        cuda.copy_dtoh_async(back, device, back.nbytes, stream)
        stream.synchronize()
        np.testing.assert_array_equal(back.array, host.array)
    return f"{host.nbytes >> 20} MiB H2D + D2H on a non-blocking stream"


@check(simulable=True)
def events_order_and_wait() -> str:
    with cuda.Stream() as stream, cuda.PinnedBuffer((1 << 20,), np.float32) as host, cuda.DeviceBuffer(4 << 20) as device, \
            cuda.Event() as start, cuda.Event() as end:
        start.record(stream)
        for _ in range(8):
            cuda.copy_htod_async(device, host, host.nbytes, stream)
        end.record(stream)
        end.synchronize()
        elapsed = start.elapsed_ms(end)
        assert elapsed > 0, elapsed
    return f"8 x 4 MiB H2D took {elapsed:.3f} ms (CUDA events)"


@check(simulable=True)
def graph_replays_the_copies_it_captured() -> str:
    with cuda.Stream() as stream, cuda.PinnedBuffer((1024,), np.float32) as source, cuda.PinnedBuffer((1024,), np.float32) as result, \
            cuda.DeviceBuffer(4096) as device:
        source.array[:] = 1.0

        def enqueue():
            cuda.copy_htod_async(device, source, 4096, stream)
            cuda.copy_dtoh_async(result, device, 4096, stream)
            return True

        with cuda.Graph.capture(stream, enqueue) as graph:
            for value in (2.0, 3.0):
                source.array[:] = value  # a graph reads memory when it is replayed, not when it was captured
                graph.launch(stream)
                stream.synchronize()
                assert (result.array == value).all(), (value, result.array[:4])
    return "captured H2D+D2H replayed twice with new data"


@check(simulable=True)
def capture_rules() -> str:
    """What CUDA refuses in a capture, as the simulation refuses it: the legacy stream, allocation inside."""
    with cuda.Stream() as stream:
        legacy = type("Legacy", (), {"handle": 0})()
        try:
            cuda.Graph.capture(legacy, lambda: True)
            raise AssertionError("capturing the legacy default stream succeeded")
        except CudaError as exc:
            assert "cudaErrorStreamCaptureUnsupported" in str(exc), exc
        cudart = cuda.runtime()
        try:
            cuda.Graph.capture(stream, lambda: int(cudart.cudaMalloc(256)[0]) == 0)
            raise AssertionError("cudaMalloc inside a thread-local capture did not break it")
        except cuda.GraphCaptureError:
            pass
        assert int(cudart.cudaGetLastError()[0]) == 0, "the capture's error was not cleared"
        stream.synchronize()  # the stream is usable after the broken capture
    return "legacy-stream capture and cudaMalloc inside a capture both refused; stream usable after"


@check(simulable=True)
def current_device_is_per_thread() -> str:
    count = cuda.device_count()
    seen = []

    def other_thread():
        seen.append(cuda.current_device())
        cuda.set_device(count - 1)
        seen.append(cuda.current_device())

    cuda.set_device(0)
    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert seen == [0, count - 1] and cuda.current_device() == 0, seen
    return f"a new thread starts on device 0; setting device {count - 1} there leaves this thread on 0"


@check(simulable=False)
def event_timing_of_a_known_gpu_workload() -> str:
    """CUDA events around work of known length (torch's spin kernel, then a matmul) on trtpipe's stream."""
    try:
        import torch
    except ImportError:
        raise Skip("torch is not installed") from None
    if not torch.cuda.is_available():
        raise Skip("torch has no CUDA here")
    with cuda.Stream() as stream, cuda.Event() as start, cuda.Event() as end:
        torch_stream = torch.cuda.ExternalStream(stream.ptr)

        def timed(work) -> tuple[float, float]:
            torch.cuda.synchronize()
            begin = time.perf_counter()
            with torch.cuda.stream(torch_stream):
                start.record(stream)
                work()
                end.record(stream)
            end.synchronize()
            return start.elapsed_ms(end), (time.perf_counter() - begin) * 1e3

        cycles = 20_000_000  # ~10 ms at 2 GHz
        timed(lambda: torch.cuda._sleep(cycles))  # warm-up
        one, one_host = timed(lambda: torch.cuda._sleep(cycles))
        four, four_host = timed(lambda: torch.cuda._sleep(4 * cycles))
        assert 3.0 < four / one < 5.0, f"4x the spin measured {four / one:.2f}x ({one:.3f} ms, {four:.3f} ms)"
        assert four <= four_host + 0.5 and four >= 0.5 * four_host, f"events {four:.3f} ms vs host {four_host:.3f} ms"
        a = torch.randn(4096, 4096, device="cuda")
        timed(lambda: a @ a)
        matmul, matmul_host = timed(lambda: a @ a)
        flops = 2 * 4096 ** 3
        assert matmul > flops / 2e15 * 1e3, f"{matmul:.4f} ms is faster than 2 PFLOP/s: events did not time the work"
        assert matmul <= matmul_host + 0.5
    return (f"spin {one:.2f} ms / 4x {four:.2f} ms (host {four_host:.2f}); 4096^3 fp32 matmul {matmul:.3f} ms "
            f"= {flops / matmul / 1e9:.1f} TFLOP/s")

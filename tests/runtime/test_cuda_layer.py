"""trtpipe.cuda: errors name the call and the CUDA error; objects free what they allocate."""

from __future__ import annotations

import numpy as np
import pytest

from trtpipe import cuda
from trtpipe.errors import CudaError


def test_no_driver_is_a_cuda_error_with_a_hint():
    """On this machine (no GPU) the real binding reports cudaErrorInsufficientDriver: it must not pass silently."""
    from trtpipe.testing import gpu_unavailable_reason

    if gpu_unavailable_reason() is None:
        pytest.skip("a GPU is present")
    with pytest.raises(CudaError, match=r"cudaGetDeviceCount failed with cudaError\w+ .*Hint:"):
        cuda.device_count()


def test_buffers_round_trip_and_free(sim_cuda):
    with cuda.Stream() as stream, cuda.PinnedBuffer((2, 3), np.float32) as host, cuda.DeviceBuffer(host.nbytes) as device:
        host.array[:] = np.arange(6).reshape(2, 3)
        cuda.copy_htod_async(device, host, host.nbytes, stream)
        stream.synchronize()  # the copy reads the pinned memory when it runs, not when it is queued
        host.array[:] = 0
        cuda.copy_dtoh_async(host, device, host.nbytes, stream)
        stream.synchronize()
        np.testing.assert_array_equal(host.array, np.arange(6).reshape(2, 3))
    assert sim_cuda.live_allocations == 0 and not sim_cuda.streams


def test_oversized_copy_is_refused(sim_cuda):
    with cuda.Stream() as stream, cuda.PinnedBuffer((4,), np.float32) as host, cuda.DeviceBuffer(8) as device:
        with pytest.raises(CudaError, match="exceeds its buffers"):
            cuda.copy_htod_async(device, host, 16, stream)


def test_failed_call_names_call_and_error(sim_cuda):
    with pytest.raises(CudaError, match=r"cudaSetDevice\(3\) failed with cudaErrorInvalidDevice \(101\)"):
        cuda.set_device(3)


def test_event_synchronize_waits_for_work_before_the_event_only(sim_cuda):
    with cuda.Stream() as stream, cuda.PinnedBuffer((4,), np.float32) as source, cuda.PinnedBuffer((4,), np.float32) as result, \
            cuda.DeviceBuffer(source.nbytes) as device, cuda.Event() as start, cuda.Event() as copied:
        source.array[:] = [1, 2, 3, 4]
        cuda.copy_htod_async(device, source, source.nbytes, stream)
        start.record(stream)
        cuda.copy_dtoh_async(result, device, result.nbytes, stream)
        copied.record(stream)
        cuda.copy_htod_async(device, source, source.nbytes, stream)  # after the event: still queued after the wait
        with pytest.raises(CudaError, match="cudaErrorNotReady"):
            start.elapsed_ms(copied)  # not complete yet
        copied.synchronize()
        np.testing.assert_array_equal(result.array, [1, 2, 3, 4])
        assert start.elapsed_ms(copied) > 0
        assert len(sim_cuda.streams[stream.handle]) == 1
        stream.synchronize()
    assert sim_cuda.live_allocations == 0 and not sim_cuda.events

"""The only module that calls CUDA: streams, events, device and pinned host buffers, async copies, graphs.

Built on cuda-python's runtime bindings (``cuda.bindings.runtime``), whose calls return ``(error, value...)``
tuples instead of raising; :func:`check` turns every non-success code into a :class:`CudaError` naming the
call and the CUDA error. Every object that allocates is a context manager and frees on ``close()``;
closing twice is harmless. Device memory that TensorRT reads later lives on these objects, never in a
temporary.

Tests and ``trtpipe bench --simulate`` swap the binding for ``trtpipe.runtime.simulation.SimulatedCuda`` with
:func:`using_runtime`; nothing else in trtpipe imports CUDA.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Iterator

import numpy as np

from trtpipe.errors import CudaError, DependencyError, option

_injected: ModuleType | None = None
_lock = threading.Lock()


def runtime() -> ModuleType:
    """The CUDA runtime binding in use: ``cuda.bindings.runtime``, or the one set by :func:`using_runtime`."""
    if _injected is not None:
        return _injected
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:  # cuda-python < 12.6 spelled it cuda.cudart
            from cuda import cudart  # type: ignore[no-redef]
        except ImportError:
            raise DependencyError(
                "cuda-python is not installed; the TensorRT runtime needs it",
                f"pip install 'trtpipe[trt-cu13]' (driver R580+) or 'trtpipe[trt-cu12]', or use {option('backend', 'onnxruntime')}",
            ) from None
    return cudart


@contextlib.contextmanager
def using_runtime(module: ModuleType) -> Iterator[ModuleType]:
    """Makes every call in this module go to ``module`` (a CUDA simulation in tests) inside the block."""
    global _injected
    with _lock:
        previous, _injected = _injected, module
    try:
        yield module
    finally:
        with _lock:
            _injected = previous


def check(result: Any, call: str) -> Any:
    """Unpacks a cuda-python ``(error, values...)`` result; raises CudaError naming ``call`` on failure.

    Returns:
        None, the single value, or a tuple of the values after the error code.
    """
    if isinstance(result, tuple):
        error, values = result[0], result[1:]
    else:
        error, values = result, ()
    if int(error) != 0:
        cudart = runtime()
        name = getattr(error, "name", str(int(error)))
        try:
            text = cudart.cudaGetErrorString(error)[1]
            text = text.decode() if isinstance(text, bytes) else str(text)
        except Exception:  # noqa: BLE001 - the error string is a courtesy, the code is what matters
            text = "no description"
        raise CudaError(f"CUDA call {call} failed with {name} ({int(error)}): {text}", _hint_for(name))
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _hint_for(error_name: str) -> str:
    if error_name == "cudaErrorInsufficientDriver":
        return ("the NVIDIA driver is missing or older than this cuda-python needs (cuda-python 13 needs a CUDA 13 "
                f"driver, R580+): pip install 'trtpipe[trt-cu12]' on CUDA 12 drivers, or use {option('backend', 'onnxruntime')}")
    if error_name in ("cudaErrorNoDevice", "cudaErrorInitializationError"):
        return f"no usable NVIDIA GPU/driver here; run on a GPU machine or use {option('backend', 'onnxruntime')}"
    if error_name == "cudaErrorMemoryAllocation":
        return "the GPU is out of memory; use a smaller batch/profile or free other GPU processes"
    if error_name in ("cudaErrorIllegalAddress", "cudaErrorLaunchFailure"):
        return "a kernel touched invalid memory; the CUDA context is now unusable, restart the process"
    return "check the GPU and driver (nvidia-smi); rerun with CUDA_LAUNCH_BLOCKING=1 to find the failing call"


# ----------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """Name and compute capability of one GPU."""

    index: int
    name: str
    major: int
    minor: int

    @property
    def compute_capability(self) -> str:
        """``"8.6"``, as the sidecar records it for GPU builds."""
        return f"{self.major}.{self.minor}"

    @property
    def sm(self) -> str:
        """``"SM86"``, as TensorRT-RTX names its ahead-of-time targets."""
        return f"SM{self.major}{self.minor}"


def device_count() -> int:
    """Number of CUDA devices; raises CudaError (with a Hint) when there is no driver."""
    return int(check(runtime().cudaGetDeviceCount(), "cudaGetDeviceCount"))


def device_info(index: int = 0) -> DeviceInfo:
    """Name and compute capability of device ``index``."""
    props = check(runtime().cudaGetDeviceProperties(index), f"cudaGetDeviceProperties({index})")
    name = props.name
    name = name.split(b"\0", 1)[0].decode() if isinstance(name, (bytes, bytearray)) else str(name)
    return DeviceInfo(index, name, int(props.major), int(props.minor))


def set_device(index: int) -> None:
    """Makes ``index`` the current device of the calling thread (CUDA keeps one per thread)."""
    check(runtime().cudaSetDevice(index), f"cudaSetDevice({index})")


def current_device() -> int:
    """The calling thread's current device."""
    return int(check(runtime().cudaGetDevice(), "cudaGetDevice"))


def driver_version() -> int:
    """The CUDA version the installed driver supports, as CUDA encodes it (12080 = 12.8; 0 without a driver)."""
    return int(check(runtime().cudaDriverGetVersion(), "cudaDriverGetVersion"))


def runtime_version() -> int:
    """The CUDA runtime version cuda-python was built for (13000 = 13.0)."""
    return int(check(runtime().cudaRuntimeGetVersion(), "cudaRuntimeGetVersion"))


# ----------------------------------------------------------------------------------------------
# Streams and events
# ----------------------------------------------------------------------------------------------


class Stream:
    """A non-blocking CUDA stream; ``int(stream.handle)`` is what TensorRT's ``execute_async_v3`` takes."""

    def __init__(self) -> None:
        cudart = runtime()
        self.handle = check(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        """Blocks until all work queued on the stream has finished (host arrays are then safe to read)."""
        check(runtime().cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            check(runtime().cudaStreamDestroy(handle), "cudaStreamDestroy")

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class Event:
    """A CUDA event for timing device work on a stream."""

    def __init__(self) -> None:
        cudart = runtime()
        self.handle = check(cudart.cudaEventCreateWithFlags(cudart.cudaEventDefault), "cudaEventCreateWithFlags")

    def record(self, stream: Stream) -> None:
        check(runtime().cudaEventRecord(self.handle, stream.handle), "cudaEventRecord")

    def synchronize(self) -> None:
        """Blocks until the work queued before the last ``record`` has finished (not the rest of the stream).

        What the enqueue-ahead mode waits on: the oldest inference is complete while later ones keep the GPU busy.
        """
        check(runtime().cudaEventSynchronize(self.handle), "cudaEventSynchronize")

    def elapsed_ms(self, end: "Event") -> float:
        """Milliseconds between this event and ``end``; both must have completed (synchronize first)."""
        return float(check(runtime().cudaEventElapsedTime(self.handle, end.handle), "cudaEventElapsedTime"))

    def close(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            check(runtime().cudaEventDestroy(handle), "cudaEventDestroy")

    def __enter__(self) -> "Event":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------


class DeviceBuffer:
    """``nbytes`` of device memory, freed on close; ``ptr`` is what ``set_tensor_address`` takes."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        # cudaMalloc(0) returns a null pointer, which TensorRT rejects for an I/O tensor.
        self.ptr: int | None = int(check(runtime().cudaMalloc(max(1, self.nbytes)), f"cudaMalloc({self.nbytes})"))

    def close(self) -> None:
        if self.ptr is not None:
            ptr, self.ptr = self.ptr, None
            check(runtime().cudaFree(ptr), "cudaFree")

    def __enter__(self) -> "DeviceBuffer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class PinnedBuffer:
    """Page-locked host memory seen as a numpy array of ``shape`` and ``dtype`` (async copies need it).

    ``array`` is a view into the pinned memory: it is valid until ``close()``; copy what you keep.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype | type) -> None:
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(d) for d in shape)
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self.ptr: int | None = int(check(runtime().cudaMallocHost(max(1, self.nbytes)), f"cudaMallocHost({self.nbytes})"))
        raw = (ctypes.c_byte * max(1, self.nbytes)).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=np.uint8, count=self.nbytes).view(self.dtype).reshape(self.shape)

    def view(self, shape: tuple[int, ...]) -> np.ndarray:
        """The first ``prod(shape)`` elements as an array of ``shape`` (the actual batch within the max)."""
        count = int(np.prod(shape, dtype=np.int64))
        return self.array.reshape(-1)[:count].reshape(shape)

    def close(self) -> None:
        if self.ptr is not None:
            ptr, self.ptr = self.ptr, None
            self.array = None  # type: ignore[assignment]
            check(runtime().cudaFreeHost(ptr), "cudaFreeHost")

    def __enter__(self) -> "PinnedBuffer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def copy_htod_async(device: DeviceBuffer, host: PinnedBuffer, nbytes: int, stream: Stream) -> None:
    """Queues a host-to-device copy of ``nbytes`` from pinned ``host`` to ``device`` on ``stream``."""
    _check_size(nbytes, device, host)
    cudart = runtime()
    check(
        cudart.cudaMemcpyAsync(device.ptr, host.ptr, nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.handle),
        "cudaMemcpyAsync(HostToDevice)",
    )


def copy_dtoh_async(host: PinnedBuffer, device: DeviceBuffer, nbytes: int, stream: Stream) -> None:
    """Queues a device-to-host copy into pinned ``host``; read it only after ``stream.synchronize()``."""
    _check_size(nbytes, device, host)
    cudart = runtime()
    check(
        cudart.cudaMemcpyAsync(host.ptr, device.ptr, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.handle),
        "cudaMemcpyAsync(DeviceToHost)",
    )


def _check_size(nbytes: int, device: DeviceBuffer, host: PinnedBuffer) -> None:
    if nbytes > device.nbytes or nbytes > host.nbytes:
        # A copy past the end corrupts memory silently on a GPU; this is a trtpipe bug, so say so loudly.
        raise CudaError(
            f"copy of {nbytes} bytes exceeds its buffers (device {device.nbytes}, host {host.nbytes} bytes)",
            "this is a trtpipe bug: buffers are sized for the profile's max shape; please report it",
        )


# ----------------------------------------------------------------------------------------------
# Graphs
# ----------------------------------------------------------------------------------------------


def _discard_capture(cudart, stream: Stream) -> None:
    """Ends a capture whatever state it is in and drops what it made: a stream left capturing breaks later calls."""
    ended = cudart.cudaStreamEndCapture(stream.handle)
    if int(ended[0]) == 0 and len(ended) > 1 and ended[1] is not None:
        cudart.cudaGraphDestroy(ended[1])
    cudart.cudaGetLastError()


class GraphCaptureError(CudaError):
    """A stream capture broke (the captured work did something a graph cannot hold); nothing of it was kept."""


class Graph:
    """A CUDA graph captured from the work a callable queues on ``stream``; replayed with :meth:`launch`.

    Use :meth:`capture`. The capture is thread-local (other threads may keep using CUDA meanwhile); the callable
    must not allocate or synchronize, as CUDA forbids both inside a capture.
    """

    def __init__(self, graph, graph_exec) -> None:
        self._graph, self._exec = graph, graph_exec

    @classmethod
    def capture(cls, stream: Stream, enqueue: Callable[[], bool | None]) -> "Graph":
        """Captures the work ``enqueue()`` queues on ``stream`` and instantiates it.

        Args:
            stream: a stream made by :class:`Stream` (the legacy default stream cannot be captured).
            enqueue: queues the work; returning False says it failed (as ``execute_async_v3`` does).

        Raises:
            GraphCaptureError: the capture broke or ``enqueue`` failed. The capture is ended either way, the
                partial graph destroyed and CUDA's sticky error cleared (``cudaGetLastError``), so the stream
                works on as before: the caller can launch the work without a graph (trtexec's fallback).
        """
        cudart = runtime()
        check(
            cudart.cudaStreamBeginCapture(stream.handle, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
            "cudaStreamBeginCapture",
        )
        try:
            succeeded = enqueue()
        except BaseException:
            _discard_capture(cudart, stream)
            raise
        ended = cudart.cudaStreamEndCapture(stream.handle)
        error, graph = ended[0], (ended[1] if len(ended) > 1 else None)
        if succeeded is False or int(error) != 0:
            if graph is not None and int(error) == 0:
                cudart.cudaGraphDestroy(graph)
            cudart.cudaGetLastError()  # clear the error the broken capture left behind
            why = "the captured work failed" if succeeded is False else f"cudaStreamEndCapture returned {getattr(error, 'name', int(error))}"
            raise GraphCaptureError(
                f"CUDA graph capture failed: {why}",
                "run without CUDA graphs (the engine falls back by itself); --verbose shows TensorRT's reason",
            )
        graph_exec = check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        return cls(graph, graph_exec)

    def launch(self, stream: Stream) -> None:
        check(runtime().cudaGraphLaunch(self._exec, stream.handle), "cudaGraphLaunch")

    def close(self) -> None:
        cudart = runtime()
        if self._exec is not None:
            exec_, self._exec = self._exec, None
            check(cudart.cudaGraphExecDestroy(exec_), "cudaGraphExecDestroy")
        if self._graph is not None:
            graph, self._graph = self._graph, None
            check(cudart.cudaGraphDestroy(graph), "cudaGraphDestroy")

    def __enter__(self) -> "Graph":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

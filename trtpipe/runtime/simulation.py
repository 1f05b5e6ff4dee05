"""A strict CPU simulation of the documented TensorRT (v3 API) + CUDA runtime contract. Not a GPU, not a timer.

What it is for:

- **tests**: the TensorRT builder, runtime, inspect and bench run against it on machines without a GPU, once per
  simulated flavour (TensorRT 10.x, 11.x, TensorRT-RTX);
- **``trtpipe bench ENGINE --simulate``**: runs an engine's ONNX (from its sidecar) through the simulation,
  which measures trtpipe's *host-side* overhead per call. Its device times are a fake clock and say
  nothing about any GPU; every result it produces is labelled ``<flavour>-simulated`` (``tensorrt-simulated``).

What "strict" means: on a GPU an unset tensor address, an unset dynamic input shape, a copy of the wrong
dtype or size, or reading pinned output before the stream (or the event after the copy) is synchronized
corrupt results silently. Here each of them raises :class:`SimulationError`, or, for the early read,
leaves NaN poison in the output. The computation itself is real: the ONNX runs in ONNX Runtime.
The CUDA rules it keeps, each as cuda-python reports them (``(error, values...)`` tuples, ``(error,)`` for calls
without a value; the last error of each thread kept for ``cudaGetLastError``):

- the current device is per thread (``cudaSetDevice``); streams, events and memory belong to the device that was
  current when they were made, and stream-ordered work on another device's stream fails
  (``cudaErrorInvalidResourceHandle``);
- stream capture: not on the legacy default stream (handle 0: ``cudaErrorStreamCaptureUnsupported``); while a
  thread captures (thread-local or global mode), its ``cudaMalloc``/``cudaMallocHost``/``cudaFree``/
  ``cudaFreeHost`` and a ``cudaStreamSynchronize`` of the capturing stream fail and invalidate the capture,
  which ``cudaStreamEndCapture`` then reports (``cudaErrorStreamCaptureInvalidated``); waiting on or timing an
  event recorded during capture fails (``cudaErrorCapturedEvent``);
- a graph replays the work it captured, as it was captured (see the TensorRT simulation for what that means
  for an execution context whose shapes changed since).

- :class:`SimulatedCuda` stands in for ``cuda.bindings.runtime`` (inject with ``trtpipe.cuda.using_runtime``):
  memory is real host memory; async work is queued per stream and runs at ``cudaStreamSynchronize``
  (or, up to the event, at ``cudaEventSynchronize``); events complete on a simulated clock.
- :func:`simulated_trt` returns a module standing in for ``tensorrt`` or ``tensorrt_rtx`` of one recorded
  version (``trtpipe/data/trt_api_*.json``): exactly its members, builder, parser and runtime included
  (``trtpipe.runtime.simulated_tensorrt``). Its engines are files written by :func:`write_simulated_engine`
  or by its simulated builder (magic + header + ONNX bytes), with a sidecar like the builder's.
- :class:`SimulatedEngineFile` turns a real engine file into a simulated one (``--simulate``).

Importing this module imports numpy and trtpipe's spec only: ONNX Runtime and onnx load when an engine is
written or deserialized, and nothing here imports torch or the build tooling.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import enum
import itertools
import json
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from trtpipe.flavors import Flavor
from trtpipe.io import sha256_file
from trtpipe.spec import EngineSidecar, PreprocessSpec, TensorInfo, sidecar_path_for

MAGIC = b"TRTPIPE-SIMULATED-ENGINE\n"

#: The GPU the simulation reports unless told otherwise.
SIMULATED_GPU = ("NVIDIA Simulated RTX 4090", 8, 9)

#: The version each simulated flavour stands for by default: the recorded API surfaces (trtpipe/data/trt_api_*).
SIMULATED_VERSIONS = {"tensorrt-10": "10.13.3.9", "tensorrt-11": "11.4.0.106", "tensorrt_rtx": "1.7.1.116"}


class SimulationError(AssertionError):
    """The code under test broke the TensorRT/CUDA contract (on a GPU: silent corruption or a crash)."""


class cudaError_t(enum.IntEnum):
    """The codes cuda-python's ``cudaError_t`` gives these errors (values checked against cuda-bindings in tests)."""

    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorInvalidDevice = 101
    cudaErrorInvalidResourceHandle = 400
    cudaErrorIllegalState = 401
    cudaErrorNotReady = 600
    cudaErrorIllegalAddress = 700
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901
    cudaErrorStreamCaptureImplicit = 906
    cudaErrorCapturedEvent = 907


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStreamCaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


class _Handle(int):
    """Opaque handles are int-convertible in cuda-python; these are plain ints with a type name."""


@dataclasses.dataclass
class _Capture:
    thread: int
    mode: int
    operations: list
    invalidated: str | None = None  # why, once a prohibited call broke the capture


_Ok = cudaError_t.cudaSuccess


class SimulatedCuda:
    """Stands in for ``cuda.bindings.runtime``: same call shapes, ``(error, values...)`` results.

    Thread-safe as the CUDA runtime is: the bookkeeping is locked, queued work runs outside the lock (so threads
    driving their own streams run their work in parallel).

    Args:
        gpu_name, major, minor: the device it reports. Defaults to an RTX 4090 (compute capability 8.9).
        devices: more devices as (name, major, minor); when given, it replaces the single one above.
    """

    SIMULATED = True
    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind
    cudaStreamCaptureMode = cudaStreamCaptureMode
    cudaStreamNonBlocking = 1
    cudaEventDefault = 0

    def __init__(self, gpu_name: str = SIMULATED_GPU[0], major: int = SIMULATED_GPU[1], minor: int = SIMULATED_GPU[2],
                 *, devices: list[tuple[str, int, int]] | None = None):
        self.devices = [SimpleNamespace(name=n.encode(), major=a, minor=b) for n, a, b in (devices or [(gpu_name, major, minor)])]
        self.props = self.devices[0]
        self._lock = threading.RLock()
        self._local = threading.local()  # .device (current device), .last_error
        self._ids = itertools.count(0x1000)
        self.memory: dict[int, tuple[ctypes.Array, str, int]] = {}  # ptr -> (buffer, "device" | "host", device)
        self.streams: dict[int, list] = {}  # handle -> queued operations
        self.stream_device: dict[int, int] = {}
        self.captures: dict[int, _Capture] = {}  # stream handle -> capture in progress
        self.graphs: dict[int, list] = {}  # graph handle -> captured operations
        self.graph_execs: dict[int, list] = {}  # instantiated graphs
        self.events: dict[int, float | None] = {}  # handle -> simulated time when it completed (None: pending)
        self.event_device: dict[int, int] = {}
        self._event_records: dict[int, tuple[int, int, bool]] = {}  # handle -> (stream, record generation, captured)
        self._generations = itertools.count(1)
        self.last_write: dict[int, int] = {}  # device ptr -> bytes of the last H2D copy into it
        self.destroyed_with_work: list[int] = []  # streams destroyed while work was still queued on them
        self.clock = 0.0
        self.calls: list[str] = []

    # -- errors and devices --------------------------------------------------------------------

    def _result(self, error, *values):
        """A cuda-python result tuple; a failure also becomes this thread's last error."""
        if error != _Ok:
            self._local.last_error = error
        return (cudaError_t(error), *values)

    def cudaGetErrorString(self, error):
        return _Ok, f"simulated {cudaError_t(error).name}".encode()

    def cudaGetLastError(self):
        error = getattr(self._local, "last_error", _Ok)
        self._local.last_error = _Ok
        return (cudaError_t(error),)

    def cudaPeekAtLastError(self):
        return (cudaError_t(getattr(self._local, "last_error", _Ok)),)

    def cudaGetDeviceCount(self):
        return _Ok, len(self.devices)

    def cudaDriverGetVersion(self):
        return _Ok, 13000

    def cudaRuntimeGetVersion(self):
        return _Ok, 13000

    @property
    def current_device(self) -> int:
        """The calling thread's current device (0 until it sets another, as in CUDA)."""
        return getattr(self._local, "device", 0)

    def cudaSetDevice(self, index):
        if not 0 <= int(index) < len(self.devices):
            return self._result(cudaError_t.cudaErrorInvalidDevice)
        self._local.device = int(index)
        return (_Ok,)

    def cudaGetDevice(self):
        return _Ok, self.current_device

    def cudaGetDeviceProperties(self, index):
        if not 0 <= int(index) < len(self.devices):
            return self._result(cudaError_t.cudaErrorInvalidDevice, None)
        return _Ok, self.devices[int(index)]

    # -- capture rules -------------------------------------------------------------------------

    def _prohibited_by_capture(self, call: str) -> bool:
        """True (and the capture invalidated) when a capture forbids the calling thread's ``call``."""
        me = threading.get_ident()
        for stream, capture in self.captures.items():
            if capture.mode == cudaStreamCaptureMode.cudaStreamCaptureModeGlobal or (
                capture.mode == cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal and capture.thread == me
            ):
                capture.invalidated = capture.invalidated or f"{call} during capture"
                return True
        return False

    def is_capturing(self, stream) -> bool:
        """Whether ``stream`` is being captured (what cudaStreamIsCapturing reports; the TensorRT simulation asks)."""
        return int(stream) in self.captures

    def cudaStreamIsCapturing(self, stream):
        return _Ok, int(int(stream) in self.captures)

    # -- memory --------------------------------------------------------------------------------

    def _alloc(self, nbytes: int, kind: str, call: str):
        with self._lock:
            if self._prohibited_by_capture(call):
                return self._result(cudaError_t.cudaErrorStreamCaptureUnsupported, None)
            buffer = (ctypes.c_byte * max(1, int(nbytes)))()
            ptr = ctypes.addressof(buffer)
            self.memory[ptr] = (buffer, kind, self.current_device)
            return _Ok, ptr

    def cudaMalloc(self, nbytes):
        return self._alloc(nbytes, "device", "cudaMalloc")

    def cudaMallocHost(self, nbytes):
        return self._alloc(nbytes, "host", "cudaMallocHost")

    def _free(self, ptr, kind, call):
        with self._lock:
            if self._prohibited_by_capture(call):
                return self._result(cudaError_t.cudaErrorStreamCaptureUnsupported)
            entry = self.memory.get(int(ptr))
            if entry is None or entry[1] != kind:
                return self._result(cudaError_t.cudaErrorInvalidValue)
            del self.memory[int(ptr)]
            return (_Ok,)

    def cudaFree(self, ptr):
        return self._free(ptr, "device", "cudaFree")

    def cudaFreeHost(self, ptr):
        return self._free(ptr, "host", "cudaFreeHost")

    def allocation(self, ptr: int) -> tuple[int, int, str, int]:
        """(start, size, kind, device) of the allocation holding ``ptr``; raises SimulationError outside any."""
        with self._lock:
            for start, (buffer, kind, device) in self.memory.items():
                if start <= ptr < start + len(buffer):
                    return start, len(buffer), kind, device
        raise SimulationError(f"pointer {ptr:#x} is not allocated memory (freed, or never allocated)")

    def region(self, ptr: int, nbytes: int, kind: str) -> memoryview:
        """The bytes at ``ptr``; raises SimulationError outside an allocation of ``kind``."""
        start, size, buffer_kind, _ = self.allocation(ptr)
        if buffer_kind != kind:
            raise SimulationError(f"pointer {ptr:#x} is {buffer_kind} memory, expected {kind}")
        if ptr + nbytes > start + size:
            raise SimulationError(f"{nbytes} bytes at {ptr:#x} run past the end of a {size}-byte allocation")
        buffer = self.memory[start][0]
        return memoryview(buffer).cast("B")[ptr - start : ptr - start + nbytes]

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        dst, src, nbytes = int(dst), int(src), int(nbytes)
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            source, target = self.region(src, nbytes, "host"), self.region(dst, nbytes, "device")
        else:
            source, target = self.region(src, nbytes, "device"), self.region(dst, nbytes, "host")

        def copy():
            target[:] = source
            if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
                self.last_write[dst] = nbytes

        result = self.enqueue(stream, copy, f"memcpy{'HtoD' if kind == 1 else 'DtoH'}")
        if result[0] == _Ok and kind == cudaMemcpyKind.cudaMemcpyDeviceToHost and int(stream) not in self.captures:
            target[:] = b"\xff" * nbytes  # until the copy has run the host sees garbage: NaN for floats
        return result

    # -- streams, events, graphs ---------------------------------------------------------------

    def cudaStreamCreateWithFlags(self, flags):
        with self._lock:
            handle = _Handle(next(self._ids))
            self.streams[handle] = []
            self.stream_device[handle] = self.current_device
            return _Ok, handle

    def cudaStreamDestroy(self, stream):
        with self._lock:
            queue = self.streams.pop(int(stream), None)
            if queue is None:
                return self._result(cudaError_t.cudaErrorInvalidResourceHandle)
            if queue:
                # CUDA lets the work finish; whoever owns the TensorRT context or buffers it uses must wait first.
                self.destroyed_with_work.append(int(stream))
            self.stream_device.pop(int(stream), None)
            self.captures.pop(int(stream), None)
            return (_Ok,)

    def enqueue(self, stream, operation, name: str):
        """Queues ``operation`` on ``stream`` (or into its capture); the simulated TensorRT queues its kernels here."""
        stream = int(stream)
        with self._lock:
            if stream not in self.streams:
                raise SimulationError(f"{name} on stream {stream:#x}, which does not exist (destroyed, or the legacy default stream)")
            if self.stream_device[stream] != self.current_device:
                return self._result(cudaError_t.cudaErrorInvalidResourceHandle)
            capture = self.captures.get(stream)
            (capture.operations if capture is not None else self.streams[stream]).append(operation)
            self.calls.append(name)
            return (_Ok,)

    def _run_until(self, stream: int, done) -> None:
        """Runs ``stream``'s queued work, one operation at a time outside the lock, until ``done()`` or empty."""
        while not done():
            with self._lock:
                queue = self.streams.get(stream)
                if not queue:
                    return
                operation = queue.pop(0)
            operation()

    def cudaStreamSynchronize(self, stream):
        stream = int(stream)
        with self._lock:
            if stream in self.captures:
                self.captures[stream].invalidated = "cudaStreamSynchronize of the capturing stream"
                return self._result(cudaError_t.cudaErrorStreamCaptureUnsupported)
            if stream == 0 and self._prohibited_by_capture("cudaStreamSynchronize(legacy stream)"):
                return self._result(cudaError_t.cudaErrorStreamCaptureImplicit)
            if stream not in self.streams:
                return self._result(cudaError_t.cudaErrorInvalidResourceHandle)
        self._run_until(stream, lambda: False)
        self.calls.append("synchronize")
        return (_Ok,)

    def cudaEventCreateWithFlags(self, flags):
        with self._lock:
            handle = _Handle(next(self._ids))
            self.events[handle] = None
            self.event_device[handle] = self.current_device
            return _Ok, handle

    def cudaEventDestroy(self, event):
        with self._lock:
            self._event_records.pop(int(event), None)
            self.event_device.pop(int(event), None)
            if self.events.pop(int(event), 0) == 0:
                return self._result(cudaError_t.cudaErrorInvalidResourceHandle)
            return (_Ok,)

    def cudaEventRecord(self, event, stream):
        event = int(event)
        with self._lock:
            if event not in self.events:
                return self._result(cudaError_t.cudaErrorInvalidResourceHandle)
            # An event reflects its latest record only: an older, still queued record must not complete it.
            generation = next(self._generations)
            self.events[event] = None
            self._event_records[event] = (int(stream), generation, int(stream) in self.captures)

        def complete():
            with self._lock:
                self.clock += 0.01  # simulated milliseconds
                if self._event_records.get(event, (None, None, None))[1] == generation:
                    self.events[event] = self.clock

        return self.enqueue(stream, complete, "eventRecord")

    def cudaEventSynchronize(self, event):
        """Runs the event's stream up to its latest record; a never-recorded event returns at once (as CUDA)."""
        event = int(event)
        with self._lock:
            if event not in self.events:
                return self._result(cudaError_t.cudaErrorInvalidResourceHandle)
            record = self._event_records.get(event)
            if record is not None and record[2]:
                return self._result(cudaError_t.cudaErrorCapturedEvent)
        if record is not None:
            self._run_until(record[0], lambda: self.events.get(event) is not None)
        self.calls.append("eventSynchronize")
        return (_Ok,)

    def cudaEventElapsedTime(self, start, end):
        with self._lock:
            records = [self._event_records.get(int(e)) for e in (start, end)]
            if any(r is None for r in records):
                return self._result(cudaError_t.cudaErrorInvalidResourceHandle, 0.0)  # never recorded
            if any(r[2] for r in records):
                return self._result(cudaError_t.cudaErrorCapturedEvent, 0.0)
            a, b = self.events.get(int(start)), self.events.get(int(end))
            if a is None or b is None:
                return self._result(cudaError_t.cudaErrorNotReady, 0.0)  # read before the event was waited for
            return _Ok, b - a

    def cudaStreamBeginCapture(self, stream, mode):
        stream = int(stream)
        with self._lock:
            if stream == 0:
                return self._result(cudaError_t.cudaErrorStreamCaptureUnsupported)  # the legacy default stream
            if stream not in self.streams:
                return self._result(cudaError_t.cudaErrorInvalidResourceHandle)
            if stream in self.captures:
                return self._result(cudaError_t.cudaErrorIllegalState)
            self.captures[stream] = _Capture(threading.get_ident(), int(mode), [])
            return (_Ok,)

    def cudaStreamEndCapture(self, stream):
        with self._lock:
            capture = self.captures.pop(int(stream), None)
            if capture is None:
                return self._result(cudaError_t.cudaErrorIllegalState, None)
            if capture.invalidated:
                return self._result(cudaError_t.cudaErrorStreamCaptureInvalidated, None)
            handle = _Handle(next(self._ids))
            self.graphs[handle] = capture.operations
            return _Ok, handle

    def cudaGraphInstantiate(self, graph, flags):
        with self._lock:
            if int(graph) not in self.graphs:
                return self._result(cudaError_t.cudaErrorInvalidValue, None)
            handle = _Handle(next(self._ids))
            self.graph_execs[handle] = list(self.graphs[int(graph)])
            return _Ok, handle

    def cudaGraphLaunch(self, graph_exec, stream):
        with self._lock:
            operations = self.graph_execs.get(int(graph_exec))
            if operations is None:
                return self._result(cudaError_t.cudaErrorInvalidResourceHandle)
            for operation in operations:
                result = self.enqueue(stream, operation, "graphNode")
                if result[0] != _Ok:
                    return result
            return (_Ok,)

    def cudaGraphExecDestroy(self, graph_exec):
        with self._lock:
            if self.graph_execs.pop(int(graph_exec), None) is None:
                return self._result(cudaError_t.cudaErrorInvalidValue)
            return (_Ok,)

    def cudaGraphDestroy(self, graph):
        with self._lock:
            if self.graphs.pop(int(graph), None) is None:
                return self._result(cudaError_t.cudaErrorInvalidValue)
            return (_Ok,)

    @property
    def live_allocations(self) -> int:
        """Device and pinned allocations not freed yet (0 after every owner has closed)."""
        return len(self.memory)

    @property
    def live_graphs(self) -> int:
        """Graphs and instantiated graphs not destroyed yet."""
        return len(self.graphs) + len(self.graph_execs)


# ----------------------------------------------------------------------------------------------
# TensorRT (the module lives in trtpipe.runtime.simulated_tensorrt; these are its entry points)
# ----------------------------------------------------------------------------------------------


def default_version(flavor: str) -> str:
    """The version a simulated ``flavor`` stands for unless told otherwise (TensorRT 10.13, TensorRT-RTX 1.7)."""
    return SIMULATED_VERSIONS["tensorrt_rtx" if flavor == "tensorrt_rtx" else "tensorrt-10"]


def engine_header(profile: dict, *, flavor: str, version: str, target: dict, capturable: bool = True) -> bytes:
    """The simulated engine's header: what a real plan file binds it to (flavour, version, GPU or AOT targets)."""
    return json.dumps({
        "flavor": flavor, "version": version, "target": target, "capturable": capturable,
        "profiles": [{name: [list(s) for s in shapes] for name, shapes in profile.items()}],
    }).encode()


def write_simulated_engine(
    onnx_path: Path,
    engine_path: Path,
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]],
    *,
    spec: PreprocessSpec | None = None,
    flavor: str = "tensorrt",
    version: str | None = None,
    target: dict | None = None,
    sidecar: EngineSidecar | None = None,
    capturable: bool = True,
) -> Path:
    """Writes an engine the simulated TensorRT can deserialize, and its sidecar.

    Args:
        onnx_path: the ONNX the simulated engine runs (its bytes are embedded).
        engine_path: where to write it; the sidecar goes beside it.
        profile: input name -> (min, opt, max) shapes of the one optimization profile.
        spec: the preprocess spec recorded in the sidecar. Defaults to none.
        flavor, version, target: what built it. Defaults to TensorRT 10.13 for the simulated GPU, or TensorRT-RTX
            1.7 for its default targets.
        sidecar: a real engine's sidecar to copy everything else from (``--simulate``); ``spec`` etc. are then ignored.
        capturable: False makes ``execute_async_v3`` fail inside a CUDA graph capture (as an engine with
            uncapturable work, e.g. a plugin's, does on a GPU). Defaults to True.

    Raises:
        SimulationError: an input or output of a type TensorRT has no DataType for (float64, ...).
    """
    from trtpipe.runtime.simulated_tensorrt import onnx_io

    if sidecar is not None:
        flavor, version, target = sidecar.trt_flavor, sidecar.trt_version, sidecar.target
    version = version or default_version(flavor)
    if target is None:
        target = ({"kind": "aot", "compute_capabilities": []} if flavor == "tensorrt_rtx" else
                  {"kind": "gpu", "gpu_name": SIMULATED_GPU[0], "compute_capability": f"{SIMULATED_GPU[1]}.{SIMULATED_GPU[2]}"})
    onnx_bytes = Path(onnx_path).read_bytes()
    io = onnx_io(onnx_bytes, str(onnx_path))  # refuses types TensorRT has no DataType for, as its parser does
    header = engine_header(profile, flavor=flavor, version=version, target=target, capturable=capturable)
    engine_path.write_bytes(MAGIC + header + b"\n" + onnx_bytes)
    identity = {"engine_file": engine_path.name, "engine_sha256": sha256_file(engine_path), "engine_bytes": engine_path.stat().st_size}
    if sidecar is not None:
        dataclasses.replace(sidecar, **identity).save(sidecar_path_for(engine_path))
        return engine_path

    def info(name):
        _, shape, dtype = io[name]
        return TensorInfo(name, shape, _numpy_name(dtype))

    EngineSidecar(
        **identity,
        onnx_path=str(onnx_path),
        onnx_sha256=sha256_file(onnx_path),
        precision="fp32",
        precision_realised="fp32",
        profiles=({name: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])} for name, s in profile.items()},),
        inputs=tuple(info(n) for n, (mode, _, _) in io.items() if mode == "input"),
        outputs=tuple(info(n) for n, (mode, _, _) in io.items() if mode == "output"),
        trt_flavor=flavor,
        trt_version=version,
        target=target,
        build_config={},
        build_seconds=0.0,
        built_at="2025-01-01T00:00:00Z",
        trtpipe_version="0.1.0",
        weights=spec.weights if spec else "unknown",
        preprocess=spec.to_dict() if spec else None,
    ).save(sidecar_path_for(engine_path))
    return engine_path


def _numpy_name(trt_dtype: str) -> str:
    from trtpipe.runtime.simulated_tensorrt import NUMPY_NAMES

    return NUMPY_NAMES.get(trt_dtype, trt_dtype.lower())


def simulated_trt(cuda: SimulatedCuda, version: str | None = None, flavor: str = "tensorrt"):
    """A module standing in for ``tensorrt`` (or ``tensorrt_rtx``) ``version``: exactly its recorded API."""
    from trtpipe.runtime.simulated_tensorrt import make_module

    return make_module(cuda, flavor, version or default_version(flavor))


def simulated_flavor(cuda: SimulatedCuda, name: str = "tensorrt", version: str | None = None) -> Flavor:
    """A Flavor whose module is the simulated TensorRT; pass it as ``TensorRTEngine(..., flavor=...)``."""
    version = version or default_version(name)
    return Flavor(name, version, simulated_trt(cuda, version, name))


# ----------------------------------------------------------------------------------------------
# A real engine file, simulated (trtpipe bench ENGINE --simulate)
# ----------------------------------------------------------------------------------------------
class SimulatedEngineFile:
    """A real engine's ONNX (from its sidecar) as a simulated engine, with the CUDA simulation injected.

    The simulated GPU has the compute capability the engine was built for (so the sidecar checks pass) and a
    name that says it is simulated. Use as a context manager: inside, ``TensorRTEngine(file.path,
    flavor=file.flavor)`` runs on the simulation; on exit the simulation is removed and the files deleted.

    Args:
        engine_path: the real ``.engine`` file; its sidecar and ONNX must be readable.
    """

    def __init__(self, engine_path: str | Path):
        from trtpipe.runtime.compat import load_sidecar
        from trtpipe.runtime.loader import onnx_for_engine

        self.source = Path(engine_path)
        self.sidecar = load_sidecar(self.source)
        self.onnx_path = onnx_for_engine(self.source)
        major, minor = _target_capability(self.sidecar.target or {})
        self.cuda = SimulatedCuda(f"NVIDIA Simulated GPU (SM{major}{minor})", major, minor)
        self.flavor = simulated_flavor(self.cuda, self.sidecar.trt_flavor, self.sidecar.trt_version)
        self._stack = contextlib.ExitStack()
        self.path: Path | None = None

    def __enter__(self) -> "SimulatedEngineFile":
        from trtpipe import cuda

        workdir = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="trtpipe-simulated-")))
        profile = {name: tuple(tuple(shapes[k]) for k in ("min", "opt", "max"))
                   for name, shapes in (self.sidecar.profiles[0] if self.sidecar.profiles else {}).items()}
        self.path = write_simulated_engine(self.onnx_path, workdir / self.source.name, profile, sidecar=self.sidecar)
        self._stack.enter_context(cuda.using_runtime(self.cuda))
        return self

    def close(self) -> None:
        self._stack.close()

    def __exit__(self, *exc_info) -> None:
        self.close()


def _target_capability(target: dict) -> tuple[int, int]:
    """(major, minor) of the GPU an engine was built for: its compute capability, or its first AOT target."""
    if target.get("kind") == "aot" and target.get("compute_capabilities"):
        digits = str(target["compute_capabilities"][0]).upper().removeprefix("SM")
        return int(digits[:-1]), int(digits[-1])
    text = str(target.get("compute_capability") or f"{SIMULATED_GPU[1]}.{SIMULATED_GPU[2]}")
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


# ----------------------------------------------------------------------------------------------
# The tiny model the simulation is tested with (onnx is imported when one is written)
# ----------------------------------------------------------------------------------------------


def make_tiny_classifier(path: Path, classes: int = 5, size: int = 8, batch: int | str = "N", seed: int = 0) -> Path:
    """(batch, 3, size, size) -> GlobalAveragePool -> Flatten -> Gemm -> (batch, classes) logits, opset 17."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.normal(size=(classes, 3)).astype(np.float32), "weight")
    bias = numpy_helper.from_array(rng.normal(size=(classes,)).astype(np.float32), "bias")
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"], name="pool"),
            helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
            helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"], transB=1, name="fc"),
        ],
        "tiny_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tiny_spec(size: int = 8, **changes) -> PreprocessSpec:
    """The preprocess spec of :func:`make_tiny_classifier` (``size`` x ``size`` RGB)."""
    return PreprocessSpec(model="tiny", height=size, width=size, **changes)

"""A strict CPU simulation of the documented TensorRT (v3 API) + CUDA runtime contract. Not a GPU, not a timer.

What it is for:

- **tests**: the TensorRT runtime and the bench run against it on machines without a GPU;
- **``trtpipe bench ENGINE --simulate``**: runs an engine's ONNX (from its sidecar) through the simulation,
  which measures trtpipe's *host-side* overhead per call. Its device times are a fake clock and say
  nothing about any GPU; every result it produces is labelled ``<flavour>-simulated`` (``tensorrt-simulated``).

What "strict" means: on a GPU an unset tensor address, an unset dynamic input shape, a copy of the wrong
dtype or size, or reading pinned output before the stream (or the event after the copy) is synchronized
corrupt results silently. Here each of them raises :class:`SimulationError`, or, for the early read,
leaves NaN poison in the output. The computation itself is real: the ONNX runs in ONNX Runtime.

- :class:`SimulatedCuda` stands in for ``cuda.bindings.runtime`` (inject with ``trtpipe.cuda.using_runtime``):
  memory is real host memory; async work is queued per stream and runs at ``cudaStreamSynchronize``
  (or, up to the event, at ``cudaEventSynchronize``); events complete on a simulated clock.
- :func:`simulated_trt` returns a module standing in for ``tensorrt``: Runtime, engine, execution context,
  ``IProfiler`` and the engine inspector. Its engines are files written by :func:`write_simulated_engine`
  (magic + profile + ONNX bytes) with a sidecar like the builder's.
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
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from trtpipe.flavors import Flavor
from trtpipe.io import sha256_file
from trtpipe.spec import EngineSidecar, PreprocessSpec, TensorInfo, sidecar_path_for

MAGIC = b"TRTPIPE-SIMULATED-ENGINE\n"

#: The GPU the simulation reports unless told otherwise.
SIMULATED_GPU = ("NVIDIA Simulated RTX 4090", 8, 9)

#: ONNX Runtime type strings -> numpy dtype names, for the tensor dtypes the simulation supports.
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


class SimulationError(AssertionError):
    """The code under test broke the TensorRT/CUDA contract (on a GPU: silent corruption or a crash)."""


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorInvalidResourceHandle = 400
    cudaErrorNotReady = 600
    cudaErrorIllegalAddress = 700


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStreamCaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1


class _Handle(int):
    """Opaque handles are int-convertible in cuda-python; these are plain ints with a type name."""


class SimulatedCuda:
    """Stands in for ``cuda.bindings.runtime``: same call shapes, ``(error, values...)`` results.

    Args:
        gpu_name, major, minor: the device it reports. Defaults to an RTX 4090 (compute capability 8.9).
    """

    SIMULATED = True
    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind
    cudaStreamCaptureMode = cudaStreamCaptureMode
    cudaStreamNonBlocking = 1
    cudaEventDefault = 0

    def __init__(self, gpu_name: str = SIMULATED_GPU[0], major: int = SIMULATED_GPU[1], minor: int = SIMULATED_GPU[2]):
        self.props = SimpleNamespace(name=gpu_name.encode(), major=major, minor=minor)
        self._ids = itertools.count(0x1000)
        self.memory: dict[int, tuple[ctypes.Array, str]] = {}  # ptr -> (buffer, "device" | "host")
        self.streams: dict[int, list] = {}  # handle -> queued operations
        self.capturing: dict[int, list] = {}  # handle -> operations captured into a graph
        self.graphs: dict[int, list] = {}
        self.events: dict[int, float | None] = {}  # handle -> simulated time when it completed (None: pending)
        self._event_records: dict[int, tuple[int, int]] = {}  # handle -> (stream, record generation)
        self._generations = itertools.count(1)
        self.last_write: dict[int, int] = {}  # device ptr -> bytes of the last H2D copy into it
        self.clock = 0.0
        self.calls: list[str] = []

    # -- errors and devices --------------------------------------------------------------------

    def cudaGetErrorString(self, error):
        return cudaError_t.cudaSuccess, f"simulated {cudaError_t(error).name}".encode()

    def cudaGetDeviceCount(self):
        return cudaError_t.cudaSuccess, 1

    def cudaSetDevice(self, index):
        return cudaError_t.cudaSuccess if index == 0 else cudaError_t.cudaErrorInvalidValue

    def cudaGetDeviceProperties(self, index):
        if index != 0:
            return cudaError_t.cudaErrorInvalidValue, None
        return cudaError_t.cudaSuccess, self.props

    # -- memory --------------------------------------------------------------------------------

    def _alloc(self, nbytes: int, kind: str):
        buffer = (ctypes.c_byte * nbytes)()
        ptr = ctypes.addressof(buffer)
        self.memory[ptr] = (buffer, kind)
        return cudaError_t.cudaSuccess, ptr

    def cudaMalloc(self, nbytes):
        return self._alloc(nbytes, "device")

    def cudaMallocHost(self, nbytes):
        return self._alloc(nbytes, "host")

    def _free(self, ptr, kind):
        entry = self.memory.get(int(ptr))
        if entry is None or entry[1] != kind:
            return cudaError_t.cudaErrorInvalidValue
        del self.memory[int(ptr)]
        return cudaError_t.cudaSuccess

    def cudaFree(self, ptr):
        return self._free(ptr, "device")

    def cudaFreeHost(self, ptr):
        return self._free(ptr, "host")

    def region(self, ptr: int, nbytes: int, kind: str) -> memoryview:
        """The bytes at ``ptr``; raises SimulationError outside an allocation of ``kind``."""
        for start, (buffer, buffer_kind) in self.memory.items():
            if start <= ptr < start + len(buffer):
                if buffer_kind != kind:
                    raise SimulationError(f"pointer {ptr:#x} is {buffer_kind} memory, expected {kind}")
                if ptr + nbytes > start + len(buffer):
                    raise SimulationError(f"{nbytes} bytes at {ptr:#x} run past the end of a {len(buffer)}-byte allocation")
                return memoryview(buffer).cast("B")[ptr - start : ptr - start + nbytes]
        raise SimulationError(f"pointer {ptr:#x} is not allocated {kind} memory (freed, or never allocated)")

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        dst, src, nbytes = int(dst), int(src), int(nbytes)
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            source, target = self.region(src, nbytes, "host"), self.region(dst, nbytes, "device")
        else:
            source, target = self.region(src, nbytes, "device"), self.region(dst, nbytes, "host")
            # Until the copy has run, the host sees garbage: NaN for floats (0xFF bytes).
            target[:] = b"\xff" * nbytes

        def copy():
            target[:] = source
            if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
                self.last_write[dst] = nbytes

        return self.enqueue(stream, copy, f"memcpy{'HtoD' if kind == 1 else 'DtoH'}")

    # -- streams, events, graphs ---------------------------------------------------------------

    def cudaStreamCreateWithFlags(self, flags):
        handle = _Handle(next(self._ids))
        self.streams[handle] = []
        return cudaError_t.cudaSuccess, handle

    def cudaStreamDestroy(self, stream):
        if self.streams.pop(int(stream), None) is None:
            return cudaError_t.cudaErrorInvalidResourceHandle
        return cudaError_t.cudaSuccess

    def enqueue(self, stream, operation, name: str):
        stream = int(stream)
        if stream not in self.streams:
            raise SimulationError(f"{name} on stream {stream:#x}, which does not exist (destroyed?)")
        target = self.capturing.get(stream, self.streams[stream])
        target.append(operation)
        self.calls.append(name)
        return cudaError_t.cudaSuccess

    def cudaStreamSynchronize(self, stream):
        queue = self.streams.get(int(stream))
        if queue is None:
            return cudaError_t.cudaErrorInvalidResourceHandle
        while queue:
            queue.pop(0)()
        self.calls.append("synchronize")
        return cudaError_t.cudaSuccess

    def cudaEventCreateWithFlags(self, flags):
        handle = _Handle(next(self._ids))
        self.events[handle] = None
        return cudaError_t.cudaSuccess, handle

    def cudaEventDestroy(self, event):
        self._event_records.pop(int(event), None)
        return cudaError_t.cudaSuccess if self.events.pop(int(event), 0) != 0 else cudaError_t.cudaErrorInvalidResourceHandle

    def cudaEventRecord(self, event, stream):
        event = int(event)
        if event not in self.events:
            return cudaError_t.cudaErrorInvalidResourceHandle
        # An event reflects its latest record only: an older, still queued record must not complete it.
        generation = next(self._generations)
        self.events[event] = None
        self._event_records[event] = (int(stream), generation)

        def complete():
            self.clock += 0.01  # simulated milliseconds
            if self._event_records.get(event, (None, None))[1] == generation:
                self.events[event] = self.clock

        return self.enqueue(stream, complete, "eventRecord")

    def cudaEventSynchronize(self, event):
        """Runs the event's stream up to its latest record; a never-recorded event returns at once (as CUDA)."""
        event = int(event)
        if event not in self.events:
            return cudaError_t.cudaErrorInvalidResourceHandle
        record = self._event_records.get(event)
        if record is not None:
            queue = self.streams.get(record[0])
            while self.events[event] is None and queue:
                queue.pop(0)()
        self.calls.append("eventSynchronize")
        return cudaError_t.cudaSuccess

    def cudaEventElapsedTime(self, start, end):
        a, b = self.events.get(int(start)), self.events.get(int(end))
        if a is None or b is None:
            return cudaError_t.cudaErrorNotReady, 0.0  # read before the event was waited for
        return cudaError_t.cudaSuccess, b - a

    def cudaStreamBeginCapture(self, stream, mode):
        self.capturing[int(stream)] = []
        return cudaError_t.cudaSuccess

    def cudaStreamEndCapture(self, stream):
        operations = self.capturing.pop(int(stream))
        handle = _Handle(next(self._ids))
        self.graphs[handle] = operations
        return cudaError_t.cudaSuccess, handle

    def cudaGraphInstantiate(self, graph, flags):
        handle = _Handle(next(self._ids))
        self.graphs[handle] = self.graphs[int(graph)]
        return cudaError_t.cudaSuccess, handle

    def cudaGraphLaunch(self, graph_exec, stream):
        for operation in self.graphs[int(graph_exec)]:
            self.enqueue(stream, operation, "graphNode")
        return cudaError_t.cudaSuccess

    def cudaGraphExecDestroy(self, graph_exec):
        self.graphs.pop(int(graph_exec), None)
        return cudaError_t.cudaSuccess

    cudaGraphDestroy = cudaGraphExecDestroy

    @property
    def live_allocations(self) -> int:
        """Device and pinned allocations not freed yet (0 after every owner has closed)."""
        return len(self.memory)


# ----------------------------------------------------------------------------------------------
# TensorRT
# ----------------------------------------------------------------------------------------------


def write_simulated_engine(
    onnx_path: Path,
    engine_path: Path,
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]],
    *,
    spec: PreprocessSpec | None = None,
    flavor: str = "tensorrt",
    version: str = "10.9.0.34",
    target: dict | None = None,
    sidecar: EngineSidecar | None = None,
) -> Path:
    """Writes an engine the simulated TensorRT can deserialize, and its sidecar.

    Args:
        onnx_path: the ONNX the simulated engine runs (its bytes are embedded).
        engine_path: where to write it; the sidecar goes beside it.
        profile: input name -> (min, opt, max) shapes of the one optimization profile.
        spec: the preprocess spec recorded in the sidecar. Defaults to none.
        flavor, version, target: what the sidecar says built it. Defaults to TensorRT 10.9 for the simulated GPU.
        sidecar: a real engine's sidecar to copy everything else from (``--simulate``); ``spec`` etc. are then ignored.
    """
    header = json.dumps({name: [list(s) for s in shapes] for name, shapes in profile.items()}).encode()
    engine_path.write_bytes(MAGIC + header + b"\n" + Path(onnx_path).read_bytes())
    identity = {"engine_file": engine_path.name, "engine_sha256": sha256_file(engine_path), "engine_bytes": engine_path.stat().st_size}
    if sidecar is not None:
        dataclasses.replace(sidecar, **identity).save(sidecar_path_for(engine_path))
        return engine_path
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def info(arg):
        return TensorInfo(arg.name, tuple(d if isinstance(d, int) else -1 for d in arg.shape), _ORT_DTYPES.get(arg.type, "float32"))

    EngineSidecar(
        **identity,
        onnx_path=str(onnx_path),
        onnx_sha256=sha256_file(onnx_path),
        precision="fp32",
        precision_realised="fp32",
        profiles=({name: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])} for name, s in profile.items()},),
        inputs=tuple(info(a) for a in session.get_inputs()),
        outputs=tuple(info(a) for a in session.get_outputs()),
        trt_flavor=flavor,
        trt_version=version,
        target=target or {"kind": "gpu", "gpu_name": SIMULATED_GPU[0], "compute_capability": f"{SIMULATED_GPU[1]}.{SIMULATED_GPU[2]}"},
        build_config={},
        build_seconds=0.0,
        built_at="2025-01-01T00:00:00Z",
        trtpipe_version="0.1.0",
        weights=spec.weights if spec else "unknown",
        preprocess=spec.to_dict() if spec else None,
    ).save(sidecar_path_for(engine_path))
    return engine_path


def simulated_trt(cuda: SimulatedCuda, version: str = "10.9.0.34") -> types.ModuleType:
    """A module with the parts of the ``tensorrt`` API the runtime uses, strict about their contract."""
    trt = types.ModuleType("tensorrt_simulated")
    trt.SIMULATED = True
    trt.__version__ = version

    class Logger:
        WARNING = 2

        def __init__(self, severity=2):
            self.severity = severity

    class TensorIOMode(enum.Enum):
        INPUT = 1
        OUTPUT = 2

    class DataType(enum.Enum):
        FLOAT = "float32"
        HALF = "float16"
        INT8 = "int8"
        INT32 = "int32"
        INT64 = "int64"
        UINT8 = "uint8"
        BOOL = "bool"

    class LayerInformationFormat(enum.Enum):
        ONELINE = 0
        JSON = 1

    class IProfiler:
        """Subclass it and override ``report_layer_time(layer_name, ms)``, as with TensorRT."""

        def __init__(self) -> None:
            pass

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            raise SimulationError("an IProfiler subclass must override report_layer_time")

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes):
            if not data.startswith(MAGIC):
                return None  # as TensorRT: an error in the log, then None
            try:
                header, onnx = data[len(MAGIC) :].split(b"\n", 1)
                profile = {k: tuple(tuple(s) for s in v) for k, v in json.loads(header).items()}
                return CudaEngine(onnx, profile)
            except Exception:  # noqa: BLE001 - truncated or corrupt: TensorRT returns None
                return None

    class CudaEngine:
        def __init__(self, onnx: bytes, profile: dict):
            import onnxruntime as ort

            self.onnx = onnx
            self.session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
            self.profile = profile
            shape = lambda a: tuple(d if isinstance(d, int) else -1 for d in a.shape)  # noqa: E731
            dtype = lambda a: DataType(_ORT_DTYPES.get(a.type, "float32"))  # noqa: E731
            self.io = [(a.name, TensorIOMode.INPUT, shape(a), dtype(a)) for a in self.session.get_inputs()]
            self.io += [(a.name, TensorIOMode.OUTPUT, shape(a), dtype(a)) for a in self.session.get_outputs()]
            self.num_io_tensors = len(self.io)
            self.num_optimization_profiles = 1
            self._output_shapes: dict[tuple, dict[str, tuple]] = {}
            self._layers: list[str] | None = None

        def _find(self, name):
            for entry in self.io:
                if entry[0] == name:
                    return entry
            raise SimulationError(f"no tensor named {name!r}")

        def get_tensor_name(self, index):
            return self.io[index][0]

        def get_tensor_mode(self, name):
            return self._find(name)[1]

        def get_tensor_dtype(self, name):
            return self._find(name)[3]

        def get_tensor_shape(self, name):
            return self._find(name)[2]

        def get_tensor_profile_shape(self, name, profile_index):
            if profile_index != 0 or name not in self.profile:
                raise SimulationError(f"no profile shapes for {name!r} in profile {profile_index}")
            return self.profile[name]

        def create_execution_context(self):
            return ExecutionContext(self)

        def create_engine_inspector(self):
            return EngineInspector(self)

        def layers(self) -> list[str]:
            """The ONNX node names, standing in for TensorRT's layers (onnx is loaded on first use)."""
            if self._layers is None:
                import onnx

                graph = onnx.load_from_string(self.onnx).graph
                self._layers = [node.name or f"{node.op_type}_{i}" for i, node in enumerate(graph.node)]
            return self._layers

        def output_shapes(self, input_shapes: dict[str, tuple]) -> dict[str, tuple]:
            key = tuple(sorted(input_shapes.items()))
            if key not in self._output_shapes:
                feeds = {n: np.zeros(s, np.dtype(self._find(n)[3].value)) for n, s in input_shapes.items()}
                names = [n for n, mode, _, _ in self.io if mode is TensorIOMode.OUTPUT]
                self._output_shapes[key] = {n: o.shape for n, o in zip(names, self.session.run(names, feeds))}
            return self._output_shapes[key]

    class EngineInspector:
        def __init__(self, engine: CudaEngine):
            self.engine = engine
            self.execution_context = None

        def get_engine_information(self, format):
            layers = self.engine.layers()
            if format is LayerInformationFormat.ONELINE:
                return "\n".join(layers)
            bindings = [name for name, *_ in self.engine.io]
            return json.dumps({"Layers": [{"Name": name, "LayerType": "Simulated"} for name in layers], "Bindings": bindings})

        def get_layer_information(self, index, format):
            return json.dumps({"Name": self.engine.layers()[index], "LayerType": "Simulated"})

    class ExecutionContext:
        def __init__(self, engine: CudaEngine):
            self.engine = engine
            self.shapes: dict[str, tuple] = {}
            self.addresses: dict[str, int] = {}
            self.launches = 0
            self.profiler = None

        def set_input_shape(self, name, shape):
            _, mode, static, _ = self.engine._find(name)
            shape = tuple(int(d) for d in shape)
            if mode is not TensorIOMode.INPUT or len(shape) != len(static):
                return False
            low, _, high = self.engine.profile.get(name, (static, static, static))
            if any(not lo <= d <= hi for lo, d, hi in zip(low, shape, high)):
                return False
            self.shapes[name] = shape
            return True

        def _input_shapes(self) -> dict[str, tuple]:
            shapes = {}
            for name, mode, static, _ in self.engine.io:
                if mode is TensorIOMode.INPUT:
                    shapes[name] = self.shapes.get(name, static)
            return shapes

        def get_tensor_shape(self, name):
            _, mode, static, _ = self.engine._find(name)
            inputs = self._input_shapes()
            if mode is TensorIOMode.INPUT:
                return inputs[name]
            if any(-1 in s for s in inputs.values()):
                return static  # unknown until every dynamic input shape is set
            return self.engine.output_shapes(inputs)[name]

        def set_tensor_address(self, name, ptr):
            self.engine._find(name)
            self.addresses[name] = int(ptr)
            return True

        def execute_async_v3(self, stream_handle):
            inputs = self._input_shapes()
            for name, shape in inputs.items():
                if -1 in shape:
                    raise SimulationError(f"execute_async_v3 with the dynamic shape of input {name!r} unset ({shape}): call set_input_shape")
            for name, *_ in self.engine.io:
                if name not in self.addresses:
                    raise SimulationError(f"execute_async_v3 with no address for tensor {name!r}: call set_tensor_address")
            outputs = self.engine.output_shapes(inputs)
            dtypes = {name: np.dtype(self.engine._find(name)[3].value) for name in {**inputs, **outputs}}
            nbytes = {name: int(np.prod(shape)) * dtypes[name].itemsize for name, shape in {**inputs, **outputs}.items()}
            # Bounds are checked now, as the launch would fault on them.
            views = {n: cuda.region(self.addresses[n], nbytes[n], "device") for n in nbytes}
            profiler = self.profiler
            self.launches += 1

            def run():
                feeds = {}
                for name, shape in inputs.items():
                    written = cuda.last_write.get(self.addresses[name])
                    if written != nbytes[name]:
                        raise SimulationError(
                            f"input {name!r} of shape {shape} needs {nbytes[name]} bytes of {dtypes[name]}, "
                            f"the last copy into it wrote {written}: wrong dtype or shape"
                        )
                    feeds[name] = np.frombuffer(views[name], dtypes[name]).reshape(shape).copy()
                names = list(outputs)
                for name, value in zip(names, self.engine.session.run(names, feeds)):
                    views[name][:] = np.ascontiguousarray(value, dtypes[name]).tobytes()
                if profiler is not None:
                    for layer in self.engine.layers():
                        profiler.report_layer_time(layer, 0.001)  # simulated milliseconds

            cuda.enqueue(stream_handle, run, "execute_async_v3")
            return True

        def is_stream_capturable(self, stream_handle):
            return True

    def nptype(dtype):
        return np.dtype(dtype.value).type

    trt.Logger, trt.Runtime, trt.TensorIOMode, trt.DataType, trt.nptype = Logger, Runtime, TensorIOMode, DataType, nptype
    trt.IProfiler, trt.LayerInformationFormat = IProfiler, LayerInformationFormat
    trt.Builder = object  # so flavour detection would accept it
    return trt


def simulated_flavor(cuda: SimulatedCuda, name: str = "tensorrt", version: str = "10.9.0.34") -> Flavor:
    """A Flavor whose module is the simulated TensorRT; pass it as ``TensorRTEngine(..., flavor=...)``."""
    return Flavor(name, version, simulated_trt(cuda, version))


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

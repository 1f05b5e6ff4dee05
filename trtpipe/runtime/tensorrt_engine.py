"""A TensorRT engine that owns its execution context, CUDA stream, and device/pinned buffers.

Life of one call (TensorRT 10/11/RTX "v3" API):
``set_input_shape`` (when the shape changed) -> copy into pinned memory -> async H2D -> ``execute_async_v3``
(or a captured CUDA graph) -> async D2H -> ``cudaStreamSynchronize`` -> copy the outputs out.
Buffers are allocated once, for the profile's max shape, and every tensor address is set once: the
addresses never change, which is also what makes CUDA graph replay valid.

One context and stream serve all callers; a lock makes ``infer`` safe from several threads (calls on
one engine are serialised; for parallel GPU work open one engine per worker thread).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from trtpipe import cuda
from trtpipe.errors import DependencyError, EngineMismatchError, InputError
from trtpipe.flavors import Flavor, installed_flavors
from trtpipe.runtime.base import ClosedError, Engine, StageTimes, validate_feeds
from trtpipe.runtime.compat import check_flavor, check_gpu, load_sidecar
from trtpipe.spec import EngineSidecar, TensorInfo

log = logging.getLogger("trtpipe.runtime")


def _flavor_for(sidecar: EngineSidecar, engine: str) -> Flavor:
    """The installed flavour that built ``sidecar``'s engine, or an EngineMismatchError naming both sides."""
    flavors = installed_flavors()
    for flavor in flavors:
        if flavor.name == sidecar.trt_flavor:
            return flavor
    if not flavors:
        raise DependencyError(
            f"engine {engine} needs {sidecar.trt_flavor} {sidecar.trt_version}, and no TensorRT is installed",
            "pip install 'trtpipe[trt]' (or 'trtpipe[rtx]' for TensorRT-RTX engines), or run the ONNX with --backend onnxruntime",
        )
    check_flavor(sidecar, flavors[0].name, flavors[0].version, engine)  # raises: the flavour differs
    return flavors[0]


class TensorRTEngine(Engine):
    """Deserializes ``path`` after checking its sidecar against this machine, and runs it.

    Args:
        path: the ``.engine`` file; its ``.engine.json`` sidecar must sit beside it.
        flavor: the TensorRT flavour to use; defaults to the installed one that built the engine
            (tests pass a simulated one).
        device: CUDA device index. Defaults to 0.
        cuda_graph: capture ``execute_async_v3`` in a CUDA graph per input shape and replay it
            (saves launch overhead on small models; shapes must repeat to pay off). Defaults to False.
    """

    def __init__(self, path: str | Path, *, flavor: Flavor | None = None, device: int = 0, cuda_graph: bool = False):
        self.path = Path(path)
        self._closed = False
        self._lock = threading.Lock()
        self._graphs: dict[tuple, cuda.Graph] = {}
        self._owned: list = []  # everything allocated, closed in reverse order
        self.sidecar = load_sidecar(self.path)
        self.flavor = flavor or _flavor_for(self.sidecar, str(self.path))
        simulated = getattr(self.flavor.module, "SIMULATED", False)
        self.backend = self.flavor.name + ("-simulated" if simulated else "")
        self.cuda_graph = cuda_graph
        # Both checks come before deserializing: TensorRT would only log an error and return None.
        check_flavor(self.sidecar, self.flavor.name, self.flavor.version, str(self.path))
        cuda.set_device(device)
        gpu = cuda.device_info(device)
        check_gpu(self.sidecar, gpu.name, gpu.major, gpu.minor, str(self.path))
        self.device = gpu
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # -- setup ---------------------------------------------------------------------------------

    def _load(self) -> None:
        trt = self.flavor.module
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise EngineMismatchError(
                f"{self.flavor.label} could not deserialize {self.path} although its sidecar matches this machine "
                "(see TensorRT's log above): the file is corrupt",
                f"rebuild it: trtpipe build {self.sidecar.onnx_path} --precision {self.sidecar.precision} --force",
            )
        self._stream = self._own(cuda.Stream())
        self._events = [self._own(cuda.Event()) for _ in range(4)]
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineMismatchError(
                f"TensorRT could not create an execution context for {self.path} (out of GPU memory?)",
                "free GPU memory (nvidia-smi) or rebuild with a smaller max batch",
            )
        self._describe_tensors()
        self._allocate()

    def _own(self, resource):
        self._owned.append(resource)
        return resource

    def _describe_tensors(self) -> None:
        trt, engine = self.flavor.module, self._engine
        inputs, outputs, self._limits = [], [], {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            info = TensorInfo(name, tuple(int(d) for d in engine.get_tensor_shape(name)), dtype.name)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                inputs.append(info)
                if -1 in info.shape:
                    low, _, high = engine.get_tensor_profile_shape(name, 0)
                    self._limits[name] = (tuple(int(d) for d in low), tuple(int(d) for d in high))
                else:
                    self._limits[name] = (info.shape, info.shape)
            else:
                outputs.append(info)
        self._inputs, self._outputs = tuple(inputs), tuple(outputs)

    def _allocate(self) -> None:
        """One device + pinned buffer per tensor, for the profile's max shape; addresses set once."""
        context = self._context
        self._device: dict[str, cuda.DeviceBuffer] = {}
        self._host: dict[str, cuda.PinnedBuffer] = {}
        for info in self._inputs:
            max_shape = self._limits[info.name][1]
            context.set_input_shape(info.name, max_shape)
            self._buffers(info.name, max_shape, info.dtype)
        for info in self._outputs:
            max_shape = tuple(int(d) for d in context.get_tensor_shape(info.name))
            if any(d < 0 for d in max_shape):
                raise InputError(
                    f"engine {self.path}: output {info.name!r} has a data-dependent shape {max_shape}",
                    "trtpipe runs engines whose output shapes follow from the input shapes; export the model with "
                    "fixed-size outputs (e.g. NMS outside the network)",
                )
            self._buffers(info.name, max_shape, info.dtype)
        for name, buffer in self._device.items():
            if not context.set_tensor_address(name, buffer.ptr):
                raise EngineMismatchError(f"TensorRT refused the address of tensor {name!r}", "this is a trtpipe bug; please report it")
        self._shapes_set: dict[str, tuple[int, ...]] = {i.name: self._limits[i.name][1] for i in self._inputs}

    def _buffers(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
        host = self._own(cuda.PinnedBuffer(shape, dtype))
        self._host[name] = host
        self._device[name] = self._own(cuda.DeviceBuffer(host.nbytes))

    # -- Engine interface ----------------------------------------------------------------------

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        return self._outputs

    @property
    def max_batch(self) -> int | None:
        return min(high[0] for _, high in self._limits.values()) if self._limits else None

    def infer_timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], StageTimes]:
        with self._lock:
            if self._closed:
                raise ClosedError("TensorRTEngine")
            start = time.perf_counter()
            validate_feeds(feeds, self._inputs, str(self.path), self._limits)
            stream, (ev_start, ev_h2d, ev_compute, ev_d2h) = self._stream, self._events
            shapes_changed = False
            for info in self._inputs:
                array = feeds[info.name]
                if self._shapes_set[info.name] != array.shape:
                    if not self._context.set_input_shape(info.name, array.shape):
                        raise InputError(f"TensorRT rejected shape {array.shape} for input {info.name!r}", "keep shapes within the profile")
                    self._shapes_set[info.name] = array.shape
                    shapes_changed = True
                np.copyto(self._host[info.name].view(array.shape), array)
            ev_start.record(stream)
            for info in self._inputs:
                nbytes = int(np.prod(feeds[info.name].shape, dtype=np.int64)) * np.dtype(info.dtype).itemsize
                cuda.copy_htod_async(self._device[info.name], self._host[info.name], nbytes, stream)
            ev_h2d.record(stream)
            self._execute(shapes_changed)
            ev_compute.record(stream)
            out_shapes = {}
            for info in self._outputs:
                shape = tuple(int(d) for d in self._context.get_tensor_shape(info.name))
                out_shapes[info.name] = shape
                nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(info.dtype).itemsize
                cuda.copy_dtoh_async(self._host[info.name], self._device[info.name], nbytes, stream)
            ev_d2h.record(stream)
            stream.synchronize()  # pinned outputs are only valid from here on
            results = {name: self._host[name].view(shape).copy() for name, shape in out_shapes.items()}
            end = time.perf_counter()
            times = StageTimes(
                h2d=ev_start.elapsed_ms(ev_h2d),
                compute=ev_h2d.elapsed_ms(ev_compute),
                d2h=ev_compute.elapsed_ms(ev_d2h),
                end_to_end=(end - start) * 1e3,
            )
            return results, times

    def _execute(self, shapes_changed: bool) -> None:
        stream = self._stream
        if not self.cuda_graph:
            self._launch()
            return
        key = tuple(self._shapes_set[i.name] for i in self._inputs)
        graph = self._graphs.get(key)
        if graph is None:
            # TensorRT needs one plain launch after a shape change before its work can be captured.
            self._launch()
            stream.synchronize()
            self._graphs[key] = graph = cuda.Graph(stream, self._launch)
        graph.launch(stream)

    def _launch(self) -> None:
        if not self._context.execute_async_v3(self._stream.ptr):
            raise EngineMismatchError(
                f"TensorRT execute_async_v3 failed for {self.path} (see TensorRT's log above)",
                "check the GPU (nvidia-smi) and rebuild the engine on this machine if it persists",
            )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for graph in self._graphs.values():
                graph.close()
            self._graphs.clear()
            # TensorRT objects go before the memory they point at; the context before its engine.
            for attr in ("_context", "_engine", "_runtime"):
                if hasattr(self, attr):
                    setattr(self, attr, None)
            while self._owned:
                self._owned.pop().close()

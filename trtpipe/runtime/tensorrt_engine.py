"""A TensorRT engine that owns its execution context, CUDA stream, and device/pinned buffers.

Life of one call (TensorRT 10/11/RTX "v3" API):
``set_input_shape`` (when the shape changed) -> copy into pinned memory -> async H2D -> ``execute_async_v3``
(or a captured CUDA graph) -> async D2H -> ``cudaStreamSynchronize`` -> copy the outputs out.
Buffers are allocated once, for the profile's max shape, and every tensor address is set once: the
addresses never change, which is also what makes CUDA graph replay valid.

One context and stream serve all callers; a lock makes ``infer`` safe from several threads (calls on
one engine are serialised; for parallel GPU work open one engine per worker thread).

Two more public paths serve measurement (``trtpipe bench``):
- :meth:`TensorRTEngine.enqueue_ahead` queues inferences of fixed inputs without synchronizing, each with
  its own CUDA events (trtexec's throughput mode: the GPU never waits for the host);
- :meth:`TensorRTEngine.profile_layers` runs a separate execution context with an ``IProfiler`` attached
  and returns per-layer times and the engine inspector's layer information.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from trtpipe import cuda
from trtpipe.errors import ConfigError, DependencyError, EngineMismatchError, InputError
from trtpipe.flavors import Flavor, installed_flavors
from trtpipe.runtime.base import ClosedError, Engine, NotReadyError, StageTimes, validate_feeds
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

    device_timed = True  # h2d / compute / d2h come from CUDA events on the engine's stream

    def __init__(self, path: str | Path, *, flavor: Flavor | None = None, device: int = 0, cuda_graph: bool = False):
        self.path = Path(path)
        self._closed = False
        self._lock = threading.Lock()
        self._graphs: dict[tuple, cuda.Graph] = {}
        self._owned: list = []  # everything allocated, closed in reverse order
        self._queues: list[EnqueueAhead] = []  # open enqueue-ahead queues, closed before the engine
        self._staged_by: object | None = None  # the queue whose inputs are on the device (None: the last infer's)
        self.sidecar = load_sidecar(self.path)
        self.flavor = flavor or _flavor_for(self.sidecar, str(self.path))
        self.simulated = bool(getattr(self.flavor.module, "SIMULATED", False))
        self.backend = self.flavor.name + ("-simulated" if self.simulated else "")
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


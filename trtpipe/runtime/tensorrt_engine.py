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
    def max_batch(self) -> int | None:
        return min(high[0] for _, high in self._limits.values()) if self._limits else None

    def infer_timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], StageTimes]:
        with self._lock:
            self._check_open("TensorRTEngine")
            start = time.perf_counter()
            validate_feeds(feeds, self._inputs, str(self.path), self._limits)
            stream, (ev_start, ev_h2d, ev_compute, ev_d2h) = self._stream, self._events
            self._apply_shapes({name: array.shape for name, array in feeds.items()})
            for info in self._inputs:
                array = feeds[info.name]
                np.copyto(self._host[info.name].view(array.shape), array)
            ev_start.record(stream)
            self._queue_inputs(self._host, stream)
            self._staged_by = None
            ev_h2d.record(stream)
            self._execute()
            ev_compute.record(stream)
            out_shapes = self._output_shapes()
            self._queue_outputs(self._host, out_shapes, stream)
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

    # -- measurement paths (bench) -------------------------------------------------------------

    def enqueue_ahead(self, feeds: Mapping[str, np.ndarray], *, transfers: bool = True, depth: int = 2) -> "EnqueueAhead":
        """Opens a queue that launches inferences of ``feeds`` without synchronizing (trtexec's throughput mode).

        Args:
            feeds: the inputs of every queued inference, validated like ``infer``'s and staged once.
            transfers: copy the inputs in and the outputs out with each inference (False: GPU compute only,
                as trtexec's ``--noDataTransfers``; the outputs then stay on the device). Defaults to True.
            depth: in-flight slots allocated up front, each with its own CUDA events and pinned outputs
                (2: double buffering). Keeping more in flight allocates more slots, up to ``MAX_IN_FLIGHT``.

        Returns:
            An :class:`EnqueueAhead` (a context manager): ``enqueue()`` -> handle, ``wait(handle)`` -> stage
            times, ``outputs(handle)`` after the wait, ``close()``.
        """
        with self._lock:
            self._check_open("TensorRTEngine")
            validate_feeds(feeds, self._inputs, str(self.path), self._limits)
            queue = EnqueueAhead(self, feeds, transfers, depth)
            self._queues.append(queue)
            return queue

    def profile_layers(self, feeds: Mapping[str, np.ndarray], *, iterations: int = 50, warmup: int = 1) -> "LayerTimes":
        """Times every layer of ``iterations`` runs of ``feeds`` with TensorRT's ``IProfiler``, plus layer information.

        Profiling makes TensorRT time each layer and synchronize between them, which slows the whole run: it
        uses a separate execution context (the engine's own context keeps its state) and should run after a
        timing run, never during it. The engine lock is held throughout, so no other call interleaves.

        Args:
            feeds: the inputs, validated like ``infer``'s.
            iterations: profiled runs. Defaults to 50.
            warmup: runs before the profiled ones, not recorded. Defaults to 1.
        """
        if iterations < 1 or warmup < 0:
            raise ConfigError(
                f"profile_layers got iterations={iterations}, warmup={warmup}; expected iterations >= 1, warmup >= 0",
                "profile e.g. 50 iterations after 1 warm-up run (the defaults)",
            )
        with self._lock:
            self._check_open("TensorRTEngine")
            validate_feeds(feeds, self._inputs, str(self.path), self._limits)
            trt, stream = self.flavor.module, self._stream
            self._apply_shapes({name: array.shape for name, array in feeds.items()})
            for info in self._inputs:
                np.copyto(self._host[info.name].view(feeds[info.name].shape), feeds[info.name])
            self._queue_inputs(self._host, stream)
            self._staged_by = None
            stream.synchronize()
            profiler = _layer_profiler(trt)
            context = inspector = None
            try:
                context = self._engine.create_execution_context()
                if context is None:
                    raise EngineMismatchError(
                        f"TensorRT could not create a profiling context for {self.path} (out of GPU memory?)",
                        "free GPU memory (nvidia-smi), or profile a smaller batch",
                    )
                for info in self._inputs:
                    context.set_input_shape(info.name, feeds[info.name].shape)
                for name, buffer in self._device.items():
                    context.set_tensor_address(name, buffer.ptr)
                context.profiler = profiler
                for run in range(warmup + iterations):
                    if run == warmup:
                        profiler.times.clear()
                    if not context.execute_async_v3(stream.ptr):
                        raise EngineMismatchError(f"TensorRT execute_async_v3 failed while profiling {self.path}", "see TensorRT's log above")
                    stream.synchronize()
                inspector = self._engine.create_engine_inspector()
                inspector.execution_context = context
                information = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
            finally:
                # The inspector refers to the context, the context to the engine: drop them in that order.
                del inspector, context
            return LayerTimes({name: tuple(times) for name, times in profiler.times.items()}, iterations, information)

    # -- internals shared by the paths above (the engine lock is held) -------------------------

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise ClosedError(what)

    def _apply_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> bool:
        """Sets the input shapes that differ from the context's; True when any changed."""
        changed = False
        for name, shape in shapes.items():
            shape = tuple(shape)
            if self._shapes_set[name] != shape:
                if not self._context.set_input_shape(name, shape):
                    raise InputError(f"TensorRT rejected shape {shape} for input {name!r}", "keep shapes within the profile")
                self._shapes_set[name] = shape
                changed = True
        return changed

    def _output_shapes(self) -> dict[str, tuple[int, ...]]:
        return {info.name: tuple(int(d) for d in self._context.get_tensor_shape(info.name)) for info in self._outputs}

    def _queue_inputs(self, host: Mapping[str, cuda.PinnedBuffer], stream: cuda.Stream) -> None:
        """Queues H2D copies of the current input shapes from ``host`` into the engine's device inputs."""
        for info in self._inputs:
            nbytes = _nbytes(self._shapes_set[info.name], info.dtype)
            cuda.copy_htod_async(self._device[info.name], host[info.name], nbytes, stream)

    def _queue_outputs(self, host: Mapping[str, cuda.PinnedBuffer], shapes: Mapping[str, tuple[int, ...]], stream: cuda.Stream) -> None:
        """Queues D2H copies of the outputs (of ``shapes``) from the engine's device outputs into ``host``."""
        for info in self._outputs:
            cuda.copy_dtoh_async(host[info.name], self._device[info.name], _nbytes(shapes[info.name], info.dtype), stream)

    def _execute(self) -> None:
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
            while self._queues:
                self._queues.pop()._release()
            for graph in self._graphs.values():
                graph.close()
            self._graphs.clear()
            # TensorRT objects go before the memory they point at; the context before its engine.
            for attr in ("_context", "_engine", "_runtime"):
                if hasattr(self, attr):
                    setattr(self, attr, None)
            while self._owned:
                self._owned.pop().close()


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


# ----------------------------------------------------------------------------------------------
# Enqueue-ahead
# ----------------------------------------------------------------------------------------------

#: Most inferences one EnqueueAhead keeps in flight; more means handles are not being waited for.
MAX_IN_FLIGHT = 64


@dataclass(frozen=True)
class InFlight:
    """Handle of one queued inference: which slot carries it, and which use of that slot it is."""

    slot: int
    ticket: int


class _Slot:
    """Four CUDA events (start, after H2D, after compute, after D2H) and, with transfers, pinned outputs."""

    def __init__(self, outputs: Mapping[str, tuple[tuple[int, ...], str]] | None):
        self.events: list[cuda.Event] = []
        self.host: dict[str, cuda.PinnedBuffer] = {}
        self.ticket = 0
        self.state = "free"  # free -> queued -> done -> (reused) queued ...
        try:
            self.events = [cuda.Event() for _ in range(4)]
            for name, (shape, dtype) in (outputs or {}).items():
                self.host[name] = cuda.PinnedBuffer(shape, dtype)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for resource in [*self.events, *self.host.values()]:
            resource.close()
        self.events, self.host = [], {}


class EnqueueAhead:
    """Inferences of fixed inputs queued on a TensorRT engine's stream without synchronizing between them.

    Made by :meth:`TensorRTEngine.enqueue_ahead`. Each in-flight inference has its own slot: four CUDA events
    (so H2D, compute and D2H are measured per inference even while others are queued) and its own pinned
    outputs (so reading one inference's outputs never races the next one's copy). Inputs are staged once in
    the queue's own pinned memory; the engine's context, stream and device buffers are shared, and the
    engine lock is taken per ``enqueue``, so ``infer`` calls from other threads interleave correctly.
    One thread should drive a queue. Closing it (or the engine) waits for its work and frees what it allocated.

    Usage::

        with engine.enqueue_ahead({"input": x}) as queue:
            first, second = queue.enqueue(), queue.enqueue()   # both in flight
            times = queue.wait(first)                          # {"h2d", "compute", "d2h"} in ms (CUDA events)
            logits = queue.outputs(first)["logits"]            # only after wait()
    """

    def __init__(self, engine: TensorRTEngine, feeds: Mapping[str, np.ndarray], transfers: bool, depth: int):
        if depth < 1 or depth > MAX_IN_FLIGHT:
            raise ConfigError(f"enqueue-ahead depth {depth}, expected 1..{MAX_IN_FLIGHT}", "use 2 (double buffering)")
        self.transfers = transfers
        self._engine = engine
        self._closed = False
        self._shapes = {name: tuple(array.shape) for name, array in feeds.items()}
        self._host: dict[str, cuda.PinnedBuffer] = {}
        self._slots: list[_Slot] = []
        self._tickets = 0
        try:
            for info in engine.inputs:
                self._host[info.name] = buffer = cuda.PinnedBuffer(self._shapes[info.name], info.dtype)
                np.copyto(buffer.array, feeds[info.name])
            engine._apply_shapes(self._shapes)
            shapes = engine._output_shapes()
            self._outputs = {info.name: (shapes[info.name], info.dtype) for info in engine.outputs}
            for _ in range(depth):
                self._slots.append(_Slot(self._outputs if transfers else None))
        except BaseException:
            self._release()
            raise

    def enqueue(self) -> InFlight:
        """Queues one inference (H2D, execute, D2H as configured) and returns its handle; does not block on the GPU."""
        engine = self._engine
        with engine._lock:
            if self._closed or engine._closed:
                raise ClosedError("EnqueueAhead")
            index = self._free_slot()
            slot, stream = self._slots[index], engine._stream
            engine._apply_shapes(self._shapes)  # an infer() in between may have set other shapes
            if not self.transfers and engine._staged_by is not self:
                engine._queue_inputs(self._host, stream)  # staged before the slot's events: not timed
                engine._staged_by = self
            slot.events[0].record(stream)
            if self.transfers:
                engine._queue_inputs(self._host, stream)
                engine._staged_by = self
            slot.events[1].record(stream)
            engine._execute()
            slot.events[2].record(stream)
            if self.transfers:
                engine._queue_outputs(slot.host, {name: shape for name, (shape, _) in self._outputs.items()}, stream)
            slot.events[3].record(stream)
            self._tickets += 1
            slot.ticket, slot.state = self._tickets, "queued"
            return InFlight(index, slot.ticket)

    def wait(self, handle: InFlight) -> dict[str, float | None]:
        """Blocks until the inference of ``handle`` has finished (its last event); returns its stage times in ms.

        Returns:
            ``{"h2d", "compute", "d2h"}``; h2d and d2h are None without transfers.
        """
        slot = self._slot_of(handle, "wait for")
        if slot.state != "queued":
            raise NotReadyError(f"inference {handle} was already waited for", "wait for each handle once")
        slot.events[3].synchronize()
        slot.state = "done"
        events = slot.events
        return {
            "h2d": events[0].elapsed_ms(events[1]) if self.transfers else None,
            "compute": events[1].elapsed_ms(events[2]),
            "d2h": events[2].elapsed_ms(events[3]) if self.transfers else None,
        }

    def outputs(self, handle: InFlight) -> dict[str, np.ndarray]:
        """Copies of the outputs of ``handle``'s inference; only after ``wait(handle)`` and before its slot is reused."""
        slot = self._slot_of(handle, "read the outputs of")
        if not self.transfers:
            raise NotReadyError(
                "this enqueue-ahead queue was opened with transfers=False: outputs stay on the device",
                "open it with transfers=True to read outputs",
            )
        if slot.state != "done":
            raise NotReadyError(
                f"outputs of inference {handle} were read before wait(): on a GPU they are not there yet",
                "call queue.wait(handle) first",
            )
        return {name: buffer.array.copy() for name, buffer in slot.host.items()}

    def close(self) -> None:
        """Waits for the queued work and frees the events and pinned buffers; the engine stays open."""
        engine = self._engine
        with engine._lock:
            if engine._closed:
                return  # the engine released this queue when it closed
            if self in engine._queues:
                engine._queues.remove(self)
            self._release()

    def _release(self) -> None:
        """Frees everything (the engine lock is held, or the queue never got past construction)."""
        if self._closed:
            return
        self._closed = True
        engine = self._engine
        if any(slot.state == "queued" for slot in self._slots) or engine._staged_by is self:
            # A queued D2H still writes into our pinned memory; a GPU would write into freed memory.
            engine._stream.synchronize()
        if engine._staged_by is self:
            engine._staged_by = None
        for slot in self._slots:
            slot.close()
        for buffer in self._host.values():
            buffer.close()
        self._slots, self._host = [], {}

    def _free_slot(self) -> int:
        for index, slot in enumerate(self._slots):
            if slot.state != "queued":
                return index
        if len(self._slots) >= MAX_IN_FLIGHT:
            raise NotReadyError(
                f"{MAX_IN_FLIGHT} inferences are in flight and none was waited for",
                "call queue.wait(handle) for each handle enqueue() returned",
            )
        self._slots.append(_Slot(self._outputs if self.transfers else None))
        return len(self._slots) - 1

    def _slot_of(self, handle: InFlight, action: str) -> _Slot:
        if self._closed:
            raise ClosedError("EnqueueAhead")
        slot = self._slots[handle.slot] if 0 <= handle.slot < len(self._slots) else None
        if slot is None or slot.ticket != handle.ticket:
            raise NotReadyError(
                f"cannot {action} inference {handle}: its slot has been reused by a later enqueue()",
                "read each inference's outputs before enqueueing past the queue's depth",
            )
        return slot

    def __enter__(self) -> "EnqueueAhead":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------
# Per-layer profile
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerTimes:
    """What :meth:`TensorRTEngine.profile_layers` measured."""

    times_ms: dict[str, tuple[float, ...]]  # layer name -> ms of each profiled run, in TensorRT's reporting order
    iterations: int  # profiled runs
    engine_information: str  # the inspector's JSON; per-layer detail needs ProfilingVerbosity.DETAILED at build


def _layer_profiler(trt):
    """An ``IProfiler`` that collects ``report_layer_time`` callbacks: layer name -> list of ms."""

    class LayerProfiler(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.times: dict[str, list[float]] = defaultdict(list)

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.times[layer_name].append(float(ms))

    return LayerProfiler()

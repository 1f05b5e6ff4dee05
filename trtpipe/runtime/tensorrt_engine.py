"""A TensorRT engine: one deserialized ``ICudaEngine`` and N execution contexts, each with its own CUDA stream,
device/pinned buffers and CUDA graph (trtexec's ``--infStreams N``).

Life of one call (TensorRT 10/11/RTX "v3" API), on a context that is free:
``set_input_shape`` (when the shape differs from the context's) -> copy into pinned memory -> async H2D ->
``execute_async_v3`` (or the context's CUDA graph) -> async D2H -> ``cudaStreamSynchronize`` -> copy the outputs out.
Buffers are allocated once per context, for the profile's max shape, and every tensor address is set once.

Several contexts (``contexts=N``): the engine (weights) is deserialized once; each context holds its own
activation memory, shapes, stream and buffers, so N threads calling ``infer`` run on the GPU in parallel. A caller
takes a free context (one whose input shapes already match, when there is one) and gives it back when done;
with all N busy it waits. ``infer``/``infer_timed`` are thread-safe.

CUDA graphs (``cuda_graph=True``): a graph captures ``execute_async_v3`` as the context was when it was captured,
so each context keeps one graph, for its current input shapes, and drops it when its shapes change (replaying it
then would run kernels set up for the old shapes: stale results). With several contexts, requests of a shape go
to the context that holds that shape's graph, so alternating batch sizes keep one graph per (context, shape) instead
of capturing again. A capture that fails (work TensorRT cannot capture) is ended, its error cleared and the graph
dropped, and the engine runs without graphs from then on with a warning (what trtexec does). TensorRT-RTX captures
graphs itself (its ``IRuntimeConfig.cuda_graph_strategy``); trtpipe uses that there instead of capturing.

Tensor data types: FP32/FP16/INT8/UINT8/INT32/INT64/BOOL are numpy arrays of that dtype. BF16 and FP8 (E4M3)
inputs and outputs are ``ml_dtypes`` arrays (``ml_dtypes.bfloat16``, ``ml_dtypes.float8_e4m3fn``; feed
``x.astype(ml_dtypes.bfloat16)``, read ``y.astype(np.float32)``): their bytes are TensorRT's layout. INT4/FP4 (two
values per byte) and E8M0 tensors are refused at load with a message naming the tensor. Buffer sizes come from
TensorRT's own ``DataType.itemsize``.

Two more public paths serve measurement (``trtpipe bench``):
- :meth:`TensorRTEngine.enqueue_ahead` queues inferences of fixed inputs without synchronizing, each with
  its own CUDA events (trtexec's throughput mode: the GPU never waits for the host); it runs on context 0;
- :meth:`TensorRTEngine.profile_layers` runs a separate execution context with an ``IProfiler`` attached
  and returns per-layer times and the engine inspector's layer information.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from trtpipe import cuda
from trtpipe.errors import ConfigError, CudaError, DependencyError, EngineMismatchError, InputError
from trtpipe.flavors import Flavor, installed_flavors, make_logger
from trtpipe.runtime.base import ClosedError, Engine, NotReadyError, StageTimes, validate_feeds
from trtpipe.runtime.compat import check_flavor, check_gpu, load_sidecar
from trtpipe.spec import EngineSidecar, TensorInfo

log = logging.getLogger("trtpipe.runtime")

#: TensorRT DataType name -> the numpy / ml_dtypes dtype name of the arrays that feed or read it.
_ARRAY_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "UINT8": "uint8", "INT32": "int32",
                 "INT64": "int64", "BOOL": "bool", "BF16": "bfloat16", "FP8": "float8_e4m3fn"}


def _flavor_for(sidecar: EngineSidecar, engine: str) -> Flavor:
    """The installed flavour that built ``sidecar``'s engine, or an EngineMismatchError naming both sides."""
    flavors = installed_flavors()
    for flavor in flavors:
        if flavor.name == sidecar.trt_flavor:
            return flavor
    if not flavors:
        raise DependencyError(
            f"engine {engine} needs {sidecar.trt_flavor} {sidecar.trt_version}, and no TensorRT is installed",
            "pip install 'trtpipe[trt-cu13]' (driver R580+) or 'trtpipe[trt-cu12]' ('trtpipe[rtx]' for TensorRT-RTX "
            "engines), or run the ONNX with --backend onnxruntime",
        )
    check_flavor(sidecar, flavors[0].name, flavors[0].version, engine)  # raises: the flavour differs
    return flavors[0]


def array_dtype(trt, trt_dtype, tensor: str, engine: str) -> np.dtype:
    """The numpy dtype of the arrays that feed or read a tensor of TensorRT ``trt_dtype``.

    ``trt.nptype`` knows FP32/FP16/INT8/UINT8/INT32/INT64/BOOL only (it raises TypeError for the rest); BF16 and FP8
    map to ``ml_dtypes`` (a dependency of onnx), whose item sizes equal TensorRT's ``DataType.itemsize``.

    Raises:
        EngineMismatchError: a 4-bit (INT4, FP4) or E8M0 tensor, or one whose size TensorRT gives differently.
    """
    name = trt_dtype.name
    if name not in _ARRAY_DTYPES:
        raise EngineMismatchError(
            f"engine {engine}: tensor {tensor!r} is {name}, which trtpipe cannot feed or read (TensorRT packs "
            "INT4/FP4 two values per byte; E8M0 is a scale type)",
            "keep the model's inputs and outputs in FP32/FP16/BF16/FP8/INT8 (quantize and dequantize inside the "
            "network) and rebuild",
        )
    if name in ("BF16", "FP8"):
        import ml_dtypes  # noqa: F401 - registers the bfloat16 / float8 dtypes with numpy

    dtype = np.dtype(_ARRAY_DTYPES[name])
    itemsize = getattr(trt_dtype, "itemsize", None)  # TensorRT's own size (a Python property in the bindings)
    if itemsize is not None and itemsize != dtype.itemsize:
        raise EngineMismatchError(
            f"engine {engine}: tensor {tensor!r} is {name} of {itemsize} bytes per value, numpy's {dtype} has "
            f"{dtype.itemsize}", "this is a trtpipe bug; please report it with the TensorRT version",
        )
    return dtype


@dataclass(eq=False)
class _Context:
    """One execution context with what it owns: stream, timing events, buffers, shapes and CUDA graph."""

    index: int
    context: object
    stream: cuda.Stream
    events: list
    host: dict = field(default_factory=dict)  # tensor -> PinnedBuffer (max shape)
    device: dict = field(default_factory=dict)  # tensor -> DeviceBuffer (max shape)
    shapes: dict = field(default_factory=dict)  # input -> shape the context holds now
    graph: tuple | None = None  # (input shapes, cuda.Graph) captured with the context's current shapes
    profile: int = 0  # the optimization profile the context uses now (set_optimization_profile_async)


class TensorRTEngine(Engine):
    """Deserializes ``path`` after checking its sidecar against this machine, and runs it on ``contexts`` contexts.

    Args:
        path: the ``.engine`` file; its ``.engine.json`` sidecar must sit beside it.
        flavor: the TensorRT flavour to use; defaults to the installed one that built the engine
            (tests pass a simulated one).
        device: CUDA device index. Defaults to 0. Every call makes it the calling thread's current device.
        cuda_graph: replay ``execute_async_v3`` from a CUDA graph per context and input shape (saves launch
            overhead on small models; shapes must repeat to pay off). Defaults to False.
        contexts: execution contexts, each with its own stream, buffers and graph (trtexec's ``--infStreams``);
            that many threads can run inferences at once. Defaults to 1.
        profile: run on this optimization profile only (trtexec's ``--useProfile``). Defaults to None: each call
            goes to the first profile whose min..max holds its input shapes, and a context switches profile
            (``set_optimization_profile_async`` on its own stream) when a call needs another one.
        weights: an ONNX with the engine's graph and the weights to run with: a weight-stripped engine
            (``build --stripWeights``) needs it, a refittable one (``--refit``) takes new weights from it. The
            engine is refitted in memory after deserializing (``OnnxParserRefitter``); the file is unchanged
            (``trtpipe refit`` writes a refitted plan).

    Raises:
        ConfigError: ``contexts`` below 1; ``profile`` not one of the engine's; ``weights`` for an engine that is not
            refittable.
        InputError: a weight-stripped engine without ``weights``; ``weights`` of another graph (naming the first
            tensor that differs).
        EngineMismatchError, DependencyError, InputError: the engine does not fit this machine (see
            ``trtpipe.runtime.compat``), cannot be deserialized, or has tensors trtpipe cannot feed.
    """

    device_timed = True  # h2d / compute / d2h come from CUDA events on the context's stream

    def __init__(self, path: str | Path, *, flavor: Flavor | None = None, device: int = 0, cuda_graph: bool = False,
                 contexts: int = 1, profile: int | None = None, weights: str | Path | None = None):
        if int(contexts) < 1:
            raise ConfigError(f"contexts={contexts}, expected 1 or more", "use contexts=1, or N for N parallel streams (--infStreams N)")
        self.path = Path(path)
        self._closed = False
        self._state = threading.Condition()  # guards _free, _closed and _queues
        self._contexts: list[_Context] = []
        self._free: list[_Context] = []
        self._owned: list = []  # everything allocated, closed in reverse order
        self._queues: list[EnqueueAhead] = []  # open enqueue-ahead queues, closed before the engine
        self._staged_by: object | None = None  # the queue whose inputs are on context 0's device (None: an infer's)
        self.cuda_graph_failure: str | None = None  # why CUDA graphs were given up, when a capture failed
        self.refit_seconds: float | None = None  # how long the refit at load took (``weights=``); None: no refit
        self.sidecar = load_sidecar(self.path)
        from trtpipe.refit import check_profile_index, check_weights_for

        self._weights = check_weights_for(self.sidecar, self.path, weights)  # before any TensorRT or GPU work
        self._profile_choice = check_profile_index(self.sidecar, self.path, profile)
        self.class_names = tuple(self.sidecar.class_names)  # from the ONNX's metadata at build time
        self.flavor = flavor or _flavor_for(self.sidecar, str(self.path))
        self.simulated = bool(getattr(self.flavor.module, "SIMULATED", False))
        self.backend = self.flavor.name + ("-simulated" if self.simulated else "")
        self.cuda_graph = cuda_graph
        # TensorRT-RTX captures and replays graphs itself, shape changes included (its runtime config).
        self._native_graphs = bool(cuda_graph and hasattr(self.flavor.module, "CudaGraphStrategy"))
        self._device_index = int(device)
        # Every check comes before deserializing: TensorRT would only log an error and return None.
        check_flavor(self.sidecar, self.flavor.name, self.flavor.version, str(self.path))
        cuda.set_device(self._device_index)
        gpu = cuda.device_info(self._device_index)
        check_gpu(self.sidecar, gpu.name, gpu.major, gpu.minor, str(self.path), flavor=self.flavor)
        self.device = gpu
        try:
            self._load(int(contexts))
        except BaseException:
            self.close()
            raise

    # -- setup ---------------------------------------------------------------------------------

    def _load(self, contexts: int) -> None:
        trt = self.flavor.module
        self._logger = make_logger(self.flavor)  # TensorRT keeps one logger per process
        self._runtime = trt.Runtime(self._logger)
        if (self.sidecar.build_config or {}).get("version_compatible"):
            # A version-compatible plan carries its lean runtime as host code, which TensorRT runs only when allowed.
            self._runtime.engine_host_code_allowed = True
        with self._logger.capture_errors() as errors:
            self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            said = "; ".join(errors[-2:]) or "no error message from TensorRT"
            raise EngineMismatchError(
                f"{self.flavor.label} could not deserialize {self.path} although its sidecar matches this machine "
                f"({said}): the file is corrupt",
                f"rebuild it: trtpipe build {self.sidecar.onnx_path} --precision {self.sidecar.precision} --force",
            )
        if self._weights is not None:
            from trtpipe.refit import refit_engine

            self.refit_seconds = refit_engine(self.flavor, self._engine, self._logger, self._weights, self.path)
        self._describe_tensors()
        for index in range(contexts):
            slot = self._new_context(index)
            self._contexts.append(slot)
            self._free.append(slot)

    def _own(self, resource):
        self._owned.append(resource)
        return resource

    def _describe_tensors(self) -> None:
        trt, engine = self.flavor.module, self._engine
        inputs, outputs, self._limits, self._dtypes = [], [], {}, {}
        count = int(engine.num_optimization_profiles)
        self._usable = [self._profile_choice] if self._profile_choice is not None else list(range(count))
        self._profile_limits: list[dict] = [{} for _ in range(count)]  # profile -> input -> (min, max)
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = array_dtype(trt, engine.get_tensor_dtype(name), name, str(self.path))
            if engine.get_tensor_format(name) != trt.TensorFormat.LINEAR:
                raise EngineMismatchError(
                    f"engine {self.path}: tensor {name!r} has the vectorized format {engine.get_tensor_format(name).name}",
                    "rebuild without custom I/O formats (trtpipe builds LINEAR ones)",
                )
            self._dtypes[name] = dtype
            info = TensorInfo(name, tuple(int(d) for d in engine.get_tensor_shape(name)), dtype.name)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                inputs.append(info)
                for index in self._usable:
                    if -1 in info.shape:
                        low, _, high = engine.get_tensor_profile_shape(name, index)
                        self._profile_limits[index][name] = (tuple(int(d) for d in low), tuple(int(d) for d in high))
                    else:
                        self._profile_limits[index][name] = (info.shape, info.shape)
                # What any usable profile takes, for validate_feeds; which profile takes it is chosen per call.
                lows, highs = zip(*(self._profile_limits[index][name] for index in self._usable))
                self._limits[name] = (tuple(map(min, zip(*lows))), tuple(map(max, zip(*highs))))
            else:
                outputs.append(info)
        self._inputs, self._outputs = tuple(inputs), tuple(outputs)

    def _new_context(self, index: int) -> _Context:
        """An execution context with its stream, events and buffers for the profile's max shape; addresses set once."""
        trt, engine = self.flavor.module, self._engine
        stream = self._own(cuda.Stream())
        events = [self._own(cuda.Event()) for _ in range(4)]
        with self._logger.capture_errors() as errors:
            if self._native_graphs:
                config = engine.create_runtime_config()
                config.cuda_graph_strategy = trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
                context = engine.create_execution_context(config)
            else:
                context = engine.create_execution_context()
        if context is None:
            raise EngineMismatchError(
                f"TensorRT could not create execution context {index + 1} for {self.path} "
                f"({'; '.join(errors[-2:]) or 'out of GPU memory?'})",
                "free GPU memory (nvidia-smi), use fewer contexts, or rebuild with a smaller max batch",
            )
        slot = _Context(index, context, stream, events)
        # Buffers hold the largest shape of every usable profile (each axis's maximum over them), so switching
        # profile never reallocates or moves an address.
        largest: dict[str, tuple[int, ...]] = {}
        for profile in reversed(self._usable):  # ends on the first usable profile, at its max shapes
            self._use_profile(slot, profile)
            for info in self._inputs:
                self._set_shape(slot, info.name, self._profile_limits[profile][info.name][1])
            for info in self._outputs:
                shape = tuple(int(d) for d in context.get_tensor_shape(info.name))
                if any(d < 0 for d in shape):
                    raise InputError(
                        f"engine {self.path}: output {info.name!r} has a data-dependent shape {shape}",
                        "trtpipe runs engines whose output shapes follow from the input shapes; export the model with "
                        "fixed-size outputs (e.g. NMS outside the network)",
                    )
            for info in (*self._inputs, *self._outputs):
                shape = tuple(int(d) for d in context.get_tensor_shape(info.name))
                largest[info.name] = tuple(map(max, zip(largest.get(info.name, shape), shape)))
        for info in (*self._inputs, *self._outputs):
            self._buffers(slot, info.name, largest[info.name])
        for name, buffer in slot.device.items():
            if not context.set_tensor_address(name, buffer.ptr):
                raise EngineMismatchError(f"TensorRT refused the address of tensor {name!r}", "this is a trtpipe bug; please report it")
        return slot

    def _buffers(self, slot: _Context, name: str, shape: tuple[int, ...]) -> None:
        host = self._own(cuda.PinnedBuffer(shape, self._dtypes[name]))
        slot.host[name] = host
        slot.device[name] = self._own(cuda.DeviceBuffer(host.nbytes))

    # -- Engine interface ----------------------------------------------------------------------

    @property
    def max_batch(self) -> int | None:
        return min(high[0] for _, high in self._limits.values()) if self._limits else None

    @property
    def input_limits(self) -> Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        return self._limits

    @property
    def num_contexts(self) -> int:
        """Execution contexts: how many inferences can run on the GPU at once (``contexts=``)."""
        return len(self._contexts)

    def infer_timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], StageTimes]:
        """Runs one inference on a free execution context; thread-safe (see the module docstring).

        Returns:
            The outputs (copies, safe to keep) and StageTimes: h2d/compute/d2h in ms from CUDA events on the
            context's stream, end_to_end from ``perf_counter`` around the call (waiting for a context included).
        """
        start = time.perf_counter()
        self._check_open("TensorRTEngine")
        validate_feeds(feeds, self._inputs, str(self.path), self._limits)
        shapes = {name: tuple(array.shape) for name, array in feeds.items()}
        slot = self._acquire(shapes)
        try:
            cuda.set_device(self._device_index)  # the current device is per thread
            stream, (ev_start, ev_h2d, ev_compute, ev_d2h) = slot.stream, slot.events
            self._apply_shapes(slot, shapes)
            for info in self._inputs:
                array = feeds[info.name]
                np.copyto(slot.host[info.name].view(array.shape), array)
            ev_start.record(stream)
            self._queue_inputs(slot, slot.host, stream)
            if slot.index == 0:
                self._staged_by = None
            ev_h2d.record(stream)
            self._execute(slot)
            ev_compute.record(stream)
            out_shapes = self._output_shapes(slot)
            self._queue_outputs(slot, slot.host, out_shapes, stream)
            ev_d2h.record(stream)
            stream.synchronize()  # pinned outputs are only valid from here on
            results = {name: slot.host[name].view(shape).copy() for name, shape in out_shapes.items()}
            device_ms = (ev_start.elapsed_ms(ev_h2d), ev_h2d.elapsed_ms(ev_compute), ev_compute.elapsed_ms(ev_d2h))
        finally:
            self._release(slot)
        end = time.perf_counter()
        return results, StageTimes(h2d=device_ms[0], compute=device_ms[1], d2h=device_ms[2], end_to_end=(end - start) * 1e3)

    # -- measurement paths (bench) -------------------------------------------------------------

    def enqueue_ahead(self, feeds: Mapping[str, np.ndarray], *, transfers: bool = True, depth: int = 2) -> "EnqueueAhead":
        """Opens a queue that launches inferences of ``feeds`` without synchronizing (trtexec's throughput mode).

        The queue runs on execution context 0 (taking it per ``enqueue``, so ``infer`` calls interleave).

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
        self._check_open("TensorRTEngine")
        validate_feeds(feeds, self._inputs, str(self.path), self._limits)
        slot = self._acquire(None, self._contexts[0])
        try:
            cuda.set_device(self._device_index)
            queue = EnqueueAhead(self, slot, feeds, transfers, depth)
            with self._state:
                self._queues.append(queue)
            return queue
        finally:
            self._release(slot)

    def profile_layers(self, feeds: Mapping[str, np.ndarray], *, iterations: int = 50, warmup: int = 1) -> "LayerTimes":
        """Times every layer of ``iterations`` runs of ``feeds`` with TensorRT's ``IProfiler``, plus layer information.

        Profiling makes TensorRT time each layer and synchronize between them, which slows the whole run: it
        uses a separate execution context (the engine's own contexts keep their state) and should run after a
        timing run, never during it. It holds context 0 (its stream and buffers) throughout.

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
        self._check_open("TensorRTEngine")
        validate_feeds(feeds, self._inputs, str(self.path), self._limits)
        slot = self._acquire(None, self._contexts[0])
        trt, stream = self.flavor.module, slot.stream
        profiler = _layer_profiler(trt)
        context = inspector = None
        try:
            cuda.set_device(self._device_index)
            for info in self._inputs:
                np.copyto(slot.host[info.name].view(feeds[info.name].shape), feeds[info.name])
            self._apply_shapes(slot, {name: tuple(array.shape) for name, array in feeds.items()})
            self._queue_inputs(slot, slot.host, stream)
            self._staged_by = None
            with self._logger.capture_errors() as errors:
                context = self._engine.create_execution_context()
            if context is None:
                raise EngineMismatchError(
                    f"TensorRT could not create a profiling context for {self.path} ({'; '.join(errors) or 'out of GPU memory?'})",
                    "free GPU memory (nvidia-smi), or profile a smaller batch",
                )
            if slot.profile != 0 and not context.set_optimization_profile_async(slot.profile, stream.ptr):
                raise EngineMismatchError(f"TensorRT refused optimization profile {slot.profile} of {self.path}",
                                          "this is a trtpipe bug; please report it")
            for info in self._inputs:
                if not context.set_input_shape(info.name, feeds[info.name].shape):
                    raise InputError(f"TensorRT rejected shape {feeds[info.name].shape} for input {info.name!r}",
                                     "keep shapes within the profile")
            for name, buffer in slot.device.items():
                if not context.set_tensor_address(name, buffer.ptr):
                    raise EngineMismatchError(f"TensorRT refused the address of tensor {name!r}", "this is a trtpipe bug; please report it")
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
            _synchronize_quietly(stream)  # the context must not go while its work is queued
            # The inspector refers to the context, the context to the engine: drop them in that order.
            del inspector, context
            self._release(slot)
        return LayerTimes({name: tuple(times) for name, times in profiler.times.items()}, iterations, information)

    # -- contexts ------------------------------------------------------------------------------

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise ClosedError(what)

    def _acquire(self, shapes: Mapping[str, tuple[int, ...]] | None, wanted: _Context | None = None) -> _Context:
        """Takes a free context (``wanted``, else one already holding ``shapes``, else the first free); waits for one."""
        with self._state:
            while True:
                self._check_open("TensorRTEngine")
                if wanted is not None:
                    if wanted in self._free:
                        self._free.remove(wanted)
                        return wanted
                elif self._free:
                    profile = self._profile_for(shapes) if shapes is not None else None
                    pick = next((c for c in self._free if shapes is not None and c.shapes == shapes),
                                next((c for c in self._free if c.profile == profile), self._free[0]))
                    self._free.remove(pick)
                    return pick
                self._state.wait()

    def _release(self, slot: _Context) -> None:
        with self._state:
            self._free.append(slot)
            self._state.notify_all()

    # -- internals shared by the paths above (the caller holds ``slot``) -----------------------

    def _set_shape(self, slot: _Context, name: str, shape: tuple[int, ...]) -> None:
        if not slot.context.set_input_shape(name, shape):
            raise InputError(f"TensorRT rejected shape {shape} for input {name!r} of {self.path}", "keep shapes within the profile")
        slot.shapes[name] = tuple(shape)

    def _profile_for(self, shapes: Mapping[str, tuple[int, ...]]) -> int:
        """The first usable optimization profile whose min..max holds every shape of ``shapes``.

        Raises:
            InputError: no profile holds them all (each within some profile's range is not enough: TensorRT runs a
                call on one profile), listing the profiles.
        """
        for index in self._usable:
            limits = self._profile_limits[index]
            if all(all(lo <= d <= hi for lo, d, hi in zip(*(limits[name][0], shape, limits[name][1])))
                   for name, shape in shapes.items()):
                return index
        listed = "; ".join(f"profile {i}: " + ", ".join(f"{n} {_dims(lo)}..{_dims(hi)}" for n, (lo, hi) in
                                                        self._profile_limits[i].items()) for i in self._usable)
        raise InputError(
            f"engine {self.path}: no optimization profile takes input shapes "
            f"{', '.join(f'{n} {_dims(s)}' for n, s in shapes.items())} ({listed})",
            "give shapes within one profile, or rebuild with a profile for them (--profile=N --minShapes ...)",
        )

    def _use_profile(self, slot: _Context, profile: int) -> None:
        """Switches the context to ``profile`` on its own stream; its input shapes must then be set again."""
        if slot.context.active_optimization_profile == profile:
            slot.profile = profile
            return
        if not slot.context.set_optimization_profile_async(profile, slot.stream.ptr):
            raise EngineMismatchError(f"TensorRT refused optimization profile {profile} of {self.path}",
                                      "this is a trtpipe bug; please report it")
        slot.profile = profile
        slot.shapes = {}
        if slot.graph is not None:
            slot.graph[1].close()  # captured on the old profile
            slot.graph = None

    def _apply_shapes(self, slot: _Context, shapes: Mapping[str, tuple[int, ...]]) -> bool:
        """Sets the input shapes that differ from the context's; True when any changed (its graph is then stale).

        The context first switches to the profile that holds ``shapes``, when it is on another one.
        """
        if len(self._usable) > 1 or self._usable[0] != slot.profile:
            profile = self._profile_for(shapes)
            if profile != slot.profile or slot.context.active_optimization_profile != profile:
                self._use_profile(slot, profile)
        changed = False
        for name, shape in shapes.items():
            if slot.shapes.get(name) != tuple(shape):
                self._set_shape(slot, name, tuple(shape))
                changed = True
        if changed and slot.graph is not None:
            slot.graph[1].close()  # captured with the old shapes: replaying it would give stale results
            slot.graph = None
        return changed

    def _output_shapes(self, slot: _Context) -> dict[str, tuple[int, ...]]:
        return {info.name: tuple(int(d) for d in slot.context.get_tensor_shape(info.name)) for info in self._outputs}

    def _queue_inputs(self, slot: _Context, host: Mapping[str, cuda.PinnedBuffer], stream: cuda.Stream) -> None:
        """Queues H2D copies of the context's current input shapes from ``host`` into its device inputs."""
        for info in self._inputs:
            nbytes = _nbytes(slot.shapes[info.name], self._dtypes[info.name])
            cuda.copy_htod_async(slot.device[info.name], host[info.name], nbytes, stream)

    def _queue_outputs(self, slot: _Context, host: Mapping[str, cuda.PinnedBuffer], shapes: Mapping[str, tuple[int, ...]],
                       stream: cuda.Stream) -> None:
        """Queues D2H copies of the outputs (of ``shapes``) from the context's device outputs into ``host``."""
        for info in self._outputs:
            nbytes = _nbytes(shapes[info.name], self._dtypes[info.name])
            cuda.copy_dtoh_async(host[info.name], slot.device[info.name], nbytes, stream)

    def _execute(self, slot: _Context) -> None:
        if not self.cuda_graph or self._native_graphs or self.cuda_graph_failure is not None:
            self._launch(slot)
            return
        key = tuple(slot.shapes[i.name] for i in self._inputs)
        if slot.graph is not None and slot.graph[0] == key:
            slot.graph[1].launch(slot.stream)
            return
        # TensorRT needs one plain launch after a shape change before its work can be captured; it also
        # computes this call's outputs, so a capture that fails below costs nothing but the warning.
        self._launch(slot)
        try:
            graph = cuda.Graph.capture(slot.stream, lambda: self._enqueue(slot))
        except cuda.GraphCaptureError as failure:
            self.cuda_graph_failure = str(failure.message)
            log.warning("%s: CUDA graph capture failed (%s); running without CUDA graphs from now on, as trtexec does",
                        self.path.name, failure.message)
            return
        slot.graph = (key, graph)
        graph.launch(slot.stream)

    def _enqueue(self, slot: _Context) -> bool:
        return bool(slot.context.execute_async_v3(slot.stream.ptr))

    def _launch(self, slot: _Context) -> None:
        with self._logger.capture_errors() as errors:
            ok = self._enqueue(slot)
        if not ok:
            raise EngineMismatchError(
                f"TensorRT execute_async_v3 failed for {self.path} ({'; '.join(errors[-2:]) or 'see TensorRT log'})",
                "check the GPU (nvidia-smi) and rebuild the engine on this machine if it persists",
            )

    def close(self) -> None:
        """Waits for the calls in flight, then frees contexts, graphs, streams and buffers; twice is harmless."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            self._state.notify_all()
            while len(self._free) < len(self._contexts):  # calls in flight finish first
                self._state.wait()
            queues, self._queues = self._queues, []
        for queue in queues:
            queue._release()
        for slot in self._contexts:
            if slot.graph is not None:
                slot.graph[1].close()
                slot.graph = None
            _synchronize_quietly(slot.stream)  # TensorRT must not lose a context with work queued on it
            slot.context = None
        # TensorRT objects go before the memory they point at; the contexts before their engine.
        self._contexts, self._free = [], []
        for attr in ("_engine", "_runtime"):
            if hasattr(self, attr):
                setattr(self, attr, None)
        while self._owned:
            self._owned.pop().close()


def _synchronize_quietly(stream) -> None:
    """Synchronizes ``stream`` on an error or close path, where a second error must not hide the first."""
    try:
        stream.synchronize()
    except CudaError as exc:
        log.debug("synchronize before freeing failed: %s", exc)


def _dims(shape) -> str:
    return "x".join(str(d) for d in shape)


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
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
    the queue's own pinned memory; execution context 0's stream and device buffers are shared, and the queue
    takes that context per ``enqueue``, so ``infer`` calls from other threads interleave correctly.
    One thread should drive a queue. Closing it (or the engine) waits for its work and frees what it allocated.

    Usage::

        with engine.enqueue_ahead({"input": x}) as queue:
            first, second = queue.enqueue(), queue.enqueue()   # both in flight
            times = queue.wait(first)                          # {"h2d", "compute", "d2h"} in ms (CUDA events)
            logits = queue.outputs(first)["logits"]            # only after wait()
    """

    def __init__(self, engine: TensorRTEngine, context: _Context, feeds: Mapping[str, np.ndarray], transfers: bool, depth: int):
        if depth < 1 or depth > MAX_IN_FLIGHT:
            raise ConfigError(f"enqueue-ahead depth {depth}, expected 1..{MAX_IN_FLIGHT}", "use 2 (double buffering)")
        self.transfers = transfers
        self._engine = engine
        self._context = context
        self._closed = False
        self._shapes = {name: tuple(array.shape) for name, array in feeds.items()}
        self._host: dict[str, cuda.PinnedBuffer] = {}
        self._slots: list[_Slot] = []
        self._tickets = 0
        try:
            for info in engine.inputs:
                self._host[info.name] = buffer = cuda.PinnedBuffer(self._shapes[info.name], engine._dtypes[info.name])
                np.copyto(buffer.array, feeds[info.name])
            engine._apply_shapes(context, self._shapes)
            shapes = engine._output_shapes(context)
            self._outputs = {info.name: (shapes[info.name], engine._dtypes[info.name]) for info in engine.outputs}
            for _ in range(depth):
                self._slots.append(_Slot(self._outputs if transfers else None))
        except BaseException:
            self._release()
            raise

    def enqueue(self) -> InFlight:
        """Queues one inference (H2D, execute, D2H as configured) and returns its handle; does not block on the GPU."""
        engine = self._engine
        if self._closed:
            raise ClosedError("EnqueueAhead")
        context = engine._acquire(None, self._context)  # raises ClosedError once the engine is closed
        try:
            if self._closed:
                raise ClosedError("EnqueueAhead")
            cuda.set_device(engine._device_index)
            index = self._free_slot()
            slot, stream = self._slots[index], context.stream
            engine._apply_shapes(context, self._shapes)  # an infer() in between may have set other shapes
            if not self.transfers and engine._staged_by is not self:
                engine._queue_inputs(context, self._host, stream)  # staged before the slot's events: not timed
                engine._staged_by = self
            slot.events[0].record(stream)
            if self.transfers:
                engine._queue_inputs(context, self._host, stream)
                engine._staged_by = self
            slot.events[1].record(stream)
            engine._execute(context)
            slot.events[2].record(stream)
            if self.transfers:
                engine._queue_outputs(context, slot.host, {name: shape for name, (shape, _) in self._outputs.items()}, stream)
            slot.events[3].record(stream)
            self._tickets += 1
            slot.ticket, slot.state = self._tickets, "queued"
            return InFlight(index, slot.ticket)
        finally:
            engine._release(context)

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
        try:
            context = engine._acquire(None, self._context)
        except ClosedError:
            return  # the engine released this queue when it closed
        try:
            with engine._state:
                if self in engine._queues:
                    engine._queues.remove(self)
            self._release()
        finally:
            engine._release(context)

    def _release(self) -> None:
        """Frees everything (the caller holds context 0, or the engine is closing, or construction failed)."""
        if self._closed:
            return
        self._closed = True
        engine = self._engine
        if any(slot.state == "queued" for slot in self._slots) or engine._staged_by is self:
            # A queued D2H still writes into our pinned memory; a GPU would write into freed memory.
            self._context.stream.synchronize()
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

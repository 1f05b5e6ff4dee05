"""The simulated ``tensorrt`` / ``tensorrt_rtx`` module: exactly one recorded version's API, strict about its contract.

Made by :func:`trtpipe.runtime.simulation.simulated_trt` (see that module for the CUDA half). What it holds to:

- **The recorded surface** (``trtpipe.runtime.api_surface``): the module has the top-level names, each class the
  members and each enum the values that the flavour's bindings have. Anything else is an ``AttributeError``, as on
  the real module (``engine.device_memory_size`` on TensorRT 11 and RTX, ``BuilderFlag.FP16`` on 11,
  ``IInt8EntropyCalibrator2`` outside 10.x, ``context.is_stream_capturable`` outside RTX ...). A recorded member the
  simulation does not implement raises :class:`SimulationError`, so a test never takes a path the real flavour
  would not.
- **Execution contexts**: shapes are per context; ``execute_async_v3`` reads them when it is called; a CUDA graph
  captured from a context replays the work as captured, so replaying it after that context's input shapes changed
  fails (on a GPU: stale results). The first launch after a shape change is not capturable (TensorRT may allocate
  and synchronize then): inside a capture it breaks the capture and returns False, as does every launch of an
  engine written with ``capturable=False``. The calling thread's current device must be the engine's.
- **Data-dependent output shapes** (NonZero, NMS ...) are -1 in ``get_tensor_shape`` (from ONNX shape inference).
- **Data types**: TensorRT's DataType set; ``nptype`` raises TypeError for BF16/FP8/INT4/FP4 as the real one does;
  an ONNX input or output of a type TensorRT lacks (float64, ...) is refused by the parser.
- **One logger per process**: the first ``ILogger`` given to a Builder, Runtime or parser is the process's
  (TensorRT's ``getLogger()``); a later, different one gets TensorRT's warning, and the simulation logs every
  message to the first (the strictest reading of "uses of the global logger ... return the existing value").
- **The builder** parses with the ONNX checker's op schemas (an op of another domain is unsupported), needs a
  profile for every dynamic input, honours ``IProgressMonitor`` cancellation, and for TensorRT 10's implicit INT8
  calls the calibrator as the bindings do (``pyInt8.cpp``: ``get_batch(names)`` must return one device pointer per
  input, of which TensorRT reads the calibration profile's OPT shape; its default is profile 0).
- **Engines that travel** (issue 20): every optimization profile is in the plan; a context starts on profile 0,
  ``set_optimization_profile_async`` switches it (not while its stream captures) and unsets its input shapes, and
  ``set_input_shape`` checks the active profile's range. ``VERSION_COMPATIBLE`` plans deserialize on a later
  version of the same major only with ``engine_host_code_allowed`` and their lean runtime;
  ``EXCLUDE_LEAN_RUNTIME`` needs ``VERSION_COMPATIBLE`` (TensorRT-RTX's refusal, measured), and TensorRT-RTX
  cannot embed a lean runtime at all. ``STRIP_PLAN`` leaves the floating-point initializers' values out of the
  plan; such an engine runs only after ``Refitter``/``OnnxParserRefitter`` filled every one (weights matched by
  ONNX initializer name, dtype and dims), and a ``REFIT_IDENTICAL`` engine refitted with other values is a
  SimulationError (on a GPU: wrong results). INT8 initializers of a Q/DQ ONNX are not treated as refittable.
"""

from __future__ import annotations

import enum
import json
import sys
import threading
import types
import numpy as np

from trtpipe.runtime.api_surface import ApiSurface, surface_for
from trtpipe.runtime.simulation import MAGIC, SimulatedCuda, SimulationError, engine_header

#: ONNX TensorProto element type -> TensorRT DataType name (the types TensorRT's parser accepts for I/O).
ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 16: "BF16", 3: "INT8", 2: "UINT8", 6: "INT32", 7: "INT64", 9: "BOOL",
               17: "FP8", 22: "INT4", 23: "FP4"}

#: TensorRT DataType name -> the numpy (or ml_dtypes) dtype name trtpipe uses for it.
NUMPY_NAMES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8",
               "INT32": "int32", "INT64": "int64", "BOOL": "bool", "FP8": "float8_e4m3fn", "INT4": "int4",
               "FP4": "float4_e2m1fn", "E8M0": "float8_e8m0fnu"}

#: Bits per element (the bindings' ``DataType.itemsize`` is this / 8; E8M0 has none there).
_BITS = {"FLOAT": 32, "HALF": 16, "BF16": 16, "INT8": 8, "UINT8": 8, "INT32": 32, "INT64": 64, "BOOL": 8, "FP8": 8,
         "INT4": 4, "FP4": 4, "E8M0": 8}

_NPTYPE = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
           "BOOL": np.bool_, "UINT8": np.uint8}  # the bindings' nptype table; the rest raise TypeError


def onnx_io(onnx_bytes: bytes, source: str) -> dict[str, tuple[str, tuple[int, ...], str]]:
    """name -> ("input" | "output", shape with -1 for symbolic dims, TensorRT DataType name).

    Raises:
        SimulationError: an input or output whose type TensorRT has no DataType for.
    """
    import onnx

    graph = onnx.load_from_string(onnx_bytes).graph
    initializers = {i.name for i in graph.initializer}
    io = {}
    for mode, values in (("input", [v for v in graph.input if v.name not in initializers]), ("output", graph.output)):
        for value in values:
            tensor = value.type.tensor_type
            if tensor.elem_type not in ONNX_TO_TRT:
                raise SimulationError(
                    f"{source}: {mode} {value.name!r} is ONNX {onnx.TensorProto.DataType.Name(tensor.elem_type)}, "
                    "which TensorRT has no DataType for (its parser refuses the model)"
                )
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
            io[value.name] = (mode, shape, ONNX_TO_TRT[tensor.elem_type])
    return io


def _ml_dtype(trt_name: str) -> np.dtype:
    if trt_name in _NPTYPE:
        return np.dtype(_NPTYPE[trt_name])
    import ml_dtypes

    return np.dtype(getattr(ml_dtypes, NUMPY_NAMES[trt_name]))


def _nbytes(shape, trt_name: str) -> int:
    return -(-int(np.prod(shape, dtype=np.int64)) * _BITS[trt_name] // 8)


# ----------------------------------------------------------------------------------------------
# The strict base of every simulated binding class
# ----------------------------------------------------------------------------------------------


class _Bound:
    """Public attributes are exactly the recorded members of the class in the simulated flavour."""

    _api = "?"
    _members: frozenset = frozenset()
    _label = "?"

    def __getattribute__(self, name):
        if name[0] != "_":
            cls = type(self)
            if name not in cls._members:
                raise AttributeError(f"'{cls._api}' object has no attribute '{name}' (not in {cls._label}'s recorded API)")
            try:
                return object.__getattribute__(self, name)
            except AttributeError:
                raise SimulationError(f"the simulation does not implement {cls._api}.{name} ({cls._label} has it)") from None
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if name[0] != "_" and name not in type(self)._members:
            raise AttributeError(f"'{type(self)._api}' object has no attribute '{name}' (not in {type(self)._label}'s recorded API)")
        object.__setattr__(self, name, value)


class _ParserErrors(_Bound):
    """The errors an ONNX parser (and its refitter) keeps: ``num_errors``, ``get_error(i)``, ``clear_errors()``."""

    _errors: list

    @property
    def num_errors(self):
        return len(self._errors)

    def get_error(self, index):
        return self._errors[index]

    def clear_errors(self):
        self._errors.clear()


class _Module(types.ModuleType):
    """The simulated module: a recorded top-level name it does not simulate raises SimulationError."""

    def __getattr__(self, name):
        surface = self.__dict__.get("_surface")
        if surface is not None and name in surface.module:
            raise SimulationError(f"the simulation has no {name} ({surface.label} has it)")
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------
# The module factory
# ----------------------------------------------------------------------------------------------


def make_module(cuda: SimulatedCuda, flavor: str, version: str) -> types.ModuleType:
    """The simulated ``flavor`` ``version`` module over ``cuda`` (see the module docstring)."""
    surface = surface_for(flavor, version)
    trt = _Module(f"{flavor}_simulated")
    trt.SIMULATED = True
    trt.__version__ = version
    trt._surface, trt._cuda, trt._flavor = surface, cuda, flavor
    trt._global_logger = None
    trt._lock = threading.Lock()
    names: dict[str, object] = {}

    def enum_of(name: str, extra: dict | None = None):
        values = surface.enum_values(name)
        if not values:
            return None
        namespace = {v: i for i, v in enumerate(values)}
        made = enum.IntEnum(name.split(".")[-1], namespace)  # pybind11 enums convert to int too
        for key, value in (extra or {}).items():
            if key in surface.enums.get(name, ()):
                setattr(made, key, value)
        return made

    def bind(impl, api: str):
        return type(api, (impl,), {"_api": api, "_members": surface.members(api), "_label": surface.label, "_trt": trt})

    severity = enum_of("ILogger.Severity")
    data_type = enum_of("DataType", {"itemsize": property(lambda self: None if self.name == "E8M0" else _BITS[self.name] / 8)})
    for enum_name in ("TensorIOMode", "TensorFormat", "TensorLocation", "LayerInformationFormat", "ProfilingVerbosity",
                      "NetworkDefinitionCreationFlag", "BuilderFlag", "MemoryPoolType", "ComputeCapability",
                      "CudaGraphStrategy", "ExecutionContextAllocationStrategy", "CalibrationAlgoType", "ErrorCode",
                      "OnnxParserFlag", "HardwareCompatibilityLevel", "SerializationFlag"):
        names[enum_name] = enum_of(enum_name)
    names["DataType"] = data_type

    class ILogger:
        """Subclass it and override ``log(severity, msg)``, as with TensorRT."""

        Severity = severity

        def __init__(self) -> None:
            pass

        def log(self, severity, msg) -> None:
            raise SimulationError("an ILogger subclass must override log")

    class Logger(ILogger):
        def __init__(self, min_severity=None):
            self.min_severity = severity.WARNING if min_severity is None else min_severity

        def log(self, level, msg):
            if level.value <= self.min_severity.value:
                print(f"[TRT-simulated] {level.name} {msg}", file=sys.stderr)

    for value in severity:
        setattr(ILogger, value.name, value)
        setattr(Logger, value.name, value)

    def register_logger(logger, where: str) -> None:
        with trt._lock:
            if trt._global_logger is None:
                trt._global_logger = logger
                return
            if logger is not trt._global_logger:
                logger.log(severity.WARNING, f"The logger passed into {where} differs from one already provided for an "
                           "existing builder, runtime, or refitter. Uses of the global logger, returned by "
                           "nvinfer1::getLogger(), will return the existing value.")

    def log(level: str, msg: str) -> None:
        logger = trt._global_logger
        if logger is not None:
            logger.log(getattr(severity, level), msg)

    class IProfiler:
        """Subclass it and override ``report_layer_time(layer_name, ms)``, as with TensorRT."""

        def __init__(self) -> None:
            pass

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            raise SimulationError("an IProfiler subclass must override report_layer_time")

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

        def phase_start(self, phase_name, parent_phase, num_steps):
            raise SimulationError("an IProgressMonitor subclass must override phase_start")

        def step_complete(self, phase_name, step):
            raise SimulationError("an IProgressMonitor subclass must override step_complete")

        def phase_finish(self, phase_name):
            raise SimulationError("an IProgressMonitor subclass must override phase_finish")

    class IInt8Calibrator:
        def __init__(self) -> None:
            pass

    class IInt8EntropyCalibrator2(IInt8Calibrator):
        pass

    # -- runtime -------------------------------------------------------------------------------

    class _Runtime(_Bound):
        def __init__(self, logger):
            register_logger(logger, "createInferRuntime")
            self._logger = logger
            self._host_code_allowed = False

        @property
        def engine_host_code_allowed(self):
            return self._host_code_allowed

        @engine_host_code_allowed.setter
        def engine_host_code_allowed(self, value):
            self._host_code_allowed = bool(value)

        def deserialize_cuda_engine(self, data):
            data = bytes(data)
            if not data.startswith(MAGIC):
                log("ERROR", "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (Magic tag does not match)")
                return None
            try:
                header_text, onnx_bytes = data[len(MAGIC) :].split(b"\n", 1)
                header = json.loads(header_text)
                if "flavor" not in header:
                    raise ValueError("old format")
            except Exception:  # noqa: BLE001 - truncated or corrupt: TensorRT logs and returns None
                log("ERROR", "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (the plan is corrupt)")
                return None
            compatible = _version_compatible(header, flavor, version)
            if compatible and header["version"] != version:
                if header.get("exclude_lean_runtime"):
                    log("ERROR", f"IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (the version-compatible "
                        f"plan was built by {header['version']} without its lean runtime; load it with loadRuntime)")
                    return None
                if not self._host_code_allowed:
                    log("ERROR", "IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (the engine has host "
                        "code (its lean runtime) and engine_host_code_allowed is False)")
                    return None
            if (header["flavor"], header["version"]) != (flavor, version) and not compatible:
                log("ERROR", f"IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error (the engine plan file is "
                    f"not compatible with this version of TensorRT, expecting library version {version} got "
                    f"{header['version']}, please rebuild.)")
                return None
            device = cuda.current_device
            props = cuda.devices[device]
            sm = f"SM{props.major}{props.minor}"
            target = header["target"]
            if target.get("kind") == "aot":
                allowed = target.get("compute_capabilities") or [
                    v for v in surface.enum_values("ComputeCapability") if v.startswith("SM") and v != "SM75"]
                if sm not in allowed:
                    log("ERROR", f"IRuntime::deserializeCudaEngine: the engine has no code for this device ({sm})")
                    return None
            elif target.get("hardware_compatibility") == "AMPERE_PLUS":
                if props.major < 8:
                    log("ERROR", "IRuntime::deserializeCudaEngine: an Ampere+ hardware-compatible engine needs compute "
                        f"capability 8.0 or later, this device is {props.major}.{props.minor}")
                    return None
            elif target.get("compute_capability") != f"{props.major}.{props.minor}":
                log("ERROR", "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (the engine was built for "
                    f"compute capability {target.get('compute_capability')}, this device is {props.major}.{props.minor})")
                return None
            return _bound["ICudaEngine"](onnx_bytes, header, device)

    class _CudaEngine(_Bound):
        def __init__(self, onnx_bytes: bytes, header: dict, device: int):
            self._onnx = onnx_bytes
            self._header = header
            self._device = device
            self._profiles = [{k: tuple(tuple(s) for s in v) for k, v in p.items()} for p in header["profiles"]]
            self._io = [(n, mode, shape, dtype) for n, (mode, shape, dtype) in onnx_io(onnx_bytes, "engine").items()]
            self._session = None
            self._shapes_cache: dict[tuple, dict[str, tuple]] = {}
            self._layers: list[str] | None = None
            self._lock = threading.Lock()
            self.num_io_tensors = len(self._io)
            self.num_optimization_profiles = len(self._profiles)
            self.name = "simulated"
            self._missing = list(header.get("stripped_weights", ()))  # weights a refit must bring before it runs

        @property
        def refittable(self):
            return bool(self._header.get("refit"))

        @property
        def hardware_compatibility_level(self):
            return names["HardwareCompatibilityLevel"][self._header["target"].get("hardware_compatibility", "NONE")]

        def _refittable_weights(self) -> dict[str, tuple]:
            """Weight name -> (ONNX data type, dims) of what a refit may set: the floating-point initializers."""
            return _refittable(self._onnx)

        def serialize(self):
            return self.serialize_with_config(self.create_serialization_config())

        def create_serialization_config(self):
            config = _bound["ISerializationConfig"]()
            if self._header.get("stripped"):
                config.set_flag(names["SerializationFlag"].EXCLUDE_WEIGHTS)
            return config

        def serialize_with_config(self, config):
            header = dict(self._header)
            flags = names["SerializationFlag"]
            onnx_bytes = self._onnx
            if config.get_flag(flags.EXCLUDE_WEIGHTS):
                if not header.get("refit"):
                    log("ERROR", "ICudaEngine::serializeWithConfig: kEXCLUDE_WEIGHTS needs a refittable engine")
                    return None
                onnx_bytes, header["stripped_weights"] = _strip(onnx_bytes)
                header["stripped"] = True
            else:
                if self._missing:
                    log("ERROR", f"ICudaEngine::serializeWithConfig: weights {self._missing[:3]} were never refitted")
                    return None
                header["stripped"], header["stripped_weights"] = False, []
            if header.get("refit") and not (hasattr(flags, "INCLUDE_REFIT") and config.get_flag(flags.INCLUDE_REFIT)) \
                    and not header["stripped"]:
                header["refit"] = None  # TensorRT 11 / RTX keep refittability only with INCLUDE_REFIT; 10.x never
            return _bound["IHostMemory"](MAGIC + json.dumps(header).encode() + b"\n" + onnx_bytes)

        def _set_weights(self, values: dict) -> None:
            """What a successful refit does: the new values replace the plan's (the session is rebuilt)."""
            import onnx
            from onnx import numpy_helper

            model = onnx.load_from_string(self._onnx)
            for tensor in model.graph.initializer:
                if tensor.name in values:
                    tensor.CopyFrom(numpy_helper.from_array(values[tensor.name], tensor.name))
            with self._lock:
                self._onnx = model.SerializeToString()
                self._session = None
            self._missing = []

        def _find(self, name):
            for entry in self._io:
                if entry[0] == name:
                    return entry
            raise SimulationError(f"no tensor named {name!r}")

        def _session_run(self, names, feeds):
            """Runs the ONNX in ONNX Runtime; BF16/FP8 I/O go through float32 (ONNX Runtime's numpy API lacks them)."""
            with self._lock:
                if self._session is None:
                    import onnxruntime as ort

                    from trtpipe.runtime.onnxruntime_engine import QDQ_SESSION_OPTIONS

                    self._session = ort.InferenceSession(_float_io(self._onnx), providers=["CPUExecutionProvider"],
                                                         **QDQ_SESSION_OPTIONS)
            narrow = {k for k in feeds if self._find(k)[3] in ("BF16", "FP8")}
            feeds = {(k + "__float" if k in narrow else k): (v.astype(np.float32) if k in narrow else v) for k, v in feeds.items()}
            return self._session.run(names, feeds)

        def get_tensor_name(self, index):
            return self._io[index][0]

        def get_tensor_mode(self, name):
            return names["TensorIOMode"][self._find(name)[1].upper()]

        def get_tensor_dtype(self, name):
            return data_type[self._find(name)[3]]

        def get_tensor_shape(self, name):
            return self._find(name)[2]

        def get_tensor_format(self, name, profile_index=0):
            self._find(name)
            return names["TensorFormat"].LINEAR

        def get_tensor_location(self, name):
            self._find(name)
            return names["TensorLocation"].DEVICE

        def get_tensor_vectorized_dim(self, name, profile_index=0):
            self._find(name)
            return -1

        def get_tensor_components_per_element(self, name, profile_index=0):
            self._find(name)
            return 1

        def get_tensor_bytes_per_component(self, name, profile_index=0):
            bits = _BITS[self._find(name)[3]]
            return -1 if bits < 8 else bits // 8  # TensorRT: -1 for sub-byte types

        def is_shape_inference_io(self, name):
            self._find(name)
            return False

        def get_tensor_profile_shape(self, name, profile_index):
            if not 0 <= profile_index < len(self._profiles) or name not in self._profiles[profile_index]:
                raise SimulationError(f"no profile shapes for {name!r} in profile {profile_index}")
            return self._profiles[profile_index][name]

        @property
        def num_layers(self):
            return len(self._layer_names())

        @property
        def device_memory_size(self):
            return self._device_memory()

        @property
        def device_memory_size_v2(self):
            return self._device_memory()

        def _device_memory(self) -> int:
            """A stand-in for the activation memory: the bytes of every I/O tensor at the profile's max."""
            total = 0
            for name, mode, shape, dtype in self._io:
                if mode == "input" and -1 in shape:
                    shape = self._profiles[0][name][2]
                total += _nbytes([max(d, 1) for d in shape], dtype)
            return total

        def create_runtime_config(self):
            return _bound["IRuntimeConfig"]()

        def create_execution_context(self, strategy_or_config=None):
            if cuda.current_device != self._device:
                log("ERROR", "ICudaEngine::createExecutionContext: the current device is not the engine's")
                return None
            config = strategy_or_config if isinstance(strategy_or_config, _RuntimeConfig) else None
            return _bound["IExecutionContext"](self, config)

        def create_engine_inspector(self):
            return _bound["EngineInspector"](self)

        def _layer_names(self) -> list[str]:
            """The ONNX node names, standing in for TensorRT's layers (onnx is loaded on first use)."""
            if self._layers is None:
                import onnx

                graph = onnx.load_from_string(self._onnx).graph
                self._layers = [node.name or f"{node.op_type}_{i}" for i, node in enumerate(graph.node)]
            return self._layers

        def _output_shapes(self, input_shapes: dict[str, tuple]) -> dict[str, tuple]:
            """Output shapes from ONNX shape inference with the inputs' shapes; -1 where they depend on the data."""
            key = tuple(sorted(input_shapes.items()))
            if key not in self._shapes_cache:
                self._shapes_cache[key] = _infer_output_shapes(self._onnx, input_shapes)
            return self._shapes_cache[key]

    class _RuntimeConfig(_Bound):
        def __init__(self):
            self._strategy = names["ExecutionContextAllocationStrategy"].STATIC
            graph_strategy = names.get("CudaGraphStrategy")
            self._graph_strategy = graph_strategy.DISABLED if graph_strategy else None

        def set_execution_context_allocation_strategy(self, strategy=None):
            self._strategy = strategy

        def get_execution_context_allocation_strategy(self):
            return self._strategy

        @property
        def cuda_graph_strategy(self):
            return self._graph_strategy

        @cuda_graph_strategy.setter
        def cuda_graph_strategy(self, value):
            self._graph_strategy = value

    class _EngineInspector(_Bound):
        def __init__(self, engine):
            self._engine = engine
            self._context = None

        @property
        def execution_context(self):
            return self._context

        @execution_context.setter
        def execution_context(self, context):
            self._context = context

        def get_engine_information(self, format):
            layers = self._engine._layer_names()
            if format is names["LayerInformationFormat"].ONELINE:
                return "\n".join(layers)
            bindings = [name for name, *_ in self._engine._io]
            return json.dumps({"Layers": [{"Name": name, "LayerType": "Simulated"} for name in layers], "Bindings": bindings})

        def get_layer_information(self, index, format):
            name = self._engine._layer_names()[index]
            if format is names["LayerInformationFormat"].ONELINE:
                return name
            return json.dumps({"Name": name, "LayerType": "Simulated"})

    class _ExecutionContext(_Bound):
        def __init__(self, engine, runtime_config):
            self._engine = engine
            self._shapes: dict[str, tuple] = {}
            self._addresses: dict[str, int] = {}
            self._profiler = None
            self._generation = 0  # bumped by every shape change: a graph captured before it is stale
            self._dirty = True  # a shape changed since the last launch outside a capture
            self._config = runtime_config
            self._launches = 0  # not TensorRT API: tests read it
            graph_strategy = names.get("CudaGraphStrategy")
            self._own_graphs = bool(runtime_config is not None and graph_strategy is not None
                                    and runtime_config.cuda_graph_strategy == graph_strategy.WHOLE_GRAPH_CAPTURE)
            self._own_graph_captures = 0
            self._profile = 0

        @property
        def engine(self):
            return self._engine

        @property
        def active_optimization_profile(self):
            return self._profile

        def set_optimization_profile_async(self, profile_index, stream_handle):
            if not 0 <= int(profile_index) < len(self._engine._profiles):
                log("ERROR", f"IExecutionContext::setOptimizationProfileAsync: profile {profile_index} out of range "
                    f"(the engine has {len(self._engine._profiles)})")
                return False
            if cuda.is_capturing(stream_handle):
                log("ERROR", "IExecutionContext::setOptimizationProfileAsync: not allowed while the stream is capturing")
                return False
            if int(profile_index) != self._profile:
                self._profile = int(profile_index)
                self._shapes = {}  # TensorRT: the input shapes must be set again for the new profile
                self._generation += 1
                self._dirty = True
            return True

        @property
        def profiler(self):
            return self._profiler

        @profiler.setter
        def profiler(self, value):
            self._profiler = value

        def set_input_shape(self, name, shape):
            _, mode, static, _ = self._engine._find(name)
            shape = tuple(int(d) for d in shape)
            if mode != "input" or len(shape) != len(static):
                log("ERROR", f"IExecutionContext::setInputShape: Error Code 3: API Usage Error ({name!r} of rank {len(static)})")
                return False
            low, _, high = self._engine._profiles[self._profile].get(name, (static, static, static))
            if any(not lo <= d <= hi for lo, d, hi in zip(low, shape, high)):
                log("ERROR", f"IExecutionContext::setInputShape: Error Code 3: API Usage Error ({name!r} {shape} outside the profile)")
                return False
            if self._shapes.get(name) != shape:
                self._shapes[name] = shape
                self._generation += 1
                self._dirty = True
            return True

        def _input_shapes(self) -> dict[str, tuple]:
            return {n: self._shapes.get(n, static) for n, mode, static, _ in self._engine._io if mode == "input"}

        def get_tensor_shape(self, name):
            _, mode, static, _ = self._engine._find(name)
            inputs = self._input_shapes()
            if mode == "input":
                return inputs[name]
            if any(-1 in s for s in inputs.values()):
                return static  # unknown until every dynamic input shape is set
            return self._engine._output_shapes(inputs)[name]

        @property
        def all_binding_shapes_specified(self):
            return not any(-1 in s for s in self._input_shapes().values())

        def set_tensor_address(self, name, ptr):
            self._engine._find(name)
            self._addresses[name] = int(ptr)
            return True

        def get_tensor_address(self, name):
            return self._addresses.get(name, 0)

        def is_stream_capturable(self, stream_handle):
            return int(stream_handle) != 0  # the legacy default stream cannot be captured

        def execute_async_v3(self, stream_handle):
            engine = self._engine
            if engine._missing:
                raise SimulationError(
                    f"execute_async_v3 on a weight-stripped engine whose weights {engine._missing[:3]} were never "
                    "refitted: on a GPU, garbage results (refit with Refitter/OnnxParserRefitter first)")
            if cuda.current_device != engine._device:
                log("ERROR", f"IExecutionContext::enqueueV3: Cuda Runtime (invalid resource handle): the calling thread's "
                    f"device is {cuda.current_device}, the engine's {engine._device}")
                return False
            inputs = self._input_shapes()
            for name, shape in inputs.items():
                if -1 in shape:
                    raise SimulationError(f"execute_async_v3 with the dynamic shape of input {name!r} unset ({shape}): call set_input_shape")
            for name, *_ in engine._io:
                if name not in self._addresses:
                    raise SimulationError(f"execute_async_v3 with no address for tensor {name!r}: call set_tensor_address")
            outputs = engine._output_shapes(inputs)
            for name, shape in outputs.items():
                if -1 in shape:
                    raise SimulationError(f"execute_async_v3 with output {name!r} of data-dependent shape {shape} and no "
                                          "IOutputAllocator: TensorRT cannot know how much to write")
            capturing = cuda.is_capturing(stream_handle)
            if capturing and (self._dirty or not engine._header.get("capturable", True)):
                # What TensorRT does then (allocate, synchronize) is not capturable: the capture breaks.
                cuda.cudaMalloc(1)  # fails with cudaErrorStreamCaptureUnsupported and invalidates the capture
                log("ERROR", "IExecutionContext::enqueueV3: Error Code 1: Cuda Runtime (operation not permitted when "
                    "stream is capturing)")
                return False
            dtypes = {name: engine._find(name)[3] for name in {**inputs, **outputs}}
            nbytes = {name: _nbytes(shape, dtypes[name]) for name, shape in {**inputs, **outputs}.items()}
            views = {}
            for name, size in nbytes.items():  # bounds are checked now, as the launch would fault on them
                _, _, kind, device = cuda.allocation(self._addresses[name])
                if kind != "device" or device != engine._device:
                    raise SimulationError(f"tensor {name!r} address is {kind} memory of device {device}, expected device "
                                          f"memory of device {engine._device}")
                views[name] = cuda.region(self._addresses[name], size, "device")
            profiler, generation = self._profiler, self._generation
            captured_shapes = dict(inputs)

            def run():
                if capturing and self._generation != generation:
                    raise SimulationError(
                        f"a CUDA graph captured with input shapes {captured_shapes} was replayed after the execution "
                        f"context's input shapes were set again ({self._generation - generation} change(s) since; now "
                        f"{self._input_shapes()}): on a GPU, stale or garbage results (a graph belongs to the context "
                        "state it was captured with)"
                    )
                feeds = {}
                for name, shape in inputs.items():
                    written = cuda.last_write.get(self._addresses[name])
                    if written != nbytes[name]:
                        raise SimulationError(
                            f"input {name!r} of shape {shape} needs {nbytes[name]} bytes of {dtypes[name]}, "
                            f"the last copy into it wrote {written}: wrong dtype or shape"
                        )
                    feeds[name] = np.frombuffer(views[name], _ml_dtype(dtypes[name])).reshape(shape).copy()
                out_names = list(outputs)
                for name, value in zip(out_names, engine._session_run(out_names, feeds)):
                    views[name][:] = np.ascontiguousarray(value.astype(_ml_dtype(dtypes[name]))).tobytes()
                if profiler is not None:
                    for layer in engine._layer_names():
                        profiler.report_layer_time(layer, 0.001)  # simulated milliseconds

            result = cuda.enqueue(stream_handle, run, "execute_async_v3")
            if result[0] != 0:
                log("ERROR", f"IExecutionContext::enqueueV3: Cuda Runtime ({result[0].name})")
                return False
            if not capturing:
                self._dirty = False
                if self._own_graphs:
                    self._own_graph_captures += 1  # TensorRT-RTX captures/replays its own graph per shape
            self._launches += 1
            return True

    class _HostMemory(_Bound, bytes):
        @property
        def nbytes(self):
            return len(self)

        @property
        def dtype(self):
            return data_type.UINT8

    # -- builder -------------------------------------------------------------------------------

    class _Tensor(_Bound):
        def __init__(self, name, shape, dtype, is_input):
            self._name, self._shape, self._dtype, self._is_input = name, shape, dtype, is_input

        name = property(lambda self: self._name)
        shape = property(lambda self: self._shape)
        dtype = property(lambda self: data_type[self._dtype])
        is_network_input = property(lambda self: self._is_input)
        is_network_output = property(lambda self: not self._is_input)

    class _Network(_Bound):
        def __init__(self, flags):
            strongly = names["NetworkDefinitionCreationFlag"].STRONGLY_TYPED.value
            self._strongly_typed = flavor == "tensorrt_rtx" or surface.version.startswith("11") or bool(flags & (1 << strongly))
            self._onnx: bytes | None = None
            self._inputs: list = []
            self._outputs: list = []
            self._layers: list[str] = []

        num_inputs = property(lambda self: len(self._inputs))
        num_outputs = property(lambda self: len(self._outputs))
        num_layers = property(lambda self: len(self._layers))
        name = property(lambda self: "simulated network")

        def get_input(self, index):
            return self._inputs[index]

        def get_output(self, index):
            return self._outputs[index]

    class _ParserError(_Bound):
        def __init__(self, code, desc, node=-1, node_name="", node_operator=""):
            self._values = (code, desc, node, node_name, node_operator)

        def code(self):
            return self._values[0]

        def desc(self):
            return self._values[1]

        def node(self):
            return self._values[2]

        def node_name(self):
            return self._values[3]

        def node_operator(self):
            return self._values[4]

    class _OnnxParser(_ParserErrors):
        def __init__(self, network, logger):
            register_logger(logger, "createParser")
            self._network = network
            self._errors: list = []

        def supports_operator(self, op_type):
            import onnx.defs

            return onnx.defs.has(op_type)

        def parse_from_file(self, path):
            import onnx

            try:
                model = onnx.load(str(path))
            except Exception as exc:  # noqa: BLE001 - TensorRT logs the failure and returns False
                self._errors.append(_bound["ParserError"](names["ErrorCode"].MODEL_DESERIALIZE_FAILED, f"cannot read {path}: {exc}"))
                return False
            return self._parse(model)

        def parse(self, model, path=None):
            import onnx

            return self._parse(onnx.load_from_string(bytes(model)))

        def _parse(self, model) -> bool:
            error_code = names["ErrorCode"]
            for index, node in enumerate(model.graph.node):
                if node.domain not in ("", "ai.onnx") or not self.supports_operator(node.op_type):
                    self._errors.append(_bound["ParserError"](
                        error_code.UNSUPPORTED_NODE, f"No importer registered for op: {node.op_type}",
                        index, node.name, node.op_type))
                    log("ERROR", f"ModelImporter: no importer registered for op {node.op_type} (node {index} {node.name!r})")
                    return False
            data = model.SerializeToString()
            try:
                io = onnx_io(data, "ONNX")
            except SimulationError as exc:
                self._errors.append(_bound["ParserError"](error_code.UNSUPPORTED_NODE_DATATYPE, str(exc)))
                return False
            network = self._network
            network._onnx = data
            network._inputs = [_bound["ITensor"](n, s, d, True) for n, (m, s, d) in io.items() if m == "input"]
            network._outputs = [_bound["ITensor"](n, s, d, False) for n, (m, s, d) in io.items() if m == "output"]
            network._layers = [node.name for node in model.graph.node]
            return True

    class _OptimizationProfile(_Bound):
        def __init__(self):
            self._shapes: dict[str, tuple] = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 - TensorRT's keyword names
            shapes = tuple(tuple(int(d) for d in s) for s in (min, opt, max))
            if any(not a <= b <= c for a, b, c in zip(*shapes)):
                log("ERROR", f"IOptimizationProfile::setDimensions: {input!r} needs min <= opt <= max, got {shapes}")
                return
            self._shapes[input] = shapes

        def get_shape(self, input):  # noqa: A002
            return list(self._shapes.get(input, ()))

    class _TimingCache(_Bound):
        def __init__(self, data: bytes):
            self._data = data or b"simulated timing cache\n"

        def serialize(self):
            return _bound["IHostMemory"](self._data)

        def reset(self):
            return True

        def combine(self, other, ignore_mismatch):
            return True

    class _BuilderConfig(_Bound):
        def __init__(self):
            self._profiles: list = []
            self._flags: set = set()
            self._pools: dict = {}
            self._level = 3
            self._calibrator = None
            self._calibration_profile = None
            self._cache = None
            self._monitor = None
            self._verbosity = names["ProfilingVerbosity"].LAYER_NAMES_ONLY
            self._compute_capabilities: list = []
            self._hardware = names["HardwareCompatibilityLevel"].NONE

        def add_optimization_profile(self, profile):
            self._profiles.append(profile)
            return len(self._profiles) - 1

        num_optimization_profiles = property(lambda self: len(self._profiles))

        def set_memory_pool_limit(self, pool, pool_size):
            self._pools[pool] = int(pool_size)

        def get_memory_pool_limit(self, pool):
            return self._pools.get(pool, 1 << 40)

        builder_optimization_level = property(lambda self: self._level, lambda self, v: object.__setattr__(self, "_level", int(v)))

        def set_flag(self, flag):
            flags = names["BuilderFlag"]
            if flag == getattr(flags, "EXCLUDE_LEAN_RUNTIME", None) and flags.VERSION_COMPATIBLE not in self._flags:
                log("ERROR", "IBuilderConfig::setFlag: Error Code 3: API Usage Error (kEXCLUDE_LEAN_RUNTIME can only "
                    "be set if kVERSION_COMPATIBLE is set)")  # measured on TensorRT-RTX 1.7
                return
            self._flags.add(flag)

        @property
        def hardware_compatibility_level(self):
            return self._hardware

        @hardware_compatibility_level.setter
        def hardware_compatibility_level(self, level):
            if flavor == "tensorrt_rtx":  # measured on TensorRT-RTX 1.7: a warning, and the level is ignored
                log("WARNING", "setHardwareCompatibilityLevel() is unsupported in TensorRT-RTX.")
                return
            object.__setattr__(self, "_hardware", level)

        def get_flag(self, flag):
            return flag in self._flags

        def clear_flag(self, flag):
            self._flags.discard(flag)

        int8_calibrator = property(lambda self: self._calibrator, lambda self, v: object.__setattr__(self, "_calibrator", v))
        progress_monitor = property(lambda self: self._monitor, lambda self, v: object.__setattr__(self, "_monitor", v))
        profiling_verbosity = property(lambda self: self._verbosity, lambda self, v: object.__setattr__(self, "_verbosity", v))

        def set_calibration_profile(self, profile):
            self._calibration_profile = profile
            return True

        def get_calibration_profile(self):
            return self._calibration_profile

        def create_timing_cache(self, serialized_timing_cache):
            return _bound["ITimingCache"](bytes(serialized_timing_cache))

        def set_timing_cache(self, cache, ignore_mismatch):
            self._cache = cache
            return True

        def get_timing_cache(self):
            return self._cache

        @property
        def num_compute_capabilities(self):
            return len(self._compute_capabilities)

        @num_compute_capabilities.setter
        def num_compute_capabilities(self, count):
            self._compute_capabilities = [None] * int(count)

        def set_compute_capability(self, compute_capability, index):
            if not 0 <= index < len(self._compute_capabilities):
                log("ERROR", f"IBuilderConfig::setComputeCapability: index {index} out of range "
                    f"(num_compute_capabilities is {len(self._compute_capabilities)})")
                return False
            self._compute_capabilities[index] = compute_capability
            return True

        def get_compute_capability(self, index):
            return self._compute_capabilities[index]

    class _Builder(_Bound):
        def __init__(self, logger):
            register_logger(logger, "createInferBuilder")
            self._logger = logger

        def create_network(self, flags=0):
            return _bound["INetworkDefinition"](int(flags))

        def create_builder_config(self):
            return _bound["IBuilderConfig"]()

        def create_optimization_profile(self):
            return _bound["IOptimizationProfile"]()

        def build_serialized_network(self, network, config):
            monitor = config._monitor
            steps = ["parse network", "calibrate", "optimize", "serialize"]
            if monitor is not None:
                monitor.phase_start("Building engine", None, len(steps))
            for step, name in enumerate(steps):
                if monitor is not None and not monitor.step_complete("Building engine", step):
                    log("ERROR", "Builder::buildSerializedNetwork: the build was cancelled by the progress monitor")
                    return None
                if name == "parse network" and not self._check_profiles(network, config):
                    return None
                if name == "calibrate" and not self._calibrate(network, config):
                    return None
            if monitor is not None:
                monitor.phase_finish("Building engine")
            profiles = [dict(p._shapes) for p in config._profiles] or [{}]
            flags = names["BuilderFlag"]
            has = lambda name: getattr(flags, name, None) in config._flags  # noqa: E731
            if has("VERSION_COMPATIBLE") and not has("EXCLUDE_LEAN_RUNTIME") and flavor == "tensorrt_rtx":
                # Measured on TensorRT-RTX 1.7 (CPU): its wheel has no lean runtime to embed.
                log("ERROR", "IBuilder::buildSerializedNetwork: Error Code 6: API Usage Error (Unable to load library: "
                    "libnvinfer_lean.so.1: cannot open shared object file: No such file or directory)")
                return None
            if flavor == "tensorrt_rtx":
                chosen = [c for c in config._compute_capabilities if c is not None]
                target = {"kind": "aot", "compute_capabilities": [c.name for c in chosen]}
            else:
                props = cuda.devices[cuda.current_device]
                target = {"kind": "gpu", "compute_capability": f"{props.major}.{props.minor}"}
                if config._hardware.name != "NONE":
                    target["hardware_compatibility"] = config._hardware.name
            if config._cache is None and flavor != "tensorrt_rtx":
                config._cache = _bound["ITimingCache"](b"")
            refit = "REFIT" if has("REFIT") else "REFIT_IDENTICAL" if has("REFIT_IDENTICAL") else None
            if has("STRIP_PLAN") and refit is None:
                log("ERROR", "IBuilder::buildSerializedNetwork: kSTRIP_PLAN needs kREFIT or kREFIT_IDENTICAL")
                return None
            onnx_bytes, stripped = (_strip(network._onnx) if has("STRIP_PLAN") else (network._onnx, []))
            header = json.loads(engine_header({}, flavor=flavor, version=version, target=target))
            header["profiles"] = [{name: [list(s) for s in shapes] for name, shapes in p.items()} for p in profiles]
            header.update(version_compatible=has("VERSION_COMPATIBLE"), exclude_lean_runtime=has("EXCLUDE_LEAN_RUNTIME"),
                          refit=refit, stripped=has("STRIP_PLAN"), stripped_weights=stripped,
                          weights_digest=_weights_digest(network._onnx) if refit == "REFIT_IDENTICAL" else None)
            return _bound["IHostMemory"](MAGIC + json.dumps(header).encode() + b"\n" + onnx_bytes)

        def _check_profiles(self, network, config) -> bool:
            if network._onnx is None:
                log("ERROR", "Builder::buildSerializedNetwork: the network has no layers (was it parsed?)")
                return False
            for tensor in network._inputs:
                if -1 in tensor._shape and not any(tensor._name in p._shapes for p in config._profiles):
                    log("ERROR", f"Network has dynamic or shape inputs, but no optimization profile has been defined "
                        f"(input {tensor._name!r})")
                    return False
            return True

        def _calibrate(self, network, config) -> bool:
            """TensorRT 10's implicit INT8: feed the calibrator's batches of the calibration profile's OPT shape."""
            int8 = getattr(names["BuilderFlag"], "INT8", None)
            if int8 is None or int8 not in config._flags:
                return True
            if network._strongly_typed:
                log("ERROR", "BuilderFlag::kINT8 is not allowed with a strongly typed network")
                return False
            calibrator = config._calibrator
            if calibrator is None:
                return True  # INT8 without a calibrator needs Q/DQ or dynamic ranges; not simulated further
            if calibrator.read_calibration_cache() is not None:
                return True
            profile = config._calibration_profile or (config._profiles[0] if config._profiles else None)
            input_names = [t._name for t in network._inputs]
            shapes = {}
            for tensor in network._inputs:
                shape = tensor._shape
                if -1 in shape:
                    shape = profile._shapes[tensor._name][1]  # the OPT shape: what TensorRT reads per batch
                shapes[tensor._name] = shape
            calibrator.get_batch_size()
            batches = 0
            while True:
                try:
                    pointers = calibrator.get_batch(input_names)
                except Exception as exc:  # noqa: BLE001 - the bindings print it and end calibration
                    print(f"[ERROR] Exception caught in get_batch(): {exc}", file=sys.stderr)
                    pointers = None
                if not pointers:
                    break
                if len(pointers) != len(input_names):
                    raise SimulationError(
                        f"get_batch returned {len(pointers)} pointer(s) for inputs {input_names}: the bindings copy "
                        f"one pointer per input from the list (pyInt8.cpp getBatch), reading past its end"
                    )
                for name, pointer in zip(input_names, pointers):
                    cuda.region(int(pointer), _nbytes(shapes[name], network._inputs[input_names.index(name)]._dtype), "device")
                batches += 1
            if batches == 0:
                log("ERROR", "Calibration failure occurred with no scaling factors detected (no calibration batch)")
                return False
            calibrator.write_calibration_cache(b"TRT-simulated-EntropyCalibration2\n" +
                                               "".join(f"{n}: 3c010a14\n" for n in input_names).encode())
            return True

    class _SerializationConfig(_Bound):
        def __init__(self):
            self._flags: set = set()

        def set_flag(self, flag):
            self._flags.add(flag)
            return True

        def clear_flag(self, flag):
            self._flags.discard(flag)
            return True

        def get_flag(self, flag):
            return flag in self._flags

        @property
        def flags(self):
            return sum(1 << int(f) for f in self._flags)

    class _Refitter(_Bound):
        """TensorRT's refitter: weights are named as the ONNX parser named them (the initializers' names)."""

        def __init__(self, engine, logger):
            register_logger(logger, "createInferRefitter")
            self._engine = engine
            self._pending: dict = {}
            if not engine.refittable:
                log("ERROR", "createInferRefitter: Error Code 3: API Usage Error (the engine was not built refittable)")

        def get_all_weights(self):
            return list(self._engine._refittable_weights()) if self._engine.refittable else []

        def get_missing_weights(self):
            return [name for name in self._engine._missing if name not in self._pending]

        def refit_cuda_engine(self):
            engine = self._engine
            if not engine.refittable:
                log("ERROR", "IRefitter::refitCudaEngine: the engine is not refittable")
                return False
            missing = self.get_missing_weights()
            if missing:
                log("ERROR", f"IRefitter::refitCudaEngine: missing weights {missing[:3]} (get_missing_weights)")
                return False
            if engine._header.get("refit") == "REFIT_IDENTICAL" and self._pending:
                digest = _weights_digest(engine._onnx, self._pending)
                if digest != engine._header.get("weights_digest"):
                    raise SimulationError("refitted weights differ from the build's on an engine built with "
                                          "REFIT_IDENTICAL: on a GPU, wrong results (TensorRT assumed them equal)")
            engine._set_weights(self._pending)
            self._pending = {}
            return True

        def refit_cuda_engine_async(self, stream_handle):
            return self.refit_cuda_engine()

    class _OnnxParserRefitter(_ParserErrors):
        def __init__(self, refitter, logger):
            register_logger(logger, "createParserRefitter")
            self._refitter = refitter
            self._errors: list = []

        def refit_from_file(self, path):
            import onnx

            try:
                model = onnx.load(str(path))
            except Exception as exc:  # noqa: BLE001 - TensorRT logs the failure and returns False
                self._errors.append(_bound["ParserError"](names["ErrorCode"].MODEL_DESERIALIZE_FAILED, f"cannot read {path}: {exc}"))
                return False
            return self._refit(model)

        def refit_from_bytes(self, model_bytes, path=None):
            import onnx

            return self._refit(onnx.load_from_string(bytes(model_bytes)))

        def _refit(self, model) -> bool:
            from onnx import numpy_helper

            wanted = self._refitter._engine._refittable_weights()
            given = {t.name: t for t in model.graph.initializer}
            for name, (dtype, dims) in wanted.items():
                tensor = given.get(name)
                if tensor is None or (tensor.data_type, tuple(tensor.dims)) != (dtype, dims):
                    seen = "absent" if tensor is None else f"type {tensor.data_type} dims {tuple(tensor.dims)}"
                    self._errors.append(_bound["ParserError"](names["ErrorCode"].INVALID_GRAPH,
                                                              f"refit weights {name!r}: {seen}, the engine has type "
                                                              f"{dtype} dims {dims}"))
                    log("ERROR", f"IParserRefitter: weights {name!r} do not match the engine's ({seen})")
                    return False
                self._refitter._pending[name] = numpy_helper.to_array(tensor)
            return True

    _bound = {
        "Runtime": bind(_Runtime, "Runtime"),
        "ICudaEngine": bind(_CudaEngine, "ICudaEngine"),
        "IExecutionContext": bind(_ExecutionContext, "IExecutionContext"),
        "EngineInspector": bind(_EngineInspector, "EngineInspector"),
        "IRuntimeConfig": bind(_RuntimeConfig, "IRuntimeConfig"),
        "IHostMemory": bind(_HostMemory, "IHostMemory"),
        "ITensor": bind(_Tensor, "ITensor"),
        "INetworkDefinition": bind(_Network, "INetworkDefinition"),
        "ParserError": bind(_ParserError, "ParserError"),
        "OnnxParser": bind(_OnnxParser, "OnnxParser"),
        "IOptimizationProfile": bind(_OptimizationProfile, "IOptimizationProfile"),
        "ITimingCache": bind(_TimingCache, "ITimingCache"),
        "IBuilderConfig": bind(_BuilderConfig, "IBuilderConfig"),
        "Builder": bind(_Builder, "Builder"),
        "ISerializationConfig": bind(_SerializationConfig, "ISerializationConfig"),
        "Refitter": bind(_Refitter, "Refitter"),
        "OnnxParserRefitter": bind(_OnnxParserRefitter, "OnnxParserRefitter"),
    }

    def nptype(trt_type):
        if trt_type.name in _NPTYPE:
            return _NPTYPE[trt_type.name]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    def volume(iterable):
        result = 1
        for d in iterable:
            result *= d
        return result

    names.update(_bound)
    names.update(ILogger=ILogger, Logger=Logger, IProfiler=IProfiler, IProgressMonitor=IProgressMonitor,
                 IInt8Calibrator=IInt8Calibrator, IInt8EntropyCalibrator2=IInt8EntropyCalibrator2, nptype=nptype,
                 volume=volume)
    for name, value in names.items():
        if value is not None and name in surface.module:
            setattr(trt, name, value)
    return trt


_FLOAT_TYPES = (1, 10, 16)  # FLOAT, FLOAT16, BFLOAT16: the weights TensorRT's ONNX parser makes refittable


def _refittable(onnx_bytes: bytes) -> dict[str, tuple]:
    """Initializer name -> (ONNX data type, dims) of the floating-point initializers (what a refit sets)."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    return {t.name: (t.data_type, tuple(t.dims)) for t in model.graph.initializer if t.data_type in _FLOAT_TYPES}


def _strip(onnx_bytes: bytes) -> tuple[bytes, list[str]]:
    """The ONNX with the refittable initializers' values removed (name, type and dims kept: a weight-stripped plan),
    and their names."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    names = []
    for tensor in model.graph.initializer:
        if tensor.data_type in _FLOAT_TYPES:
            names.append(tensor.name)
            stripped = onnx.TensorProto(name=tensor.name, data_type=tensor.data_type, dims=list(tensor.dims))
            tensor.CopyFrom(stripped)
    return model.SerializeToString(), names


def _weights_digest(onnx_bytes: bytes, replaced: dict | None = None) -> str:
    """sha256 of the refittable weights' values (``replaced`` overriding some): what REFIT_IDENTICAL assumes."""
    import hashlib

    import onnx
    from onnx import numpy_helper

    digest = hashlib.sha256()
    for tensor in onnx.load_from_string(onnx_bytes).graph.initializer:
        if tensor.data_type in _FLOAT_TYPES:
            value = (replaced or {}).get(tensor.name)
            digest.update(np.ascontiguousarray(value if value is not None else numpy_helper.to_array(tensor)).tobytes())
    return digest.hexdigest()


def _version_compatible(header: dict, flavor: str, version: str) -> bool:
    """A VERSION_COMPATIBLE plan deserializes on the same flavour's same major, at its version or later."""
    from packaging.version import Version

    if not header.get("version_compatible") or header["flavor"] != flavor:
        return False
    built, mine = Version(header["version"]), Version(version)
    return built.major == mine.major and mine >= built


def _float_io(onnx_bytes: bytes) -> bytes:
    """The ONNX with BF16/FP8 graph inputs and outputs made float32 through Casts (the numpy API has no such types)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    narrow = (TensorProto.BFLOAT16, TensorProto.FLOAT8E4M3FN)
    casts = []
    for value in graph.input:
        if value.type.tensor_type.elem_type in narrow:
            original, value.name = value.name, value.name + "__float"
            casts.append(helper.make_node("Cast", [value.name], [original], to=value.type.tensor_type.elem_type))
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    tail = []
    for value in graph.output:
        if value.type.tensor_type.elem_type in narrow:
            original = value.name
            inner = original + "__narrow"
            for node in graph.node:
                node.output[:] = [inner if o == original else o for o in node.output]
                node.input[:] = [inner if i == original else i for i in node.input]
            tail.append(helper.make_node("Cast", [inner], [original], to=TensorProto.FLOAT))
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    if not casts and not tail:
        return onnx_bytes
    nodes = casts + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString()


def _infer_output_shapes(onnx_bytes: bytes, input_shapes: dict[str, tuple]) -> dict[str, tuple]:
    """Output shapes by ONNX shape inference (with data propagation) for concrete input shapes; -1 where unknown."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    for value in model.graph.input:
        if value.name in input_shapes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, input_shapes[value.name]):
                dim.Clear()
                dim.dim_value = int(size)
    for value in model.graph.output:
        value.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = {}
    for value in inferred.graph.output:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
    return shapes

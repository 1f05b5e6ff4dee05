"""What is in an ONNX model or an engine, and what TensorRT thinks of it."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

from trtpipe.errors import DependencyError, InputError
from trtpipe.onnx.load import check_onnx_path, graph_io, load_onnx, opset_of
from trtpipe.spec import EngineSidecar, TensorInfo, sidecar_path_for


@dataclass(frozen=True)
class ParserVerdict:
    """What an installed TensorRT ONNX parser says about a model."""

    flavor: str  # e.g. "TensorRT-RTX 1.7.1.116"
    parsed: bool
    errors: tuple[str, ...]  # the parser's errors: node index, name, op type, message
    unsupported_ops: dict[str, tuple[str, ...]]  # op type the parser has no importer for -> node names


@dataclass(frozen=True)
class OnnxReport:
    path: Path
    opset: int | None
    producer: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    op_histogram: dict[str, int]
    parser: ParserVerdict | None
    parser_missing: str | None = None  # why no parser verdict (no TensorRT installed)
    precision: str = "fp32"  # what the ONNX computes in by itself (runtime.onnxruntime_engine.model_precision)
    quantization: str | None = None  # a model that came quantized: its Q/DQ in one line (Quantization.summary)
    refused: str | None = None  # why build, calibrate and fidelity refuse its Q/DQ (asymmetric, a type TensorRT lacks)

    def format(self) -> str:
        lines = [f"ONNX {self.path}  (opset {self.opset}, producer {self.producer or 'unknown'})"]
        lines.append(f"  precision {self.quantization or self.precision}")
        if self.refused:
            lines.append(f"  TensorRT cannot build its Q/DQ: {self.refused}")
        lines += _format_tensors("inputs", self.inputs) + _format_tensors("outputs", self.outputs)
        total = sum(self.op_histogram.values())
        lines.append(f"  {total} nodes, {len(self.op_histogram)} op types:")
        for op, count in sorted(self.op_histogram.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"    {op:<24} {count}")
        if self.parser is None:
            lines.append(f"  TensorRT parser: not checked ({self.parser_missing})")
        elif self.parser.parsed and not self.parser.unsupported_ops:
            lines.append(f"  TensorRT parser ({self.parser.flavor}): every node parsed")
        else:
            lines.append(f"  TensorRT parser ({self.parser.flavor}): REJECTED")
            for op, names in self.parser.unsupported_ops.items():
                shown = ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")
                lines.append(f"    no importer for {op}: {len(names)} node(s): {shown}")
            for error in self.parser.errors:
                lines.append(f"    {error}")
        return "\n".join(lines)


def inspect_onnx(path: str | Path, flavor_name: str | None = None) -> OnnxReport:
    """Describes an ONNX model and asks the installed TensorRT parser (if any) which nodes it rejects."""
    from trtpipe.errors import OnnxModelError
    from trtpipe.onnx.quantized import check_tensorrt_takes, scan_quantization
    from trtpipe.runtime.onnxruntime_engine import model_precision

    path = check_onnx_path(path)
    model = load_onnx(path)
    inputs, outputs = graph_io(model)
    histogram = collections.Counter(node.op_type for node in model.graph.node)
    quantization = scan_quantization(model)
    refused = None
    try:
        check_tensorrt_takes(quantization, path.name, "build")
    except OnnxModelError as exc:
        refused = exc.message.split(": ", 1)[-1]
    about = dict(precision=model_precision(model), quantization=quantization.summary() if quantization else None,
                 refused=refused)
    try:
        from trtpipe.flavors import get_flavor

        flavor = get_flavor(flavor_name)
    except DependencyError as exc:
        return OnnxReport(path, opset_of(model), model.producer_name, inputs, outputs, dict(histogram), None,
                          parser_missing=exc.message, **about)
    from trtpipe.flavors import no_gc_inside_tensorrt

    with no_gc_inside_tensorrt():
        verdict = _ask_parser(flavor, path, model)
    return OnnxReport(path, opset_of(model), model.producer_name, inputs, outputs, dict(histogram), verdict, **about)


def _ask_parser(flavor, path: Path, model) -> ParserVerdict:
    from trtpipe.builder.builder import describe_parser_errors
    from trtpipe.flavors import make_logger

    trt = flavor.module
    logger = make_logger(flavor)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    parsed = bool(parser.parse_from_file(str(path)))
    errors = () if parsed else tuple(describe_parser_errors(parser).split("; "))
    # The parser stops at its first error; asking per op type finds every op it has no importer for.
    unsupported: dict[str, list[str]] = collections.defaultdict(list)
    for node in model.graph.node:
        if not parser.supports_operator(node.op_type):
            unsupported[node.op_type].append(node.name or "(unnamed)")
    return ParserVerdict(flavor.label, parsed, errors, {op: tuple(names) for op, names in unsupported.items()})


@dataclass(frozen=True)
class EngineReport:
    path: Path
    sidecar: EngineSidecar | None
    sidecar_problem: str | None
    loaded: dict | None  # what TensorRT reports after deserializing
    not_loaded_because: str | None
    layers: tuple[str, ...] = field(default=())

    def format(self) -> str:
        lines = [f"engine {self.path}  ({self.path.stat().st_size / 1e6:.1f} MB)"]
        side = self.sidecar
        if side is None:
            lines.append(f"  sidecar: {self.sidecar_problem}")
        else:
            lines += [
                f"  {side.built_by}",
                f"  precision {_precision_line(side)}; weights {side.weights}",
                f"  from {side.onnx_path} (sha256 {side.onnx_sha256[:12]}), {side.build_seconds:.2f} s on {side.built_at}",
            ]
            if side.network_onnx_path:
                lines.append(f"  network ONNX {side.network_onnx_path} ({side.network_onnx_precision}, sha256 "
                             f"{(side.network_onnx_sha256 or '')[:12]}): what --backend onnxruntime runs")
            lines += _format_tensors("inputs", side.inputs) + _format_tensors("outputs", side.outputs)
            for profile_index, profile in enumerate(side.profiles):
                for name, shapes in profile.items():
                    lines.append(
                        f"  profile {profile_index} {name}: min {_dims(shapes['min'])} opt {_dims(shapes['opt'])} "
                        f"max {_dims(shapes['max'])}"
                    )
            lines += [f"  {line}" for line in _travels(side)]
            lines += [f"  note: {note}" for note in side.notes]
        if self.loaded is None:
            lines.append(f"  TensorRT: not loaded here ({self.not_loaded_because})")
        else:
            lines.append(f"  TensorRT: loaded; {self.loaded}")
            lines += [f"    {layer}" for layer in self.layers]
        return "\n".join(lines)


def inspect_engine(path: str | Path) -> EngineReport:
    """The engine's sidecar, plus what TensorRT reports when it can load the engine here (needs a GPU)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such engine file", "build one with `trtpipe build MODEL.onnx`")
    sidecar, problem = None, None
    try:
        sidecar = EngineSidecar.load(sidecar_path_for(path))
    except InputError as exc:
        problem = str(exc)
    reason = _gpu_problem()
    if reason is not None:
        return EngineReport(path, sidecar, problem, None, f"deserializing needs a GPU; {reason}")
    from trtpipe.flavors import no_gc_inside_tensorrt

    with no_gc_inside_tensorrt():
        return _load_and_describe(path, sidecar, problem)


def _gpu_problem() -> str | None:
    """Why no engine can be deserialized here (None: a CUDA device answers), asked through trtpipe.cuda."""
    from trtpipe import cuda
    from trtpipe.errors import CudaError

    try:
        if cuda.device_count() < 1:
            return "CUDA found no device"
    except (CudaError, DependencyError) as exc:
        return exc.message
    return None


def _load_and_describe(path: Path, sidecar: EngineSidecar | None, problem: str | None) -> EngineReport:
    from trtpipe import cuda
    from trtpipe.errors import EngineMismatchError
    from trtpipe.flavors import get_flavor, make_logger
    from trtpipe.runtime.compat import check_flavor, check_gpu

    try:
        flavor = get_flavor(sidecar.trt_flavor if sidecar else None)
    except DependencyError as exc:
        return EngineReport(path, sidecar, problem, None, exc.message)
    if sidecar is not None:
        gpu = cuda.device_info(cuda.current_device())
        try:  # TensorRT would only say the plan is invalid; the sidecar says why
            check_flavor(sidecar, flavor.name, flavor.version, str(path))
            check_gpu(sidecar, gpu.name, gpu.major, gpu.minor, str(path), flavor=flavor)
        except EngineMismatchError as exc:
            return EngineReport(path, sidecar, problem, None, str(exc))
    trt = flavor.module
    logger = make_logger(flavor)
    runtime = trt.Runtime(logger)
    if sidecar is not None and (sidecar.build_config or {}).get("version_compatible"):
        runtime.engine_host_code_allowed = True  # its lean runtime is host code (TensorRTEngine does the same)
    with logger.capture_errors() as errors:
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        return EngineReport(path, sidecar, problem, None, "; ".join(errors[-2:]) or "TensorRT refused it")
    io = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        io.append(f"{engine.get_tensor_mode(name).name.lower()} {name} {tuple(engine.get_tensor_shape(name))} "
                  f"{engine.get_tensor_dtype(name).name}")
    # device_memory_size is gone in TensorRT 11 and RTX; _v2 exists from 10.1 on (trtpipe/data/trt_api_*.json).
    memory = engine.device_memory_size_v2 if hasattr(engine, "device_memory_size_v2") else engine.device_memory_size
    loaded = {"io": io, "profiles": engine.num_optimization_profiles, "device_memory_bytes": int(memory)}
    inspector = engine.create_engine_inspector()
    layers = tuple(inspector.get_layer_information(i, trt.LayerInformationFormat.ONELINE)
                   for i in range(engine.num_layers))
    return EngineReport(path, sidecar, problem, loaded, None, layers)


def _travels(side: EngineSidecar) -> list[str]:
    """Where else the engine runs and how its weights come in (build --hardwareCompatibilityLevel, --vc, --stripWeights,
    --refit), as the sidecar records it."""
    config, lines = side.build_config or {}, []
    level = (side.target or {}).get("hardware_compatibility") or config.get("hardware_compatibility")
    if level:
        lines.append(f"hardware compatibility {level}" + (" (any GPU of compute capability 8.0 or later)"
                                                          if level == "ampere+" else ""))
    if config.get("version_compatible"):
        lean = "the lean runtime left out (--excludeLeanRuntime)" if config.get("exclude_lean_runtime") else "its lean runtime embedded"
        lines.append(f"version-compatible: runs on {side.flavor_label} and later of the same major, {lean}")
    if side.weights_stripped:
        lines.append("weights: STRIPPED (refit before it runs: weights=MODEL.onnx, or trtpipe refit)")
    if side.refittable:
        lines.append(f"refittable; graph sha256 {(side.graph_sha256 or '?')[:12]}, weights sha256 "
                     f"{(side.weights_sha256 or '?')[:12]}" + (f" from {side.weights_onnx}" if side.weights_onnx else ""))
    return lines


def _precision_line(side: EngineSidecar) -> str:
    """``fp16 (strongly typed FP16 ONNX ...)``; for a model that came quantized, its own precision and the asked one."""
    shown, realised = side.precision_shown, side.precision_realised
    if shown == side.precision:
        return f"{shown} ({realised})"
    how = realised.replace(shown, "").strip(" ;()") if realised.startswith(shown) else realised
    return f"{shown} ({how}; built with --precision {side.precision})"


def _format_tensors(title: str, tensors) -> list[str]:
    return [f"  {title}:"] + [f"    {t.name:<20} {_dims(t.shape):<20} {t.dtype}" for t in tensors]


def _dims(shape) -> str:
    return "x".join("?" if d == -1 else str(d) for d in shape)

"""Reading ONNX files with errors a user can act on, and describing their inputs and outputs."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from trtpipe.errors import InputError, OnnxModelError
from trtpipe.spec import TensorInfo

log = logging.getLogger("trtpipe.onnx")

# ONNX TensorProto element types -> numpy dtype names (the ones vision models use).
_ONNX_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16",
}


def check_onnx_path(path: str | Path) -> Path:
    """Checks that ``path`` names an existing regular file, with a clear error otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file", "check the path; `trtpipe export NAME` writes engines/NAME.onnx")
    if path.is_dir():
        raise InputError(f"{path} is a directory, expected an .onnx file", "give the path of the .onnx file itself")
    return path


# Operand positions that carry weights: a graph input (not an initializer) in one of these is almost
# always a weight that the export left out (torch.onnx.export(..., export_params=False)).
WEIGHT_OPERANDS = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (1,), "PRelu": (1,),
    "BatchNormalization": (1, 2, 3, 4), "InstanceNormalization": (1, 2), "LayerNormalization": (1, 2),
    "GroupNormalization": (1, 2),
}


@dataclass(frozen=True)
class OnnxIntake:
    """An ONNX model as trtpipe reads it, and what reading it found that the user should know.

    None of the findings stops a build: TensorRT's parser is the authority on what can be built, ONNX
    Runtime on what can run; both accept models the ONNX checker's strict mode refuses (outputs with no
    shape field, a value_info whose rank disagrees with shape inference, ...).
    """

    path: Path
    model: object  # onnx.ModelProto, initializer-backed graph inputs removed (see ``constant_inputs``)
    checker_findings: tuple[str, ...] = ()  # "checker: ...", "strict shape inference: ..." (first finding of each)
    constant_inputs: tuple[str, ...] = ()  # graph inputs that are also initializers: treated as constants
    # (input name, "Conv 'node'"): graph inputs with no initializer that feed a weight operand
    weight_like_inputs: tuple[tuple[str, str], ...] = ()
    # (output name, times listed): outputs graph.output lists more than once, kept once (as TensorRT's parser does)
    repeated_outputs: tuple[tuple[str, int], ...] = ()

    @property
    def warnings(self) -> tuple[str, ...]:
        """The checker's findings and weights exported as inputs: what may be wrong with the model."""
        warnings = [
            f"ONNX {finding} (a warning only: TensorRT's parser and ONNX Runtime decide what runs; "
            "onnx.checker.check_model(path, full_check=True) gives the full report)"
            for finding in self.checker_findings
        ]
        if self.weight_like_inputs:
            warnings.append(
                f"graph input(s) {_names(tuple(f'{name} ({consumer})' for name, consumer in self.weight_like_inputs))} "
                "have no initializer but feed weight operands: the model looks exported without its weights "
                "(torch.onnx.export(..., export_params=False)), so the engine takes them as inputs; export with "
                "export_params=True to build the weights in"
            )
        return tuple(warnings)

    @property
    def notes(self) -> tuple[str, ...]:
        """One line per finding (the warnings, then the repeated outputs and constant inputs), for the sidecar."""
        repeated = tuple(
            f"output {name!r} is listed {count} times in the ONNX's graph outputs; kept once (TensorRT's parser marks "
            "a tensor as a network output once)"
            for name, count in self.repeated_outputs
        )
        if not self.constant_inputs:
            return self.warnings + repeated
        return self.warnings + repeated + (
            f"{len(self.constant_inputs)} graph input(s) are also initializers (as keep_initializers_as_inputs=True "
            f"exports list them): {_names(self.constant_inputs)}; treated as constant weights, not network inputs",
        )


def read_onnx(path: str | Path, *, check: bool = True, load_weights: bool = True) -> OnnxIntake:
    """Reads an ONNX model, refusing only what cannot be read; everything else becomes a finding.

    Refused: a missing path, a file that is not ONNX or is truncated, a missing or short external data
    file, an empty graph. The ONNX checker's findings (structural check, then strict shape inference)
    are returned, not raised: TensorRT's parser and ONNX Runtime run models it refuses, and the build
    reports the parser's own error, naming the node, for what TensorRT cannot build.

    Graph inputs that are also initializers (``keep_initializers_as_inputs=True`` exports) are removed
    from ``model.graph.input`` for IR version 4 and newer (IR 3 requires them listed): they are weights,
    and trtpipe's rewrites (FP16, Q/DQ) must not leave replaced weights behind as network inputs. An output that
    ``graph.output`` lists more than once is kept once (``repeated_outputs`` says so), as TensorRT's parser keeps it.

    Args:
        path: the .onnx file (external data files are found beside it).
        check: run the ONNX checker and strict shape inference and return their findings.
        load_weights: load external data too; False reads only the graph (fast inspection).

    Returns:
        OnnxIntake with the onnx.ModelProto and the findings.

    Raises:
        InputError: the path is missing or a directory.
        OnnxModelError: not ONNX, truncated or corrupt, an external data file missing or too short,
            or an empty graph.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = check_onnx_path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError, onnx.checker.ValidationError) as exc:
        raise OnnxModelError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}: {_first_line(exc)})",
            "the file is truncated, corrupt or not ONNX; export it again (trtpipe export NAME) or check the download",
        ) from None
    if not model.graph.node:
        raise OnnxModelError(
            f"{path}: the graph has no nodes (seen {len(model.graph.input)} inputs, "
            f"{len(model.graph.output)} outputs, 0 nodes)",
            "the export produced an empty graph; check the exporter's output and that the file is a model, not a stub",
        )
    _check_external_data(path, model)
    findings = checker_findings(path, model) if check else ()  # before the weights load: the graph is enough
    if load_weights:
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(model, str(path.parent))
        except (OSError, ValueError, onnx.checker.ValidationError) as exc:
            raise OnnxModelError(
                f"{path}: its external data cannot be read ({type(exc).__name__}: {_first_line(exc)})",
                "keep the .onnx and its external data files together in one folder, as the exporter wrote them",
            ) from None
    constant_inputs = _drop_constant_inputs(model)
    repeated = _drop_repeated_outputs(model)
    return OnnxIntake(path, model, findings, constant_inputs, weight_like_inputs(model), repeated)


def load_onnx(path: str | Path, *, check: bool = True, load_weights: bool = True):
    """:func:`read_onnx`, logging its warnings; returns the onnx.ModelProto.

    Constant inputs (initializers listed as inputs, a harmless export choice) are logged at debug level
    only; the builder records every note in the engine's sidecar.

    Raises:
        InputError, OnnxModelError: as :func:`read_onnx`.
    """
    intake = read_onnx(path, check=check, load_weights=load_weights)
    for warning in intake.warnings:
        log.warning("%s: %s", intake.path, warning)
    if intake.constant_inputs:
        log.debug("%s: %s", intake.path, intake.notes[-1])
    return intake.model


def checker_findings(path: Path, model) -> tuple[str, ...]:
    """The first finding of the ONNX checker on ``path`` and of strict shape inference on ``model``.

    The checker reads the file itself (so models over 2 GB and external data are checked as stored);
    shape inference needs shapes only, so ``model`` should be read without its external data.
    """
    import onnx

    findings = []
    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        # The checker does not say which tensor lacks its shape field; name them.
        shapeless = [
            value.name for value in (*model.graph.input, *model.graph.output, *model.graph.value_info)
            if value.type.HasField("tensor_type") and not value.type.tensor_type.HasField("shape")
        ]
        where = f" (no shape field: {_names(tuple(shapeless))})" if shapeless and "'shape'" in str(exc) else ""
        findings.append(f"checker: {_first_line(exc).rstrip('.')}{where}")
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as exc:
        findings.append(f"strict shape inference: {_first_line(exc)}")
    return tuple(findings)


def weight_like_inputs(model) -> tuple[tuple[str, str], ...]:
    """(name, consumer) of graph inputs with no initializer used only as weight operands (Conv's W, Gemm's B, ...).

    An input that also feeds a data operand (Conv's X, any other op) is data, whatever else it feeds.
    """
    initializers = {init.name for init in model.graph.initializer}
    inputs = {value.name for value in model.graph.input} - initializers
    weight_uses: dict[str, str] = {}
    data_uses: set[str] = set()
    for node in model.graph.node:
        weight_operands = WEIGHT_OPERANDS.get(node.op_type, ())
        for index, name in enumerate(node.input):
            if name not in inputs:
                continue
            if index in weight_operands:
                weight_uses.setdefault(name, f"{node.op_type} {node.name or '(unnamed)'!r}")
            else:
                data_uses.add(name)
    return tuple((name, consumer) for name, consumer in weight_uses.items() if name not in data_uses)


def _drop_constant_inputs(model) -> tuple[str, ...]:
    """Removes graph inputs that are also initializers (IR >= 4); returns their names."""
    initializers = {init.name for init in model.graph.initializer}
    constant = [value for value in model.graph.input if value.name in initializers]
    if not constant or model.ir_version < 4:
        return tuple(value.name for value in constant)
    kept = [value for value in model.graph.input if value.name not in initializers]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    return tuple(value.name for value in constant)


def _drop_repeated_outputs(model) -> tuple[tuple[str, int], ...]:
    """Keeps each graph output once (the first listing); returns (name, times listed) of those listed more often.

    ONNX lets graph.output name a tensor twice; TensorRT's parser marks it once (and logs an API usage error for the
    rest) and trtpipe's rewrites (FP16 casts per listed output) would clash, so every path sees it once."""
    counts: dict[str, int] = {}
    for value in model.graph.output:
        counts[value.name] = counts.get(value.name, 0) + 1
    if all(count == 1 for count in counts.values()):
        return ()
    seen: set[str] = set()
    kept = []
    for value in model.graph.output:
        if value.name not in seen:
            seen.add(value.name)
            kept.append(value)
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return tuple((name, count) for name, count in counts.items() if count > 1)


def plugin_nodes(model) -> list:
    """The nodes of ``model``'s graph that are TensorRT plugin ops or custom ops: TensorRT's naming (``EfficientNMS_TRT``,
    ``BatchedNMSDynamic_TRT``) or a domain that is none of ONNX Runtime's own (``TRT``, ``trt.plugins``) and no function
    the model defines itself (torch dynamo exports call model-local functions, which ONNX Runtime inlines)."""
    local = {(function.domain, function.name) for function in model.functions}
    return [
        node for node in model.graph.node
        if node.op_type.endswith("_TRT") or (
            node.domain not in ("", "ai.onnx", "ai.onnx.ml", "com.microsoft") and (node.domain, node.op_type) not in local
        )
    ]


def plugin_kind(node) -> str:
    """What :func:`plugin_nodes` found, for a message: "a TensorRT plugin op" or "a custom op (domain 'x')"."""
    if node.op_type.endswith("_TRT") or node.domain in ("TRT", "trt", "trt.plugins"):
        return "a TensorRT plugin op"
    return f"a custom op (domain {node.domain!r})"


def check_no_plugin_nodes(path: str | Path, model, needed_by: str) -> None:
    """Refuses a model with a TensorRT plugin or custom-domain node where ONNX Runtime must run it (calibration,
    fidelity, ONNX Runtime engines): ONNX Runtime has no such kernel ("is not a registered function/op").

    Raises:
        OnnxModelError: naming the node, its op and domain, and what needs ONNX Runtime.
    """
    plugins = plugin_nodes(model)
    if plugins:
        node = plugins[0]
        raise OnnxModelError(
            f"{path}: node {node.name or '(unnamed)'!r} is {node.op_type} (domain {node.domain!r}), {plugin_kind(node)}"
            f"{f' (and {len(plugins) - 1} more)' if len(plugins) > 1 else ''}, which ONNX Runtime has no kernel for, "
            f"and {needed_by} runs the model in ONNX Runtime",
            "TensorRT builds it with the plugin loaded (trtpipe build, fp32 or fp16); to calibrate or measure it on the "
            "CPU, export the model without the plugin node (end at the raw outputs) and run that step after the engine",
        )


def passthrough_outputs(model) -> tuple[str, ...]:
    """Graph inputs that are also graph outputs with no node between (torch dynamo exports drop the Identity)."""
    outputs = {value.name for value in model.graph.output}
    initializers = {init.name for init in model.graph.initializer}
    return tuple(v.name for v in model.graph.input if v.name in outputs and v.name not in initializers)


def _check_external_data(path: Path, model) -> None:
    """Every external data file a tensor names exists beside the model and holds the bytes it points at."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    for tensor in _all_tensors(model.graph):
        if not uses_external_data(tensor):
            continue
        info = ExternalDataInfo(tensor)
        data_path = path.parent / info.location
        if not data_path.is_file():
            raise OnnxModelError(
                f"{path}: external data file {info.location!r} of tensor {tensor.name!r} is missing "
                f"(looked for {data_path})",
                "keep the .onnx and its external data files together in one folder, as the exporter wrote them; "
                "copy the missing file back or export the model again",
            )
        end = (info.offset or 0) + (info.length or 0)
        if info.length and data_path.stat().st_size < end:
            raise OnnxModelError(
                f"{path}: external data file {info.location!r} of tensor {tensor.name!r} has "
                f"{data_path.stat().st_size} bytes, the tensor needs bytes {info.offset or 0}..{end}",
                "the data file is truncated or belongs to another export; copy it again or export the model again",
            )


def _all_tensors(graph):
    """Initializers and tensor attributes (Constant values), subgraphs (If/Loop/Scan bodies) included."""
    import onnx

    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.TENSOR:
                yield attribute.t
            elif attribute.type == onnx.AttributeProto.TENSORS:
                yield from attribute.tensors
            elif attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_tensors(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from _all_tensors(subgraph)


def onnx_sha256(path: str | Path, model=None) -> str:
    """sha256 of the .onnx file and of any external data files it names, in a stable order.

    Args:
        path: the .onnx file.
        model: the model read from ``path`` without its weights, to save reading the graph again. A model
            whose weights were loaded no longer names its data files (onnx moves the bytes in), so the
            file's graph is read again to find them: a changed weights file must change the hash.
    """
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes())
    for location in external_data_files(path, model):
        digest.update((path.parent / location).read_bytes())
    return digest.hexdigest()


def external_data_files(path: str | Path, model=None) -> tuple[str, ...]:
    """The external data file names (relative to the model's folder) that ``path`` refers to, sorted."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    def locations(proto) -> set[str]:
        return {ExternalDataInfo(t).location for t in _all_tensors(proto.graph) if uses_external_data(t)}

    found = locations(model) if model is not None else set()
    if not found:
        import onnx

        found = locations(onnx.load(str(path), load_external_data=False))
    return tuple(sorted(found))


def graph_io(model) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The model's real inputs (initializers excluded) and outputs, with -1 for symbolic dimensions."""
    initializers = {init.name for init in model.graph.initializer}

    def describe(value_info) -> TensorInfo:
        tensor_type = value_info.type.tensor_type
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor_type.shape.dim
        )
        return TensorInfo(value_info.name, dims, _ONNX_DTYPES.get(tensor_type.elem_type, f"onnx:{tensor_type.elem_type}"))

    inputs = tuple(describe(v) for v in model.graph.input if v.name not in initializers)
    listed: dict[str, object] = {}
    for value in model.graph.output:  # an output listed twice is one tensor (see _drop_repeated_outputs)
        listed.setdefault(value.name, value)
    outputs = tuple(describe(v) for v in listed.values())
    return inputs, outputs


def opset_of(model) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return None


def _names(names: tuple[str, ...], shown: int = 6) -> str:
    return ", ".join(names[:shown]) + (f" (+{len(names) - shown} more)" if len(names) > shown else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


# ONNX Runtime's messages start with the C++ place that raised them ("/onnxruntime_src/.../model.cc:181
# onnxruntime::Model::Model(ModelProto&&, const PathString&, ...) Unsupported model IR version: 11, ..."): the reason
# comes after the signature, and cutting the message to a length would keep the signature and drop the reason.
_ORT_PLACE = re.compile(r"\S+\.(?:cc|cpp|h):\d+ [\w:~<>]+\(.*?\) (?=[A-Z\[])")
_ORT_NO_KERNEL = re.compile(r"Could not find an implementation for (\w+)\(\d+\) node with name '([^']*)'")


def onnxruntime_reason(exc: BaseException, model=None, limit: int = 300) -> str:
    """ONNX Runtime's reason for an error, on one line, without the C++ function signature it starts with.

    Args:
        exc: what ONNX Runtime raised.
        model: the onnx.ModelProto it was given, if at hand: a "no implementation" error of a node that computes in
            bfloat16 then says so (ONNX Runtime's CPU provider has no bfloat16 MatMul, Conv, Gemm ... kernels).
        limit: characters kept, from the reason's start.
    """
    text = _ORT_PLACE.sub("", " ".join(str(exc).split()))
    missing = _ORT_NO_KERNEL.search(text)
    if missing and model is not None:
        typed = _node_types(model, missing.group(2))
        if "bfloat16" in typed:
            return (f"ONNX Runtime's CPU execution provider has no bfloat16 kernel for {missing.group(1)} "
                    f"{missing.group(2)!r} (its inputs are {', '.join(typed)}): {text}")[:limit]
    return text[:limit]


def _node_types(model, node_name: str) -> list[str]:
    """The element types of the named node's inputs (initializers and inferred values), as dtype names."""
    import onnx

    node = next((n for n in model.graph.node if n.name == node_name), None)
    if node is None:
        return []
    types = {init.name: init.data_type for init in model.graph.initializer}
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - inference is a help for the message only
        inferred = model.graph
    for value in (*inferred.input, *inferred.value_info, *inferred.output):
        types.setdefault(value.name, value.type.tensor_type.elem_type)
    return sorted({_ONNX_DTYPES.get(types[name], str(types[name])) for name in node.input if name in types})


def check_no_empty_axes(path: str | Path, model) -> None:
    """Refuses a graph input with an axis of fixed size 0 (``dim_value: 0``, which some exporters write for "unknown").

    ONNX Runtime and TensorRT take it literally (ONNX Runtime: "Got: 1 Expected: 0"; TensorRT: static dimensions that
    no profile matches), so no image batch can be fed; trtpipe would otherwise read it as dynamic.

    Raises:
        OnnxModelError: naming the input, its shape and the axis.
    """
    initializers = {init.name for init in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        empty = [i for i, d in enumerate(dims) if d.HasField("dim_value") and d.dim_value == 0]
        if empty:
            shape = [d.dim_param or d.dim_value if (d.HasField("dim_param") or d.HasField("dim_value")) else "?" for d in dims]
            axis = "its batch axis" if empty[0] == 0 else f"axis {empty[0]}"
            raise OnnxModelError(
                f"{path}: input {value.name!r} has shape {shape}: {axis} has fixed size 0, which ONNX Runtime and "
                "TensorRT take literally (no batch of images fits it), not as a dynamic axis",
                f"make axis {empty[0]} dynamic (input.type.tensor_type.shape.dim[{empty[0]}].dim_param = 'N'; onnx.save) "
                "or give it a size of 1 or more, e.g. export again with dynamic_axes",
            )


def check_ir_version(path: str | Path, model, needed_by: str) -> None:
    """Refuses a model whose IR version is newer than the installed onnx reads (ONNX Runtime reads no newer).

    Called where onnx or ONNX Runtime must read the model (FP16 conversion, calibration, fidelity, ONNX Runtime
    engines); TensorRT's parser reads newer IR versions and judges FP32 builds itself.

    Raises:
        OnnxModelError: naming the model's IR version, the newest the installed onnx reads, and who needs it.
    """
    import onnx

    if model.ir_version > onnx.IR_VERSION:
        raise OnnxModelError(
            f"{path}: IR version {model.ir_version}, newer than the installed onnx {onnx.__version__} reads (IR version "
            f"up to {onnx.IR_VERSION}; ONNX Runtime reads no newer), and {needed_by} reads the model with them",
            f"upgrade onnx and onnxruntime (pip install -U onnx onnxruntime), or write the model with IR version "
            f"{onnx.IR_VERSION} or older (model.ir_version = {onnx.IR_VERSION}; onnx.save), as its opsets allow",
        )

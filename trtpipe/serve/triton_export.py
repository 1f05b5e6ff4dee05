"""A Triton Inference Server model repository from an engine or ONNX: the network model plus ``<name>_pipeline``.

    model_repository/
      efficientnet_lite0/            the network: model.plan (tensorrt_plan) or model.onnx (onnxruntime_onnx)
        config.pbtxt                 max_batch_size, I/O, dynamic_batching, instance_group
        1/model.onnx
      efficientnet_lite0_pipeline/   Python backend: encoded image bytes in, task results out
        config.pbtxt
        1/model.py                   trtpipe/serve/pipeline_model.py
        1/pipeline.json              network model name, I/O names, task, default top-k, max batch
        1/preprocess.json            the PreprocessSpec, so the server needs no original files
        1/labels.txt                 class names, when the spec names a label set

The pipeline model decodes and preprocesses with trtpipe's own code, calls the network model through
Triton (BLS), so the network's requests are batched by Triton's dynamic batcher, and returns the task
head's results. A failed export leaves the repository as it was: both models are written to a staging
folder beside it and moved into place only when complete.
"""

from __future__ import annotations

import dataclasses

import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtpipe.errors import ConfigError, InputError
from trtpipe.io import ensure_writable_dir
from trtpipe.serve.pbtxt import Enum, to_pbtxt
from trtpipe.spec import PreprocessSpec, TensorInfo, preprocess_path_for

# numpy dtype names (as sidecars and graph_io give them) -> Triton data types.
TRITON_DTYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
    "int64": "TYPE_INT64", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "float32": "TYPE_FP32",
    "float64": "TYPE_FP64", "string": "TYPE_STRING",
}
ONNX_RUNNERS = ("onnxruntime", "python")  # Triton's onnxruntime backend, or ONNX Runtime inside the Python backend
DEFAULT_ONNX_MAX_BATCH = 8
DEFAULT_TOPK = 5
PIPELINE_SUFFIX = "_pipeline"
_MODEL_SOURCES = Path(__file__).parent

# What the pipeline model returns per task: (name, Triton type, dims without the batch dim).
PIPELINE_OUTPUTS = {
    "classification": (("class_ids", "TYPE_INT32", [-1]), ("scores", "TYPE_FP32", [-1]), ("labels", "TYPE_STRING", [-1])),
    "detection": (
        ("boxes", "TYPE_FP32", [-1, 4]), ("scores", "TYPE_FP32", [-1]),
        ("class_ids", "TYPE_INT32", [-1]), ("labels", "TYPE_STRING", [-1]),
    ),
    "segmentation": (
        ("mask", "TYPE_UINT16", [-1, -1]), ("class_ids", "TYPE_INT32", [-1]), ("fractions", "TYPE_FP32", [-1]),
        ("labels", "TYPE_STRING", [-1]),
    ),
}


@dataclass(frozen=True)
class NetworkModel:
    """What the network model of a repository is made from."""

    kind: str  # "engine" | "onnx"
    path: Path
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    max_batch: int  # Triton's max_batch_size; 0: Triton does not batch it (fixed batch, or an output without one)
    preferred_batch_sizes: tuple[int, ...]
    spec: PreprocessSpec | None
    extra_files: tuple[Path, ...] = ()  # ONNX external data, copied beside model.onnx
    notes: tuple[str, ...] = ()
    # With max_batch 0 and a dynamic batch axis (an output has no batch axis): images per network call.
    batch_limit: int | None = None
    # Outputs whose first axis is the batch: the ones the pipeline model splits per image (None: all).
    batch_outputs: tuple[str, ...] | None = None
    # An engine of several optimization profiles: the ones each instance may use (instance_group.profile); ()
    # leaves it out (one profile, or ONNX).
    profiles: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_repository` wrote."""

    repo: Path
    network_name: str
    pipeline_name: str | None
    network_runtime: str  # e.g. "tensorrt_plan", "onnxruntime_onnx", "python (ONNX Runtime)"
    max_batch: int
    seconds: float
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        models = self.network_name + (f" + {self.pipeline_name}" if self.pipeline_name else "")
        return (
            f"wrote Triton repository {self.repo}: {models} ({self.network_runtime}, max batch {self.max_batch}) "
            f"in {self.seconds:.2f} s"
        )


def export_repository(
    model_path: str | Path,
    repo: str | Path,
    *,
    name: str | None = None,
    max_batch: int | None = None,
    instances: int = 1,
    pipeline_instances: int = 2,
    queue_delay_us: int = 1000,
    dynamic_batching: bool = True,
    onnx_runner: str = "onnxruntime",
    pipeline: bool = True,
    topk: int = DEFAULT_TOPK,
    labels: str | None = None,
    spec: PreprocessSpec | None = None,
    force: bool = False,
) -> ExportResult:
    """Writes (or replaces) the network model and its ``<name>_pipeline`` model in a Triton repository.

    Args:
        model_path: a TensorRT engine (its sidecar beside it) or an ONNX file.
        repo: the model repository folder; other models in it are left alone.
        name: the network model's name. Defaults to the file's stem.
        max_batch: Triton's max_batch_size. Defaults to the engine profile's max batch, or 8 for an ONNX
            with a dynamic batch dimension; it may not exceed the engine profile's max.
        instances: execution instances of the network model (instance_group count).
        pipeline_instances: instances of the pipeline model; two let one decode while another waits on
            the network, so the network's dynamic batcher sees concurrent requests.
        queue_delay_us: how long the dynamic batcher may wait to fill a preferred batch size.
        dynamic_batching: False leaves Triton's dynamic batcher off in both models: every request runs
            alone (the baseline the benchmark compares against).
        onnx_runner: for an ONNX, "onnxruntime" (Triton's onnxruntime backend, as in NVIDIA's container)
            or "python" (ONNX Runtime inside the Python backend, for a Triton built without that backend).
        pipeline: also write the pipeline model (needs the preprocess spec).
        topk: classes returned when a request does not ask for another number.
        labels: the pipeline model's class names: a bundled label set ("coco80" ...) or a text file, one name
            per line. Defaults to the preprocess spec's set.
        force: write a TensorRT-RTX engine's repository although no stock Triton can load it.

    An output whose first axis is not the batch (a NonZero index list ``[4, num_kept]``, a fixed-size
    table) makes the network model ``max_batch_size: 0`` with full shapes: Triton would otherwise take
    that axis for the batch and drop it from the config. The pipeline model then calls the network with
    whole batches (up to the engine profile's max, or 8 for an ONNX) and returns the batched outputs' results.

    Raises:
        InputError: the model file or its sidecar/spec is missing or unreadable.
        ConfigError: invalid batch sizes, counts or names; --max-batch for a model Triton cannot batch;
            a TensorRT-RTX engine without ``force``; an output of unknown rank.
    """
    start = time.perf_counter()
    model_path = Path(model_path)
    _check_positive(instances=instances, pipeline_instances=pipeline_instances, topk=topk)
    if queue_delay_us < 0:
        raise ConfigError(f"queue delay is {queue_delay_us} us, expected >= 0", "e.g. --queue-delay-us 1000")
    if onnx_runner not in ONNX_RUNNERS:
        raise ConfigError(f"ONNX runner {onnx_runner!r} is not one of {ONNX_RUNNERS}", "use onnxruntime or python")
    network = describe_model(model_path, max_batch, force=force)
    if spec is not None:  # the caller's (trtpipe.presets.resolve_spec, the CLI's flags) over the file's own
        network = dataclasses.replace(network, spec=spec)
    if labels is not None and network.spec is not None:
        from trtpipe.labels import load_labels

        load_labels(labels)  # a missing file or unknown set fails here, before anything is written
        network = dataclasses.replace(network, spec=network.spec.replace(labels=labels))
    name = check_model_name(name or model_path.name.split(".")[0])
    if pipeline and network.spec is None:
        raise InputError(
            f"{model_path}: no preprocess spec found (sidecar 'preprocess' or {preprocess_path_for(model_path).name})",
            "export the model with `trtpipe export` (it writes the spec), give --preset NAME (or write the spec with "
            "`trtpipe spec MODEL.onnx`), or pass --no-pipeline for the network model alone",
        )
    if pipeline and len(network.inputs) != 1:
        raise ConfigError(
            f"{model_path} has {len(network.inputs)} inputs {[t.name for t in network.inputs]}; the pipeline feeds one image tensor",
            "pass --no-pipeline and send the network's inputs yourself",
        )
    if pipeline and network.batch_outputs == ():
        raise ConfigError(
            f"{model_path}: no output has a batch axis ({', '.join(f'{t.name} {_dims(t.shape)}' for t in network.outputs)}), "
            "so the pipeline model cannot split the network's results per image",
            "pass --no-pipeline and call the network model directly",
        )
    runtime = "tensorrt_plan" if network.kind == "engine" else (
        "onnxruntime_onnx" if onnx_runner == "onnxruntime" else "python (ONNX Runtime)"
    )
    repo = ensure_writable_dir(repo)
    staging = Path(tempfile.mkdtemp(prefix=f".{repo.name}.partial-", dir=repo.parent))
    try:
        delay = queue_delay_us if dynamic_batching else None
        _write_network_model(staging / name, name, network, runtime, instances, delay)
        models = [name]
        if pipeline:
            _write_pipeline_model(staging / (name + PIPELINE_SUFFIX), name, network, pipeline_instances, delay, topk)
            models.append(name + PIPELINE_SUFFIX)
        for model in models:
            _move_into_place(staging / model, repo / model, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(
        repo=repo,
        network_name=name,
        pipeline_name=name + PIPELINE_SUFFIX if pipeline else None,
        network_runtime=runtime,
        max_batch=network.max_batch,
        seconds=time.perf_counter() - start,
        notes=network.notes,
    )


# ----------------------------------------------------------------------------------------------
# What the network is
# ----------------------------------------------------------------------------------------------


def describe_model(model_path: Path, max_batch: int | None = None, *, force: bool = False) -> NetworkModel:
    """Reads I/O, batch limits and preprocess spec from an engine's sidecar or from an ONNX graph.

    Raises:
        ConfigError: ``max_batch`` below 1 or more than the model allows; a TensorRT-RTX engine (unless
            ``force``); an output whose rank is unknown.
    """
    if max_batch is not None and max_batch < 1:
        raise ConfigError(f"--max-batch is {max_batch}, expected >= 1", "give a positive batch size, e.g. --max-batch 8")
    if not model_path.is_file():
        raise InputError(f"{model_path}: no such file", "give an .engine (with its .engine.json sidecar) or an .onnx file")
    if model_path.suffix == ".onnx":
        return _describe_onnx(model_path, max_batch)
    return _describe_engine(model_path, max_batch, force)


def _describe_engine(path: Path, max_batch: int | None, force: bool) -> NetworkModel:
    from trtpipe.runtime.compat import load_sidecar

    sidecar = load_sidecar(path)  # also refuses an engine whose size disagrees with its sidecar
    notes = [
        f"the engine was built with {sidecar.trt_flavor} {sidecar.trt_version}: Triton's TensorRT backend must run the "
        "same TensorRT version (pick the Triton container release that ships it)"
    ]
    if sidecar.precision_shown != sidecar.precision:  # built from a model that came quantized
        notes.append(f"the engine computes {sidecar.precision_shown}: the Q/DQ of the ONNX it was built from")
    if sidecar.trt_flavor == "tensorrt_rtx":
        if not force:
            raise ConfigError(
                f"{path} is a {sidecar.flavor_label} engine: Triton's tensorrt_plan backend links TensorRT, not TensorRT-RTX, and no "
                "stock Triton can load this engine",
                f"serve the ONNX instead (trtpipe triton-export {sidecar.onnx_path}: Triton's onnxruntime backend), or "
                "build with TensorRT on the serving GPU (trtpipe build --flavor tensorrt, the TensorRT version of the "
                "Triton container) for its tensorrt backend; on an RTX PC, trtpipe's runtime runs the engine itself "
                "(trtpipe infer, Pipeline.from_engine); --force writes the repository anyway, for a Triton with a "
                "TensorRT-RTX backend of your own",
            )
        notes.append(
            "FORCED: a TensorRT-RTX engine needs the TensorRT-RTX runtime; Triton's stock TensorRT backend cannot load it"
        )
    if sidecar.weights_stripped:
        from trtpipe.refit import refit_command

        raise ConfigError(
            f"{path} is weight-stripped (built with --stripWeights): Triton's TensorRT backend would load a plan without "
            "its weights",
            f"ship the refitted plan: {refit_command(path)}, then trtpipe triton-export that engine",
        )
    batched = all(t.shape and t.shape[0] == -1 for t in sidecar.inputs)
    if not batched:
        if max_batch is not None:
            raise ConfigError(
                f"engine {path} has a fixed batch dimension {[t.shape for t in sidecar.inputs]}, --max-batch {max_batch} was asked",
                "rebuild from an ONNX with a dynamic batch dimension and --batch MIN:OPT:MAX",
            )
        return NetworkModel("engine", path, sidecar.inputs, sidecar.outputs, 0, (), sidecar.preprocess_spec, notes=tuple(notes))
    profile_max = max(p[t.name]["max"][0] for p in sidecar.profiles for t in sidecar.inputs if t.name in p)
    profile_opt = max(p[t.name]["opt"][0] for p in sidecar.profiles for t in sidecar.inputs if t.name in p)
    if max_batch is not None and max_batch > profile_max:
        raise ConfigError(
            f"--max-batch {max_batch} exceeds the engine's profile max batch {profile_max} ({path})",
            f"use --max-batch {profile_max} or less, or rebuild with trtpipe build --batch 1:{max_batch}:{max_batch}",
        )
    # The sidecar keeps -1 for every dynamic axis: a fixed first axis beside a dynamic input batch is not the batch.
    # (A data-dependent first axis is -1 in an engine too; the ONNX, which names its axes, tells them apart.)
    unbatched = tuple(t for t in sidecar.outputs if not t.shape or t.shape[0] != -1)
    if unbatched:
        return _not_batched_by_triton("engine", path, sidecar.inputs, sidecar.outputs, unbatched, max_batch, profile_max,
                                      sidecar.preprocess_spec, (), notes)
    limit = max_batch or profile_max
    preferred = tuple(sorted({b for b in (profile_opt, limit) if 1 < b <= limit}))
    profiles: tuple[str, ...] = ()
    if len(sidecar.profiles) > 1:
        # Triton's TensorRT backend runs a batch on a profile whose range holds it; every profile is offered to
        # every instance, and the dynamic batcher prefers the sizes the profiles were tuned for.
        profiles = tuple(str(i) for i in range(len(sidecar.profiles)))
        ranges = [(min(p[t.name]["min"][0] for t in sidecar.inputs if t.name in p),
                   max(p[t.name]["max"][0] for t in sidecar.inputs if t.name in p)) for p in sidecar.profiles]
        opts = {p[t.name]["opt"][0] for p in sidecar.profiles for t in sidecar.inputs if t.name in p}
        preferred = tuple(sorted({b for b in (*opts, limit) if 1 < b <= limit}))
        uncovered = [b for b in range(1, limit + 1) if not any(lo <= b <= hi for lo, hi in ranges)]
        if uncovered:
            notes.append(
                f"batch sizes {_span(uncovered)} are in none of the engine's {len(ranges)} profiles "
                f"({', '.join(f'{lo}..{hi}' for lo, hi in ranges)}): Triton's dynamic batcher may form them and the "
                "request then fails; the preferred batch sizes are the profiles' OPT batches"
            )
    return NetworkModel(
        "engine", path, _without_batch(sidecar.inputs), _without_batch(sidecar.outputs), limit, preferred,
        sidecar.preprocess_spec, notes=tuple(notes), profiles=profiles,
    )


def _span(numbers: list[int]) -> str:
    """[2, 3, 4, 7] -> "2..4, 7"."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}..{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def _describe_onnx(path: Path, max_batch: int | None) -> NetworkModel:
    from trtpipe.onnx.load import external_data_files, graph_io, read_onnx
    from trtpipe.onnx.quantized import scan_quantization

    model = _with_inferred_shapes(read_onnx(path, check=False, load_weights=False).model)
    _refuse_plugin_nodes(path, model)
    inputs, outputs = graph_io(model)
    shapeless = [t.name for t in outputs if not t.shape]
    if shapeless:
        raise ConfigError(
            f"{path}: output(s) {shapeless} declare no shape and ONNX shape inference finds none, but Triton's "
            "config.pbtxt needs every output's rank",
            "declare the outputs' shapes in the ONNX (onnx.helper.make_tensor_value_info), or pass "
            "--no-pipeline and write config.pbtxt's output dims yourself",
        )
    spec_path = preprocess_path_for(path)
    spec = PreprocessSpec.load(spec_path) if spec_path.is_file() else None
    extra = tuple(path.parent / name for name in external_data_files(path, model))
    quantization = scan_quantization(model)
    notes = (f"{path.name} came quantized: {quantization.precision}; the network model runs its Q/DQ as they are",) \
        if quantization else ()
    batched = all(t.shape and t.shape[0] == -1 for t in inputs)
    if not batched:
        if max_batch is not None:
            raise ConfigError(
                f"ONNX {path} has a fixed batch dimension {[t.shape for t in inputs]}, --max-batch {max_batch} was asked",
                "re-export the ONNX with a dynamic batch dimension (trtpipe export does)",
            )
        return NetworkModel("onnx", path, inputs, outputs, 0, (), spec, extra, notes)
    # The batch axis is the one the inputs name: an output whose first axis is fixed, or named otherwise
    # (NonZero's [4, num_kept], a detection count), has no batch axis.
    batch_names = {_first_axis_name(value) for value in model.graph.input if value.name in {t.name for t in inputs}}
    unbatched = tuple(
        tensor for tensor, value in zip(outputs, model.graph.output)
        if tensor.shape[0] != -1 or _first_axis_name(value) not in batch_names
    )
    if unbatched:
        return _not_batched_by_triton("onnx", path, inputs, outputs, unbatched, max_batch, DEFAULT_ONNX_MAX_BATCH,
                                      spec, extra, notes)
    limit = max_batch or DEFAULT_ONNX_MAX_BATCH
    return NetworkModel("onnx", path, _without_batch(inputs), _without_batch(outputs), limit, (limit,) if limit > 1 else (),
                        spec, extra, notes)


def _refuse_plugin_nodes(path: Path, model) -> None:
    """An ONNX repository is run by ONNX Runtime (Triton's onnxruntime backend, or the Python one), which has no
    TensorRT plugin ops: such a repository would fail when Triton loads it, so none is written."""
    from trtpipe.onnx.load import plugin_kind, plugin_nodes

    plugins = plugin_nodes(model)
    if plugins:
        node = plugins[0]
        more = f" (and {len(plugins) - 1} more such nodes)" if len(plugins) > 1 else ""
        raise ConfigError(
            f"{path}: node {node.name or '(unnamed)'!r} is {node.op_type} (domain {node.domain!r}), {plugin_kind(node)}"
            f"{more}; Triton's onnxruntime backend runs ONNX Runtime, which has no {node.op_type}, so it cannot load "
            "this model",
            f"build a TensorRT engine with the {node.op_type} plugin loaded and export that engine (tensorrt_plan "
            "backend), or export the ONNX without the plugin node (end at the raw boxes and scores; run NMS in the "
            "pipeline)",
        )


def _not_batched_by_triton(kind, path, inputs, outputs, unbatched, max_batch, batch_limit, spec, extra, notes) -> NetworkModel:
    """max_batch_size 0 and full shapes, for a model with an output whose first axis is not the batch."""
    shown = ", ".join(f"{t.name} {_dims(t.shape)}" for t in unbatched)
    if max_batch is not None:
        raise ConfigError(
            f"{path}: output(s) {shown} have no batch axis (their first axis is not the inputs' batch), so Triton "
            f"cannot batch the model, and --max-batch {max_batch} was asked",
            "drop --max-batch: the network model is written with max_batch_size 0 and full shapes",
        )
    note = (
        f"output(s) {shown} have no batch axis: the network model has max_batch_size 0 and full shapes (Triton would "
        f"take their first axis for the batch and drop it); the pipeline model sends up to {batch_limit} images per call"
    )
    names = {t.name for t in unbatched}
    return NetworkModel(
        kind, path, inputs, outputs, 0, (), spec, extra, notes=(*notes, note), batch_limit=batch_limit,
        batch_outputs=tuple(t.name for t in outputs if t.name not in names),
    )


def _with_inferred_shapes(model):
    """``model`` with output shapes filled in by ONNX shape inference where it finds them (it is lenient)."""
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError):
        return model


def _first_axis_name(value_info) -> str | None:
    """The symbolic name of a tensor's first axis ("N", "batch"), "" for an unnamed dynamic one, None if fixed."""
    dims = value_info.type.tensor_type.shape.dim
    if not dims or dims[0].HasField("dim_value"):
        return None
    return dims[0].dim_param


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join("?" if d == -1 else str(d) for d in shape) or "scalar"


def _without_batch(tensors: tuple[TensorInfo, ...]) -> tuple[TensorInfo, ...]:
    return tuple(TensorInfo(t.name, t.shape[1:], t.dtype) for t in tensors)


# ----------------------------------------------------------------------------------------------
# Writing the two models
# ----------------------------------------------------------------------------------------------


def network_config(name: str, network: NetworkModel, runtime: str, instances: int, queue_delay_us: int | None) -> dict[str, Any]:
    """The network model's config.pbtxt as a dict (see :mod:`trtpipe.serve.pbtxt`); no dynamic batching for a None delay."""
    config: dict[str, Any] = {"name": name}
    if runtime == "tensorrt_plan":
        config["platform"] = "tensorrt_plan"
        kind = "KIND_GPU"
    elif runtime == "onnxruntime_onnx":
        config["platform"] = "onnxruntime_onnx"
        kind = "KIND_AUTO"  # GPU where there is one, else CPU: the same repository serves both
    else:
        config["backend"] = "python"
        kind = "KIND_CPU"
    config["max_batch_size"] = network.max_batch
    config["input"] = [_tensor_config(t) for t in network.inputs]
    config["output"] = [_tensor_config(t) for t in network.outputs]
    if network.max_batch > 0 and queue_delay_us is not None:
        config["dynamic_batching"] = {
            "preferred_batch_size": list(network.preferred_batch_sizes) or None,
            "max_queue_delay_microseconds": queue_delay_us,
        }
    config["instance_group"] = [{"count": instances, "kind": Enum(kind)}]
    if network.profiles:
        config["instance_group"][0]["profile"] = list(network.profiles)
    if runtime.startswith("python"):
        config["parameters"] = [_parameter("trtpipe_runner", "ONNX Runtime inside Triton's Python backend")]
    return config


def pipeline_config(name: str, network_name: str, network: NetworkModel, instances: int, queue_delay_us: int | None) -> dict[str, Any]:
    """The ``<name>_pipeline`` model's config.pbtxt as a dict.

    Requests carry one encoded image each (``image``: UINT8 [1, bytes]); the dynamic batcher hands
    ``execute`` several requests at once (ragged: every image has its own length), which become one
    preprocessed batch and one call of the network model.
    """
    task = network.spec.task
    head = pipeline_head(network)
    if head == "generic":  # the network's own (batched) outputs, passed through per image
        served = [t for t in network.outputs if network.batch_outputs is None or t.name in network.batch_outputs]
        outputs = [_tensor_config(_per_image(t, network)) for t in served]
    else:
        outputs = [{"name": out, "data_type": Enum(dtype), "dims": dims} for out, dtype, dims in PIPELINE_OUTPUTS[task]]
    return {
        "name": name,
        "backend": "python",
        "max_batch_size": network.max_batch or DEFAULT_ONNX_MAX_BATCH,
        "input": [{"name": "image", "data_type": Enum("TYPE_UINT8"), "dims": [-1], "allow_ragged_batch": True}],
        "output": outputs,
        "dynamic_batching": None if queue_delay_us is None else {"max_queue_delay_microseconds": queue_delay_us},
        "instance_group": [{"count": instances, "kind": Enum("KIND_CPU")}],
        "parameters": [_parameter("network_model", network_name), _parameter("task", task), _parameter("head", head)],
    }


def pipeline_head(network: NetworkModel) -> str:
    """The head the pipeline model decodes with: the spec's, else the one the network's outputs fit (heads.choose_head)."""
    from trtpipe.pipeline.heads import choose_head

    batched = tuple(TensorInfo(t.name, (-1, *t.shape), t.dtype) if network.max_batch else t for t in network.outputs)
    return choose_head(network.spec, batched)


def _per_image(tensor: TensorInfo, network: NetworkModel) -> TensorInfo:
    """An output as the pipeline model returns it for one request: batch 1 in front of one image's array."""
    shape = tensor.shape if network.max_batch else tensor.shape[1:]
    return TensorInfo(tensor.name, tuple(shape), tensor.dtype)


def _write_network_model(folder: Path, name: str, network: NetworkModel, runtime: str, instances: int, queue_delay_us: int | None) -> None:
    version = folder / "1"
    version.mkdir(parents=True)
    if network.kind == "engine":
        shutil.copyfile(network.path, version / "model.plan")
    else:
        shutil.copyfile(network.path, version / "model.onnx")
        for extra in network.extra_files:
            shutil.copyfile(extra, version / extra.name)
        if runtime.startswith("python"):
            shutil.copyfile(_MODEL_SOURCES / "onnxruntime_model.py", version / "model.py")
    (folder / "config.pbtxt").write_text(to_pbtxt(network_config(name, network, runtime, instances, queue_delay_us)))


def _write_pipeline_model(
    folder: Path, network_name: str, network: NetworkModel, instances: int, queue_delay_us: int | None, topk: int
) -> None:
    version = folder / "1"
    version.mkdir(parents=True)
    shutil.copyfile(_MODEL_SOURCES / "pipeline_model.py", version / "model.py")
    spec = network.spec
    spec_for_server = spec
    if spec.labels:
        from trtpipe.labels import load_labels

        (version / "labels.txt").write_text("\n".join(load_labels(spec.labels)) + "\n", encoding="utf-8")
        spec_for_server = spec.replace(labels="labels.txt")  # resolved beside model.py by the pipeline model
    head = pipeline_head(network)
    if head != (spec.head or spec.task):  # the outputs fit another head (a YOLOX grid, generic): the server uses it
        spec_for_server = spec_for_server.replace(head=head)
    spec_for_server.save(version / "preprocess.json")
    settings = {
        "network_model": network_name,
        "input": network.inputs[0].name,
        "input_dtype": network.inputs[0].dtype,
        "outputs": [t.name for t in network.outputs if network.batch_outputs is None or t.name in network.batch_outputs],
        "max_batch": network.max_batch,
        "fixed_batch": None if network.max_batch or network.batch_limit else (network.inputs[0].shape[0] if network.inputs[0].shape else 1),
        "default_topk": topk,
    }
    if network.batch_limit:
        settings["batch_limit"] = network.batch_limit  # Triton does not batch the network, but its batch axis is dynamic
    (version / "pipeline.json").write_text(json.dumps(settings, indent=2) + "\n")
    config = pipeline_config(folder.name, network_name, network, instances, queue_delay_us)
    (folder / "config.pbtxt").write_text(to_pbtxt(config))


def _move_into_place(new: Path, dest: Path, staging: Path) -> None:
    """Replaces ``dest`` with ``new``; the old model goes to ``staging`` (deleted with it)."""
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir():
            raise InputError(f"{dest} exists and is not a model folder", "remove it or choose another --name")
        dest.rename(staging / f"old-{dest.name}")
    new.rename(dest)


def _tensor_config(tensor: TensorInfo) -> dict[str, Any]:
    dtype = TRITON_DTYPES.get(tensor.dtype)
    if dtype is None:
        raise ConfigError(
            f"tensor {tensor.name!r} has dtype {tensor.dtype}, which Triton has no type for",
            f"use one of {', '.join(sorted(TRITON_DTYPES))} at the model's boundary",
        )
    if not tensor.shape:
        # one value per request (an ONNX [N] output, batch axis taken off): Triton refuses empty dims, and dims [1]
        # alone would promise [N, 1]; reshape says the model's tensor has no axis beyond the batch
        return {"name": tensor.name, "data_type": Enum(dtype), "dims": [1], "reshape": {"shape": []}}
    return {"name": tensor.name, "data_type": Enum(dtype), "dims": list(tensor.shape)}


def _parameter(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"string_value": value}}


def check_model_name(name: str) -> str:
    """Triton model names become folder names and URL parts: letters, digits, ``_ . -`` only."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ConfigError(
            f"model name {name!r} has characters Triton model folders and URLs do not take",
            "use letters, digits, '_', '.' and '-', e.g. --name efficientnet_lite0",
        )
    return name


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if value < 1:
            raise ConfigError(f"{key.replace('_', ' ')} is {value}, expected >= 1", f"give a positive {key.replace('_', '-')}")

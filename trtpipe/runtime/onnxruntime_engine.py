"""An ONNX Runtime session behind the Engine interface: the numerical reference and the CPU fallback.

Uses the CUDA execution provider when onnxruntime-gpu offers it, else the CPU; the backend label
("onnxruntime-cuda" / "onnxruntime-cpu") says which ran.

Concurrency: ``InferenceSession.run`` is thread-safe and runs calls from several threads at once. ``contexts=N``
(the TensorRT engine's option, trtexec's ``--infStreams``) lets N calls run at once on the one session (weights
loaded once); further callers wait, as they wait for a free TensorRT context. ``num_contexts`` is that N.

FP16 on the CPU provider runs with FP16 storage (``trtpipe.runtime.fp16_storage``): a plain session computes an
FP16 graph in FP32 and would hide the overflow past 65504 that TensorRT's FP16 kernels hit, so a CPU fallback of
an FP16 engine would not compute what the engine computes. It costs time (2.3x to 3.8x a plain session measured
on EfficientNet-Lite0, ``tests/perf/bench_fp16_storage.py``), and ``fp16_storage=False`` turns it off (labelled so).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from trtpipe.errors import ConfigError, DependencyError, InputError, OnnxModelError
from trtpipe.runtime.base import ClosedError, Engine, StageTimes, validate_feeds
from trtpipe.spec import TensorInfo

# ONNX Runtime's type strings -> numpy dtype names
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
    "tensor(bfloat16)": "bfloat16",
}


def _tensor_info(arg) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in arg.shape)
    return TensorInfo(arg.name, shape, _ORT_DTYPES.get(arg.type, arg.type))


# ONNX Runtime 1.32's ClipQuantRewrite (a Clip/Relu before QuantizeLinear folded into the Q's saturation) reads the
# zero point as an integer and fails the session for an FP8 one ("Unexpected data type for QuantizeLinear input
# y_zero_point of 17"), which EfficientNet's ReLU6 triggers on every FP8 Q/DQ model. The rewrite only removes a
# redundant Clip, so turning it off changes no value; every session that may run a Q/DQ model takes these options.
QDQ_SESSION_OPTIONS = {"disabled_optimizers": ["ClipQuantRewrite"]}


def model_precision(model) -> str:
    """The precision an ONNX model computes in by itself: with Q/DQ nodes, "int8" for trtpipe's own Q/DQ ONNX and the
    model's own quantization for one that came quantized ("int8 as quantized in the ONNX", "fp8 (E4M3) weights and
    activations", "int4 weights, fp16 activations", see ``trtpipe.onnx.quantized``); "fp16" with float16 weights or
    values, else "fp32". (A classic-mode TensorRT build gets FP16/INT8 from builder flags instead.)"""
    import onnx

    from trtpipe.onnx.quantized import model_quantization_label

    graph = model.graph
    fp16 = onnx.TensorProto.FLOAT16
    values = (*graph.input, *graph.value_info, *graph.output)
    half = any(t.data_type == fp16 for t in graph.initializer) or any(v.type.tensor_type.elem_type == fp16 for v in values)
    quantized = model_quantization_label(model)
    if quantized:
        # an FP16 build of a Q/DQ model: its Q/DQ as they came, the float layers around them in FP16
        return quantized + ("; fp16 elsewhere" if half and "fp16" not in quantized else "")
    return "fp16" if half else "fp32"


def onnx_graph(path: str | Path):
    """The onnx.ModelProto of ``path`` without its weights (external data stays on disk)."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and onnx's own, for a file that is not ONNX
        raise OnnxModelError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})",
            "the file is truncated, corrupt or not ONNX; export it again or check the download",
        ) from None


def onnx_precision(path: str | Path) -> str:
    """:func:`model_precision` of an ONNX file (its weights are not loaded)."""
    import onnx

    return model_precision(onnx.load(str(path), load_external_data=False))


class OnnxRuntimeEngine(Engine):
    """Runs an ONNX file with ONNX Runtime.

    Args:
        path: the ``.onnx`` file.
        providers: execution providers in order of preference. Defaults to CUDA when available, then CPU.
        threads: intra-op threads. Defaults to ONNX Runtime's choice (all cores).
        precision: what the ONNX computes in (fp32 | fp16 | int8). Defaults to reading it from the graph.
        stands_in_for: the TensorRT engine whose network ONNX this is (``backend="onnxruntime"`` on an engine).
        fallback: why this runs instead of TensorRT when ``backend="auto"`` fell back (e.g. "no usable NVIDIA GPU").
        contexts: how many calls may run at once on the session (TensorRT's ``contexts``, trtexec's
            ``--infStreams``); more callers wait for one to finish. Defaults to 1.
        fp16_storage: on the CPU provider, store every FP16 tensor as FP16 between ops, as TensorRT's FP16
            kernels do (see the module docstring). Defaults to True; it changes nothing for FP32 and Q/DQ graphs.
        limits: input name -> (min shape, max shape): the optimization profile of the engine this stands in for
            (set by ``load_engine`` from the sidecar), enforced as TensorRT enforces it. Defaults to none.

    Attributes ``precision``, ``stands_in_for``, ``fallback`` and ``fp16_storage`` (True when FP16 storage is in
    effect, False when an FP16 graph runs as a plain session computes it, None without FP16 tensors) are what
    results and reports print.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        precision: str | None = None,
        stands_in_for: Path | None = None,
        fallback: str | None = None,
        contexts: int = 1,
        fp16_storage: bool = True,
        limits: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
    ):
        if not isinstance(contexts, int) or contexts < 1:
            raise ConfigError(f"contexts={contexts!r}, expected 1 or more",
                              "use contexts=1, or N for N calls at once (--infStreams N)")
        try:
            import onnxruntime as ort
        except ImportError:
            raise DependencyError("onnxruntime is not installed", "pip install onnxruntime (or onnxruntime-gpu)") from None
        self.path = Path(path)
        # What with_threads() needs to open the same model again with other intra-op threads.
        self._options = dict(providers=providers, precision=precision, stands_in_for=stands_in_for, fallback=fallback,
                             contexts=contexts, fp16_storage=fp16_storage, limits=limits)
        self.threads = threads
        if not self.path.is_file():
            raise InputError(f"ONNX model {self.path}: no such file", "check the path, or export it: trtpipe export NAME")
        self.stands_in_for = stands_in_for
        self.fallback = fallback
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        providers = list(providers)
        from trtpipe.onnx.load import check_ir_version, check_no_empty_axes, check_no_plugin_nodes, onnxruntime_reason

        model = None
        try:
            model = onnx_graph(self.path)
            check_ir_version(self.path, model, "running it in ONNX Runtime")  # its own refusal starts with a C++ signature
            check_no_empty_axes(self.path, model)  # ONNX Runtime loads it, then refuses every batch
            check_no_plugin_nodes(self.path, model, "running it here")  # ONNX Runtime: "not a registered function/op"
            source, self.fp16_storage, model = self._model_source(fp16_storage, providers, model)
            self._session = ort.InferenceSession(source, sess_options=options, providers=providers,
                                                 **QDQ_SESSION_OPTIONS)
        except OnnxModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors for bad models
            raise OnnxModelError(
                f"ONNX Runtime cannot load {self.path}: {onnxruntime_reason(exc, model)}",
                "check the file with trtpipe inspect (a truncated file, an op or type ONNX Runtime lacks on this "
                "execution provider); run it where that kernel exists, or export it without that op",
            ) from None
        used = self._session.get_providers()[0]
        self.backend = "onnxruntime-cuda" if used == "CUDAExecutionProvider" else "onnxruntime-cpu"
        self._inputs = tuple(_tensor_info(a) for a in self._session.get_inputs())
        declared = [o.name for o in model.graph.output]  # the model's own outputs, not the FP16 storage routing's
        # each once: ONNX lets graph.output list a tensor twice, and ONNX Runtime then returns it twice
        listed = {a.name: a for a in reversed(self._session.get_outputs()) if a.name in declared}
        self._outputs = tuple(_tensor_info(listed[name]) for name in dict.fromkeys(declared) if name in listed)
        self._output_names = [o.name for o in self._outputs]
        self.precision = precision or model_precision(model)
        from trtpipe.labels import names_from_metadata

        # class names the exporter stored (Ultralytics `names`, PaddleOCR `character`), for heads without --labels
        self.class_names = names_from_metadata(self._session.get_modelmeta().custom_metadata_map)
        self._slots = threading.BoundedSemaphore(contexts)
        self._contexts = contexts
        # Standing in for a TensorRT engine: its optimization profile binds here too, so that the fallback refuses
        # what the engine would (a batch above its max, a frame size outside a dynamic fused engine's range).
        self._limits = {name: (tuple(low), tuple(high)) for name, (low, high) in (limits or {}).items()}

    def _model_source(self, fp16_storage: bool, providers: list[str], model):
        """(what InferenceSession loads: the path, or the FP16-storage copy's bytes; the ``fp16_storage`` attribute;
        ``model``, the graph without its weights)."""
        import onnx

        from trtpipe.runtime.fp16_storage import has_fp16, keep_fp16_rounding

        if not has_fp16(model):
            return str(self.path), None, model
        if not fp16_storage:
            return str(self.path), False, model
        if providers[:1] == ["CUDAExecutionProvider"]:  # CUDA runs FP16 ops in FP16 kernels: nothing to keep
            return str(self.path), None, model
        routed, count = keep_fp16_rounding(onnx.load(str(self.path)))
        return (routed.SerializeToString() if count else str(self.path)), bool(count) or None, model

    @property
    def on_cpu(self) -> bool:
        """Whether it computes on the host's cores (the CPU provider), competing with a stream's workers."""
        return self.backend == "onnxruntime-cpu"

    def with_threads(self, threads: int) -> "OnnxRuntimeEngine | None":
        """A second session on the same model with ``threads`` intra-op threads (the caller closes it).

        ``Pipeline.stream`` uses it to split the cores between its workers and the engine without changing the
        engine a synchronous ``pipe(img)`` call runs on. Returns None for subclasses, which open models their own way.
        """
        if type(self) is not OnnxRuntimeEngine:
            return None
        return OnnxRuntimeEngine(self.path, threads=threads, **self._options)

    @property
    def num_contexts(self) -> int:
        """How many calls may run at once (``contexts=``)."""
        return self._contexts

    @property
    def max_batch(self) -> int | None:
        if self._limits:
            return min(high[0] for _, high in self._limits.values())
        first = self._inputs[0].shape if self._inputs else ()
        return first[0] if first and first[0] > 0 else None

    @property
    def input_limits(self) -> Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        return self._limits

    def infer_timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], StageTimes]:
        session = self._session  # a local: close() from another thread must not pull it away mid-call
        if session is None:
            raise ClosedError("OnnxRuntimeEngine")
        validate_feeds(feeds, self._inputs, str(self.path), self._limits)
        with self._slots:  # at most num_contexts calls at once; the wait is not timed, as a free TensorRT context's
            start = time.perf_counter()
            values = session.run(self._output_names, feeds)  # synchronous: the outputs are ready
            end = time.perf_counter()
        ms = (end - start) * 1e3
        return dict(zip(self._output_names, values)), StageTimes(compute=ms, end_to_end=ms)

    def close(self) -> None:
        self._session = None

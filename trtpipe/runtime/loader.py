"""``load_engine(path, backend=...)``: the one place that picks a backend for a model file.

Backends: ``"tensorrt"`` (an ``.engine``), ``"onnxruntime"`` (an ``.onnx``, or an engine's network ONNX) and
``"auto"``, the default: TensorRT where this machine can run the engine (a usable GPU and the TensorRT
flavour that built it), else ONNX Runtime, and the fallback is labelled (``Engine.fallback`` holds why,
and the Pipeline puts it in every result).

ONNX Runtime on an engine runs the *network ONNX* the engine was parsed from (the FP16 or Q/DQ ONNX the
builder wrote, recorded in the sidecar with its sha256), so a CPU fallback computes in the precision that
was built, never the FP32 source silently.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

from trtpipe.errors import ConfigError, InputError, TrtpipeError, option
from trtpipe.runtime.base import Engine

log = logging.getLogger("trtpipe.runtime")

BACKENDS = ("auto", "tensorrt", "onnxruntime")
# The attribute that marks the log record saying an engine runs as a CPU fallback (``record.trtpipe_cpu_fallback``).
FALLBACK_RECORD = "trtpipe_cpu_fallback"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def default_backend(path: str | Path) -> str:
    """``.onnx`` files run on ONNX Runtime; anything else is taken to be a TensorRT engine."""
    return "onnxruntime" if Path(path).suffix.lower() == ".onnx" else "tensorrt"


@dataclass(frozen=True)
class BackendChoice:
    """What ``backend=`` resolved to for one file."""

    name: str  # "tensorrt" | "onnxruntime"
    fallback: str | None = None  # why "auto" did not choose TensorRT for an engine; None: no fallback


def choose_backend(path: str | Path, backend: str | None = "auto", *, flavor=None) -> BackendChoice:
    """Resolves ``backend`` ("auto", "tensorrt", "onnxruntime"; None = "auto") for ``path``.

    "auto" on an engine is TensorRT when :func:`tensorrt_unavailable_reason` finds nothing missing, else
    ONNX Runtime with the reason as ``fallback``; on an ``.onnx`` it is ONNX Runtime (no fallback).

    Raises:
        ConfigError: an unknown backend; "tensorrt" for an ``.onnx`` file; "tensorrt" for an engine on a
            machine that cannot run it (no GPU, no TensorRT), with a Hint naming the fallback.
    """
    backend = backend or "auto"
    if backend not in BACKENDS:
        raise ConfigError(
            f"backend {backend!r} is unknown, expected one of {', '.join(BACKENDS)}",
            f"use {option('backend', 'auto')} (TensorRT where a GPU is, else ONNX Runtime), "
            f"{option('backend', 'tensorrt')} or {option('backend', 'onnxruntime')}",
        )
    if default_backend(path) == "onnxruntime":
        if backend == "tensorrt":
            raise ConfigError(
                f"{path} is an ONNX model; the tensorrt backend runs built engines",
                f"build an engine first (trtpipe build {path}), or use {option('backend', 'onnxruntime')}",
            )
        return BackendChoice("onnxruntime")
    if backend == "onnxruntime":
        return BackendChoice("onnxruntime")
    reason = tensorrt_unavailable_reason(path, flavor=flavor)
    if reason is None:
        return BackendChoice("tensorrt")
    if backend == "tensorrt":
        raise ConfigError(
            f"engine {path} needs TensorRT on an NVIDIA GPU, and this machine cannot run it: {reason}",
            f"run it on a GPU machine, or use {option('backend', 'auto')} / {option('backend', 'onnxruntime')} to run "
            "its network ONNX (same precision) on ONNX Runtime, labelled as a CPU fallback",
        )
    return BackendChoice("onnxruntime", fallback=reason)


def tensorrt_unavailable_reason(path: str | Path, *, flavor=None) -> str | None:
    """Why this machine cannot run TensorRT engine ``path`` (no usable GPU, no TensorRT for it); None when it can.

    An installed TensorRT of another version, or a GPU the engine was not built for, is not a reason here:
    that engine needs rebuilding, and opening it says so (``auto`` does not hide it behind a fallback).
    """
    from trtpipe import cuda

    try:
        if cuda.device_count() < 1:
            return "no CUDA device found"
    except TrtpipeError as exc:  # CudaError without a driver, DependencyError without cuda-python
        # "CUDA call cudaGetDeviceCount failed with cudaErrorInsufficientDriver (35): <long text>" -> before the ": "
        return f"no usable NVIDIA GPU: {exc.message.split(': ', 1)[0]}"
    if flavor is not None:
        return None
    from trtpipe.flavors import installed_flavors
    from trtpipe.runtime.compat import load_sidecar

    sidecar = load_sidecar(path)
    installed = installed_flavors()
    if not any(f.name == sidecar.trt_flavor for f in installed):
        have = ", ".join(f.label for f in installed) or "no TensorRT"
        return f"it needs {sidecar.flavor_label}, and this machine has {have}"
    return None


@dataclass(frozen=True)
class NetworkOnnx:
    """The ONNX an engine's network was parsed from, as found and checked on disk."""

    path: Path
    precision: str  # what the ONNX computes in by itself: fp32 | fp16 | int8
    engine_precision: str  # the engine's precision (sidecar)
    realised: str  # how the engine realises it (sidecar), e.g. "BuilderFlag.FP16"
    limits: dict  # input name -> (min shape, max shape) of the engine's first optimization profile (sidecar)

    @property
    def differs(self) -> bool:
        """True when ONNX Runtime cannot run the engine's precision (classic BuilderFlag builds). An engine built from
        a model that came quantized ("fp32" asked, Q/DQ as given) parses that very ONNX: nothing differs."""
        return self.precision != self.engine_precision and "BuilderFlag" in self.realised


def network_onnx(engine_path: str | Path) -> NetworkOnnx:
    """Finds the network ONNX recorded in ``engine_path``'s sidecar and checks its sha256.

    Raises:
        InputError: the sidecar records no network ONNX for a reduced-precision engine (an older trtpipe
            built it), the file is gone, or its sha256 differs from the build's.
    """
    from trtpipe.runtime.compat import load_sidecar

    engine_path = Path(engine_path)
    sidecar = load_sidecar(engine_path)
    from trtpipe.runtime.compat import rebuild_command

    rebuild = f"rebuild the engine as it was built: {rebuild_command(sidecar, engine_path)}"
    if sidecar.network_onnx_path:
        recorded, sha, precision = Path(sidecar.network_onnx_path), sidecar.network_onnx_sha256, sidecar.network_onnx_precision
    elif sidecar.precision == "fp32" and sidecar.precision_realised == "fp32":
        recorded, sha, precision = Path(sidecar.onnx_path), sidecar.onnx_sha256, "fp32"  # fp32 builds parse the source
    else:
        raise InputError(
            f"engine {engine_path} ({sidecar.precision}) has a sidecar that does not record the network ONNX it was "
            "parsed from (built by an older trtpipe), so ONNX Runtime cannot run its precision",
            rebuild + f", or run an ONNX file directly (trtpipe infer MODEL.onnx; Pipeline.from_onnx)",
        )
    path = _find_beside(recorded, engine_path)
    if path is None:
        raise InputError(
            f"engine {engine_path} was parsed from {recorded} ({precision}), which is not there any more",
            rebuild + " (it writes the network ONNX again)",
        )
    found = _onnx_sha256(path)
    if sha and found != sha:
        raise InputError(
            f"{path} has sha256 {found[:12]}..., but engine {engine_path} was built from sha256 {sha[:12]}...: "
            "the network ONNX changed after the build (edited, or written again by a build of another engine that was "
            "given the same file name), so it would not compute what the engine computes",
            rebuild,
        )
    profile = sidecar.profiles[0] if sidecar.profiles else {}
    limits = {name: (tuple(r["min"]), tuple(r["max"])) for name, r in profile.items()}
    return NetworkOnnx(path, precision or _detect_precision(path), sidecar.precision, sidecar.precision_realised, limits)


def onnx_for_engine(engine_path: str | Path) -> Path:
    """The network ONNX an engine was parsed from (see :func:`network_onnx`), to run the same model on ONNX Runtime."""
    return network_onnx(engine_path).path


def load_engine(path: str | Path, backend: str | None = "auto", **options) -> Engine:
    """Opens ``path`` on a backend and returns an :class:`Engine` (a context manager).

    Args:
        path: a ``.engine``/``.plan`` file (with its sidecar) or an ``.onnx`` file.
        backend: "auto" (the default; None means the same), "tensorrt" or "onnxruntime". "onnxruntime" with an
            engine runs its network ONNX (the FP16/Q/DQ ONNX it was parsed from, sha256-checked).
        options: keyword arguments of the backend's engine class (both: ``contexts``; TensorRTEngine:
            ``cuda_graph``, ``device``, ``profile``, ``weights`` (an ONNX to refit a weight-stripped or refittable
            engine from; ONNX Runtime then runs that ONNX) ...; OnnxRuntimeEngine: ``providers``, ``threads``, ``fp16_storage``). Options
            of the other backend are dropped with a log line, so one call works whichever backend "auto" picks.

    Raises:
        TypeError: an option neither backend takes, listing the valid ones.
        ConfigError, InputError: see :func:`choose_backend` and :func:`network_onnx`.
    """
    options = dict(options)
    choice = choose_backend(path, backend, flavor=options.get("flavor"))
    check_engine_options(options)
    mine, others = split_engine_options(choice.name, options)
    if others:
        log.info("%s: options %s apply to the other backend; %s ignores them", path, sorted(others), choice.name)
    if choice.name == "tensorrt":
        from trtpipe.runtime.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(path, **mine)
    from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine

    if default_backend(path) == "onnxruntime":
        return OnnxRuntimeEngine(path, **mine)
    network = network_onnx(path)
    if options.get("weights") is not None:
        # The weights to run with are the given ONNX's (checked to have the engine's graph): ONNX Runtime runs it.
        from trtpipe.refit import check_weights_for
        from trtpipe.runtime.compat import load_sidecar

        network = dataclasses.replace(network, path=check_weights_for(load_sidecar(path), path, options["weights"]))
    engine = OnnxRuntimeEngine(network.path, precision=network.precision, stands_in_for=Path(path),
                               fallback=choice.fallback, limits=network.limits, **mine)
    if network.differs:
        log.warning("WARNING: %s is %s through %s; ONNX Runtime runs its %s network ONNX %s, not %s",
                    path, network.engine_precision, network.realised, network.precision, network.path, network.engine_precision)
    if choice.fallback:
        # Tagged: the CLI verbs that print the fallback in their own output drop this line (trtpipe.cli.main).
        log.warning("%s: %s; running its %s network ONNX %s on %s instead (CPU fallback)",
                    path, choice.fallback, network.precision, network.path, engine.backend, extra={FALLBACK_RECORD: True})
    return engine


def engine_options(backend: str) -> tuple[str, ...]:
    """The keyword options the backend's engine class takes (from its signature, so new options need no list)."""
    if backend == "tensorrt":
        from trtpipe.runtime.tensorrt_engine import TensorRTEngine as cls
    else:
        from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine as cls
    hidden = {"path", "precision", "stands_in_for", "fallback", "limits"}  # set by load_engine itself
    parameters = inspect.signature(cls.__init__).parameters.values()
    return tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name not in hidden)


def split_engine_options(backend: str, options: dict) -> tuple[dict, dict]:
    """(options ``backend``'s engine takes, the others)."""
    valid = engine_options(backend)
    return {k: v for k, v in options.items() if k in valid}, {k: v for k, v in options.items() if k not in valid}


def check_engine_options(options: dict, also_valid: tuple[str, ...] = (), what: str = "load_engine()") -> None:
    """Raises TypeError for an option no backend takes (nor ``also_valid``), listing the valid ones."""
    valid = sorted({*engine_options("tensorrt"), *engine_options("onnxruntime"), *also_valid})
    unknown = sorted(set(options) - set(valid))
    if unknown:
        import difflib

        close = [match for name in unknown for match in difflib.get_close_matches(name, valid, n=1)]
        suggestion = f" (did you mean {', '.join(close)}?)" if close else ""
        raise TypeError(f"{what} got unexpected keyword argument(s) {', '.join(unknown)}{suggestion}; "
                        f"valid: {', '.join(valid)}")


def _find_beside(recorded: Path, engine_path: Path) -> Path | None:
    """``recorded`` as written (relative to the working directory), else beside the engine."""
    for candidate in (recorded, engine_path.parent / recorded, engine_path.parent / recorded.name):
        if candidate.is_file():
            return candidate
    return None


def _onnx_sha256(path: Path) -> str:
    """The builder's sha256 of an ONNX file with its external data (trtpipe.onnx.load.onnx_sha256)."""
    from trtpipe.onnx.load import onnx_sha256

    return onnx_sha256(path)


def _detect_precision(path: Path) -> str:
    from trtpipe.runtime.onnxruntime_engine import onnx_precision

    return onnx_precision(path)

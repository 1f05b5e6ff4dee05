"""Which TensorRT is installed, and what its API shape allows.

Three flavours share one builder and runtime:
- ``tensorrt`` 10.x: weak or strong typing, BuilderFlag.FP16/INT8 and implicit INT8 calibration (deprecated);
- ``tensorrt`` 11.x: strongly typed only, precision lives in the ONNX;
- ``tensorrt_rtx`` (TensorRT for RTX): the 11.x API shape, builds ahead of time without a GPU.

Imports of TensorRT happen here, lazily, and nowhere else decides what a flavour can do.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import logging
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Iterator

from packaging.version import Version

from trtpipe.errors import DependencyError

FLAVOR_NAMES = ("tensorrt", "tensorrt_rtx")

INSTALL_HINT = (
    "on a GPU machine: pip install 'trtpipe[trt-cu13]' (driver R580+, CUDA 13) or 'trtpipe[trt-cu12]' (CUDA 12 "
    "drivers); to build TensorRT-RTX engines anywhere, even without a GPU: pip install 'trtpipe[rtx]'"
)

#: What TensorRT-RTX targets when no compute capability is set. Its documentation ("CPU-Only AOT and TensorRT-RTX
#: Engines", Compute Capability): "by default, an engine built by TensorRT-RTX can be run on GPU devices with
#: compute capability 8.0, 8.6, 8.9, 12.0, and later. To build engines for Turing devices, a compute capability of
#: 7.5 needs to be specified". So: every ComputeCapability target of the installed version but these.
RTX_NOT_BY_DEFAULT = ("SM75",)

_injected: tuple | None = None


@dataclass(frozen=True)
class Flavor:
    """An installed TensorRT flavour and the capabilities that follow from its version."""

    name: str  # tensorrt | tensorrt_rtx
    version: str
    module: ModuleType

    @property
    def parsed_version(self) -> Version:
        return Version(self.version)

    @property
    def is_rtx(self) -> bool:
        return self.name == "tensorrt_rtx"

    @property
    def strongly_typed_only(self) -> bool:
        """TensorRT 11 and RTX removed weak typing (BuilderFlag.FP16/INT8 and implicit calibration)."""
        return self.is_rtx or self.parsed_version >= Version("11")

    @property
    def supports_classic_precision(self) -> bool:
        """BuilderFlag.FP16/INT8 and IInt8EntropyCalibrator2: TensorRT 10.x only."""
        return not self.strongly_typed_only

    @property
    def qdq_types(self) -> tuple[str, ...]:
        """The Q/DQ types this flavour builds (trtpipe.onnx.quantized's names): those of TENSORRT_QDQ_TYPES whose
        DataType the module has (INT4 arrived in TensorRT 10.0, FP4 in 10.8)."""
        from trtpipe.onnx.quantized import TENSORRT_QDQ_TYPES

        data_types = {"int8": "INT8", "float8e4m3fn": "FP8", "int4": "INT4", "float4e2m1": "FP4"}
        found = getattr(self.module, "DataType", None)
        return tuple(t for t in TENSORRT_QDQ_TYPES if found is None or hasattr(found, data_types[t]))

    @property
    def has_timing_cache(self) -> bool:
        # TensorRT-RTX compiles kernels on the target GPU; its timing cache calls are no-ops.
        return not self.is_rtx

    @property
    def label(self) -> str:
        return f"{'TensorRT-RTX' if self.is_rtx else 'TensorRT'} {self.version}"

    @property
    def compute_capabilities(self) -> tuple[str, ...]:
        """The ahead-of-time targets ``--compute-capability`` accepts: the module's ``ComputeCapability`` values
        (``SM75``, ``SM80`` ...; not ``NONE``/``CURRENT``), lowest first; () for TensorRT, which builds for its GPU."""
        enum = getattr(self.module, "ComputeCapability", None)
        if enum is None:
            return ()
        return tuple(sorted((n for n in enum.__members__ if n.startswith("SM")), key=lambda n: int(n[2:])))

    @property
    def default_compute_capabilities(self) -> tuple[str, ...]:
        """What an engine built without ``--compute-capability`` runs on (see :data:`RTX_NOT_BY_DEFAULT`)."""
        return tuple(c for c in self.compute_capabilities if c not in RTX_NOT_BY_DEFAULT)


@functools.lru_cache(maxsize=None)
def _try_import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
    except Exception:  # noqa: BLE001 - a broken install (e.g. stub -libs wheel) is "not installed" here
        return None


def installed_flavors() -> list[Flavor]:
    """The flavours that import on this machine, TensorRT before TensorRT-RTX (or those set by :func:`using_flavors`)."""
    if _injected is not None:
        return list(_injected)
    found = []
    for name in FLAVOR_NAMES:
        module = _try_import(name)
        if module is not None and hasattr(module, "Builder"):
            found.append(Flavor(name, str(module.__version__), module))
    return found


def get_flavor(name: str | None = None) -> Flavor:
    """Returns the requested flavour, or the first installed one (TensorRT before TensorRT-RTX).

    Raises:
        DependencyError: when no flavour (or not the requested one) is installed.
    """
    flavors = installed_flavors()
    if name is not None:
        for flavor in flavors:
            if flavor.name == name:
                return flavor
        have = ", ".join(f.label for f in flavors) or "none"
        raise DependencyError(
            f"TensorRT flavour {name!r} is not installed (installed: {have})",
            "install it: " + ("pip install 'trtpipe[rtx]'" if name == "tensorrt_rtx" else "pip install 'trtpipe[trt-cu13]' (driver R580+) or 'trtpipe[trt-cu12]'"),
        )
    if not flavors:
        raise DependencyError("no TensorRT is installed (looked for tensorrt and tensorrt_rtx)", INSTALL_HINT)
    return flavors[0]


@contextlib.contextmanager
def using_flavors(*flavors: Flavor) -> Iterator[tuple[Flavor, ...]]:
    """Makes :func:`installed_flavors` (and so the builder, runtime and inspect) see only ``flavors`` in the block.

    Tests use it to run the whole path against a simulated TensorRT (``trtpipe.runtime.simulation``).
    """
    global _injected
    previous, _injected = _injected, tuple(flavors)
    try:
        yield _injected
    finally:
        _injected = previous


@contextlib.contextmanager
def no_gc_inside_tensorrt() -> Iterator[None]:
    """Keeps Python's cyclic garbage collector out of TensorRT calls that call back into Python.

    TensorRT calls the Python logger (and progress monitor, calibrator) while holding internal
    locks. A garbage collection that starts inside such a callback may free a TensorRT object left
    in a reference cycle (a builder held by an old traceback, say), whose destructor then waits for
    the lock its own thread holds: a deadlock, seen here in createInferBuilder. So: collect first,
    outside any TensorRT lock, and keep the collector off until TensorRT returns (reference counting
    still frees memory as usual).
    """
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_loggers: dict = {}  # TensorRT module -> its one logger
_loggers_lock = threading.Lock()
_log = logging.getLogger("trtpipe.tensorrt")


def make_logger(flavor: Flavor):
    """The process's one TensorRT ``ILogger`` for ``flavor``: forwards to Python logging and hands errors to captures.

    TensorRT keeps one logger per process: the first one given to a builder, runtime or parser is what its global
    ``getLogger()`` returns, and a different one given later gets the warning "The logger passed into ... differs
    from one already provided"; messages logged through the global one never reach it. So trtpipe makes one per
    TensorRT module and reuses it; a caller that wants the errors of one operation wraps it in
    ``with logger.capture_errors() as errors:``.

    TensorRT's INFO chatter goes to DEBUG ("trtpipe -v" shows it); its errors go to DEBUG too (they reach the
    user through the TrtpipeError that names them) and to every open capture.
    """
    trt = flavor.module
    with _loggers_lock:
        logger = _loggers.get(trt)
        if logger is None:
            logger = _loggers[trt] = _new_logger(flavor)
    return logger


def _new_logger(flavor: Flavor):
    trt = flavor.module
    levels = {
        trt.Logger.INTERNAL_ERROR: logging.ERROR,
        trt.Logger.ERROR: logging.ERROR,
        trt.Logger.WARNING: logging.WARNING,
        trt.Logger.INFO: logging.DEBUG,
        trt.Logger.VERBOSE: logging.DEBUG,
    }

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self._captures: list[list[str]] = []
            self._lock = threading.Lock()

        def log(self, severity, msg: str) -> None:
            level = levels.get(severity, logging.DEBUG)
            if level >= logging.ERROR:
                with self._lock:
                    for errors in self._captures:
                        errors.append(msg)
                level = logging.DEBUG  # errors reach the user through the raised TrtpipeError; -v repeats them
            _log.log(level, "[%s] %s", flavor.name, msg)

        @contextlib.contextmanager
        def capture_errors(self) -> Iterator[list[str]]:
            """Collects the errors TensorRT logs while the block runs (from any thread: TensorRT logs from its own)."""
            errors: list[str] = []
            with self._lock:
                self._captures.append(errors)
            try:
                yield errors
            finally:
                with self._lock:
                    self._captures.remove(errors)

    return _Logger()

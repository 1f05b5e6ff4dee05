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
from dataclasses import dataclass
from types import ModuleType
from typing import Iterator

from packaging.version import Version

from trtpipe.errors import DependencyError

FLAVOR_NAMES = ("tensorrt", "tensorrt_rtx")

INSTALL_HINT = (
    "on a GPU machine: pip install 'trtpipe[trt]' (TensorRT 10/11); "
    "to build TensorRT-RTX engines anywhere, even without a GPU: pip install 'trtpipe[rtx]'"
)


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
    def has_timing_cache(self) -> bool:
        # TensorRT-RTX compiles kernels on the target GPU; its timing cache calls are no-ops.
        return not self.is_rtx

    @property
    def label(self) -> str:
        return f"{'TensorRT-RTX' if self.is_rtx else 'TensorRT'} {self.version}"


@functools.lru_cache(maxsize=None)
def _try_import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
    except Exception:  # noqa: BLE001 - a broken install (e.g. stub -libs wheel) is "not installed" here
        return None


def installed_flavors() -> list[Flavor]:
    """The flavours that import on this machine, TensorRT before TensorRT-RTX."""
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
            "install it: " + ("pip install 'trtpipe[rtx]'" if name == "tensorrt_rtx" else "pip install 'trtpipe[trt]'"),
        )
    if not flavors:
        raise DependencyError("no TensorRT is installed (looked for tensorrt and tensorrt_rtx)", INSTALL_HINT)
    return flavors[0]


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


def make_logger(flavor: Flavor):
    """A TensorRT ILogger for ``flavor`` that forwards to Python logging and keeps the errors it saw.

    TensorRT's INFO chatter goes to DEBUG ("trtpipe -v" shows it); its errors are kept in
    ``logger.errors`` so a failed build can name them in the exception.
    """
    import logging

    trt = flavor.module
    log = logging.getLogger("trtpipe.tensorrt")
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
            self.errors: list[str] = []

        def log(self, severity, msg: str) -> None:
            level = levels.get(severity, logging.DEBUG)
            if level >= logging.ERROR:
                self.errors.append(msg)
                # Errors reach the user through the raised TrtpipeError; repeat them only with -v.
                level = logging.DEBUG
            log.log(level, "[%s] %s", flavor.name, msg)

    return _Logger()

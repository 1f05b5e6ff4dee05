"""``load_engine(path, backend=...)``: the one place that picks a backend for a model file."""

from __future__ import annotations

from pathlib import Path

from trtpipe.errors import ConfigError, InputError
from trtpipe.runtime.base import Engine

BACKENDS = ("tensorrt", "onnxruntime")


def default_backend(path: str | Path) -> str:
    """``.onnx`` files run on ONNX Runtime; anything else is taken to be a TensorRT engine."""
    return "onnxruntime" if Path(path).suffix.lower() == ".onnx" else "tensorrt"


def onnx_for_engine(engine_path: str | Path) -> Path:
    """The ONNX an engine was built from (from its sidecar), for running the same model on ONNX Runtime."""
    from trtpipe.runtime.compat import load_sidecar

    engine_path = Path(engine_path)
    onnx = Path(load_sidecar(engine_path).onnx_path)
    for candidate in (onnx, engine_path.parent / onnx, engine_path.parent / onnx.name):
        if candidate.is_file():
            return candidate
    raise InputError(
        f"engine {engine_path} was built from {onnx}, which is not there any more",
        "pass the .onnx file itself with --backend onnxruntime",
    )


def load_engine(path: str | Path, backend: str | None = None, **options) -> Engine:
    """Opens ``path`` on a backend and returns an :class:`Engine` (a context manager).

    Args:
        path: a ``.engine``/``.plan`` file (with its sidecar) or an ``.onnx`` file.
        backend: "tensorrt" or "onnxruntime". Defaults to the file's kind. "onnxruntime" with an engine
            runs the ONNX recorded in its sidecar (the CPU fallback for a machine without a GPU).
        options: passed to the backend's engine class (e.g. ``cuda_graph=True``, ``providers=[...]``).
    """
    backend = backend or default_backend(path)
    if backend == "onnxruntime":
        from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine

        onnx = path if default_backend(path) == "onnxruntime" else onnx_for_engine(path)
        return OnnxRuntimeEngine(onnx, **options)
    if backend == "tensorrt":
        if default_backend(path) == "onnxruntime":
            raise ConfigError(
                f"{path} is an ONNX model; the tensorrt backend runs built engines",
                f"build an engine first (trtpipe build {path}), or use --backend onnxruntime",
            )
        from trtpipe.runtime.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(path, **options)
    raise ConfigError(f"backend {backend!r} is unknown, expected one of {', '.join(BACKENDS)}", "use --backend tensorrt or onnxruntime")

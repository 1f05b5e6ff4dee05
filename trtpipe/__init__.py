"""trtpipe: ONNX -> TensorRT engines (FP32/FP16/INT8) and a runtime to serve and time them.

The public API is imported lazily so that ``import trtpipe`` needs neither TensorRT, torch nor
ONNX Runtime: a deployment image imports only what its code path uses.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "TrtpipeError": "trtpipe.errors",
    "PreprocessSpec": "trtpipe.spec",
    "BuildConfig": "trtpipe.spec",
    "BatchRange": "trtpipe.spec",
    "ShapeRange": "trtpipe.spec",
    "EngineSidecar": "trtpipe.spec",
    "build_engine": "trtpipe.builder.builder",
    "export_model": "trtpipe.zoo.export",
    "Pipeline": "trtpipe.pipeline.pipeline",
    "load_engine": "trtpipe.runtime.loader",
    "load_labels": "trtpipe.labels",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'trtpipe' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__

"""Helpers for tests and `make test-gpu`: GPU detection without importing TensorRT at module load."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def gpu_unavailable_reason() -> str | None:
    """Why GPU tests cannot run here (None when a CUDA device is usable)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return "cuda-python is not installed (pip install 'trtpipe[trt]')"
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:
        return f"cudaGetDeviceCount returned {err.name}"
    if count == 0:
        return "cudaGetDeviceCount found 0 devices"
    return None

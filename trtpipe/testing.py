"""Helpers for tests and `make test-gpu`: is a GPU here, is it usable, is TensorRT here (without importing it early).

Three answers, because "skip" is only right for one of them:
- no NVIDIA GPU on the machine: GPU tests are skipped, saying so;
- a GPU is there but CUDA cannot use it (a driver older than cuda-python needs: cuda-python 13 wants a CUDA 13
  driver, R580+; every call then returns cudaErrorInsufficientDriver): GPU tests FAIL, naming both versions;
- a usable GPU without TensorRT (a bare GPU machine): the CUDA tests run, the TensorRT ones are skipped saying why.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuStatus:
    """What this machine has: GPU hardware seen by the OS, and whether CUDA (cuda-python) can use it."""

    hardware: str | None  # how the GPU was seen ("nvidia-smi: GPU 0: NVIDIA H200 ..."), None without one
    usable: bool  # cudaGetDeviceCount succeeded with at least one device
    reason: str | None  # why not usable (None when usable)
    driver_cuda: int | None  # CUDA version the driver supports (12080 = 12.8), from cudaDriverGetVersion
    runtime_cuda: int | None  # CUDA version cuda-python was built for

    @property
    def broken(self) -> str | None:
        """A GPU is here and CUDA cannot use it: what to say when failing (None otherwise)."""
        if self.usable or self.hardware is None:
            return None
        versions = ""
        if self.driver_cuda is not None and self.runtime_cuda is not None:
            versions = (f"; the driver supports CUDA {_cuda_text(self.driver_cuda)}, cuda-python needs "
                        f"{_cuda_text(self.runtime_cuda)} (pip install 'trtpipe[trt-cu12]' pairs TensorRT with "
                        "cuda-python 12 for CUDA 12 drivers; cuda-python 13 needs driver R580+)")
        return f"a GPU is here ({self.hardware}) but CUDA cannot use it: {self.reason}{versions}"


def _cuda_text(version: int) -> str:
    return "none" if not version else f"{version // 1000}.{version % 1000 // 10}"


def gpu_hardware() -> str | None:
    """How an NVIDIA GPU is seen on this machine without CUDA (nvidia-smi, the driver's /proc or /dev nodes).

    ``TRTPIPE_EXPECT_GPU=1`` says one is here even when none of those shows it (a container without the
    device nodes; tests of the failure path).
    """
    if os.environ.get("TRTPIPE_EXPECT_GPU") == "1":
        return "TRTPIPE_EXPECT_GPU=1"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
            first = listed.stdout.strip().splitlines()[:1]
            if listed.returncode == 0 and first:
                return f"nvidia-smi: {first[0]}"
        except (OSError, subprocess.SubprocessError):
            pass
    gpus = glob.glob("/proc/driver/nvidia/gpus/*") or glob.glob("/dev/nvidia[0-9]*")
    return f"{gpus[0]}" if gpus else None


@functools.lru_cache(maxsize=1)
def gpu_status() -> GpuStatus:
    """Asks cuda-python (the real binding, never the simulation) whether a CUDA device is usable."""
    hardware = gpu_hardware()
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # cuda-python < 12.6
        except ImportError:
            return GpuStatus(hardware, False, "cuda-python is not installed (pip install 'trtpipe[trt-cu13]')", None, None)
    driver = _value(cudart.cudaDriverGetVersion())
    runtime = _value(cudart.cudaRuntimeGetVersion())
    error, count = cudart.cudaGetDeviceCount()
    if int(error) != 0:
        return GpuStatus(hardware, False, f"cudaGetDeviceCount returned {getattr(error, 'name', error)}", driver, runtime)
    if count == 0:
        return GpuStatus(hardware, False, "cudaGetDeviceCount found 0 devices", driver, runtime)
    return GpuStatus(hardware, True, None, driver, runtime)


def _value(result) -> int | None:
    return int(result[1]) if int(result[0]) == 0 else None


def gpu_unavailable_reason() -> str | None:
    """Why GPU tests cannot run here (None when a CUDA device is usable)."""
    return gpu_status().reason


@functools.lru_cache(maxsize=1)
def tensorrt_unavailable_reason() -> str | None:
    """Why the TensorRT GPU tests cannot run here (None when they can): no usable GPU, or no TensorRT for it.

    TensorRT-RTX alone does not count on a GPU it has no target for (Hopper, SM90, ...).
    """
    reason = gpu_unavailable_reason()
    if reason is not None:
        return f"no usable GPU ({reason})"
    from trtpipe.flavors import installed_flavors

    flavors = installed_flavors()
    if not flavors:
        return "no TensorRT is installed (neither tensorrt nor tensorrt_rtx imports): pip install 'trtpipe[trt-cu13]'"
    from trtpipe import cuda

    gpu = cuda.device_info(0)
    usable = [f for f in flavors if not f.is_rtx or gpu.sm in f.default_compute_capabilities]
    if not usable:
        return (f"only {', '.join(f.label for f in flavors)} is installed, which has no target for "
                f"{gpu.name} ({gpu.sm}): pip install 'trtpipe[trt-cu13]'")
    return None

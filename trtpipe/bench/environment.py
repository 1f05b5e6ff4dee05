"""What machine a benchmark ran on: GPU (nvidia-smi and CUDA), CPU, library versions, and clock warnings.

Every report carries this block, so numbers from different machines can be joined and told apart.
Nothing here imports TensorRT, torch or ONNX Runtime: versions come from package metadata, the GPU from
``nvidia-smi`` and cuda-python, each of which may be absent (then the field says so instead of guessing).
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import shutil
import subprocess
from typing import Any

import trtpipe

#: nvidia-smi --query-gpu fields -> report keys. Asked together; one by one if a driver lacks one.
_SMI_FIELDS = {
    "name": "name",
    "memory.total": "memory_total_mib",
    "driver_version": "driver",
    "compute_cap": "compute_capability",
    "pstate": "power_state",
    "clocks.sm": "sm_clock_mhz",
    "clocks.max.sm": "sm_clock_max_mhz",
    "clocks.mem": "memory_clock_mhz",
    "power.draw": "power_draw_w",
    "power.limit": "power_limit_w",
    "temperature.gpu": "temperature_c",
    "persistence_mode": "persistence_mode",
    "clocks_throttle_reasons.active": "clock_event_reasons",
}
_NUMERIC = {"memory_total_mib", "sm_clock_mhz", "sm_clock_max_mhz", "memory_clock_mhz", "power_draw_w", "power_limit_w", "temperature_c"}
# NVML's nvmlClocksEventReasonApplicationsClocksSetting: clocks held by `nvidia-smi -lgc`/`-ac`.
_CLOCKS_SET_BY_USER = 0x2

_PACKAGES = ("numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "torch", "torchvision", "timm", "tensorrt", "tensorrt-rtx",
             "cuda-python", "opencv-python-headless", "opencv-python")


def capture_environment() -> dict[str, Any]:
    """The environment block of a report: host, CPU, GPUs, CUDA, package versions, warnings.

    Returns:
        A JSON-ready dict; ``gpus`` is an empty list where no NVIDIA GPU answers, and every GPU field
        nvidia-smi does not report is ``None``.
    """
    gpus = _nvidia_smi_gpus()
    cuda = _cuda_info()
    cpu = _cpu_info()
    warnings = [w for gpu in gpus if (w := clock_warning(gpu))]
    load = _load_average()
    if load is not None and load > (cpu["usable_cores"] or 1):
        warnings.append(
            f"the machine was busy when the run started (load average {load:.1f} on {cpu['usable_cores']} usable cores): "
            "CPU timings are inflated and noisy. Hint: bench on an idle machine, or pin threads with --threads"
        )
    return {
        "host": platform.node(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "trtpipe": trtpipe.__version__,
        "cpu": cpu,
        "load_average_1min": load,
        "gpus": gpus,
        "cuda": cuda,
        "packages": package_versions(),
        "warnings": warnings,
    }


def package_versions() -> dict[str, str]:
    """Installed versions of the libraries that change timings, from metadata (nothing is imported)."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def machine_key(environment: dict[str, Any]) -> str:
    """A short label that is equal for two reports from the same machine: host, GPU(s) or CPU model."""
    gpus = environment.get("gpus") or []
    device = " + ".join(g.get("name") or "GPU" for g in gpus) if gpus else (environment.get("cpu") or {}).get("model") or "CPU"
    return f"{environment.get('host') or '?'} ({device})"


def clock_warning(gpu: dict[str, Any]) -> str | None:
    """A warning unless nvidia-smi says the GPU's clocks are held by the user (``nvidia-smi -lgc``)."""
    reasons = gpu.get("clock_event_reasons")
    try:
        locked = reasons is not None and int(str(reasons), 16) & _CLOCKS_SET_BY_USER
    except ValueError:
        locked = False
    if locked:
        return None
    now, peak = gpu.get("sm_clock_mhz"), gpu.get("sm_clock_max_mhz")
    seen = f" (SM clock {now:g} of max {peak:g} MHz)" if now is not None and peak is not None else ""
    return (
        f"GPU {gpu.get('index', 0)} ({gpu.get('name')}) clocks are not locked{seen}: boost and thermal throttling can move "
        "results by 10% or more. Hint: lock them for comparable numbers, e.g. sudo nvidia-smi -lgc <MHz>"
    )


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on this OS
        return None


def _cpu_info() -> dict[str, Any]:
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    return {
        "model": model or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,  # what this process may run on (containers and taskset limit it)
    }


def _run_smi(fields: list[str]) -> list[list[str]] | None:
    try:
        proc = subprocess.run(
            ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return [[cell.strip() for cell in line.split(",")] for line in proc.stdout.strip().splitlines() if line.strip()]


def _nvidia_smi_gpus() -> list[dict[str, Any]]:
    """One dict per GPU that nvidia-smi lists; [] without nvidia-smi or a driver."""
    if shutil.which("nvidia-smi") is None:
        return []
    fields = list(_SMI_FIELDS)
    rows = _run_smi(fields)
    if rows is None:  # an older driver rejects unknown fields: ask one at a time
        columns = {field: _run_smi([field]) for field in fields}
        if columns["name"] is None:
            return []
        rows = [[(columns[f][i][0] if columns[f] and i < len(columns[f]) else "") for f in fields] for i in range(len(columns["name"]))]
    gpus = []
    for index, row in enumerate(rows):
        gpu: dict[str, Any] = {"index": index}
        for field, value in zip(fields, row):
            key = _SMI_FIELDS[field]
            gpu[key] = _smi_value(value, numeric=key in _NUMERIC)
        gpus.append(gpu)
    return gpus


def _smi_value(text: str, numeric: bool) -> Any:
    if text in ("", "[N/A]", "N/A", "[Not Supported]", "[Unknown Error]"):
        return None
    if numeric:
        try:
            return float(text)
        except ValueError:
            return None
    return text


def _cuda_info() -> dict[str, Any] | None:
    """CUDA driver/runtime versions and device count through cuda-python; None when it is absent or has no driver."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return None
    try:
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0:
            return {"available": False, "reason": getattr(err, "name", str(int(err)))}
        _, driver = cudart.cudaDriverGetVersion()
        _, runtime = cudart.cudaRuntimeGetVersion()
    except Exception as exc:  # noqa: BLE001 - a broken binding is reported, never fatal to a benchmark
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    return {
        "available": True,
        "devices": int(count),
        "driver_version": _cuda_version(driver),
        "runtime_version": _cuda_version(runtime),
    }


def _cuda_version(code: int) -> str:
    """12040 -> '12.4'."""
    code = int(code)
    return f"{code // 1000}.{(code % 1000) // 10}"

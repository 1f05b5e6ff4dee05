"""How many cores a stream may use, and how it splits them between decoding and the engine.

A stream's stages run at once: worker threads decode and preprocess (OpenCV and NumPy release the GIL) while the
engine runs the previous batch. On a GPU engine the engine's host threads only wait for the device, so every core
goes to decoding. On ONNX Runtime's CPU provider the engine's intra-op threads and the workers compete for the same
cores; ONNX Runtime's default (one intra-op thread per core, which spin at barriers) oversubscribes them while the
workers hold some. Measured on 2 cores, MobileNetV2 batch 8, 1080p JPEGs (``tests/perf/bench_stream.py``, issue 25):
ONNX Runtime's own threads with 2 workers ran at 108.9 images/s, 1 engine thread with 1 worker at 135.6 images/s.

:func:`usable_cores` counts what this process may run on (the affinity mask, and a container's CPU quota, which
``os.cpu_count`` does not see); :func:`choose_split` decides. Explicit ``workers=`` / ``threads=`` always win.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cores(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The cores this process may use: its affinity mask, capped by a cgroup CPU quota (containers).

    cgroup v2 writes the quota as ``cpu.max`` ("200000 100000" = 2 cores, "max 100000" = no quota); v1 as
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: no quota). A fractional quota rounds up (1.5 cores -> 2): a
    thread that gets half a core still runs. Returns at least 1.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota - 1e-9)))
    return max(1, cores)


def _cgroup_quota(root: Path) -> float | None:
    """The CPU quota in cores, or None when there is none (or no cgroup file can be read)."""
    try:
        fields = (root / "cpu.max").read_text().split()
        if len(fields) == 2 and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
        if fields:
            return None
    except (OSError, ValueError, ZeroDivisionError):
        pass
    for folder in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


@dataclass(frozen=True)
class CoreSplit:
    """What a stream runs on: worker threads, engine intra-op threads (None: the engine's own), and why."""

    cores: int  # usable cores seen
    workers: int  # decode / preprocess / post-process threads
    engine_threads: int | None  # ONNX Runtime intra-op threads for the stream's engine; None: left as the engine has it
    reason: str  # one clause for the console and results

    def text(self) -> str:
        """``2 cores: 1 worker, 1 engine thread (ONNX Runtime on the CPU: cores split)``."""
        engine = (f", {self.engine_threads} engine thread{'s' if self.engine_threads != 1 else ''}"
                  if self.engine_threads is not None else "")
        return (f"{self.cores} core{'s' if self.cores != 1 else ''}: {self.workers} worker"
                f"{'s' if self.workers != 1 else ''}{engine} ({self.reason})")

    def to_json(self) -> dict:
        return {"cores": self.cores, "workers": self.workers, "engine_threads": self.engine_threads, "reason": self.reason}


def choose_split(cores: int, engine_on_cpu: bool, *, workers: int | None = None, threads: int | None = None) -> CoreSplit:
    """Splits ``cores`` between a stream's workers and its engine.

    Args:
        cores: usable cores (:func:`usable_cores`), at least 1.
        engine_on_cpu: the engine computes on these cores (ONNX Runtime's CPU provider). False for TensorRT and
            ONNX Runtime's CUDA provider, whose host threads mostly wait for the device.
        workers: the caller's worker count (wins).
        threads: the caller's engine intra-op thread count (wins; only meaningful for a CPU engine).

    Returns:
        The split. A GPU engine: every core to the workers, its threads untouched. A CPU engine: half the cores
        (rounded down, at least 1) to the engine, the rest (at least 1) to the workers; on one core both get 1.
        With only one of ``workers``/``threads`` given, the other takes what is left.
    """
    cores = max(1, int(cores))
    if not engine_on_cpu:
        chosen = workers if workers is not None else cores
        why = "workers as given" if workers is not None else "the engine runs on the GPU: every core decodes"
        return CoreSplit(cores, chosen, threads, why)
    if workers is not None and threads is not None:
        return CoreSplit(cores, workers, threads, "as given")
    if threads is not None:
        return CoreSplit(cores, max(1, cores - threads), threads, "engine threads as given, the rest decode")
    if workers is not None:
        return CoreSplit(cores, workers, max(1, cores - workers), "workers as given, the rest to the engine")
    engine = max(1, cores // 2)
    return CoreSplit(cores, max(1, cores - engine), engine, "ONNX Runtime on the CPU: cores split")

"""Per-stage timings across calls: a thread-safe recorder and its min/mean/median/p90/p95/p99/max summary."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from trtpipe.runtime.base import StageTimes

STAGES = tuple(f.name for f in dataclasses.fields(StageTimes))
STATISTICS = ("min", "mean", "median", "p90", "p95", "p99", "max")


class TimingRecorder:
    """Collects the StageTimes of every call.

    Warm-up is not a recorded call: the Pipeline runs its warm-up inferences on dummy inputs before any
    call it times (as trtexec does), so every call of the user's counts, the first one included.
    """

    def __init__(self):
        self._rows: list[StageTimes] = []
        self._lock = threading.Lock()

    def record(self, times: StageTimes) -> None:
        with self._lock:
            self._rows.append(times)

    def __len__(self) -> int:
        return len(self._rows)

    def reset(self) -> None:
        with self._lock:
            self._rows.clear()

    def stats(self) -> dict[str, dict[str, float]]:
        """Stage -> {min, mean, median, p90, p95, p99, max, count} in milliseconds, for stages that were timed."""
        with self._lock:
            rows = list(self._rows)
        out = {}
        for stage in STAGES:
            values = np.array([getattr(r, stage) for r in rows if getattr(r, stage) is not None], np.float64)
            if values.size:
                p90, p95, p99 = np.percentile(values, [90, 95, 99])
                out[stage] = {
                    "min": values.min(), "mean": values.mean(), "median": float(np.median(values)),
                    "p90": p90, "p95": p95, "p99": p99, "max": values.max(), "count": int(values.size),
                }
        return out

    def summary(self) -> str:
        """A table of the statistics in milliseconds, one row per stage."""
        stats = self.stats()
        if not stats:
            return "no calls timed yet"
        header = f"{'stage (ms)':<12}" + "".join(f"{s:>9}" for s in STATISTICS) + f"{'calls':>7}"
        lines = [header]
        for stage, row in stats.items():
            lines.append(f"{stage:<12}" + "".join(f"{row[s]:>9.3f}" for s in STATISTICS) + f"{row['count']:>7}")
        return "\n".join(lines)

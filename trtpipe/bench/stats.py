"""Summary statistics of timing samples, and the duration syntax of ``--warmup 200ms --duration 3s``.

Percentiles use numpy's default (linear interpolation between closest ranks), so a report's p99 equals
``np.percentile(samples, 99)`` of the raw samples.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from trtpipe.errors import ConfigError

#: The statistics every metric carries, in the order tables show them.
STAT_FIELDS = ("count", "min", "mean", "median", "p90", "p95", "p99", "max", "std")


@dataclass(frozen=True)
class Stats:
    """Summary of one metric's samples in milliseconds (``count`` is the number of samples)."""

    count: int
    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float  # population standard deviation (ddof=0), as trtexec reports it

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Stats":
        return cls(**{name: data[name] for name in STAT_FIELDS})


def summarize(samples: Iterable[float | None]) -> Stats | None:
    """Summarizes ``samples``; ``None`` when there are none (a stage the backend does not have).

    ``None`` entries are dropped: a stage is either measured on every iteration or absent, and an
    absent stage must stay absent in the report rather than become zeros.
    """
    values = np.asarray([s for s in samples if s is not None], dtype=np.float64)
    if values.size == 0:
        return None
    p50, p90, p95, p99 = np.percentile(values, [50, 90, 95, 99])
    return Stats(
        count=int(values.size),
        min=float(values.min()),
        mean=float(values.mean()),
        median=float(p50),
        p90=float(p90),
        p95=float(p95),
        p99=float(p99),
        max=float(values.max()),
        std=float(values.std()),
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|min)?\s*$")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, None: 1.0}


def parse_duration(text: str | float) -> float:
    """Parses ``"200ms"``, ``"3s"``, ``"1.5"`` (seconds), ``"2min"`` into seconds.

    Raises:
        ConfigError: for anything else, or a negative/infinite value.
    """
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise ConfigError(
                f"duration {text!r} is not a number with an optional unit",
                "write e.g. 200ms, 3s, 1.5 (seconds) or 2min",
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"duration {text!r} is negative or infinite", "give a duration >= 0, e.g. 3s")
    return seconds


def format_ms(value: float | None) -> str:
    """A latency for tables: three significant decimals below 10 ms, fewer above; '—' when absent."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value:.3f}"
    if value < 100:
        return f"{value:.2f}"
    return f"{value:.1f}"

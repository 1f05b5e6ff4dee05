"""Summary statistics of timing samples, and the duration syntax of ``--warmup 200ms --duration 3s``.

Percentiles use numpy's default (linear interpolation between closest ranks), so a report's p99 equals
``np.percentile(samples, 99)`` of the raw samples.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from trtpipe.errors import ConfigError

#: The statistics every metric carries, in the order tables show them.
STAT_FIELDS = ("count", "min", "mean", "median", "p90", "p95", "p99", "max", "std")
#: trtexec's default ``--percentile`` list, which STAT_FIELDS always carries.
DEFAULT_PERCENTILES = (90.0, 95.0, 99.0)
#: A percentile is drawn (chart whisker) only when at least this many samples lie at or above it: below
#: that it is the largest of a handful of samples and moves from run to run. 10 is the usual floor for a
#: tail estimate (p99 then needs 1,000 iterations, p95 200, p90 100).
MIN_TAIL_SAMPLES = 10


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
    # Percentiles asked for with --percentile beyond p90/p95/p99, keyed by percentile_key(P) ("99.9").
    extra: Mapping[str, float] = field(default_factory=dict)

    def percentile(self, percent: float) -> float | None:
        """The ``percent`` percentile in ms, or None when it was not computed (not asked for)."""
        key = percentile_key(percent)
        named = {"50": self.median, "90": self.p90, "95": self.p95, "99": self.p99, "100": self.max, "0": self.min}
        return named.get(key, self.extra.get(key))

    def enough_for(self, percent: float) -> bool:
        """True when at least MIN_TAIL_SAMPLES samples lie at or above the ``percent`` percentile."""
        return self.count >= min_iterations_for(percent)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: getattr(self, name) for name in STAT_FIELDS}
        if self.extra:
            data["percentiles"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Stats":
        return cls(**{name: data[name] for name in STAT_FIELDS}, extra=dict(data.get("percentiles") or {}))


def percentile_key(percent: float) -> str:
    """``99.0`` -> ``"99"``, ``99.9`` -> ``"99.9"``: the label of a percentile in reports and tables."""
    return f"{float(percent):g}"


def min_iterations_for(percent: float) -> int:
    """Iterations a run needs before its ``percent`` percentile is drawn (see MIN_TAIL_SAMPLES)."""
    # rounded first: 10 / (1 - 0.999) is 10000.000000000002 in floating point
    return math.ceil(round(MIN_TAIL_SAMPLES / (1 - percent / 100), 6)) if percent < 100 else MIN_TAIL_SAMPLES


def parse_percentiles(text: str) -> tuple[float, ...]:
    """Parses trtexec's ``--percentile 90,95,99`` (0 <= P <= 100, as ``P`` percent of samples at or below).

    Raises:
        ConfigError: not a comma-separated list of numbers in [0, 100].
    """
    try:
        values = tuple(float(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or any(not 0 <= v <= 100 for v in values):
        raise ConfigError(
            f"--percentile {text!r} is not a comma-separated list of percentiles in [0, 100]",
            "write e.g. --percentile 99 or --percentile 90,99,99.9",
        )
    return values


def summarize(samples: Iterable[float | None], percentiles: Sequence[float] = ()) -> Stats | None:
    """Summarizes ``samples``; ``None`` when there are none (a stage the backend does not have).

    ``None`` entries are dropped: a stage is either measured on every iteration or absent, and an
    absent stage must stay absent in the report rather than become zeros.

    Args:
        samples: milliseconds, one per iteration.
        percentiles: percentiles to add to ``Stats.extra`` beyond those always computed (50/90/95/99).
    """
    values = np.asarray([s for s in samples if s is not None], dtype=np.float64)
    if values.size == 0:
        return None
    p50, p90, p95, p99 = np.percentile(values, [50, 90, 95, 99])
    wanted = [p for p in percentiles if percentile_key(p) not in ("0", "50", "90", "95", "99", "100")]
    extra = dict(zip(map(percentile_key, wanted), map(float, np.percentile(values, wanted)))) if wanted else {}
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
        extra=extra,
    )


_DURATION = re.compile(r"^\s*(-?(?:\d+(?:\.\d*)?|\.\d+))\s*(us|ms|s|min)?\s*$")  # negatives parse, to be refused as such
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
        raise ConfigError(f"duration {text!r} is {seconds:g} s, expected a duration >= 0", "give e.g. 200ms, 3s or 0")
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

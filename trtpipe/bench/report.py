"""The benchmark report: one JSON file per ``trtpipe bench`` run, with a schema version, read back with validation.

Layout (schema version 1)::

    {
      "schema_version": 1, "kind": "trtpipe-bench", "trtpipe_version": "0.1.0", "created_at": "...Z",
      "partial": false, "partial_reason": null, "command": "trtpipe bench ...",
      "model": {"name", "file", "sha256", "precision", "precision_realised", "weights", "source"},
      "backend": {"name", "device", "simulated", "fallback", "cuda_graph", "transfers"},
      "settings": {"warmup_s", "duration_s", "iterations_min", "in_flight", "batches", "end_to_end_image"},
      "environment": {... bench.environment.capture_environment() ...},
      "sidecar": {... EngineSidecar.to_dict() ...} | null,
      "results": [BenchResult.to_dict(), ...],
      "notes": ["..."], "layer_profile": {...} | null
    }

Metric names follow trtexec; every value is milliseconds summarised by :class:`~trtpipe.bench.stats.Stats`,
and a stage a backend does not have is ``null`` (never zero, never invented).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import trtpipe
from trtpipe.bench.stats import Stats
from trtpipe.errors import InputError
from trtpipe.io import atomic_write_text
from trtpipe.spec import read_json

SCHEMA_VERSION = 1
REPORT_KIND = "trtpipe-bench"

#: metric -> what it measures, in trtexec's vocabulary; the order tables and CSV columns follow.
METRICS = {
    "host_latency": "H2D + GPU compute + D2H of one inference (CUDA events), as trtexec's 'Latency'",
    "gpu_compute": "GPU compute time of one inference (CUDA events around execute)",
    "h2d": "host-to-device copy of the inputs (CUDA events)",
    "d2h": "device-to-host copy of the outputs (CUDA events)",
    "enqueue": "host time to enqueue one inference (perf_counter around the async launch)",
    "call": "one synchronous inference call on the host clock (perf_counter, synchronize inside)",
    "preprocess": "images -> input tensor (perf_counter)",
    "postprocess": "outputs -> task results (perf_counter)",
    "end_to_end": "preprocess + inference + postprocess of one batch of images (perf_counter)",
}

#: mode -> label shown wherever the numbers are.
MODES = {
    "latency": "synchronous: one inference at a time, synchronized after each (per-iteration latency)",
    "throughput": "enqueue-ahead: inferences queued ahead so the device never idles (throughput)",
    "end_to_end": "synchronous, with pre/post-processing of real-size images through the Pipeline",
}


@dataclass(frozen=True)
class BenchResult:
    """The measurement of one batch size in one mode."""

    batch: int
    mode: str  # latency | throughput | end_to_end (see MODES)
    iterations: int  # timed iterations (warm-up excluded)
    wall_s: float  # host wall time of the timed iterations, queue drained
    metrics: Mapping[str, Stats | None]  # METRICS name -> stats; None where the backend has no such stage
    partial: bool = False  # interrupted before its duration was reached
    throughput_source: str | None = None  # "enqueue-ahead" or "synchronous" (no async queue on this backend)

    @property
    def inferences_per_s(self) -> float | None:
        return self.iterations / self.wall_s if self.wall_s > 0 and self.iterations else None

    @property
    def images_per_s(self) -> float | None:
        ips = self.inferences_per_s
        return ips * self.batch if ips is not None else None

    @property
    def latency(self) -> Stats | None:
        """The headline latency: end-to-end in that mode; else host latency where the device is timed, else the call."""
        if self.mode == "end_to_end":
            return self.metrics.get("end_to_end")
        return self.metrics.get("host_latency") or self.metrics.get("call")

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "mode": self.mode,
            "mode_description": MODES[self.mode],
            "iterations": self.iterations,
            "wall_s": self.wall_s,
            "partial": self.partial,
            "throughput": {
                "inferences_per_s": self.inferences_per_s,
                "images_per_s": self.images_per_s,
                "source": self.throughput_source,
            },
            "metrics": {name: (stats.to_dict() if stats else None) for name, stats in self.metrics.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BenchResult":
        return cls(
            batch=int(data["batch"]),
            mode=str(data["mode"]),
            iterations=int(data["iterations"]),
            wall_s=float(data["wall_s"]),
            metrics={name: (Stats.from_dict(s) if s else None) for name, s in data["metrics"].items()},
            partial=bool(data.get("partial", False)),
            throughput_source=(data.get("throughput") or {}).get("source"),
        )


@dataclass
class BenchReport:
    """Everything one bench run produced; ``to_dict``/``save`` give the JSON file, ``load`` reads and validates one."""

    model: dict[str, Any]  # name, file, sha256, precision, precision_realised, weights, source
    backend: dict[str, Any]  # name, device, simulated, fallback, cuda_graph, transfers
    settings: dict[str, Any]
    environment: dict[str, Any]
    sidecar: dict[str, Any] | None = None
    results: list[BenchResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    partial: bool = False
    partial_reason: str | None = None
    command: str | None = None
    layer_profile: dict[str, Any] | None = None
    created_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    trtpipe_version: str = trtpipe.__version__
    source: str | None = None  # the file it was loaded from (not saved)

    # -- what the tables need to flag ---------------------------------------------------------

    @property
    def random_weights(self) -> bool:
        return self.model.get("weights") == "random"

    @property
    def simulated(self) -> bool:
        return bool(self.backend.get("simulated"))

    @property
    def on_cpu(self) -> bool:
        return self.backend.get("device") == "cpu"

    def mark_partial(self, reason: str) -> None:
        self.partial, self.partial_reason = True, reason

    # -- JSON ------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": REPORT_KIND,
            "trtpipe_version": self.trtpipe_version,
            "created_at": self.created_at,
            "partial": self.partial,
            "partial_reason": self.partial_reason,
            "command": self.command,
            "model": self.model,
            "backend": self.backend,
            "settings": self.settings,
            "environment": self.environment,
            "sidecar": self.sidecar,
            "results": [r.to_dict() for r in self.results],
            "notes": list(self.notes),
            "layer_profile": self.layer_profile,
        }

    def save(self, path: str | Path) -> Path:
        """Writes the report atomically (a Ctrl-C while writing never leaves half a file)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: Any, source: str = "report") -> "BenchReport":
        """Validates ``data`` (a parsed JSON file) and builds the report.

        Raises:
            InputError: not a trtpipe bench report, another schema version, or missing/malformed fields.
        """
        if not isinstance(data, dict) or data.get("kind") != REPORT_KIND:
            raise InputError(
                f"{source} is not a trtpipe bench report (no \"kind\": \"{REPORT_KIND}\")",
                "pass the JSON files written by trtpipe bench --json",
            )
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(
                f"{source} has report schema version {version!r}, this trtpipe ({trtpipe.__version__}) reads version {SCHEMA_VERSION}",
                "re-run trtpipe bench with this trtpipe to regenerate the report, or use the trtpipe version that wrote it",
            )
        try:
            report = cls(
                model=dict(data["model"]),
                backend=dict(data["backend"]),
                settings=dict(data["settings"]),
                environment=dict(data["environment"]),
                sidecar=data.get("sidecar"),
                results=[BenchResult.from_dict(r) for r in data["results"]],
                notes=list(data.get("notes") or []),
                partial=bool(data.get("partial", False)),
                partial_reason=data.get("partial_reason"),
                command=data.get("command"),
                layer_profile=data.get("layer_profile"),
                created_at=str(data["created_at"]),
                trtpipe_version=str(data["trtpipe_version"]),
                source=source,
            )
            for key in ("name", "precision", "weights"):
                report.model[key]  # noqa: B018 - presence check, KeyError below names it
            report.backend["name"]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"{source}: report is incomplete or malformed ({type(exc).__name__}: {exc})",
                "the file was edited or truncated; regenerate it with trtpipe bench --json",
            ) from None
        return report

    @classmethod
    def load(cls, path: str | Path) -> "BenchReport":
        path = Path(path)
        return cls.from_dict(read_json(path), source=str(path))

"""The benchmark report: one JSON file per ``trtpipe bench`` run, with a schema version, read back with validation.

Layout (schema version 2)::

    {
      "schema_version": 2, "kind": "trtpipe-bench", "trtpipe_version": "0.1.0", "created_at": "...Z",
      "partial": false, "partial_reason": null, "command": "trtpipe bench ...",
      "model": {"name", "file", "sha256", "precision", "precision_realised", "weights", "source"},
      "backend": {"name", "device", "simulated", "fallback", "cuda_graph", "transfers", "threads", "contexts",
                  and for a served model "url", "protocol", "server", "model_version", "instance_kind"},
      "settings": {"warmup_s", "duration_s", "iterations_min", "in_flight", "batches", "end_to_end_image",
                   "percentiles", "shapes", and for a served model "concurrency", "requests"},
      "environment": {... bench.environment.capture_environment() ...},
      "sidecar": {... EngineSidecar.to_dict() ...} | null,
      "results": [BenchResult.to_dict(), ...],
      "notes": ["..."], "layer_profile": {...} | null
    }

Metric names follow trtexec (and perf_analyzer for a served model); every value is milliseconds summarised
by :class:`~trtpipe.bench.stats.Stats`, and a stage a backend does not have is ``null`` (never zero, never
invented). A simulated run (``bench --simulate``) is a functional check: its results say ``"timed": false``
and carry no metrics, because its device clock is the simulation's. Version 1 files still load; the
timings of a simulated version-1 file are dropped on reading, for the same reason.
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

SCHEMA_VERSION = 2
#: Versions this trtpipe reads (1: before served-model results and functional checks).
READABLE_VERSIONS = (1, 2)
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
    "client_request": "a served model: one request from send to response, on the client (perf_counter), as "
                      "perf_analyzer's client-side latency",
}

#: mode -> label shown wherever the numbers are.
MODES = {
    "latency": "synchronous: one inference at a time, synchronized after each (per-iteration latency)",
    "throughput": "enqueue-ahead: inferences queued ahead so the device never idles (throughput)",
    "end_to_end": "synchronous, with pre/post-processing of real-size images through the Pipeline",
    "concurrency": "a served model under load: N clients each keep one request outstanding (perf_analyzer's "
                   "concurrency mode)",
}

#: Server-side figures of a served model (Triton's statistics extension: cumulative counts and nanoseconds,
#: read before and after each concurrency level). Means per request, in ms; the extension has no percentiles.
SERVER_STAGES = {
    "request": "successful request, from arrival at the server to its response (queue + compute + overhead)",
    "queue": "waiting in the scheduler's queue (dynamic batcher)",
    "compute_input": "copying/preparing the inputs for the backend",
    "compute_infer": "the model's execution",
    "compute_output": "copying/preparing the outputs",
}


@dataclass(frozen=True)
class BenchResult:
    """The measurement of one batch size in one mode."""

    batch: int  # images per inference; for a served model, per request
    mode: str  # latency | throughput | end_to_end | concurrency (see MODES)
    iterations: int  # timed iterations (warm-up excluded); for a served model, successful requests
    wall_s: float | None  # host wall time of the timed iterations, queue drained; None when not timed
    metrics: Mapping[str, Stats | None]  # METRICS name -> stats; None where the backend has no such stage
    partial: bool = False  # interrupted before its duration was reached
    # "enqueue-ahead", "synchronous" (no async queue on this backend), "N streams" (--infStreams), or "clients"
    throughput_source: str | None = None
    timed: bool = True  # False: a functional check (simulation): it ran, and nothing it timed is a figure
    concurrency: int | None = None  # a served model: requests kept outstanding
    server: Mapping[str, Any] | None = None  # a served model: Triton's statistics over this level (see SERVER_STAGES)
    errors: int = 0  # a served model: failed requests (not in the statistics)
    check: Mapping[str, Any] | None = None  # a functional check: what was verified (output shapes, finite values)

    @property
    def inferences_per_s(self) -> float | None:
        if not self.timed or not self.wall_s or not self.iterations:
            return None
        return self.iterations / self.wall_s

    @property
    def images_per_s(self) -> float | None:
        ips = self.inferences_per_s
        return ips * self.batch if ips is not None else None

    @property
    def latency(self) -> Stats | None:
        """The headline latency: end-to-end in that mode; else host latency where the device is timed, else the call."""
        if not self.timed:
            return None
        if self.mode == "end_to_end":
            return self.metrics.get("end_to_end")
        if self.mode == "concurrency":
            return self.metrics.get("client_request")
        return self.metrics.get("host_latency") or self.metrics.get("call")

    def to_dict(self) -> dict[str, Any]:
        data = {
            "batch": self.batch,
            "mode": self.mode,
            "mode_description": MODES[self.mode],
            "timed": self.timed,
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
        optional = {"concurrency": self.concurrency, "server": self.server, "check": self.check}
        data.update({key: value for key, value in optional.items() if value is not None})
        if self.mode == "concurrency":
            data["errors"] = self.errors
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], simulated_v1: bool = False) -> "BenchResult":
        """Reads one result; ``simulated_v1``: a version-1 simulated result, whose fake-clock timings are dropped."""
        timed = bool(data.get("timed", True)) and not simulated_v1
        wall = data.get("wall_s")
        return cls(
            batch=int(data["batch"]),
            mode=str(data["mode"]),
            iterations=int(data["iterations"]),
            wall_s=float(wall) if wall is not None and timed else None,
            metrics={name: (Stats.from_dict(s) if s else None) for name, s in data["metrics"].items()} if timed else {},
            partial=bool(data.get("partial", False)),
            throughput_source=(data.get("throughput") or {}).get("source"),
            timed=timed,
            concurrency=int(data["concurrency"]) if data.get("concurrency") is not None else None,
            server=data.get("server"),
            errors=int(data.get("errors", 0)),
            check=data.get("check"),
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

    @property
    def served(self) -> bool:
        """A served model (``bench --url``): results are concurrency levels, the machine is the client's."""
        return any(r.mode == "concurrency" for r in self.results) or "url" in self.backend

    @property
    def functional_check(self) -> bool:
        """True when nothing of this run is a timing (a simulation): reports list it, never chart it."""
        return self.simulated or (bool(self.results) and not any(r.timed for r in self.results))

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
        if version not in READABLE_VERSIONS:
            raise InputError(
                f"{source} has report schema version {version!r}, this trtpipe ({trtpipe.__version__}) reads versions {', '.join(map(str, READABLE_VERSIONS))}",
                "re-run trtpipe bench with this trtpipe to regenerate the report, or use the trtpipe version that wrote it",
            )
        try:
            report = cls(
                model=dict(data["model"]),
                backend=dict(data["backend"]),
                settings=dict(data["settings"]),
                environment=dict(data["environment"]),
                sidecar=data.get("sidecar"),
                results=[BenchResult.from_dict(r, simulated_v1=version == 1 and bool((data.get("backend") or {}).get("simulated")))
                         for r in data["results"]],
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

"""Joins bench reports into comparable rows: one per report and batch, with speedups and the flags a reader must see.

A row flags what makes its numbers not comparable at a glance: a CPU run (no device stages), a CPU
fallback, random weights, a simulation, an interrupted (partial) run, another machine than the baseline's.
Every flag also becomes a sentence in :attr:`Comparison.notes`, which the Markdown report prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from trtpipe.bench.environment import machine_key
from trtpipe.bench.report import BenchReport, BenchResult
from trtpipe.bench.stats import Stats
from trtpipe.errors import InputError

FLAG_TEXT = {
    "CPU": "ran on the CPU: there are no device stages (H2D, GPU compute, D2H are absent, not zero); latency is one "
           "synchronous call on the host clock, which is not comparable with a GPU's host latency",
    "fallback": "CPU fallback: a GPU backend was asked for and this machine had none, so the ONNX ran on ONNX Runtime's CPU",
    "random weights": "RANDOM weights (pretrained weights were not available): the timings hold, any accuracy figure does not",
    "simulated": "SIMULATED: TensorRT and CUDA were simulated on the CPU; the timings say nothing about any GPU",
    "partial": "PARTIAL: the run was interrupted (Ctrl-C); fewer batches or iterations than asked for",
    "other machine": "measured on another machine than the baseline: the speedup mixes hardware and software",
}


@dataclass(frozen=True)
class Row:
    """One report at one batch size, as the tables and charts show it."""

    model: str
    machine: str
    backend: str
    device: str  # gpu | cpu
    precision: str
    weights: str
    batch: int
    latency: Stats | None  # host latency (device timed) or the synchronous call (CPU)
    latency_kind: str  # "host latency" | "synchronous call"
    gpu_compute: Stats | None
    images_per_s: float | None
    throughput_source: str | None  # enqueue-ahead | synchronous
    end_to_end: Stats | None
    flags: tuple[str, ...]
    source: str  # report file
    speedup_latency: float | None = None
    speedup_throughput: float | None = None

    @property
    def series(self) -> str:
        """The chart legend entry: machine, backend, precision and the flags that change meaning."""
        marks = [f for f in self.flags if f in ("random weights", "simulated", "partial")]
        return f"{self.machine} · {self.backend} · {self.precision}" + (f" [{', '.join(marks)}]" if marks else "")


@dataclass
class Comparison:
    """The joined reports: rows, machines, notes, and the baseline used for speedups."""

    reports: list[BenchReport]
    rows: list[Row]
    machines: dict[str, dict]  # machine key -> environment block
    notes: list[str] = field(default_factory=list)
    baseline: BenchReport | None = None

    @property
    def models(self) -> list[str]:
        return sorted({row.model for row in self.rows})


def load_reports(paths: Sequence[str | Path]) -> list[BenchReport]:
    """Loads and validates every report (one InputError naming the first bad file)."""
    if not paths:
        raise InputError("no report files were given", "pass the JSON files of trtpipe bench, e.g. reports/*.json")
    return [BenchReport.load(p) for p in paths]


def compare(reports: Sequence[BenchReport], baseline: BenchReport | None = None, allow_mixed: bool = False) -> Comparison:
    """Joins ``reports`` (and ``baseline``, which need not be among them) into rows.

    Raises:
        InputError: reports of different models without ``allow_mixed``, or a baseline without the models.
    """
    reports = list(reports)
    if baseline is not None and not any(_same_file(baseline, r) for r in reports):
        reports.insert(0, baseline)
    models = sorted({r.model["name"] for r in reports})
    if len(models) > 1 and not allow_mixed:
        by_model = {m: [r.source for r in reports if r.model["name"] == m] for m in models}
        raise InputError(
            "the reports time different models: " + "; ".join(f"{m} ({', '.join(map(str, s))})" for m, s in by_model.items()),
            "report each model on its own, or pass --allow-mixed to put them in one table (no speedups across models)",
        )
    machines = {machine_key(r.environment): r.environment for r in reports}
    base_machine = machine_key(baseline.environment) if baseline else None
    rows = []
    for report in reports:
        machine = machine_key(report.environment)
        flags = _flags(report) + (("other machine",) if baseline is not None and machine != base_machine else ())
        for batch in sorted({r.batch for r in report.results}):
            row = _row(report, batch, machine, flags)
            if baseline is not None:
                row = _with_speedup(row, baseline)
            rows.append(row)
    return Comparison(reports, rows, machines, _notes(reports, rows, machines, baseline), baseline)


def _same_file(a: BenchReport, b: BenchReport) -> bool:
    return a.source is not None and b.source is not None and Path(a.source).resolve() == Path(b.source).resolve()


def _flags(report: BenchReport) -> tuple[str, ...]:
    flags = []
    if report.on_cpu:
        flags.append("CPU")
    if report.backend.get("fallback"):
        flags.append("fallback")
    if report.random_weights:
        flags.append("random weights")
    if report.simulated:
        flags.append("simulated")
    if report.partial or any(r.partial for r in report.results):
        flags.append("partial")
    return tuple(flags)


def _pick(report: BenchReport, batch: int, mode: str) -> BenchResult | None:
    return next((r for r in report.results if r.batch == batch and r.mode == mode), None)


def _row(report: BenchReport, batch: int, machine: str, flags: tuple[str, ...]) -> Row:
    latency = _pick(report, batch, "latency")
    throughput = _pick(report, batch, "throughput") or latency
    e2e = _pick(report, batch, "end_to_end")
    device_timed = bool(latency and latency.metrics.get("host_latency"))
    return Row(
        model=report.model["name"],
        machine=machine,
        backend=report.backend["name"] + _threads(report.backend.get("threads")),
        device=report.backend.get("device", "?"),
        precision=report.model["precision"],
        weights=report.model["weights"],
        batch=batch,
        latency=latency.latency if latency else None,
        latency_kind="host latency" if device_timed else "synchronous call",
        gpu_compute=latency.metrics.get("gpu_compute") if latency else None,
        images_per_s=throughput.images_per_s if throughput else None,
        throughput_source=throughput.throughput_source if throughput else None,
        end_to_end=e2e.metrics.get("end_to_end") if e2e else None,
        flags=flags,
        source=str(report.source),
    )


def _threads(threads) -> str:
    if not isinstance(threads, int):
        return ""
    return f" ({threads} thread{'s' if threads != 1 else ''})"


def _with_speedup(row: Row, baseline: BenchReport) -> Row:
    from dataclasses import replace

    if row.model != baseline.model["name"]:
        return row
    base_latency = _pick(baseline, row.batch, "latency")
    base_throughput = _pick(baseline, row.batch, "throughput") or base_latency
    lat = base_latency.latency if base_latency else None
    speed_lat = lat.median / row.latency.median if lat and row.latency and row.latency.median > 0 else None
    base_ips = base_throughput.images_per_s if base_throughput else None
    speed_thr = row.images_per_s / base_ips if base_ips and row.images_per_s else None
    return replace(row, speedup_latency=speed_lat, speedup_throughput=speed_thr)


def _notes(reports, rows, machines, baseline) -> list[str]:
    notes = []
    if len(machines) > 1:
        notes.append(f"Rows come from {len(machines)} machines ({'; '.join(machines)}): compare them knowing the hardware, "
                     "drivers and library versions differ (see Machines).")
    used = {flag for row in rows for flag in row.flags}
    for flag, text in FLAG_TEXT.items():
        if flag in used:
            who = sorted({f"{r.machine} · {r.backend} · {r.precision}" for r in rows if flag in r.flags})
            notes.append(f"**{flag}**: {text}. Rows: {'; '.join(who)}.")
    if any(r.throughput_source == "synchronous" for r in rows):
        notes.append("Throughput marked † comes from the synchronous run: the backend has no asynchronous queue to "
                     "enqueue ahead (ONNX Runtime, torch on the CPU), so it is one call after another.")
    if baseline is not None:
        notes.append(f"Speedups are against {baseline.source} ({baseline.backend['name']} {baseline.model['precision']}, "
                     f"{machine_key(baseline.environment)}) at the same batch: latency = baseline median / row median, "
                     "throughput = row images/s / baseline images/s.")
    for report in reports:
        if report.partial:
            notes.append(f"{report.source}: {report.partial_reason or 'partial'}.")
        for note in report.notes:
            notes.append(f"{report.source}: {note}")
    for key, env in machines.items():
        for warning in env.get("warnings") or []:
            notes.append(f"{key}: {warning}")
    return notes

"""Joins bench reports into comparable rows, one series per run, with speedups and the flags a reader must see.

A **series** is one run (one report file): its identity is the machine, backend, precision, model file
(sha256), and every mode that changes the numbers (CUDA graph, transfers, execution contexts / streams,
threads, in-flight depth, runtime shapes, weights, CPU fallback; for a served model the URL, protocol and
model version). Runs are never merged and never averaged: two runs that differ only in a mode are two series
labelled by that difference, and two runs that do not differ at all are two series labelled by their file.

Three kinds of rows come out:

- :class:`Row`: a timed local run at one batch size (latency, throughput, end-to-end);
- :class:`ServedRow`: a served model (``bench --url``) at one concurrency level;
- :class:`CheckRow`: a functional check (a simulated run): what ran and passed, with no figure at all.

A row flags what makes its numbers not comparable at a glance: a CPU run (no device stages), a CPU
fallback, random weights, a busy machine, an interrupted (partial) run, another machine than the baseline's.
Every flag also becomes a sentence in :attr:`Comparison.notes`, which the Markdown report prints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from trtpipe.bench.environment import machine_key
from trtpipe.bench.report import REPORT_KIND, BenchReport, BenchResult
from trtpipe.bench.stats import Stats
from trtpipe.errors import InputError

log = logging.getLogger("trtpipe")

FLAG_TEXT = {
    "CPU": "ran on the CPU: there are no device stages (H2D, GPU compute, D2H are absent, not zero); latency is one "
           "synchronous call on the host clock, which is not comparable with a GPU's host latency",
    "fallback": "CPU fallback: a GPU backend was asked for and this machine had none, so the ONNX ran on ONNX Runtime's CPU",
    "random weights": "RANDOM weights (pretrained weights were not available): the timings hold, any accuracy figure does not",
    "INT8 dequantized": "the Q/DQ INT8 model ran in ONNX Runtime on the CPU, which dequantizes it and runs float "
                        "kernels: the row checks the INT8 model, it does not show INT8 speed (TensorRT's would)",
    "busy": "the machine was busy when the run started (load average above its usable cores): timings are inflated and noisy",
    "partial": "PARTIAL: the run was interrupted (Ctrl-C); fewer batches or iterations than asked for",
    "request errors": "some requests to the served model failed: its statistics cover the successful ones only",
    "other machine": "measured on another machine than the baseline: the speedup mixes hardware and software",
}
#: Flags shown in a chart legend (the others are in the table and the caption).
LEGEND_FLAGS = ("fallback", "random weights", "INT8 dequantized", "busy", "partial", "request errors")

#: Colours given to series in order, the same series keeping its colour in every chart of a report
#: (matplotlib's tab10, then tab20's lighter shades: distinguishable, and safe for common colour blindness).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7")


@dataclass(frozen=True)
class Series:
    """One run as charts show it: its identity, legend label, colour and flags."""

    report: BenchReport
    identity: tuple[tuple[str, Any], ...]  # (field, value) pairs that make a run this run (see module doc)
    label: str  # the legend entry: what it is, plus what tells it apart from similar runs
    color: str  # hex colour, the same in every chart
    flags: tuple[str, ...]

    @property
    def source(self) -> str:
        return str(self.report.source)


@dataclass(frozen=True)
class Row:
    """One timed local run at one batch size, as the tables and charts show it."""

    model: str
    machine: str
    backend: str
    device: str  # gpu | cpu
    precision: str
    weights: str
    batch: int
    latency: Stats | None  # per batch: host latency (device timed) or the synchronous call (CPU)
    latency_kind: str  # "host latency" | "synchronous call"
    gpu_compute: Stats | None
    images_per_s: float | None
    throughput_source: str | None  # enqueue-ahead | synchronous | N streams
    end_to_end: Stats | None
    flags: tuple[str, ...]
    source: str  # report file
    series: str = ""  # the Series label
    iterations: int = 0  # timed iterations of the latency mode (whiskers need enough of them)
    speedup_latency: float | None = None
    speedup_throughput: float | None = None


@dataclass(frozen=True)
class ServedRow:
    """A served model at one concurrency level: client-side latency percentiles and Triton's server-side means."""

    model: str
    machine: str  # the client's machine
    backend: str  # triton-http | triton-grpc
    precision: str
    batch: int  # images per request
    concurrency: int
    requests: int  # successful requests measured
    errors: int
    requests_per_s: float | None
    images_per_s: float | None
    latency: Stats | None  # client-side, per request
    server: dict[str, Any] | None  # Triton statistics over the level (see report.SERVER_STAGES)
    flags: tuple[str, ...]
    source: str
    series: str = ""


@dataclass(frozen=True)
class CheckRow:
    """A functional check (simulated run): what ran and whether it passed; never a figure."""

    model: str
    machine: str
    backend: str
    precision: str
    file: str | None
    batches: tuple[int, ...]
    modes: tuple[str, ...]
    iterations: int
    passed: bool
    source: str


@dataclass
class Comparison:
    """The joined reports: rows, series, functional checks, machines, notes, and the baseline used for speedups."""

    reports: list[BenchReport]
    rows: list[Row]
    machines: dict[str, dict]  # machine key -> environment block
    notes: list[str] = field(default_factory=list)
    baseline: BenchReport | None = None
    served: list[ServedRow] = field(default_factory=list)
    checks: list[CheckRow] = field(default_factory=list)
    series: dict[str, Series] = field(default_factory=dict)  # label -> series, in report order

    @property
    def models(self) -> list[str]:
        return sorted({r.model["name"] for r in self.reports})

    def series_of(self, label: str) -> Series:
        return self.series[label]


def load_reports(paths: Sequence[str | Path], *, skip_other_files: bool = False) -> list[BenchReport]:
    """Loads and validates every report (one InputError naming the first bad file).

    Args:
        skip_other_files: leave out JSON files that are another kind of document (``reports/*.json`` also matches
            ``make test-gpu``'s and ``make coverage``'s summaries), with a warning naming them. Files that are not
            JSON, and bench reports that are broken or of another schema, are still errors.

    Raises:
        InputError: no paths, a bad file, or (skipping) no bench report among them.
    """
    if not paths:
        raise InputError("no report files were given", "pass the JSON files of trtpipe bench, e.g. reports/*.json")
    kept = [p for p in paths if not (skip_other_files and _other_json(Path(p)))]
    skipped = [str(p) for p in paths if p not in kept]
    if skipped and not kept:
        raise InputError(f"none of {', '.join(skipped)} is a trtpipe bench report (no \"kind\": \"{REPORT_KIND}\")",
                         "pass the JSON files written by trtpipe bench --json")
    if skipped:
        log.warning("skipped %s: not trtpipe bench report%s", ", ".join(skipped), "s" if len(skipped) > 1 else "")
    return [BenchReport.load(p) for p in kept]


def _other_json(path: Path) -> bool:
    """True for a readable JSON file that is not a bench report at all (no ``kind`` of one)."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False  # BenchReport.load says what is wrong with it
    return not (isinstance(data, dict) and data.get("kind") == REPORT_KIND)


def compare(reports: Sequence[BenchReport], baseline: BenchReport | None = None, allow_mixed: bool = False) -> Comparison:
    """Joins ``reports`` (and ``baseline``, which need not be among them) into rows, one series per report.

    Raises:
        InputError: reports of different models without ``allow_mixed``; a baseline that has no timings
            (a functional check) or is a served model.
    """
    reports = list(reports)
    if baseline is not None:
        if baseline.functional_check or baseline.served:
            what = "a functional check (simulated: no timings)" if baseline.functional_check else "a served model's load test"
            raise InputError(
                f"baseline {baseline.source} is {what}: there is nothing to compute speedups against",
                "give a timed local run as --baseline, e.g. the ONNX Runtime FP32 report",
            )
        if not any(_same_file(baseline, r) for r in reports):
            reports.insert(0, baseline)
    models = sorted({r.model["name"] for r in reports})
    if len(models) > 1 and not allow_mixed:
        by_model = {m: [r.source for r in reports if r.model["name"] == m] for m in models}
        raise InputError(
            "the reports time different models: " + "; ".join(f"{m} ({', '.join(map(str, s))})" for m, s in by_model.items()),
            "report each model on its own, pass --name to bench to give runs of one network one name, or pass "
            "--allow-mixed to put them in one table (no speedups across models)",
        )
    machines = {machine_key(r.environment): r.environment for r in reports}
    base_machine = machine_key(baseline.environment) if baseline else None
    timed = [r for r in reports if not r.functional_check]
    series = _series(timed, mixed_models=len(models) > 1, machines=len({machine_key(r.environment) for r in timed}))
    by_report = {id(s.report): s for s in series}
    rows, served, checks = [], [], []
    for report in reports:
        machine = machine_key(report.environment)
        if report.functional_check:
            checks.append(_check_row(report, machine))
            continue
        flags = by_report[id(report)].flags + (("other machine",) if baseline is not None and machine != base_machine else ())
        label = by_report[id(report)].label
        if report.served:
            served += [_served_row(report, result, machine, flags, label) for result in report.results if result.mode == "concurrency"]
            continue
        for batch in sorted({r.batch for r in report.results}):
            row = _row(report, batch, machine, flags, label)
            if baseline is not None:
                row = _with_speedup(row, baseline)
            rows.append(row)
    comparison = Comparison(reports, rows, machines, [], baseline, served, checks, {s.label: s for s in series})
    comparison.notes = _notes(comparison)
    return comparison


# ----------------------------------------------------------------------------------------------
# Series: identity, label, colour
# ----------------------------------------------------------------------------------------------


def identity(report: BenchReport) -> dict[str, Any]:
    """The fields that make a run this run: equal for two runs that measured the same thing the same way."""
    backend, settings, model = report.backend, report.settings, report.model
    fields: dict[str, Any] = {
        "machine": machine_key(report.environment),
        "model": model["name"],
        "backend": backend["name"],
        "precision": model["precision"],
        "file": (model.get("sha256") or "")[:12] or None,
        "weights": model["weights"],
        "fallback": bool(backend.get("fallback")),
        "threads": backend.get("threads") if isinstance(backend.get("threads"), int) else None,
        "shapes": _shapes_text(settings.get("shapes")),
        "streams": int(settings.get("infer_streams") or backend.get("contexts") or 1),
        "fp16_storage": backend.get("fp16_storage"),  # ONNX Runtime CPU, FP16: stored as FP16 between ops or not
    }
    if backend.get("device") == "gpu":
        fields.update(cuda_graph=bool(backend.get("cuda_graph")), transfers=backend.get("transfers") is not False,
                      in_flight=settings.get("in_flight"))
    if report.served:
        fields.update(url=backend.get("url"), protocol=backend.get("protocol"), model_version=backend.get("model_version"),
                      request_batch=tuple(sorted({r.batch for r in report.results})))
    return fields


def _shapes_text(shapes) -> str | None:
    if not shapes:
        return None
    return ",".join(f"{name}:{'x'.join(map(str, dims))}" for name, dims in sorted(shapes.items()))


#: How a differing identity field reads in a label.
_FIELD_TEXT = {
    "file": lambda v: f"file {v}" if v else "no file",
    "weights": lambda v: "random weights" if v == "random" else f"weights {v}",
    "fallback": lambda v: "CPU fallback" if v else "not a fallback",
    "threads": lambda v: f"{v} thread{'s' if v != 1 else ''}" if v else "default threads",
    "shapes": lambda v: f"shapes {v}" if v else "default shapes",
    "cuda_graph": lambda v: "CUDA graph" if v else "no CUDA graph",
    "transfers": lambda v: "with H2D/D2H" if v else "no transfers",
    "streams": lambda v: f"{v} stream{'s' if v != 1 else ''}",
    "fp16_storage": lambda v: {True: "FP16 storage", False: "FP16 computed in FP32"}.get(v, "no FP16 storage setting"),
    "in_flight": lambda v: f"{v} in flight",
    "url": lambda v: f"at {v}",
    "protocol": lambda v: str(v),
    "model_version": lambda v: f"version {v}",
    "request_batch": lambda v: "batch " + ",".join(map(str, v)),
}


def _series(reports: list[BenchReport], *, mixed_models: bool, machines: int) -> list[Series]:
    idents = [identity(r) for r in reports]
    bases = []
    for report, ident in zip(reports, idents):
        parts = ([ident["model"]] if mixed_models else []) + ([ident["machine"]] if machines > 1 else [])
        if report.served:  # what the server ran is unknown to the client unless given (--precision)
            parts += [ident["backend"], f"model {report.backend.get('model')}", _FIELD_TEXT["request_batch"](ident["request_batch"])]
            parts += [] if ident["precision"] == "unknown" else [ident["precision"]]
            parts += [f"server {report.backend.get('device', '?').upper()}"]
        else:
            parts += [ident["backend"], ident["precision"]]
        bases.append(" · ".join(parts))
    labels = []
    for i, (base, ident) in enumerate(zip(bases, idents)):
        peers = [idents[j] for j, b in enumerate(bases) if b == base and j != i]
        differing = [k for k in _FIELD_TEXT if any(peer.get(k) != ident.get(k) for peer in peers) and k != "request_batch"]
        text = [_FIELD_TEXT[k](ident.get(k)) for k in differing if k in ident]
        labels.append(base + (f" · {', '.join(text)}" if text else ""))
    # Runs that measured the same thing the same way stay apart: named by their file.
    for i, label in enumerate(labels):
        twins = [j for j, other in enumerate(labels) if other == label]
        if len(twins) > 1:
            for j in twins:
                labels[j] = f"{label} · run {Path(str(reports[j].source)).stem}"
    out = []
    for i, (report, label) in enumerate(zip(reports, labels)):
        flags = _flags(report)
        shown = [f for f in flags if f in LEGEND_FLAGS and not (f == "fallback" and "CPU fallback" in label)]
        if "CPU" in flags and "cpu" not in report.backend["name"]:
            shown.insert(0, "CPU")
        full = label + (f" [{', '.join(shown)}]" if shown else "")
        out.append(Series(report, tuple(idents[i].items()), full, PALETTE[i % len(PALETTE)], flags))
    return out


def _same_file(a: BenchReport, b: BenchReport) -> bool:
    return a.source is not None and b.source is not None and Path(a.source).resolve() == Path(b.source).resolve()


def _flags(report: BenchReport) -> tuple[str, ...]:
    flags = []
    if report.on_cpu and not report.served:  # a served model's device is the server's, and its latency a request's
        flags.append("CPU")
    if report.backend.get("fallback"):
        flags.append("fallback")
    if report.random_weights:
        flags.append("random weights")
    if report.backend.get("int8_dequantized"):
        flags.append("INT8 dequantized")
    if _busy(report.environment):
        flags.append("busy")
    if report.partial or any(r.partial for r in report.results):
        flags.append("partial")
    if any(r.errors for r in report.results):
        flags.append("request errors")
    return tuple(flags)


def _busy(environment: dict) -> bool:
    load = environment.get("load_average_1min")
    cores = (environment.get("cpu") or {}).get("usable_cores") or 1
    return isinstance(load, (int, float)) and load > cores


# ----------------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------------


def _pick(report: BenchReport, batch: int, mode: str) -> BenchResult | None:
    return next((r for r in report.results if r.batch == batch and r.mode == mode and r.timed), None)


def _row(report: BenchReport, batch: int, machine: str, flags: tuple[str, ...], label: str) -> Row:
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
        series=label,
        iterations=latency.iterations if latency else 0,
    )


def _served_row(report: BenchReport, result: BenchResult, machine: str, flags, label: str) -> ServedRow:
    return ServedRow(
        model=report.model["name"], machine=machine, backend=report.backend["name"], precision=report.model["precision"],
        batch=result.batch, concurrency=result.concurrency or 0, requests=result.iterations, errors=result.errors,
        requests_per_s=result.inferences_per_s, images_per_s=result.images_per_s, latency=result.latency,
        server=dict(result.server) if result.server else None,
        flags=flags + (("partial",) if result.partial and "partial" not in flags else ()),
        source=str(report.source), series=label,
    )


def _check_row(report: BenchReport, machine: str) -> CheckRow:
    results = report.results
    return CheckRow(
        model=report.model["name"], machine=machine, backend=report.backend["name"], precision=report.model["precision"],
        file=report.model.get("file"), batches=tuple(sorted({r.batch for r in results})),
        modes=tuple(dict.fromkeys(r.mode for r in results)), iterations=sum(r.iterations for r in results),
        # Version-1 simulated files carry no check record: they ran, nothing more is known.
        passed=bool(results) and not report.partial and all((r.check or {"passed": True}).get("passed") for r in results),
        source=str(report.source),
    )


def _threads(threads) -> str:
    if not isinstance(threads, int):
        return ""
    return f" ({threads} thread{'s' if threads != 1 else ''})"


def _with_speedup(row: Row, baseline: BenchReport) -> Row:
    if row.model != baseline.model["name"]:
        return row
    base_latency = _pick(baseline, row.batch, "latency")
    base_throughput = _pick(baseline, row.batch, "throughput") or base_latency
    lat = base_latency.latency if base_latency else None
    speed_lat = lat.median / row.latency.median if lat and row.latency and row.latency.median > 0 else None
    base_ips = base_throughput.images_per_s if base_throughput else None
    speed_thr = row.images_per_s / base_ips if base_ips and row.images_per_s else None
    return replace(row, speedup_latency=speed_lat, speedup_throughput=speed_thr)


def _notes(comparison: Comparison) -> list[str]:
    reports, rows, machines, baseline = comparison.reports, comparison.rows, comparison.machines, comparison.baseline
    notes = []
    if len(machines) > 1:
        notes.append(f"Rows come from {len(machines)} machines ({'; '.join(machines)}): compare them knowing the hardware, "
                     "drivers and library versions differ (see Machines).")
    flagged = [(r.flags, f"{r.series}") for r in rows] + [(r.flags, r.series) for r in comparison.served]
    for flag, text in FLAG_TEXT.items():
        who = sorted({series for flags, series in flagged if flag in flags})
        if who:
            notes.append(f"**{flag}**: {text}. Series: {'; '.join(who)}.")
    if comparison.checks:
        names = "; ".join(f"{c.backend} {c.precision} ({c.source})" for c in comparison.checks)
        notes.append(f"**functional checks**: {names} ran TensorRT and CUDA in trtpipe's CPU simulation. They show that "
                     "the engine path runs and its outputs are sane; they have no latency, throughput or speedup, and "
                     "are in no table of figures and no chart.")
    if any(r.throughput_source == "synchronous" for r in rows):
        notes.append("Throughput marked † comes from the synchronous run: the backend has no asynchronous queue to "
                     "enqueue ahead (ONNX Runtime, torch on the CPU), so it is one call after another.")
    if comparison.served:
        notes.append("Served models: the machine is the client's (where trtpipe bench --url ran); client-side latency "
                     "includes the client's own work (serialization, HTTP/gRPC), server-side figures are Triton's "
                     "statistics (means per request; Triton keeps no percentiles).")
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

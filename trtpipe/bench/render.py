"""A Comparison as files: a Markdown report, a CSV of every statistic, and PNG charts (see bench.charts).

    paths = write_outputs(compare(load_reports(files), baseline), "reports/compare.md")
    # reports/compare.md, reports/compare.csv, reports/compare_latency.png, reports/compare_throughput.png,
    # and reports/compare_concurrency.png when a served model's load test is among the reports
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from trtpipe.bench.charts import tail_percentile, write_charts
from trtpipe.bench.compare import CheckRow, Comparison, Row, ServedRow
from trtpipe.bench.environment import machine_key
from trtpipe.bench.report import METRICS, MODES, SCHEMA_VERSION, SERVER_STAGES
from trtpipe.bench.stats import STAT_FIELDS, format_ms, percentile_key
from trtpipe.io import atomic_write_text


def table_columns(tail: float = 99.0) -> tuple[str, ...]:
    """The results table's header; ``tail`` is the percentile of the tail column (--percentile, default 99)."""
    return (
        "model", "machine", "series", "backend", "precision", "weights", "batch", "iterations", "latency median ms",
        f"latency p{percentile_key(tail)} ms", "GPU compute median ms", "throughput img/s", "end-to-end median ms",
        "× latency", "× throughput", "flags",
    )


TABLE_COLUMNS = table_columns()
SERVED_COLUMNS = (
    "model", "series", "protocol", "batch", "concurrency", "requests", "errors", "requests/s", "images/s", "client mean ms",
    "client p50 ms", "client p90 ms", "client p95 ms", "client p99 ms", "server request ms", "server queue ms",
    "server compute ms", "flags",
)
CHECK_COLUMNS = ("model", "machine", "backend", "precision", "engine file", "batches", "modes", "inferences run", "result")


@dataclass(frozen=True)
class Outputs:
    """The files ``write_outputs`` made."""

    markdown: Path
    csv: Path
    charts: tuple[Path, ...]


def write_outputs(comparison: Comparison, markdown_path: str | Path) -> Outputs:
    """Writes the Markdown report and, beside it, the CSV and the PNG charts (same stem)."""
    markdown_path = Path(markdown_path)
    stem = markdown_path.with_suffix("")
    charts = write_charts(comparison, stem)
    csv_path = atomic_write_text(stem.with_suffix(".csv"), render_csv(comparison))
    atomic_write_text(markdown_path, render_markdown(comparison, charts))
    return Outputs(markdown_path, csv_path, charts)


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------


def table_cells(row: Row, tail: float = 99.0) -> list[str]:
    """The Markdown/console table cells of one row (weights always shown: random weights stay visible)."""
    lat = row.latency
    thr = "—" if row.images_per_s is None else f"{row.images_per_s:,.1f}" + (" †" if row.throughput_source == "synchronous" else "")
    return [
        row.model, row.machine, row.series, row.backend, row.precision,
        "**RANDOM**" if row.weights == "random" else row.weights,
        str(row.batch),
        str(row.iterations or "—"),
        format_ms(lat.median if lat else None) + ("" if row.latency_kind == "host latency" or lat is None else " (call)"),
        format_ms(lat.percentile(tail) if lat else None),
        format_ms(row.gpu_compute.median if row.gpu_compute else None),
        thr,
        format_ms(row.end_to_end.median if row.end_to_end else None),
        _speedup(row.speedup_latency),
        _speedup(row.speedup_throughput),
        ", ".join(row.flags) or "—",
    ]


def served_cells(row: ServedRow) -> list[str]:
    lat, means = row.latency, (row.server or {}).get("mean_ms") or {}
    compute = [means.get(k) for k in ("compute_input", "compute_infer", "compute_output")]
    return [
        row.model, row.series, row.backend, str(row.batch), str(row.concurrency), str(row.requests), str(row.errors),
        _rate(row.requests_per_s), _rate(row.images_per_s), format_ms(lat.mean if lat else None),
        *(format_ms(lat.percentile(p) if lat else None) for p in (50, 90, 95, 99)),
        format_ms(means.get("request")), format_ms(means.get("queue")),
        format_ms(sum(compute) if all(c is not None for c in compute) else None),
        ", ".join(row.flags) or "—",
    ]


def check_cells(row: CheckRow) -> list[str]:
    return [row.model, row.machine, row.backend, row.precision, row.file or "—", ",".join(map(str, row.batches)),
            ", ".join(row.modes), str(row.iterations), "ran, outputs checked" if row.passed else "INCOMPLETE"]


def markdown_table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *(line(r) for r in rows)])


def text_table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    """A plain-text table for the console: a header row, a rule, then the rows, columns aligned."""
    cells = [list(header), *([str(c).replace("**", "") for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(comparison: Comparison, charts: tuple[Path, ...] = ()) -> str:
    """The report: machines, results, served models, functional checks, notes (every flag explained), definitions, charts."""
    reports = comparison.reports
    tail = tail_percentile(comparison)
    lines = [
        "# trtpipe benchmark comparison",
        "",
        f"{len(reports)} report(s), schema version {SCHEMA_VERSION}, model(s): {', '.join(comparison.models)}; "
        f"{len(comparison.series)} series (one per timed run, never merged)"
        + (f", {len(comparison.checks)} functional check(s)" if comparison.checks else "") + "."
        + (f" Baseline: `{comparison.baseline.source}`." if comparison.baseline else ""),
        "",
        "## Machines",
        "",
        markdown_table(
            ("machine", "GPU", "driver / CUDA", "TensorRT", "CPU (usable cores)", "load at start", "ONNX Runtime", "torch", "trtpipe"),
            [_machine_cells(key, env) for key, env in comparison.machines.items()],
        ),
        "",
    ]
    if comparison.rows:
        lines += ["## Results", "", markdown_table(table_columns(tail), [table_cells(row, tail) for row in comparison.rows]), ""]
    if comparison.served:
        lines += ["## Served models (load test)", "", markdown_table(SERVED_COLUMNS, [served_cells(r) for r in comparison.served]), ""]
    if comparison.checks:
        lines += ["## Functional checks (simulated: no timings)", "",
                  "These runs went through trtpipe's TensorRT/CUDA code path on a CPU simulation of TensorRT and CUDA. "
                  "They show the engine path works; they measure nothing, so they have no latency, throughput or speedup "
                  "and appear in no chart.", "",
                  markdown_table(CHECK_COLUMNS, [check_cells(r) for r in comparison.checks]), ""]
    if comparison.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in comparison.notes), ""]
    lines += [
        "## What the columns measure",
        "",
        "- **series**: one run (one report file). Runs differing only in a mode (CUDA graph, transfers, streams, threads, "
        "fallback, weights, shapes) are separate series named by the difference; identical runs are named by their file.",
        "- **latency**: per batch (one inference of `batch` images). GPU rows: host latency = H2D + GPU compute + D2H "
        f"of one inference, from CUDA events, in the synchronous mode ({MODES['latency']}). Rows marked (call): one "
        "synchronous call on the host clock (perf_counter), the only latency a CPU backend has.",
        f"- **latency p{percentile_key(tail)}**: the tail percentile (`--percentile`), of `iterations` samples; read it "
        f"with the count: below {_min_text(tail)} iterations it is the largest of a handful of samples.",
        f"- **GPU compute**: {METRICS['gpu_compute']}; — where the backend has no device stage.",
        f"- **throughput**: images/s = batch × inferences/s; {MODES['throughput']}. † = from the synchronous run.",
        f"- **end-to-end**: {METRICS['end_to_end']}, {_frame(reports)} frames.",
        "- **× latency / × throughput**: speedup against the baseline at the same batch (higher is faster).",
    ]
    if comparison.served:
        lines += [
            f"- **served models**: {MODES['concurrency']}. requests = successful requests measured at that level; "
            f"client pNN: {METRICS['client_request']}; server: Triton's statistics over the level, means per request "
            f"({'; '.join(f'{k}: {v}' for k, v in SERVER_STAGES.items())}).",
        ]
    lines.append("")
    for chart in charts:
        lines += [f"![{chart.stem}]({chart.name})", ""]
    return "\n".join(lines)


def _min_text(tail: float) -> str:
    from trtpipe.bench.stats import min_iterations_for

    return f"{min_iterations_for(tail):,}"


def _frame(reports) -> str:
    sizes = {tuple(r.settings.get("end_to_end_image") or ()) for r in reports}
    return ", ".join(f"{s[1]}x{s[0]}" for s in sizes if len(s) == 2) or "camera"


def _machine_cells(key: str, env: dict) -> list[str]:
    gpus = env.get("gpus") or []
    gpu = "; ".join(f"{g.get('name')} (cc {g.get('compute_capability') or '?'}, {_mib(g.get('memory_total_mib'))})" for g in gpus) or "none"
    cuda = env.get("cuda") or {}
    driver = gpus[0].get("driver") if gpus else None
    cuda_text = f"{driver or '—'} / {cuda.get('runtime_version') or '—'}" if cuda.get("available") or gpus else "—"
    packages = env.get("packages") or {}
    trt = " ".join(f"{name} {packages[name]}" for name in ("tensorrt", "tensorrt-rtx") if name in packages) or "—"
    cpu = env.get("cpu") or {}
    load = env.get("load_average_1min")
    return [key, gpu, cuda_text, trt, f"{cpu.get('model')} ({cpu.get('usable_cores')})", "—" if load is None else f"{load:g}",
            packages.get("onnxruntime-gpu") or packages.get("onnxruntime") or "—", packages.get("torch") or "—",
            env.get("trtpipe") or "?"]


def _mib(value) -> str:
    return f"{value / 1024:.0f} GiB" if value else "? GiB"


def _speedup(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


# ----------------------------------------------------------------------------------------------
# CSV: one line per report, batch and mode, every statistic of every metric
# ----------------------------------------------------------------------------------------------


def render_csv(comparison: Comparison) -> str:
    """Every result of every report; a functional check's lines have ``timed`` False and no figure."""
    head = ["model", "series", "machine", "backend", "device", "precision", "weights", "simulated", "timed", "partial",
            "batch", "mode", "concurrency", "iterations", "errors", "wall_s", "inferences_per_s", "images_per_s",
            "throughput_source", "source"]
    stat_columns = [f"{metric}_{stat}_ms" for metric in METRICS for stat in STAT_FIELDS if stat != "count"]
    server_columns = [f"server_{stage}_mean_ms" for stage in SERVER_STAGES]
    labels = {id(s.report): s.label for s in comparison.series.values()}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(head + stat_columns + server_columns)
    for report in comparison.reports:
        machine = machine_key(report.environment)
        for result in report.results:
            values = []
            for metric in METRICS:
                stats = result.metrics.get(metric)
                values += [("" if stats is None else f"{getattr(stats, s):.6g}") for s in STAT_FIELDS if s != "count"]
            means = (result.server or {}).get("mean_ms") or {}
            writer.writerow([
                report.model["name"], labels.get(id(report), "functional check"), machine, report.backend["name"],
                report.backend.get("device"), report.model["precision"], report.model["weights"], report.simulated,
                result.timed, report.partial or result.partial, result.batch, result.mode, result.concurrency or "",
                result.iterations, result.errors if result.mode == "concurrency" else "", _num(result.wall_s),
                _num(result.inferences_per_s), _num(result.images_per_s), result.throughput_source or "", report.source,
            ] + values + [_num(means.get(stage)) for stage in SERVER_STAGES])
    return out.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"

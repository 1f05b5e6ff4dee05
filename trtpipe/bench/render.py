"""A Comparison as files: a Markdown report, a CSV of every statistic, and PNG charts (matplotlib, Agg).

    paths = write_outputs(compare(load_reports(files), baseline), "reports/compare.md")
    # reports/compare.md, reports/compare.csv, reports/compare_latency.png, reports/compare_throughput.png
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from trtpipe.bench.compare import Comparison, Row
from trtpipe.bench.report import METRICS, MODES, SCHEMA_VERSION
from trtpipe.bench.stats import STAT_FIELDS, format_ms
from trtpipe.io import atomic_output, atomic_write_text

TABLE_COLUMNS = (
    "model", "machine", "backend", "precision", "weights", "batch", "latency median ms", "latency p99 ms",
    "GPU compute median ms", "throughput img/s", "end-to-end median ms", "× latency", "× throughput", "flags",
)


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
    charts = (
        write_latency_chart(comparison, stem.with_name(stem.name + "_latency.png")),
        write_throughput_chart(comparison, stem.with_name(stem.name + "_throughput.png")),
    )
    csv_path = atomic_write_text(stem.with_suffix(".csv"), render_csv(comparison))
    atomic_write_text(markdown_path, render_markdown(comparison, charts))
    return Outputs(markdown_path, csv_path, charts)


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------


def table_cells(row: Row) -> list[str]:
    """The Markdown/console table cells of one row (weights always shown: random weights stay visible)."""
    lat = row.latency
    thr = "—" if row.images_per_s is None else f"{row.images_per_s:,.1f}" + (" †" if row.throughput_source == "synchronous" else "")
    return [
        row.model, row.machine, row.backend, row.precision,
        "**RANDOM**" if row.weights == "random" else row.weights,
        str(row.batch),
        format_ms(lat.median if lat else None) + ("" if row.latency_kind == "host latency" or lat is None else " (call)"),
        format_ms(lat.p99 if lat else None),
        format_ms(row.gpu_compute.median if row.gpu_compute else None),
        thr,
        format_ms(row.end_to_end.median if row.end_to_end else None),
        _speedup(row.speedup_latency),
        _speedup(row.speedup_throughput),
        ", ".join(row.flags) or "—",
    ]


def markdown_table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *(line(r) for r in rows)])


def render_markdown(comparison: Comparison, charts: tuple[Path, ...] = ()) -> str:
    """The report: machines, one results table, notes (every flag explained), metric definitions, charts."""
    reports = comparison.reports
    lines = [
        "# trtpipe benchmark comparison",
        "",
        f"{len(reports)} report(s), schema version {SCHEMA_VERSION}, model(s): {', '.join(comparison.models)}."
        + (f" Baseline: `{comparison.baseline.source}`." if comparison.baseline else ""),
        "",
        "## Machines",
        "",
        markdown_table(
            ("machine", "GPU", "driver / CUDA", "TensorRT", "CPU (usable cores)", "ONNX Runtime", "torch", "trtpipe"),
            [_machine_cells(key, env) for key, env in comparison.machines.items()],
        ),
        "",
        "## Results",
        "",
        markdown_table(TABLE_COLUMNS, [table_cells(row) for row in comparison.rows]),
        "",
    ]
    if comparison.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in comparison.notes), ""]
    lines += [
        "## What the columns measure",
        "",
        "- **latency**: GPU rows: host latency = H2D + GPU compute + D2H of one inference, from CUDA events, in the "
        f"synchronous mode ({MODES['latency']}). Rows marked (call): one synchronous call on the host clock "
        "(perf_counter), the only latency a CPU backend has.",
        f"- **GPU compute**: {METRICS['gpu_compute']}; — where the backend has no device stage.",
        f"- **throughput**: images/s = batch × inferences/s; {MODES['throughput']}. † = from the synchronous run.",
        f"- **end-to-end**: {METRICS['end_to_end']}, {_frame(reports)} frames.",
        "- **× latency / × throughput**: speedup against the baseline at the same batch (higher is faster).",
        "",
    ]
    for chart in charts:
        lines += [f"![{chart.stem}]({chart.name})", ""]
    return "\n".join(lines)


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
    return [key, gpu, cuda_text, trt, f"{cpu.get('model')} ({cpu.get('usable_cores')})",
            packages.get("onnxruntime-gpu") or packages.get("onnxruntime") or "—", packages.get("torch") or "—",
            env.get("trtpipe") or "?"]


def _mib(value) -> str:
    return f"{value / 1024:.0f} GiB" if value else "? GiB"


def _speedup(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


# ----------------------------------------------------------------------------------------------
# CSV: one line per report, batch and mode, every statistic of every metric
# ----------------------------------------------------------------------------------------------


def render_csv(comparison: Comparison) -> str:
    head = ["model", "machine", "backend", "device", "precision", "weights", "simulated", "partial", "batch", "mode",
            "iterations", "wall_s", "inferences_per_s", "images_per_s", "throughput_source", "source"]
    stat_columns = [f"{metric}_{stat}_ms" for metric in METRICS for stat in STAT_FIELDS if stat != "count"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(head + stat_columns)
    for report in comparison.reports:
        from trtpipe.bench.environment import machine_key

        machine = machine_key(report.environment)
        for result in report.results:
            values = []
            for metric in METRICS:
                stats = result.metrics.get(metric)
                values += [("" if stats is None else f"{getattr(stats, s):.6g}") for s in STAT_FIELDS if s != "count"]
            writer.writerow([
                report.model["name"], machine, report.backend["name"], report.backend.get("device"), report.model["precision"],
                report.model["weights"], report.simulated, report.partial or result.partial, result.batch, result.mode,
                result.iterations, f"{result.wall_s:.6g}", _num(result.inferences_per_s), _num(result.images_per_s),
                result.throughput_source or "", report.source,
            ] + values)
    return out.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


# ----------------------------------------------------------------------------------------------
# Charts
# ----------------------------------------------------------------------------------------------


def _series(comparison: Comparison) -> dict[str, list[Row]]:
    mixed = len(comparison.models) > 1
    series: dict[str, list[Row]] = {}
    for row in comparison.rows:
        label = (f"{row.model} · " if mixed else "") + row.series
        series.setdefault(label, []).append(row)
    return series


def _figure(title: str):
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed (CI, servers)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.2), dpi=110)
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_latency_chart(comparison: Comparison, path: str | Path) -> Path:
    """Median latency by batch, one line per machine/backend/precision; whiskers up to p99."""
    plt, fig, ax = _figure(f"Latency by batch — {', '.join(comparison.models)} (median, whisker to p99)")
    batches = sorted({row.batch for row in comparison.rows})
    for label, rows in _series(comparison).items():
        rows = [r for r in rows if r.latency is not None]
        if not rows:
            continue
        x = [r.batch for r in rows]
        median = [r.latency.median for r in rows]
        upper = [r.latency.p99 - r.latency.median for r in rows]
        ax.errorbar(x, median, yerr=[[0] * len(rows), upper], marker="o", capsize=4, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("latency per inference (ms)")
    ax.set_yscale("log")
    ax.legend(fontsize=8, loc="best")
    return _save(plt, fig, Path(path))


def write_throughput_chart(comparison: Comparison, path: str | Path) -> Path:
    """Images/s per machine/backend/precision, grouped by batch."""
    plt, fig, ax = _figure(f"Throughput — {', '.join(comparison.models)} (images/s, higher is better)")
    series = _series(comparison)
    batches = sorted({row.batch for row in comparison.rows})
    width = 0.8 / max(1, len(series))
    for i, (label, rows) in enumerate(series.items()):
        by_batch = {r.batch: r.images_per_s for r in rows if r.images_per_s}
        xs = [batches.index(b) + (i - (len(series) - 1) / 2) * width for b in by_batch]
        bars = ax.bar(xs, list(by_batch.values()), width=width, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("images / s")
    ax.legend(fontsize=8, loc="best")
    return _save(plt, fig, Path(path))

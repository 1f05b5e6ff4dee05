"""PNG charts of a Comparison (matplotlib, Agg): latency and throughput by batch, and a served model's concurrency sweep.

What a chart must carry to be put beside another machine's (issue 12):

- one line or bar group per series (one run), in the colour that series has in every chart of the report;
- the flags that change what a number means, in the legend (fallback, random weights, busy, partial) and
  in the footnotes (throughput from the synchronous run, host-clock latency of a CPU backend);
- the unit on the axis: latency is per batch (one inference of B images) or per request, throughput is images/s;
- percentile whiskers only where enough samples lie above the percentile (``Stats.enough_for``), else a
  footnote says which series have none and why;
- a caption naming the machines (GPU or CPU, driver, CUDA, TensorRT), the date measured and trtpipe's version.

Functional checks (simulated runs) have no figures and never appear here.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Iterable

from trtpipe.bench.compare import Comparison, ServedRow
from trtpipe.bench.stats import DEFAULT_PERCENTILES, min_iterations_for, percentile_key
from trtpipe.io import atomic_output

_WIDTH_IN = 10.0
_WRAP = 150  # caption characters per line at this width and font size


def chart_names(comparison: Comparison) -> list[str]:
    """The suffixes of the charts ``write_charts`` makes for this comparison, in order."""
    names = []
    if comparison.rows:
        names += ["latency", "throughput"]
    if comparison.served:
        names.append("concurrency")
    return names


def write_charts(comparison: Comparison, stem: Path) -> tuple[Path, ...]:
    """Writes every chart this comparison has data for: ``<stem>_latency.png``, ``_throughput.png``, ``_concurrency.png``."""
    writers = {"latency": write_latency_chart, "throughput": write_throughput_chart, "concurrency": write_concurrency_chart}
    return tuple(writers[name](comparison, stem.with_name(f"{stem.name}_{name}.png")) for name in chart_names(comparison))


def tail_percentile(comparison: Comparison) -> float:
    """The percentile whiskers and tail columns show: the highest asked for with ``--percentile`` (default 99)."""
    asked = [float(p) for r in comparison.reports for p in (r.settings.get("percentiles") or DEFAULT_PERCENTILES)]
    return max(asked or DEFAULT_PERCENTILES)


# ----------------------------------------------------------------------------------------------
# Figure scaffolding: legend below the axes, footnotes and caption below the legend
# ----------------------------------------------------------------------------------------------


def _figure(title: str, panels: int = 1):
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed (CI, servers)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(_WIDTH_IN, 5.0), dpi=110, squeeze=False)
    fig.suptitle(title, fontsize=12, x=0.02, ha="left")
    for ax in axes[0]:
        ax.grid(True, which="both", alpha=0.25)
        ax.spines[["top", "right"]].set_visible(False)
    return plt, fig, list(axes[0])


def _finish(plt, fig, path: Path, handles, labels, footnotes: Iterable[str], caption: str) -> Path:
    """Legend, footnotes and caption under the axes; saved atomically, sized to fit all of them."""
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    legend = fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(0.01, 0.0), fontsize=8.5, frameon=False,
                        ncol=1 if max((len(label) for label in labels), default=0) > 55 else 2)
    fig.canvas.draw()  # the legend's height is known only once drawn
    height = legend.get_window_extent().transformed(fig.transFigure.inverted()).height
    lines = [wrapped for note in footnotes for wrapped in textwrap.wrap(note, _WRAP, subsequent_indent="   ")]
    lines += textwrap.wrap(caption, _WRAP)
    fig.text(0.012, -height - 0.01, "\n".join(lines), fontsize=7.5, va="top", ha="left", color="#333333", linespacing=1.35)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return path


def caption(comparison: Comparison) -> str:
    """Machines (GPU or CPU, driver, CUDA, TensorRT), dates measured, trtpipe version: what the figures rest on."""
    parts = []
    for key, env in comparison.machines.items():
        if not _charted(comparison, key):
            continue
        gpus = env.get("gpus") or []
        packages = env.get("packages") or {}
        cuda = env.get("cuda") or {}
        cpu = env.get("cpu") or {}
        if gpus:
            device = "GPU " + " + ".join(str(g.get("name")) for g in gpus) + f", driver {gpus[0].get('driver') or '?'}"
            device += f", CUDA {cuda.get('runtime_version') or '?'}"
        else:
            device = "no GPU: CPU " + f"{cpu.get('model') or '?'} ({cpu.get('usable_cores') or '?'} usable cores)"
        trt = ", ".join(f"{name} {packages[name]}" for name in ("tensorrt", "tensorrt-rtx") if name in packages)
        ort = packages.get("onnxruntime-gpu") or packages.get("onnxruntime")
        versions = [f"TensorRT installed: {trt}" if trt else "TensorRT: none installed", f"ONNX Runtime {ort}" if ort else None]
        parts.append(f"{key.split(' (')[0]}: {device}; " + "; ".join(v for v in versions if v))
    dates = sorted({(r.environment.get("date") or r.created_at)[:10] for r in comparison.reports if not r.functional_check})
    versions = sorted({r.trtpipe_version for r in comparison.reports})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}" if dates else "?"
    return "Measured on " + " | ".join(parts) + f". Date {when}; trtpipe {', '.join(versions)}."


def _charted(comparison: Comparison, machine: str) -> bool:
    return any(r.machine == machine for r in comparison.rows) or any(r.machine == machine for r in comparison.served)


def _flag_footnotes(comparison: Comparison, rows) -> list[str]:
    notes = []
    used = {flag for row in rows for flag in row.flags}
    if "fallback" in used:
        notes.append("[CPU fallback] a GPU backend was asked for; this machine had none, so the ONNX ran on ONNX Runtime's CPU.")
    if "random weights" in used:
        notes.append("[random weights] pretrained weights were unavailable: timings hold, accuracy would not.")
    if "INT8 dequantized" in used:
        notes.append("[INT8 dequantized] ONNX Runtime's CPU dequantizes the Q/DQ model and runs float kernels: "
                     "it checks the INT8 model, it does not show INT8 speed.")
    if "busy" in used:
        notes.append("[busy] the machine's load average exceeded its usable cores when the run started: inflated, noisy timings.")
    if "partial" in used:
        notes.append("[partial] the run was interrupted: fewer batches or iterations than asked for.")
    if "request errors" in used:
        notes.append("[request errors] some requests failed; the figures cover the successful ones.")
    if comparison.checks:
        notes.append("Not charted: " + "; ".join(f"{c.backend} {c.precision}" for c in comparison.checks)
                     + " (simulated: functional checks, no timings).")
    return notes


def _by_series(rows) -> dict[str, list]:
    grouped: dict[str, list] = {}
    for row in rows:
        grouped.setdefault(row.series, []).append(row)
    return grouped


def _series_flags_title(comparison: Comparison) -> str:
    """The model(s), and "CPU only" when no charted run had a GPU (the reader must not take it for one)."""
    models = ", ".join(sorted({r.model for r in comparison.rows} | {r.model for r in comparison.served}))
    charted = [env for key, env in comparison.machines.items() if _charted(comparison, key)]
    local_gpu = any(row.device == "gpu" for row in comparison.rows)
    no_gpu = not any(env.get("gpus") for env in charted) and not local_gpu
    return models + (" — CPU only, no GPU" if no_gpu else "")


# ----------------------------------------------------------------------------------------------
# Latency and throughput by batch
# ----------------------------------------------------------------------------------------------


def write_latency_chart(comparison: Comparison, path: str | Path) -> Path:
    """Median latency per batch by batch size, one line per series; a whisker to the tail percentile where earned."""
    tail = tail_percentile(comparison)
    key = percentile_key(tail)
    plt, fig, (ax,) = _figure(f"Latency by batch: {_series_flags_title(comparison)} (median; lower is better)")
    batches = sorted({row.batch for row in comparison.rows})
    offsets = _label_offsets(comparison.rows)
    handles, labels, no_whisker, host_clock, device_clock, drawn = [], [], [], False, False, []
    for label, rows in _by_series(comparison.rows).items():
        rows = [r for r in rows if r.latency is not None]
        if not rows:
            continue
        color = comparison.series[label].color
        synchronous = all(r.latency_kind == "synchronous call" for r in rows)
        host_clock |= synchronous
        device_clock |= not synchronous
        x = [r.batch for r in rows]
        median = [r.latency.median for r in rows]
        upper = [(r.latency.percentile(tail) - r.latency.median) if r.latency.enough_for(tail) and r.latency.percentile(tail) is not None
                 else 0.0 for r in rows]
        if any(not r.latency.enough_for(tail) for r in rows):
            no_whisker.append(label)
        drawn += [m + u for m, u in zip(median, upper)] + median
        line = ax.errorbar(x, median, yerr=[[0.0] * len(rows), upper], color=color, marker="o", markersize=5, capsize=4,
                           linestyle="--" if synchronous else "-", linewidth=1.6)
        for r in rows:
            ax.annotate(_ms(r.latency.median), (r.batch, r.latency.median), textcoords="offset points",
                        xytext=(8, offsets[(label, r.batch)]), fontsize=7, color=color, va="center",
                        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})
        handles.append(line)
        labels.append(label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.minorticks_off()
    ax.set_xlabel("batch size (images per inference)")
    ax.set_ylabel("latency per batch, ms (one inference of B images)")
    _value_axis(ax, drawn)
    footnotes = []
    whiskered = [label for label in labels if label not in no_whisker]
    if whiskered:
        footnotes.append(f"Whiskers reach p{key} (runs with at least {min_iterations_for(tail)} iterations at that batch).")
    if no_whisker:
        footnotes.append(f"No p{key} whisker where a batch has fewer than {min_iterations_for(tail)} iterations: "
                         "the tail would be the largest of a handful of samples. See the table for the figure.")
    kinds = (["Solid: host latency from CUDA events (H2D + GPU compute + D2H)."] if device_clock else []) + \
        (["Dashed: one synchronous call on the host clock (a CPU backend has no device stages)."] if host_clock else [])
    footnotes.append(" ".join(kinds))
    return _finish(plt, fig, Path(path), handles, labels, footnotes + _flag_footnotes(comparison, comparison.rows),
                   caption(comparison))


def _label_offsets(rows) -> dict[tuple[str, int], float]:
    """Vertical offsets (points) of the value labels at each batch, spread in the order of the values so that
    labels of close lines do not print over each other."""
    offsets = {}
    for batch in {r.batch for r in rows}:
        at = sorted((r for r in rows if r.batch == batch and r.latency is not None), key=lambda r: r.latency.median)
        for rank, row in enumerate(at):
            offsets[(row.series, batch)] = (rank - (len(at) - 1) / 2) * 11.0
    return offsets


def write_throughput_chart(comparison: Comparison, path: str | Path) -> Path:
    """Images/s per series, grouped by batch; hatched bars come from the synchronous run (no asynchronous queue)."""
    plt, fig, (ax,) = _figure(f"Throughput by batch: {_series_flags_title(comparison)} (images/s; higher is better)")
    grouped = {label: rows for label, rows in _by_series(comparison.rows).items() if any(r.images_per_s for r in rows)}
    batches = sorted({row.batch for row in comparison.rows})
    width = 0.8 / max(1, len(grouped))
    handles, labels, sources = [], [], set()
    for i, (label, rows) in enumerate(grouped.items()):
        color = comparison.series[label].color
        rows = [r for r in rows if r.images_per_s]
        xs = [batches.index(r.batch) + (i - (len(grouped) - 1) / 2) * width for r in rows]
        hatches = ["///" if r.throughput_source == "synchronous" else "" for r in rows]
        sources |= {r.throughput_source for r in rows}
        bars = ax.bar(xs, [r.images_per_s for r in rows], width=width * 0.92, color=color, edgecolor="white", hatch=None)
        for bar, hatch in zip(bars, hatches):
            if hatch:
                bar.set_hatch(hatch)
                bar.set_edgecolor("#ffffff")
        ax.bar_label(bars, labels=[_rate(r.images_per_s) for r in rows], fontsize=7, padding=2)
        handles.append(bars)
        labels.append(label)
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("throughput, images/s (batch × inferences/s)")
    ax.margins(y=0.12)
    footnotes = []
    if "synchronous" in sources:
        footnotes.append("Hatched: from the synchronous run, one call after another (the backend has no asynchronous queue).")
    if "enqueue-ahead" in sources:
        footnotes.append("Solid: enqueue-ahead, inferences queued so the device never idles (trtexec's throughput).")
    streams = sorted(s for s in sources if s and s.endswith("streams"))
    if streams:
        footnotes.append(f"{', '.join(streams)}: concurrent synchronous calls on that many execution contexts (--infStreams).")
    return _finish(plt, fig, Path(path), handles, labels, footnotes + _flag_footnotes(comparison, comparison.rows),
                   caption(comparison))


# ----------------------------------------------------------------------------------------------
# A served model: throughput and latency by concurrency
# ----------------------------------------------------------------------------------------------

_PERCENTILE_STYLES = (("median", "p50", "-"), (95.0, "p95", "--"), (99.0, "p99", ":"))


def write_concurrency_chart(comparison: Comparison, path: str | Path) -> Path:
    """Two panels by concurrency: throughput, and client latency p50/p95/p99 with Triton's server-side mean."""
    plt, fig, (left, right) = _figure(f"Served model under load: {_series_flags_title(comparison)} "
                                      "(perf_analyzer's concurrency mode)", panels=2)
    from matplotlib.lines import Line2D

    handles, labels, thin, drawn_styles = [], [], [], set()
    levels = sorted({row.concurrency for row in comparison.served})
    batches = sorted({row.batch for row in comparison.served})
    for label, rows in _by_series(comparison.served).items():
        rows = sorted(rows, key=lambda r: r.concurrency)
        color = comparison.series[label].color
        x = [r.concurrency for r in rows]
        left.plot(x, [r.images_per_s or float("nan") for r in rows], color=color, marker="o", linewidth=1.6)
        for r in rows:
            if r.images_per_s:
                left.annotate(f"{r.images_per_s:,.1f}", (r.concurrency, r.images_per_s), textcoords="offset points",
                              xytext=(0, 6), fontsize=7, color=color, ha="center")
        for stat, _, style in _PERCENTILE_STYLES:
            points = [(r.concurrency, _stat(r, stat)) for r in rows if r.latency is not None
                      and (stat == "median" or r.latency.enough_for(stat))]
            if stat != "median" and len(points) < len([r for r in rows if r.latency is not None]):
                thin.append((label, stat))
            if points:
                drawn_styles.add(stat)
                right.plot(*zip(*points), color=color, linestyle=style, marker="o" if stat == "median" else None,
                           markersize=4, linewidth=1.5)
        means = [(r.concurrency, r.latency.mean) for r in rows if r.latency is not None]
        if means:
            drawn_styles.add("mean")
            right.plot(*zip(*means), color=color, linestyle="none", marker="x", markersize=6)
        server = [(r.concurrency, r.server["mean_ms"]["request"]) for r in rows
                  if r.server and (r.server.get("mean_ms") or {}).get("request") is not None]
        if server:
            drawn_styles.add("server")
            right.plot(*zip(*server), color=color, linestyle="none", marker="D", markersize=5, markerfacecolor="white")
        handles.append(Line2D([], [], color=color, marker="o", linewidth=1.6))
        labels.append(label)
    for ax in (left, right):
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_xlabel("concurrency (requests kept outstanding)")
    per = "request" if batches == [1] else f"request of {', '.join(map(str, batches))} image(s)"
    left.set_ylabel("throughput, images/s (requests/s × batch)")
    left.set_ylim(bottom=0)
    left.margins(y=0.15)
    right.set_ylabel(f"latency per {per}, ms")
    right.set_ylim(bottom=0)
    styles = [(stat, Line2D([], [], color="#444444", linestyle=style, linewidth=1.5), f"client {name}")
              for stat, name, style in _PERCENTILE_STYLES]
    styles += [("mean", Line2D([], [], color="#444444", linestyle="none", marker="x"), "client mean"),
               ("server", Line2D([], [], color="#444444", linestyle="none", marker="D", markerfacecolor="white"),
                "server mean (Triton statistics)")]
    shown = [(handle, text) for stat, handle, text in styles if stat in drawn_styles]
    right.legend(*zip(*shown), fontsize=7.5, loc="upper left", frameon=False)
    footnotes = ["Client latency: send to response on the client (includes the client's serialization and transport). "
                 "Server mean: Triton's statistics extension, request time per successful request (queue + compute); "
                 "Triton keeps no percentiles, so compare it with the client mean."]
    if thin:
        missing = sorted({f"p{percentile_key(stat)}" for _, stat in thin})
        footnotes.append(f"{', '.join(missing)} not drawn at levels with too few requests (p95 needs "
                         f"{min_iterations_for(95)}, p99 {min_iterations_for(99)}); the table has every figure.")
    return _finish(plt, fig, Path(path), handles, labels, footnotes + _flag_footnotes(comparison, comparison.served),
                   caption(comparison))


def _value_axis(ax, values: list[float]) -> None:
    """A log axis when the values span more than 20x (batch 1 to 32 on a GPU), else linear from zero; plain numbers."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    values = [v for v in values if v and v > 0]
    if values and max(values) / min(values) > 20:
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_ylim(bottom=0, top=max(values or [1]) * 1.15)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _stat(row: ServedRow, stat) -> float:
    return row.latency.median if stat == "median" else row.latency.percentile(stat)


def _rate(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _ms(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"

"""trtpipe report: join bench reports into a Markdown table, a CSV and PNG charts, with speedups against a baseline."""

from __future__ import annotations

import argparse
import sys
import time

VERB = "report"
HELP = "join bench reports (GPUs, precisions, batches, backends, served models) into Markdown + CSV + PNG charts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", metavar="REPORT.json", help="reports written by trtpipe bench --json (other JSON files among them, such as "
                                                                         "reports/coverage.json, are skipped with a warning)")
    parser.add_argument("-o", "--output", default="reports/compare.md",
                        help="Markdown file; the CSV and PNGs go beside it with the same stem (default reports/compare.md)")
    parser.add_argument("--baseline", metavar="REPORT.json", help="speedups are computed against this report")
    parser.add_argument("--allow-mixed", action="store_true", help="allow reports of different models in one table")


#: The console table: the Markdown table's columns a terminal has room for.
_CONSOLE = ("series", "batch", "iterations", "latency median ms", "throughput img/s", "× latency", "flags")
_CONSOLE_SERVED = ("series", "concurrency", "requests", "images/s", "client mean ms", "client p50 ms", "client p99 ms",
                   "server request ms")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trtpipe.bench.charts import tail_percentile
    from trtpipe.bench.compare import compare, load_reports
    from trtpipe.bench.render import (CHECK_COLUMNS, SERVED_COLUMNS, check_cells, served_cells, table_cells, table_columns,
                                      text_table, write_outputs)
    from trtpipe.bench.report import BenchReport
    from trtpipe.io import check_outputs

    started = time.perf_counter()
    output = Path(args.output)
    check_outputs(files={"-o": output})  # the .csv and charts go beside it
    reports = load_reports(args.reports, skip_other_files=True)  # reports/*.json matches other summaries too
    baseline = BenchReport.load(args.baseline) if args.baseline else None
    comparison = compare(reports, baseline=baseline, allow_mixed=args.allow_mixed)
    outputs = write_outputs(comparison, output)
    tables = []
    if comparison.rows:
        tail = tail_percentile(comparison)
        columns = table_columns(tail)
        keep = [columns.index(c) for c in _CONSOLE]
        tables.append(text_table([columns[i] for i in keep],
                                 [[cells[i] for i in keep] for cells in (table_cells(r, tail) for r in comparison.rows)]))
    if comparison.served:
        keep = [SERVED_COLUMNS.index(c) for c in _CONSOLE_SERVED]
        tables.append(text_table(_CONSOLE_SERVED, [[served_cells(r)[i] for i in keep] for r in comparison.served]))
    if comparison.checks:
        keep = [CHECK_COLUMNS.index(c) for c in ("backend", "precision", "batches", "modes", "inferences run", "result")]
        tables.append("functional checks (simulated, not timed):\n"
                      + text_table([CHECK_COLUMNS[i] for i in keep], [[check_cells(r)[i] for i in keep] for r in comparison.checks]))
    if tables:
        print("\n\n".join(tables))
    timed = len(comparison.reports) - len(comparison.checks)
    parts = [f"{len(comparison.series)} series from {timed} timed report(s)"]
    if comparison.checks:
        parts.append(f"{len(comparison.checks)} functional check(s)")
    print(f"trtpipe report: {', '.join(parts)} -> {outputs.markdown}, {outputs.csv.name}, {len(outputs.charts)} chart(s) "
          f"({', '.join(c.name for c in outputs.charts) or 'none'}) in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0

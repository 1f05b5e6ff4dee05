"""trtpipe report: join bench reports into a Markdown table, a CSV and PNG charts, with speedups against a baseline."""

from __future__ import annotations

import argparse
import sys

VERB = "report"
HELP = "join bench reports (GPUs, precisions, batches, backends) into Markdown + CSV + PNG charts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", metavar="REPORT.json", help="reports written by trtpipe bench --json")
    parser.add_argument("-o", "--output", default="reports/compare.md",
                        help="Markdown file; the CSV and PNGs go beside it with the same stem (default reports/compare.md)")
    parser.add_argument("--baseline", metavar="REPORT.json", help="speedups are computed against this report")
    parser.add_argument("--allow-mixed", action="store_true", help="allow reports of different models in one table")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trtpipe.bench.compare import compare, load_reports
    from trtpipe.bench.render import TABLE_COLUMNS, table_cells, write_outputs
    from trtpipe.io import check_outputs
    from trtpipe.bench.report import BenchReport

    check_outputs(files={"-o": args.output})  # the .csv and charts go beside it
    reports = load_reports(args.reports)
    baseline = BenchReport.load(args.baseline) if args.baseline else None
    comparison = compare(reports, baseline=baseline, allow_mixed=args.allow_mixed)
    outputs = write_outputs(comparison, Path(args.output))
    keep = [TABLE_COLUMNS.index(c) for c in ("backend", "precision", "weights", "batch", "latency median ms", "throughput img/s", "flags")]
    for row in comparison.rows:
        cells = table_cells(row)
        print("  ".join(cells[i] for i in keep))
    print(f"wrote {outputs.markdown}, {outputs.csv}, {', '.join(str(c) for c in outputs.charts)} "
          f"({len(comparison.rows)} rows from {len(comparison.reports)} reports)", file=sys.stderr)
    return 0

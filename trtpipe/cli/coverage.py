"""``trtpipe coverage``: export, check, build and run the networks of the coverage list; write the reports."""

from __future__ import annotations

import argparse

VERB = "coverage"
HELP = "sweep the coverage models (export, parity, parser, TensorRT-RTX build, INT8, pipeline) into reports/coverage.*"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="zoo names to cover (default: the whole coverage list)")
    parser.add_argument("--quick", action="store_true", help="the fast subset: one model per task")
    parser.add_argument("--workdir", default="engines/coverage", help="ONNX files go here (default: engines/coverage)")
    parser.add_argument("--reports", default="reports", help="folder of coverage.md/.json (default: reports)")
    parser.add_argument("--no-int8", action="store_true", help="skip the INT8 Q/DQ stage")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per model (default: 1800)")


def run(args: argparse.Namespace) -> int:
    from trtpipe.io import check_outputs

    check_outputs(dirs={"--workdir": args.workdir, "--reports": args.reports})
    from trtpipe.coverage.catalog import ALL, QUICK, load_sources
    from trtpipe.coverage.report import summary_lines, write_reports
    from trtpipe.coverage.sweep import run_sweep
    from trtpipe.zoo.registry import get_model

    load_sources()
    names = args.names or (QUICK if args.quick else ALL)
    for name in names:
        get_model(name)  # an unknown name fails now, with the zoo's suggestion, not after an hour
    rows = run_sweep(names, args.workdir, int8=not args.no_int8, timeout=args.timeout)
    json_path, md_path = write_reports(rows, args.reports)
    for line in summary_lines(rows):
        print(line)
    print(f"wrote {md_path} and {json_path} ({len(rows)} models)")
    return 0

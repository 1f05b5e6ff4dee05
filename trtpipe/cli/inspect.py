"""trtpipe inspect: what is in an ONNX model or an engine."""

from __future__ import annotations

import argparse

from trtpipe.cli.common import add_flavor_argument

VERB = "inspect"
HELP = "describe an ONNX model (I/O, opset, ops, what the TensorRT parser rejects) or an engine (sidecar, TensorRT's view)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="an .onnx or .engine file")
    add_flavor_argument(parser)


def run(args: argparse.Namespace) -> int:
    from trtpipe.inspect import inspect_engine, inspect_onnx

    if args.path.endswith((".engine", ".plan", ".trt")):
        print(inspect_engine(args.path).format())
    else:
        print(inspect_onnx(args.path, args.flavor).format())
    return 0

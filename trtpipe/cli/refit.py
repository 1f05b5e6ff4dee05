"""trtpipe refit: new weights for a refittable or weight-stripped engine, from an ONNX of the same graph."""

from __future__ import annotations

import argparse

VERB = "refit"
HELP = "fill a --stripWeights engine's weights, or replace a --refit engine's, from an ONNX with the same graph"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("engine", help="a TensorRT engine built with --stripWeights or --refit (with its sidecar)")
    parser.add_argument("--onnx", required=True, metavar="MODEL.onnx",
                        help="the ONNX with the engine's graph and the weights to put in (OnnxParserRefitter)")
    parser.add_argument("-o", "--output", help="the refitted engine (default: replace ENGINE and its sidecar)")


def run(args: argparse.Namespace) -> int:
    from trtpipe.io import check_outputs
    from trtpipe.refit import refit_plan

    check_outputs(files={"-o": args.output})
    result = refit_plan(args.engine, args.onnx, args.output)
    print(result.summary())
    return 0

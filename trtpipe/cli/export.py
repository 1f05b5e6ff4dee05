"""``trtpipe export NAME``: a zoo model -> ONNX plus its preprocess spec (thin over trtpipe.zoo.export)."""

from __future__ import annotations

import argparse

VERB = "export"
HELP = "export a zoo model (trtpipe zoo list, or timm:<name>) to ONNX with its preprocess spec"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="zoo model name, e.g. mobilenetv2, efficientnet_lite0, timm:resnet18")
    parser.add_argument("-o", "--output", metavar="PATH", help="ONNX file to write (default: engines/NAME.onnx)")
    parser.add_argument(
        "--weights",
        default="auto",
        metavar="auto|pretrained|random|PATH",
        help="auto (default): pretrained, or random with a warning when they cannot be loaded here; "
        "pretrained: fail instead; random; or a state_dict checkpoint file",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    parser.add_argument(
        "--static-batch", action="store_true", help="fixed batch size 1 instead of a dynamic batch axis"
    )
    parser.add_argument("--force", action="store_true", help="export even if an up-to-date ONNX exists")


def run(args: argparse.Namespace) -> int:
    from trtpipe.zoo.export import export_model

    export_model(
        args.name,
        args.output,
        weights=args.weights,
        opset=args.opset,
        dynamic_batch=not args.static_batch,
        force=args.force,
    )
    return 0

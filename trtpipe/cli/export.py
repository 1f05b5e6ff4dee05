"""``trtpipe export NAME``: a zoo model -> ONNX plus its preprocess spec (thin over trtpipe.zoo.export)."""

from __future__ import annotations

import argparse

from trtpipe.cli.common import add_postprocess_arguments, postprocess_from_args

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
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument(
        "--static-batch", dest="dynamic_batch", action="store_const", const=False,
        help="fixed batch size 1 (the default for detection and segmentation models)",
    )
    batch.add_argument(
        "--dynamic-batch", dest="dynamic_batch", action="store_const", const=True,
        help="a dynamic batch axis on the input and every output (the default for classifiers)",
    )
    parser.add_argument("--force", action="store_true", help="export even if an up-to-date ONNX exists")
    parser.add_argument(
        "--fuse-preprocess", metavar="HxW|dynamic",
        help="put the preprocessing in the ONNX: it takes uint8 NHWC BGR frames of this size (e.g. 1080x1920: "
        "antialiased as the spec asks) or any size (dynamic: not antialiased), so engines preprocess on the GPU",
    )
    post = add_postprocess_arguments(parser, "the ONNX")
    post.add_argument("--nms", choices=("auto", "onnx", "loop"), default="auto",
                      help="--fuse-postprocess: onnx (NonMaxSuppression: TensorRT 10/11) or loop (an ONNX Loop: "
                           "TensorRT-RTX, which has no NMS runner); auto picks by the TensorRT installed")
    parser.add_argument(
        "--parity", choices=("strict", "warn"), default="strict",
        help="ONNX Runtime vs torch check: strict refuses a difference above 1e-3 of an output's scale (default); "
        "warn exports anyway and logs the difference",
    )


def run(args: argparse.Namespace) -> int:
    from trtpipe.io import check_outputs
    from trtpipe.zoo.export import default_output_path, export_model

    check_outputs(files={"-o": args.output or default_output_path(args.name)})

    export_model(
        args.name,
        args.output,
        weights=args.weights,
        opset=args.opset,
        dynamic_batch=args.dynamic_batch,
        force=args.force,
        strict_parity=args.parity == "strict",
        fuse_preprocess=args.fuse_preprocess,
        fuse_postprocess=postprocess_from_args(args),
        nms=args.nms,
    )
    return 0

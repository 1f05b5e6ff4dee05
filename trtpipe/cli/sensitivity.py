"""trtpipe sensitivity: rank layers by the output error when only that layer runs in INT8."""

from __future__ import annotations

import argparse

from trtpipe.cli.common import add_int8_arguments

VERB = "sensitivity"
HELP = "rank layers by the INT8 error each causes alone (ONNX Runtime, CPU); feeds --keep-fp / --auto-keep"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", help="the FP32 ONNX model (its <stem>.preprocess.json must sit beside it)")
    parser.add_argument("--images", required=True, metavar="DIR", help="calibration images (make calib-data fills calib_data/)")
    add_int8_arguments(parser, keep=False)
    parser.add_argument("--eval-images", type=int, default=32, help="images each layer is measured on (default 32)")
    parser.add_argument("--top", type=int, default=20, help="rows shown (default 20; 0 for all)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trtpipe.onnx.load import load_onnx
    from trtpipe.io import check_outputs
    from trtpipe.quant.prepare import Int8Options, calibrate_model, require_spec, _batch_size
    from trtpipe.quant.sensitivity import format_table, rank_layers

    onnx_path = Path(args.onnx)
    check_outputs(dirs={"the ONNX's folder (calibration cache)": onnx_path.parent})
    spec = require_spec(onnx_path, None)
    model = load_onnx(onnx_path, check=False)
    calibration = calibrate_model(
        onnx_path, model, spec, Int8Options(Path(args.images), args.calib_method, args.max_images, bias_correction=args.bias_correction),
        onnx_path.parent,
    )
    print(f"note: {calibration.note}")
    from trtpipe.quant.images import load_images

    images = load_images(args.images, spec, args.max_images, progress=False)
    held = images.split(0.25)[1][: args.eval_images]
    batches = list(images.batches(_batch_size(model), held if len(held) else None))
    ranking = rank_layers(model, calibration.plan, calibration.ranges, batches, shifts=calibration.shifts)
    print(format_table(ranking, args.top or None))
    worst = ",".join(r.name for r in ranking[:3])
    print(f"ranked {len(ranking)} layers on {sum(len(b) for b in batches)} images; "
          f"keep the worst with --keep-fp {worst} or --auto-keep 3")
    return 0

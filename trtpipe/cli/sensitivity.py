"""trtpipe sensitivity: rank layers by the output error when only that layer runs in INT8."""

from __future__ import annotations

import argparse

from trtpipe.cli.common import add_int8_arguments, add_spec_arguments, spec_from_args

VERB = "sensitivity"
HELP = "rank layers by the INT8 error each causes alone (ONNX Runtime, CPU); feeds --keep-fp / --auto-keep"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", help="the FP32 ONNX model (its preprocessing: <stem>.preprocess.json beside it, the flags below, or derived)")
    parser.add_argument("--images", required=True, metavar="DIR", help="calibration images (make calib-data fills calib_data/)")
    add_int8_arguments(parser, keep=False)
    parser.add_argument("--eval-images", type=int, default=32, help="images each layer is measured on (default 32)")
    parser.add_argument("--top", type=int, default=20, help="rows shown (default 20; 0 for all)")
    add_spec_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from trtpipe.onnx.load import load_onnx
    from trtpipe.io import check_outputs
    from trtpipe.quant.feeds import network_feeder
    from trtpipe.quant.images import load_images
    from trtpipe.quant.prepare import CALIBRATION_BATCH, Int8Options, calibrate_model, require_spec
    from trtpipe.quant.sensitivity import format_table, rank_layers

    start = time.perf_counter()
    onnx_path = Path(args.onnx)
    check_outputs(dirs={"the ONNX's folder (calibration cache)": onnx_path.parent})
    spec = require_spec(onnx_path, spec_from_args(args, onnx_path))
    model = load_onnx(onnx_path, check=False)
    feeder = network_feeder(model, spec, onnx_path)  # a model images cannot feed is refused before any work
    if spec.random_weights:
        print(f"note: {onnx_path.name} has random weights (its preprocess spec says weights=random): this ranking "
              "describes an untrained network, not the model you would deploy")
    # cache_tag: its own <stem>.sensitivity.int8.calib.json, never the build's calibration cache
    options = Int8Options(Path(args.images), args.calib_method, args.max_images, bias_correction=args.bias_correction,
                          cache_tag="sensitivity", enforce_target=False)
    calibration = calibrate_model(onnx_path, model, spec, options, onnx_path.parent)
    print(f"note: {calibration.note}")
    model = calibration.model  # converted to opset 13+ where it was older
    images = load_images(args.images, spec, args.max_images, progress=False).for_network(feeder)
    held = images.split(0.25)[1][: args.eval_images]
    held = held if len(held) else None
    batches = list(images.batches(feeder.batch_size(CALIBRATION_BATCH), held))
    count = len(held) if held is not None else len(images)
    bar = _bar(len(calibration.plan.layers), "ranking layers")
    ranking = rank_layers(model, calibration.plan, calibration.ranges, batches, bar.update if bar else None,
                          shifts=calibration.shifts)
    if bar is not None:
        bar.close()
    print(format_table(ranking, args.top or None))
    worst = [r.name for r in ranking[:3]]
    random = " (random weights)" if spec.random_weights else ""
    print(f"sensitivity: ranked {len(ranking)} layers on {count} images{random} in {time.perf_counter() - start:.1f} s; "
          f"worst {', '.join(worst)}: keep them with --keep-fp {','.join(worst)} or --auto-keep {len(worst)}")
    return 0


def _bar(total: int, label: str):
    """A tqdm bar on a terminal (None without tqdm)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=label, unit="layer", leave=False, disable=None)

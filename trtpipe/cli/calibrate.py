"""trtpipe calibrate: FP32 ONNX + calibration images -> Q/DQ INT8 ONNX + calibration cache."""

from __future__ import annotations

import argparse

from trtpipe.cli.common import csv_list

VERB = "calibrate"
HELP = "calibrate INT8 activation ranges on images (ONNX Runtime, CPU) and write a Q/DQ ONNX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", help="the FP32 ONNX model (its <stem>.preprocess.json must sit beside it)")
    parser.add_argument("--images", required=True, metavar="DIR", help="calibration images (make calib-data fills calib_data/)")
    parser.add_argument(
        "--method", choices=("entropy", "max", "percentile"), default="entropy",
        help="default: entropy (percentile measured best on EfficientNet-Lite0, see tests/perf/bench_fidelity.py)",
    )
    parser.add_argument("--max-images", type=int, default=256, help="calibration images used at most (default 256)")
    parser.add_argument("--keep-fp", type=csv_list, default=(), metavar="NODE,...", help="layers kept in floating point")
    parser.add_argument("--auto-keep", type=int, default=0, metavar="K", help="keep the K most sensitive layers in FP")
    parser.add_argument("--no-bias-correction", dest="bias_correction", action="store_false",
                        help="leave biases as trained (default: correct the INT8 layers' mean rounding shift)")
    parser.add_argument("--cache", metavar="FILE", help="calibration cache to reuse (must be this model's)")
    parser.add_argument("-o", "--output", help="Q/DQ ONNX path (default: <stem>.int8.onnx beside the ONNX)")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from trtpipe.quant.prepare import Int8Options, prepare_int8, stem_of

    start = time.perf_counter()
    onnx_path = Path(args.onnx)
    output = Path(args.output) if args.output else onnx_path.with_name(f"{stem_of(onnx_path)}.int8.onnx")
    options = Int8Options(
        Path(args.images), args.method, args.max_images, tuple(args.keep_fp), args.auto_keep,
        Path(args.cache) if args.cache else None, args.bias_correction,
    )
    prepared = prepare_int8(onnx_path, options, None, output)
    for note in prepared.notes:
        print(f"note: {note}")
    size = output.stat().st_size / 1e6
    print(f"wrote {output} ({prepared.precision_realised}, {size:.1f} MB) in {time.perf_counter() - start:.1f} s")
    return 0

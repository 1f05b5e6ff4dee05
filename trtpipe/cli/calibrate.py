"""trtpipe calibrate: FP32 ONNX + calibration images -> Q/DQ INT8 ONNX + calibration cache."""

from __future__ import annotations

import argparse

from trtpipe.cli.common import add_int8_arguments, add_spec_arguments, spec_from_args

VERB = "calibrate"
HELP = "calibrate INT8 activation ranges on images (ONNX Runtime, CPU) and write a Q/DQ ONNX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", help="the FP32 ONNX model (its preprocessing: <stem>.preprocess.json beside it, the flags below, or derived)")
    parser.add_argument("--images", required=True, metavar="DIR", help="calibration images (make calib-data fills calib_data/)")
    add_int8_arguments(parser, target=True)
    parser.add_argument("--cache", metavar="FILE", help="calibration cache to reuse (must be this model's)")
    parser.add_argument("--precision", choices=("int8", "fp8"), default="int8",
                        help="int8 (default) or fp8: E4M3 Q/DQ at opset 19 for GPUs with FP8 tensor cores (SM89+)")
    parser.add_argument("-o", "--output", help="Q/DQ ONNX path (default: <stem>.<precision>.onnx beside the ONNX)")
    add_spec_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import time
    from pathlib import Path

    from trtpipe.io import check_outputs, removed_on_error
    from trtpipe.quant.prepare import Int8Options, prepare_int8, stem_of
    from trtpipe.quant.search import FidelityTargetError
    from trtpipe.spec import BuildConfig

    start = time.perf_counter()
    onnx_path = Path(args.onnx)
    output = Path(args.output) if args.output else onnx_path.with_name(f"{stem_of(onnx_path)}.{args.precision}.onnx")
    check_outputs(files={"-o": output})  # the calibration cache goes beside it
    config = BuildConfig(  # checks every option before any work, as build does
        precision=args.precision, calib_images=args.images, calib_method=args.calib_method, calib_max_images=args.max_images,
        keep_fp=tuple(args.keep_fp), auto_keep=args.auto_keep, bias_correction=args.bias_correction,
        fidelity_target=args.fidelity_target, keep_precision=args.keep_precision, max_fp_share=args.max_fp_share,
    )
    options = dataclasses.replace(Int8Options.from_config(config), cache=Path(args.cache) if args.cache else None)
    # a refusal after the work began leaves neither a Q/DQ ONNX nor a new calibration cache (a missed fidelity target
    # keeps the cache on purpose: ranges are the slow part of a retry with other options)
    stem = stem_of(onnx_path)
    with removed_on_error((output.parent, onnx_path.parent), (output.name, f"{stem}*.calib.json"),
                          keep_on=(FidelityTargetError,)):
        prepared = prepare_int8(onnx_path, options, spec_from_args(args, onnx_path), output)
    for note in prepared.notes:
        print(f"note: {note}")
    size = output.stat().st_size / 1e6
    print(f"wrote {output} ({prepared.precision_realised}, {size:.1f} MB) in {time.perf_counter() - start:.1f} s; "
          f"{prepared.summary}")
    return 0

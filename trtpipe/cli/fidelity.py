"""trtpipe fidelity: FP16/INT8 outputs against FP32 on images, in ONNX Runtime on the CPU."""

from __future__ import annotations

import argparse

from trtpipe.cli.common import add_int8_arguments, add_spec_arguments, spec_from_args, csv_list

VERB = "fidelity"
HELD_BACK_SHOWN = 8  # held-back image names printed (--json lists them all)
HELP = (
    "measure FP16/INT8 fidelity against FP32 on the CPU: the task's measure (top-1/top-5; detection F1, mAP@0.5; "
    "mask mIoU), cosine and max error per output"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("onnx", help="the FP32 ONNX model (its preprocessing: <stem>.preprocess.json beside it, the flags below, or derived)")
    parser.add_argument("--precisions", type=csv_list, default=("fp32", "fp16", "int8"),
                        help="default: fp32,fp16,int8; fp8 too (E4M3 Q/DQ, dequantized on the CPU: it checks the model, "
                             "not FP8 speed)")
    parser.add_argument("--images", required=True, metavar="DIR", help="evaluation images")
    parser.add_argument("--calib", default="calib_data", metavar="DIR", help="calibration images for int8 (default calib_data/)")
    add_int8_arguments(parser)
    parser.add_argument("--eval-images", type=int, default=1000, help="evaluation images used at most (default 1000)")
    parser.add_argument(
        "--work-dir", metavar="DIR",
        help="where the measured <stem>.fidelity.{fp16,int8}.onnx and <stem>.fidelity.int8.calib.json go "
        "(default: beside the ONNX; a build's <stem>.int8.onnx, .fp16.onnx and calibration cache are never touched)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as strict JSON (one object per precision)")
    add_spec_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from trtpipe.io import check_outputs, removed_on_error
    from trtpipe.quant.fidelity import format_table, measure_fidelity, summary_line, write_json
    from trtpipe.quant.prepare import require_spec, stem_of

    start = time.perf_counter()
    onnx_path = Path(args.onnx)
    check_outputs(files={"--json": args.json}, dirs={"--work-dir": args.work_dir or onnx_path.parent})
    spec = require_spec(onnx_path, spec_from_args(args, onnx_path))
    if spec.random_weights:
        print(f"note: {onnx_path.name} has random weights (its preprocess spec says weights=random): these figures "
              "measure an untrained network, not the model you would deploy")
    work_dir = Path(args.work_dir or onnx_path.parent)
    # a refusal part-way leaves none of the measured ONNX files or the fidelity calibration cache it wrote
    with removed_on_error((work_dir,), (f"{stem_of(onnx_path)}.fidelity.*",)):
        results, overlap = measure_fidelity(
            onnx_path, args.precisions, args.images, args.calib, work_dir,
            args.calib_method, args.max_images, args.eval_images, tuple(args.keep_fp), args.auto_keep,
            bias_correction=args.bias_correction, spec=spec,
        )
    print(format_table(results))
    if "int8" in args.precisions or "fp8" in args.precisions:
        print(f"{overlap} of {results[0].images} evaluation images are also calibration images")
        held = next((r.held_back_files for r in results if r.precision == "int8"), ())
        if held:
            names = ", ".join(Path(name).name for name in held[:HELD_BACK_SHOWN])
            more = f" and {len(held) - HELD_BACK_SHOWN} more" + (" (all in --json)" if args.json else "")
            print(f"held back from calibration for the INT8 search's check ({len(held)} images): {names}"
                  + (more if len(held) > HELD_BACK_SHOWN else ""))
    written = write_json(args.json, results) if args.json else None
    print(summary_line(results, time.perf_counter() - start, written))
    return 0

"""INT8 fidelity of EfficientNet-Lite0 (real weights) against FP32 on held-out images, in ONNX Runtime on the CPU.

    .venv/bin/python tests/perf/bench_fidelity.py [--eval 480] [--json out.json] [--compare]

Measures the recommended INT8 configuration: percentile calibration, bias correction, the 8 layers
most sensitive to INT8 kept in floating point (``--calib-method percentile --auto-keep 8``). Calibrates
on 256 augmented scikit-image crops (seed 0) and evaluates on ``--eval`` other crops (seed 1; the first
240 are the issue's evaluation set, no file in common with the calibration set). Prints the fidelity
table, the layers kept, and one JSON object per precision with the issue's keys.
Targets: top-1 >= 0.95, top-1 on FP32-confident images >= 0.99, mean cosine >= 0.995.

Why 480 images by default: about a fifth of these crops are near-ties for FP32 (top-2 probabilities
within 0.02), so top-1 agreement on 240 images has a standard error of about 0.014; 480 halve the variance.

``--compare`` adds the configurations this one was chosen over (every method, with and without bias
correction and kept layers), which takes several minutes.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

RECOMMENDED = {"method": "percentile", "auto_keep": 8, "bias_correction": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=int, default=480, help="held-out evaluation crops (default 480, >= 200)")
    parser.add_argument("--work", help="work folder to reuse between runs (exports, images, calibration cache)")
    parser.add_argument("--json", help="also write the JSON results here")
    parser.add_argument("--compare", action="store_true", help="also measure the alternatives (slow)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from trtpipe.quant.calib_data import make_calib_data
    from trtpipe.quant.fidelity import format_table, measure_fidelity, write_json
    from trtpipe.zoo.export import export_model

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_fidelity."))
    work.mkdir(parents=True, exist_ok=True)
    onnx_path = export_model("efficientnet_lite0", work / "efficientnet_lite0.onnx", weights="pretrained").onnx_path
    calib = make_calib_data(work / "calib_data", count=256, seed=0).folder
    evaluation = make_calib_data(work / f"eval_data_{args.eval}", count=args.eval, seed=1).folder

    start = time.perf_counter()
    results, overlap = measure_fidelity(
        onnx_path, ["fp32", "fp16", "int8"], evaluation, calib, work, max_images=256, eval_images=args.eval,
        **RECOMMENDED,
    )
    print(f"== recommended INT8: {RECOMMENDED} ({time.perf_counter() - start:.0f} s, "
          f"{overlap} evaluation images also in the calibration set)")
    print(format_table(results))
    print(json.dumps([r.to_json() for r in results], indent=1))
    if args.json:
        write_json(args.json, results)

    if args.compare:
        for method in ("percentile", "max", "entropy"):
            for keep in (0, RECOMMENDED["auto_keep"]):
                for bias_correction in (False, True):
                    start = time.perf_counter()
                    results, _ = measure_fidelity(
                        onnx_path, ["int8"], evaluation, calib, work, method=method, auto_keep=keep,
                        eval_images=args.eval, bias_correction=bias_correction,
                    )
                    r = results[0]
                    print(f"{method:<10} auto-keep {keep:<2} bias correction {'on ' if bias_correction else 'off'}  "
                          f"top-1 {r.top1_agreement:.3f}  confident {r.top1_agreement_confident:.3f}  "
                          f"cosine {r.cosine_mean:.5f}  ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()

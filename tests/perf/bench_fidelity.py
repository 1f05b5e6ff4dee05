"""INT8 fidelity of EfficientNet-Lite0 (real weights) against FP32 on held-out images, in ONNX Runtime on the CPU.

    .venv/bin/python tests/perf/bench_fidelity.py [--eval 240] [--auto-keep 6] [--methods entropy,max,percentile]
Calibrates on 256 augmented scikit-image crops (seed 0), evaluates on 240 other crops (seed 1, no file in
common), and prints per method and mixed-precision setting: top-1 agreement (all / FP32-confident images),
top-5 overlap, mean cosine, Q/DQ placement. Targets: top-1 >= 0.95, confident >= 0.99, cosine >= 0.995.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=int, default=240)
    parser.add_argument("--auto-keep", type=int, default=6)
    parser.add_argument("--methods", default="entropy,max,percentile")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from trtpipe.quant.calib_data import make_calib_data
    from trtpipe.quant.fidelity import format_table, measure_fidelity
    from trtpipe.zoo.export import export_model

    work = Path(tempfile.mkdtemp(prefix="bench_fidelity."))
    onnx_path = export_model("efficientnet_lite0", work / "efficientnet_lite0.onnx", weights="pretrained").onnx_path
    calib = make_calib_data(work / "calib_data", count=256, seed=0).folder
    evaluation = make_calib_data(work / "eval_data", count=args.eval, seed=1).folder
    for keep in sorted({0, args.auto_keep}):
        for method in args.methods.split(","):
            start = time.perf_counter()
            results, overlap = measure_fidelity(
                onnx_path, ["fp32", "fp16", "int8"] if keep == 0 and method == "entropy" else ["int8"],
                evaluation, calib, work, method=method, auto_keep=keep,
            )
            print(f"== {method}, auto-keep {keep} ({time.perf_counter() - start:.0f} s, {overlap} images overlap)")
            print(format_table(results))


if __name__ == "__main__":
    main()

"""One lever of the INT8 search, measured: the calibration method (percentile, the default, against mse) on
EfficientNet-Lite0 with real weights, each with the default search, on photo crops not from calib_data/.

    .venv/bin/python tests/perf/bench_calib_method.py [--methods percentile,mse] [--eval 240] [--work DIR] [--target none]

Set-up as tests/perf/bench_fidelity.py (``make onnx calib-data MODEL=efficientnet_lite0``: 320 augmented
scikit-image crops, seed 0); then per method ``prepare_int8`` with the build's defaults (256 images, a quarter held
back, search to the default target), and its Q/DQ ONNX against FP32 on ``--eval`` crops of seed 1 (no file in
common). Prints top-1 agreement, agreement on FP32-confident images, cosine, layers kept, calibration + search time
and the load average. The goal of the issue: top-1 >= 0.96, confident >= 0.995, cosine >= 0.9995, no more layers
kept than percentile, <= 60 s. ``--target none`` compares the methods with nothing kept (no search).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fidelity import MODEL, ROOT, evaluate, make  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="percentile,mse")
    parser.add_argument("--eval", type=int, default=240)
    parser.add_argument("--work", help="work folder (reused: its export and calib_data/ are kept)")
    parser.add_argument("--target", default="auto", help="the fidelity target (default auto; none: nothing kept)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sys.path.insert(0, str(ROOT))
    from trtpipe.quant.prepare import Int8Options, prepare_int8

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_calib_method."))
    (work / "engines").mkdir(parents=True, exist_ok=True)
    make(work, "onnx", "calib-data", MODEL=MODEL)
    source = work / "engines" / f"{MODEL}.onnx"
    reference = None
    print(f"== {MODEL} (real weights), default search per calibration method, {args.eval} crops not from calib_data")
    for method in args.methods.split(","):
        output = work / "methods" / method / f"{MODEL}.int8.onnx"
        for stale in output.parent.glob("*") if output.parent.exists() else ():
            stale.unlink()  # calibrate and search, not reuse a cache
        start = time.perf_counter()
        try:
            prepared = prepare_int8(source, Int8Options(work / "calib_data", method=method, fidelity_target=args.target), None, output)
        except Exception as exc:  # noqa: BLE001 - a method that misses the target is a row too
            print(f"  {method:<11} failed after {time.perf_counter() - start:.0f} s: {str(exc)[:200]}")
            continue
        seconds = time.perf_counter() - start
        result, reference = evaluate(work, output, args.eval, reference)
        fidelity = prepared.fidelity
        held = fidelity["figures"].get("cosine_mean")
        print(f"  {method:<11} top-1 {result.top1_agreement:.3f}  confident {result.top1_agreement_confident:.3f} "
              f"({result.confident_images})  cosine {result.cosine_mean:.5f}  kept {len(fidelity['kept'])}/"
              f"{fidelity['quantizable_layers']}  held-back cosine {'-' if held is None else format(held, '.5f')}  "
              f"{seconds:.0f} s (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

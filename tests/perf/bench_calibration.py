"""INT8 calibration time: MobileNetV2 over 256 images at 224x224 (target <= 15 s on 2 cores), one run.

    .venv/bin/python tests/perf/bench_calibration.py [--images 256] [--repeat 3] [--ort]
Prints the median wall time of trtpipe's calibration (read images + histograms + ranges + Q/DQ ONNX)
for each method; --ort adds ONNX Runtime's quantize_static (MinMax) on the same images for comparison.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ort", action="store_true", help="also time onnxruntime.quantization.quantize_static")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from trtpipe.quant.calib_data import make_calib_data
    from trtpipe.quant.prepare import Int8Options, prepare_int8
    from trtpipe.zoo.export import export_model

    work = Path(tempfile.mkdtemp(prefix="bench_calibration."))
    onnx_path = export_model("mobilenetv2", work / "mobilenetv2.onnx", weights="random").onnx_path
    images = make_calib_data(work / "calib_data", count=args.images, seed=0).folder
    print(f"calibration of mobilenetv2 (224x224) over {args.images} images, median of {args.repeat}")
    for method in ("entropy", "max", "percentile"):
        times = []
        for _ in range(args.repeat):
            for stale in work.glob("*.calib.json"):
                stale.unlink()  # time calibration itself, not the cache
            start = time.perf_counter()
            prepared = prepare_int8(onnx_path, Int8Options(images, method, args.images), None, work / "m.int8.onnx")
            times.append(time.perf_counter() - start)
        print(f"  {method:<10} {np.median(times):6.2f} s   ({prepared.notes[0]})")
    prepare_int8(onnx_path, Int8Options(images, "entropy", args.images), None, work / "m.int8.onnx")  # fills the cache
    start = time.perf_counter()
    prepare_int8(onnx_path, Int8Options(images, "entropy", args.images), None, work / "m.int8.onnx")
    print(f"  cache hit  {time.perf_counter() - start:6.2f} s   (ranges reused, Q/DQ ONNX rewritten)")
    if args.ort:
        print(f"  ORT quantize_static MinMax {_ort_minmax(onnx_path, images, args.images, work):6.2f} s")


def _ort_minmax(onnx_path, folder, count, work) -> float:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from trtpipe.quant.images import load_images
    from trtpipe.spec import PreprocessSpec, preprocess_path_for

    start = time.perf_counter()
    images = load_images(folder, PreprocessSpec.load(preprocess_path_for(onnx_path)), count, progress=False)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = images.batches(1)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch}

    quantize_static(str(onnx_path), str(work / "ort.onnx"), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": True, "QuantizeBias": False})
    return time.perf_counter() - start


if __name__ == "__main__":
    main()

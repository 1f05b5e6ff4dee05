"""What measuring FP16 with FP16 storage costs: EfficientNet-Lite0's FP16 ONNX in ONNX Runtime (CPU), plain vs routed.

    .venv/bin/python tests/perf/bench_fp16_storage.py [--runs 7] [--batch 16] [--work DIR]

A plain InferenceSession computes an FP16 graph in FP32 on the CPU (it drops the Cast pairs it inserts), so it
hides FP16 overflow; ``trtpipe.quant.fidelity.keep_fp16_rounding`` routes every FP16 tensor through a stored FP16
copy, which keeps the Casts and blocks fusions across them. This prints the median time of one batch for both
sessions (after one warm-up run), their ratio, and the largest output difference between them. One run; the
figures vary with the machine's load, so say the load next to them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per session (default 7)")
    parser.add_argument("--batch", type=int, default=16, help="images per batch (default 16)")
    parser.add_argument("--work", help="work folder to reuse between runs (the export)")
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort

    from trtpipe.quant.fidelity import keep_fp16_rounding
    from trtpipe.quant.prepare import prepare_fp16
    from trtpipe.zoo.export import export_model

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_fp16_storage."))
    work.mkdir(parents=True, exist_ok=True)
    source = work / "efficientnet_lite0.onnx"
    if not source.is_file():
        export_model("efficientnet_lite0", source, weights="pretrained")
    fp16 = prepare_fp16(source, work / "efficientnet_lite0.fp16.onnx").path
    routed, count = keep_fp16_rounding(onnx.load(str(fp16)))
    x = np.random.default_rng(0).random((args.batch, 3, 224, 224), np.float32) * 4 - 2

    options = ort.SessionOptions()
    options.log_severity_level = 3
    medians, outputs = {}, {}
    for label, model in (("plain", str(fp16)), ("fp16 storage", routed.SerializeToString())):
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        name, wanted = session.get_inputs()[0].name, [session.get_outputs()[0].name]
        outputs[label] = session.run(wanted, {name: x})[0]  # warm-up
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            session.run(wanted, {name: x})
            times.append(time.perf_counter() - start)
        medians[label] = statistics.median(times)
        print(f"{label:<13} median {medians[label] * 1e3:8.1f} ms per batch of {args.batch} ({args.runs} runs)")
    print(f"fp16 storage / plain: {medians['fp16 storage'] / medians['plain']:.2f}x ({count} FP16 tensors routed)")
    print(f"largest output difference, fp16 storage vs plain: {np.abs(outputs['fp16 storage'] - outputs['plain']).max():.4g}")


if __name__ == "__main__":
    main()

"""An INT8 Q/DQ ONNX for the coverage report: placed where TensorRT fuses it, calibrated on a few photos, built.

The coverage question is whether a model *can* be quantized explicitly and built, not how accurate the
result is (the weights are mostly random), so the calibration is three photos and the ``max`` method.
Q/DQ placement and writing are trtpipe.quant's (the same as ``trtpipe build --precision int8``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Int8Outcome:
    ok: bool  # Q/DQ ONNX written, run by ONNX Runtime, and built by TensorRT-RTX
    summary: str


def photo_batch(spec, photos: Sequence[str]) -> list[np.ndarray]:
    """scikit-image photos, preprocessed as ``spec`` says, one batch of 1 per photo."""
    import cv2
    from skimage import data

    from trtpipe.pipeline.preprocess import preprocess_batch

    images = [cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR) for name in photos]
    return [preprocess_batch([image], spec) for image in images]


def qdq_onnx_for_coverage(onnx_path: Path, spec, photos: Sequence[str]) -> Int8Outcome:
    """Writes ``<stem>.qdq.onnx`` beside ``onnx_path``, runs it in ONNX Runtime and builds it with TensorRT-RTX."""
    import onnx
    import onnxruntime as ort

    from trtpipe.build.builder import build_engine
    from trtpipe.errors import TrtpipeError
    from trtpipe.quant.calibrate import collect_histograms
    from trtpipe.quant.qdq import count_qdq, default_opset, insert_qdq, plan_qdq
    from trtpipe.spec import BuildConfig

    model = onnx.load(onnx_path)
    if default_opset(model) < 13:
        return Int8Outcome(False, f"opset {default_opset(model)} < 13 has no per-channel DequantizeLinear")
    plan = plan_qdq(model)
    if not plan.layers:
        return Int8Outcome(False, "no Conv/Gemm/MatMul layer to quantize")
    calibration = collect_histograms(model, plan.activations, photo_batch(spec, photos))
    quantized = insert_qdq(model, plan, calibration.ranges("max"))
    counts = count_qdq(quantized)
    qdq_path = onnx_path.with_name(onnx_path.name.split(".")[0] + ".qdq.onnx")
    onnx.save(quantized, qdq_path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Unoptimised: ONNX Runtime's own fusions (QLinearMatMul) reject some valid Q/DQ patterns TensorRT takes.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(qdq_path), options, providers=["CPUExecutionProvider"])
    batch = photo_batch(spec, photos[:1])[0]
    session.run(None, {session.get_inputs()[0].name: batch})
    try:
        result = build_engine(qdq_path, config=BuildConfig(flavor="tensorrt_rtx"), spec=spec, force=True)
    except TrtpipeError as exc:
        return Int8Outcome(False, f"{counts.summary()}; ONNX Runtime ran it; TensorRT-RTX build failed: {exc.message[:200]}")
    result.engine_path.unlink()
    return Int8Outcome(
        True,
        f"{counts.summary()}; ONNX Runtime ran it; TensorRT-RTX built it in {result.sidecar.build_seconds:.1f} s "
        f"({result.sidecar.engine_bytes / 1e6:.1f} MB)",
    )

"""Real TensorRT on a real GPU (make test-gpu): build an engine, run it, compare with ONNX Runtime per precision.

Skipped, with the reason, on machines without a usable NVIDIA GPU or without a TensorRT that targets it.
"""

from __future__ import annotations


import numpy as np
import pytest

from trtpipe.runtime.simulation import make_tiny_classifier, tiny_spec

from trtpipe.testing import tensorrt_unavailable_reason

pytestmark = pytest.mark.gpu
needs_tensorrt = pytest.mark.skipif(tensorrt_unavailable_reason() is not None, reason=f"{tensorrt_unavailable_reason()}")

TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}  # max abs difference of softmax scores vs ONNX Runtime


@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_matches_onnxruntime(tmp_path, precision):
    from trtpipe.builder.builder import build_engine
    from trtpipe.pipeline.pipeline import Pipeline
    from trtpipe.spec import BatchRange, BuildConfig

    onnx = make_tiny_classifier(tmp_path / "tiny.onnx", size=32)
    tiny_spec(32).save(tmp_path / "tiny.preprocess.json")
    engine = build_engine(onnx, tmp_path / f"tiny_{precision}.engine", BuildConfig(precision=precision, batch=BatchRange(1, 4, 8))).engine_path
    images = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8) for i in range(12)]
    with Pipeline.from_engine(engine, cuda_graph=True) as gpu, Pipeline.from_onnx(onnx) as cpu:
        got, want = gpu(images), cpu(images)
        assert got[0].backend.startswith("tensorrt") and got[0].times.compute > 0
    np.testing.assert_allclose([r.scores for r in got], [r.scores for r in want], atol=TOLERANCE[precision])

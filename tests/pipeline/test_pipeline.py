"""Pipeline: ONNX Runtime and simulated TensorRT backends, batching, threads, timings, lifecycle."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from trtpipe.runtime.simulation import tiny_spec
from trtpipe.errors import InputError
from trtpipe.pipeline.pipeline import Pipeline
from trtpipe.runtime.base import ClosedError
from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine
from trtpipe.runtime.tensorrt_engine import TensorRTEngine


def images(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(20 + i, 30, 3), dtype=np.uint8) for i in range(count)]


def test_onnx_pipeline_classifies_and_reports_backend_and_times(tiny_classifier_onnx):
    tiny_spec().save(tiny_classifier_onnx.with_name("tiny.preprocess.json"))
    with Pipeline.from_onnx(tiny_classifier_onnx, topk=3) as pipe:
        result = pipe(images(1)[0])
        assert len(result.indices) == 3 and result.backend == "onnxruntime-cpu"
        assert result.scores == tuple(sorted(result.scores, reverse=True))
        assert result.times.preprocess > 0 and result.times.compute > 0
        assert len(pipe([*images(3)])) == 3
        assert "median" in pipe.timings.summary() and len(pipe.timings) == 2  # warm-up is not a user call


def test_missing_preprocess_spec_says_how_to_fix(tiny_classifier_onnx):
    with pytest.raises(InputError, match="no preprocess spec tiny.preprocess.json.*Hint: export"):
        Pipeline.from_onnx(tiny_classifier_onnx)


def test_simulated_tensorrt_matches_onnxruntime_and_splits_large_batches(sim_engine, sim_flavor, tiny_classifier_onnx):
    batch = images(10)  # profile max is 4: runs as 4 + 4 + 2
    with Pipeline(TensorRTEngine(sim_engine, flavor=sim_flavor), tiny_spec()) as trt_pipe, Pipeline(
        OnnxRuntimeEngine(tiny_classifier_onnx), tiny_spec()
    ) as ort_pipe:
        got, want = trt_pipe(batch), ort_pipe(batch)
        assert got[0].backend == f"{sim_flavor.name}-simulated"
        assert [r.indices for r in got] == [r.indices for r in want]
        np.testing.assert_allclose([r.scores for r in got], [r.scores for r in want], rtol=1e-5)


def test_eight_threads_give_sequential_results(sim_engine, sim_flavor):
    work = [images(1 + i % 3, seed=i) for i in range(48)]
    with Pipeline(TensorRTEngine(sim_engine, flavor=sim_flavor), tiny_spec()) as pipe:
        sequential = [[r.scores for r in pipe(w)] for w in work]
        with ThreadPoolExecutor(8) as pool:
            threaded = list(pool.map(lambda w: [r.scores for r in pipe(w)], work))
    assert threaded == sequential


def test_from_engine_uses_the_sidecar_spec(sim_engine, sim_flavor):
    with Pipeline.from_engine(sim_engine, topk=2, flavor=sim_flavor) as pipe:
        assert pipe.spec == tiny_spec() and len(pipe(images(1)[0]).indices) == 2
        assert pipe.backend == f"{sim_flavor.name}-simulated" and pipe.fallback is None


def test_use_after_close_and_bad_images(tiny_classifier_onnx):
    pipe = Pipeline(OnnxRuntimeEngine(tiny_classifier_onnx), tiny_spec())
    with pytest.raises(InputError, match="image is None"):
        pipe(None)
    with pytest.raises(InputError, match="batch is empty"):
        pipe([])
    pipe.close()
    with pytest.raises(ClosedError, match="Pipeline was used after close"):
        pipe(images(1)[0])


def test_float_images_of_0_to_255_are_refused_by_the_call_and_the_stream(tiny_classifier_onnx):
    """frame.astype(np.float32) is 0..255, and floats mean 0..1: refused by name, never read as a white image."""
    frame = images(1)[0]
    with Pipeline(OnnxRuntimeEngine(tiny_classifier_onnx), tiny_spec()) as pipe:
        expected = pipe(frame).indices
        assert pipe(frame / np.float32(255)).indices == expected  # 0..1 floats are the same image
        with pytest.raises(InputError, match=r"^image 1 is float32 with values \d+\.\.25\d, expected floats in 0\.\.1.*Hint"):
            pipe([frame, frame.astype(np.float32)])
        with pipe.stream([frame, frame.astype(np.float32), frame], workers=1) as stream:
            items = list(stream)
    assert [item.ok for item in items] == [True, False, True] and items[2].result.indices == expected
    assert items[1].source == "image 1" and str(items[1].error).startswith("image 1 is float32 with values 0..255, expected")


def test_efficientnet_lite0_classifies_chelsea_and_coffee(zoo_onnx):
    """Real weights, real photos, ONNX Runtime CPU: coffee is 967 (espresso), chelsea a domestic cat.

    With the checkpoint's own (TensorFlow Lite) normalisation, (x - 127) / 128, chelsea's top-1 is
    282 "tiger cat" (0.41) just ahead of 285 "Egyptian cat" (0.33); ImageNet mean/std would put 285
    first but makes every prediction less confident (espresso 0.79 instead of 0.96), which is why the
    zoo keeps the normalisation the weights were trained with.
    """
    import skimage.data

    onnx = zoo_onnx("efficientnet_lite0")
    with Pipeline.from_onnx(onnx) as pipe:
        chelsea, coffee = (np.ascontiguousarray(getattr(skimage.data, n)()[:, :, ::-1]) for n in ("chelsea", "coffee"))
        results = pipe([chelsea, coffee])
    domestic_cats = {281, 282, 283, 284, 285}
    assert results[0].top1 in domestic_cats and 285 in list(results[0].indices[:2])
    assert results[1].top1 == 967 and results[1].labels[0] == "espresso" and results[1].scores[0] > 0.9
    assert results[0].backend == "onnxruntime-cpu"


def test_deployment_path_imports_no_build_tooling():
    code = (
        "import sys, trtpipe; trtpipe.Pipeline; import trtpipe.runtime.tensorrt_engine, trtpipe.runtime.onnxruntime_engine, "
        "trtpipe.cuda, trtpipe.pipeline.heads.detection, trtpipe.pipeline.heads.segmentation, trtpipe.cli.infer, trtpipe.presets; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'onnx_graphsurgeon', 'timm') "
        "or m.startswith(('trtpipe.zoo', 'trtpipe.quant', 'trtpipe.builder'))]; print(bad); sys.exit(bool(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


class _SetPredictionEngine:
    """Stands in for a DETR-style engine: fixed logits and boxes whatever the image."""

    backend = "fake"
    max_batch = 1

    def __init__(self):
        from trtpipe.spec import TensorInfo

        self.inputs = [TensorInfo("input", (1, 3, 8, 8), "float32")]

    def infer_timed(self, feeds):
        from trtpipe.runtime.base import StageTimes

        logits = np.array([[[0.0, 4.0, -2.0], [-4.0, -4.0, 3.0]]], np.float32)  # query 1: last class (or "no object")
        boxes = np.array([[[0.5, 0.5, 0.25, 0.25], [0.25, 0.25, 0.5, 0.5]]], np.float32)
        return {"logits": logits, "boxes": boxes}, StageTimes(compute=0.1)

    def close(self):
        pass


@pytest.mark.parametrize("head, expected", [(None, ("DetectionHead", [1])), ("detr_sigmoid", ("SigmoidDetrHead", [1, 2]))])
def test_spec_head_picks_the_decode(head, expected):
    from trtpipe.spec import PreprocessSpec

    spec = PreprocessSpec(model="detr", height=8, width=8, task="detection", resize="stretch", head=head)
    with Pipeline(_SetPredictionEngine(), spec, score_threshold=0.5) as pipe:
        result = pipe(images(1)[0])
        assert (type(pipe.head).__name__, result.class_ids.tolist()) == expected


class _CountingEngine(OnnxRuntimeEngine):
    """An ONNX Runtime engine that records the batch size of every inference it runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = []

    def infer_timed(self, feeds):
        self.batches.append(next(iter(feeds.values())).shape[0])
        return super().infer_timed(feeds)


def test_warmup_runs_its_own_passes_and_every_user_call_is_timed(tiny_classifier_onnx):
    engine = _CountingEngine(tiny_classifier_onnx)
    with Pipeline(engine, tiny_spec(), warmup=2) as pipe:
        assert engine.batches == [1, 1] and len(pipe.timings) == 0  # at open: two passes of batch 1, none timed
        pipe(images(1)[0])
        assert engine.batches == [1, 1, 1] and len(pipe.timings) == 1  # the user's only call: timed, not warm-up
        assert "calls" in pipe.timings.summary().splitlines()[0]
        pipe(images(3))
        assert engine.batches[3:] == [3, 3, 3]  # a new input shape is warmed up first, outside the timed call
        pipe(images(3))
        assert engine.batches[6:] == [3] and len(pipe.timings) == 3


def test_warmup_zero_runs_nothing_extra(tiny_classifier_onnx):
    engine = _CountingEngine(tiny_classifier_onnx)
    with Pipeline(engine, tiny_spec(), warmup=0) as pipe:
        pipe(images(2))
    assert engine.batches == [2] and pipe.timings.summary().startswith("stage (ms)")


def test_an_empty_recorder_says_no_call_was_timed():
    from trtpipe.pipeline.timing import TimingRecorder

    assert TimingRecorder().summary() == "no calls timed yet"

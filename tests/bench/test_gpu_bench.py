"""The TensorRT bench for real (needs an NVIDIA GPU; `make test-gpu`): both modes, CUDA graphs, the layer profile."""

from __future__ import annotations

import pytest

from bench_fixtures import QUICK
from trtpipe.bench.runner import run_bench
from trtpipe.bench.targets import open_target

from trtpipe.testing import tensorrt_unavailable_reason

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(tensorrt_unavailable_reason() is not None, reason=f"{tensorrt_unavailable_reason()}")]


@pytest.fixture
def engine(classifier_onnx):
    from trtpipe.builder.builder import build_engine
    from trtpipe.spec import BatchRange, BuildConfig

    return build_engine(classifier_onnx, config=BuildConfig(batch=BatchRange(1, 4, 8))).engine_path


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_tensorrt_bench_on_a_gpu(engine, cuda_graph):
    with open_target(engine, cuda_graph=cuda_graph) as target:
        report = run_bench(target, [1, 8], QUICK)
    modes = {(r.batch, r.mode): r for r in report.results}
    assert {(1, "latency"), (1, "throughput"), (8, "end_to_end")} <= set(modes)
    latency = modes[(8, "latency")].metrics
    assert 0 < latency["gpu_compute"].median <= latency["host_latency"].median <= latency["call"].median
    assert modes[(8, "throughput")].throughput_source == "enqueue-ahead"
    assert report.environment["gpus"] and not report.simulated


def test_layer_profile_on_a_gpu(engine):
    from trtpipe.bench.layers import profile_layers

    with open_target(engine) as target:
        profile = profile_layers(target, 4, QUICK, iterations=5)
    assert profile["layers"] and all(layer["median_ms"] >= 0 for layer in profile["layers"])
    assert sum(layer["share"] for layer in profile["layers"]) == pytest.approx(1.0)
    assert profile["engine_information"]

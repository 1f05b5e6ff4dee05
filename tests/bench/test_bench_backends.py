"""Real benches on the CPU (ONNX Runtime, PyTorch eager), the TensorRT path against the simulation, and refusals."""

from __future__ import annotations

import pytest

from bench_fixtures import QUICK
from trtpipe.bench.report import BenchReport
from trtpipe.bench.runner import run_bench
from trtpipe.bench.targets import open_target
from trtpipe.errors import ConfigError, TrtpipeError

DEVICE_STAGES = ("h2d", "gpu_compute", "d2h", "host_latency")


def _by_mode(report: BenchReport) -> dict[tuple[int, str], object]:
    return {(r.batch, r.mode): r for r in report.results}


def test_onnxruntime_bench_reports_cpu_stages_as_absent(classifier_onnx, tmp_path):
    with open_target(classifier_onnx) as target:
        report = run_bench(target, [1, 4], QUICK)
    results = _by_mode(report)
    assert set(results) == {(1, "latency"), (1, "end_to_end"), (4, "latency"), (4, "end_to_end")}
    latency = results[(4, "latency")]
    assert latency.iterations >= QUICK.iterations_min and latency.throughput_source == "synchronous"
    assert latency.metrics["call"].median > 0
    assert all(latency.metrics[stage] is None for stage in DEVICE_STAGES)  # never invented on a CPU
    e2e = results[(1, "end_to_end")].metrics
    assert e2e["preprocess"].median > 0 and e2e["end_to_end"].median >= e2e["preprocess"].median
    assert latency.images_per_s == pytest.approx(4 * latency.iterations / latency.wall_s)
    assert report.backend["name"] == "onnxruntime-cpu" and report.backend["device"] == "cpu"
    assert report.model["name"] == "tinynet" and report.model["weights"] == "random" and report.model["precision"] == "fp32"
    assert report.environment["cpu"]["usable_cores"] >= 1 and not report.partial

    saved = report.save(tmp_path / "r.json")
    again = BenchReport.load(saved)
    assert again.to_dict()["results"] == report.to_dict()["results"]


def test_mobilenetv2_onnxruntime_bench(zoo_onnx):
    onnx_path = zoo_onnx("mobilenetv2", weights="random")
    settings = type(QUICK)(warmup_s=0.05, duration_s=0.2, iterations_min=3)
    with open_target(onnx_path) as target:
        report = run_bench(target, [1], settings, end_to_end=False)
    (result,) = report.results
    assert report.model["name"] == "mobilenetv2" and report.model["weights"] == "random"
    assert result.metrics["call"].median > 0.5  # a real network, not a no-op (about 5 ms here)
    assert result.metrics["gpu_compute"] is None


def test_torch_baseline_bench_of_a_zoo_model():
    with open_target("mobilenetv2", backend="torch", weights="random") as target:
        report = run_bench(target, [1], type(QUICK)(warmup_s=0.05, duration_s=0.2, iterations_min=3))
    results = _by_mode(report)
    assert report.backend["name"] == "torch-cpu" and report.model["precision_realised"] == "torch fp32 eager"
    assert report.random_weights and any("RANDOM" in n for n in report.notes)
    assert results[(1, "latency")].metrics["call"].median > 0
    assert results[(1, "latency")].metrics["gpu_compute"] is None
    assert results[(1, "end_to_end")].metrics["end_to_end"].median > 0


def test_torch_refuses_int8_and_cpu_fp16():
    with pytest.raises(ConfigError, match="Hint:"):
        open_target("mobilenetv2", backend="torch", precision="int8", weights="random")


def test_ctrl_c_keeps_partial_results(classifier_onnx):
    with open_target(classifier_onnx) as target:
        real = target.engine.infer_timed
        calls = 0

        def flaky(feeds):
            nonlocal calls
            calls += 1
            if calls == 40:
                raise KeyboardInterrupt
            return real(feeds)

        target.engine.infer_timed = flaky
        report = run_bench(target, [1, 2], type(QUICK)(warmup_s=0.0, duration_s=5.0, iterations_min=1))
    assert report.partial and "Ctrl-C" in report.partial_reason
    (result,) = report.results
    assert result.partial and result.batch == 1 and result.iterations == 38


# -- TensorRT against the runtime helper's simulation ---------------------------------------------


def test_tensorrt_path_against_the_simulation(simulation):
    """The plumbing of device stages from CUDA events into the report, on the simulation's fake clock."""
    engine_path, flavor = simulation
    with open_target(engine_path, flavor=flavor) as target:
        report = run_bench(target, [1, 4], type(QUICK)(warmup_s=0.0, duration_s=0.05, iterations_min=3),
                           keep_simulated_clock=True)
    assert report.functional_check  # whatever its results hold, a report never shows a simulation's figures
    results = _by_mode(report)
    assert set(results) >= {(1, "latency"), (1, "throughput"), (4, "latency"), (4, "throughput"), (4, "end_to_end")}
    assert report.simulated and report.backend["name"].endswith("-simulated")
    assert any("SIMULATED" in note for note in report.notes)
    latency = results[(4, "latency")].metrics
    assert all(latency[stage] is not None for stage in DEVICE_STAGES)  # device stages from (simulated) CUDA events
    assert latency["host_latency"].median == pytest.approx(latency["h2d"].median + latency["gpu_compute"].median + latency["d2h"].median)
    throughput = results[(4, "throughput")]
    assert throughput.throughput_source == "enqueue-ahead" and throughput.metrics["enqueue"].median > 0
    assert report.sidecar["precision"] == report.model["precision"]


def test_a_simulated_run_is_a_functional_check_with_no_figures(simulation):
    engine_path, flavor = simulation
    with open_target(engine_path, flavor=flavor) as target:
        report = run_bench(target, [1, 4], type(QUICK)(warmup_s=0.0, duration_s=0.02, iterations_min=3))
    assert report.functional_check and any("functional check" in note for note in report.notes)
    assert {(r.batch, r.mode) for r in report.results} >= {(1, "latency"), (4, "throughput"), (4, "end_to_end")}
    for result in report.results:
        assert not result.timed and result.metrics == {} and result.wall_s is None and result.iterations >= 3
        assert result.latency is None and result.images_per_s is None  # nothing to put in a table or chart
        assert result.check == {"passed": True, "outputs": {"logits": [result.batch, 5]}}
    data = report.to_dict()["results"][0]
    assert data["timed"] is False and data["metrics"] == {} and data["throughput"]["images_per_s"] is None


def test_tensorrt_no_transfers_times_compute_only(simulation):
    engine_path, flavor = simulation
    with open_target(engine_path, flavor=flavor, transfers=False) as target:
        report = run_bench(target, [2], type(QUICK)(warmup_s=0.0, duration_s=0.02, iterations_min=3), transfers=False,
                           end_to_end=False, keep_simulated_clock=True)
    for result in report.results:
        assert result.metrics["h2d"] is None and result.metrics["d2h"] is None
        assert result.metrics["host_latency"].median == pytest.approx(result.metrics["gpu_compute"].median)


def test_batch_above_the_profile_is_refused_before_timing(simulation):
    engine_path, flavor = simulation
    with open_target(engine_path, flavor=flavor) as target:
        with pytest.raises(ConfigError, match="largest batch 4.*Hint:"):
            run_bench(target, [1, 8], QUICK)


def test_engine_without_gpu_is_a_clear_error(simulation, monkeypatch):
    engine_path, _ = simulation
    import trtpipe.testing

    monkeypatch.setattr(trtpipe.testing, "gpu_unavailable_reason", lambda: "cudaGetDeviceCount returned cudaErrorInsufficientDriver")
    with pytest.raises(TrtpipeError, match="needs an NVIDIA GPU.*Hint: time the same model on the CPU"):
        open_target(engine_path)

"""trtexec's vocabulary in bench and build: --iterations, --percentile, --exportTimes, --shapes, --infStreams,
--minShapes/--optShapes/--maxShapes (and the deprecated build --shapes), and the concurrent-streams loop."""

from __future__ import annotations

import json
import re
import threading
import time

import numpy as np
import pytest

from bench_fixtures import QUICK
from trtpipe.bench.measure import MeasureSettings, measure_concurrent
from trtpipe.bench.report import BenchReport
from trtpipe.bench.runner import TRTEXEC_TIME_KEYS, make_feeds, run_bench
from trtpipe.bench.stats import Stats, min_iterations_for, parse_percentiles, summarize
from trtpipe.bench.targets import open_target
from trtpipe.cli.common import profile_shapes, runtime_shapes
from trtpipe.cli.main import build_parser, main
from trtpipe.errors import ConfigError
from trtpipe.spec import ShapeRange

# -- --percentile ---------------------------------------------------------------------------------


def test_extra_percentiles_are_numpy_percentiles_and_survive_json():
    samples = np.random.default_rng(1).lognormal(size=5000)
    stats = summarize(samples.tolist(), percentiles=(99.9, 99, 75))
    assert set(stats.extra) == {"99.9", "75"}  # 99 is always there: not duplicated
    assert stats.percentile(99.9) == pytest.approx(np.percentile(samples, 99.9))
    assert stats.percentile(75) == pytest.approx(np.percentile(samples, 75))
    assert stats.percentile(99) == stats.p99 and stats.percentile(50) == stats.median
    assert stats.percentile(42) is None  # not asked for: absent, never guessed
    assert Stats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats


def test_a_tail_percentile_needs_ten_samples_above_it():
    assert [min_iterations_for(p) for p in (90, 95, 99, 99.9)] == [100, 200, 1000, 10000]
    assert not summarize([1.0] * 999).enough_for(99) and summarize([1.0] * 1000).enough_for(99)


@pytest.mark.parametrize("text", ["", "101", "ninety", "-1"])
def test_bad_percentiles_are_refused(text):
    with pytest.raises(ConfigError, match="Hint:"):
        parse_percentiles(text)


def test_bench_percentile_iterations_and_export_times(classifier_onnx, tmp_path, capsys):
    out, times = tmp_path / "r.json", tmp_path / "times.json"
    assert main(["bench", str(classifier_onnx), "--batch", "1,2", "--warmup", "0", "--duration", "0.05s",
                 "--iterations", "40", "--percentile", "90,99.9", "--exportTimes", str(times), "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert stdout.splitlines()[0].split()[6:8] == ["p99.9", "ms"]  # the tail column is the highest percentile asked
    report = BenchReport.load(out)
    assert report.settings["percentiles"] == [90.0, 99.9]
    assert all(r.iterations >= 40 for r in report.results)
    assert all(r.metrics["call"].percentile(99.9) is not None for r in report.results if r.mode == "latency")

    records = json.loads(times.read_text())
    assert len(records) == sum(r.iterations for r in report.results)  # every timed iteration, warm-up excluded
    assert all(set(TRTEXEC_TIME_KEYS) <= set(record) for record in records)  # trtexec's shape
    latency = [r for r in records if r["mode"] == "latency" and r["batch"] == 2]
    assert len(latency) == next(r.iterations for r in report.results if (r.batch, r.mode) == (2, "latency"))
    # ONNX Runtime on the CPU has no device stages: trtexec's device fields are null, never zero
    assert all(r["latencyMs"] is None and r["computeMs"] is None and r["h2dMs"] is None for r in records)
    assert all(r["callMs"] > 0 for r in latency) and [r["iteration"] for r in latency] == list(range(len(latency)))
    starts = [r["startMs"] for r in latency]
    assert starts == sorted(starts) and starts[0] >= 0
    median = np.median([r["callMs"] for r in latency])
    assert median == pytest.approx(next(r for r in report.results if (r.batch, r.mode) == (2, "latency")).metrics["call"].median)


def test_export_times_of_the_enqueue_ahead_mode_carry_trtexec_enqueue_fields(simulation):
    engine_path, flavor = simulation
    records: list = []
    with open_target(engine_path, flavor=flavor) as target:
        run_bench(target, [2], MeasureSettings(warmup_s=0, duration_s=0.02, iterations_min=5), end_to_end=False,
                  export_times=records, keep_simulated_clock=True)
    queued = [r for r in records if r["mode"] == "throughput"]
    assert queued and all(r["endEnqMs"] >= r["startEnqMs"] >= 0 for r in queued)
    assert all(r["latencyMs"] == pytest.approx(r["h2dMs"] + r["computeMs"] + r["d2hMs"]) for r in queued)


def test_a_simulated_run_exports_no_times(simulation, tmp_path, capsys):
    engine_path, _ = simulation
    code = main(["bench", str(engine_path), "--simulate", "--exportTimes", str(tmp_path / "t.json")])
    assert code == 2 and "times nothing" in capsys.readouterr().err and not (tmp_path / "t.json").exists()


def test_iterations_min_still_parses_with_a_deprecation_note(capsys):
    args = build_parser().parse_args(["bench", "m.onnx", "--iterations-min", "7"])
    assert args.iterations == 7 and "--iterations-min is deprecated; use --iterations" in capsys.readouterr().err


# -- bench --shapes: the runtime shape ------------------------------------------------------------


def test_runtime_shapes_set_the_input_and_the_batch(classifier_onnx, tmp_path):
    out = tmp_path / "r.json"
    assert main(["bench", str(classifier_onnx), "--shapes", "input:3x3x16x16", "--duration", "0.02s", "--iterations", "3",
                 "--no-end-to-end", "--json", str(out)]) == 0
    report = BenchReport.load(out)
    assert [r.batch for r in report.results] == [3] and report.settings["shapes"] == {"input": [3, 3, 16, 16]}
    with open_target(classifier_onnx) as target:
        feeds = make_feeds(target, 5, shapes=runtime_shapes(["input:1x3x16x16"]))
    assert feeds["input"].shape == (5, 3, 16, 16)  # axis 0 follows each --batch


@pytest.mark.parametrize("shapes, message", [
    (["images:1x3x16x16"], "--shapes names ['images'], and the model's inputs are ['input']"),
    (["input:1x3x32x32"], "does not fit input 'input' of shape"),
    (["input:1x3x16"], "does not fit input 'input' of shape"),
])
def test_runtime_shapes_that_do_not_fit_are_refused(classifier_onnx, shapes, message):
    with open_target(classifier_onnx) as target:
        with pytest.raises(ConfigError, match=f"{re.escape(message)}.*Hint:"):
            make_feeds(target, 1, shapes=runtime_shapes(shapes))


def test_runtime_shapes_syntax(capsys):
    assert runtime_shapes(["input:0:1x3x8x8,mask:1x8"]) == {"input:0": (1, 3, 8, 8), "mask": (1, 8)}
    with pytest.raises(ConfigError, match="'x:1x3:2' is not NAME:SHAPE|is not NAME:SHAPE"):
        runtime_shapes(["x:1x3x"])
    with pytest.raises(ConfigError, match="twice"):
        runtime_shapes(["x:1x3", "x:2x3"])


# -- --infStreams ---------------------------------------------------------------------------------


def test_concurrent_streams_overlap_and_count_every_iteration():
    active, peak, lock = [0], [0], threading.Lock()

    def step():
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.01)  # a device call: releases the GIL, as a TensorRT/CUDA call does
        with lock:
            active[0] -= 1
        return {"gpu_compute": 10.0}

    settings = MeasureSettings(warmup_s=0.0, duration_s=0.15, iterations_min=4)
    one = measure_concurrent(step, settings, 1)
    three = measure_concurrent(step, settings, 3)
    assert peak[0] == 3  # three calls in flight at once
    assert len(three.values["call"]) == three.iterations == len(three.starts_ms)
    # Three streams of sleeping calls do about three times the work of one (generous bounds: 2 shared cores).
    assert three.iterations / three.wall_s > 2.0 * one.iterations / one.wall_s


def test_an_error_in_a_stream_is_raised():
    def step():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        measure_concurrent(step, MeasureSettings(warmup_s=0.0, duration_s=1.0, iterations_min=1), 2)


def test_infer_streams_on_onnxruntime_run_that_many_calls_at_once(classifier_onnx, tmp_path, capsys):
    out = tmp_path / "x.json"
    assert main(["bench", str(classifier_onnx), "--infStreams", "2", "--duration", "0.1s", "--warmup", "10ms",
                 "--no-end-to-end", "--threads", "1", "--json", str(out)]) == 0
    report = BenchReport.load(out)
    assert report.backend["contexts"] == 2 and report.settings["infer_streams"] == 2
    assert next(r for r in report.results if r.mode == "throughput").throughput_source == "2 streams"
    # torch has no such mode: refused before anything loads
    assert main(["bench", "mobilenetv2", "--backend", "torch", "--infStreams", "2", "--json", str(out)]) == 2
    assert "runs on torch, which has no such mode here" in capsys.readouterr().err


def test_infer_streams_on_the_simulation(simulation):
    """--infStreams 2: an engine with two execution contexts (C1), two concurrent streams in the throughput mode."""
    engine_path, flavor = simulation
    with open_target(engine_path, flavor=flavor, contexts=2) as target:
        assert target.engine.num_contexts == 2
        with pytest.raises(ConfigError, match="--infStreams 2 with --no-transfers.*Hint:"):
            run_bench(target, [2], QUICK, transfers=False, streams=2)
        engine, used, most = target.engine, set(), [0]
        acquire, release, held = engine._acquire, engine._release, [0]

        def counting_acquire(*args, **kwargs):  # which contexts the streams ran on, and how many at once
            slot = acquire(*args, **kwargs)
            used.add(slot.index)
            held[0] += 1
            most[0] = max(most[0], held[0])
            return slot

        def counting_release(slot):
            held[0] -= 1
            release(slot)

        engine._acquire, engine._release = counting_acquire, counting_release
        report = run_bench(target, [2], MeasureSettings(warmup_s=0, duration_s=0.1, iterations_min=6), end_to_end=False,
                           streams=2, keep_simulated_clock=True)
    assert used == {0, 1} and most[0] == 2  # both contexts, at the same time
    throughput = next(r for r in report.results if r.mode == "throughput")
    assert throughput.throughput_source == "2 streams" and throughput.iterations >= 6
    assert report.settings["infer_streams"] == 2 and report.backend["contexts"] == 2


# -- build --minShapes/--optShapes/--maxShapes ------------------------------------------------------


def test_profile_shapes_as_trtexec():
    ranges = profile_shapes(["images:1x3x320x320,mask:1x1"], ["images:4x3x640x640,mask:4x1"],
                            ["images:8x3x640x640", "mask:8x1"])
    assert ranges == (ShapeRange("images", (1, 3, 320, 320), (4, 3, 640, 640), (8, 3, 640, 640)),
                      ShapeRange("mask", (1, 1), (4, 1), (8, 1)))
    # only --optShapes: a fixed shape, as trtexec
    assert profile_shapes(None, ["x:2x3x8x8"], None) == (ShapeRange("x", (2, 3, 8, 8), (2, 3, 8, 8), (2, 3, 8, 8)),)


@pytest.mark.parametrize("low, opt, high, message", [
    (["x:1x3"], None, ["x:8x3"], "input 'x' has no --optShapes"),
    (None, ["x:4x3"], ["x:8x3"], "input 'x' has no --minShapes"),
    (["x:4x3"], ["x:1x3"], ["x:8x3"], "not ordered"),
    (["x:1x3x"], ["x:1x3"], ["x:1x3"], "is not NAME:SHAPE"),
    # a size below 1 is not a disorder nor a malformed shape
    (["x:0x3"], ["x:1x3"], ["x:8x3"], r"--minShapes 'x:0x3' has a dimension of 0, expected every dimension at least 1"),
    (["x:-1x3"], ["x:1x3"], ["x:8x3"], r"--minShapes 'x:-1x3' has a dimension of -1, expected every dimension at least 1"),
])
def test_bad_profile_shapes_are_refused(low, opt, high, message):
    with pytest.raises(ConfigError, match=f"{message}.*Hint:"):
        profile_shapes(low, opt, high)


def test_build_options_reach_the_build_config(capsys):
    from trtpipe.cli.build import config_from_args

    args = build_parser().parse_args(["build", "m.onnx", "--minShapes", "images:1x3x64x64", "--optShapes",
                                      "images:2x3x64x64", "--maxShapes", "images:4x3x64x64"])
    assert config_from_args(args).shapes == (ShapeRange("images", (1, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64)),)
    assert "deprecated" not in capsys.readouterr().err

    old = build_parser().parse_args(["build", "m.onnx", "--shapes", "images:1x3x64x64:2x3x64x64:4x3x64x64"])
    assert config_from_args(old).shapes == config_from_args(args).shapes  # today's spelling still builds the same
    assert "--shapes is deprecated; use --minShapes/--optShapes/--maxShapes" in capsys.readouterr().err

    both = build_parser().parse_args(["build", "m.onnx", "--shapes", "images:1x3x64x64", "--optShapes", "images:1x3x64x64"])
    with pytest.raises(ConfigError, match="both in --shapes and in --minShapes"):
        config_from_args(both)


def test_build_with_min_opt_max_shapes_makes_that_profile(tmp_path):
    """A real TensorRT-RTX build on the CPU: the sidecar records the profile the new options asked for."""
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds engines on the CPU; pip install 'trtpipe[rtx]'")
    from bench_fixtures import make_classifier
    from trtpipe.spec import EngineSidecar, sidecar_path_for

    onnx_path = make_classifier(tmp_path / "tinynet.onnx")
    engine = tmp_path / "tinynet_fp32.engine"
    assert main(["build", str(onnx_path), "-o", str(engine), "--flavor", "tensorrt_rtx", "--minShapes", "input:1x3x16x16",
                 "--optShapes", "input:2x3x16x16", "--maxShapes", "input:4x3x16x16"]) == 0
    sidecar = EngineSidecar.load(sidecar_path_for(engine))
    profile = json.dumps(sidecar.to_dict()["profiles"])
    assert "[1, 3, 16, 16]" in profile and "[2, 3, 16, 16]" in profile and "[4, 3, 16, 16]" in profile

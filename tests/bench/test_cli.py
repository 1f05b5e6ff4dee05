"""`trtpipe bench` and `trtpipe report` end to end on the CPU, and Ctrl-C leaving a partial report."""

from __future__ import annotations

import json

import pytest

from trtpipe.bench.report import BenchReport
from trtpipe.cli.main import main


def test_bench_then_report(classifier_onnx, tmp_path, capsys):
    out = tmp_path / "reports" / "cpu.json"
    code = main(["bench", str(classifier_onnx), "--batch", "1,2", "--warmup", "20ms", "--duration", "0.15s",
                 "--iterations-min", "5", "--json", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    table = captured.out.splitlines()
    assert table[0].split() == ["batch", "mode", "iterations", "latency", "median", "ms", "p99", "ms", "images/s",
                                "throughput", "from"]  # a header row first
    assert any(line.split()[:3] == ["2", "latency", line.split()[2]] and "synchronous" in line for line in table[2:])
    assert "latency (synchronous)" in captured.err  # the progress display
    summary = captured.err.strip().splitlines()[-1]  # one summary line, last
    assert summary.startswith("trtpipe bench: tinynet fp32 on onnxruntime-cpu") and f"-> {out}" in summary
    report = BenchReport.load(out)
    assert not report.partial and {r.batch for r in report.results} == {1, 2}

    md = tmp_path / "reports" / "compare.md"
    assert main(["report", str(out), "-o", str(md), "--baseline", str(out)]) == 0
    assert md.is_file() and md.with_suffix(".csv").is_file()
    assert (tmp_path / "reports" / "compare_latency.png").stat().st_size > 5000
    assert "1.00×" in md.read_text()
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split()[:2] == ["series", "batch"] and set(lines[1]) <= {"-", " "}  # header row, then a rule
    assert len(lines) == 4 and "1.00×" in lines[2]
    summary = captured.err.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("trtpipe report: 1 series from 1 timed report(s) -> ")
    assert "compare_latency.png" in summary[0]


def test_ctrl_c_writes_a_partial_report(classifier_onnx, tmp_path, monkeypatch, capsys):
    from trtpipe.bench import measure

    real = measure.measure_sync
    calls = 0

    def interrupted_second_batch(step, settings, phase="latency", progress=None):
        nonlocal calls
        calls += 1
        if calls == 3:  # batch 2's latency mode (batch 1 ran latency and end-to-end)
            def step_then_ctrl_c(count=[0]):
                count[0] += 1
                if count[0] > 5:
                    raise KeyboardInterrupt
                return step()
            return real(step_then_ctrl_c, settings, phase, progress)
        return real(step, settings, phase, progress)

    monkeypatch.setattr("trtpipe.bench.runner.measure_sync", interrupted_second_batch)
    out = tmp_path / "partial.json"
    code = main(["bench", str(classifier_onnx), "--batch", "1,2,4", "--warmup", "0", "--duration", "0.1s", "--json", str(out)])
    assert code == 130
    assert "PARTIAL report written" in capsys.readouterr().err
    data = json.loads(out.read_text())
    assert data["partial"] and "complete batches: [1]" in data["partial_reason"]
    assert [(r["batch"], r["mode"], r["partial"]) for r in data["results"]] == [
        (1, "latency", False), (1, "end_to_end", False), (2, "latency", True)]


@pytest.mark.parametrize("argv, message", [
    (["--duration", "soon"], "duration 'soon'"),
    (["--precision", "int8"], "is fp32, and --precision int8"),
    (["--simulate"], "which is not an engine file"),
])
def test_bench_bad_options_exit_2_with_hint(classifier_onnx, tmp_path, capsys, argv, message):
    assert main(["bench", str(classifier_onnx), *argv, "--json", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Hint:" in err
    assert not (tmp_path / "x.json").exists()


def test_backend_auto_falls_back_to_the_cpu_and_says_so(simulation, tmp_path, monkeypatch):
    import trtpipe.runtime.loader

    engine_path, _ = simulation
    monkeypatch.setattr(trtpipe.runtime.loader, "tensorrt_unavailable_reason", lambda path, flavor=None: "no driver (test)")
    out = tmp_path / "fallback.json"
    assert main(["bench", str(engine_path), "--backend", "auto", "--threads", "1", "--duration", "0.05s",
                 "--no-end-to-end", "--json", str(out)]) == 0
    report = BenchReport.load(out)
    assert report.backend["fallback"] and report.backend["name"] == "onnxruntime-cpu" and report.backend["threads"] == 1
    assert any("CPU fallback" in note and "no driver (test)" in note for note in report.notes)


def test_bench_simulate_runs_a_real_engine_file_labelled_simulated(classifier_onnx, tmp_path, capsys):
    """A TensorRT-RTX engine built here on the CPU, benched through the simulation: labelled in every output."""
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds engines on the CPU; pip install 'trtpipe[rtx]'")
    from trtpipe.builder.builder import build_engine
    from trtpipe.spec import BatchRange, BuildConfig, EngineSidecar, sidecar_path_for

    engine = build_engine(classifier_onnx, tmp_path / "tinynet_fp32.engine", BuildConfig(flavor="tensorrt_rtx", batch=BatchRange(1, 2, 4))).engine_path
    out = tmp_path / "sim.json"
    assert main(["bench", str(engine), "--simulate", "--batch", "1,4", "--warmup", "0", "--duration", "0.05s",
                 "--iterations", "3", "--profile-layers", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    rows = captured.out.strip().splitlines()
    assert rows[0].split()[:3] == ["batch", "mode", "inferences"]
    assert len(rows) > 2 and all(row.endswith("ran (functional check, not timed)") for row in rows[2:])
    assert "ms" not in captured.out  # not one timing
    assert "SIMULATED: functional check, nothing timed" in captured.err.splitlines()[-1]
    phases = [line for line in captured.err.splitlines() if line.startswith("[bench ")]
    assert phases and all("functional check: not timed" in line for line in phases)
    assert not any("/s" in line or " s," in line for line in phases)  # no made-up rate or time on screen either

    report = BenchReport.load(out)
    assert report.simulated and report.functional_check and report.backend["name"] == "tensorrt_rtx-simulated"
    assert "Simulated" in report.backend["gpu"]
    assert report.model["file"] == str(engine) and report.model["sha256"] == EngineSidecar.load(sidecar_path_for(engine)).engine_sha256
    assert any("functional check" in note for note in report.notes)
    assert {(r.batch, r.mode) for r in report.results} >= {(1, "latency"), (1, "throughput"), (4, "end_to_end")}
    assert all(not r.timed and not r.metrics and r.check["passed"] for r in report.results)
    profile = report.layer_profile
    assert profile["simulated"] and profile["layers"] and profile["total_ms"] is None
    assert all(set(layer) == {"name", "count"} for layer in profile["layers"])  # no fake layer times

    md = tmp_path / "sim.md"
    assert main(["report", str(out), "-o", str(md)]) == 0
    text = md.read_text()
    assert "## Functional checks (simulated: no timings)" in text and "## Results" not in text
    check = [line for line in text.splitlines() if line.startswith("| tinynet |")]
    assert len(check) == 1 and "ran, outputs checked" in check[0] and "ms" not in check[0]
    assert not list(tmp_path.glob("sim_*.png"))  # never charted

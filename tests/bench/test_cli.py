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
    assert "batch   2 latency" in captured.out and f"wrote {out}" in captured.err
    assert "latency (synchronous)" in captured.err  # the progress display
    report = BenchReport.load(out)
    assert not report.partial and {r.batch for r in report.results} == {1, 2}

    md = tmp_path / "reports" / "compare.md"
    assert main(["report", str(out), "-o", str(md), "--baseline", str(out)]) == 0
    assert md.is_file() and md.with_suffix(".csv").is_file()
    assert (tmp_path / "reports" / "compare_latency.png").stat().st_size > 5000
    assert "1.00×" in md.read_text()


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
])
def test_bench_bad_options_exit_2_with_hint(classifier_onnx, tmp_path, capsys, argv, message):
    assert main(["bench", str(classifier_onnx), *argv, "--json", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Hint:" in err
    assert not (tmp_path / "x.json").exists()


def test_backend_auto_falls_back_to_the_cpu_and_says_so(simulation, tmp_path, monkeypatch):
    import trtpipe.testing

    engine_path, _ = simulation
    monkeypatch.setattr(trtpipe.testing, "gpu_unavailable_reason", lambda: "no driver (test)")
    out = tmp_path / "fallback.json"
    assert main(["bench", str(engine_path), "--backend", "auto", "--threads", "1", "--duration", "0.05s",
                 "--no-end-to-end", "--json", str(out)]) == 0
    report = BenchReport.load(out)
    assert report.backend["fallback"] and report.backend["name"] == "onnxruntime-cpu" and report.backend["threads"] == 1
    assert any("CPU fallback" in note and "no driver (test)" in note for note in report.notes)

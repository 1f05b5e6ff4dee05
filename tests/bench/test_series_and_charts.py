"""One series per run (never merged, labelled by what differs), functional checks kept out of every figure, and
charts that carry their flags, units, earned whiskers, caption and stable colours."""

from __future__ import annotations

import csv
import io

import cv2
import numpy as np
import pytest

from bench_fixtures import fabricated_report
from trtpipe.bench import charts
from trtpipe.bench.compare import compare
from trtpipe.bench.render import render_markdown, write_outputs
from trtpipe.bench.report import BenchReport
from trtpipe.errors import InputError


def _saved(report: BenchReport, path) -> BenchReport:
    return BenchReport.load(report.save(path))


def _gpu(tmp_path, name: str, **backend) -> BenchReport:
    report = fabricated_report()
    report.backend.update(backend)
    return _saved(report, tmp_path / f"{name}.json")


def _cpu(tmp_path, name: str, *, fallback: bool = False, samples: int = 4) -> BenchReport:
    rng = np.random.default_rng(len(name))
    report = fabricated_report(gpu=None, backend="onnxruntime-cpu", precision="fp32",
                               latency_ms={1: list(5 + rng.random(samples)), 8: list(40 + rng.random(samples))})
    report.backend["fallback"] = fallback
    return _saved(report, tmp_path / f"{name}.json")


def test_runs_that_differ_only_in_a_mode_are_separate_series_named_by_it(tmp_path):
    comparison = compare([_gpu(tmp_path, "plain", cuda_graph=False), _gpu(tmp_path, "graph", cuda_graph=True)])
    assert list(comparison.series) == ["tensorrt · fp16 · no CUDA graph", "tensorrt · fp16 · CUDA graph"]
    assert len(comparison.rows) == 4  # 2 runs x 2 batches: nothing merged, nothing averaged
    assert {row.series for row in comparison.rows if row.source.endswith("graph.json")} == {"tensorrt · fp16 · CUDA graph"}

    transfers = compare([_gpu(tmp_path, "t", transfers=True), _gpu(tmp_path, "nt", transfers=False)])
    assert list(transfers.series) == ["tensorrt · fp16 · with H2D/D2H", "tensorrt · fp16 · no transfers"]


def test_an_explicit_run_and_a_fallback_run_stay_apart(tmp_path):
    comparison = compare([_cpu(tmp_path, "asked"), _cpu(tmp_path, "fallback", fallback=True)])
    assert list(comparison.series) == ["onnxruntime-cpu · fp32 · not a fallback", "onnxruntime-cpu · fp32 · CPU fallback"]
    fallback = comparison.series["onnxruntime-cpu · fp32 · CPU fallback"]
    assert "fallback" in fallback.flags
    by_series = {label: [r.latency.median for r in comparison.rows if r.series == label] for label in comparison.series}
    assert by_series[list(by_series)[0]] != by_series[list(by_series)[1]]  # each row keeps its own run's numbers


def test_cpu_runs_that_differ_in_streams_or_fp16_storage_are_named_by_it(tmp_path):
    one, two = _cpu(tmp_path, "one"), _cpu(tmp_path, "two")
    two.settings["infer_streams"] = 2  # ONNX Runtime with --infStreams 2: concurrent calls on one session
    assert list(compare([one, _saved(two, tmp_path / "two.json")]).series) == [
        "onnxruntime-cpu · fp32 · 1 stream", "onnxruntime-cpu · fp32 · 2 streams"]
    stored, plain = _cpu(tmp_path, "stored"), _cpu(tmp_path, "plain")
    stored.backend["fp16_storage"], plain.backend["fp16_storage"] = True, False
    labels = list(compare([_saved(stored, tmp_path / "stored.json"), _saved(plain, tmp_path / "plain.json")]).series)
    assert labels == ["onnxruntime-cpu · fp32 · FP16 storage", "onnxruntime-cpu · fp32 · FP16 computed in FP32"]


def test_identical_runs_are_named_by_their_file(tmp_path):
    comparison = compare([_cpu(tmp_path, "monday"), _cpu(tmp_path, "tuesday")])
    assert list(comparison.series) == ["onnxruntime-cpu · fp32 · run monday", "onnxruntime-cpu · fp32 · run tuesday"]


def test_a_busy_machine_is_flagged_in_the_legend(tmp_path):
    report = fabricated_report(gpu=None, backend="onnxruntime-cpu", precision="fp32")
    report.environment["load_average_1min"] = 40.0  # 32 usable cores in the fabricated machine
    comparison = compare([_saved(report, tmp_path / "busy.json")])
    (label,) = comparison.series
    assert label.endswith("[busy]") and any(note.startswith("**busy**") for note in comparison.notes)


def test_functional_checks_have_no_figures_anywhere(tmp_path):
    simulated = fabricated_report(backend="tensorrt-simulated", simulated=True)
    for i, result in enumerate(simulated.results):  # as bench --simulate writes them: not timed, checked
        simulated.results[i] = type(result)(result.batch, result.mode, result.iterations, None, {}, timed=False,
                                            check={"passed": True, "outputs": {"logits": [result.batch, 5]}})
    sim = _saved(simulated, tmp_path / "sim.json")
    timed = _cpu(tmp_path, "cpu")
    comparison = compare([timed, sim])
    assert [c.backend for c in comparison.checks] == ["tensorrt-simulated"] and comparison.checks[0].passed
    assert all(row.source.endswith("cpu.json") for row in comparison.rows)  # no latency, throughput or ratio row
    assert list(comparison.series) == ["onnxruntime-cpu · fp32"]  # no colour, no line, no bar

    outputs = write_outputs(comparison, tmp_path / "out" / "c.md")
    markdown = outputs.markdown.read_text()
    results = markdown.split("## Results")[1].split("## ")[0]
    assert "simulated" not in results
    checks = markdown.split("## Functional checks (simulated: no timings)")[1].split("## ")[0]
    assert "| tensorrt-simulated |" in checks and "ran, outputs checked" in checks and " ms" not in checks
    rows = list(csv.DictReader(io.StringIO(outputs.csv.read_text())))
    simulated_rows = [r for r in rows if r["backend"] == "tensorrt-simulated"]
    assert simulated_rows and all(r["timed"] == "False" and r["images_per_s"] == "" and r["call_median_ms"] == ""
                                  for r in simulated_rows)

    with pytest.raises(InputError, match="functional check.*Hint:"):
        compare([timed], baseline=sim)


@pytest.fixture
def captured(monkeypatch):
    """What each chart put under its axes: legend labels, footnotes, caption, and the figure's axes."""
    seen = {}
    real = charts._finish

    def spy(plt, fig, path, handles, labels, footnotes, caption):
        footnotes = list(footnotes)
        seen[path.stem.rsplit("_", 1)[-1]] = {"labels": labels, "footnotes": footnotes, "caption": caption, "axes": fig.axes}
        return real(plt, fig, path, handles, labels, footnotes, caption)

    monkeypatch.setattr(charts, "_finish", spy)
    return seen


def test_whiskers_only_where_enough_iterations_back_them(tmp_path, captured):
    many = _cpu(tmp_path, "many", samples=1200)
    few = _cpu(tmp_path, "few", samples=50)
    comparison = compare([many, few])
    charts.write_latency_chart(comparison, tmp_path / "c_latency.png")
    chart = captured["latency"]
    whiskers = {}
    for container, label in zip(chart["axes"][0].containers, chart["labels"]):
        segments = container.lines[2][0].get_segments()
        whiskers[label] = [abs(seg[1][1] - seg[0][1]) for seg in segments]
    many_label, few_label = list(comparison.series)
    assert all(w > 0 for w in whiskers[many_label])  # 1,200 iterations: p99 earned
    assert all(w == 0 for w in whiskers[few_label])  # 50 iterations: no p99 whisker
    notes = " ".join(chart["footnotes"])
    assert "Whiskers reach p99 (runs with at least 1000 iterations" in notes
    assert "No p99 whisker where a batch has fewer than 1000 iterations" in notes
    assert "Dashed: one synchronous call on the host clock" in notes
    assert chart["axes"][0].get_ylabel() == "latency per batch, ms (one inference of B images)"


def test_captions_name_the_machine_versions_and_date(tmp_path, captured):
    comparison = compare([_gpu(tmp_path, "h100")])
    charts.write_throughput_chart(comparison, tmp_path / "c_throughput.png")
    caption = captured["throughput"]["caption"]
    assert "GPU NVIDIA H100 80GB HBM3, driver 550.54, CUDA 12.4" in caption
    assert "TensorRT installed: tensorrt 10.9.0.34" in caption and "Date 2026-01-01" in caption
    assert captured["throughput"]["axes"][0].get_ylabel() == "throughput, images/s (batch × inferences/s)"


def _has_colour(path, hex_colour: str, min_pixels: int = 30) -> bool:
    image = cv2.imread(str(path))[:, :, ::-1].astype(int)
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image - rgb).sum(axis=2) < 12).sum()) >= min_pixels


def test_each_series_keeps_its_colour_in_every_chart(tmp_path):
    reports = [_cpu(tmp_path, "asked"), _cpu(tmp_path, "fallback", fallback=True), _gpu(tmp_path, "h100")]
    comparison = compare(reports, allow_mixed=True)
    colours = [series.color for series in comparison.series.values()]
    assert len(set(colours)) == 3
    outputs = write_outputs(comparison, tmp_path / "out" / "c.md")
    assert [c.name for c in outputs.charts] == ["c_latency.png", "c_throughput.png"]
    for chart in outputs.charts:
        for colour in colours:
            assert _has_colour(chart, colour), f"{colour} missing from {chart.name}"
    again = compare(reports, allow_mixed=True)  # the same reports give the same colours
    assert [s.color for s in again.series.values()] == colours


def test_markdown_names_series_and_explains_the_tail_column(tmp_path):
    markdown = render_markdown(compare([_cpu(tmp_path, "a"), _cpu(tmp_path, "b", fallback=True)]))
    header = next(line for line in markdown.splitlines() if line.startswith("| model |"))
    assert "| series |" in header and "| iterations |" in header and "| latency p99 ms |" in header
    assert "**series**: one run (one report file)" in markdown and "below 1,000 iterations" in markdown

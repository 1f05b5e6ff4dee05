"""Report files (schema, bad input), joining reports from two machines, and the rendered Markdown, CSV and PNGs."""

from __future__ import annotations

import csv
import io
import json

import cv2
import numpy as np
import pytest

from bench_fixtures import fabricated_report
from trtpipe.bench.compare import compare, load_reports
from trtpipe.bench.render import render_markdown, write_outputs
from trtpipe.bench.report import SCHEMA_VERSION, BenchReport
from trtpipe.cli.main import main
from trtpipe.errors import InputError


@pytest.fixture
def two_machines(tmp_path):
    """An H100 TensorRT FP16 report, an RTX 4090 TensorRT FP16 one with random weights, and a CPU ONNX Runtime baseline."""
    h100 = fabricated_report(host="dc-node", gpu="NVIDIA H100 80GB HBM3").save(tmp_path / "h100.json")
    rtx = fabricated_report(host="workstation", gpu="NVIDIA GeForce RTX 4090", weights="random",
                            latency_ms={1: [2.0, 2.2, 2.1, 2.4], 8: [8.0, 8.8, 8.4, 8.2]}).save(tmp_path / "rtx.json")
    cpu = fabricated_report(host="laptop", gpu=None, backend="onnxruntime-cpu", precision="fp32",
                            latency_ms={1: [5.0, 5.5, 6.0, 5.2], 8: [40.0, 42.0, 41.0, 44.0]}).save(tmp_path / "cpu.json")
    return h100, rtx, cpu


def test_join_two_gpus_with_a_cpu_baseline(two_machines):
    h100, rtx, cpu = two_machines
    comparison = compare(load_reports([h100, rtx]), baseline=BenchReport.load(cpu))
    assert len(comparison.machines) == 3 and len(comparison.rows) == 6  # baseline rows included
    row = next(r for r in comparison.rows if r.machine.startswith("dc-node") and r.batch == 8)
    base = BenchReport.load(cpu).results[1].latency  # batch 8, synchronous call (CPU)
    assert row.speedup_latency == pytest.approx(base.median / row.latency.median)
    assert row.latency_kind == "host latency" and row.gpu_compute is not None
    assert "other machine" in row.flags
    cpu_row = next(r for r in comparison.rows if r.backend == "onnxruntime-cpu" and r.batch == 1)
    assert cpu_row.gpu_compute is None and "CPU" in cpu_row.flags and cpu_row.speedup_latency == pytest.approx(1.0)
    assert "random weights" in next(r for r in comparison.rows if r.machine.startswith("workstation")).flags
    notes = "\n".join(comparison.notes)
    for expected in ("3 machines", "RANDOM weights", "ran on the CPU", "another machine than the baseline", "Speedups are against"):
        assert expected in notes


def test_rendered_markdown_csv_and_charts(two_machines, tmp_path):
    h100, rtx, cpu = two_machines
    comparison = compare(load_reports([h100, rtx, cpu]), baseline=BenchReport.load(cpu))
    outputs = write_outputs(comparison, tmp_path / "out" / "compare.md")

    markdown = outputs.markdown.read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| mobilenetv2 |")]
    assert len(table) == 6  # 3 reports x 2 batches, the baseline once
    assert sum("**RANDOM**" in line for line in table) == 2  # random weights visible in the table itself
    assert sum("(call)" in line for line in table) == 2  # CPU latency labelled as a host call
    assert any("NVIDIA H100 80GB HBM3" in line for line in markdown.splitlines() if line.startswith("| dc-node"))
    assert "![compare_latency](compare_latency.png)" in markdown

    rows = list(csv.DictReader(io.StringIO(outputs.csv.read_text())))
    assert len(rows) == 6 and {r["backend"] for r in rows} == {"tensorrt", "onnxruntime-cpu"}
    cpu_row = next(r for r in rows if r["backend"] == "onnxruntime-cpu")
    assert cpu_row["gpu_compute_median_ms"] == "" and float(cpu_row["call_median_ms"]) > 0

    for chart in outputs.charts:
        image = cv2.imread(str(chart))
        assert image is not None and image.shape[0] >= 400 and image.shape[1] >= 600
        assert image.std() > 10 and len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # drawn, not blank


def test_partial_rows_are_flagged(tmp_path):
    report = fabricated_report()
    report.mark_partial("interrupted (Ctrl-C); complete batches: [1]")
    markdown = render_markdown(compare([BenchReport.load(report.save(tmp_path / "s.json"))]))
    assert "PARTIAL" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| mobilenetv2 |")]
    assert len(rows) == 2 and all(line.endswith("| partial |") and "[partial]" in line for line in rows)


def test_a_version_1_simulated_report_loses_its_fake_timings(tmp_path):
    """Reports written before schema 2 carried the simulation's fake-clock latency: read back, it is gone."""
    data = fabricated_report(backend="tensorrt-simulated", simulated=True).to_dict()
    data["schema_version"] = 1
    for result in data["results"]:
        del result["timed"]
    path = tmp_path / "old_sim.json"
    path.write_text(json.dumps(data))
    report = BenchReport.load(path)
    assert report.functional_check and all(not r.timed and r.metrics == {} and r.latency is None for r in report.results)
    comparison = compare([report])
    assert comparison.rows == [] and len(comparison.checks) == 1 and comparison.checks[0].iterations == 8


def test_different_models_need_allow_mixed(tmp_path):
    a = fabricated_report(model="mobilenetv2").save(tmp_path / "a.json")
    b = fabricated_report(model="resnet50").save(tmp_path / "b.json")
    with pytest.raises(InputError, match="different models.*Hint:.*--allow-mixed"):
        compare(load_reports([a, b]))
    assert compare(load_reports([a, b]), allow_mixed=True).models == ["mobilenetv2", "resnet50"]


def test_other_schema_version_is_refused(tmp_path):
    data = fabricated_report().to_dict()
    data["schema_version"] = SCHEMA_VERSION + 1
    path = tmp_path / "future.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=f"schema version {SCHEMA_VERSION + 1}.*reads versions 1, 2.*Hint: re-run trtpipe bench"):
        BenchReport.load(path)


@pytest.mark.parametrize("content, message", [
    ('{"kind": "trtpipe-bench", "schema_version": 1, "model": ', "not valid JSON"),
    ('{"name": "something else"}', "not a trtpipe bench report"),
    ('{"kind": "trtpipe-bench", "schema_version": 1, "model": {}}', "incomplete or malformed"),
])
def test_bad_report_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=f"{message}.*Hint:"):
        BenchReport.load(path)


def test_report_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    good = fabricated_report().save(tmp_path / "good.json")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{ not json")
    assert main(["report", str(good), str(corrupt), "-o", str(tmp_path / "c.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt.json" in err[0] and "Hint:" in err[0]
    assert not (tmp_path / "c.md").exists()


def test_report_of_a_folder_glob_skips_other_json_summaries(tmp_path, capsys, caplog):
    """`trtpipe report reports/*.json` after `make test-gpu` / `make coverage`: their summaries share the folder."""
    good = fabricated_report().save(tmp_path / "good.json")
    summary = tmp_path / "test-gpu.json"
    summary.write_text(json.dumps({"machine": {}, "tests": []}))
    assert main(["report", str(good), str(summary), "-o", str(tmp_path / "c.md")]) == 0
    assert "skipped " + str(summary) + ": not trtpipe bench report" in caplog.text
    assert (tmp_path / "c.md").is_file()
    # only other summaries: nothing to report is still an error; so is an explicit baseline that is not a report
    assert main(["report", str(summary), "-o", str(tmp_path / "d.md")]) == 2
    assert "is a trtpipe bench report" in capsys.readouterr().err and not (tmp_path / "d.md").exists()
    assert main(["report", str(good), "--baseline", str(summary), "-o", str(tmp_path / "e.md")]) == 2
    assert "not a trtpipe bench report" in capsys.readouterr().err

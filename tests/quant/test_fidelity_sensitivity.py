"""Fidelity figures and JSON, sensitivity ranking, calib-data and the CLI verbs over them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trtpipe.quant.fidelity import JSON_KEYS, compare, measure_fidelity, write_json


def test_compare_figures_on_known_outputs():
    reference = np.array([[5.0, 1, 0, 0, 0, 0], [0.1, 0.2, 0, 0, 0, 0.0], [0, 0, 9.0, 0, 0, 0]])
    output = reference.copy()
    output[1] = [0.2, 0.1, 0, 0, 0, 0]  # the unconfident image flips
    result = compare("int8", reference, output)
    assert result.top1_agreement == pytest.approx(2 / 3)
    assert result.top1_agreement_confident == 1.0 and result.confident_images == 2
    assert result.max_abs_error == pytest.approx(0.1)
    assert 0.9 < result.cosine_mean < 1.0
    assert list(result.to_json()) == list(JSON_KEYS)


def test_measure_fidelity_and_json(tiny_onnx, image_dir, tmp_path):
    results, overlap = measure_fidelity(
        tiny_onnx, ["fp32", "fp16", "int8"], image_dir, image_dir, tmp_path / "work", max_images=24
    )
    by_precision = {r.precision: r for r in results}
    assert by_precision["fp32"].top1_agreement == 1.0 and by_precision["fp32"].images == 24
    assert by_precision["fp16"].cosine_mean > 0.999
    assert by_precision["int8"].cosine_mean > 0.98
    assert overlap == 24  # the same folder: every evaluation image was calibrated on
    path = write_json(tmp_path / "out.json", results)
    data = json.loads(path.read_text())
    assert [row["precision"] for row in data] == ["fp32", "fp16", "int8"]
    assert all(list(row) == list(JSON_KEYS) for row in data)


def test_sensitivity_ranks_every_layer_worst_first(make_tiny_model):
    from trtpipe.quant.calibrate import collect_histograms
    from trtpipe.quant.qdq import plan_qdq
    from trtpipe.quant.sensitivity import format_table, rank_layers

    model = make_tiny_model()
    plan = plan_qdq(model)
    data = [np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)]
    ranges = collect_histograms(model, plan.activations, data).ranges("entropy")
    ranking = rank_layers(model, plan, ranges, data)
    assert sorted(r.name for r in ranking) == sorted(plan.names)
    errors = [r.error for r in ranking]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0
    assert ranking[0].name in format_table(ranking)


def test_calib_data_fills_an_empty_folder_once(tmp_path):
    pytest.importorskip("skimage")
    from trtpipe.quant.calib_data import make_calib_data

    first = make_calib_data(tmp_path / "calib", count=6, seed=0)
    assert first.written == 6 and len(list((tmp_path / "calib").glob("*.jpg"))) == 6
    assert make_calib_data(tmp_path / "calib", count=6).written == 0
    assert not list(tmp_path.glob(".calib*"))  # no staging folder left behind


def test_cli_verbs(tiny_onnx, image_dir, tmp_path, capsys):
    from trtpipe.cli.main import main

    out = tmp_path / "q.int8.onnx"
    assert main(["calibrate", str(tiny_onnx), "--images", str(image_dir), "--method", "max", "-o", str(out),
                 "--fidelity-target", "none"]) == 0  # 24 images: too few to hold back a check's (test_search.py)
    assert out.is_file() and "wrote" in capsys.readouterr().out
    assert main(["sensitivity", str(tiny_onnx), "--images", str(image_dir), "--eval-images", "8"]) == 0
    assert "ranked 5 layers" in capsys.readouterr().out
    report = tmp_path / "f.json"
    assert main(["fidelity", str(tiny_onnx), "--precisions", "fp32,int8", "--images", str(image_dir),
                 "--calib", str(image_dir), "--json", str(report), "--work-dir", str(tmp_path)]) == 0
    assert len(json.loads(report.read_text())) == 2
    assert main(["calibrate", str(tiny_onnx), "--images", str(tmp_path / "none")]) == 2
    assert "Hint:" in capsys.readouterr().err


def test_cli_verbs_switch_bias_correction_off(tiny_onnx, image_dir, tmp_path, capsys):
    from trtpipe.cli.main import main

    out = tmp_path / "q.int8.onnx"
    unchecked = ["--fidelity-target", "none"]  # 24 images: too few to hold back a check's (test_search.py)
    assert main(["calibrate", str(tiny_onnx), "--images", str(image_dir), "-o", str(out), *unchecked]) == 0
    assert "bias-corrected" in capsys.readouterr().out
    assert main(["calibrate", str(tiny_onnx), "--images", str(image_dir), "-o", str(out), "--no-bias-correction",
                 *unchecked]) == 0
    assert "bias-corrected" not in capsys.readouterr().out
    assert main(["sensitivity", str(tiny_onnx), "--images", str(image_dir), "--no-bias-correction"]) == 0
    assert main(["fidelity", str(tiny_onnx), "--precisions", "int8", "--images", str(image_dir), "--calib",
                 str(image_dir), "--work-dir", str(tmp_path), "--no-bias-correction"]) == 0
    assert "bias correction" not in capsys.readouterr().out


def test_sensitivity_with_bias_shifts_ranks_the_corrected_layers(make_tiny_model):
    from trtpipe.quant.bias_correction import measure_bias_shifts
    from trtpipe.quant.calibrate import collect_histograms
    from trtpipe.quant.qdq import plan_qdq
    from trtpipe.quant.sensitivity import rank_layers

    model = make_tiny_model()
    plan = plan_qdq(model)
    data = [np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)]
    ranges = collect_histograms(model, plan.activations, data).ranges("max")
    plain = {r.name: r.error for r in rank_layers(model, plan, ranges, data)}
    shifts = measure_bias_shifts(model, plan, ranges, data)
    corrected = {r.name: r.error for r in rank_layers(model, plan, ranges, data, shifts=shifts)}
    assert corrected["residual_add"] == pytest.approx(plain["residual_add"])  # no bias to correct
    assert corrected["fc"] < plain["fc"]  # on the images it was measured on, the Gemm's mean error is removed

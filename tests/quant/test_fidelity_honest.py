"""Fidelity that cannot lie: collapsed outputs fail, FP16 is measured with FP16 storage, an ONNX Runtime crash is a
result, the JSON is strict, and nothing a build wrote is replaced."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from model_kinds import exp_gate, fp16_overflow_chain, fp16_transpose_matmul_add, write_bright_images
from trtpipe.errors import OnnxModelError
from trtpipe.quant.fidelity import IsolatedRunner, compare, first_output, keep_fp16_rounding, measure_fidelity, write_json
from trtpipe.quant.sensitivity import cosine_rows
from trtpipe.spec import PreprocessSpec


def strict_json(text: str):
    """json.loads that refuses NaN / Infinity literals (what a strict parser, e.g. a browser's, does)."""
    return json.loads(text, parse_constant=lambda literal: (_ for _ in ()).throw(ValueError(literal)))


REFERENCE = np.random.default_rng(0).normal(size=(24, 10)).astype(np.float32)


@pytest.mark.parametrize("label, output", [
    ("all zero", np.zeros_like(REFERENCE)),
    ("all NaN", np.full_like(REFERENCE, np.nan)),
    ("all inf", np.full_like(REFERENCE, np.inf)),
])
def test_a_collapsed_output_fails_every_image_instead_of_reading_cosine_one(label, output):
    result = compare("int8", REFERENCE, output)
    assert result.cosine_mean == 0.0 and result.top1_agreement == 0.0 and result.top5_overlap == 0.0
    assert result.failed_images == 24 and "24/24 images failed" in result.note
    assert result.nan_values == (240 if label == "all NaN" else 0)
    assert result.inf_values == (240 if label == "all inf" else 0)
    assert result.max_abs_error == (float(np.abs(REFERENCE).max()) if label == "all zero" else None)
    strict_json(json.dumps(result.to_json(), allow_nan=False))


def test_a_partly_failed_output_counts_failed_images_as_cosine_zero():
    output = REFERENCE.copy()
    output[:6] = 0.0  # 6 collapsed images
    output[6, 3] = np.nan  # one image with a NaN class
    result = compare("fp16", REFERENCE, output)
    assert result.failed_images == 7 and result.nan_values == 1 and result.inf_values == 0
    assert result.cosine_mean == pytest.approx(17 / 24)  # the 17 intact images match exactly, the 7 count 0
    assert result.top1_agreement == pytest.approx(17 / 24)
    assert "output all zero (6)" in result.note and "output NaN/inf (1; 1 NaN, 0 inf values)" in result.note
    assert result.max_abs_error == pytest.approx(float(np.abs(REFERENCE[:6]).max()))  # finite pairs only


def test_a_collapsed_reference_is_a_failure_too():
    reference = REFERENCE.copy()
    reference[0] = 0.0
    result = compare("fp32", reference, reference)
    assert result.failed_images == 1 and result.cosine_mean == pytest.approx(23 / 24)
    assert "FP32 reference all zero or NaN/inf (1)" in result.note


def test_outputs_of_another_shape_are_not_compared():
    result = compare("int8", REFERENCE, REFERENCE[:, :5])
    assert not result.measured and "could not be measured" in result.note and "[24, 5]" in result.note


def test_cosine_rows_never_calls_a_one_sided_zero_or_nan_a_match():
    reference = np.array([[1.0, 2.0], [0.0, 0.0], [1.0, 2.0], [1.0, 2.0]])
    output = np.array([[2.0, 4.0], [0.0, 0.0], [0.0, 0.0], [np.nan, 2.0]])
    assert cosine_rows(reference, output).tolist() == pytest.approx([1.0, 1.0, 0.0, 0.0])


def test_json_is_strict_and_carries_counts_and_notes(tmp_path):
    results = [compare("fp32", REFERENCE, REFERENCE, "the reference"), compare("int8", REFERENCE, np.full_like(REFERENCE, np.nan))]
    rows = strict_json(write_json(tmp_path / "f.json", results).read_text())
    assert rows[1]["cosine_mean"] == 0.0 and rows[1]["max_abs_error"] is None and rows[1]["nan_values"] == 240
    assert rows[1]["failed_images"] == 24 and "failed" in rows[1]["note"]


# ---- FP16 storage -------------------------------------------------------------------------------------------


class _Batches:
    """An ImageSet stand-in for first_output: fixed float32 batches (the model's input is not an image)."""

    def __init__(self, data):
        self.data = data

    def batches(self, batch_size, indices, ragged="pad"):
        for start in range(0, len(indices), batch_size):
            yield self.data[indices[start : start + batch_size]]


def _plain_session_output(path, x):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_fp16_is_measured_with_fp16_storage_so_an_activation_over_65504_overflows(tmp_path):
    path = fp16_overflow_chain(tmp_path / "chain.fp16.onnx")
    x = np.full((3, 4), 100.0, np.float32)  # first MatMul: 4 * 100 * 300 = 120000 > 65504 (FP16's largest value)
    measured = first_output(path, _Batches(x), np.arange(3), 2)
    assert np.isinf(measured).all(), f"FP16 storage must overflow to inf, got {measured}"
    # A plain ONNX Runtime session computes the chain in FP32 (its Cast pairs removed) and hides the overflow:
    # the reason keep_fp16_rounding exists. Recorded here; if a later ONNX Runtime stops doing so, this says so.
    plain = _plain_session_output(path, x)
    assert np.isfinite(plain).all() and plain[0, 0] == pytest.approx(480.0, rel=1e-2)
    # and the fidelity figure calls the overflowed output a failure
    result = compare("fp16", plain, measured)
    assert result.failed_images == 3 and result.cosine_mean == 0.0 and result.inf_values == 12


def test_fp16_storage_rounds_like_numpy_float16_below_the_overflow(tmp_path):
    path = fp16_overflow_chain(tmp_path / "chain.fp16.onnx", gain=1.0 + 2.0**-9)
    x = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]], np.float32)
    measured = first_output(path, _Batches(x), np.arange(2), 2)
    # FP16 after every op: x, the first product and the second each stored as float16 (FP32 inside the op)
    w1 = np.full((4, 4), 1.0 + 2.0**-9, np.float16).astype(np.float32)
    w2 = np.full((4, 4), 0.001, np.float16).astype(np.float32)
    a = (x.astype(np.float16).astype(np.float32) @ w1).astype(np.float16).astype(np.float32)
    expected = (a @ w2).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(measured, expected)


def test_keep_fp16_rounding_routes_every_produced_fp16_tensor(tmp_path):
    import onnx

    model = onnx.load(str(fp16_overflow_chain(tmp_path / "chain.fp16.onnx")))
    rounded, routed = keep_fp16_rounding(model)
    assert routed == 3  # xh, a, b: every FP16 tensor a node produces
    outputs = [o.name for o in rounded.graph.output]
    assert outputs[0] == "y" and sorted(outputs[1:]) == ["a__fp16_stored", "b__fp16_stored", "xh__fp16_stored"]
    onnx.checker.check_model(rounded)
    assert keep_fp16_rounding(rounded)[1] == 0  # already routed: nothing left to do


# ---- an ONNX Runtime crash is a result ----------------------------------------------------------------------


def _crashes_onnxruntime(path) -> bool:
    code = (
        "import onnxruntime as ort; o = ort.SessionOptions(); o.log_severity_level = 3; "
        f"ort.InferenceSession({str(path)!r}, o, providers=['CPUExecutionProvider'])"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode < 0


def test_an_onnxruntime_segfault_is_reported_and_the_runner_carries_on(tmp_path):
    crashing = fp16_transpose_matmul_add(tmp_path / "dynamo_like.fp16.onnx")
    if not _crashes_onnxruntime(crashing):
        pytest.skip("this ONNX Runtime no longer crashes on the FP16 Transpose->MatMul->Add graph")
    fine = fp16_transpose_matmul_add(tmp_path / "dynamo_like.fp32.onnx", fp16=False)
    data = np.random.default_rng(0).random((4, 64, 16)).astype(np.float32)
    with IsolatedRunner(_Batches(data), np.arange(4), 4, fp16_storage=False) as runner:
        with pytest.raises(OnnxModelError, match=r"ONNX Runtime crashed while running it \(its process was killed by SIGSEGV\).*Hint:"):
            runner.run(crashing)
        assert runner.run(fine).shape == (64, 4, 48)  # a fresh child process runs the next model


def test_fp16_storage_also_avoids_that_crash_so_the_model_is_measured(tmp_path):
    crashing = fp16_transpose_matmul_add(tmp_path / "dynamo_like.fp16.onnx")
    reference = fp16_transpose_matmul_add(tmp_path / "dynamo_like.fp32.onnx", fp16=False)
    data = np.random.default_rng(0).random((4, 64, 16)).astype(np.float32)
    with IsolatedRunner(_Batches(data), np.arange(4), 4) as runner:
        output, expected = runner.run(crashing), runner.run(reference)
    assert compare("fp16", expected, output).cosine_mean > 0.9999


def test_an_onnx_runtime_refusal_is_a_could_not_measure_error(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    with IsolatedRunner(_Batches(np.zeros((2, 4), np.float32)), np.arange(2), 2) as runner:
        with pytest.raises(OnnxModelError):
            runner.run(broken)


# ---- the whole verb on a collapsing INT8 model ------------------------------------------------------------


def test_fidelity_of_an_int8_model_whose_output_collapses(tmp_path, image_dir):
    """Calibrated on near-white images, the Exp gate's range is so wide that INT8 rounds the head's input to zero."""
    model = exp_gate(tmp_path / "m", gain=3.0, name="dead")
    bright = write_bright_images(tmp_path / "bright")
    results, overlap = measure_fidelity(model, ["fp32", "int8"], image_dir, bright, tmp_path / "work", method="max",
                                        max_images=16, progress=False)
    int8 = results[1]
    assert int8.failed_images == int8.images == 24 and int8.cosine_mean == 0.0 and overlap == 0
    assert "24/24 images failed: output all zero (24)" in int8.note
    strict_json(write_json(tmp_path / "f.json", results).read_text())


def test_fidelity_never_replaces_what_a_build_wrote(tmp_path, image_dir, tiny_onnx):
    """A build beside the ONNX wrote tiny.int8.onnx, tiny.fp16.onnx and tiny.int8.calib.json: fidelity and
    sensitivity, run on the same folder, leave them byte for byte as they were."""
    from trtpipe.cli.main import main
    from trtpipe.quant.prepare import prepare_precision_onnx
    from trtpipe.spec import BuildConfig

    folder = tiny_onnx.parent
    prepare_precision_onnx(tiny_onnx, BuildConfig(precision="int8", calib_images=str(image_dir), calib_max_images=24, fidelity_target="none"),
                           None, folder)
    prepare_precision_onnx(tiny_onnx, BuildConfig(precision="fp16"), None, folder)
    build_files = ["tiny.int8.onnx", "tiny.fp16.onnx", "tiny.int8.calib.json"]
    before = {name: (folder / name).read_bytes() for name in build_files}
    measure_fidelity(tiny_onnx, ["fp32", "fp16", "int8"], image_dir, image_dir, folder, max_images=24,
                     auto_keep=1, progress=False)
    assert main(["sensitivity", str(tiny_onnx), "--images", str(image_dir), "--eval-images", "8"]) == 0
    assert {name: (folder / name).read_bytes() for name in build_files} == before
    own = {p.name for p in folder.iterdir()} - set(build_files)
    assert {"tiny.fidelity.int8.onnx", "tiny.fidelity.fp16.onnx", "tiny.fidelity.int8.calib.json",
            "tiny.sensitivity.int8.calib.json"} <= own


def test_fidelity_cli_says_random_weights_and_ends_with_one_summary_line(tmp_path, image_dir, tiny_onnx, capsys):
    from trtpipe.cli.main import main

    spec_path = tiny_onnx.with_name("tiny.preprocess.json")
    PreprocessSpec.load(spec_path).replace(weights="random").save(spec_path)
    report = tmp_path / "out" / "f.json"
    assert main(["fidelity", str(tiny_onnx), "--precisions", "fp32,fp16", "--images", str(image_dir),
                 "--json", str(report)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("note: tiny.onnx has random weights")
    assert out[-1].startswith("fidelity vs FP32 on 24 images (random weights): fp16 top-1 ")
    assert out[-1].endswith(f"wrote {report}")
    rows = strict_json(report.read_text())
    assert [row["weights"] for row in rows] == ["random", "random"]
    assert main(["sensitivity", str(tiny_onnx), "--images", str(image_dir), "--eval-images", "8"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("note: tiny.onnx has random weights")
    assert out[-1].startswith("sensitivity: ranked 5 layers on 6 images (random weights) in ")


def test_the_python_api_works_from_a_script_without_a_main_guard_read_from_stdin(tmp_path, image_dir, tiny_onnx):
    """multiprocessing's spawn would re-run such a script in its child (and fails on stdin): the child must not."""
    import os
    from pathlib import Path

    import trtpipe

    script = (
        "from trtpipe.quant.fidelity import measure_fidelity\n"
        f"results, _ = measure_fidelity({str(tiny_onnx)!r}, ['fp32', 'fp16'], {str(image_dir)!r}, None, "
        f"{str(tmp_path / 'w')!r}, progress=False)\n"
        "print('cosine', results[1].cosine_mean)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(trtpipe.__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) > 0.999


def test_a_precision_whose_onnx_cannot_be_prepared_is_a_row_saying_why(tmp_path, image_dir, tiny_onnx, monkeypatch):
    import trtpipe.quant.prepare as prepare

    def broken_converter(*args, **kwargs):
        raise ValueError("the converter cannot handle node X")

    monkeypatch.setattr(prepare, "prepare_fp16", broken_converter)
    results, _ = measure_fidelity(tiny_onnx, ["fp32", "fp16"], image_dir, None, tmp_path / "w", progress=False)
    assert results[0].measured and not results[1].measured
    assert results[1].note == ("could not be measured: preparing the FP16 ONNX failed (ValueError: the converter "
                               "cannot handle node X); -v shows where")
    assert results[1].to_json()["cosine_mean"] is None

"""Calibration, sensitivity and fidelity take every model the builder takes: non-float and NHWC inputs, fixed
batches, several inputs, weights listed as inputs or held in external data, If subgraphs, activations whose range
explodes after the first batch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_kinds import (
    exp_gate, external_weights, fixed_batch, initializers_as_inputs, two_inputs, uint8_nhwc, with_if_branch,
)
from trtpipe.errors import InputError
from trtpipe.quant.fidelity import measure_fidelity
from trtpipe.quant.prepare import Int8Options, prepare_int8
from trtpipe.spec import PreprocessSpec


def _inputs_of(path):
    import onnx

    from trtpipe.quant.feeds import real_inputs

    return real_inputs(onnx.load(str(path)))


# ---- uint8 NHWC -----------------------------------------------------------------------------------------------


def test_a_uint8_nhwc_input_gets_uint8_batches_of_raw_pixels(tmp_path, image_dir):
    import onnx

    from trtpipe.quant.feeds import network_feeder
    from trtpipe.quant.images import load_images

    path = uint8_nhwc(tmp_path / "m")
    spec = PreprocessSpec.load(path.with_name("u8.preprocess.json"))
    feeder = network_feeder(onnx.load(str(path)), spec, path)
    images = load_images(image_dir, spec, progress=False).for_network(feeder)
    batch = next(images.batches(8))
    assert batch.dtype == np.uint8 and batch.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(batch[..., ::-1], images.resized[:8])  # RGB of the decoded BGR pixels, unscaled


def test_calibrate_and_fidelity_run_a_uint8_nhwc_model(tmp_path, image_dir):
    path = uint8_nhwc(tmp_path / "m")
    prepared = prepare_int8(path, Int8Options(image_dir, max_images=24, fidelity_target="none"), None, tmp_path / "m" / "u8.int8.onnx")
    assert _inputs_of(prepared.path)[0].dtype == "uint8"
    results, _ = measure_fidelity(path, ["fp32", "fp16", "int8"], image_dir, image_dir, tmp_path / "w", max_images=24,
                                  progress=False)
    assert [r.images for r in results] == [24, 24, 24]
    assert results[1].cosine_mean > 0.999 and results[2].cosine_mean > 0.99 and results[2].failed_images == 0


def test_a_spec_whose_layout_disagrees_with_the_input_is_refused_naming_it(tmp_path, image_dir, capsys):
    from trtpipe.cli.main import main

    path = uint8_nhwc(tmp_path / "m", layout="NCHW")
    for verb in (["calibrate", str(path), "--images", str(image_dir)],
                 ["fidelity", str(path), "--images", str(image_dir), "--calib", str(image_dir)],
                 ["sensitivity", str(path), "--images", str(image_dir)]):
        assert main(verb) == 2
        err = capsys.readouterr().err
        assert "input 'image_tensor' has shape ?x32x32x3" in err and 'set "layout": "NHWC"' in err, err
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["u8.onnx", "u8.preprocess.json"]  # nothing written


def test_a_spec_whose_size_disagrees_with_the_input_is_refused(tmp_path, image_dir):
    from trtpipe.quant.feeds import check_image_input
    from trtpipe.spec import TensorInfo

    spec = PreprocessSpec(model="m", height=224, width=224)
    with pytest.raises(InputError, match=r"input 'images' has shape \?x3x32x32.*224x224.*--input-size HxW"):
        check_image_input(spec, TensorInfo("images", (-1, 3, 32, 32), "float32"), "m.onnx")
    with pytest.raises(InputError, match=r"input 'features' has shape \?x8 \(2-D\)"):
        check_image_input(spec, TensorInfo("features", (-1, 8), "float32"), "m.onnx")
    check_image_input(spec, TensorInfo("images", (-1, 3, -1, -1), "float32"), "m.onnx")  # dynamic size fits


def test_an_integer_input_with_a_normalising_spec_is_refused(tmp_path, image_dir):
    path = uint8_nhwc(tmp_path / "m", pixel_scale=1 / 255.0)
    with pytest.raises(InputError, match=r"input 'image_tensor' is uint8, but u8.preprocess.json normalises pixels"):
        prepare_int8(path, Int8Options(image_dir, fidelity_target="none"), None, tmp_path / "m" / "u8.int8.onnx")


# ---- fixed batch --------------------------------------------------------------------------------------------


def test_a_fixed_batch_is_calibrated_in_full_batches_and_says_what_it_left_out(tmp_path, image_dir, caplog):
    path = fixed_batch(tmp_path / "m", batch=5)
    prepared = prepare_int8(path, Int8Options(image_dir, max_images=24, fidelity_target="none"), None, tmp_path / "m" / "fixed.int8.onnx")
    assert prepared.notes[0].startswith("calibrated 2 activations on 20 images")
    assert "the network's batch is fixed at 5: the last 4 of 24 images are left out" in prepared.notes[0]
    assert caplog.text.count("left out (ragged end dropped)") == 1  # said once, though three passes batched them


def test_fidelity_on_a_fixed_batch_pads_the_last_batch_and_counts_every_image(tmp_path, image_dir):
    path = fixed_batch(tmp_path / "m", batch=5)
    results, _ = measure_fidelity(path, ["fp32", "int8"], image_dir, image_dir, tmp_path / "w", max_images=24,
                                  eval_images=7, progress=False)
    assert [r.images for r in results] == [7, 7]
    assert "padded with 3 repeated images (their outputs are not counted)" in results[1].note


def test_sensitivity_on_a_fixed_batch(tmp_path, image_dir, capsys):
    from trtpipe.cli.main import main

    path = fixed_batch(tmp_path / "m", batch=4)
    assert main(["sensitivity", str(path), "--images", str(image_dir), "--eval-images", "6"]) == 0
    assert "ranked 2 layers on 6 images" in capsys.readouterr().out


# ---- several inputs -----------------------------------------------------------------------------------------


def test_a_two_input_model_is_a_clean_refusal_in_every_verb(tmp_path, image_dir, capsys):
    from trtpipe.cli.main import main

    path = two_inputs(tmp_path / "m")
    report = tmp_path / "w" / "f.json"
    for verb in (["calibrate", str(path), "--images", str(image_dir)],
                 ["fidelity", str(path), "--images", str(image_dir), "--calib", str(image_dir), "--json", str(report)],
                 ["sensitivity", str(path), "--images", str(image_dir)]):
        assert main(verb) == 2
        err = capsys.readouterr().err
        assert "two.onnx has 2 network inputs (x ?x3x32x32 float32, cond ?x8 float32)" in err and "feeds=" in err
    assert not report.exists() and not list((tmp_path / "m").glob("*int8*"))


def _conditioning(images):
    """The Python API's feeds hook for two_inputs: the image batch plus a fixed conditioning vector."""
    return {"x": images, "cond": np.full((len(images), 8), 0.5, np.float32)}


def test_a_two_input_model_is_measured_with_a_feeds_hook(tmp_path, image_dir):
    path = two_inputs(tmp_path / "m")
    prepared = prepare_int8(path, Int8Options(image_dir, max_images=24, feeds=_conditioning, fidelity_target="none"), None,
                            tmp_path / "m" / "two.int8.onnx")
    assert prepared.path.is_file()
    results, _ = measure_fidelity(path, ["fp32", "int8"], image_dir, image_dir, tmp_path / "w", max_images=24,
                                  feeds=_conditioning, progress=False)
    assert results[1].cosine_mean > 0.99 and results[1].failed_images == 0
    lambda_results, _ = measure_fidelity(path, ["int8"], image_dir, image_dir, tmp_path / "w", max_images=24,
                                         feeds=lambda images: _conditioning(images), progress=False)
    assert lambda_results[0].cosine_mean == pytest.approx(results[1].cosine_mean)  # run in-process: same figures


# ---- weights listed as graph inputs --------------------------------------------------------------------------


def test_weights_listed_as_graph_inputs_are_not_fed_and_not_left_as_inputs(tmp_path, image_dir):
    path = initializers_as_inputs(tmp_path / "m")
    prepared = prepare_int8(path, Int8Options(image_dir, max_images=24, fidelity_target="none"), None, tmp_path / "m" / "kept_inputs.int8.onnx")
    assert [i.name for i in _inputs_of(prepared.path)] == ["x"]
    results, _ = measure_fidelity(path, ["fp32", "fp16", "int8"], image_dir, image_dir, tmp_path / "w", max_images=24,
                                  progress=False)
    assert all(r.measured for r in results) and results[2].cosine_mean > 0.99


# ---- external data ------------------------------------------------------------------------------------------


def test_new_weights_in_external_data_are_recalibrated(tmp_path, image_dir):
    """A re-export leaves the .onnx byte-identical and rewrites only the weights file: the cache must not be reused."""
    from trtpipe.onnx.load import onnx_sha256

    folder = tmp_path / "m"
    path = external_weights(folder, version=1)
    onnx_bytes, first_sha = path.read_bytes(), onnx_sha256(path)
    options = Int8Options(image_dir, max_images=24, bias_correction=False, fidelity_target="none")
    prepare_int8(path, options, None, folder / "ext.int8.onnx")
    cache = folder / "ext.int8.calib.json"
    before = cache.read_bytes()
    assert prepare_int8(path, options, None, folder / "ext.int8.onnx").notes[0].startswith("calibration skipped")

    external_weights(folder, version=2)
    assert path.read_bytes() == onnx_bytes and onnx_sha256(path) != first_sha
    again = prepare_int8(path, options, None, folder / "ext.int8.onnx")
    assert again.notes[0].startswith("calibrated")
    assert cache.read_bytes() != before
    ranges_before = json.loads(before)["ranges"]
    ranges_after = json.loads(cache.read_text())["ranges"]
    assert ranges_after["f"] > 5 * ranges_before["f"]  # version 2's activations are about 10x larger


# ---- histograms stay bounded ---------------------------------------------------------------------------------


def test_a_later_batch_far_above_the_first_merges_bins_instead_of_growing_without_limit():
    from trtpipe.quant.calibrate import MAX_BINS, AbsHistogram

    histogram = AbsHistogram()
    rng = np.random.default_rng(0)
    first = rng.random(10_000).astype(np.float32) * 1e-3
    histogram.add(first)
    histogram.add(np.array([1e30, 5.0], np.float32))  # needs 2e36 bins of the first batch's width
    assert len(histogram.counts) <= MAX_BINS + 1
    assert histogram.counts.sum() == 10_002 and histogram.max == pytest.approx(1e30, rel=1e-6)
    assert histogram.width * len(histogram.counts) >= 1e30  # the outlier is inside the histogram, not dropped
    counts, edges = histogram.finalize()
    assert len(counts) <= histogram.num_bins and counts.sum() == 10_002
    for method in ("max", "percentile", "entropy"):
        assert 0 < histogram.amax(method) <= histogram.max


def test_growth_within_the_bound_keeps_the_first_batch_bin_width():
    from trtpipe.quant.calibrate import AbsHistogram

    histogram = AbsHistogram()
    histogram.add(np.linspace(0, 1, 4096, dtype=np.float32))
    width = histogram.width
    histogram.add(np.array([3.0], np.float32))
    assert histogram.width == width and len(histogram.counts) == int(np.ceil(3.0 / width)) + 1


def test_calibrating_an_exploding_activation_stays_small(tmp_path, image_dir):
    """The Exp of a x12 feature: some images give ranges billions of times the first batch's (case R10's kind)."""
    import tracemalloc

    path = exp_gate(tmp_path / "m", gain=12.0)
    tracemalloc.start()
    prepare_int8(path, Int8Options(image_dir, max_images=24, fidelity_target="none"), None, tmp_path / "m" / "exp_gate.int8.onnx")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200e6


# ---- If subgraphs ---------------------------------------------------------------------------------------------


def test_layers_inside_if_subgraphs_are_counted_as_left_in_float(tmp_path, image_dir):
    path = with_if_branch(tmp_path / "m")
    prepared = prepare_int8(path, Int8Options(image_dir, max_images=24, fidelity_target="none"), None, tmp_path / "m" / "branchy.int8.onnx")
    placement = next(n for n in prepared.notes if n.startswith("Q/DQ placement"))
    assert "2/2 Conv/Gemm/MatMul quantized" in placement
    assert "1 more inside If/Loop subgraphs left in float" in placement
    results, _ = measure_fidelity(path, ["fp32", "int8"], image_dir, image_dir, tmp_path / "w", max_images=24,
                                  progress=False)
    assert results[1].cosine_mean > 0.99

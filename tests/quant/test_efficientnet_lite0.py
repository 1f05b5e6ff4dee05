"""INT8 and FP16 on a real model: EfficientNet-Lite0 (real weights) calibrated, placed, checked, built."""

from __future__ import annotations

import pytest

from trtpipe.spec import BuildConfig


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    pytest.importorskip("skimage")
    from trtpipe.quant.calib_data import make_calib_data

    return make_calib_data(tmp_path_factory.mktemp("calib") / "calib_data", count=40, seed=0).folder


def test_efficientnet_lite0_int8_qdq_placement_and_tensorrt_rtx_build(zoo_onnx, calib_dir, tmp_path, rtx_build):
    import onnx

    from trtpipe.quant.prepare import prepare_precision_onnx
    from trtpipe.quant.qdq import count_qdq

    onnx_path = zoo_onnx("efficientnet_lite0")
    # placement of every layer: no fidelity search (tests/perf/bench_fidelity.py measures the default path)
    config = BuildConfig(precision="int8", calib_images=str(calib_dir), calib_max_images=40, fidelity_target="none")
    prepared = prepare_precision_onnx(onnx_path, config, None, tmp_path)
    counts = count_qdq(onnx.load(str(prepared.path)))
    assert (counts.quantized_layers, counts.total_layers, counts.dangling) == (50, 50, ())
    assert counts.quantize_nodes == 50  # one Q per activation; residual adds share their input's pair
    assert "50/50" in prepared.precision_realised
    assert rtx_build(prepared.path, (1, 3, 224, 224)) > 0


def test_efficientnet_lite0_fp16_builds(zoo_onnx, tmp_path, rtx_build):
    from trtpipe.quant.prepare import prepare_precision_onnx

    prepared = prepare_precision_onnx(zoo_onnx("efficientnet_lite0"), BuildConfig(precision="fp16"), None, tmp_path)
    assert rtx_build(prepared.path, (1, 3, 224, 224)) > 0


@pytest.mark.slow
def test_efficientnet_lite0_bias_correction_and_kept_layers_raise_fidelity(zoo_onnx, tmp_path_factory):
    """The recommended INT8 (percentile, bias correction, auto-keep) beats plain INT8 on held-out crops."""
    pytest.importorskip("skimage")
    from trtpipe.quant.calib_data import make_calib_data
    from trtpipe.quant.fidelity import measure_fidelity

    root = tmp_path_factory.mktemp("fidelity")
    calib = make_calib_data(root / "calib", count=96, seed=0).folder
    evaluation = make_calib_data(root / "eval", count=48, seed=1).folder
    onnx_path = zoo_onnx("efficientnet_lite0")

    def cosine(**options):
        results, overlap = measure_fidelity(
            onnx_path, ["int8"], evaluation, calib, root, method="percentile", fidelity_target="none", **options
        )
        assert overlap == 0
        return results[0].cosine_mean

    plain = cosine(bias_correction=False)
    corrected = cosine(bias_correction=True)
    kept = cosine(bias_correction=True, auto_keep=8)
    assert plain < corrected < kept
    assert kept >= 0.995

"""The builder's INT8/FP16 hook: files written, cache reuse and invalidation, mixed precision, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trtpipe.errors import ConfigError, InputError
from trtpipe.quant.prepare import prepare_precision_onnx
from trtpipe.spec import BuildConfig, PreprocessSpec


def _int8(images, **changes):
    """INT8 on the 24-image folder: too few to hold back a fidelity check's images (tests/quant/test_search.py)."""
    changes.setdefault("fidelity_target", "none")
    return BuildConfig(precision="int8", calib_images=str(images), calib_max_images=64, **changes)


def test_int8_writes_qdq_onnx_and_cache_then_reuses_it(tiny_onnx, image_dir, tmp_path):
    work = tmp_path / "engines"
    first = prepare_precision_onnx(tiny_onnx, _int8(image_dir), None, work)
    assert first.path == work / "tiny.int8.onnx" and first.path.is_file()
    assert (work / "tiny.int8.calib.json").is_file()
    assert "percentile" in first.precision_realised and "4/4" in first.precision_realised
    assert first.notes[0].startswith("calibrated 4 activations on 24 images")
    second = prepare_precision_onnx(tiny_onnx, _int8(image_dir), None, work)
    assert second.notes[0].startswith("calibration skipped")
    assert second.calibration_cache_sha256 == first.calibration_cache_sha256


@pytest.mark.parametrize("change", ["method", "images", "model"])
def test_cache_is_invalidated_when_its_key_changes(tiny_onnx, image_dir, tmp_path, change, make_tiny_model):
    import cv2
    import numpy as np
    import onnx

    work = tmp_path / "engines"
    prepare_precision_onnx(tiny_onnx, _int8(image_dir), None, work)
    config = _int8(image_dir)
    if change == "method":
        config = _int8(image_dir, calib_method="entropy")
    elif change == "images":
        cv2.imwrite(str(image_dir / "new.jpg"), np.full((40, 40, 3), 90, np.uint8))
    else:
        onnx.save(make_tiny_model(seed=5), str(tiny_onnx))  # re-exported: same name, new weights
    again = prepare_precision_onnx(tiny_onnx, config, None, work)
    assert again.notes[0].startswith("calibrated")


def test_cache_of_another_model_is_refused(tmp_path, image_dir, tiny_onnx):
    from trtpipe.quant.prepare import Int8Options, prepare_int8

    work = tmp_path / "engines"
    prepare_precision_onnx(tiny_onnx, _int8(image_dir), None, work)
    other = tiny_onnx.with_name("other.onnx")
    import onnx

    model = onnx.load(str(tiny_onnx))
    model.graph.name = "other"
    onnx.save(model, str(other))
    PreprocessSpec(model="other", height=32, width=32).save(other.with_name("other.preprocess.json"))
    with pytest.raises(InputError, match="was made for model 'tiny'"):
        options = Int8Options(image_dir, cache=work / "tiny.int8.calib.json", fidelity_target="none")
        prepare_int8(other, options, None, work / "other.int8.onnx")
    assert not (work / "other.int8.onnx").exists()


def test_keep_fp_and_auto_keep_are_reported(tiny_onnx, image_dir, tmp_path):
    work = tmp_path / "engines"
    kept = prepare_precision_onnx(tiny_onnx, _int8(image_dir, keep_fp=("fc",), auto_keep=1), None, work)
    note = next(n for n in kept.notes if n.startswith("kept in floating point"))
    assert "fc" in note and "(2, FP16)" in note
    cache = json.loads((work / "tiny.int8.calib.json").read_text())
    assert cache["sensitivity"]["bias_corrected"] is True
    assert [entry["name"] for entry in cache["sensitivity"]["layers"]][0] in note
    assert "2/4" in kept.precision_realised or "3/4" in kept.precision_realised


def test_bias_correction_is_on_by_default_cached_and_can_be_switched_off(tiny_onnx, image_dir, tmp_path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from trtpipe.quant.prepare import Int8Options, prepare_int8

    def biases(path):
        model = onnx.load(str(path))
        by_name = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
        return {node.name: by_name[node.input[2]] for node in model.graph.node if node.op_type in ("Conv", "Gemm")}

    work = tmp_path / "engines"
    first = prepare_int8(tiny_onnx, Int8Options(image_dir, max_images=64, fidelity_target="none"), None, work / "a.int8.onnx")
    assert "bias-corrected" in first.precision_realised
    assert any(n.startswith("bias correction: ") and "24 calibration images" in n for n in first.notes)
    cache = json.loads((work / "tiny.int8.calib.json").read_text())
    assert set(cache["bias_correction"]["shifts"]) == {"stem_conv", "block_conv_a", "block_conv_b", "fc"}
    mtime = (work / "tiny.int8.calib.json").stat().st_mtime_ns
    again = prepare_int8(tiny_onnx, Int8Options(image_dir, max_images=64, fidelity_target="none"), None, work / "b.int8.onnx")
    assert again.notes[0].startswith("calibration skipped")
    assert (work / "tiny.int8.calib.json").stat().st_mtime_ns == mtime  # shifts reused, nothing rewritten
    options = Int8Options(image_dir, max_images=64, bias_correction=False, fidelity_target="none")
    off = prepare_int8(tiny_onnx, options, None, work / "c.int8.onnx")
    assert "bias" not in off.precision_realised and not any(n.startswith("bias correction") for n in off.notes)
    trained = biases(tiny_onnx)
    for name, values in biases(work / "c.int8.onnx").items():
        np.testing.assert_array_equal(values, trained[name])
    shifted = biases(work / "a.int8.onnx")
    for name, shift in cache["bias_correction"]["shifts"].items():
        np.testing.assert_allclose(shifted[name], trained[name] - np.asarray(shift, np.float32), rtol=1e-6, atol=1e-7)


def test_unknown_keep_fp_name_suggests_the_close_one(tiny_onnx, image_dir, tmp_path):
    with pytest.raises(ConfigError, match="did you mean fc"):
        prepare_precision_onnx(tiny_onnx, _int8(image_dir, keep_fp=("fcc",)), None, tmp_path)


def test_fp16_hook_writes_fp16_onnx(tiny_onnx, tmp_path):
    prepared = prepare_precision_onnx(tiny_onnx, BuildConfig(precision="fp16"), None, tmp_path)
    assert prepared.path == tmp_path / "tiny.fp16.onnx" and prepared.path.is_file()
    assert prepared.calibration_cache_sha256 is None and "FP16" in prepared.precision_realised


def test_int8_without_images_says_how_to_get_some(tiny_onnx, tmp_path):
    with pytest.raises(ConfigError, match="make calib-data fills it"):
        prepare_precision_onnx(tiny_onnx, BuildConfig(precision="int8"), None, tmp_path)


def test_missing_preprocess_spec(tiny_onnx, image_dir, tmp_path):
    tiny_onnx.with_name("tiny.preprocess.json").unlink()
    with pytest.raises(InputError, match="no preprocess spec.*Hint: export with"):
        prepare_precision_onnx(tiny_onnx, _int8(image_dir), None, tmp_path)


@pytest.mark.parametrize("case", ["missing", "empty", "unreadable", "too_few"])
def test_bad_image_folders_fail_cleanly_and_write_nothing(tiny_onnx, tmp_path, case):
    folder = tmp_path / "calib"
    if case != "missing":
        folder.mkdir()
    if case == "unreadable":
        (folder / "broken.jpg").write_bytes(b"not a jpeg")
    if case == "too_few":  # calibration runs batches of 8: three images cannot fill one
        import cv2
        import numpy as np

        for index in range(3):
            cv2.imwrite(str(folder / f"{index}.png"), np.full((40, 40, 3), 30 * index, np.uint8))
    work = tmp_path / "engines"
    with pytest.raises(InputError, match="Hint:"):
        prepare_precision_onnx(tiny_onnx, _int8(folder), None, work)
    assert not list(work.glob("*")) if work.exists() else True

"""INT8 meets a fidelity target by default: held-back images, the search for kept layers, caching, failure."""

from __future__ import annotations

import json

import pytest

from trtpipe.errors import ConfigError
from trtpipe.quant.prepare import Int8Options, prepare_int8
from trtpipe.quant.search import FidelityTargetError, cap_for, search_kept_layers
from trtpipe.spec import BuildConfig, FidelityTarget, resolve_fidelity_target

# --------------------------------------------------------------------------------------------
# The target
# --------------------------------------------------------------------------------------------


def test_target_text_parses_round_trips_and_defaults_by_task():
    target = FidelityTarget.parse("cosine=0.999, top1>=0.95")
    assert target.bounds == {"cosine": 0.999, "top1": 0.95}
    assert FidelityTarget.parse(str(target)) == target
    assert target.describe() == "cosine >= 0.999 and top-1 agreement >= 0.95"
    assert resolve_fidelity_target("none") is None
    assert resolve_fidelity_target("auto", "classification").bounds == {"cosine": 0.999, "top1_confident": 0.99}
    assert resolve_fidelity_target("auto", "segmentation").bounds == {"miou": 0.95}
    assert resolve_fidelity_target("auto", "detection").bounds == {"f1": 0.95}


@pytest.mark.parametrize(
    "changes, fragment",
    [
        (dict(fidelity_target="accuracy=0.9"), "'accuracy=0.9' is not METRIC>=VALUE"),
        (dict(fidelity_target="cosine=1.5"), "expected a value in (0, 1]"),
        (dict(keep_precision="int8"), "keep precision is 'int8'"),
        (dict(max_fp_share=1.5), "--max-fp-share is 1.5"),
    ],
)
def test_bad_int8_options_are_rejected_when_the_config_is_built(changes, fragment):
    with pytest.raises(ConfigError, match="Hint:") as error:
        BuildConfig(precision="int8", calib_images="d", **changes)
    assert fragment in str(error.value)


def test_percentile_is_the_default_calibration_method():
    assert BuildConfig().calib_method == "percentile"


# --------------------------------------------------------------------------------------------
# The search, on a model of known harms
# --------------------------------------------------------------------------------------------


def _measure_with_harms(harms: dict[str, float]):
    """A network whose cosine shortfall is the sum of the harms of the layers left in INT8."""
    calls = []

    def measure(kept):
        calls.append(kept)
        shortfall = sum(harm for name, harm in harms.items() if name not in kept)
        return {"cosine_mean": 1.0 - shortfall, "top1_agreement": None, "top1_agreement_confident": None}

    return measure, calls


def test_search_keeps_the_worst_layers_until_the_target_is_met_and_skips_layers_that_do_not_help():
    harms = {"a": 0.004, "b": 0.0, "c": 0.002, "d": 0.0005, "e": 0.0001}
    measure, calls = _measure_with_harms(harms)
    ranking = ["a", "b", "c", "d", "e"]  # b ranks high alone but does not matter in the whole network
    kept, figures, steps = search_kept_layers(FidelityTarget(cosine=0.999), lambda: ranking, measure, (), cap=3)
    assert kept == ("a", "c")
    assert figures["cosine_mean"] == pytest.approx(1 - 0.0006)
    assert [(s.layer, s.kept) for s in steps] == [(None, True), ("a", True), ("b", False), ("c", True)]
    assert calls[0] == ()  # measured with everything INT8 first


def test_search_stops_at_the_cap_and_reports_the_miss():
    measure, _ = _measure_with_harms({"a": 0.01, "b": 0.01, "c": 0.01})
    kept, figures, _ = search_kept_layers(FidelityTarget(cosine=0.999), lambda: ["a", "b", "c"], measure, ("c",), cap=1)
    assert kept == ("c", "a")  # the forced layer does not count against the cap
    assert figures["cosine_mean"] == pytest.approx(0.99)


def test_search_does_not_rank_when_the_start_meets_the_target():
    measure, calls = _measure_with_harms({"a": 0.0001})

    def ranking():
        raise AssertionError("ranked although nothing was needed")

    kept, _, steps = search_kept_layers(FidelityTarget(cosine=0.999), ranking, measure, (), cap=4)
    assert kept == () and len(steps) == 1 and calls == [()]


def test_cap_allows_a_small_model_one_layer():
    assert cap_for(59, 0.25) == 15 and cap_for(3, 0.25) == 1 and cap_for(8, 0.25) == 2 and cap_for(10, 0) == 0


# --------------------------------------------------------------------------------------------
# prepare_int8 end to end (tiny model, 40 images: 30 calibrate, 10 held back)
# --------------------------------------------------------------------------------------------


def _cache(work):
    return json.loads((work / "tiny.int8.calib.json").read_text())


def test_default_int8_holds_back_a_quarter_checks_the_target_and_records_it(tiny_onnx, images40, tmp_path):
    from trtpipe.onnx.load import load_onnx
    from trtpipe.quant.calibrate import collect_histograms
    from trtpipe.quant.images import load_images
    from trtpipe.quant.qdq import plan_qdq
    from trtpipe.spec import PreprocessSpec

    work = tmp_path / "engines"
    prepared = prepare_int8(tiny_onnx, Int8Options(images40), None, work / "tiny.int8.onnx")
    fidelity = prepared.fidelity
    assert fidelity["target"] == "cosine>=0.999,top1_confident>=0.99" and fidelity["met"] is True
    assert (fidelity["held_back_images"], fidelity["calibration_images"]) == (10, 30)
    assert fidelity["figures"]["cosine_mean"] >= 0.999
    assert prepared.summary.startswith("INT8 fidelity on 10 held-back images: cosine ")
    assert "calibrated 4 activations on 30 images (percentile)" in prepared.notes[0]
    assert "10 more held back for the fidelity check" in prepared.notes[0]
    # the ranges come from the 30 calibration images only: the held-back ten never touch them
    spec = PreprocessSpec.load(tiny_onnx.with_name("tiny.preprocess.json"))
    images = load_images(images40, spec, 256, progress=False)
    calibrate_on, held = images.split(0.25)
    assert len(held) == 10 and not set(calibrate_on) & set(held)
    model = load_onnx(tiny_onnx, check=False)
    plan = plan_qdq(model)
    expected = collect_histograms(model, plan.activations, images.batches(8, calibrate_on)).ranges("percentile")
    assert _cache(work)["ranges"] == pytest.approx(expected)
    assert _cache(work)["held_back"] == {"share": 0.25, "images": 10}


def test_a_target_the_int8_model_misses_keeps_layers_in_fp16_most_harmful_first(tiny_onnx, images40, tmp_path):
    import onnx

    work = tmp_path / "engines"
    # all-INT8 gives cosine ~0.99999 here, keeping the most harmful layer ~0.9999997: a target between them
    options = Int8Options(images40, fidelity_target="cosine=0.999995", max_fp_share=0.5)
    prepared = prepare_int8(tiny_onnx, options, None, work / "tiny.int8.onnx")
    fidelity = prepared.fidelity
    assert fidelity["met"] is True and 1 <= len(fidelity["kept"]) <= 3
    assert fidelity["steps"][0]["layer"] is None and fidelity["steps"][0]["cosine_mean"] < 0.999995
    ranking = [entry["name"] for entry in _cache(work)["sensitivity"]["layers"]]
    tried = [step["layer"] for step in fidelity["steps"][1:]]
    assert tried == ranking[: len(tried)]  # in the ranking's order
    assert fidelity["keep_precision"] == "fp16"
    model = onnx.load(str(prepared.path))
    initializers = {init.name: init.data_type for init in model.graph.initializer}
    for node in model.graph.node:
        if node.name in fidelity["kept"] and node.op_type in ("Conv", "Gemm"):
            assert node.input[0].endswith("_fp16") and initializers[node.input[1]] == onnx.TensorProto.FLOAT16
    assert f"{len(fidelity['kept'])}/5 layers kept in FP16" in prepared.summary


def test_a_rebuild_with_nothing_changed_recomputes_and_rewrites_nothing(tiny_onnx, images40, tmp_path):
    work = tmp_path / "engines"
    options = Int8Options(images40, fidelity_target="cosine=0.99999", max_fp_share=0.5)
    first = prepare_int8(tiny_onnx, options, None, work / "tiny.int8.onnx")
    stamps = {p.name: p.stat().st_mtime_ns for p in work.iterdir()}
    again = prepare_int8(tiny_onnx, options, None, work / "tiny.int8.onnx")
    assert {p.name: p.stat().st_mtime_ns for p in work.iterdir()} == stamps
    assert again.notes[0].startswith("calibration skipped") and "reused from the calibration cache" in again.summary
    assert again.fidelity["kept"] == first.fidelity["kept"] and again.fidelity["figures"] == first.fidelity["figures"]
    other = prepare_int8(tiny_onnx, Int8Options(images40, fidelity_target="cosine=0.99"), None, work / "tiny.int8.onnx")
    assert other.fidelity["target"] == "cosine>=0.99" and other.notes[0].startswith("calibration skipped")


def test_an_unreachable_target_is_a_clean_error_that_writes_no_onnx(tiny_onnx, images40, tmp_path):
    work = tmp_path / "engines"
    options = Int8Options(images40, fidelity_target="cosine=1.0", max_fp_share=0.0)
    with pytest.raises(FidelityTargetError, match=r"misses the fidelity target cosine>=1.*Hint: allow more kept"):
        prepare_int8(tiny_onnx, options, None, work / "tiny.int8.onnx")
    assert not (work / "tiny.int8.onnx").exists()
    assert _cache(work)["fidelity_search"]["result"]["met"] is False  # a retry with other options starts from here


def test_fidelity_target_none_calibrates_on_every_image_and_says_unchecked(tiny_onnx, image_dir, tmp_path):
    work = tmp_path / "engines"
    prepared = prepare_int8(tiny_onnx, Int8Options(image_dir, fidelity_target="none"), None, work / "tiny.int8.onnx")
    assert prepared.notes[0].startswith("calibrated 4 activations on 24 images")
    assert prepared.fidelity["target"] is None and prepared.fidelity["held_back_images"] == 0
    assert any("INT8 fidelity unchecked (--fidelity-target none)" in note for note in prepared.notes)


def test_too_few_images_to_hold_back_is_a_clean_error(tiny_onnx, image_dir, tmp_path):
    with pytest.raises(ConfigError, match="24 usable images leave 6 to hold back.*Hint: give at least 32 images"):
        prepare_int8(tiny_onnx, Int8Options(image_dir), None, tmp_path / "tiny.int8.onnx")
    assert not (tmp_path / "tiny.int8.onnx").exists()


def test_random_weights_are_measured_but_neither_searched_nor_enforced(tiny_onnx, images40, tmp_path):
    from trtpipe.spec import PreprocessSpec

    spec_path = tiny_onnx.with_name("tiny.preprocess.json")
    PreprocessSpec.load(spec_path).replace(weights="random").save(spec_path)
    options = Int8Options(images40, fidelity_target="cosine=1.0")
    prepared = prepare_int8(tiny_onnx, options, None, tmp_path / "tiny.int8.onnx")
    assert prepared.fidelity["enforced"] is False and prepared.fidelity["met"] is False
    assert prepared.fidelity["kept"] == [] and len(prepared.fidelity["steps"]) == 1
    assert "NOT met, not enforced: random weights" in prepared.summary
    assert any("RANDOM WEIGHTS" in note for note in prepared.notes)


def test_kept_fp16_layers_build_strongly_typed_with_tensorrt_rtx(tiny_onnx, images40, tmp_path, rtx_build):
    options = Int8Options(images40, fidelity_target="none", keep_fp=("block_conv_a", "residual_add"))
    prepared = prepare_int8(tiny_onnx, options, None, tmp_path / "tiny.int8.onnx")
    assert "2 layers FP16" in prepared.precision_realised
    assert rtx_build(prepared.path, (2, 3, 32, 32)) > 0


# --------------------------------------------------------------------------------------------
# The CLI: one closing line, the sidecar, exit 2
# --------------------------------------------------------------------------------------------


def test_build_int8_ends_with_one_line_naming_the_fidelity_and_records_it_in_the_sidecar(
    tiny_onnx, images40, tmp_path, capsys
):
    pytest.importorskip("tensorrt_rtx")
    from trtpipe.cli.main import main

    engine = tmp_path / "tiny_int8.engine"
    args = ["build", str(tiny_onnx), "--precision", "int8", "--images", str(images40), "-o", str(engine)]
    assert main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"built {engine} (int8") and "; INT8 fidelity on 10 held-back images: cosine" in last
    assert "target cosine>=0.999,top1_confident>=0.99 met" in last and "calibration + check" in last
    sidecar = json.loads(engine.with_name(engine.name + ".json").read_text())
    assert sidecar["fidelity"]["target"] == "cosine>=0.999,top1_confident>=0.99"
    assert sidecar["fidelity"]["held_back_images"] == 10 and sidecar["fidelity"]["calibration_images"] == 30
    assert sidecar["build_config"]["fidelity_target"] == "auto"
    assert main(args) == 0
    assert "is up to date" in capsys.readouterr().out


def test_build_with_an_unreachable_target_exits_2_with_a_hint_and_no_engine(tiny_onnx, images40, tmp_path, capsys):
    pytest.importorskip("tensorrt_rtx")
    from trtpipe.cli.main import main

    engine = tmp_path / "out" / "tiny_int8.engine"
    code = main(["build", str(tiny_onnx), "--precision", "int8", "--images", str(images40), "-o", str(engine),
                 "--fidelity-target", "cosine=1.0", "--max-fp-share", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "misses the fidelity target" in err and "Hint:" in err and "Traceback" not in err
    assert not engine.exists() and not (tmp_path / "out" / "tiny.int8.onnx").exists()


"""Calibration and fidelity of models that came quantized, and of what ONNX Runtime cannot run (issue 19).

Calibration never quantizes a model twice: it refuses, saying so and naming the Q/DQ nodes, before any work and
leaving nothing behind. Fidelity measures a quantized model as it is; what TensorRT cannot build is refused by both
as the build refuses it.
"""

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T

from tests.quant.conftest import write_images
from tests.quantized_models import fp8_model, int4_block_model, int8_qat_model, plain_model
from trtpipe.errors import OnnxModelError
from trtpipe.quant.fidelity import measure_fidelity, summary_line
from trtpipe.quant.prepare import Int8Options, prepare_int8


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("images"), 24)


@pytest.mark.parametrize("make, precision, nodes", [
    (lambda d: fp8_model(d), "fp8 (E4M3) weights and activations", "x_q, x_dq, w_dq"),
    (lambda d: int8_qat_model(d), "int8 as quantized in the ONNX", "x_q, x_dq, w_q, w_dq"),
    (lambda d: int4_block_model(d), "int4 weights, fp32 activations", "w_dq"),
])
def test_calibration_refuses_a_quantized_model_and_writes_nothing(tmp_path, images, make, precision, nodes):
    source = make(tmp_path / "m")
    before = sorted(p.name for p in source.parent.iterdir())
    with pytest.raises(OnnxModelError) as caught:
        prepare_int8(source, Int8Options(images, max_images=16), None, source.parent / "out.int8.onnx")
    message = str(caught.value)
    assert f"is already quantized ({precision}: Q/DQ nodes {nodes})" in message
    assert "trtpipe bug" not in message and "Hint: build it as it is" in message
    assert sorted(p.name for p in source.parent.iterdir()) == before  # no cache, no Q/DQ ONNX


def test_calibration_and_fidelity_refuse_an_asymmetric_model_as_the_build_does(tmp_path, images):
    """The uint8 zero point 128 of quantize_static's default: fidelity used to report cosine 1.0 for it."""
    source = int8_qat_model(tmp_path / "m", zero_point=128, dtype=T.UINT8)
    with pytest.raises(OnnxModelError, match="'x_q' .*zero point 128.*calibration refuses"):
        prepare_int8(source, Int8Options(images, max_images=16), None, tmp_path / "m" / "o.int8.onnx")
    with pytest.raises(OnnxModelError, match="'x_q' .*zero point 128.*fidelity refuses"):
        measure_fidelity(source, ("fp32", "fp16"), images, None, tmp_path / "w")
    assert not (tmp_path / "w").exists() or not list((tmp_path / "w").iterdir())


def test_fidelity_measures_a_quantized_model_as_it_is(tmp_path, images):
    source = fp8_model(tmp_path / "m")
    results, _ = measure_fidelity(source, ("fp32", "fp16", "int8"), images, images, tmp_path / "w", max_images=16,
                                  eval_images=8)
    by = {r.precision: r for r in results}
    assert by["fp32"].note.startswith("the reference: the model as given, fp8 (E4M3) weights and activations")
    assert by["fp16"].measured and by["fp16"].cosine_mean > 0.99  # the float parts around its Q/DQ, in FP16
    assert not by["int8"].measured and "is already quantized" in by["int8"].note
    assert "vs the model as given" in summary_line(results, 1.0)
    assert not list((tmp_path / "w").glob("*.calib.json"))


def test_a_bfloat16_matmul_is_named_as_what_onnx_runtime_cannot_run(tmp_path, images):
    """R29's kind: the calibration rewrite keeps the bf16 tensor's type, so ONNX Runtime's own limit is what is said."""
    source = plain_model(tmp_path / "m", "bf", bf16=True)
    with pytest.raises(OnnxModelError) as caught:
        prepare_int8(source, Int8Options(images, max_images=16, fidelity_target="none"), None, tmp_path / "m" / "bf.int8.onnx")
    message = str(caught.value)
    assert "no bfloat16 kernel for MatMul 'fc'" in message and "does not match expected type" not in message
    assert "TensorRT builds bfloat16 layers" in message.split("Hint:")[1]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["bf.onnx", "bf.preprocess.json"]


def test_a_bfloat16_layer_is_not_planned_for_int8(tmp_path):
    from trtpipe.quant.qdq import plan_qdq

    model = onnx.load(str(plain_model(tmp_path, "bf", bf16=True)))
    assert plan_qdq(model).names == ("conv0",)  # not fc, whose input is bfloat16


@pytest.mark.parametrize("run", ["calibration", "fidelity"])
def test_an_ir_version_onnx_cannot_read_is_refused_naming_it(tmp_path, images, run):
    source = plain_model(tmp_path / "m", "ir", ir=onnx.IR_VERSION + 1)
    with pytest.raises(OnnxModelError, match=f"IR version {onnx.IR_VERSION + 1}, newer than the installed onnx"):
        if run == "calibration":
            prepare_int8(source, Int8Options(images, max_images=16), None, tmp_path / "m" / "ir.int8.onnx")
        else:
            measure_fidelity(source, ("fp32",), images, None, tmp_path / "w")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["ir.onnx", "ir.preprocess.json"]


def test_an_onnx_runtime_engine_refuses_ir_and_empty_batch_axes_naming_them(tmp_path):
    from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine

    with pytest.raises(OnnxModelError, match=f"IR version {onnx.IR_VERSION + 1}.*running it in ONNX Runtime"):
        OnnxRuntimeEngine(plain_model(tmp_path, "ir", ir=onnx.IR_VERSION + 1))
    with pytest.raises(OnnxModelError, match="input 'x' has shape .*batch axis has fixed size 0"):
        OnnxRuntimeEngine(plain_model(tmp_path, "b0", batch=0))
    with OnnxRuntimeEngine(plain_model(tmp_path, "out3", outputs_listed=3)) as engine:
        assert [t.name for t in engine.outputs] == ["logits"]
        assert engine.infer({"x": np.zeros((1, 3, 32, 32), np.float32)})["logits"].shape == (1, 10)


def test_the_calibrate_verb_exits_2_saying_already_quantized_and_leaves_nothing(tmp_path, images, capsys):
    """R23/R24 as a user runs them: one line, a Hint, no traceback, no cache and no -o file."""
    from trtpipe.cli.main import main

    source = fp8_model(tmp_path / "m")
    code = main(["calibrate", str(source), "--images", str(images), "--max-images", "16",
                 "-o", str(tmp_path / "m" / "cal.int8.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "is already quantized (fp8 (E4M3) weights and activations" in err and "Hint:" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["fp8.onnx", "fp8.preprocess.json"]


def test_a_plugin_node_is_refused_where_onnx_runtime_must_run_the_model(tmp_path, images):
    """R26's kind in calibration, fidelity and the ONNX Runtime backend: named, before any work."""
    from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine

    source = plain_model(tmp_path / "m", "plug", plugin=True)
    said = re.escape("node 'nms' is BatchedNMSDynamic_TRT (domain 'TRT'), a TensorRT plugin op, which ONNX Runtime")
    with pytest.raises(OnnxModelError, match=said + ".*calibration runs"):
        prepare_int8(source, Int8Options(images, max_images=16), None, tmp_path / "m" / "plug.int8.onnx")
    with pytest.raises(OnnxModelError, match=said + ".*fidelity runs"):
        measure_fidelity(source, ("fp32", "fp16"), images, None, tmp_path / "w")
    with pytest.raises(OnnxModelError, match=said):
        OnnxRuntimeEngine(source)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["plug.onnx", "plug.preprocess.json"]


def test_a_calibrate_refused_after_calibrating_leaves_no_cache_nor_qdq_onnx(tmp_path, images, capsys, monkeypatch):
    """Requirement 4: the cache is written as soon as the ranges exist; a later refusal takes it away again."""
    from tests.quant.conftest import write_model
    from trtpipe.cli.main import main
    import trtpipe.quant.prepare as prepare

    source = write_model(tmp_path / "m")

    def placement_fails(*args, **kwargs):
        raise OnnxModelError("tiny.int8.onnx: the Q/DQ placement failed", "stand-in for a late refusal")

    monkeypatch.setattr(prepare, "build_qdq_model", placement_fails)
    code = main(["calibrate", str(source), "--images", str(images), "--max-images", "16", "--fidelity-target", "none"])
    assert code == 2 and "the Q/DQ placement failed" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["tiny.onnx", "tiny.preprocess.json"]

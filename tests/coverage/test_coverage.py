"""Coverage (issue 6): the zoo lists every network of the list; a fast subset goes through every stage.

The full sweep (``make coverage``) is the ``slow`` test at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from trtpipe.coverage.catalog import ALL, CLASSIFICATION, DETECTION, QUICK, SEGMENTATION, load_sources
from trtpipe.coverage.sweep import CoverageRow
from trtpipe.zoo.registry import get_model

ISSUE_KEYS = ["name", "task", "source", "exported", "ort_parity_max_abs", "trt_parser_ok", "rtx_build_ok",
              "build_seconds", "int8_qdq_ok", "weights", "notes"]


@pytest.fixture(scope="module", autouse=True)
def coverage_sources():
    load_sources()


def test_every_listed_network_is_in_the_zoo_with_its_task():
    for names, task in ((CLASSIFICATION, "classification"), (DETECTION, "detection"), (SEGMENTATION, "segmentation")):
        for name in names:
            entry = get_model(name)
            assert entry.task == task, name
            assert entry.source, name
    assert len(set(ALL)) == len(ALL) == 53


def test_registering_the_coverage_sources_imports_no_torch():
    code = "import sys; from trtpipe.coverage.catalog import load_sources; load_sources(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_unavailable_models_say_why_and_refuse_to_export():
    from trtpipe.errors import DependencyError

    entry = get_model("moganet")
    assert entry.source == "no source installable here"
    assert entry.weights_status() == "no source installable here"
    with pytest.raises(DependencyError, match="no source installable here"):
        entry.create("random")


def test_timm_catalog_preprocessing_matches_timm_pretrained_config():
    from timm.models import get_pretrained_cfg

    from trtpipe.zoo.sources.timm_catalog import CLASSIFIERS

    for model in CLASSIFIERS:
        cfg = get_pretrained_cfg(model.tag)
        assert cfg is not None, model.tag
        assert (model.size, model.size) == tuple(cfg.input_size[1:]), model.name
        assert model.crop_fraction == pytest.approx(cfg.crop_pct), model.name
        assert model.interpolation == cfg.interpolation, model.name
        assert model.mean == pytest.approx(cfg.mean) and model.std == pytest.approx(cfg.std), model.name
        assert cfg.num_classes == 1000, model.name


def test_surgery_turns_float64_into_float32_and_folds_constants():
    from trtpipe.onnx.surgery import apply_surgery

    shape = helper.make_node("Shape", ["x"], ["s"])
    cast = helper.make_node("Cast", ["x"], ["x64"], to=TensorProto.DOUBLE)
    back = helper.make_node("Cast", ["x64"], ["y"], to=TensorProto.FLOAT)
    graph = helper.make_graph(
        [shape, cast, back], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]),
         helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten, applied = apply_surgery(model)
    onnx.checker.check_model(rewritten)
    assert any(a.startswith("float64_to_float32") for a in applied)
    assert not any(n.op_type == "Cast" and n.attribute[0].i == TensorProto.DOUBLE for n in rewritten.graph.node)
    assert not any(n.op_type == "Shape" for n in rewritten.graph.node)  # static shape folded


def test_detectors_name_their_head_in_the_spec_and_every_named_head_exists():
    from trtpipe.pipeline.heads import known_heads
    from trtpipe.zoo.registry import list_models

    sigmoid_detrs = ("conditional_detr", "dab_detr", "deformable_detr", "rt_detr", "rfdetr_nano", "grounding_dino")
    assert [get_model(name).preprocess.head for name in sigmoid_detrs] == ["detr_sigmoid"] * len(sigmoid_detrs)
    assert get_model("detr_resnet50").preprocess.head is None  # softmax with "no object": the detection default
    assert {entry.preprocess.head for entry in list_models()} - {None} <= set(known_heads())


def test_int8_stage_uses_the_build_hook_and_calibrates_a_dynamic_batch_on_a_full_batch(tiny_onnx, tmp_path):
    from trtpipe.coverage.int8 import qdq_onnx_for_coverage
    from trtpipe.coverage.sweep import PHOTOS
    from trtpipe.spec import PreprocessSpec

    path = tiny_onnx(name="tiny.onnx")  # Conv -> Relu, batch axis "N"
    spec = PreprocessSpec(model="tiny", height=32, width=32)
    outcome = qdq_onnx_for_coverage(path, spec, PHOTOS)
    assert outcome.ok, outcome.summary
    assert "1/1 Conv/Gemm/MatMul quantized" in outcome.summary and "(8 photos)" in outcome.summary
    assert "ONNX Runtime ran it" in outcome.summary and "TensorRT-RTX built it" in outcome.summary
    assert (path.parent / "tiny.int8.onnx").is_file() and (path.parent / "tiny.int8.calib.json").is_file()


def test_report_has_exactly_the_issue_keys(tmp_path):
    from trtpipe.coverage.report import write_reports

    rows = [CoverageRow("a", "classification", "timm", True, 1e-6, True, True, 0.5, True, "random", ["ok"]),
            CoverageRow("b", "detection", "no source installable here", notes=["why"])]
    json_path, md_path = write_reports(rows, tmp_path)
    data = json.loads(json_path.read_text())
    assert [list(item) for item in data] == [ISSUE_KEYS, ISSUE_KEYS]
    assert "| a | classification | timm | yes |" in md_path.read_text()


def test_coverage_models_export_through_the_zoo_exporter(tmp_path):
    from trtpipe.zoo.export import export_model

    result = export_model("mobileone_s0", tmp_path / "m.onnx", weights="auto")
    assert result.spec.weights == "random" and result.spec.source == "timm"


@pytest.mark.parametrize("name", QUICK[1:])  # yolov8n, pspnet_mobilenetv2: detection and segmentation
def test_quick_subset_goes_through_every_stage(name, tmp_path):
    from trtpipe.coverage.sweep import cover_model

    row = cover_model(name, tmp_path, int8=name == "yolov8n")
    assert row.exported and row.trt_parser_ok and row.rtx_build_ok, row.notes
    assert row.weights == "random"
    assert row.ort_parity_max_abs is not None and row.ort_parity_max_abs < 1e-2
    assert any(n.startswith("pipeline (onnxruntime") for n in row.notes), row.notes
    assert list(row.to_dict()) == ISSUE_KEYS


@pytest.mark.slow
def test_full_sweep_meets_the_issue_figures(tmp_path):
    from trtpipe.coverage.report import write_reports
    from trtpipe.coverage.sweep import run_sweep

    rows = run_sweep(ALL, tmp_path / "engines")
    write_reports(rows, tmp_path / "reports")
    built = lambda task: [r for r in rows if r.task == task and r.exported and r.rtx_build_ok]  # noqa: E731
    assert len(built("classification")) >= 0.9 * len(CLASSIFICATION)
    for task in ("detection", "segmentation"):
        through = [r for r in built(task) if any(n.startswith("pipeline (") for n in r.notes)]
        assert len(through) >= 5, task

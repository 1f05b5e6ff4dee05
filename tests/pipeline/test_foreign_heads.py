"""Heads for other people's outputs: YOLOX/YOLOv6 grids decoded with their strides, and the generic head for the
rest, chosen from the output shapes, through Pipeline, infer, bench --pipeline and the Triton pipeline model."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest

from tests.cli.test_infer_cli import constant_model, run_cli
from trtpipe.pipeline.heads import choose_head, create_head
from trtpipe.pipeline.heads.grid import grid_cells
from trtpipe.spec import PreprocessSpec, TensorInfo

SIZE = 64  # strides 8, 16, 32: 64 + 16 + 4 = 84 grid cells


def yolox_raw_output() -> np.ndarray:
    """(1, 84, 5 + 3) as YOLOX's export leaves it: one object in cell (x 1, y 2) of stride 16, everything else faint.

    Raw rows: x/y offsets in cells, log w/h (negative: smaller than a stride), sigmoid objectness and class scores.
    The object decodes to cx (1 + 0.5) * 16 = 24, cy (2 + 0.25) * 16 = 36, w e^ln2 * 16 = 32, h 16: box 8,28,40,44.
    """
    raw = np.zeros((1, grid_cells((SIZE, SIZE), (8, 16, 32)), 8), np.float32)
    raw[..., 2:4] = -1.0
    raw[..., 4] = 0.01
    row = 64 + 2 * 4 + 1  # after the 8x8 cells of stride 8: row-major in the 4x4 grid of stride 16
    raw[0, row] = [0.5, 0.25, np.log(2.0), 0.0, 0.9, 0.1, 0.1, 0.8]
    return raw


def with_names(path, names: dict[int, str]):
    """Stores class names as Ultralytics writes them (metadata ``names``: a dict literal)."""
    model = onnx.load(str(path))
    model.metadata_props.add(key="names", value=repr(names))
    onnx.save(model, str(path))
    return path


@pytest.fixture
def square_photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.png"), rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    return folder


def spec_for(path, task: str = "detection", **fields):
    spec = PreprocessSpec(model=path.stem, height=SIZE, width=SIZE, task=task, resize="stretch", **fields)
    spec.save(path.with_name(f"{path.stem}.preprocess.json"))
    return spec


def test_a_raw_yolox_grid_is_recognised_decoded_with_its_strides_and_named_from_the_metadata(tmp_path, square_photos, capsys):
    path = with_names(constant_model(tmp_path / "yolox.onnx", {"output": yolox_raw_output()}, size=SIZE), {0: "a", 1: "b", 2: "c"})
    spec_for(path)
    report = tmp_path / "out.json"
    code, out, err = run_cli(capsys, "infer", path, square_photos, "--json", report)
    assert code == 0, err
    results = json.loads(report.read_text())["results"]
    assert len(results) == 3
    for result in results:
        (found,) = result["detections"]
        assert found["label"] == "c" and found["class_id"] == 2 and found["score"] == pytest.approx(0.72)
        assert found["box_xyxy"] == pytest.approx([8.0, 28.0, 40.0, 44.0], abs=0.1)
    assert out.splitlines()[1].split()[-5:] == ["class", "score", "label", "box", "x1,y1,x2,y2"]


def test_a_decoded_grid_yolov6_style_keeps_its_boxes():
    raw = yolox_raw_output()
    raw[..., 2:4] = 4.0  # decoded: pixel sizes, never negative
    raw[0, 73, :4] = [24, 36, 32, 16]
    head = create_head("yolox", input_size=(SIZE, SIZE), labels=["a", "b", "c"])

    class Meta:
        @staticmethod
        def boxes_to_source(boxes):
            return boxes

    (found,) = head({"output": raw}, [Meta()], [None])
    np.testing.assert_allclose(found.boxes, [[8, 28, 40, 44]], atol=1e-4)
    assert found.labels == ("c",)


@pytest.mark.parametrize("outputs, task, expected", [
    ([("output", (1, 84, 8))], "detection", "yolox"),  # one row per grid cell
    ([("output", (1, 3 * 84, 8))], "detection", "detection"),  # three anchors per cell: YOLOv5
    ([("output", (1, 7, 84))], "detection", "detection"),  # YOLOv8
    ([("logits", (-1, 1000))], "classification", "classification"),
    ([("softmax", (-1, -1, 6625))], "classification", "generic"),  # a recognition model's sequence
    ([("maps", (-1, 1, -1, -1))], "segmentation", "generic"),  # a one-channel probability map
    ([(f"o{i}", (1, 100 // (i + 1), 10)) for i in range(8)], "detection", "generic"),  # PicoDet's eight outputs
])
def test_the_head_is_chosen_from_the_output_shapes(outputs, task, expected):
    spec = PreprocessSpec(model="m", height=SIZE, width=SIZE, task=task)
    assert choose_head(spec, tuple(TensorInfo(n, s, "float32") for n, s in outputs)) == expected


def test_the_spec_head_wins_over_the_shapes():
    spec = PreprocessSpec(model="m", height=SIZE, width=SIZE, task="detection", head="generic")
    assert choose_head(spec, (TensorInfo("output", (1, 84, 8), "float32"),)) == "generic"


@pytest.fixture
def text_model(tmp_path):
    """Two outputs no task head decodes: a 1-channel probability map and a (T, C) sequence."""
    maps = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(1, 1, 16, 16)
    sequence = np.arange(5 * 7, dtype=np.float32).reshape(1, 5, 7)
    path = constant_model(tmp_path / "text.onnx", {"maps": maps, "sequence": sequence}, size=SIZE)
    spec_for(path, task="segmentation")
    return path, maps[0], sequence[0]


def test_the_generic_head_prints_shapes_and_statistics_and_writes_the_arrays(text_model, square_photos, tmp_path, capsys):
    path, maps, sequence = text_model
    report = tmp_path / "out.json"
    code, out, err = run_cli(capsys, "infer", path, square_photos, "--json", report, "--save", tmp_path / "saved")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].split()[3:6] == ["output", "shape", "dtype"]
    assert any("maps" in line and "1x16x16" in line and "0 / 1 / 0.5 / 0.2" in line for line in lines), out
    assert any("sequence" in line and "5x7" in line and "0 / 34 / 17" in line for line in lines), out
    results = json.loads(report.read_text())["results"]
    assert len(results) == 3
    outputs = {o["name"]: o for o in results[0]["outputs"]}
    assert outputs["maps"]["shape"] == [1, 16, 16] and outputs["maps"]["max"] == pytest.approx(1.0)
    np.testing.assert_allclose(outputs["sequence"]["values"], sequence)
    np.testing.assert_allclose(outputs["maps"]["values"], maps, atol=1e-6)
    assert len(list((tmp_path / "saved").iterdir())) == 3


def test_bench_pipeline_runs_a_model_only_the_generic_head_takes(text_model, square_photos, capsys):
    path, _, _ = text_model
    code, out, err = run_cli(capsys, "bench", path, "--pipeline", "--images", square_photos, "--batch", "2")
    assert code == 0, err
    assert any(line.startswith("postprocess") for line in out.splitlines())


def test_the_triton_pipeline_model_serves_the_generic_outputs(text_model, tmp_path):
    from trtpipe.serve.pipeline_model import result_arrays
    from trtpipe.serve.triton_export import export_repository

    path, maps, sequence = text_model
    export_repository(path, tmp_path / "repo")
    served = PreprocessSpec.load(tmp_path / "repo" / "text_pipeline" / "1" / "preprocess.json")
    assert served.head == "generic"
    config = (tmp_path / "repo" / "text_pipeline" / "config.pbtxt").read_text()
    assert 'name: "maps"' in config and 'name: "sequence"' in config and "mask" not in config
    head = create_head("generic")
    (result,) = head({"maps": maps[None], "sequence": sequence[None]}, [None], [None])
    arrays = result_arrays(served.task, result)
    assert arrays["maps"].shape == (1, 1, 16, 16) and arrays["sequence"].shape == (1, 5, 7)


@pytest.mark.parametrize("metadata, expected", [
    ({"names": "{0: 'person', 1: 'bicycle'}"}, ("person", "bicycle")),  # Ultralytics
    ({"character": "0\n90\n180\n270"}, ("0", "90", "180", "270")),  # RapidAI / PaddleOCR
    ({"names": "__import__('os').system('true')"}, ()),  # a literal or nothing: never evaluated as code
    ({"imgsz": "[640, 640]"}, ()),
])
def test_class_names_come_from_the_exporters_metadata(metadata, expected):
    from trtpipe.labels import names_from_metadata

    assert names_from_metadata(metadata) == expected

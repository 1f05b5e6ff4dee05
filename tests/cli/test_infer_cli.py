"""`trtpipe infer` as a user runs it: folders, videos, cameras, detection and segmentation options, --save,
--labels, what it refuses; and `trtpipe bench --pipeline`. Every table has a header; the last line is a summary."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtpipe.cli.main import main
from trtpipe.runtime.simulation import make_tiny_classifier, tiny_spec
from trtpipe.spec import PreprocessSpec


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def constant_model(path, outputs: dict[str, np.ndarray], size: int = 32):
    """(N, 3, size, size) -> the given constant outputs (batch axis from the input), opset 17."""
    nodes = [helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1, 2, 3], keepdims=1, name="mean"),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"], name="zero_out")]
    initializers = [numpy_helper.from_array(np.zeros((1,), np.float32), "zero")]
    graph_outputs = []
    for name, value in outputs.items():
        rank = value.ndim
        nodes.append(helper.make_node("Reshape", ["nothing", f"{name}_shape"], [f"{name}_zero"], name=f"{name}_reshape"))
        nodes.append(helper.make_node("Add", [f"{name}_zero", f"{name}_value"], [name], name=f"{name}_add"))
        initializers += [numpy_helper.from_array(np.array([-1] + [1] * (rank - 1), np.int64), f"{name}_shape"),
                         numpy_helper.from_array(value.astype(np.float32), f"{name}_value")]
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *value.shape[1:]]))
    graph = helper.make_graph(nodes, "constant", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
                              graph_outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def detector(tmp_path):
    """YOLOv8 layout (1, 4 + 2 classes, 3 anchors) in 32x32 input pixels: two overlapping class-0 boxes (0.9, 0.8)
    and a weak class-1 box (0.3)."""
    anchors = np.zeros((8, 6), np.float32)  # more anchors than channels: the head recognises YOLOv8's layout
    anchors[:3] = [[16, 16, 8, 8, 0.9, 0.0], [17, 16, 8, 8, 0.8, 0.0], [5, 5, 4, 4, 0.0, 0.3]]
    path = constant_model(tmp_path / "det.onnx", {"output": anchors.T[None]})
    PreprocessSpec(model="det", height=32, width=32, task="detection", resize="letterbox").save(tmp_path / "det.preprocess.json")
    return path


@pytest.fixture
def segmenter(tmp_path):
    """(1, 3 classes, 8, 8) logits: class 2 on the left half, class 1 on the right."""
    logits = np.zeros((1, 3, 8, 8), np.float32)
    logits[0, 2, :, :4] = 5
    logits[0, 1, :, 4:] = 5
    path = constant_model(tmp_path / "seg.onnx", {"logits": logits})
    PreprocessSpec(model="seg", height=32, width=32, task="segmentation", resize="stretch").save(tmp_path / "seg.preprocess.json")
    return path


@pytest.fixture
def classifier(tmp_path):
    path = make_tiny_classifier(tmp_path / "tiny.onnx")
    tiny_spec().save(tmp_path / "tiny.preprocess.json")
    return path


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(folder / f"p{i}.jpg"), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    (folder / "p9_broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return folder


def test_infer_on_a_folder_prints_a_table_an_error_row_and_one_summary_line(classifier, photos, capsys):
    code, out, err = run_cli(capsys, "infer", classifier, photos, "--topk", "2", "--workers", "2", "--batch", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"running {classifier} (fp32) on onnxruntime-cpu"
    assert lines[1].split() == ["#", "source", "ms", "class", "score", "label"]
    assert sum(1 for line in lines if "/p" in line and ".jpg" in line) == 5
    assert any("p9_broken.jpg" in line and "error: image" in line and "Hint:" in line for line in lines)
    assert "stage" in out and "mean ms" in out
    assert lines[-1].startswith("infer: 4 results, 1 error from folder") and "onnxruntime-cpu fp32, batch up to 2" in lines[-1]
    assert "2 workers, " in lines[-1] and "engine thread" in lines[-1]  # the split used, as chosen around --workers


def test_infer_says_how_it_split_the_cores_and_takes_threads(classifier, photos, capsys, monkeypatch):
    monkeypatch.setattr("trtpipe.pipeline.stream.usable_cores", lambda: 4)
    code, out, err = run_cli(capsys, "infer", classifier, photos)
    assert code == 0, err
    assert "4 cores: 2 workers, 2 engine threads (ONNX Runtime on the CPU: cores split)" in out.splitlines()[-1]
    code, out, err = run_cli(capsys, "infer", classifier, photos, "--threads", "3")
    assert code == 0, err
    assert "4 cores: 1 worker, 3 engine threads (engine threads as given, the rest decode)" in out.splitlines()[-1]
    code, out, err = run_cli(capsys, "infer", classifier, photos, "--threads", "0")
    assert code == 2 and "--threads is 0, expected at least 1" in err and "Hint:" in err


def test_infer_detection_conf_iou_labels_and_saved_pictures(detector, photos, tmp_path, capsys):
    labels = tmp_path / "names.txt"
    labels.write_text("cat\ndog\n")
    out_dir = tmp_path / "annotated"
    code, out, err = run_cli(capsys, "infer", detector, photos / "p0.jpg", "--labels", labels, "--save", out_dir)
    assert code == 0, err
    assert out.splitlines()[1].split()[-3:] == ["label", "box", "x1,y1,x2,y2"]
    assert "cat" in out and "dog" in out and out.count(" cat ") == 1  # NMS at 0.45 keeps one of the two cat boxes
    saved = cv2.imread(str(out_dir / "p0.jpg"))
    assert saved.shape == (48, 64, 3) and out.splitlines()[-1].endswith(f"saved 1 file to {out_dir}/")
    code, out, _ = run_cli(capsys, "infer", detector, photos / "p0.jpg", "--conf", "0.5", "--iou", "0.95")
    assert code == 0 and out.count(" 0  ") + out.count(" 0 ") >= 2 and " 1 " not in out.split("stage")[0].split("\n", 1)[1]


def test_infer_saves_each_picture_under_its_source_name_and_format(detector, tmp_path, capsys):
    """x.jpg and x.png from one folder stay apart (the source's name and format, as Ultralytics saves)."""
    folder = tmp_path / "in"
    folder.mkdir()
    picture = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for name in ("x.jpg", "x.png", "y.ppm"):  # a PPM source is saved as JPEG (annotated pictures are for viewing)
        cv2.imwrite(str(folder / name), picture)
    code, out, _ = run_cli(capsys, "infer", detector, folder, "--save", tmp_path / "out")
    assert code == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.jpg", "x.png", "y.jpg"]
    assert out.splitlines()[-1].endswith(f"saved 3 files to {tmp_path / 'out'}/")


def test_infer_segmentation_saves_colour_masks_and_ranks_classes_by_area(segmenter, photos, tmp_path, capsys):
    out_dir = tmp_path / "masks"
    code, out, err = run_cli(capsys, "infer", segmenter, photos / "p1.jpg", "--save", out_dir)
    assert code == 0, err
    mask = cv2.imread(str(out_dir / "p1_mask.png"))
    assert mask.shape == (48, 64, 3)
    assert (mask[:, :32] == mask[0, 0]).all() and (mask[:, 32:] == mask[0, 63]).all() and (mask[0, 0] != mask[0, 63]).any()
    assert "50.0%" in out and out.splitlines()[1].split()[-3:] == ["class", "area", "label"]


def test_infer_a_video_into_an_annotated_video(detector, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(6):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    code, out, err = run_cli(capsys, "infer", detector, video, "--save", tmp_path / "out", "--max-frames", "5")
    assert code == 0, err
    assert "clip.mp4 frame 4" in out and "clip.mp4 frame 5" not in out
    capture = cv2.VideoCapture(str(tmp_path / "out" / "clip_annotated.mp4"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 5 and "saved 5 annotated frames" in out.splitlines()[-1]


def test_infer_save_does_not_overwrite_without_force(classifier, photos, tmp_path, capsys):
    out_dir, report = tmp_path / "out", tmp_path / "r.json"
    assert run_cli(capsys, "infer", classifier, photos / "p0.jpg", "--save", out_dir, "--json", report)[0] == 0
    assert json.loads(report.read_text())["results"][0]["source"] == str(photos / "p0.jpg")
    assert run_cli(capsys, "infer", classifier, photos / "p1.jpg", "--json", report)[0] == 0  # named: replaced
    assert json.loads(report.read_text())["results"][0]["source"] == str(photos / "p1.jpg")
    code, out, err = run_cli(capsys, "infer", classifier, photos / "p0.jpg", "--save", out_dir)
    assert code == 2 and f"--save {out_dir} holds files already" in err and "--force" in err and out == ""
    assert run_cli(capsys, "infer", classifier, photos / "p0.jpg", "--save", out_dir, "--force")[0] == 0


@pytest.mark.parametrize("argv, message", [
    (["97"], "OpenCV cannot open camera 97"),
    (["missing_folder/"], "missing_folder: no such file or folder"),
    (["photos", "--batch", "0"], "--batch is 0, expected at least 1"),
])
def test_infer_refuses_with_one_line_and_a_hint(classifier, photos, capsys, argv, message, monkeypatch):
    monkeypatch.chdir(photos.parent)
    code, out, err = run_cli(capsys, "infer", classifier, *argv)
    assert code == 2 and message in err and "Hint:" in err and "Traceback" not in err
    assert out == ""  # refused before any work: not even the table's header


def test_infer_exits_2_when_no_image_gave_a_result(classifier, photos, capsys):
    code, out, err = run_cli(capsys, "infer", classifier, photos / "p9_broken.jpg", photos / "p9_broken.jpg")
    assert code == 2 and out.count("error: image") == 2 and "stage" not in out  # no stage table without a result
    assert out.splitlines()[-1].startswith("infer: 0 results, 2 errors")
    assert "none of the 2 images from 2 files gave a result" in err and "the first: " in err and "Hint:" in err


def test_bench_pipeline_reports_each_stage_the_bound_and_the_stream(classifier, photos, tmp_path, capsys):
    report = tmp_path / "pipe.json"
    code, out, err = run_cli(capsys, "bench", classifier, "--pipeline", "--images", photos, "--batch", "2",
                             "--workers", "2", "--json", report)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["stage", "(alone)", "threads", "images/s", "ms/image"]
    for stage in ("read", "preprocess", "infer (batch 2)", "postprocess", "sequential loop", "Pipeline.stream"):
        assert any(line.startswith(stage) for line in lines), stage
    assert "x the sequential loop" in lines[-1] and "x the bound set by the" in lines[-1] and str(report) in lines[-1]
    data = json.loads(report.read_text())
    assert data["kind"] == "pipeline" and data["errors"] == 1 and data["images"] == 5
    assert {s["stage"] for s in data["stages"]} == {"read", "preprocess", "infer", "postprocess"}
    assert data["stream"] > 0 and data["sequential"] > 0 and data["bound"]["images_per_s"] > 0
    code, _, err = run_cli(capsys, "bench", classifier, "--pipeline")
    assert code == 2 and "needs --images" in err
    code, _, err = run_cli(capsys, "bench", "--pipeline", "--images", photos)
    assert code == 2 and "--pipeline needs a model" in err
    code, out, err = run_cli(capsys, "bench", classifier, "--pipeline", "--images", photos, "--json", tmp_path / "d.json")
    assert code == 0, err
    assert json.loads((tmp_path / "d.json").read_text())["batch_size"] == 8  # no --batch, no profile max: 8


def test_infer_runs_a_tensorrt_engine_on_infstreams_contexts(simulated_machine, sim_engine, photos, capsys, monkeypatch):
    import trtpipe.pipeline.stream as stream_module

    seen = []
    real_init = stream_module.Stream.__init__

    def recording(self, pipeline, *args, **kwargs):
        real_init(self, pipeline, *args, **kwargs)
        seen.append((self.inference_threads, pipeline.engine.num_contexts))

    monkeypatch.setattr(stream_module.Stream, "__init__", recording)
    code, out, err = run_cli(capsys, "infer", sim_engine, photos, "--infStreams", "2", "--batch", "2")
    assert code == 0, err
    assert seen == [(2, 2)]  # two execution contexts, one inference thread each
    assert out.splitlines()[-1].startswith("infer: 4 results, 1 error")
    assert f"{simulated_machine.flavor.name}-simulated fp32, batch up to 2" in out.splitlines()[-1]

"""samples/{classify,detect,segment}.py run as a user runs them, on tiny models built here, and print class names.

The detector and the segmenter are tiny ONNX graphs with the zoo's label sets (coco80, ade20k150) in their
preprocess specs: a detector must print "person", not "0"; a segmenter its classes largest area first.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtpipe.runtime.simulation import make_tiny_classifier
from trtpipe.spec import PreprocessSpec

ROOT = Path(__file__).resolve().parents[2]
SIZE = 32
ANCHORS = 100  # more anchors than 4 + 80 rows: how the head tells YOLOv8 (N, 84, A) from YOLOv5 (N, A, 85)


def _run(script: str, *args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "samples" / script), *args], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _save(nodes, inputs, outputs, initializers, path: Path) -> Path:
    model = helper.make_model(helper.make_graph(nodes, path.stem, inputs, outputs, initializers),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tiny_yolo(path: Path) -> Path:
    """(N, 3, 32, 32) -> (N, 84, 100): YOLOv8 layout; anchor 0 is a "person" (class 0) box at score 0.9, whatever the image."""
    constant = np.zeros((4 + 80, ANCHORS), np.float32)
    constant[:4, 0] = [16, 16, 8, 8]  # cx, cy, w, h in input pixels
    constant[4 + 0, 0] = 0.9
    constant[4 + 2, 1], constant[:4, 1] = 0.6, [8, 8, 6, 6]  # a "car" (class 2)
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "weight", "bias"], ["scores"], transB=1),
        helper.make_node("Reshape", ["scores", "shape"], ["output"]),
    ]
    initializers = [
        numpy_helper.from_array(np.zeros((constant.size, 3), np.float32), "weight"),
        numpy_helper.from_array(constant.reshape(-1), "bias"),
        numpy_helper.from_array(np.array([-1, 4 + 80, ANCHORS], np.int64), "shape"),
    ]
    return _save(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                 [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4 + 80, ANCHORS])], initializers, path)


def tiny_segmenter(path: Path, classes: int = 150) -> Path:
    """(N, 3, 32, 32) -> (N, classes, 32, 32) logits of a seeded 1x1 convolution: a few classes win by colour."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["input", "weight"], ["logits"])]
    initializers = [numpy_helper.from_array(rng.normal(size=(classes, 3, 1, 1)).astype(np.float32), "weight")]
    return _save(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                 [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes, SIZE, SIZE])], initializers, path)


@pytest.fixture
def workdir(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    image[:, :32] = (200, 40, 40)  # a large block of one colour: one class should win there
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    return tmp_path


def test_classify_sample_takes_a_model_and_images(workdir):
    make_tiny_classifier(workdir / "tiny.onnx")
    PreprocessSpec(model="tiny", height=8, width=8).save(workdir / "tiny.preprocess.json")
    out = _run("classify.py", "tiny.onnx", "photo.png", "photo.png", "--topk", "2", cwd=workdir)
    assert out.count("photo.png: ") == 2 and "(onnxruntime-cpu fp32)" in out
    assert re.search(r"end_to_end .* 1$", out, re.M), out  # one timed call; warm-up is not one of them


def test_detect_sample_prints_coco_names_and_draws(workdir):
    tiny_yolo(workdir / "yolo.onnx")
    PreprocessSpec(model="yolo", height=SIZE, width=SIZE, task="detection", resize="letterbox", labels="coco80",
                   mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)).save(workdir / "yolo.preprocess.json")
    out = _run("detect.py", "yolo.onnx", "photo.png", "-o", "boxes.jpg", cwd=workdir)
    assert "2 detections: person 0.90, car 0.60 (onnxruntime-cpu fp32" in out
    assert (workdir / "boxes.jpg").is_file()


def test_segment_sample_ranks_ade20k_classes_by_area(workdir):
    from trtpipe.labels import load_labels

    tiny_segmenter(workdir / "seg.onnx")
    PreprocessSpec(model="seg", height=SIZE, width=SIZE, task="segmentation", resize="stretch",
                   labels="ade20k150").save(workdir / "seg.preprocess.json")
    out = _run("segment.py", "seg.onnx", "photo.png", "-o", "overlay.png", cwd=workdir)
    summary = out.splitlines()[-1]
    pairs = re.findall(r"([a-z][a-z ]*?) (\d+\.\d)%", summary.split(" (onnxruntime")[0])
    assert pairs and all(name.strip() in load_labels("ade20k150") for name, _ in pairs), summary
    shares = [float(share) for _, share in pairs]
    assert shares == sorted(shares, reverse=True) and shares[0] >= 50  # the one-colour half of the photo
    assert (workdir / "overlay.png").is_file()

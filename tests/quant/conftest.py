"""Tiny models and image folders made in code for the quantization tests."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from trtpipe.spec import PreprocessSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))  # model_kinds.py, importable by the test modules

SIZE = 32


def tiny_resnet(seed: int = 0, classes: int = 10):
    """conv -> relu -> [conv -> relu -> conv] + residual -> relu -> pool -> flatten -> gemm, opset 17, dynamic batch."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * (2.0 / np.prod(shape[1:])) ** 0.5).astype(np.float32), name)

    def bias(name, n):
        return numpy_helper.from_array((rng.standard_normal(n) * 0.1).astype(np.float32), name)

    inits = [
        weight("stem_w", 8, 3, 3, 3), bias("stem_b", 8),
        weight("a_w", 8, 8, 3, 3), bias("a_b", 8),
        weight("b_w", 8, 8, 1, 1), bias("b_b", 8),
        weight("fc_w", classes, 8), bias("fc_b", classes),
        numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "stem_w", "stem_b"], ["stem"], name="stem_conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["stem"], ["stem_relu"], name="stem_relu"),
        helper.make_node("Conv", ["stem_relu", "a_w", "a_b"], ["a"], name="block_conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["a_relu"], name="block_relu"),
        helper.make_node("Conv", ["a_relu", "b_w", "b_b"], ["b"], name="block_conv_b"),
        helper.make_node("Add", ["b", "stem_relu"], ["sum"], name="residual_add"),
        helper.make_node("Relu", ["sum"], ["sum_relu"], name="sum_relu"),
        helper.make_node("GlobalAveragePool", ["sum_relu"], ["pool"], name="pool"),
        helper.make_node("Reshape", ["pool", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_resnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def write_model(folder: Path, name: str = "tiny", seed: int = 0) -> Path:
    """Writes ``name``.onnx and ``name``.preprocess.json into ``folder``."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.onnx"
    onnx.save(tiny_resnet(seed), str(path))
    PreprocessSpec(model=name, height=SIZE, width=SIZE).save(folder / f"{name}.preprocess.json")
    return path


def write_images(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` small images: colour jpgs, a grayscale png and an RGBA png in a subfolder."""
    rng = np.random.default_rng(seed)
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 0)
        if index == 0:
            cv2.imwrite(str(folder / "sub" / "gray.png"), image[..., 0])
        elif index == 1:
            cv2.imwrite(str(folder / "sub" / "alpha.png"), np.dstack([image, np.full(image.shape[:2], 200, np.uint8)]))
        else:
            cv2.imwrite(str(folder / f"img_{index:03d}.jpg"), image)
    return folder


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    return write_model(tmp_path / "models")


@pytest.fixture
def image_dir(tmp_path) -> Path:
    return write_images(tmp_path / "images", 24)


@pytest.fixture
def images40(tmp_path) -> Path:
    """40 images: enough for the INT8 fidelity check to hold back 10 (it needs 8) and calibrate on 30."""
    return write_images(tmp_path / "images40", 40)


@pytest.fixture
def make_tiny_model():
    """The tiny_resnet builder: ``make_tiny_model(seed=0)`` -> onnx.ModelProto."""
    return tiny_resnet


def build_strongly_typed(trt, path, shape) -> int:
    """Parses and builds ``path`` strongly typed with TensorRT(-RTX) on the CPU; returns the engine size."""
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(path)), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, shape, shape, shape)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    assert serialized is not None
    return serialized.nbytes


@pytest.fixture
def rtx_build():
    """``rtx_build(path, shape)`` -> engine bytes; skips without tensorrt_rtx."""
    trt = pytest.importorskip("tensorrt_rtx")
    return lambda path, shape: build_strongly_typed(trt, path, shape)

"""Tiny ONNX models of the kinds users' models have, built in code, for the intake, builder and CLI tests.

Each is one kind from ../shared/cases (R4, R7, R13, R15, R22): shapeless outputs, a value_info rank clash,
external data (one file per tensor), initializers listed as graph inputs or weights exported as inputs,
dynamic height and width, an output whose first axis is not the batch.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def shapeless_output_model(path):
    """Graph output and one value_info with an element type and no shape field, as hand-built graphs write them."""
    weight = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "conv_w")
    nodes = [helper.make_node("Conv", ["x", "conv_w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    y, c = onnx.ValueInfoProto(), onnx.ValueInfoProto()
    y.name, c.name = "y", "c"
    y.type.tensor_type.elem_type = c.type.tensor_type.elem_type = TensorProto.FLOAT
    graph = helper.make_graph(nodes, "shapeless", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [y], [weight], value_info=[c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def rank_clash_model(path):
    """A value_info whose rank (0) disagrees with what shape inference finds (4)."""
    weight = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "conv_w")
    nodes = [helper.make_node("Conv", ["x", "conv_w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "rankclash", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], [weight],
                              value_info=[helper.make_tensor_value_info("c", TensorProto.FLOAT, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def external_data_model(folder, missing: str | None = None, truncate: str | None = None):
    """Weights as external data, one file per tensor (as torch writes models over 2 GB), optionally one file gone."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "backbone.conv0.weight"),
               numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "backbone.conv1.weight")]
    nodes = [helper.make_node("Conv", ["x", "backbone.conv0.weight"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c0", "backbone.conv1.weight"], ["y"], name="conv1", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "ext", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 8, 8])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=False, size_threshold=0)
    if missing:
        (folder / missing).unlink()
    if truncate:
        (folder / truncate).write_bytes((folder / truncate).read_bytes()[:100])
    return path


def initializers_as_inputs_model(path, ir_version: int = 8, without_weights: bool = False):
    """Two Conv layers; keep_initializers_as_inputs=True lists their weights as graph inputs too.

    ``without_weights``: the weights are graph inputs with no initializer (export_params=False).
    """
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((3, 3, 3, 3)).astype(np.float32), name) for name in ("W1", "W2")]
    nodes = [helper.make_node("Conv", ["x", "W1"], ["c1"], name="conv_a", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu_a"),
             helper.make_node("Conv", ["r1", "W2"], ["y"], name="conv_b", pads=[1, 1, 1, 1])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])]
    inputs += [helper.make_tensor_value_info(w.name, TensorProto.FLOAT, list(w.dims)) for w in weights]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [] if without_weights else weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17 if ir_version >= 8 else 8)])
    model.ir_version = ir_version
    onnx.save(model, str(path))
    return path


def dynamic_hw_model(path, height: int = 48, width: int = 64):
    """[N, 3, H, W] -> logits [N, 10], with a preprocess spec of ``height`` x ``width`` beside it (R4)."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "W"),
               numpy_helper.from_array(rng.normal(0, 0.2, (8, 10)).astype(np.float32), "FW")]
    nodes = [helper.make_node("Conv", ["images", "W"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu0"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "FW"], ["logits"], name="fc")]
    graph = helper.make_graph(nodes, "dynhw", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    path.with_name(path.name.split(".")[0] + ".preprocess.json").write_text(
        json.dumps({"model": "dynhw", "height": height, "width": width})
    )
    return path


def nonzero_output_model(path):
    """Logits [N, 10] and ``keep`` = NonZero(sigmoid > 0.6): [4, num_kept], whose first axis is the index rank (R7)."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "W"),
               numpy_helper.from_array(rng.normal(0, 0.2, (8, 10)).astype(np.float32), "FW"),
               numpy_helper.from_array(np.array(0.6, np.float32), "thr")]
    nodes = [helper.make_node("Conv", ["images", "W"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
             helper.make_node("GlobalAveragePool", ["s"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "FW"], ["logits"], name="fc"),
             helper.make_node("Greater", ["s", "thr"], ["mask"], name="thresh"),
             helper.make_node("NonZero", ["mask"], ["keep"], name="nonzero_keep")]
    graph = helper.make_graph(nodes, "nz", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
                               helper.make_tensor_value_info("keep", TensorProto.INT64, [4, "num_kept"])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    path.with_name(path.name.split(".")[0] + ".preprocess.json").write_text(json.dumps({"model": "nz", "height": 32, "width": 32}))
    return path


def tiny_detector_model(path):
    """A YOLOv8-layout detector with fixed answers: (N, 3, 32, 32) -> ``output0`` (N, 4 + 2 classes, 8 anchors).

    Anchor 0: class 0, score 0.9, box cx=16 cy=16 w=8 h=8; anchor 1: class 1, score 0.8, box cx=8 cy=8 w=4 h=4
    (network-input pixels). The input only sets the batch (0 * mean(input) is added), so results are exact.
    A spec beside it: 32x32, stretch resize, task detection.
    """
    table = np.zeros((1, 6, 8), np.float32)  # 8 anchors (more anchors than rows is how the head tells YOLOv8's layout)
    table[0, :, :2] = [[16, 8], [16, 8], [8, 4], [8, 4], [0.9, 0.1], [0.05, 0.8]]  # anchors 2..7 score 0
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], name="mean", axes=[1, 2, 3], keepdims=0),
             helper.make_node("Reshape", ["m", "n11"], ["m3"], name="to_n11"),
             helper.make_node("Mul", ["m3", "zero"], ["z"], name="zero_it"),
             helper.make_node("Add", ["z", "table"], ["output0"], name="answers")]
    graph = helper.make_graph(nodes, "tinydet", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 6, 8])],
                              [numpy_helper.from_array(np.zeros((1, 1, 1), np.float32), "zero"),
                               numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "n11"),
                               numpy_helper.from_array(table, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    _write_spec(path, {"model": "tinydet", "height": 32, "width": 32, "task": "detection", "resize": "stretch"})
    return path


def tiny_segmenter_model(path):
    """A 3-class segmenter whose class is the strongest colour channel: (N, 3, 32, 32) -> logits (N, 3, 32, 32).

    A 1x1 Conv with identity weights on inputs normalised to 0..1 (mean 0, std 1, RGB): red pixels are class 0,
    green class 1, blue class 2. A spec beside it: 32x32, stretch resize, task segmentation.
    """
    weight = numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "W")
    nodes = [helper.make_node("Conv", ["images", "W"], ["logits"], name="classes")]
    graph = helper.make_graph(nodes, "tinyseg", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3, 32, 32])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    _write_spec(path, {"model": "tinyseg", "height": 32, "width": 32, "task": "segmentation", "resize": "stretch",
                       "mean": [0, 0, 0], "std": [1, 1, 1]})
    return path


def _write_spec(path, spec: dict) -> None:
    path.with_name(path.name.split(".")[0] + ".preprocess.json").write_text(json.dumps(spec))


def batch_statistic_model(path):
    """Logits [N, 10] and ``batch_mean`` [10] (their mean over the batch): an output whose first axis is fixed.

    TensorRT builds it (unlike NonZero, which TensorRT-RTX 1.7 has no plugin for), so engines can have the kind too.
    """
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "W"),
               numpy_helper.from_array(rng.normal(0, 0.2, (8, 10)).astype(np.float32), "FW")]
    nodes = [helper.make_node("Conv", ["images", "W"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "FW"], ["logits"], name="fc"),
             helper.make_node("ReduceMean", ["logits"], ["batch_mean"], name="over_batch", axes=[0], keepdims=0)]
    graph = helper.make_graph(nodes, "stat", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
                               helper.make_tensor_value_info("batch_mean", TensorProto.FLOAT, [10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    _write_spec(path, {"model": "stat", "height": 32, "width": 32})
    return path


def channels_classifier(path, channels: int = 1, *, layout: str = "NCHW", size=(16, 16), dtype=TensorProto.FLOAT,
                        classes: int = 4, metadata: dict | None = None, batch="N"):
    """A classifier with a ``channels``-channel image input (a grayscale OCR/medical model, an RGBA one, ...):
    per-channel spatial mean -> MatMul -> logits. ``size`` None entries are dynamic; ``metadata`` goes to
    metadata_props (exporters' keys: Ultralytics' imgsz/names/task, PaddleOCR's character)."""
    height, width = (d if d is not None else name for d, name in zip(size, ("H", "W")))
    shape = [batch, channels, height, width] if layout == "NCHW" else [batch, height, width, channels]
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    nodes = []
    source = "x"
    if dtype != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT, name="cast"))
        source = "xf"
    nodes += [helper.make_node("ReduceMean", [source], ["pooled"], axes=axes, keepdims=0, name="pool"),
              helper.make_node("MatMul", ["pooled", "fc_w"], ["logits"], name="fc")]
    weight = numpy_helper.from_array(np.random.default_rng(channels).standard_normal((channels, classes)).astype(np.float32), "fc_w")
    graph = helper.make_graph(nodes, "channels", [helper.make_tensor_value_info("x", dtype, shape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path

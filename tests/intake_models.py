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

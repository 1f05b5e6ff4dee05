"""Tiny ONNX models of the kinds of model users bring (built in code): each is one input kind the quantization
verbs must feed, or one numeric failure fidelity must report. Used by test_model_kinds.py and test_fidelity_honest.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trtpipe.spec import PreprocessSpec

SIZE = 32


def _save(model, folder: Path, name: str, **spec_fields) -> Path:
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path = folder / f"{name}.onnx"
    onnx.save(model, str(path))
    PreprocessSpec(model=name, height=SIZE, width=SIZE, **spec_fields).save(folder / f"{name}.preprocess.json")
    return path


def _head(rng, channels: int = 8, classes: int = 10):
    """conv -> relu -> global pool -> flatten -> matmul, from NCHW float tensor ``x``; output ``logits``."""
    from onnx import helper, numpy_helper

    inits = [
        numpy_helper.from_array(rng.normal(0, 0.2, (channels, 3, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(0, 0.2, (channels, classes)).astype(np.float32), "FW"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu0"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "FW"], ["logits"], name="fc"),
    ]
    return nodes, inits


def _model(nodes, inputs, inits, classes: int = 10, opset: int = 17):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, "kind", inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def uint8_nhwc(folder: Path, name: str = "u8", **spec_fields) -> Path:
    """A uint8 NHWC image input, cast and normalised inside the graph (as TF detection exports are)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = _head(np.random.default_rng(0))
    inits.append(numpy_helper.from_array(np.array(1 / 255.0, np.float32), "scale"))
    nodes = [
        helper.make_node("Cast", ["image_tensor"], ["xf"], name="cast_u8", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["xf", "scale"], ["xs"], name="scale01"),
        helper.make_node("Transpose", ["xs"], ["x"], name="nhwc2nchw", perm=[0, 3, 1, 2]),
    ] + nodes
    inputs = [helper.make_tensor_value_info("image_tensor", TensorProto.UINT8, ["N", SIZE, SIZE, 3])]
    fields = dict(layout="NHWC", mean=(0, 0, 0), std=(1, 1, 1), pixel_scale=1.0)
    fields.update(spec_fields)
    return _save(_model(nodes, inputs, inits), folder, name, **fields)


def fixed_batch(folder: Path, batch: int, name: str = "fixed") -> Path:
    """A float NCHW input whose batch axis is fixed at ``batch``."""
    from onnx import TensorProto, helper

    nodes, inits = _head(np.random.default_rng(1))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])]
    return _save(_model(nodes, inputs, inits), folder, name)


def two_inputs(folder: Path, name: str = "two") -> Path:
    """An image plus a per-sample conditioning vector ``cond`` (N x 8)."""
    from onnx import TensorProto, helper

    nodes, inits = _head(np.random.default_rng(2))
    nodes[-1] = helper.make_node("Mul", ["f", "cond"], ["film"], name="film")
    nodes.append(helper.make_node("MatMul", ["film", "FW"], ["logits"], name="fc"))
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE]),
        helper.make_tensor_value_info("cond", TensorProto.FLOAT, ["N", 8]),
    ]
    return _save(_model(nodes, inputs, inits), folder, name)


def initializers_as_inputs(folder: Path, name: str = "kept_inputs") -> Path:
    """One weight shared by two convs, every initializer also listed (first) as a graph input."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.2, (3, 3, 3, 3)).astype(np.float32), "shared_W"),
        numpy_helper.from_array(rng.normal(0, 0.2, (3, 10)).astype(np.float32), "FW"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "shared_W"], ["c1"], name="conv_a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu_a"),
        helper.make_node("Conv", ["r1", "shared_W"], ["c2"], name="conv_b", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "FW"], ["logits"], name="fc"),
    ]
    inputs = [
        helper.make_tensor_value_info("shared_W", TensorProto.FLOAT, [3, 3, 3, 3]),
        helper.make_tensor_value_info("FW", TensorProto.FLOAT, [3, 10]),
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE]),
    ]
    return _save(_model(nodes, inputs, inits), folder, name)


def exp_gate(folder: Path, gain: float, name: str = "exp_gate") -> Path:
    """conv -> pool -> Mul(gain) -> Exp -> MatMul: a heavy-tailed activation ``e`` whose range explodes with the gain."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(np.array(gain, np.float32), "k"),
        numpy_helper.from_array(rng.normal(0, 1, (8, 10)).astype(np.float32), "FW"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Mul", ["f", "k"], ["fk"], name="gain"),
        helper.make_node("Exp", ["fk"], ["e"], name="exp_gate"),
        helper.make_node("MatMul", ["e", "FW"], ["logits"], name="head"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])]
    return _save(_model(nodes, inputs, inits), folder, name)


def with_if_branch(folder: Path, name: str = "branchy") -> Path:
    """A top-level conv plus an If whose then-branch holds another conv (reading an outer-scope tensor)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)
    nodes, inits = _head(rng)
    inits += [
        numpy_helper.from_array(rng.normal(0, 0.2, (8, 8, 1, 1)).astype(np.float32), "W_then"),
        numpy_helper.from_array(np.array(True), "use_then"),
    ]
    then_branch = helper.make_graph(
        [helper.make_node("Conv", ["r", "W_then"], ["then_out"], name="conv_in_then")], "then", [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, None)],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["r"], ["else_out"], name="identity_in_else")], "else", [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, None)],
    )
    nodes[2:2] = [helper.make_node("If", ["use_then"], ["branch"], name="branch", then_branch=then_branch,
                                   else_branch=else_branch)]
    nodes[3] = helper.make_node("GlobalAveragePool", ["branch"], ["g"], name="gap")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])]
    return _save(_model(nodes, inputs, inits), folder, name)


def external_weights(folder: Path, version: int, name: str = "ext") -> Path:
    """conv -> relu -> pool -> matmul with every weight in ``<name>.weights``; ``version`` 2 has 10x larger weights.

    The .onnx file is byte-identical for every version (the weights file alone changes), as a re-export writes it.
    """
    import onnx

    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(version)
    scale = 0.2 if version == 1 else 2.0
    inits = [
        numpy_helper.from_array(rng.normal(0, scale, (16, 3, 3, 3)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(0, 0.2, (16, 10)).astype(np.float32), "FW"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu0"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "FW"], ["logits"], name="fc"),
    ]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])], inits)
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.weights").unlink(missing_ok=True)
    path = folder / f"{name}.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=f"{name}.weights",
              size_threshold=0)
    PreprocessSpec(model=name, height=SIZE, width=SIZE).save(folder / f"{name}.preprocess.json")
    return path


def fp16_overflow_chain(path: Path, gain: float = 300.0) -> Path:
    """An FP16 ONNX (FP32 I/O): x (N x 4) -> MatMul(all ``gain``) -> MatMul(all 0.001); for x = 100 and gain 300
    the first product is 4 * 100 * 300 = 120000 > 65504, which is inf in FP16 storage."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.full((4, 4), gain, np.float16), "W1"),
        numpy_helper.from_array(np.full((4, 4), 0.001, np.float16), "W2"),
    ]
    nodes = [
        helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16),
        helper.make_node("MatMul", ["xh", "W1"], ["a"]),
        helper.make_node("MatMul", ["a", "W2"], ["b"]),
        helper.make_node("Cast", ["b"], ["y"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes, "fp16_chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def fp16_transpose_matmul_add(path: Path, fp16: bool = True) -> Path:
    """Transpose -> MatMul -> Add in FP16 with FP32 I/O (the attention projection of a torch-dynamo export,
    minimised): ONNX Runtime 1.32's CPU provider segfaults creating a default session for it. ``fp16=False``: the
    same graph in FP32, which it runs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    dtype = np.float16 if fp16 else np.float32
    inits = [
        numpy_helper.from_array(rng.random((16, 48)).astype(dtype), "W"),
        numpy_helper.from_array(rng.random(48).astype(dtype), "b"),
    ]
    nodes = [
        helper.make_node("Transpose", ["xh"], ["t"], perm=[1, 0, 2]),
        helper.make_node("MatMul", ["t", "W"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a" if fp16 else "y"]),
    ]
    if fp16:
        nodes = [helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16)] + nodes
        nodes.append(helper.make_node("Cast", ["a"], ["y"], to=TensorProto.FLOAT))
    else:
        nodes[0].input[0] = "x"
    graph = helper.make_graph(
        nodes, "dynamo_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, "N", 48])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def write_bright_images(folder: Path, count: int = 16) -> Path:
    """Near-white images: an unrepresentative calibration set that blows up an Exp activation's range."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for index in range(count):
        image = np.clip(235 + rng.normal(0, 8, (64, 64, 3)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"bright_{index:02d}.png"), image)
    return folder

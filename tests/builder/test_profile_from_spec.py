"""An image input whose height and width the ONNX leaves dynamic takes them from a spec that says them."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trtpipe.cli.main import main

pytest.importorskip("tensorrt_rtx")


def dynamic_hw_classifier(path):
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]), helper.make_node("Flatten", ["g"], ["logits"])]
    graph = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(rng.normal(0, 0.2, (4, 3, 3, 3)).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_input_size_sizes_the_profile_of_a_dynamic_image_input(tmp_path, capsys):
    model = dynamic_hw_classifier(tmp_path / "dyn.onnx")
    code = main(["build", str(model), "-o", str(tmp_path / "dyn.engine"), "--input-size", "48x192", "--batch", "1:4:16"])
    out = capsys.readouterr()
    assert code == 0, out.err
    profile = json.loads((tmp_path / "dyn.engine.json").read_text())["profiles"][0]["x"]
    assert (profile["min"], profile["opt"], profile["max"]) == ([1, 3, 48, 192], [4, 3, 48, 192], [16, 3, 48, 192])
    assert "height and width 48x192 from the preprocess spec" in out.out


def test_an_assumed_size_does_not_size_the_profile_and_the_hint_names_input_size(tmp_path, capsys):
    model = dynamic_hw_classifier(tmp_path / "dyn.onnx")
    code = main(["build", str(model), "-o", str(tmp_path / "dyn.engine")])
    err = capsys.readouterr().err
    assert code == 2 and "dynamic dimensions besides the batch" in err and "--input-size HxW" in err
    assert not (tmp_path / "dyn.engine").exists()

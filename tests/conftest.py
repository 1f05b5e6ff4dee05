"""Fixtures shared across the test suite: tiny ONNX models built in code, cached zoo exports."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


def pytest_collection_modifyitems(config, items):
    """Skips `gpu` tests on machines without an NVIDIA GPU, saying why (a GPU CUDA cannot use fails them instead)."""
    from trtpipe.testing import gpu_status

    status = gpu_status()
    if status.usable or status.broken:
        return
    skip = pytest.mark.skip(reason=f"no GPU: {status.reason}")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


def pytest_runtest_setup(item):
    """A GPU that is here but unusable (a driver older than cuda-python needs) fails every `gpu` test, loudly."""
    if item.get_closest_marker("gpu") is not None:
        from trtpipe.testing import gpu_status

        broken = gpu_status().broken
        if broken:
            pytest.fail(broken, pytrace=False)


@pytest.fixture(scope="session")
def zoo_onnx(tmp_path_factory):
    """Exports a zoo model once per test session: ``zoo_onnx("mobilenetv2", weights="random")`` -> Path."""
    from trtpipe.zoo.export import export_model

    cache: dict[tuple, Path] = {}
    root = tmp_path_factory.mktemp("zoo")

    def export(name: str, weights: str = "auto") -> Path:
        key = (name, weights)
        if key not in cache:
            out = root / f"{name.replace(':', '_')}_{weights}.onnx"
            cache[key] = export_model(name, out, weights=weights).onnx_path
        return cache[key]

    return export


def make_conv_onnx(
    path: Path,
    *,
    input_shape=("N", 3, 32, 32),
    channels: int = 8,
    custom_op: bool = False,
    seed: int = 0,
) -> Path:
    """Writes a tiny Conv -> Relu [-> custom op] network; symbolic dims are strings."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "W")
    nodes = [
        helper.make_node("Conv", ["input", "W"], ["conv"], pads=[1, 1, 1, 1], name="conv0"),
        helper.make_node("Relu", ["conv"], ["relu" if custom_op else "output"], name="relu0"),
    ]
    opsets = [helper.make_opsetid("", 17)]
    if custom_op:
        nodes.append(helper.make_node("MyCustomOp", ["relu"], ["output"], name="weird0", domain="custom.domain"))
        opsets.append(helper.make_opsetid("custom.domain", 1))
    out_shape = (input_shape[0], channels, *input_shape[2:])
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(out_shape))],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny_onnx(tmp_path):
    """Factory for tiny ONNX files in tmp_path: ``tiny_onnx(name="m.onnx", **make_conv_onnx options)``."""

    def make(name: str = "tiny.onnx", **options) -> Path:
        return make_conv_onnx(tmp_path / name, **options)

    return make


pytest_plugins = ["tests.sim_fixtures"]  # the TensorRT/CUDA simulation fixtures (sim_cuda, sim_engine, ...)

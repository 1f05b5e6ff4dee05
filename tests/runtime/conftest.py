"""Fixtures for runtime tests: a tiny ONNX classifier, the CUDA/TensorRT simulation, a simulated engine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from trtpipe import cuda

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the simulation module beside this file
from trt_simulation import SimulatedCuda, make_tiny_classifier, simulated_flavor, tiny_spec, write_simulated_engine


@pytest.fixture
def tiny_onnx(tmp_path):
    return make_tiny_classifier(tmp_path / "tiny.onnx")


@pytest.fixture
def sim_cuda():
    simulation = SimulatedCuda()
    with cuda.using_runtime(simulation):
        yield simulation


@pytest.fixture
def sim_flavor(sim_cuda):
    return simulated_flavor(sim_cuda)


@pytest.fixture
def sim_engine(tiny_onnx, tmp_path):
    """A simulated engine of the tiny classifier with profile batch 1..4, and its sidecar."""
    return write_simulated_engine(
        tiny_onnx, tmp_path / "tiny.engine", {"input": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}, spec=tiny_spec()
    )

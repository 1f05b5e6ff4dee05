"""Fixtures for everything that runs against the TensorRT/CUDA simulation (``trtpipe.runtime.simulation``).

Loaded for the whole suite as a pytest plugin (``pytest_plugins`` in tests/conftest.py), so tests/runtime,
tests/pipeline and tests/bench share one definition.
"""

from __future__ import annotations

import pytest

from trtpipe import cuda
from trtpipe.runtime.simulation import SimulatedCuda, make_tiny_classifier, simulated_flavor, tiny_spec, write_simulated_engine

#: The profile of ``sim_engine``: batch 1..4 (opt 2) of 3x8x8 images.
TINY_PROFILE = {"input": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}


@pytest.fixture
def tiny_classifier_onnx(tmp_path):
    """The tiny classifier ONNX (N, 3, 8, 8) -> (N, 5) logits, in tmp_path."""
    return make_tiny_classifier(tmp_path / "tiny.onnx")


@pytest.fixture
def sim_cuda():
    """The CUDA simulation, injected into trtpipe.cuda for the test."""
    simulation = SimulatedCuda()
    with cuda.using_runtime(simulation):
        yield simulation


@pytest.fixture
def sim_flavor(sim_cuda):
    """The simulated TensorRT 10.9, as a Flavor for ``TensorRTEngine(..., flavor=sim_flavor)``."""
    return simulated_flavor(sim_cuda)


@pytest.fixture
def sim_engine(tiny_classifier_onnx, tmp_path):
    """A simulated engine of the tiny classifier with profile batch 1..4, and its sidecar."""
    return write_simulated_engine(tiny_classifier_onnx, tmp_path / "tiny.engine", TINY_PROFILE, spec=tiny_spec())

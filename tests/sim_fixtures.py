"""Fixtures for everything that runs against the TensorRT/CUDA simulation (``trtpipe.runtime.simulation``).

Loaded for the whole suite as a pytest plugin (``pytest_plugins`` in tests/conftest.py), so tests/runtime,
tests/pipeline and tests/bench share one definition.

``sim_flavor`` (and everything built on it: ``sim_engine``, ``simulated_machine``, the bench's ``simulation``) is
parametrised over the simulated flavours, so each such test runs once against TensorRT 10.13, once against 11.4
and once against TensorRT-RTX 1.7, each offering exactly its recorded API (trtpipe/data/trt_api_*.json).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trtpipe import cuda
from trtpipe.flavors import using_flavors
from trtpipe.runtime.simulation import (
    SIMULATED_VERSIONS,
    SimulatedCuda,
    make_tiny_classifier,
    simulated_flavor,
    tiny_spec,
    write_simulated_engine,
)

#: The profile of ``sim_engine``: batch 1..4 (opt 2) of 3x8x8 images.
TINY_PROFILE = {"input": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}

#: Test id -> (flavour, version) of each simulated TensorRT.
SIMULATED_FLAVORS = {
    "trt10": ("tensorrt", SIMULATED_VERSIONS["tensorrt-10"]),
    "trt11": ("tensorrt", SIMULATED_VERSIONS["tensorrt-11"]),
    "rtx": ("tensorrt_rtx", SIMULATED_VERSIONS["tensorrt_rtx"]),
}


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


@pytest.fixture(params=list(SIMULATED_FLAVORS))
def sim_flavor(request, sim_cuda):
    """Each simulated TensorRT in turn (10.13, 11.4, RTX 1.7), as a Flavor for ``TensorRTEngine(..., flavor=...)``."""
    name, version = SIMULATED_FLAVORS[request.param]
    return simulated_flavor(sim_cuda, name, version)


@pytest.fixture
def sim_engine(tiny_classifier_onnx, tmp_path, sim_flavor):
    """A simulated engine of the tiny classifier with profile batch 1..4, built by ``sim_flavor``, and its sidecar."""
    return write_simulated_engine(tiny_classifier_onnx, tmp_path / "tiny.engine", TINY_PROFILE, spec=tiny_spec(),
                                  flavor=sim_flavor.name, version=sim_flavor.version)


@pytest.fixture
def simulated_machine(sim_cuda, sim_flavor, monkeypatch):
    """A whole machine simulated: CUDA, and ``sim_flavor`` as the one installed TensorRT (builder, runtime, inspect).

    Yields a namespace with ``cuda`` and ``flavor``.
    """
    import trtpipe.testing

    # Code that asks the real driver whether a GPU is here is told yes: the simulated one is.
    monkeypatch.setattr(trtpipe.testing, "gpu_unavailable_reason", lambda: None)
    with using_flavors(sim_flavor):
        yield SimpleNamespace(cuda=sim_cuda, flavor=sim_flavor)

"""Fixtures for the bench tests; the helpers live in bench_fixtures.py beside this file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from trtpipe import cuda

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_fixtures, importable by the test modules
from bench_fixtures import make_classifier


@pytest.fixture
def classifier_onnx(tmp_path) -> Path:
    return make_classifier(tmp_path / "tinynet.onnx")


@pytest.fixture
def simulation(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
    try:
        from trt_simulation import SimulatedCuda, make_tiny_classifier, simulated_flavor, tiny_spec, write_simulated_engine
    finally:
        sys.path.pop(0)
    onnx_path = make_tiny_classifier(tmp_path / "tiny.onnx")
    engine = write_simulated_engine(onnx_path, tmp_path / "tiny.engine", {"input": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))},
                                    spec=tiny_spec())
    sim = SimulatedCuda()
    with cuda.using_runtime(sim):
        yield engine, simulated_flavor(sim)

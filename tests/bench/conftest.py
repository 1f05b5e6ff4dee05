"""Fixtures for the bench tests; the helpers live in bench_fixtures.py beside this file.

The simulation fixtures (sim_cuda, sim_flavor, sim_engine, tiny_classifier_onnx) come from tests/sim_fixtures.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_fixtures, importable by the test modules
from bench_fixtures import make_classifier


@pytest.fixture
def classifier_onnx(tmp_path) -> Path:
    return make_classifier(tmp_path / "tinynet.onnx")


@pytest.fixture
def simulation(sim_engine, sim_flavor):
    """The tiny classifier as a simulated TensorRT engine (profile batch 1..4) and the simulated flavour."""
    return sim_engine, sim_flavor

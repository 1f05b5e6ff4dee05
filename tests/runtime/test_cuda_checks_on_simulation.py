"""The GPU checks of the CUDA layer (tests/gpu/cuda_checks.py) that need no torch, run against the CUDA simulation.

They pass on a GPU for real (make test-gpu) and here against the simulation: one set of rules for both.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gpu"))
from cuda_checks import CHECKS  # noqa: E402

from trtpipe import cuda
from trtpipe.runtime.simulation import SimulatedCuda


@pytest.mark.parametrize("check", [c for c in CHECKS if c.simulable], ids=lambda c: c.__name__)
def test_check_holds_on_the_simulation(check):
    simulation = SimulatedCuda(devices=[("NVIDIA Simulated A", 9, 0), ("NVIDIA Simulated B", 9, 0)])
    with cuda.using_runtime(simulation):
        assert check()
    assert simulation.live_allocations == 0 and not simulation.streams and simulation.live_graphs == 0

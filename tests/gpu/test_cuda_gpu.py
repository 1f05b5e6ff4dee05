"""trtpipe.cuda on a real GPU (make test-gpu; runs on a bare GPU machine without TensorRT): the checks in cuda_checks.py.

The same checks, where they need no torch, run in the CPU suite against the CUDA simulation
(tests/runtime/test_cuda_checks_on_simulation.py), so the simulation and the GPU are held to one set of rules.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_checks import CHECKS, Skip  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_cuda_layer(check, record_property):
    try:
        note = check()
    except Skip as why:
        pytest.skip(str(why))
    record_property("measured", note)

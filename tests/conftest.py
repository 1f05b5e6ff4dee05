"""Fixtures shared across the test suite: tiny ONNX models built in code, cached zoo exports."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


def pytest_collection_modifyitems(config, items):
    """Skips `gpu` tests on machines without a usable NVIDIA GPU, saying why."""
    from trtpipe.testing import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"no GPU: {reason}")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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

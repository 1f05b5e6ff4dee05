"""What `make engine` passes to `trtpipe build` (a dry run: nothing is built)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build_command(*variables: str) -> list[str]:
    dry = subprocess.run(["make", "-n", "-o", ".venv/bin/.installed", "engine", *variables], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    lines = [line for line in dry.stdout.splitlines() if " build " in line]
    assert len(lines) == 1, dry.stdout
    return shlex.split(lines[0])


def test_profile_variables_become_trtexec_profile_options(tmp_path):
    args = build_command(f"ONNX={tmp_path}/m.onnx", "MIN_SHAPES=images:1x3x32x32", "OPT_SHAPES=images:4x3x48x48",
                         "MAX_SHAPES=images:8x3x64x64")
    for option, shape in (("--minShapes", "1x3x32x32"), ("--optShapes", "4x3x48x48"), ("--maxShapes", "8x3x64x64")):
        assert args[args.index(option) + 1] == f"images:{shape}"
    assert "--shapes" not in args


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precisions_get_the_calibration_images(tmp_path, precision):
    args = build_command(f"ONNX={tmp_path}/m.onnx", f"PRECISION={precision}")
    assert args[args.index("--images") + 1] == "calib_data"
    assert ("--fidelity-target" in args) == (precision == "int8")

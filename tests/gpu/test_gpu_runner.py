"""`make test-gpu` itself, on this CPU machine: what a bare GPU machine, a machine without a GPU and a GPU with a too-old
driver get (runs in the default suite; it is not marked gpu)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tests" / "gpu" / "run_gpu_checks.py"


def bare_machine(tmp_path: Path, *blocked: str) -> dict[str, str]:
    """An environment where ``blocked`` modules (TensorRT, pytest ...) do not import: a bare GPU machine's view."""
    blocker = tmp_path / "blocked"
    for name in blocked:
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed on this machine')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TRTPIPE_EXPECT_GPU", "PYTEST_ADDOPTS")}
    env["PYTHONPATH"] = f"{blocker}{os.pathsep}{ROOT}"
    return env


def run(env, *args):
    return subprocess.run([sys.executable, str(RUNNER), *args], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_a_bare_gpu_machine_runs_the_cuda_checks_and_names_what_it_skips(tmp_path):
    """No TensorRT, no pytest: the CUDA checks run (on the simulation here; on the GPU there), the rest is listed."""
    out = tmp_path / "summary.json"
    done = run(bare_machine(tmp_path, "tensorrt", "tensorrt_rtx", "pytest"), "--simulate", "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(out.read_text())
    outcomes = {t["test"].rsplit("::", 1)[-1]: t for t in summary["tests"]}
    for name in ("pinned_and_device_round_trip", "graph_replays_the_copies_it_captured", "capture_rules", "current_device_is_per_thread"):
        assert outcomes[name]["outcome"] == "passed" and outcomes[name]["measured"], outcomes[name]
    assert outcomes["event_timing_of_a_known_gpu_workload"]["reason"] == "needs a real GPU (simulated run)"
    skipped_trt = [t for t in summary["tests"] if t["test"].endswith(("test_defects_gpu.py", "test_tensorrt_gpu.py"))]
    assert len(skipped_trt) == 2 and all("pytest is not installed" in t["reason"] for t in skipped_trt)
    assert summary["status"] == "ok" and summary["counts"]["failed"] == 0
    assert re.search(r"^\d+ passed, 0 failed, \d+ skipped$", done.stdout.strip().splitlines()[-1])


def test_without_a_gpu_everything_is_skipped_saying_why(tmp_path):
    from trtpipe.testing import gpu_hardware

    if gpu_hardware() is not None:
        pytest.skip("this machine has a GPU")
    out = tmp_path / "summary.json"
    done = run(bare_machine(tmp_path, "tensorrt", "tensorrt_rtx"), "--json", str(out))
    summary = json.loads(out.read_text())
    assert done.returncode == 0 and summary["status"] == "no-gpu"
    assert summary["tests"] and all(t["outcome"] == "skipped" and t["reason"].startswith("no GPU here: ") for t in summary["tests"])


def test_a_gpu_with_a_driver_too_old_for_cuda_python_fails_loudly(tmp_path):
    """Defect 6: "GPU here, CUDA unusable" is an error (exit 1), never a green run of skips."""
    from trtpipe.testing import gpu_status

    if gpu_status().usable:
        pytest.skip("CUDA works here")
    env = {**bare_machine(tmp_path, "tensorrt", "tensorrt_rtx"), "TRTPIPE_EXPECT_GPU": "1"}
    out = tmp_path / "summary.json"
    done = run(env, "--json", str(out))
    assert done.returncode == 1
    assert "CUDA cannot use it" in done.stderr and "cuda-python needs" in done.stderr
    assert json.loads(out.read_text())["status"] == "gpu-unusable"
    tests = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "gpu", "tests/gpu/test_cuda_gpu.py"],
                           env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert tests.returncode == 1 and re.search(r"\d+ errors? in", tests.stdout) and "CUDA cannot use it" in tests.stdout
    assert "skipped" not in tests.stdout


def test_make_test_gpu_needs_no_venv_and_no_download(tmp_path):
    """The target runs the runner with $(PYTHON) and the checkout on PYTHONPATH when there is no venv."""
    dry = subprocess.run(["make", "-n", "test-gpu", f"BIN={tmp_path}/no-venv", f"PYTHON={sys.executable}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert f"{sys.executable} tests/gpu/run_gpu_checks.py --json reports/test-gpu.json" in dry.stdout
    assert "pip install" not in dry.stdout and "-m venv" not in dry.stdout and ".installed" not in dry.stdout


@pytest.mark.parametrize("cuda_version, extra", [("12.4", "trt-cu12"), ("13.0", "trt-cu13")])
def test_make_venv_picks_the_extra_of_the_drivers_cuda_major(tmp_path, cuda_version, extra):
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text(f"#!/bin/sh\n[ \"$1\" = -L ] && echo 'GPU 0: NVIDIA Test' && exit 0\n"
                   f"echo '| NVIDIA-SMI 550.54   Driver Version: 550.54   CUDA Version: {cuda_version} |'\n")
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{smi.parent}{os.pathsep}{os.environ['PATH']}"}
    dry = subprocess.run(["make", "-n", "-B", f"{tmp_path}/venv/bin/.installed", f"VENV={tmp_path}/venv"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert re.search(rf"pip install -e '\.\[[a-z,]*{extra}\]'", dry.stdout), dry.stdout


def test_each_tensorrt_extra_pairs_cuda_python_of_its_cuda_major():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "trt" not in extras, "the unpinned trt extra resolved cuda-python 13 for CUDA 12 drivers"
    for name in ("trt-cu12", "trt-cu13", "rtx", "rtx-cu12"):
        requirements = {Requirement(r).name: Requirement(r) for r in extras[name]}
        major = 12 if name.endswith("cu12") else 13
        tensorrt = next(r for n, r in requirements.items() if n.startswith("tensorrt"))
        assert tensorrt.name.endswith(f"cu{major}") or (name == "rtx" and tensorrt.name == "tensorrt-rtx")
        cuda_python = requirements["cuda-python"].specifier
        assert f"{major}.9" in cuda_python and f"{major + 1}.0" not in cuda_python and f"{major - 1}.9" not in cuda_python

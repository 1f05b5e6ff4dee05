"""`make test-gpu`: the GPU checks, on a machine with a venv or on a bare GPU machine, with a JSON summary.

A bare GPU machine (Python, numpy, onnx, onnxruntime, torch, cuda-bindings; no TensorRT, no network) runs this with
trtpipe from the checkout on PYTHONPATH: nothing is downloaded or installed. What it does:

- a GPU CUDA cannot use (a driver older than cuda-python needs) fails at once, loudly, exit 1: never "all skipped";
- no GPU at all: every check is skipped, naming why, exit 0;
- otherwise the `gpu` tests run (tests/gpu, tests/bench/test_gpu_bench.py) under pytest when it is installed; the
  TensorRT ones skip, saying why, where no TensorRT is; without pytest the CUDA-layer checks (cuda_checks.py) run
  directly and the TensorRT tests are listed as skipped;
- ``--simulate`` runs the simulable CUDA checks against the CUDA simulation (how the CPU suite tests this runner).

The summary (``--json``, default reports/test-gpu.json) has the machine, why TensorRT tests were skipped, each test
with its outcome, seconds and reason or measurement, and the counts; the last line printed is
``N passed, M failed, K skipped``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

#: The gpu tests pytest runs (the bench's needs TensorRT too).
GPU_TESTS = ["tests/gpu", "tests/bench/test_gpu_bench.py"]


def machine(simulated: bool) -> dict:
    from trtpipe.testing import gpu_status

    info = {"python": platform.python_version(), "platform": platform.platform(), "simulated": simulated}
    try:
        from importlib.metadata import version

        info["cuda_bindings"] = version("cuda-bindings")
    except Exception:  # noqa: BLE001 - not installed
        info["cuda_bindings"] = None
    if simulated:
        return info
    status = gpu_status()
    info.update(gpu_hardware=status.hardware, cuda_usable=status.usable, cuda_problem=status.reason,
                driver_cuda=status.driver_cuda, runtime_cuda=status.runtime_cuda)
    if status.usable:
        from trtpipe import cuda

        info["gpus"] = [cuda.device_info(i).__dict__ for i in range(cuda.device_count())]
    return info


def tensorrt_reason(simulated: bool) -> str | None:
    if simulated:
        return "simulated run: only the CUDA checks run, against the simulation"
    from trtpipe.testing import tensorrt_unavailable_reason

    return tensorrt_unavailable_reason()


def run_with_pytest(pytest) -> list[dict]:
    results: list[dict] = []

    class Collect:
        def pytest_runtest_logreport(self, report):
            if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
                reason = None
                if report.skipped and isinstance(report.longrepr, tuple):
                    reason = report.longrepr[2]
                elif report.failed:
                    reason = str(report.longrepr).splitlines()[-1][:500]
                measured = dict(report.user_properties).get("measured")
                results.append({"test": report.nodeid, "outcome": report.outcome, "seconds": round(report.duration, 3),
                                "reason": reason, "measured": measured})

    pytest.main(["-m", "gpu", "-p", "no:cacheprovider", "-q", "-rs", *[str(ROOT / t) for t in GPU_TESTS]], plugins=[Collect()])
    return results


def run_directly(simulated: bool, trt_reason: str | None) -> list[dict]:
    """Without pytest: the CUDA-layer checks as plain functions; the TensorRT tests listed as skipped."""
    from cuda_checks import CHECKS, Skip

    from trtpipe import cuda

    results = []
    simulation = None
    if simulated:
        from trtpipe.runtime.simulation import SimulatedCuda

        simulation = SimulatedCuda()
    for check in CHECKS:
        name = f"tests/gpu/cuda_checks.py::{check.__name__}"
        if simulated and not check.simulable:
            results.append({"test": name, "outcome": "skipped", "seconds": 0.0, "reason": "needs a real GPU (simulated run)", "measured": None})
            continue
        start = time.perf_counter()
        outcome, reason, measured = "passed", None, None
        try:
            if simulation is not None:
                with cuda.using_runtime(simulation):
                    measured = check()
            else:
                measured = check()
        except Skip as why:
            outcome, reason = "skipped", str(why)
        except Exception as exc:  # noqa: BLE001 - a failing check is a result, reported with its message
            outcome, reason = "failed", f"{type(exc).__name__}: {exc}"[:500]
        results.append({"test": name, "outcome": outcome, "seconds": round(time.perf_counter() - start, 3), "reason": reason,
                        "measured": measured})
    why = "pytest is not installed here" + (f"; and {trt_reason}" if trt_reason else "")
    for module in ("tests/gpu/test_tensorrt_gpu.py", "tests/gpu/test_defects_gpu.py", "tests/bench/test_gpu_bench.py"):
        results.append({"test": module, "outcome": "skipped", "seconds": 0.0, "reason": why, "measured": None})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GPU checks of trtpipe with a JSON summary (make test-gpu)")
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "test-gpu.json", help="where to write the summary")
    parser.add_argument("--simulate", action="store_true", help="run the simulable CUDA checks on the CUDA simulation")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    summary: dict = {"machine": machine(args.simulate)}
    status = "ok"
    if not args.simulate:
        from trtpipe.testing import gpu_status

        gpu = gpu_status()
        if gpu.broken:
            print(f"ERROR: {gpu.broken}", file=sys.stderr)
            status = "gpu-unusable"
        elif not gpu.usable:
            status = "no-gpu"
    trt_reason = tensorrt_reason(args.simulate) if status == "ok" else None
    summary["tensorrt_tests_skipped_because"] = trt_reason
    if status == "gpu-unusable":
        tests = [{"test": "cuda", "outcome": "failed", "seconds": 0.0, "reason": summary["machine"].get("cuda_problem"), "measured": None}]
    elif status == "no-gpu":
        reason = f"no GPU here: {summary['machine'].get('cuda_problem')}"
        from cuda_checks import CHECKS

        tests = [{"test": f"tests/gpu/cuda_checks.py::{c.__name__}", "outcome": "skipped", "seconds": 0.0, "reason": reason, "measured": None}
                 for c in CHECKS]
    else:
        try:
            import pytest
        except ImportError:
            pytest = None
        tests = run_with_pytest(pytest) if pytest is not None and not args.simulate else run_directly(args.simulate, trt_reason)
    counts = {key: sum(t["outcome"] == key for t in tests) for key in ("passed", "failed", "skipped")}
    if counts["failed"] and status == "ok":
        status = "failed"
    summary.update(status=status, tests=tests, counts=counts, seconds=round(time.perf_counter() - started, 1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=1) + "\n")
    for test in tests:
        if test["outcome"] != "passed":
            print(f"{test['outcome'].upper():8} {test['test']}: {test['reason']}")
    print(f"test-gpu: {status}; summary in {args.json} ({summary['seconds']} s)")
    print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    return 1 if status in ("gpu-unusable", "failed") else 0


if __name__ == "__main__":
    sys.exit(main())

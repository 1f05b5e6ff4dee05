"""Fixed overhead of trtpipe's engine call over the bare backend call, in one run.

    .venv/bin/python tests/perf/bench_overhead.py [--repeat 2000] [--mobilenet PATH.onnx]
- tiny model: OnnxRuntimeEngine.infer vs session.run (target <= 20 us);
- mobilenetv2 batch 1 on ONNX Runtime CPU (exported with random weights unless given): target <= 2 %;
- TensorRTEngine host-side cost per call against the CUDA/TensorRT SIMULATION (labelled as such).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np



def paired_us(bare, ours, repeat: int, rounds: int = 7) -> tuple[float, float]:
    """Median microseconds per call of ``bare`` and ``ours``, interleaved in rounds to share the noise."""
    bare(), ours()
    results = {0: [], 1: []}
    for _ in range(rounds):
        for key, fn in ((0, bare), (1, ours)):
            start = time.perf_counter()
            for _ in range(repeat):
                fn()
            results[key].append((time.perf_counter() - start) / repeat * 1e6)
    return float(np.median(results[0])), float(np.median(results[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--mobilenet", help="mobilenetv2 ONNX; default: export one with random weights")
    args = parser.parse_args()
    import onnxruntime as ort

    from trtpipe.runtime.simulation import SimulatedCuda, make_tiny_classifier, simulated_flavor, write_simulated_engine
    from trtpipe import cuda
    from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine
    from trtpipe.runtime.tensorrt_engine import TensorRTEngine

    work = Path(tempfile.mkdtemp(prefix="bench_overhead_"))
    tiny = make_tiny_classifier(work / "tiny.onnx")
    x = np.random.default_rng(0).normal(size=(1, 3, 8, 8)).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(tiny), options, providers=["CPUExecutionProvider"])
    engine = OnnxRuntimeEngine(tiny, threads=1)
    bare, ours = paired_us(lambda: session.run(None, {"input": x}), lambda: engine.infer({"input": x}), args.repeat)
    print(f"tiny model, ONNX Runtime CPU: session.run {bare:.1f} us, engine.infer {ours:.1f} us -> overhead {ours - bare:+.1f} us (target <= 20)")

    mobilenet = args.mobilenet
    if mobilenet is None:
        from trtpipe.zoo.export import export_model  # build tooling: benchmarks only

        mobilenet = export_model("mobilenetv2", work / "mobilenetv2.onnx", weights="random").onnx_path
    session = ort.InferenceSession(str(mobilenet), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    image = np.random.default_rng(1).normal(size=(1, 3, 224, 224)).astype(np.float32)
    engine = OnnxRuntimeEngine(mobilenet)
    bare, ours = paired_us(lambda: session.run(None, {name: image}), lambda: engine.infer({name: image}), max(20, args.repeat // 100), rounds=9)
    print(f"mobilenetv2 batch 1, ONNX Runtime CPU: session.run {bare / 1e3:.3f} ms, engine.infer {ours / 1e3:.3f} ms -> overhead {100 * (ours - bare) / bare:+.2f} % (target <= 2)")

    simulation = SimulatedCuda()
    with cuda.using_runtime(simulation):
        path = write_simulated_engine(tiny, work / "tiny.engine", {"input": ((1, 3, 8, 8),) * 3})
        with TensorRTEngine(path, flavor=simulated_flavor(simulation)) as trt_engine:
            trt_engine.infer({"input": x})  # makes the simulation's own ORT session
            session = trt_engine._engine._session
            bare, ours = paired_us(lambda: session.run(None, {"input": x}), lambda: trt_engine.infer({"input": x}), args.repeat // 4)
    print(
        f"TensorRT path (SIMULATED: fake CUDA + TensorRT in Python, ORT computes): {ours - bare:.1f} us host-side per call "
        "over the computation (an upper bound: it includes the simulation's own Python bookkeeping)"
    )


if __name__ == "__main__":
    main()

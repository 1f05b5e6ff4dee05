"""Issue 20's figures: engine sizes full vs --stripWeights, refit time, a two-profile engine against single ones.

    .venv/bin/python tests/perf/bench_travel.py [--models engines/mobilenetv2.onnx engines/efficientnet_lite0.onnx]
        [--images calib_data] [--max-images 64] [--out /tmp/bench_travel] [--json travel.json]

What is real and what is not, per row:

- TensorRT-RTX builds are real (``tensorrt_rtx`` on this machine's CPU, ahead of time): FP32 and INT8 (Q/DQ from
  ``--max-images`` calibration images, percentile, no fidelity search: the sizes are the point here), each full and
  with ``--stripWeights``; a build TensorRT-RTX refuses here is reported with its error, not a size.
- "initializer bytes" are the network ONNX's weights by kind (floating point; INT8 of a Q/DQ ONNX): an indication
  of what STRIP_PLAN may leave out, computed from the ONNX, not measured from a plan.
- Refit times come from the simulation (TensorRT 10.13's recorded API over ONNX Runtime; labelled "simulated"): they
  time trtpipe's refit path (structure check + OnnxParserRefitter + refit + serialize), not a GPU's refit.
- Whether TensorRT-RTX can refit without a GPU is tried for real (the Refitter takes a deserialized engine).
- The two-profile engine (batch 1, and 8..32) and the two single-profile engines are real TensorRT-RTX FP32 builds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from trtpipe.errors import TrtpipeError  # noqa: E402
from trtpipe.spec import BatchRange, BuildConfig, ProfileOptions  # noqa: E402


def _build(onnx_path: Path, output: Path, config: BuildConfig) -> dict:
    from trtpipe.builder.builder import build_engine

    started = time.perf_counter()
    try:
        result = build_engine(onnx_path, output, config, force=True)
    except TrtpipeError as exc:
        return {"engine": output.name, "error": exc.message.split(": ", 1)[-1][:240]}
    return {"engine": output.name, "bytes": result.sidecar.engine_bytes, "seconds": round(time.perf_counter() - started, 2),
            "network_onnx": result.sidecar.network_onnx_path}


def initializer_bytes(onnx_path: Path) -> dict[str, int]:
    """Bytes of the network ONNX's initializers by kind: floating point (FLOAT, FLOAT16, BFLOAT16: what the
    simulation refits) and INT8/UINT8 (a Q/DQ ONNX's quantized weights, which the simulation does not refit)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    sizes = {"float": 0, "int8": 0}
    for tensor in model.graph.initializer:
        kind = "float" if tensor.data_type in (1, 10, 16) else "int8" if tensor.data_type in (2, 3) else None
        if kind:
            sizes[kind] += numpy_helper.to_array(tensor).nbytes
    return sizes


def rtx_sizes(onnx_path: Path, out: Path, images: Path, max_images: int) -> list[dict]:
    rows = []
    stem = onnx_path.stem
    for precision in ("fp32", "int8"):
        extra = dict(calib_images=str(images), calib_max_images=max_images, fidelity_target="none") if precision == "int8" else {}
        base = BuildConfig(precision=precision, flavor="tensorrt_rtx", batch=BatchRange(1, 1, 1), **extra)
        full = _build(onnx_path, out / f"{stem}_{precision}.engine", base)
        network = Path(full.get("network_onnx") or onnx_path)
        # The stripped build parses the same network ONNX (the Q/DQ one for INT8: no second calibration).
        stripped = _build(network, out / f"{stem}_{precision}_stripped.engine",
                          BuildConfig(precision=precision, flavor="tensorrt_rtx", batch=BatchRange(1, 1, 1), strip_weights=True))
        rows.append({"model": stem, "precision": precision, "full": full, "stripped": stripped,
                     "network_onnx_initializer_bytes_computed": initializer_bytes(network)})
    return rows


def rtx_profiles(onnx_path: Path, out: Path) -> dict:
    stem = onnx_path.stem
    one = _build(onnx_path, out / f"{stem}_b1.engine", BuildConfig(flavor="tensorrt_rtx", batch=BatchRange(1, 1, 1)))
    big = _build(onnx_path, out / f"{stem}_b8-32.engine", BuildConfig(flavor="tensorrt_rtx", batch=BatchRange(8, 16, 32)))
    both = _build(onnx_path, out / f"{stem}_b1+b8-32.engine", BuildConfig(
        flavor="tensorrt_rtx", batch=BatchRange(1, 1, 1), extra_profiles=(ProfileOptions(BatchRange(8, 16, 32)),)))
    return {"model": stem, "batch 1": one, "batch 8:16:32": big, "two profiles": both}


def rtx_refit_without_gpu(engine: Path) -> str:
    """Tries TensorRT-RTX's path to a Refitter here: deserializing the plan (the Refitter takes the ICudaEngine)."""
    import tensorrt_rtx as trt

    logger = trt.Logger(trt.Logger.ERROR)
    runtime = trt.Runtime(logger)
    deserialized = runtime.deserialize_cuda_engine(engine.read_bytes())
    if deserialized is None:
        return "no: deserialize_cuda_engine returned None without a GPU, so there is no ICudaEngine to give trt.Refitter"
    refitter = trt.Refitter(deserialized, logger)
    return f"deserialized; refitter made ({len(refitter.get_all_weights())} weights)"


def simulated_refit(onnx_path: Path, out: Path, repeats: int = 3) -> dict:
    """Refit time of a --stripWeights --refit engine in the simulation (TensorRT 10.13's recorded API)."""
    from trtpipe import cuda
    from trtpipe.builder.builder import build_engine
    from trtpipe.flavors import using_flavors
    from trtpipe.refit import refit_plan
    from trtpipe.runtime.simulation import SimulatedCuda, simulated_flavor

    simulation = SimulatedCuda()
    flavor = simulated_flavor(simulation, "tensorrt", "10.13.3.9")
    with cuda.using_runtime(simulation), using_flavors(flavor):
        built = build_engine(onnx_path, out / f"{onnx_path.stem}_sim_stripped.engine",
                             BuildConfig(batch=BatchRange(1, 1, 1), strip_weights=True, refit=True), force=True)
        times, walls = [], []
        for index in range(repeats):
            started = time.perf_counter()
            result = refit_plan(built.engine_path, onnx_path, out / f"{onnx_path.stem}_sim_refitted{index}.engine")
            walls.append(time.perf_counter() - started)
            times.append(result.seconds)
    return {"model": onnx_path.stem, "label": "simulated (TensorRT 10.13 API over ONNX Runtime, CPU)",
            "refit_ms": [round(t * 1e3, 1) for t in times], "refit_plan_wall_ms": [round(t * 1e3, 1) for t in walls],
            "stripped_bytes_simulated": built.sidecar.engine_bytes, "refitted_bytes_simulated": result.sidecar.engine_bytes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", type=Path,
                        default=[Path("engines/mobilenetv2.onnx"), Path("engines/efficientnet_lite0.onnx")])
    parser.add_argument("--images", type=Path, default=Path("calib_data"), help="INT8 calibration images")
    parser.add_argument("--max-images", type=int, default=64)
    parser.add_argument("--out", type=Path, help="where the engines go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_travel_"))
    out.mkdir(parents=True, exist_ok=True)
    figures: dict = {"sizes": [], "profiles": [], "refit_simulated": [], "out": str(out)}
    for model in args.models:
        figures["sizes"] += rtx_sizes(model, out, args.images, args.max_images)
        figures["profiles"].append(rtx_profiles(model, out))
        figures["refit_simulated"].append(simulated_refit(model, out))
    figures["rtx_refit_without_gpu"] = rtx_refit_without_gpu(out / f"{args.models[0].stem}_fp32.engine")
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A comparison report from one machine, every kind of row in it: ONNX Runtime FP32 and INT8, a CPU fallback run of a
TensorRT-RTX engine, a simulated run of that engine (a functional check) and a Triton concurrency sweep.

    .venv/bin/python tests/perf/bench_report_demo.py [--out reports/demo] [--duration 1s] [--requests 64]

Everything goes through the ``trtpipe`` CLI, one command at a time, and each command is printed before it runs,
so the report can be rebuilt by hand. Load is bounded: ``--duration`` per batch and mode, ``--requests`` per
concurrency level. The ONNX Runtime runs use 2 threads (``--threads``), so the Triton run is not starved of the
cores the client also needs. On a machine without a GPU (like the CI machines) the charts say so in their caption.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

TRTPIPE = [sys.executable, "-m", "trtpipe.cli.main"]


def run(*argv: str) -> None:
    print("$ trtpipe " + " ".join(shlex.quote(a) for a in argv), flush=True)
    subprocess.run([*TRTPIPE, *argv], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports/demo", help="folder for models, reports and the comparison (default reports/demo)")
    parser.add_argument("--model", default="efficientnet_lite0", help="zoo model (default efficientnet_lite0: real weights)")
    parser.add_argument("--duration", default="1s", help="per batch and mode (default 1s)")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--concurrency", default="1:4:1")
    parser.add_argument("--requests", default="64", help="per concurrency level (default 64)")
    args = parser.parse_args()

    from trtpipe.serve.server import free_port

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx = out / f"{args.model}.onnx"
    int8 = out / f"{args.model}.int8.onnx"
    engine = out / f"{args.model}_fp32.engine"
    timing = ["--batch", args.batch, "--duration", args.duration, "--threads", args.threads]
    started = time.perf_counter()

    if not onnx.exists():
        run("export", args.model, "-o", str(onnx))
    if not int8.exists():
        run("calib-data", str(out / "calib"), "--count", "64")
        run("calibrate", str(onnx), "--images", str(out / "calib"), "--calib-method", "percentile", "--max-images", "64",
            "-o", str(int8))
    run("build", str(onnx), "--flavor", "tensorrt_rtx", "--batch", "1:8:8", "-o", str(engine))

    run("bench", str(onnx), *timing, "--json", str(out / "onnxruntime_fp32.json"))
    run("bench", str(int8), *timing, "--json", str(out / "onnxruntime_int8.json"))
    run("bench", str(engine), "--backend", "auto", *timing, "--json", str(out / "engine_fallback.json"))
    run("bench", str(engine), "--simulate", "--batch", args.batch, "--duration", "0.2s", "--json", str(out / "engine_simulated.json"))

    http, grpc = free_port(), free_port()
    serve = [*TRTPIPE, "serve", str(onnx), "--http-port", str(http), "--grpc-port", str(grpc)]
    print("$ trtpipe " + " ".join(shlex.quote(a) for a in serve[3:]) + " &", flush=True)
    server = subprocess.Popen(serve, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in server.stdout:
            print("  " + line.rstrip(), flush=True)
            if line.startswith("Triton ready"):
                break
        else:
            sys.exit(f"trtpipe serve stopped before Triton was ready (exit {server.wait()})")
        run("bench", "--url", f"127.0.0.1:{grpc}", "--protocol", "grpc", "--model", args.model, "--name", args.model,
            "--precision", "fp32", "--concurrency", args.concurrency, "--requests", args.requests,
            "--json", str(out / "triton_grpc.json"))
    finally:
        server.terminate()  # trtpipe serve stops Triton on SIGTERM
        server.wait(timeout=60)

    reports = [str(out / f"{name}.json") for name in
               ("onnxruntime_fp32", "onnxruntime_int8", "engine_fallback", "engine_simulated", "triton_grpc")]
    run("report", *reports, "-o", str(out / "compare.md"), "--baseline", str(out / "onnxruntime_fp32.json"))
    print(f"demo report: {out / 'compare.md'} and its charts, in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

"""trtpipe serve: export a model to a Triton repository and run a real Triton Inference Server on it."""

from __future__ import annotations

import argparse
import signal
import sys

from trtpipe.cli.triton_export import add_repository_arguments, export_from_args

VERB = "serve"
HELP = "serve an engine or ONNX with Triton Inference Server on 127.0.0.1 (HTTP and gRPC) until Ctrl-C/SIGTERM"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a TensorRT engine (with its sidecar) or an .onnx file")
    parser.add_argument("--http-port", type=int, default=18800, help="default 18800")
    parser.add_argument("--grpc-port", type=int, default=18801, help="default 18801")
    parser.add_argument("--metrics-port", type=int, help="Prometheus metrics port (default: metrics off)")
    parser.add_argument("--repo", help="write the repository here and keep it (default: a temporary folder, removed at exit)")
    parser.add_argument("--tritonserver", metavar="PATH", help="the tritonserver binary (default: on PATH, else the bundled one)")
    add_repository_arguments(parser)


class _Stop(KeyboardInterrupt):
    """Raised in the main thread by SIGINT/SIGTERM, so that leaving the ``with`` block stops the server.

    Installed explicitly for SIGINT too: a process started in the background inherits SIGINT ignored.
    """


def _raise_stop(signum, frame):
    raise _Stop()


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trtpipe.errors import ConfigError
    from trtpipe.io import check_outputs
    from trtpipe.serve.server import find_tritonserver

    check_outputs(dirs={"--repo": args.repo})

    installation = find_tritonserver(args.tritonserver)
    is_engine = Path(args.model).suffix != ".onnx"
    if is_engine and "tensorrt" not in installation.backends:
        raise ConfigError(
            f"{installation.describe()} has no TensorRT backend to run the engine {args.model}",
            "run the repository (trtpipe triton-export) in NVIDIA's Triton container on a GPU machine, "
            "or serve the ONNX here: trtpipe serve MODEL.onnx",
        )
    onnx_runner = "onnxruntime" if "onnxruntime" in installation.backends else "python"
    if not is_engine and onnx_runner == "python":
        print(f"note: {installation.describe()} has no onnxruntime backend; the network model runs "
              "ONNX Runtime inside the Python backend (labelled in its config.pbtxt)")
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _export_and_serve(args, installation, onnx_runner)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _export_and_serve(args: argparse.Namespace, installation, onnx_runner: str) -> int:
    import tempfile
    from pathlib import Path

    from trtpipe.serve.server import ServerError, TritonServer

    with tempfile.TemporaryDirectory(prefix="trtpipe-repo-") as scratch:
        repo = Path(args.repo) if args.repo else Path(scratch) / "model_repository"
        result = export_from_args(args, repo, onnx_runner)
        print(result.summary())
        server = TritonServer(repo, http_port=args.http_port, grpc_port=args.grpc_port,
                              metrics_port=args.metrics_port, installation=installation)
        try:
            with server:
                print(f"Triton ready: HTTP http://{server.http_url}  gRPC {server.grpc_url}  "
                      f"models {result.network_name}, {result.pipeline_name}")
                print(f"  try: python samples/triton_client.py IMAGE --url {server.http_url} --model {result.pipeline_name}")
                print("  Ctrl-C or SIGTERM stops it", flush=True)
                code = server.wait()
                raise ServerError(f"Triton exited by itself with code {code}:\n{server.log_tail()}", "see the log lines above")
        except KeyboardInterrupt:  # Ctrl-C, or _Stop from SIGTERM
            print("Triton stopped", file=sys.stderr)
            return 0

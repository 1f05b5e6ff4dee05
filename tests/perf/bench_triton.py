"""Triton serving of efficientnet_lite0 on this machine: 16 concurrent clients with and without dynamic batching,
and the per-request overhead of Triton over an in-process ``Pipeline`` call.

    .venv/bin/python tests/perf/bench_triton.py [--onnx engines/efficientnet_lite0.onnx] [--rounds 4] [--requests 128] [--json out.json]

Each configuration gets its own Triton on 127.0.0.1 (free ports); both run side by side and take turns in
interleaved rounds (this machine's 2 cores are shared, so load from elsewhere hits both alike), and both are
stopped at the end. Clients send JPEG file
bytes of four scikit-image photos to ``<name>_pipeline`` over HTTP, one HTTP client per thread. A good request
"fails" if it errors or its top-5 differs from the same server's sequential answer for that photo. Load is
bounded: ``--rounds`` x ``--requests`` per configuration, each round at most ``--time-limit`` seconds.

The network model runs with ONNX Runtime on the CPU; on a Triton without the onnxruntime backend (the one
bundled in nvidia-pytriton) that is ONNX Runtime inside the Python backend, and the output says so.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def encode_photos() -> dict[str, bytes]:
    import cv2
    import skimage.data

    return {
        name: cv2.imencode(".jpg", np.ascontiguousarray(getattr(skimage.data, name)()[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        for name in PHOTOS
    }


class Client:
    """One HTTP client per thread (tritonclient's HTTP client runs on gevent and must stay in its thread)."""

    def __init__(self, url: str, model: str):
        self.url, self.model = url, model
        self._local, self._clients, self._lock = threading.local(), [], threading.Lock()

    def top5(self, data: bytes) -> tuple[int, ...]:
        import tritonclient.http as http

        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = http.InferenceServerClient(self.url, network_timeout=120)
            with self._lock:
                self._clients.append(client)
        array = np.frombuffer(data, np.uint8).reshape(1, -1)
        image = http.InferInput("image", list(array.shape), "UINT8")
        image.set_data_from_numpy(array)
        result = client.infer(self.model, [image], outputs=[http.InferRequestedOutput("class_ids")])
        return tuple(int(i) for i in result.as_numpy("class_ids")[0])

    def close(self) -> None:
        for client in self._clients:
            client.close()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_load(client: Client, photos: dict[str, bytes], expected: dict[str, tuple], clients: int, requests: int, time_limit: float) -> dict:
    """``clients`` threads send ``requests`` in total (round-robin over the photos), stopping at ``time_limit``."""
    names = [PHOTOS[i % len(PHOTOS)] for i in range(requests)]
    per_thread = [names[i::clients] for i in range(clients)]
    deadline = time.monotonic() + time_limit
    latencies, failures, lock = [], [], threading.Lock()

    def worker(work: list[str]) -> None:
        for name in work:
            if time.monotonic() > deadline:
                return
            start = time.perf_counter()
            try:
                answer = client.top5(photos[name])
                problem = None if answer == expected[name] else f"{name}: {answer} != {expected[name]}"
            except Exception as exc:  # noqa: BLE001 - a benchmark counts failures, whatever they are
                problem = f"{name}: {type(exc).__name__}: {exc}"
            elapsed = (time.perf_counter() - start) * 1e3
            with lock:
                (failures.append(problem) if problem else latencies.append(elapsed))

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, per_thread))
    wall = time.perf_counter() - start
    return {"latencies": latencies, "failures": failures, "throughput": len(latencies) / wall}


def network_stats(url: str, model: str) -> tuple[int, int]:
    import tritonclient.http as http

    with http.InferenceServerClient(url) as client:
        stats = client.get_inference_statistics(model)["model_stats"][0]
    return stats["inference_count"], stats["execution_count"]


def start_configuration(onnx: Path, dynamic: bool, args, work: Path, installation, stack: contextlib.ExitStack):
    """Exports and starts one configuration's Triton (stopped by ``stack``); returns (server, client, export)."""
    from trtpipe.serve.server import TritonServer, free_port
    from trtpipe.serve.triton_export import export_repository

    runner = "onnxruntime" if "onnxruntime" in installation.backends else "python"
    repo = work / ("repo_dynamic" if dynamic else "repo_plain")
    export = export_repository(
        onnx, repo, name="lite0", max_batch=8, queue_delay_us=args.queue_delay_us, dynamic_batching=dynamic, onnx_runner=runner
    )
    server = stack.enter_context(TritonServer(repo, http_port=free_port(), grpc_port=free_port(), installation=installation))
    client = Client(server.http_url, "lite0_pipeline")
    stack.callback(client.close)  # runs before the server stops: open connections would delay its shutdown
    return server, client, export


def summarise(rounds: list[dict], dynamic: bool, runtime: str, batch_stats: tuple[int, int]) -> dict:
    latencies = [ms for r in rounds for ms in r["latencies"]]
    failures = [f for r in rounds for f in r["failures"]]
    inferences, executions = batch_stats
    return {
        "dynamic_batching": dynamic,
        "network_runtime": runtime,
        "requests_sent": len(latencies) + len(failures),
        "failed_good_requests": len(failures),
        "failures_sample": failures[:3],
        "throughput_rps_per_round": [round(r["throughput"], 1) for r in rounds],
        "throughput_rps": round(statistics.median(r["throughput"] for r in rounds), 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "mean_network_batch": round(inferences / max(executions, 1), 2),
    }


def measure_overhead(client: Client, onnx: Path, data: bytes, repeat: int) -> dict:
    """Sequential, one request at a time, interleaved: Triton (HTTP) vs decode + in-process Pipeline call."""
    import cv2

    from trtpipe.pipeline.pipeline import Pipeline

    triton_ms, local_ms = [], []
    with Pipeline.from_onnx(onnx) as pipe:
        encoded = np.frombuffer(data, np.uint8)
        pipe(cv2.imdecode(encoded, cv2.IMREAD_COLOR))
        for _ in range(repeat):
            start = time.perf_counter()
            client.top5(data)
            triton_ms.append((time.perf_counter() - start) * 1e3)
            start = time.perf_counter()
            pipe(cv2.imdecode(encoded, cv2.IMREAD_COLOR))
            local_ms.append((time.perf_counter() - start) * 1e3)
        backend = pipe.backend
    triton, local = statistics.median(triton_ms), statistics.median(local_ms)
    return {
        "repeat": repeat,
        "triton_http_median_ms": round(triton, 2),
        "in_process_median_ms": round(local, 2),
        "in_process_backend": backend,
        "overhead_ms": round(triton - local, 2),
        "overhead_percent": round(100 * (triton - local) / local, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", help="efficientnet_lite0 ONNX with its .preprocess.json (default: export it)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=128, help="requests per round and configuration (default 128)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per configuration (default 4)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per round at most (default 60)")
    parser.add_argument("--queue-delay-us", type=int, default=2000)
    parser.add_argument("--overhead-repeat", type=int, default=40)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from trtpipe.serve.server import find_tritonserver

    installation = find_tritonserver()
    work = Path(tempfile.mkdtemp(prefix="bench_triton_"))
    if args.onnx:
        onnx = Path(args.onnx)
    else:
        from trtpipe.zoo.export import export_model

        onnx = export_model("efficientnet_lite0", work / "efficientnet_lite0.onnx").onnx_path
    photos = encode_photos()
    print(f"{installation.describe()}; {args.clients} clients, {args.rounds} interleaved rounds of "
          f"{args.requests} requests per configuration", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        # Both servers run side by side and take turns, so that load from other processes hits both alike.
        configs = {dynamic: start_configuration(onnx, dynamic, args, work, installation, stack) for dynamic in (True, False)}
        expected, before, rounds = {}, {}, {True: [], False: []}
        for dynamic, (server, client, _) in configs.items():
            expected[dynamic] = {name: client.top5(data) for name, data in photos.items()}  # sequential answers
            run_load(client, photos, expected[dynamic], args.clients, args.clients * 2, 60)  # warm-up
            before[dynamic] = network_stats(server.http_url, "lite0")
        for round_index in range(args.rounds):
            for dynamic, (server, client, _) in configs.items():
                rounds[dynamic].append(run_load(client, photos, expected[dynamic], args.clients, args.requests, args.time_limit))
                print(f"  round {round_index + 1} dynamic batching {'on ' if dynamic else 'off'}: "
                      f"{rounds[dynamic][-1]['throughput']:.1f} req/s", file=sys.stderr)
        rows = []
        for dynamic, (server, client, export) in configs.items():
            after = network_stats(server.http_url, "lite0")
            stats = (after[0] - before[dynamic][0], after[1] - before[dynamic][1])
            rows.append(summarise(rounds[dynamic], dynamic, export.network_runtime, stats))
        overhead = measure_overhead(configs[True][1], onnx, photos["chelsea"], args.overhead_repeat)

    print(f"\nefficientnet_lite0 behind Triton, {args.clients} concurrent HTTP clients, JPEG photos, network: {rows[0]['network_runtime']}\n")
    print("| dynamic batching | requests | failed good | throughput (req/s, median of rounds) | per round | p50 (ms) | p99 (ms) | mean network batch |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {'on' if row['dynamic_batching'] else 'off'} | {row['requests_sent']} | {row['failed_good_requests']} | "
              f"{row['throughput_rps']} | {row['throughput_rps_per_round']} | {row['p50_ms']} | {row['p99_ms']} | {row['mean_network_batch']} |")
    print(f"\nper-request overhead, one client, sequential (median of {overhead['repeat']}): Triton HTTP "
          f"{overhead['triton_http_median_ms']} ms vs in-process Pipeline ({overhead['in_process_backend']}, decode included) "
          f"{overhead['in_process_median_ms']} ms: +{overhead['overhead_ms']} ms ({overhead['overhead_percent']}%)")
    if args.json:
        Path(args.json).write_text(json.dumps({"configurations": rows, "overhead": overhead}, indent=2) + "\n")
    if any(row["failed_good_requests"] for row in rows):
        sys.exit(f"failed good requests: {[row['failures_sample'] for row in rows]}")


if __name__ == "__main__":
    main()

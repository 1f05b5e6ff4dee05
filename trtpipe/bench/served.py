"""Load test of a model served by Triton Inference Server, as perf_analyzer's concurrency mode does it.

    report = load_test("127.0.0.1:8001", "lite0", LoadSettings(concurrency=(1, 2, 4), protocol="grpc", requests=200))

At each concurrency level N, N client threads each keep one request outstanding (send, wait for the
response, send the next), so N requests are always in flight. Per level the report gets:

- client side: every successful request's latency from send to response (``perf_counter``), summarised as
  p50/p90/p95/p99, and throughput = successful requests (× the request's batch) over the level's wall time;
- server side: Triton's statistics extension (``get_inference_statistics``) read before and after the level:
  counts and cumulative nanoseconds of success, queue, compute input/infer/output, so the means per request
  are exact for the level (Triton keeps no percentiles). Models other than the one loaded whose counts moved
  (a pipeline's network called through BLS, an ensemble's steps) are listed too.

Each level warms up first (excluded), then runs for a fixed request count or a duration. Request data is
random for numeric inputs of known shape (perf_analyzer's default) or comes from files (``--input-data``):
an encoded image for a model that takes image bytes, a ``.npy`` array for a tensor input.

tritonclient does the protocol (HTTP or gRPC); threads, not tritonclient's async API, keep requests in
flight, because its HTTP client runs on gevent and must stay in the thread that made it: one client per
thread is the pattern that works for both protocols.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from trtpipe.bench.environment import capture_environment
from trtpipe.bench.measure import Progress, Samples
from trtpipe.bench.report import SERVER_STAGES, BenchReport, BenchResult
from trtpipe.bench.stats import DEFAULT_PERCENTILES, summarize
from trtpipe.errors import ConfigError, DependencyError, InputError

PROTOCOLS = ("http", "grpc")

#: Triton data types -> numpy (the tensor data types of Triton's model configuration, less BYTES/BF16).
_NUMPY_TYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}


@dataclass(frozen=True)
class LoadSettings:
    """How to load the server. A level ends after ``requests`` requests, or else after ``duration_s``."""

    concurrency: tuple[int, ...] = (1,)  # levels, in order (perf_analyzer's --concurrency-range)
    protocol: str = "http"  # http | grpc
    batch: int = 1  # images (rows) per request; needs a model with max_batch_size >= batch when > 1
    requests: int | None = None  # successful + failed requests per level; None: by duration
    duration_s: float = 3.0  # per level, when ``requests`` is None
    warmup_s: float = 0.2  # per level, excluded; at least one request per client
    timeout_s: float = 60.0  # one request at most
    percentiles: tuple[float, ...] = ()  # beyond p50/p90/p95/p99

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol {self.protocol!r} is unknown, expected http or grpc", "use --protocol http or grpc")
        if not self.concurrency or min(self.concurrency) < 1:
            raise ConfigError(f"concurrency levels {list(self.concurrency)}: expected positive numbers", "e.g. --concurrency 1:16:2")
        if self.batch < 1:
            raise ConfigError(f"request batch {self.batch}: expected >= 1", "e.g. --batch 1")
        if self.requests is not None and self.requests < max(self.concurrency):
            raise ConfigError(
                f"--requests {self.requests} per level is fewer than the highest concurrency {max(self.concurrency)}",
                f"send at least one request per client: --requests {max(self.concurrency) * 8} or more",
            )


def parse_concurrency(text: str) -> tuple[int, ...]:
    """perf_analyzer's ``START:END:STEP`` (END included, STEP added; default 1), or a list ``1,2,4,8``.

    Raises:
        ConfigError: anything else, or a level below 1.
    """
    text = str(text).strip()
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, end, step = (parts + [1])[:3]
            if start < 1 or end < start or step < 1:
                raise ValueError
            return tuple(range(start, end + 1, step))
        levels = tuple(int(p) for p in text.split(",") if p.strip())
        if not levels or min(levels) < 1:
            raise ValueError
        return levels
    except ValueError:
        raise ConfigError(
            f"--concurrency {text!r} is not START:END[:STEP] with 1 <= START <= END, nor a list of positive numbers",
            "write e.g. --concurrency 1:16:2 (1, 3, 5, ... 15, as perf_analyzer) or --concurrency 1,2,4,8,16",
        ) from None


def load_input_data(specs: Sequence[str]) -> dict[str, np.ndarray]:
    """``--input-data NAME:FILE``: a ``.npy`` array, or any other file's bytes as a uint8 vector (an encoded image).

    Raises:
        InputError: not NAME:FILE, or a file that cannot be read.
    """
    data = {}
    for spec in specs:
        name, sep, file = spec.rpartition(":")
        if not sep or not name or not file:
            raise InputError(f"--input-data {spec!r} is not NAME:FILE", "e.g. --input-data image:samples/images/chelsea.jpg")
        path = Path(file)
        if not path.is_file():
            raise InputError(f"--input-data {spec}: no such file {path}", "give an existing .npy file or an encoded image")
        try:
            data[name] = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.fromfile(path, np.uint8)
        except (OSError, ValueError) as exc:
            raise InputError(f"--input-data {spec}: cannot read {path} ({exc})", "give a .npy file or raw bytes") from None
    return data


# ----------------------------------------------------------------------------------------------
# The server and the model
# ----------------------------------------------------------------------------------------------


def _client_module(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError:
        raise DependencyError(
            f"a load test over {protocol} needs tritonclient", "pip install 'tritonclient[http,grpc]' (trtpipe[serve])"
        ) from None
    return module


class _Server:
    """The server's answers a load test needs, as plain dicts whatever the protocol (gRPC's JSON has string numbers)."""

    def __init__(self, url: str, protocol: str, timeout_s: float):
        self.url, self.protocol, self.timeout_s = url, protocol, timeout_s
        self.module = _client_module(protocol)

    def client(self):
        if self.protocol == "grpc":
            return self.module.InferenceServerClient(self.url)
        return self.module.InferenceServerClient(self.url, network_timeout=self.timeout_s, connection_timeout=self.timeout_s)

    def _call(self, method: str, *args, **kwargs):
        if self.protocol == "grpc" and method.startswith("get_"):  # gRPC's getters return protobuf unless asked
            kwargs["as_json"] = True
        client = self.client()
        try:
            return getattr(client, method)(*args, **kwargs)
        finally:
            client.close()

    def check(self, model: str, version: str) -> dict[str, Any]:
        """Server metadata; raises InputError when nothing answers or the model is not ready."""
        from tritonclient.utils import InferenceServerException

        hint = (f"start one (trtpipe serve MODEL.onnx --http-port P --grpc-port Q) and give its {self.protocol.upper()} "
                f"port; --protocol {'http' if self.protocol == 'grpc' else 'grpc'} needs the other port")
        try:
            live = self._call("is_server_live")
        except (InferenceServerException, OSError, ConnectionError) as exc:
            raise InputError(f"no Triton server answers {self.protocol.upper()} at {self.url} ({_first_line(exc)})", hint) from None
        except Exception as exc:  # noqa: BLE001 - gevent/grpc raise their own types for a refused connection
            raise InputError(f"no Triton server answers {self.protocol.upper()} at {self.url} ({type(exc).__name__}: "
                             f"{_first_line(exc)})", hint) from None
        if not live:
            raise InputError(f"the Triton server at {self.url} is not live", "wait until it has started, or restart it")
        if not self._call("is_model_ready", model, version):
            index = self._call("get_model_repository_index")
            models = index.get("models", index) if isinstance(index, dict) else index
            ready = sorted({m.get("name") for m in models if m.get("state") == "READY"})
            raise InputError(
                f"model {model!r}{f' version {version}' if version else ''} is not ready on the Triton server at {self.url}",
                f"load one of its ready models: {', '.join(ready) or 'none'} (trtpipe bench --url {self.url} --model NAME)",
            )
        return self._call("get_server_metadata")

    def model(self, model: str, version: str) -> tuple[dict, dict]:
        metadata = self._call("get_model_metadata", model, version)
        config = self._call("get_model_config", model, version)
        return metadata, config.get("config", config)

    def settled_statistics(self, model: str, version: str, successes: int, timeout_s: float = 2.0):
        """Statistics once ``model`` counts at least ``successes`` successful requests.

        A client has its response before Triton adds the request to its statistics, so a snapshot taken right
        after the last response can miss it; this polls (10 ms) until the count is reached, or ``timeout_s``.
        Returns (statistics, settled).
        """
        deadline = time.perf_counter() + timeout_s
        while True:
            stats = self.statistics()
            seen = _successes(stats, model, version)
            if seen >= successes or time.perf_counter() > deadline:
                return stats, seen >= successes
            time.sleep(0.01)

    def statistics(self) -> dict[tuple[str, str], dict[str, int]]:
        """(model, version) -> cumulative counts and nanoseconds, for every model the server has run."""
        stats = self._call("get_inference_statistics", "")
        out = {}
        for entry in stats.get("model_stats", []):
            inference = entry.get("inference_stats") or {}
            row = {"inference_count": int(entry.get("inference_count", 0)), "execution_count": int(entry.get("execution_count", 0))}
            for stage in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
                row[f"{stage}_count"] = int((inference.get(stage) or {}).get("count", 0))
                row[f"{stage}_ns"] = int((inference.get(stage) or {}).get("ns", 0))
            out[(entry["name"], str(entry.get("version", "")))] = row
        return out


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _successes(stats, model: str, version: str) -> int:
    return sum(row["success_count"] for (name, v), row in stats.items() if name == model and (not version or v == version))


def _server_block(before, after, model: str, version: str) -> dict[str, Any] | None:
    """Triton's statistics over one level: the loaded model's counts and means per request, and other models that ran."""
    def delta(key):
        return {name: after[key][name] - before.get(key, {}).get(name, 0) for name in after[key]}

    moved = {key: delta(key) for key in after if after[key]["success_count"] - before.get(key, {}).get("success_count", 0) > 0}
    mine = [key for key in moved if key[0] == model and (not version or key[1] == version)]
    if not mine:
        return None
    block = _stage_means(moved[mine[0]])
    block["model"] = f"{mine[0][0]} (version {mine[0][1]})"
    others = {f"{name} (version {v})": _stage_means(d) for (name, v), d in moved.items() if (name, v) != mine[0]}
    if others:
        block["other_models"] = others
    return block


def _stage_means(d: Mapping[str, int]) -> dict[str, Any]:
    success = d["success_count"]
    means = {}
    for stage in SERVER_STAGES:
        key = "success" if stage == "request" else stage
        count = d[f"{key}_count"]
        means[stage] = d[f"{key}_ns"] / count / 1e6 if count else None
    return {
        "success_count": success,
        "fail_count": d["fail_count"],
        "inference_count": d["inference_count"],
        "execution_count": d["execution_count"],
        "mean_batch": d["inference_count"] / d["execution_count"] if d["execution_count"] else None,
        "mean_ms": means,
    }


# ----------------------------------------------------------------------------------------------
# Request data
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestInput:
    """One input of every request: its name, Triton type and the array sent."""

    name: str
    datatype: str
    array: np.ndarray
    source: str  # "random" | "file PATH"


def request_inputs(metadata: dict, config: dict, batch: int, data: Mapping[str, np.ndarray],
                   shapes: Mapping[str, tuple[int, ...]], files: Mapping[str, str] | None = None,
                   seed: int = 0) -> list[RequestInput]:
    """The arrays each request sends, ``batch`` rows when the model batches.

    Args:
        metadata / config: the model's, from the server.
        batch: rows per request (the model's batch axis); 1 for a model that does not batch.
        data: input name -> one sample (without the batch axis), from ``--input-data``; else random data.
        shapes: input name -> runtime shape (``--shapes``), with the batch axis for a batching model (replaced by ``batch``).
        files: input name -> the file the data came from (recorded in the report).

    Raises:
        ConfigError: a batch the model cannot take, an unknown input, a shape nothing fixes, data of the wrong shape.
    """
    max_batch = int(config.get("max_batch_size", 0) or 0)
    if max_batch == 0 and batch != 1:
        raise ConfigError(f"model {metadata['name']!r} does not batch (max_batch_size 0), and --batch {batch} was asked",
                          "use --batch 1 (each request is one inference of the model's fixed shape)")
    if max_batch and batch > max_batch:
        raise ConfigError(f"--batch {batch} exceeds the max_batch_size {max_batch} of model {metadata['name']!r}",
                          f"use --batch {max_batch} or less, or export the repository with a larger --max-batch")
    names = [t["name"] for t in metadata["inputs"]]
    for given, option in ((data, "--input-data"), (shapes, "--shapes")):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ConfigError(f"{option} names {unknown}; model {metadata['name']!r} has inputs {names}",
                              f"name one of the model's inputs, e.g. {option} {names[0]}:...")
    rng = np.random.default_rng(seed)
    out = []
    for tensor in metadata["inputs"]:
        name, datatype = tensor["name"], tensor["datatype"]
        dims = [int(d) for d in tensor["shape"]][1 if max_batch else 0:]  # without the batch axis
        if name in data:
            array = _sample_from_data(name, datatype, dims, data[name])
            source = f"file {files.get(name)}" if files and name in files else "given"
        else:
            if name in shapes:
                given = list(shapes[name])[1 if max_batch else 0:]
                if len(given) != len(dims) or any(d not in (-1, g) for d, g in zip(dims, given)):
                    raise ConfigError(f"--shapes {name}:{'x'.join(map(str, shapes[name]))} does not fit input {name!r} "
                                      f"of shape {tensor['shape']}", "keep the input's rank and its fixed dimensions")
                dims = given
            if -1 in dims or datatype not in _NUMPY_TYPES:
                need = "a shape" if datatype in _NUMPY_TYPES else f"data ({datatype} cannot be random)"
                raise ConfigError(
                    f"input {name!r} of model {metadata['name']!r} is {datatype} {tensor['shape']}: random data needs {need}",
                    f"give it: --input-data {name}:FILE (an encoded image, or a .npy sample without the batch axis)"
                    + (f" or --shapes {name}:{'x'.join('1' if d == -1 else str(d) for d in tensor['shape'])}" if datatype in _NUMPY_TYPES else ""),
                )
            array = _random(rng, datatype, dims)
            source = "random"
        if max_batch:
            array = np.repeat(array[np.newaxis], batch, axis=0)
        out.append(RequestInput(name, datatype, array, source))
    return out


def _sample_from_data(name: str, datatype: str, dims: list[int], sample: np.ndarray) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([sample.tobytes()], dtype=np.object_).reshape([1] * max(len(dims), 1))
    expected = _NUMPY_TYPES.get(datatype)
    if expected is None:
        raise ConfigError(f"input {name!r} is {datatype}, which --input-data cannot fill", "load-test a model with numeric or BYTES inputs")
    sample = np.asarray(sample)
    if sample.ndim != len(dims) or any(d not in (-1, s) for d, s in zip(dims, sample.shape)):
        raise ConfigError(
            f"--input-data for {name!r} has shape {list(sample.shape)}, the input takes {dims} per request row (-1 = any)",
            "give one sample without the batch axis (a file's bytes make a 1-D uint8 vector)",
        )
    return sample.astype(expected, copy=False)


def _random(rng, datatype: str, dims: list[int]) -> np.ndarray:
    dtype = np.dtype(_NUMPY_TYPES[datatype])
    if dtype.kind == "f":
        return rng.standard_normal(dims).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, dims).astype(dtype)
    return rng.integers(0, 64, dims).astype(dtype)  # small, valid for every integer type and most index inputs


# ----------------------------------------------------------------------------------------------
# The load
# ----------------------------------------------------------------------------------------------


@dataclass
class _Level:
    latencies_ms: list[float]
    errors: int
    first_error: str | None
    wall_s: float
    partial: bool


def _run_level(server: _Server, model: str, version: str, inputs: list[RequestInput], concurrency: int,
               settings: LoadSettings, progress: Progress | None, phase: str, on_start: Callable[[int], None]) -> _Level:
    """``concurrency`` threads each keep one request outstanding: warm-up, then the timed requests.

    ``on_start(warm_up_successes)`` runs once, when every client has warmed up and before any timed request.
    """
    module = server.module
    lock = threading.Lock()
    stop = threading.Event()
    clock: dict[str, float] = {}
    latencies: list[float] = []
    errors: list[str] = []  # timed requests that failed
    warmup_errors: list[str] = []
    warmed_up = [0]  # successful warm-up requests
    claimed = [0]

    def start_timing() -> None:  # run once, by the barrier, when every client has warmed up
        on_start(warmed_up[0])
        clock["start"] = time.perf_counter()

    ready = threading.Barrier(concurrency + 1, action=start_timing)

    def claim() -> bool:
        with lock:
            if stop.is_set():
                return False
            if settings.requests is not None:
                if claimed[0] >= settings.requests:
                    return False
            elif time.perf_counter() - clock["start"] >= settings.duration_s:
                return False
            claimed[0] += 1
            return True

    def worker() -> None:
        client = server.client()
        try:
            request = []
            for item in inputs:
                tensor = module.InferInput(item.name, list(item.array.shape), item.datatype)
                tensor.set_data_from_numpy(item.array)
                request.append(tensor)

            def send() -> None:
                client.infer(model, request, model_version=version, **_timeout(server))

            warm_start = time.perf_counter()
            try:
                send()
                with lock:
                    warmed_up[0] += 1
                while time.perf_counter() - warm_start < settings.warmup_s and not stop.is_set():
                    send()
                    with lock:
                        warmed_up[0] += 1
            except Exception as exc:  # noqa: BLE001 - reported if the timed requests fail too
                with lock:
                    warmup_errors.append(_first_line(exc))
            try:
                ready.wait()
            except threading.BrokenBarrierError:
                return
            while claim():
                t0 = time.perf_counter()
                try:
                    send()
                except Exception as exc:  # noqa: BLE001 - a load test counts failures, whatever they are
                    with lock:
                        errors.append(_first_line(exc))
                    continue
                elapsed = (time.perf_counter() - t0) * 1e3
                with lock:
                    latencies.append(elapsed)
        finally:
            client.close()  # an open connection would hold the server's shutdown for its exit timeout

    threads = [threading.Thread(target=worker, name=f"client-{i}", daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    partial = False
    try:
        ready.wait()
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=0.05)
            if progress is not None:
                progress.update(phase, time.perf_counter() - clock["start"], settings.duration_s if settings.requests is None else 0.0,
                                len(latencies))
    except KeyboardInterrupt:
        partial = True
        stop.set()
        ready.abort()
        for thread in threads:
            thread.join()
    wall = time.perf_counter() - clock["start"] if "start" in clock else 0.0
    first = (errors or warmup_errors or [None])[0]
    return _Level(latencies, len(errors), first, wall, partial)


def _timeout(server: _Server) -> dict[str, Any]:
    # gRPC's per-call deadline; the HTTP client has its network timeout from construction.
    return {"client_timeout": server.timeout_s} if server.protocol == "grpc" else {}


def load_test(
    url: str,
    model: str,
    settings: LoadSettings,
    *,
    model_version: str = "",
    data: Mapping[str, np.ndarray] | None = None,
    data_files: Mapping[str, str] | None = None,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    name: str | None = None,
    precision: str | None = None,
    progress_factory: Callable[[str], Progress] | None = None,
    command: str | None = None,
    on_result: Callable[[BenchReport], None] | None = None,
) -> BenchReport:
    """Sweeps ``settings.concurrency`` against ``model`` on the Triton server at ``url``; one result per level.

    Args:
        url: HOST:PORT of the server's HTTP or gRPC endpoint (matching ``settings.protocol``).
        model: the served model's name; ``model_version`` its version (default: the server's choice).
        settings: levels, protocol, request batch, requests or duration per level, warm-up.
        data / data_files: input name -> one sample (and the file it came from); other inputs get random data.
        shapes: runtime shapes of inputs with dynamic dimensions (``--shapes``).
        name: the model name in the report (default ``model``), e.g. the network's, to compare with local runs.
        precision: the served network's precision, for the report (the server does not say). Defaults to "unknown".
        progress_factory / command / on_result: as for bench.runner.run_bench.

    Raises:
        InputError: no server at ``url``, the model is not ready there, unreadable data.
        ConfigError: request data that does not fit the model; every request of a level failed.
    """
    server = _Server(url, settings.protocol, settings.timeout_s)
    server_metadata = server.check(model, model_version)
    metadata, config = server.model(model, model_version)
    inputs = request_inputs(metadata, config, settings.batch, data or {}, shapes or {}, data_files)
    served_versions = [int(v) for v in metadata.get("versions", []) if str(v).isdigit()]
    version = model_version or (str(max(served_versions)) if served_versions else "")
    kinds = sorted({g.get("kind", "KIND_AUTO") for g in config.get("instance_group", [])}) or ["KIND_AUTO"]
    device = "gpu" if kinds == ["KIND_GPU"] else "cpu" if kinds == ["KIND_CPU"] else "?"
    runner = ((config.get("parameters") or {}).get("trtpipe_runner") or {}).get("string_value")
    host = url.rsplit(":", 1)[0]
    report = BenchReport(
        model={"name": name or model, "file": None, "sha256": None, "precision": precision or "unknown",
               "precision_realised": runner or config.get("backend") or config.get("platform") or "?",
               "weights": "unknown (served)", "source": "triton"},
        backend={"name": f"triton-{settings.protocol}", "device": device, "simulated": False, "fallback": False,
                 "url": url, "protocol": settings.protocol, "model": model, "model_version": version or None,
                 "server": f"{server_metadata.get('name', 'triton')} {server_metadata.get('version', '?')}",
                 "model_backend": config.get("backend") or config.get("platform"), "instance_kind": ",".join(kinds),
                 "max_batch_size": int(config.get("max_batch_size", 0) or 0),
                 "dynamic_batching": "dynamic_batching" in config},
        settings={"warmup_s": settings.warmup_s, "duration_s": settings.duration_s if settings.requests is None else None,
                  "requests_per_level": settings.requests, "concurrency": list(settings.concurrency),
                  "batches": [settings.batch], "percentiles": list(settings.percentiles or DEFAULT_PERCENTILES),
                  "inputs": {i.name: {"datatype": i.datatype, "shape": list(i.array.shape), "source": i.source} for i in inputs}},
        environment=capture_environment(),
        command=command,
    )
    where = "on this machine, loopback" if host in ("127.0.0.1", "localhost", "[::1]", "::1") else f"on {host}, not this machine"
    report.notes.append(f"served by {report.backend['server']} at {url} ({where}); model {model} version {version or '?'} "
                        f"on {report.backend['model_backend']} ({', '.join(kinds)}){f': {runner}' if runner else ''}; "
                        "the environment block describes the client")
    if settings.requests is not None and settings.requests < 1000:
        report.notes.append(f"{settings.requests} requests per level: p99 of fewer than 1,000 requests is the largest of "
                            "a handful; charts draw p95/p99 only where enough requests back them")
    try:
        for concurrency in settings.concurrency:
            phase = f"concurrency {concurrency}"
            progress = progress_factory(f"[bench {model} {report.backend['name']} batch {settings.batch}]") if progress_factory else None
            snapshot: dict[str, Any] = {"initial": server.statistics()}

            def before_timing(warm_up_successes: int) -> None:
                # The warm-up's requests must be in the server's counts before the level's "before" snapshot.
                snapshot["before"], _ = server.settled_statistics(
                    model, version, _successes(snapshot["initial"], model, version) + warm_up_successes)

            level = _run_level(server, model, model_version, inputs, concurrency, settings, progress, phase, before_timing)
            if not level.latencies_ms and not level.partial:
                raise ConfigError(
                    f"every request to {model!r} at {url} failed at concurrency {concurrency}: {level.first_error}",
                    "check the request data against the model (trtpipe bench --url ... --input-data NAME:FILE)",
                )
            server_block = None
            if "before" in snapshot:
                after, settled = server.settled_statistics(
                    model, version, _successes(snapshot["before"], model, version) + len(level.latencies_ms))
                server_block = _server_block(snapshot["before"], after, model, version)
                if not settled:
                    report.notes.append(f"concurrency {concurrency}: Triton's statistics had not counted every timed "
                                        "request 2 s after the last response; its server-side figures may miss some")
            samples = Samples(iterations=len(level.latencies_ms), wall_s=level.wall_s, partial=level.partial)
            if progress is not None:
                progress.done(phase, samples)
            result = BenchResult(
                batch=settings.batch, mode="concurrency", iterations=len(level.latencies_ms), wall_s=level.wall_s,
                metrics={"client_request": summarize(level.latencies_ms, settings.percentiles)}, partial=level.partial,
                throughput_source="clients", concurrency=concurrency, server=server_block, errors=level.errors,
            )
            report.results.append(result)
            if level.errors:
                report.notes.append(f"concurrency {concurrency}: {level.errors} request(s) failed, first: {level.first_error}")
            if on_result:
                on_result(report)
            if level.partial:
                break
    except KeyboardInterrupt:
        report.mark_partial("interrupted (Ctrl-C)")
    if any(r.partial for r in report.results):
        done = [r.concurrency for r in report.results if not r.partial]
        report.mark_partial(f"interrupted (Ctrl-C); complete concurrency levels: {done or 'none'}")
    return report

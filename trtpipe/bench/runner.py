"""One bench run: every batch size in every mode the backend has, collected into a BenchReport.

Per batch: the synchronous latency mode; the enqueue-ahead throughput mode where the backend has an
asynchronous queue (TensorRT, torch on CUDA; elsewhere throughput comes from the synchronous run and says
so), or with ``streams`` > 1 (trtexec's ``--infStreams``) concurrent synchronous calls on that many
execution contexts; the end-to-end mode through the Pipeline when the model's preprocess spec is known.
Ctrl-C stops the run after keeping what was measured; the report is then marked partial.

A simulated target (``bench --simulate``) runs the same loops as a functional check: its results are
``timed=False`` and carry no metrics (the simulation's device clock is fake), plus what was checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from trtpipe.bench.environment import capture_environment
from trtpipe.bench.measure import MeasureSettings, Progress, Samples, UntimedProgress, measure_concurrent, measure_enqueue_ahead, measure_sync
from trtpipe.bench.report import BenchReport, BenchResult
from trtpipe.bench.stats import DEFAULT_PERCENTILES, summarize
from trtpipe.bench.targets import BenchTarget
from trtpipe.errors import ConfigError
from trtpipe.runtime.base import StageTimes

#: The frame size the end-to-end mode preprocesses (a 1080p camera frame), height x width.
END_TO_END_IMAGE = (1080, 1920)


def make_feeds(
    target: BenchTarget, batch: int, seed: int = 0, shapes: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, np.ndarray]:
    """Random inputs of ``batch`` for every engine input, the same for every backend (fixed seed).

    Args:
        target: the opened model.
        batch: the batch size (axis 0 of every input).
        seed: the random generator's seed. Defaults to 0.
        shapes: the runtime shape of inputs (trtexec's ``--shapes``), input name -> full shape; its axis 0
            is replaced by ``batch``. Other dynamic dimensions take the preprocess spec's height and width
            (NCHW/NHWC).

    Raises:
        ConfigError: an unknown input in ``shapes``, a shape that contradicts the input's rank or fixed
            dimensions, or a dynamic dimension nothing fixes.
    """
    rng = np.random.default_rng(seed)
    shapes = dict(shapes or {})
    names = [info.name for info in target.engine.inputs]
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise ConfigError(f"--shapes names {unknown}, and the model's inputs are {names}",
                          f"give the runtime shape of an input, e.g. --shapes {names[0]}:1x3x224x224")
    feeds = {}
    for info in target.engine.inputs:
        shape = list(info.shape)
        if shape and shape[0] not in (-1, batch):
            raise ConfigError(
                f"input {info.name!r} has a fixed batch of {shape[0]}; batch {batch} cannot run",
                f"bench --batch {shape[0]}, or re-export/rebuild with a dynamic batch (trtpipe build --batch 1:8:32)",
            )
        if info.name in shapes:
            shape = _runtime_shape(info, shapes[info.name])
        shape[0] = batch
        if -1 in shape[1:]:
            spec = target.spec
            if spec is None or len(shape) != 4:
                raise ConfigError(
                    f"input {info.name!r} has dynamic dimensions {info.shape} and no preprocess spec fixes them",
                    "export the model with a fixed input size, or put a .preprocess.json beside the ONNX",
                )
            c = spec.channels
            fixed = [c, spec.height, spec.width] if spec.layout == "NCHW" else [spec.height, spec.width, c]
            shape[1:] = [f if d == -1 else d for d, f in zip(shape[1:], fixed)]
        dtype = np.dtype(info.dtype)
        if dtype.kind == "f":
            feeds[info.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[info.name] = np.zeros(shape, dtype)
    return feeds


def _runtime_shape(info, given: tuple[int, ...]) -> list[int]:
    """``--shapes`` for one input, checked against its rank and fixed dimensions (axis 0 is the batch)."""
    text = "x".join(map(str, given))
    if len(given) != len(info.shape) or any(d not in (-1, g) for d, g in zip(info.shape[1:], given[1:])):
        raise ConfigError(
            f"--shapes {info.name}:{text} does not fit input {info.name!r} of shape {list(info.shape)} (-1 = dynamic)",
            "give a shape of the input's rank that keeps its fixed dimensions",
        )
    return list(given)


def check_batches(target: BenchTarget, batches: Sequence[int]) -> None:
    """Rejects batch sizes the engine cannot run, before anything is timed."""
    if not batches or any(b < 1 for b in batches):
        raise ConfigError(f"--batch {list(batches)}: expected positive batch sizes", "write e.g. --batch 1,8,32")
    limit = target.engine.max_batch
    too_big = [b for b in batches if limit is not None and b > limit]
    if too_big:
        raise ConfigError(
            f"batch {too_big} exceeds the engine's largest batch {limit}",
            f"bench --batch within 1..{limit}, or rebuild with a larger profile: trtpipe build ... --batch 1:8:{max(too_big)}",
        )


def device_stages(times: StageTimes, device_timed: bool) -> dict[str, float | None]:
    """The report's device metrics from one call's StageTimes; all None unless CUDA events measured them."""
    if not device_timed:
        return {"h2d": None, "gpu_compute": None, "d2h": None, "host_latency": None}
    stages = {"h2d": times.h2d, "gpu_compute": times.compute, "d2h": times.d2h}
    measured = [v for v in stages.values() if v is not None]
    # trtexec's host latency is H2D + compute + D2H; with --no-transfers it is the compute alone.
    stages["host_latency"] = sum(measured) if times.compute is not None else None
    return stages


def _rename_compute(times: Mapping[str, float | None]) -> StageTimes:
    return StageTimes(h2d=times.get("h2d"), compute=times.get("compute"), d2h=times.get("d2h"))


@dataclass(frozen=True)
class _Options:
    """What run_bench passes down to every batch."""

    settings: MeasureSettings
    transfers: bool
    end_to_end: bool
    percentiles: tuple[float, ...]
    streams: int
    shapes: Mapping[str, tuple[int, ...]]
    functional: bool  # a simulation: check, do not time
    times: list[dict[str, Any]] | None  # per-iteration records for --exportTimes, or None


def _result(batch: int, mode: str, samples: Samples, options: _Options, throughput_source: str | None = None,
            check: Mapping[str, Any] | None = None) -> BenchResult:
    if options.functional:  # the simulation's clock is fake: it ran, and that is all it says
        return BenchResult(batch, mode, samples.iterations, None, {}, samples.partial, None, timed=False, check=check)
    if options.times is not None:
        options.times.extend(iteration_records(batch, mode, samples))
    metrics = {name: summarize(values, options.percentiles) for name, values in samples.values.items()}
    return BenchResult(batch, mode, samples.iterations, samples.wall_s, metrics, samples.partial, throughput_source)


#: trtexec's --exportTimes keys (samples/common/sampleReporting.cpp, exportJSONTrace), in its order.
TRTEXEC_TIME_KEYS = ("startEnqMs", "endEnqMs", "startH2dMs", "endH2dMs", "startComputeMs", "endComputeMs",
                     "startD2hMs", "endD2hMs", "h2dMs", "computeMs", "d2hMs", "latencyMs", "endToEndMs")


def iteration_records(batch: int, mode: str, samples: Samples) -> list[dict[str, Any]]:
    """One record per timed iteration in trtexec's ``--exportTimes`` shape, plus trtpipe's own fields.

    Filled only with what was measured, the rest ``None``: ``h2dMs``/``computeMs``/``d2hMs``/``latencyMs``
    from CUDA events; ``startEnqMs``/``endEnqMs`` from the host clock around an enqueue (enqueue-ahead
    mode). trtpipe records the device stages as event-pair durations, not as timestamps, so trtexec's
    ``start*/end*`` device timestamps are None, and so is ``endToEndMs`` (trtexec's H2D start to D2H end
    across queued inferences has no counterpart here). trtpipe's fields: ``batch``, ``mode``, ``iteration``,
    ``startMs`` (host clock at the iteration's start, ms since its timed loop began) and ``callMs``,
    ``enqueueMs``, ``preprocessMs``, ``postprocessMs``, ``pipelineMs`` where measured.
    """
    values = samples.values
    records = []
    for i in range(samples.iterations):
        def get(name: str) -> float | None:
            column = values.get(name)
            return column[i] if column is not None and i < len(column) else None

        start = samples.starts_ms[i] if i < len(samples.starts_ms) else None
        enqueue = get("enqueue")
        record: dict[str, Any] = dict.fromkeys(TRTEXEC_TIME_KEYS)
        record.update(h2dMs=get("h2d"), computeMs=get("gpu_compute"), d2hMs=get("d2h"), latencyMs=get("host_latency"))
        if enqueue is not None and start is not None:
            record.update(startEnqMs=start, endEnqMs=start + enqueue)
        record.update(batch=batch, mode=mode, iteration=i, startMs=start)
        for key, name in (("callMs", "call"), ("enqueueMs", "enqueue"), ("preprocessMs", "preprocess"),
                          ("postprocessMs", "postprocess"), ("pipelineMs", "end_to_end")):
            if get(name) is not None:
                record[key] = get(name)
        records.append(record)
    return records


class Interrupted(Exception):
    """Raised inside the run when Ctrl-C ended a phase; carries nothing, the report has the partial state."""


def run_bench(
    target: BenchTarget,
    batches: Sequence[int],
    settings: MeasureSettings,
    *,
    transfers: bool = True,
    end_to_end: bool = True,
    progress_factory: Callable[[str], Progress] | None = None,
    command: str | None = None,
    on_result: Callable[[BenchReport], None] | None = None,
    percentiles: Sequence[float] = (),
    streams: int = 1,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    export_times: list[dict[str, Any]] | None = None,
    keep_simulated_clock: bool = False,
) -> BenchReport:
    """Measures ``target`` at every batch size; returns the report (``partial`` when Ctrl-C cut it short).

    Args:
        target: the opened model (see targets.open_target); not closed here.
        batches: batch sizes, run in order.
        settings: warm-up, duration, minimum iterations, in-flight depth.
        transfers: include H2D/D2H copies in the device modes. Defaults to True.
        end_to_end: also time preprocess + inference + postprocess through the Pipeline when the spec is known.
        progress_factory: phase prefix -> Progress (a stderr line in the CLI). Defaults to none.
        command: the command line, recorded in the report.
        on_result: called with the report after every result (the CLI saves it, so a crash keeps the rest).
        percentiles: percentiles every metric carries beyond p90/p95/p99 (trtexec's ``--percentile``).
        streams: concurrent inference streams of the throughput mode (trtexec's ``--infStreams``); > 1 needs
            an engine opened with as many execution contexts. Defaults to 1 (enqueue-ahead, where the
            backend has a queue).
        shapes: runtime shapes of inputs (trtexec's ``--shapes``), name -> full shape; axis 0 is each batch.
        export_times: a list that receives one record per timed iteration (see iteration_records).
        keep_simulated_clock: tests of the plumbing only: keep a simulated run's fake-clock figures in its
            results. The report stays simulated, so ``trtpipe report`` still lists it as a functional check.
    """
    check_batches(target, batches)
    contexts = getattr(target.engine, "num_contexts", 1)
    if streams > 1 and contexts < streams:
        raise ConfigError(
            f"--infStreams {streams} needs {streams} execution contexts, and {target.engine.backend} has {contexts}",
            f"open the engine with contexts={streams} (trtpipe bench does), or drop --infStreams",
        )
    if streams > 1 and not transfers:
        raise ConfigError(
            f"--infStreams {streams} with --no-transfers: the compute-only mode stages inputs once on one context's "
            "buffers, so its streams could not run apart",
            "time the streams with transfers (drop --no-transfers), or one stream without them (drop --infStreams)",
        )
    functional = bool(target.engine.simulated) and not keep_simulated_clock
    options = _Options(settings, transfers, end_to_end and target.spec is not None, tuple(percentiles), streams,
                       dict(shapes or {}), functional, export_times)
    settings_block = {"warmup_s": settings.warmup_s, "duration_s": settings.duration_s, "iterations_min": settings.iterations_min,
                      "in_flight": settings.in_flight, "batches": list(batches), "end_to_end_image": list(END_TO_END_IMAGE),
                      "percentiles": list(percentiles or DEFAULT_PERCENTILES),
                      "infer_streams": streams}
    if shapes:
        settings_block["shapes"] = {name: list(shape) for name, shape in shapes.items()}
    report = BenchReport(
        model=target.model,
        backend={**target.backend, "contexts": contexts},
        settings=settings_block,
        environment=capture_environment(),
        sidecar=target.sidecar,
        notes=list(target.notes),
        command=command,
    )
    if functional:
        report.notes.append("functional check: the simulation ran every mode and batch through trtpipe's TensorRT/CUDA "
                            "code path and checked the outputs; it times nothing (its device clock is simulated)")
    if end_to_end and target.spec is None:
        report.notes.append("end-to-end mode not measured: no preprocess spec (.preprocess.json) beside the model")
    try:
        for batch in batches:
            prefix = f"[bench {target.model['name']} {target.backend['name']} {target.model['precision']} batch {batch}]"
            progress = progress_factory(prefix) if progress_factory else None
            if progress is not None and functional:
                progress = UntimedProgress(progress)
            for result in _run_batch(target, batch, options, progress):
                report.results.append(result)
                if on_result:
                    on_result(report)
                if result.partial:
                    raise Interrupted
    except (Interrupted, KeyboardInterrupt):
        done = sorted({r.batch for r in report.results if not r.partial})
        report.mark_partial(f"interrupted (Ctrl-C); complete batches: {done or 'none'}")
    return report


def _run_batch(target: BenchTarget, batch: int, options: _Options, progress):
    """Yields the BenchResults of one batch size, mode by mode (a partial one ends the run)."""
    settings, transfers = options.settings, options.transfers
    feeds = make_feeds(target, batch, shapes=options.shapes)
    check = output_check(target, feeds) if options.functional else None
    device_timed = target.device_timed
    queue = target.async_target(feeds, transfers=transfers) if device_timed else None
    try:
        if transfers or queue is None:
            def step() -> dict[str, float | None]:
                return device_stages(target.engine.infer_timed(feeds)[1], device_timed)
        else:  # --no-transfers: the synchronous mode times the compute alone, inputs staged once
            def step() -> dict[str, float | None]:
                return device_stages(_rename_compute(queue.wait(queue.enqueue())), True)

        samples = measure_sync(step, settings, "latency (synchronous)", progress)
        if samples.iterations:
            yield _result(batch, "latency", samples, options, None if queue else "synchronous", check)
        if samples.partial:
            return
        if options.streams > 1:
            # Each stream's synchronous call runs on its own execution context (the engine hands them out).
            samples = measure_concurrent(step, settings, options.streams, f"throughput ({options.streams} streams)", progress)
            if samples.iterations:
                yield _result(batch, "throughput", samples, options, f"{options.streams} streams", check)
        elif queue is not None:
            samples = measure_enqueue_ahead(_Queued(queue), settings, "throughput (enqueue-ahead)", progress)
            if samples.iterations:
                yield _result(batch, "throughput", samples, options, "enqueue-ahead", check)
        if samples.partial:
            return
    finally:
        if queue is not None:
            queue.close()
    if options.end_to_end:
        yield from _run_end_to_end(target, batch, options, progress, check)


def output_check(target: BenchTarget, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """A functional check of one inference: every output present, of the engine's rank and batch, finite.

    Raises:
        ConfigError: an output is missing, misshapen or not finite (the engine path is broken).
    """
    outputs = target.engine.infer(feeds)
    batch = next(iter(feeds.values())).shape[0]
    seen = {}
    for info in target.engine.outputs:
        array = outputs.get(info.name)
        problem = None
        if array is None:
            problem = "is missing"
        elif array.ndim != len(info.shape) or (info.shape and array.shape[0] != batch):
            problem = f"has shape {array.shape}, expected {info.shape} at batch {batch}"
        elif array.dtype.kind == "f" and not np.isfinite(array).all():
            problem = "has NaN or infinite values"
        if problem:
            raise ConfigError(f"functional check of {target.model.get('file')}: output {info.name!r} {problem}",
                              "the engine or its simulation is broken; run trtpipe inspect on the engine")
        seen[info.name] = list(array.shape)
    return {"passed": True, "outputs": seen}


class _Queued:
    """Renames an AsyncTarget's ``compute`` to the report's ``gpu_compute`` and adds host latency."""

    def __init__(self, queue):
        self._queue = queue

    def enqueue(self):
        return self._queue.enqueue()

    def wait(self, handle):
        return device_stages(_rename_compute(self._queue.wait(handle)), True)

    def close(self) -> None:
        pass


def _run_end_to_end(target: BenchTarget, batch: int, options: _Options, progress, check=None):
    from trtpipe.pipeline.pipeline import Pipeline

    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (*END_TO_END_IMAGE, 3), dtype=np.uint8) for _ in range(batch)]
    # The Pipeline borrows the engine: it is never closed here (closing it would close the engine).
    pipe = Pipeline(target.engine, target.spec, warmup=0)
    device_timed = target.device_timed

    def step() -> dict[str, float | None]:
        times = pipe.run(images)[1]
        return {"preprocess": times.preprocess, "postprocess": times.postprocess, "end_to_end": times.end_to_end,
                **device_stages(times, device_timed)}

    samples = measure_sync(step, options.settings, "end-to-end (pre + infer + post)", progress)
    samples.values.pop("call", None)  # the same clock as end_to_end, which is the metric of this mode
    if samples.iterations:
        yield _result(batch, "end_to_end", samples, options, check=check)

"""One bench run: every batch size in every mode the backend has, collected into a BenchReport.

Per batch: the synchronous latency mode; the enqueue-ahead throughput mode where the backend has an
asynchronous queue (TensorRT, torch on CUDA; elsewhere throughput comes from the synchronous run and says
so); the end-to-end mode through the Pipeline when the model's preprocess spec is known. Ctrl-C stops the
run after keeping what was measured; the report is then marked partial.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from trtpipe.bench.environment import capture_environment
from trtpipe.bench.measure import MeasureSettings, Progress, Samples, measure_enqueue_ahead, measure_sync
from trtpipe.bench.report import BenchReport, BenchResult
from trtpipe.bench.stats import summarize
from trtpipe.bench.targets import BenchTarget
from trtpipe.errors import ConfigError
from trtpipe.runtime.base import StageTimes

#: The frame size the end-to-end mode preprocesses (a 1080p camera frame), height x width.
END_TO_END_IMAGE = (1080, 1920)


def make_feeds(target: BenchTarget, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of ``batch`` for every engine input, the same for every backend (fixed seed).

    Dynamic dimensions other than the batch take the preprocess spec's height and width (NCHW/NHWC).
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for info in target.engine.inputs:
        shape = list(info.shape)
        if shape and shape[0] not in (-1, batch):
            raise ConfigError(
                f"input {info.name!r} has a fixed batch of {shape[0]}; batch {batch} cannot run",
                f"bench --batch {shape[0]}, or re-export/rebuild with a dynamic batch (trtpipe build --batch 1:8:32)",
            )
        shape[0] = batch
        if -1 in shape[1:]:
            spec = target.spec
            if spec is None or len(shape) != 4:
                raise ConfigError(
                    f"input {info.name!r} has dynamic dimensions {info.shape} and no preprocess spec fixes them",
                    "export the model with a fixed input size, or put a .preprocess.json beside the ONNX",
                )
            fixed = [3, spec.height, spec.width] if spec.layout == "NCHW" else [spec.height, spec.width, 3]
            shape[1:] = [f if d == -1 else d for d, f in zip(shape[1:], fixed)]
        dtype = np.dtype(info.dtype)
        if dtype.kind == "f":
            feeds[info.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[info.name] = np.zeros(shape, dtype)
    return feeds


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


def _result(batch: int, mode: str, samples: Samples, throughput_source: str | None = None) -> BenchResult:
    metrics = {name: summarize(values) for name, values in samples.values.items()}
    return BenchResult(batch, mode, samples.iterations, samples.wall_s, metrics, samples.partial, throughput_source)


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
    """
    check_batches(target, batches)
    report = BenchReport(
        model=target.model,
        backend=target.backend,
        settings={"warmup_s": settings.warmup_s, "duration_s": settings.duration_s, "iterations_min": settings.iterations_min,
                  "in_flight": settings.in_flight, "batches": list(batches), "end_to_end_image": list(END_TO_END_IMAGE)},
        environment=capture_environment(),
        sidecar=target.sidecar,
        notes=list(target.notes),
        command=command,
    )
    if end_to_end and target.spec is None:
        report.notes.append("end-to-end mode not measured: no preprocess spec (.preprocess.json) beside the model")
    try:
        for batch in batches:
            prefix = f"[bench {target.model['name']} {target.backend['name']} {target.model['precision']} batch {batch}]"
            progress = progress_factory(prefix) if progress_factory else None
            for result in _run_batch(target, batch, settings, transfers, end_to_end and target.spec is not None, progress):
                report.results.append(result)
                if on_result:
                    on_result(report)
                if result.partial:
                    raise Interrupted
    except (Interrupted, KeyboardInterrupt):
        done = sorted({r.batch for r in report.results if not r.partial})
        report.mark_partial(f"interrupted (Ctrl-C); complete batches: {done or 'none'}")
    return report


def _run_batch(target: BenchTarget, batch: int, settings: MeasureSettings, transfers: bool, end_to_end: bool, progress):
    """Yields the BenchResults of one batch size, mode by mode (a partial one ends the run)."""
    feeds = make_feeds(target, batch)
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
            yield _result(batch, "latency", samples, None if queue else "synchronous")
        if samples.partial:
            return
        if queue is not None:
            samples = measure_enqueue_ahead(_Queued(queue), settings, "throughput (enqueue-ahead)", progress)
            if samples.iterations:
                yield _result(batch, "throughput", samples, "enqueue-ahead")
            if samples.partial:
                return
    finally:
        if queue is not None:
            queue.close()
    if end_to_end:
        yield from _run_end_to_end(target, batch, settings, progress)


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


def _run_end_to_end(target: BenchTarget, batch: int, settings: MeasureSettings, progress):
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

    samples = measure_sync(step, settings, "end-to-end (pre + infer + post)", progress)
    samples.values.pop("call", None)  # the same clock as end_to_end, which is the metric of this mode
    if samples.iterations:
        yield _result(batch, "end_to_end", samples)

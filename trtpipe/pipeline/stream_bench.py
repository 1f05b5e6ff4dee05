"""End-to-end throughput from encoded image files to results: ``Pipeline.stream`` against a sequential loop,
and each stage alone, so that the report shows which stage bounds the pipeline.

    with Pipeline.from_onnx("mobilenetv2.onnx", threads=1) as pipe:
        result = bench_pipeline(pipe, sorted(Path("photos").glob("*.jpg")), batch_size=8, workers=1)
    print(result.table())

Each stage alone runs on the threads it has in the stream: reading (decode) and preprocessing on ``workers``
threads, the engine on ``inference_threads`` threads with batches of ``batch_size``, post-processing on the
workers. Reading, preprocessing and post-processing share the workers, so together they run at
``1 / (1/read + 1/preprocess + 1/postprocess)``: that group and the engine are the two candidates for the bound.
On a machine whose engine runs on the CPU (ONNX Runtime), every stage also competes for the same cores: the
stage rates alone are then an upper bound that the stream can reach only when the threads of each stage have
cores of their own (e.g. 2 cores: 1 worker, 1 inference thread with 1 intra-op thread).

``trtpipe bench MODEL --pipeline --images DIR`` runs this (see ``run_cli``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from trtpipe.errors import InputError, TrtpipeError
from trtpipe.pipeline.preprocess import check_frame, load_image, preprocess_with_meta, resize_meta
from trtpipe.pipeline.stream import engine_for_split, plan_threads

SAMPLE_IMAGES = 32  # decoded images kept for the preprocess stage (cycled): 500 decoded 1080p frames would be 3 GB


@dataclass(frozen=True)
class StageRate:
    """One stage run alone on the threads it has in the stream."""

    stage: str  # read | preprocess | infer | postprocess
    threads: int
    images: int  # images it processed
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else math.inf

    @property
    def ms_per_image(self) -> float:
        return self.seconds / self.images * 1e3 if self.images else math.nan


@dataclass(frozen=True)
class PipelineBenchResult:
    """What :func:`bench_pipeline` measured. Rates are images per second (images that gave a result)."""

    model: str
    backend: str
    images: int  # files measured
    errors: int  # files the stream reported as unreadable (left out of its rate)
    batch_size: int
    workers: int
    inference_threads: int
    engine_threads: int | None  # ONNX Runtime intra-op threads of the infer stage and the stream (None: the engine's)
    sequential: float  # `for path: pipe(cv2.imread(path))`
    stream: float  # Pipeline.stream over the same files
    stages: tuple[StageRate, ...]
    load_average: tuple[float, float] = ()  # 1-minute load before and after: other work on the machine
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 0)
    notes: tuple[str, ...] = ()
    split: str = ""  # how the cores were split between the workers and the engine, and why

    def stage(self, name: str) -> StageRate:
        return next(s for s in self.stages if s.stage == name)

    @property
    def slowest_stage(self) -> StageRate:
        """The slowest single stage alone: the bound if every stage had threads and cores of its own."""
        return min(self.stages, key=lambda s: s.images_per_s)

    @property
    def workers_rate(self) -> float:
        """read + preprocess + postprocess, which share the workers: the rate of that group alone."""
        return 1.0 / sum(1.0 / self.stage(n).images_per_s for n in ("read", "preprocess", "postprocess"))

    @property
    def bound(self) -> tuple[str, float]:
        """(what bounds the stream, its rate): the workers' group or the engine, whichever is slower alone."""
        infer = self.stage("infer").images_per_s
        if self.workers_rate <= infer:
            return f"workers (read + preprocess + postprocess, {self.workers} thread{'s' if self.workers != 1 else ''})", self.workers_rate
        return f"engine ({self.inference_threads} inference thread(s), batch {self.batch_size})", infer

    @property
    def speedup(self) -> float:
        return self.stream / self.sequential if self.sequential else math.nan

    @property
    def of_bound(self) -> float:
        return self.stream / self.bound[1]

    def table(self) -> str:
        """The stage rates, the sequential loop and the stream, with a header row."""
        rows = [("stage (alone)", "threads", "images/s", "ms/image")]
        for s in self.stages:
            label = f"{s.stage} (batch {self.batch_size})" if s.stage == "infer" else s.stage
            rows.append((label, str(s.threads), f"{s.images_per_s:,.1f}", f"{s.ms_per_image:.2f}"))
        rows.append(("read+preprocess+postprocess", str(self.workers), f"{self.workers_rate:,.1f}", f"{1e3 / self.workers_rate:.2f}"))
        rows.append(("sequential loop (imread, pipe)", "1", f"{self.sequential:,.1f}", f"{1e3 / self.sequential:.2f}"))
        rows.append(("Pipeline.stream", f"{self.workers}+{self.inference_threads}", f"{self.stream:,.1f}", f"{1e3 / self.stream:.2f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [f"{r[0]:<{widths[0]}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(r[1:], widths[1:])) for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)

    def summary(self) -> str:
        what, rate = self.bound
        slow = self.slowest_stage
        return (
            f"{self.model} on {self.backend}, {self.images} images: stream {self.stream:,.1f} images/s = "
            f"{self.speedup:.2f}x the sequential loop ({self.sequential:,.1f}) and {self.of_bound:.2f}x the bound set by "
            f"the {what} ({rate:,.1f} images/s alone; slowest single stage: {slow.stage}, {slow.images_per_s:,.1f})"
            + (f"; {self.split}" if self.split else "")
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["stages"] = [{**asdict(s), "images_per_s": s.images_per_s, "ms_per_image": s.ms_per_image} for s in self.stages]
        what, rate = self.bound
        data.update(kind="pipeline", bound={"what": what, "images_per_s": rate}, workers_rate=self.workers_rate,
                    speedup_vs_sequential=self.speedup, stream_of_bound=self.of_bound)
        return data


def bench_pipeline(
    pipe,
    paths: Sequence[str | Path],
    *,
    batch_size: int = 8,
    workers: int | None = None,
    inference_threads: int | None = None,
    sequential_pipe=None,
    engine_threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> PipelineBenchResult:
    """Measures ``pipe`` on image files: each stage alone, a sequential loop, and ``pipe.stream``.

    Args:
        pipe: an open Pipeline (its engine, spec and head are used; it stays open).
        paths: image files (JPEG, PNG ...); unreadable ones are counted as errors.
        batch_size: images per engine call in the stream and in the infer stage. Defaults to 8.
        workers: stream workers (decode, preprocess, postprocess). Defaults to the split ``Pipeline.stream``
            chooses (:func:`~trtpipe.pipeline.stream.plan_threads`).
        inference_threads: concurrent engine calls. Defaults to the engine's contexts (``num_contexts``, 1).
        sequential_pipe: the Pipeline the sequential loop uses. Defaults to ``pipe`` (on its engine's own threads).
        engine_threads: ONNX Runtime CPU intra-op threads of the infer stage and the stream. Defaults to the same
            split; where it differs from the engine's, both run on a second session with that many threads, as the
            stream does.
        progress: called with a line before each measurement. Defaults to silence.

    Returns:
        The rates; ``table()`` and ``summary()`` format them.

    Raises:
        InputError: no paths, or no path that decodes.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("no image files to measure", "give --images a folder of JPEG/PNG files")
    say = progress or (lambda line: None)
    inference_threads = inference_threads or pipe.engine.num_contexts
    split = plan_threads(pipe.engine, workers, engine_threads)
    second, split = engine_for_split(pipe.engine, split)
    engine = second or pipe.engine
    try:
        return _bench(pipe, engine, paths, split, batch_size, inference_threads, sequential_pipe or pipe, say)
    finally:
        if engine is not pipe.engine:
            engine.close()


def _bench(pipe, engine, paths, split, batch_size, inference_threads, sequential_pipe, say) -> PipelineBenchResult:
    workers = split.workers
    load_before = os.getloadavg()[0]
    stages: list[StageRate] = []

    say(f"read (decode) {len(paths)} files on {workers} worker(s)")
    sample, seconds = _read_stage(paths, workers)
    if not sample:
        raise InputError(f"none of the {len(paths)} files decodes as an image", "point --images at JPEG/PNG files")
    stages.append(StageRate("read", workers, len(paths), seconds))

    say(f"preprocess {len(paths)} images on {workers} worker(s)")
    tensors, metas, seconds = _preprocess_stage(pipe, sample, len(paths), workers)
    stages.append(StageRate("preprocess", workers, len(paths), seconds))

    say(f"infer batches of {batch_size} on {inference_threads} thread(s)")
    batch = np.concatenate([tensors[i % len(tensors)] for i in range(batch_size)])
    batch_metas = [metas[i % len(metas)] for i in range(batch_size)]
    calls = max(1, math.ceil(len(paths) / batch_size))
    outputs, seconds = _infer_stage(engine, pipe._input.name, batch, calls, inference_threads)
    stages.append(StageRate("infer", inference_threads, calls * batch_size, seconds))

    say(f"postprocess {calls} batches on {workers} worker(s)")
    seconds = _parallel_seconds(lambda _: pipe.head(outputs, batch_metas, [None] * batch_size), range(calls), workers)
    stages.append(StageRate("postprocess", workers, calls * batch_size, seconds))

    say(f"sequential loop over {len(paths)} files")
    sequential = _sequential_rate(sequential_pipe, paths)

    say(f"Pipeline.stream over {len(paths)} files")
    start = time.perf_counter()
    done = errors = 0
    with pipe.stream(paths, batch_size=batch_size, workers=workers, threads=split.engine_threads,
                     inference_threads=inference_threads) as results:
        for item in results:
            done += item.ok
            errors += not item.ok
    stream_rate = done / (time.perf_counter() - start)
    return PipelineBenchResult(
        model=pipe.spec.model, backend=pipe.engine.backend, images=len(paths), errors=errors, batch_size=batch_size,
        workers=workers, inference_threads=inference_threads, engine_threads=split.engine_threads, sequential=sequential,
        stream=stream_rate, stages=tuple(stages), load_average=(load_before, os.getloadavg()[0]),
        notes=tuple(_notes(pipe)), split=split.text(),
    )


def _notes(pipe) -> list[str]:
    notes = []
    if pipe.spec.random_weights:
        notes.append("random weights: the speed is the model's, the labels are meaningless")
    if "cpu" in pipe.engine.backend:
        notes.append("the engine runs on the CPU: every stage competes for the same cores")
    return notes


def _parallel_seconds(work: Callable, items, threads: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(work, items):
            pass
    return time.perf_counter() - start


def _read_stage(paths: list[Path], workers: int) -> tuple[list[np.ndarray], float]:
    sample: list[np.ndarray] = []

    def read(path: Path):
        try:
            image = load_image(path)
        except TrtpipeError:
            return None
        if len(sample) < SAMPLE_IMAGES:
            sample.append(image)  # list.append is atomic under the GIL
        return None

    seconds = _parallel_seconds(read, paths, workers)
    return sample, seconds


def _preprocess_stage(pipe, sample: list[np.ndarray], count: int, workers: int):
    def prepare(index: int):
        image = sample[index % len(sample)]
        if pipe.feeds_frames:
            frame = check_frame(image, pipe.spec, pipe.frame_range)
            return frame[None], resize_meta(frame.shape[0], frame.shape[1], pipe.spec)
        tensor, (meta,) = preprocess_with_meta([image], pipe.spec)
        return tensor.astype(pipe._dtype, copy=False), meta

    kept: dict[int, tuple] = {}

    def prepare_and_keep(index: int) -> None:
        prepared = prepare(index)
        if index < len(sample):  # one of each decoded image for the infer stage; the rest is dropped at once
            kept[index] = prepared

    seconds = _parallel_seconds(prepare_and_keep, range(count), workers)
    kept_in_order = [kept[i] for i in range(len(sample))]
    return [t for t, _ in kept_in_order], [m for _, m in kept_in_order], seconds


def _infer_stage(engine, input_name: str, batch: np.ndarray, calls: int, threads: int):
    feeds = {input_name: batch}
    outputs = engine.infer(feeds)  # warm-up, and the outputs the postprocess stage decodes
    seconds = _parallel_seconds(lambda _: engine.infer(feeds), range(calls), threads)
    return outputs, seconds


def _sequential_rate(pipe, paths: list[Path]) -> float:
    pipe(load_image(paths[0]))  # warm-up
    done = 0
    start = time.perf_counter()
    for path in paths:
        image = cv2.imread(str(path))
        if image is not None:
            pipe(image)
            done += 1
    return done / (time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------
# trtpipe bench MODEL --pipeline --images DIR
# ----------------------------------------------------------------------------------------------


def run_cli(args) -> int:
    """``trtpipe bench MODEL --pipeline --images DIR``: prints the table and a summary line, writes a JSON report."""
    from trtpipe.errors import ConfigError
    from trtpipe.io import atomic_write_text, ensure_writable_dir
    from trtpipe.pipeline.pipeline import Pipeline
    from trtpipe.pipeline.sources import open_source
    from trtpipe.pipeline.stream import DEFAULT_BATCH, MAX_DEFAULT_BATCH
    from trtpipe.runtime.loader import default_backend

    if not args.model:
        raise InputError("--pipeline needs a model: an .engine or an .onnx", "e.g. trtpipe bench engines/mobilenetv2.onnx "
                                                                           "--pipeline --images calib_data/")
    if not args.images:
        raise InputError("--pipeline measures image files and needs --images DIR", "add e.g. --images calib_data/")
    if args.simulate:
        raise ConfigError("--pipeline with --simulate: a simulated engine's times are not figures",
                          "run --pipeline on a GPU, or on ONNX Runtime (an .onnx, or --backend auto)")
    if args.infer_streams < 1 or (args.workers is not None and args.workers < 1):
        raise ConfigError(f"--infStreams {args.infer_streams} / --workers {args.workers}: both must be at least 1",
                          "e.g. --workers 2 --infStreams 2")
    model = Path(args.model)
    if not model.is_file():
        raise InputError(f"{model}: no such file; --pipeline runs an .engine or an .onnx", "export or build the model first")
    with open_source(args.images) as source:
        paths = [item.path for item in source if item.path is not None]
    if args.max_images:
        paths = paths[: args.max_images]
    backend = args.backend or "auto"
    if backend == "torch":
        raise InputError("--pipeline runs engines and ONNX models, not the torch backend", "drop --backend torch")
    out = Path(args.json or f"reports/{model.stem}_pipeline.json")
    ensure_writable_dir(out.parent)  # before the long work
    # Options of the backend that does not run are dropped by load_engine (with a log line): only those given.
    options = {"contexts": args.infer_streams}
    if args.cuda_graph:
        options["cuda_graph"] = True
    if args.threads:
        options["threads"] = args.threads
    from trtpipe.cli.common import spec_from_args

    options["spec"] = spec_from_args(args, model)  # --preset and the flags; None: the engine's sidecar says it
    opener = Pipeline.from_onnx if default_backend(model) == "onnxruntime" else Pipeline.from_engine
    started = time.perf_counter()
    with opener(model, backend=backend, **options) as pipe:
        batch = max(args.batch) if args.batch else min(pipe.engine.max_batch or DEFAULT_BATCH, MAX_DEFAULT_BATCH)
        if pipe.engine.max_batch and batch > pipe.engine.max_batch:
            raise ConfigError(f"--batch {batch} is above the engine's profile max {pipe.engine.max_batch}",
                              f"use --batch {pipe.engine.max_batch} or less, or rebuild with a larger profile")
        result = bench_pipeline(
            pipe, paths, batch_size=batch, workers=args.workers, engine_threads=args.threads,  # None: the stream's split
            progress=lambda line: print(f"  {line} ...", file=sys.stderr),
        )
        if pipe.fallback:
            note = (f"CPU fallback ({pipe.fallback}): the engine's {pipe.precision} network ONNX "
                    f"{getattr(pipe.engine, 'path', '')} ran on {pipe.backend}")  # as bench's own note says it
            result = dataclasses.replace(result, notes=(note,) + result.notes)
    atomic_write_text(out, json.dumps(result.to_dict(), indent=2) + "\n")
    print(result.table())
    for note in result.notes:
        print(f"note: {note}")
    print(f"{result.summary()}; wrote {out} in {time.perf_counter() - started:.1f} s")
    return 0

"""``Pipeline.stream``: read, preprocess, infer and post-process at once, with results in input order.

    with pipe.stream("photos/", batch_size=8, workers=4) as results:
        for item in results:
            if item.ok:
                print(item.source, item.result.labels[0], f"{item.times.latency:.1f} ms")
            else:
                print(item.source, item.error)
        print(results.stats.summary())

A sequential loop costs the sum of its stages per image; a stream costs the slowest stage, because each stage
has its own threads and they overlap:

- one reader thread takes items from the source (video and camera frames are decoded here: a
  ``cv2.VideoCapture`` reads in order) and hands each to a worker. It waits while ``in_flight`` items are
  unfinished, so memory stays flat on an endless camera stream however slow the consumer is, and while
  ``2 * workers`` of them are not yet preprocessed, so that what waits is mostly network inputs (602 KB for
  3x224x224 float32) rather than decoded frames (6.2 MB at 1080p);
- ``workers`` threads decode image files and preprocess (``cv2.imdecode``, ``cv2.resize`` and numpy release the
  GIL, so they run in parallel), and later run the task head on finished batches;
- one inference thread per execution context of the engine (``engine.num_contexts``; concurrent calls of a
  TensorRT engine with several contexts run on the GPU in parallel) takes the prepared images that are ready, up
  to ``batch_size`` of them (frames of one size together, for engines that preprocess themselves), and runs the
  engine: batches fill up when the engine is the slowest stage and stay small (low latency) when it is not;
- the caller's thread takes the results in input order.

An item that cannot be read or preprocessed (a corrupt file, a frame of the wrong size) becomes a result with
``error`` set and the stream goes on. Anything else that fails (the engine, a task head) stops the stream and
is raised to the caller. Closing the stream (``close()``, leaving ``with``, the end of the loop, Ctrl-C in the
loop) stops every thread and releases the source.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from trtpipe.errors import ConfigError, TrtpipeError
from trtpipe.pipeline.cores import CoreSplit, choose_split, usable_cores
from trtpipe.pipeline.heads import run_head
from trtpipe.pipeline.preprocess import ResizeMeta, check_frame, load_image, preprocess_with_meta, resize_meta
from trtpipe.pipeline.sources import FrameSource, SourceItem, open_source
from trtpipe.runtime.base import StageTimes

log = logging.getLogger("trtpipe.pipeline")

DEFAULT_BATCH = 8  # engines without a profile max (ONNX Runtime with a dynamic batch)
MAX_DEFAULT_BATCH = 32  # a default batch never exceeds this, whatever the profile allows
_POLL_S = 0.1  # how often blocked threads look at the stop flag
_JOIN_S = 30.0  # how long close() waits for a thread in an engine call before leaving it (daemon) behind
_END = object()  # one per inference thread, after the last prepared item


def plan_threads(engine, workers: int | None = None, threads: int | None = None, cores: int | None = None) -> CoreSplit:
    """How a stream on ``engine`` splits the usable cores (:mod:`trtpipe.pipeline.cores`); explicit values win.

    Args:
        engine: the pipeline's engine; it computes on the CPU when its ``on_cpu`` is True (ONNX Runtime's CPU
            provider). TensorRT and ONNX Runtime on CUDA leave every core to the workers.
        workers: the caller's ``workers=`` (None: choose).
        threads: the caller's ``threads=`` (None: choose).
        cores: usable cores. Defaults to :func:`~trtpipe.pipeline.cores.usable_cores`.
    """
    return choose_split(cores if cores is not None else usable_cores(), bool(getattr(engine, "on_cpu", False)),
                        workers=workers, threads=threads)


def engine_for_split(engine, split: CoreSplit) -> tuple[Any, CoreSplit]:
    """(a second session of ``engine`` with ``split``'s engine threads, or None when ``engine`` already has them or
    ``split`` leaves its threads alone; the split as it stands). The caller closes the session it gets.

    An engine that opens its model its own way (``with_threads`` returns None, or it has none) keeps its threads,
    and the split's reason says so.
    """
    if split.engine_threads is None or split.engine_threads == getattr(engine, "threads", None):
        return None, split
    with_threads = getattr(engine, "with_threads", None)
    second = with_threads(split.engine_threads) if with_threads is not None else None
    if second is None:
        return None, dataclasses.replace(split, engine_threads=None, reason=split.reason + "; the engine keeps its own threads")
    return second, split


@dataclass(frozen=True)
class StreamTimes:
    """Where one item's time went, in milliseconds. Batch stages are the batch's (shared by its images)."""

    read: float | None  # reading + decoding the image (None: an array was passed in)
    preprocess: float  # resize + normalise (engines that preprocess themselves: checking the frame)
    wait: float  # from prepared to its batch entering the engine (batching and queueing)
    infer: float  # the engine call of its batch, as the host saw it
    postprocess: float  # the task head on its batch
    latency: float  # from the reader taking the item to its result being ready
    batch: int  # images in its engine call
    engine: StageTimes | None = None  # the engine's own times for the batch (h2d/compute/d2h on TensorRT)


@dataclass(frozen=True)
class StreamResult:
    """One item of a stream: its task result, or the error that kept it from having one."""

    index: int  # position in the source, from 0
    source: str  # the file, "clip.mp4 frame 12", "camera 0 frame 3", "image 4"
    result: Any = None  # Classification | Detections | Segmentation (backend and times set); None on error
    error: TrtpipeError | None = None
    times: StreamTimes | None = None  # None on error
    image: np.ndarray | None = None  # the decoded BGR image, with keep_images=True

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class StreamStats:
    """Totals of a stream so far; times are means in milliseconds per image (batch stages per batch)."""

    images: int  # results taken by the caller, errors included
    errors: int
    batches: int
    seconds: float  # from the first item read to the last result taken
    read_ms: float | None  # mean per image that was read from a file or a video
    preprocess_ms: float | None
    infer_ms: float | None  # mean per batch
    postprocess_ms: float | None  # mean per batch
    latency_ms: float | None  # mean per image
    latency_max_ms: float | None
    split: CoreSplit | None = None  # the workers and engine threads the stream ran on, and why

    @property
    def images_per_s(self) -> float | None:
        done = self.images - self.errors
        return done / self.seconds if self.seconds > 0 and done else None

    @property
    def mean_batch(self) -> float | None:
        return (self.images - self.errors) / self.batches if self.batches else None

    def summary(self) -> str:
        """One line: images, errors, time, rate, mean batch and the mean time of each stage."""
        rate = f"{self.images_per_s:,.1f} images/s" if self.images_per_s else "no images/s (nothing finished)"
        parts = [f"{self.images} images ({self.errors} errors) in {self.seconds:.2f} s, {rate}"]
        if self.mean_batch:
            parts.append(f"mean batch {self.mean_batch:.1f}")
        stages = [(name, value) for name, value in (("read", self.read_ms), ("preprocess", self.preprocess_ms),
                  ("infer/batch", self.infer_ms), ("postprocess/batch", self.postprocess_ms),
                  ("latency", self.latency_ms)) if value is not None]
        if stages:
            parts.append("mean ms: " + ", ".join(f"{name} {value:.2f}" for name, value in stages))
        if self.split is not None:
            parts.append(self.split.text())
        return "; ".join(parts)


@dataclass
class _Prepared:
    index: int
    name: str
    started: float  # perf_counter when the reader took it
    read_ms: float | None = None
    preprocess_ms: float = 0.0
    ready: float = 0.0  # perf_counter when prepared
    tensor: np.ndarray | None = None  # (1, ...) network input
    meta: ResizeMeta | None = None
    image: np.ndarray | None = None
    error: TrtpipeError | None = None


class Stream:
    """Results of ``Pipeline.stream(source, ...)``, in input order; iterate it, then close it (or use ``with``).

    Args:
        pipeline: the open Pipeline whose engine, spec and head run the items (the stream does not close it).
        source: what :func:`~trtpipe.pipeline.sources.open_source` opens, or an open FrameSource.
        batch_size: images per engine call, at most the engine's profile max. Defaults to that max (8 when the
            engine has none), at most 32.
        workers: decode/preprocess/post-process threads. Defaults to :func:`plan_threads`'s choice: every usable
            core for an engine on the GPU; on ONNX Runtime's CPU provider the cores left after the engine's threads.
        threads: ONNX Runtime intra-op threads of the stream's engine (CPU provider). Defaults to
            :func:`plan_threads`'s choice (half the usable cores); the stream then runs on a second session with
            that many threads, so ``pipe(img)`` keeps its own. Ignored for engines that do not run on the CPU.
        inference_threads: concurrent engine calls. Defaults to the engine's execution contexts (``num_contexts``, 1).
        in_flight: items read but not yet taken by the caller, at most (what bounds memory). Defaults to
            ``batch_size * (inference_threads + 2) + 2 * workers``. Of those, at most ``2 * workers`` wait to be
            preprocessed (each may hold a decoded frame).
        max_frames: stop after this many items (cameras never end by themselves). Defaults to no limit.
        keep_images: put each decoded image in its StreamResult (to draw on it). Defaults to False.

    Raises:
        ConfigError: a batch size, worker or thread count below 1.
        InputError: a source that cannot be opened (see open_source).
    """

    def __init__(
        self,
        pipeline,
        source: Any,
        *,
        batch_size: int | None = None,
        workers: int | None = None,
        threads: int | None = None,
        inference_threads: int | None = None,
        in_flight: int | None = None,
        max_frames: int | None = None,
        keep_images: bool = False,
    ):
        engine = pipeline.engine
        limit = engine.max_batch
        if batch_size is None:
            batch_size = min(limit or DEFAULT_BATCH, MAX_DEFAULT_BATCH)
        inference_threads = inference_threads if inference_threads is not None else engine.num_contexts
        for name, value in (("batch_size", batch_size), ("workers", workers), ("threads", threads),
                            ("inference_threads", inference_threads)):
            if value is None and name in ("workers", "threads"):
                continue
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"Pipeline.stream: {name} is {value!r}, expected a whole number of at least 1",
                                  f"pass {name}=1 or more, or leave it unset for the default")
        if limit and batch_size > limit:
            log.info("batch size %d is above the engine's profile max %d; batches of %d", batch_size, limit, limit)
            batch_size = limit
        self.split = plan_threads(engine, workers, threads)
        workers = self.split.workers
        if in_flight is None:
            in_flight = batch_size * (inference_threads + 2) + 2 * workers
        if in_flight < batch_size:
            raise ConfigError(f"Pipeline.stream: in_flight {in_flight} is below batch_size {batch_size}",
                              "allow at least one batch in flight, or leave in_flight unset")
        frames = source if isinstance(source, FrameSource) else open_source(source, max_frames=max_frames)
        try:
            stream_engine, self.split = engine_for_split(engine, self.split)
        except BaseException:
            frames.close()
            raise
        self.batch_size, self.workers, self.inference_threads, self.in_flight = batch_size, workers, inference_threads, in_flight
        self.source = frames.description
        self.kind = frames.kind
        self._machinery = _Machinery(pipeline, frames, batch_size, workers, inference_threads, in_flight, keep_images,
                                     stream_engine, self.split)
        # Threads hold the machinery, not this object: a stream dropped without close() still stops them.
        self._finalizer = weakref.finalize(self, self._machinery.close)
        self._machinery.start()

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> StreamResult:
        try:
            return self._machinery.next_result()
        except StopIteration:
            self.close()
            raise
        except BaseException:  # the engine failed, or Ctrl-C in the caller's loop: stop everything first
            self.close()
            raise

    @property
    def stats(self) -> StreamStats:
        return self._machinery.stats()

    def close(self) -> None:
        """Stops every thread, drops what is in flight and releases the source; calling it twice is harmless."""
        self._finalizer()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _Machinery:
    """The threads and queues of one stream (kept apart from Stream so that dropping the Stream can stop them)."""

    def __init__(self, pipeline, source: FrameSource, batch_size: int, workers: int, inference_threads: int,
                 in_flight: int, keep_images: bool, own_engine=None, split: CoreSplit | None = None):
        self.pipeline = pipeline
        self.own_engine = own_engine  # the stream's second session (its own threads), closed with the stream
        self.engine = own_engine if own_engine is not None else pipeline.engine
        self.split = split
        self.warmed: set[int] = set()  # batch sizes warmed on own_engine (the pipeline's engine keeps its own set)
        self.run_info = pipeline.run_info  # backend, precision, fallback: the same for every result
        self.spec = pipeline.spec
        self.head = pipeline.head
        self.input_name = pipeline._input.name
        self.dtype = pipeline._dtype
        self.feeds_frames = pipeline.feeds_frames
        self.frame_range = pipeline.frame_range
        self.source = source
        self.batch_size = batch_size
        self.keep_images = keep_images
        self.slots = threading.Semaphore(in_flight)
        # Items handed to the workers and not yet preprocessed: each may hold a decoded frame (a video's, an array's).
        self.unprepared = threading.Semaphore(2 * workers)
        self.ready: queue.Queue = queue.Queue()  # _Prepared items and _END markers; bounded by the slots
        self.condition = threading.Condition()
        self.results: dict[int, StreamResult] = {}
        self.next_index = 0
        self.total: int | None = None  # known once the reader has finished
        self.outstanding = 0  # items handed to a worker whose preparation has not finished
        self.stop = threading.Event()
        self.failure: BaseException | None = None
        self.closed = False
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="trtpipe-stream-worker")
        self.reader = threading.Thread(target=self._read, name="trtpipe-stream-reader", daemon=True)
        self.inference = [threading.Thread(target=self._infer_loop, name=f"trtpipe-stream-infer-{i}", daemon=True)
                          for i in range(inference_threads)]
        self.started: float | None = None
        self.finished: float | None = None
        self.totals = {"errors": 0, "batches": 0, "read": 0.0, "read_count": 0, "preprocess": 0.0, "infer": 0.0,
                       "postprocess": 0.0, "latency": 0.0, "latency_max": 0.0, "timed": 0}

    def start(self) -> None:
        for thread in (self.reader, *self.inference):
            thread.start()

    # -- reader --------------------------------------------------------------------------------

    def _read(self) -> None:
        count = 0
        try:
            for item in self.source:
                if not (self._wait(self.slots) and self._wait(self.unprepared)):
                    return
                started = time.perf_counter()
                if self.started is None:
                    self.started = started
                with self.condition:
                    self.outstanding += 1
                self.pool.submit(self._prepare, count, item, started)
                count += 1
        except BaseException as exc:  # noqa: BLE001 - a camera that fails to open, a user generator that raises
            self._fail(exc)
        finally:
            self.source.close()
            with self.condition:
                self.total = count
                while self.outstanding and not self.stop.is_set():
                    self.condition.wait(_POLL_S)
                self.condition.notify_all()
            for _ in self.inference:
                self.ready.put(_END)

    def _wait(self, semaphore: threading.Semaphore) -> bool:
        """Acquires ``semaphore``, looking at the stop flag meanwhile; False when the stream stopped."""
        while not semaphore.acquire(timeout=_POLL_S):
            if self.stop.is_set():
                return False
        return not self.stop.is_set()

    # -- workers: prepare ----------------------------------------------------------------------

    def _prepare(self, index: int, item: SourceItem, started: float) -> None:
        try:
            try:
                prepared = self._prepared(index, item, started)
            finally:
                self.unprepared.release()
            if prepared is not None:
                prepared.ready = time.perf_counter()
                self.ready.put(prepared)
        finally:
            # Only once the item is queued: the reader puts the end markers when nothing is outstanding, and an
            # item queued after them would never be taken.
            with self.condition:
                self.outstanding -= 1
                self.condition.notify_all()

    def _prepared(self, index: int, item: SourceItem, started: float) -> _Prepared | None:
        """Decodes and preprocesses one item; an unreadable one carries its error; None after a bug (stream failed)."""
        prepared = _Prepared(index, item.name, started, read_ms=item.read_ms)
        try:
            if item.error is not None:
                raise item.error
            image = item.image
            if item.path is not None:
                begin = time.perf_counter()
                image = load_image(item.path)
                prepared.read_ms = (time.perf_counter() - begin) * 1e3
            begin = time.perf_counter()
            if self.feeds_frames:
                frame = check_frame(image, self.spec, self.frame_range, item.name)
                prepared.tensor, prepared.meta = frame[None], resize_meta(frame.shape[0], frame.shape[1], self.spec)
            else:
                tensor, (prepared.meta,) = preprocess_with_meta([image], self.spec, names=[item.name])
                prepared.tensor = tensor if tensor.dtype == self.dtype else tensor.astype(self.dtype)
            prepared.preprocess_ms = (time.perf_counter() - begin) * 1e3
            if self.keep_images:
                prepared.image = image
        except TrtpipeError as exc:  # this item only: report it, go on
            prepared.error = exc
        except BaseException as exc:  # noqa: BLE001 - a bug: stop the stream and tell the caller
            self._fail(exc)
            return None
        return prepared

    # -- inference threads ---------------------------------------------------------------------

    def _take(self):
        while not self.stop.is_set():
            try:
                return self.ready.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _END

    def _infer_loop(self) -> None:
        carried = None  # taken while filling a batch it could not join: this thread's next item (never put back,
        # which would queue it behind the end markers)
        try:
            while True:
                first, carried = (carried, None) if carried is not None else (self._take(), None)
                if first is _END or self.stop.is_set():
                    return
                if first.error is not None:
                    self._deliver_error(first)
                    continue
                batch = [first]
                while len(batch) < self.batch_size:
                    try:
                        item = self.ready.get_nowait()
                    except queue.Empty:
                        break
                    if item is _END or (item.error is None and item.tensor.shape != first.tensor.shape):
                        carried = item  # the end, or a frame of another size: after this batch
                        break
                    if item.error is not None:
                        self._deliver_error(item)
                    else:
                        batch.append(item)
                self._run_batch(batch)
        except BaseException as exc:  # noqa: BLE001 - the engine failed: stop the stream and tell the caller
            self._fail(exc)

    def _run_batch(self, batch: list[_Prepared]) -> None:
        inputs = batch[0].tensor if len(batch) == 1 else np.concatenate([p.tensor for p in batch])
        # a batch size's first engine call is warmed up untimed, as Pipeline does
        if self.own_engine is None:
            self.pipeline._warm_up(len(batch))
        else:
            self.pipeline._warm_up(len(batch), engine=self.own_engine, warmed=self.warmed)
        begin = time.perf_counter()
        outputs, engine_times = self.engine.infer_timed({self.input_name: inputs})
        infer_ms = (time.perf_counter() - begin) * 1e3
        if not self.stop.is_set():
            self.pool.submit(self._postprocess, batch, outputs, engine_times, begin, infer_ms)

    # -- workers: post-process -----------------------------------------------------------------

    def _postprocess(self, batch: list[_Prepared], outputs, engine_times: StageTimes, infer_begin: float, infer_ms: float) -> None:
        try:
            begin = time.perf_counter()
            results = run_head(self.head, outputs, [p.meta for p in batch], [p.image for p in batch])
            end = time.perf_counter()
            post_ms = (end - begin) * 1e3
            self._count_batch(infer_ms, post_ms)
            for prepared, result in zip(batch, results):
                latency = (end - prepared.started) * 1e3
                times = StreamTimes(
                    read=prepared.read_ms, preprocess=prepared.preprocess_ms, wait=(infer_begin - prepared.ready) * 1e3,
                    infer=infer_ms, postprocess=post_ms, latency=latency, batch=len(batch), engine=engine_times,
                )
                stage_times = dataclasses.replace(engine_times, preprocess=prepared.preprocess_ms, postprocess=post_ms, end_to_end=latency)
                result = dataclasses.replace(result, times=stage_times, **self.run_info)
                self._deliver(StreamResult(prepared.index, prepared.name, result, None, times, prepared.image))
        except BaseException as exc:  # noqa: BLE001 - a head that fails on real outputs is a bug or a wrong spec: stop
            self._fail(exc)

    # -- results, in order ---------------------------------------------------------------------

    def _deliver_error(self, prepared: _Prepared) -> None:
        self._deliver(StreamResult(prepared.index, prepared.name, None, prepared.error, None, None))

    def _deliver(self, result: StreamResult) -> None:
        with self.condition:
            self.results[result.index] = result
            totals = self.totals
            if result.error is not None:
                totals["errors"] += 1
            else:
                times = result.times
                if times.read is not None:
                    totals["read"] += times.read
                    totals["read_count"] += 1
                totals["preprocess"] += times.preprocess
                totals["latency"] += times.latency
                totals["latency_max"] = max(totals["latency_max"], times.latency)
                totals["timed"] += 1
            self.condition.notify_all()

    def _count_batch(self, infer_ms: float, post_ms: float) -> None:
        with self.condition:
            self.totals["batches"] += 1
            self.totals["infer"] += infer_ms
            self.totals["postprocess"] += post_ms

    def next_result(self) -> StreamResult:
        with self.condition:
            while True:
                if self.failure is not None:
                    raise self.failure
                if self.next_index in self.results:
                    result = self.results.pop(self.next_index)
                    self.next_index += 1
                    self.finished = time.perf_counter()
                    break
                if self.total is not None and self.next_index >= self.total:
                    raise StopIteration
                if self.closed:
                    raise StopIteration
                self.condition.wait(_POLL_S)
        self.slots.release()
        return result

    def _fail(self, exc: BaseException) -> None:
        with self.condition:
            if self.failure is None and not self.stop.is_set():
                self.failure = exc
            self.stop.set()
            self.condition.notify_all()

    def stats(self) -> StreamStats:
        with self.condition:
            totals = dict(self.totals)
            taken = self.next_index
        seconds = (self.finished - self.started) if self.started is not None and self.finished is not None else 0.0
        timed, batches = totals["timed"], totals["batches"]
        mean = lambda key, count: totals[key] / count if count else None  # noqa: E731
        return StreamStats(
            images=taken, errors=totals["errors"], batches=batches, seconds=seconds,
            read_ms=mean("read", totals["read_count"]), preprocess_ms=mean("preprocess", timed),
            infer_ms=mean("infer", batches), postprocess_ms=mean("postprocess", batches),
            latency_ms=mean("latency", timed), latency_max_ms=totals["latency_max"] if timed else None,
            split=self.split,
        )

    # -- shutdown ------------------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        with self.condition:
            self.closed = True
            self.stop.set()
            self.condition.notify_all()
        current = threading.current_thread()
        for thread in (self.reader, *self.inference):
            if thread is not current and thread.is_alive():
                thread.join(_JOIN_S)
                if thread.is_alive():
                    log.warning("%s did not stop within %.0f s (blocked in the source or the engine); left behind", thread.name, _JOIN_S)
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.own_engine is not None and not any(t.is_alive() for t in self.inference):
            self.own_engine.close()  # (a thread left blocked in it keeps it: closing would pull the session away)
        with self.condition:
            self.results.clear()
        while True:  # drop prepared tensors still queued
            try:
                self.ready.get_nowait()
            except queue.Empty:
                break

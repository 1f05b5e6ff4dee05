"""Timing loops as trtexec runs them: warm-up by time (excluded), then a run by duration with a minimum count.

Two modes, always labelled in the report:

- **synchronous latency** (:func:`measure_sync`): one inference at a time, synchronized after each; every
  iteration yields its own stage times (device stages from CUDA events, host ones from ``perf_counter``).
- **enqueue-ahead throughput** (:func:`measure_enqueue_ahead`): up to ``in_flight`` inferences are queued
  before the oldest is waited for, so the device never idles between them; throughput is iterations over the
  wall time with the queue drained, and each inference's device stages still come from its own CUDA events.
- **concurrent streams** (:func:`measure_concurrent`, trtexec's ``--infStreams N``): N threads each run
  synchronous inferences, on their own execution context; throughput is all their iterations over the wall time.

Ctrl-C ends a loop cleanly: it returns what was measured so far with ``partial=True`` and the caller
decides to stop (the bench then writes a report marked partial).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

from trtpipe.errors import ConfigError


@dataclass(frozen=True)
class MeasureSettings:
    """How long and how often to measure. Defaults are trtexec's (200 ms warm-up, 3 s, at least 10 iterations)."""

    warmup_s: float = 0.2  # warm-up time, excluded from every statistic; at least one call is made
    duration_s: float = 3.0  # minimum timed duration
    iterations_min: int = 10  # minimum timed iterations (the run goes on past duration_s until reached)
    in_flight: int = 2  # enqueue-ahead: inferences queued before the oldest is waited for

    def __post_init__(self) -> None:
        if self.warmup_s < 0 or self.duration_s < 0:
            raise ConfigError(
                f"warm-up {self.warmup_s} s / duration {self.duration_s} s: expected durations >= 0",
                "write e.g. --warmup 200ms --duration 3s",
            )
        if self.iterations_min < 1:
            raise ConfigError(f"--iterations-min is {self.iterations_min}, expected >= 1", "e.g. --iterations-min 10")
        if self.in_flight < 1:
            raise ConfigError(f"in-flight depth is {self.in_flight}, expected >= 1", "use 2 (trtexec's double buffering)")


@dataclass
class Samples:
    """Per-iteration samples of one timed loop: metric name -> milliseconds (None where not measured)."""

    values: dict[str, list[float | None]] = field(default_factory=lambda: collections.defaultdict(list))
    iterations: int = 0
    wall_s: float = 0.0
    partial: bool = False  # Ctrl-C ended the loop early
    # Host clock (perf_counter) at which each iteration started, in ms since the timed loop began; the
    # per-iteration export (bench --exportTimes) needs it, the statistics do not.
    starts_ms: list[float] = field(default_factory=list)

    def add(self, metrics: Mapping[str, float | None], start_ms: float | None = None) -> None:
        for name, value in metrics.items():
            self.values[name].append(value)
        self.starts_ms.append(start_ms)
        self.iterations += 1


class Progress(Protocol):
    def update(self, phase: str, elapsed_s: float, duration_s: float, iterations: int) -> None: ...

    def done(self, phase: str, samples: Samples) -> None: ...


class AsyncTarget(Protocol):
    """A model that can queue inferences without waiting for them (inputs already staged on the device)."""

    def enqueue(self) -> object:
        """Queues one inference; returns a handle to wait on. Must not block on the device."""

    def wait(self, handle: object) -> Mapping[str, float | None]:
        """Blocks until the inference of ``handle`` has finished; returns its device stage times (ms)."""

    def close(self) -> None: ...


class _NoProgress:
    def update(self, phase, elapsed_s, duration_s, iterations) -> None:
        pass

    def done(self, phase, samples) -> None:
        pass


def _keep_going(samples: Samples, start: float, settings: MeasureSettings) -> bool:
    return samples.iterations < settings.iterations_min or time.perf_counter() - start < settings.duration_s


def warm_up(call: Callable[[], object], settings: MeasureSettings) -> None:
    """Calls ``call`` for ``settings.warmup_s`` (at least once): lazy allocation, kernel selection, caches."""
    start = time.perf_counter()
    call()
    while time.perf_counter() - start < settings.warmup_s:
        call()


def measure_sync(
    step: Callable[[], Mapping[str, float | None]],
    settings: MeasureSettings,
    phase: str = "latency",
    progress: Progress | None = None,
) -> Samples:
    """Runs ``step`` (one synchronous inference returning its stage times) after a warm-up, by duration.

    The host time of each call is added as the ``call`` metric (``perf_counter``; the call synchronizes
    before it returns, so this is a true latency, not an enqueue time).

    Returns:
        The samples; ``partial`` is True when Ctrl-C stopped the loop (warm-up included).
    """
    progress = progress or _NoProgress()
    samples = Samples()
    try:
        warm_up(step, settings)
        start = time.perf_counter()
        try:
            while _keep_going(samples, start, settings):
                t0 = time.perf_counter()
                metrics = step()
                call_ms = (time.perf_counter() - t0) * 1e3
                samples.add({"call": call_ms, **metrics}, (t0 - start) * 1e3)
                progress.update(phase, time.perf_counter() - start, settings.duration_s, samples.iterations)
        finally:
            samples.wall_s = time.perf_counter() - start
    except KeyboardInterrupt:
        samples.partial = True
    progress.done(phase, samples)
    return samples


def measure_enqueue_ahead(
    target: AsyncTarget,
    settings: MeasureSettings,
    phase: str = "throughput",
    progress: Progress | None = None,
) -> Samples:
    """Keeps up to ``settings.in_flight`` inferences queued; throughput = iterations / wall time (queue drained).

    Each iteration records ``enqueue`` (host time of the launch, perf_counter) and the device stage times
    its own CUDA events measured, read when it is waited for.
    """
    progress = progress or _NoProgress()
    samples = Samples()
    pending: collections.deque = collections.deque()

    def drain(keep: int) -> list[tuple[Mapping[str, float | None], float | None]]:
        finished = []
        while len(pending) > keep:
            handle, enqueue_ms, start_ms = pending.popleft()
            finished.append(({"enqueue": enqueue_ms, **target.wait(handle)}, start_ms))
        return finished

    def warm_step() -> None:
        pending.append((target.enqueue(), None, None))
        drain(settings.in_flight - 1)

    try:
        warm_up(warm_step, settings)
        drain(0)
        start = time.perf_counter()
        queued = 0
        try:
            # Enqueue by duration; an iteration counts when it finishes, the clock stops when the queue is empty.
            while queued < settings.iterations_min or time.perf_counter() - start < settings.duration_s:
                t0 = time.perf_counter()
                handle = target.enqueue()
                pending.append((handle, (time.perf_counter() - t0) * 1e3, (t0 - start) * 1e3))
                queued += 1
                for metrics, start_ms in drain(settings.in_flight - 1):
                    samples.add(metrics, start_ms)
                progress.update(phase, time.perf_counter() - start, settings.duration_s, samples.iterations)
        except KeyboardInterrupt:
            samples.partial = True
        for metrics, start_ms in drain(0):
            samples.add(metrics, start_ms)
        samples.wall_s = time.perf_counter() - start
    except KeyboardInterrupt:  # during warm-up: nothing was timed; leave no work queued behind
        samples.partial = True
        drain(0)
    progress.done(phase, samples)
    return samples


def measure_concurrent(
    step: Callable[[], Mapping[str, float | None]],
    settings: MeasureSettings,
    streams: int,
    phase: str = "throughput",
    progress: Progress | None = None,
) -> Samples:
    """``streams`` threads each call ``step`` (one synchronous inference) in a loop, all for the same duration.

    trtexec's ``--infStreams N``: every thread runs on its own execution context and CUDA stream, so the
    inferences overlap on the device. Each thread warms up on its own; the timed loop starts for all at
    once and ends when the duration and the minimum iteration count (over all threads) are reached.
    Throughput is every thread's iterations over the wall time of the slowest thread.

    Ctrl-C (delivered to the calling thread) stops every thread after its current call; the samples are
    then partial. An exception in a thread stops the others and is raised here.
    """
    import threading

    if streams < 1:
        raise ConfigError(f"--infStreams is {streams}, expected >= 1", "e.g. --infStreams 2")
    progress = progress or _NoProgress()
    samples = Samples()
    lock = threading.Lock()
    stop = threading.Event()
    clock: dict[str, float] = {}
    # The barrier's action runs once, before any thread is released: the clock starts for all at once.
    warmed = threading.Barrier(streams + 1, action=lambda: clock.__setitem__("start", time.perf_counter()))
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            warm_up(step, settings)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
            errors.append(exc)
            stop.set()
        try:
            warmed.wait()
        except threading.BrokenBarrierError:
            return
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                metrics = step()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
                errors.append(exc)
                stop.set()
                return
            call_ms = (time.perf_counter() - t0) * 1e3
            with lock:
                samples.add({"call": call_ms, **metrics}, (t0 - clock["start"]) * 1e3)
                if samples.iterations >= settings.iterations_min and time.perf_counter() - clock["start"] >= settings.duration_s:
                    stop.set()

    threads = [threading.Thread(target=worker, name=f"infStream-{i}", daemon=True) for i in range(streams)]
    for thread in threads:
        thread.start()
    try:
        warmed.wait()  # every stream has warmed up
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=0.05)
            progress.update(phase, time.perf_counter() - clock["start"], settings.duration_s, samples.iterations)
    except threading.BrokenBarrierError:
        pass
    except KeyboardInterrupt:
        samples.partial = True
        stop.set()
        warmed.abort()
        for thread in threads:
            thread.join()
    samples.wall_s = time.perf_counter() - clock["start"] if "start" in clock else 0.0
    if errors:
        raise errors[0]
    progress.done(phase, samples)
    return samples


class StderrProgress:
    """One status line on stderr per phase, redrawn in place on a terminal, printed once per phase otherwise."""

    def __init__(self, prefix: str, stream=None, interval_s: float = 0.25):
        import sys

        self.prefix = prefix
        self.stream = stream or sys.stderr
        self.interactive = getattr(self.stream, "isatty", lambda: False)()
        self.interval_s = interval_s
        self._last = 0.0

    def update(self, phase: str, elapsed_s: float, duration_s: float, iterations: int) -> None:
        now = time.perf_counter()
        if not self.interactive or now - self._last < self.interval_s:
            return
        self._last = now
        shown = min(elapsed_s, duration_s)
        self.stream.write(f"\r{self.prefix} {phase}: {shown:5.1f}/{duration_s:.1f} s, {iterations} iterations   ")
        self.stream.flush()

    def done(self, phase: str, samples: Samples) -> None:
        state = " (interrupted)" if samples.partial else ""
        rate = f", {samples.iterations / samples.wall_s:.1f}/s" if samples.wall_s > 0 and samples.iterations else ""
        self._line(f"{samples.iterations} iterations in {samples.wall_s:.2f} s{rate}{state}", phase)

    def done_untimed(self, phase: str, samples: Samples) -> None:
        """A functional check's phase (a simulation): what ran, and no time or rate, which would be made up."""
        state = " (interrupted)" if samples.partial else ""
        self._line(f"{samples.iterations} iterations checked (functional check: not timed){state}", phase)

    def _line(self, text: str, phase: str) -> None:
        self.stream.write(f"{chr(13) if self.interactive else ''}{self.prefix} {phase}: {text}      \n")
        self.stream.flush()


class UntimedProgress:
    """Wraps a Progress for a functional check: phases end with what ran (``done_untimed``), never a rate."""

    def __init__(self, inner: Progress):
        self.inner = inner

    def update(self, phase: str, elapsed_s: float, duration_s: float, iterations: int) -> None:
        self.inner.update(phase, elapsed_s, duration_s, iterations)

    def done(self, phase: str, samples: Samples) -> None:
        getattr(self.inner, "done_untimed", self.inner.done)(phase, samples)

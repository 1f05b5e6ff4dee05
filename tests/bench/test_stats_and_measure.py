"""Statistics against known samples, duration parsing, and the timing loops' contract (warm-up, duration, Ctrl-C)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from trtpipe.bench.measure import MeasureSettings, measure_enqueue_ahead, measure_sync
from trtpipe.bench.stats import parse_duration, summarize
from trtpipe.errors import ConfigError


def test_statistics_match_numpy_on_known_samples():
    samples = [float(v) for v in range(1, 101)]  # 1..100 ms
    stats = summarize(samples)
    assert (stats.count, stats.min, stats.max, stats.mean) == (100, 1.0, 100.0, 50.5)
    assert stats.median == 50.5
    assert stats.p90 == pytest.approx(90.1) and stats.p95 == pytest.approx(95.05) and stats.p99 == pytest.approx(99.01)
    assert stats.std == pytest.approx(np.std(samples))  # population std, as trtexec


def test_statistics_of_skewed_samples_equal_numpy_percentiles():
    rng = np.random.default_rng(3)
    samples = rng.lognormal(0.0, 0.6, size=997)
    stats = summarize(samples.tolist())
    expected = np.percentile(samples, [50, 90, 95, 99])
    assert [stats.median, stats.p90, stats.p95, stats.p99] == pytest.approx(expected.tolist())
    assert stats.min <= stats.median <= stats.p90 <= stats.p95 <= stats.p99 <= stats.max


def test_absent_stage_stays_absent():
    assert summarize([None, None]) is None
    assert summarize([]) is None


@pytest.mark.parametrize("text, seconds", [("200ms", 0.2), ("3s", 3.0), ("1.5", 1.5), ("2min", 120.0), ("500us", 5e-4), (0.1, 0.1)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["fast", "3 hours", "-1s", ""])
def test_parse_duration_rejects_garbage_with_hint(text):
    with pytest.raises(ConfigError, match="Hint:"):
        parse_duration(text)


def test_a_negative_duration_is_refused_as_negative_not_as_garbage():
    with pytest.raises(ConfigError, match=r"^duration '-1s' is -1 s, expected a duration >= 0\. Hint:"):
        parse_duration("-1s")
    with pytest.raises(ConfigError, match=r"^duration '-200ms' is -0\.2 s, expected"):
        parse_duration("-200ms")


def test_sync_loop_excludes_warmup_and_honours_duration_and_minimum():
    calls = []

    def step():
        calls.append(time.perf_counter())
        return {"gpu_compute": None}

    settings = MeasureSettings(warmup_s=0.03, duration_s=0.05, iterations_min=3)
    samples = measure_sync(step, settings)
    assert samples.iterations == len(samples.values["call"]) < len(calls)  # warm-up calls are not samples
    assert samples.wall_s >= 0.05 and not samples.partial
    assert samples.values["gpu_compute"] == [None] * samples.iterations

    slow = MeasureSettings(warmup_s=0.0, duration_s=0.0, iterations_min=7)
    assert measure_sync(lambda: {}, slow).iterations == 7  # the minimum count wins over a short duration


def test_ctrl_c_in_sync_loop_returns_partial_samples():
    count = 0

    def step():
        nonlocal count
        count += 1
        if count == 20:
            raise KeyboardInterrupt
        return {}

    samples = measure_sync(step, MeasureSettings(warmup_s=0.0, duration_s=10.0, iterations_min=1))
    assert samples.partial and samples.iterations == 18  # one warm-up call, 18 timed, the 20th interrupted


class FakeQueue:
    """An AsyncTarget that checks the enqueue-ahead loop never has more than ``limit`` inferences pending."""

    def __init__(self, limit: int):
        self.limit, self.pending, self.max_pending, self.done = limit, set(), 0, 0
        self._next = 0

    def enqueue(self):
        self._next += 1
        self.pending.add(self._next)
        self.max_pending = max(self.max_pending, len(self.pending))
        assert len(self.pending) <= self.limit
        return self._next

    def wait(self, handle):
        self.pending.remove(handle)
        self.done += 1
        return {"gpu_compute": 0.5}

    def close(self):
        pass


def test_enqueue_ahead_keeps_the_queue_full_and_drains_it():
    queue = FakeQueue(limit=3)
    samples = measure_enqueue_ahead(queue, MeasureSettings(warmup_s=0.01, duration_s=0.03, iterations_min=5, in_flight=3))
    assert queue.max_pending == 3 and not queue.pending  # ran 3 deep, nothing left queued
    assert samples.iterations >= 5 and len(samples.values["enqueue"]) == samples.iterations
    assert set(samples.values["gpu_compute"]) == {0.5}

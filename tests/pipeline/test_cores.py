"""How a stream splits the machine's cores: usable cores (affinity, cgroup quotas), the split, and the stream using it."""

from __future__ import annotations

import numpy as np
import pytest

from trtpipe.pipeline.cores import CoreSplit, choose_split, usable_cores
from trtpipe.pipeline.pipeline import Pipeline
from trtpipe.pipeline.stream import plan_threads
from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine
from trtpipe.runtime.simulation import tiny_spec


# -- usable cores -----------------------------------------------------------------------------


def fake_cgroup(tmp_path, files: dict[str, str]):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(("files", "affinity", "expected"), [
    ({"cpu.max": "200000 100000\n"}, 16, 2),  # cgroup v2: 2 cores of quota
    ({"cpu.max": "150000 100000\n"}, 16, 2),  # 1.5 cores rounds up
    ({"cpu.max": "50000 100000\n"}, 16, 1),  # half a core: still one thread
    ({"cpu.max": "max 100000\n"}, 6, 6),  # no quota: the affinity mask
    ({"cpu.max": "800000 100000\n"}, 3, 3),  # a quota above the mask: the mask
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 16, 3),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4, 4),  # v1, no quota
    ({}, 5, 5),  # no cgroup files at all
])
def test_usable_cores_is_the_affinity_mask_capped_by_the_cgroup_quota(tmp_path, monkeypatch, files, affinity, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    assert usable_cores(fake_cgroup(tmp_path, files)) == expected


def test_usable_cores_on_this_machine_is_at_least_one_and_at_most_cpu_count():
    import os

    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


# -- the split --------------------------------------------------------------------------------


@pytest.mark.parametrize(("cores", "workers", "threads"), [(1, 1, 1), (2, 1, 1), (3, 2, 1), (4, 2, 2), (16, 8, 8), (64, 32, 32)])
def test_a_cpu_engine_gets_half_the_cores_and_the_workers_the_rest(cores, workers, threads):
    split = choose_split(cores, engine_on_cpu=True)
    assert (split.workers, split.engine_threads) == (workers, threads)
    assert split.workers + split.engine_threads <= max(cores, 2)  # one core: both get one, no more


@pytest.mark.parametrize("cores", [1, 2, 16])
def test_a_gpu_engine_leaves_every_core_to_the_workers(cores):
    split = choose_split(cores, engine_on_cpu=False)
    assert split.workers == cores and split.engine_threads is None
    assert "GPU" in split.reason


def test_explicit_workers_and_threads_win():
    assert choose_split(8, True, workers=3, threads=5) == CoreSplit(8, 3, 5, "as given")
    assert (choose_split(8, True, workers=6).engine_threads, choose_split(8, True, threads=6).workers) == (2, 2)
    assert choose_split(2, True, workers=4).engine_threads == 1  # more workers than cores: the engine keeps one
    assert choose_split(4, False, workers=1).workers == 1


def test_the_split_reads_as_one_clause():
    assert choose_split(2, True).text() == "2 cores: 1 worker, 1 engine thread (ONNX Runtime on the CPU: cores split)"
    assert choose_split(4, False).text() == "4 cores: 4 workers (the engine runs on the GPU: every core decodes)"


# -- the stream uses it -------------------------------------------------------------------------


def images(count):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(count)]


def test_a_cpu_stream_runs_on_its_own_session_with_the_chosen_threads(tiny_classifier_onnx, monkeypatch):
    monkeypatch.setattr("trtpipe.pipeline.stream.usable_cores", lambda: 4)
    engine = OnnxRuntimeEngine(tiny_classifier_onnx, providers=["CPUExecutionProvider"])
    with Pipeline(engine, tiny_spec(), topk=3) as pipe:
        expected = [pipe(image).labels for image in images(10)]
        with pipe.stream(images(10), batch_size=4) as stream:
            own = stream._machinery.own_engine
            assert stream.split == CoreSplit(4, 2, 2, "ONNX Runtime on the CPU: cores split")
            assert stream.workers == 2 and own is not None and own is not engine and own.threads == 2
            assert own._session.get_session_options().intra_op_num_threads == 2
            got = [item.result.labels for item in stream]
            summary = stream.stats.summary()
        assert got == expected  # the second session computes the same results
        assert own._session is None  # closed with the stream
        assert engine._session is not None and engine.threads is None  # pipe(img) keeps its engine and threads
        assert "4 cores: 2 workers, 2 engine threads" in summary


def test_explicit_stream_threads_and_an_engine_already_at_that_count_add_no_session(tiny_classifier_onnx, monkeypatch):
    monkeypatch.setattr("trtpipe.pipeline.stream.usable_cores", lambda: 2)
    engine = OnnxRuntimeEngine(tiny_classifier_onnx, providers=["CPUExecutionProvider"], threads=1)
    with Pipeline(engine, tiny_spec(), topk=3) as pipe:
        with pipe.stream(images(4), batch_size=2) as stream:  # the split wants 1 engine thread: the engine has 1
            list(stream)
            assert stream._machinery.own_engine is None and stream.split.engine_threads == 1
        with pipe.stream(images(4), batch_size=2, workers=2, threads=3) as stream:
            list(stream)
            assert (stream.workers, stream._machinery.own_engine.threads) == (2, 3)


def test_a_subclassed_engine_keeps_its_threads_and_says_so(tiny_classifier_onnx, monkeypatch):
    class Custom(OnnxRuntimeEngine):
        pass

    monkeypatch.setattr("trtpipe.pipeline.stream.usable_cores", lambda: 2)
    with Pipeline(Custom(tiny_classifier_onnx, providers=["CPUExecutionProvider"]), tiny_spec(), topk=3) as pipe:
        with pipe.stream(images(3), batch_size=2) as stream:
            assert len(list(stream)) == 3
            assert stream.split.engine_threads is None and "keeps its own threads" in stream.split.reason


def test_a_gpu_engine_stream_gives_every_core_to_the_workers(monkeypatch):
    class GpuLike:
        on_cpu = False

    assert plan_threads(GpuLike(), cores=6) == choose_split(6, False)
    assert plan_threads(object(), cores=3).workers == 3  # an engine with no on_cpu is not a CPU engine


@pytest.mark.parametrize(("name", "value"), [("threads", 0), ("workers", -1), ("threads", 1.5)])
def test_bad_thread_counts_are_refused(tiny_classifier_onnx, name, value):
    from trtpipe.errors import ConfigError

    with Pipeline(OnnxRuntimeEngine(tiny_classifier_onnx), tiny_spec(), topk=3) as pipe:
        with pytest.raises(ConfigError, match=f"{name} is"):
            pipe.stream(images(2), **{name: value})

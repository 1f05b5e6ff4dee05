"""Pipeline.stream end to end: MobileNetV2 on ONNX Runtime (CPU), JPEG photos at 1920x1080, batch 8; and its memory.

    .venv/bin/python tests/perf/bench_stream.py [--images 500] [--rounds 3] [--frames 5000] [--work DIR]

Throughput (issue 14's targets: stream >= 1.4x the sequential loop, >= 0.85x the bound; issue 25's: the defaults
within 10% of the best configuration measured): ``--images`` JPEG files (quality 90) made from scikit-image's photos
(random crops and flips scaled to 1920x1080, seed 0), read from disk, in ``--rounds`` interleaved rounds, medians
reported:

- a sequential loop as a user writes it: ``pipe(cv2.imread(path))`` per file, on a Pipeline opened with ONNX
  Runtime's defaults (all cores for the engine);
- ``pipe.stream(files, batch_size=8)`` in three configurations, all fixed before measuring: the defaults (the split
  ``Pipeline.stream`` chooses, ``trtpipe.pipeline.cores``), the old defaults (ONNX Runtime's own threads in the
  stream too, W = the number of cores) and the cores split by hand (an engine opened with T = cores // 2 intra-op
  threads, W = cores - T workers);
- each stage alone on the threads it has in that stream (``trtpipe.pipeline.stream_bench``): the bound is the
  slower of the engine and the workers' group (read + preprocess + postprocess share the workers);
- batch-1 latency: the median of 50 synchronous ``pipe(img)`` calls on the default Pipeline, before any stream and
  after each round's streams (a stream must not change what a synchronous call runs on).

Targets are judged only when the load average before the run is below 1; on a busier machine the figures are
printed and the verdict says why it is not given.

Memory (target: resident set size flat within 10%): ``--frames`` synthetic 1920x1080 frames (a fresh array each)
through the defaults' stream; RSS is sampled every 100 frames after a warm-up of 500 and its spread reported.

MobileNetV2 has random weights here (torchvision's download is unreachable offline): speed and memory do not
depend on them. One run on a shared machine: the load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from trtpipe.runtime.onnxruntime_engine import OnnxRuntimeEngine

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "hubble_deep_field", "immunohistochemistry", "retina",
          "colorwheel", "logo")
SIZE = (1080, 1920)  # height, width
WARMUP_FRAMES = 500
LATENCY_CALLS = 50  # synchronous batch-1 calls per latency round
SAMPLE_EVERY = 100


def make_photos(folder: Path, count: int) -> list[Path]:
    """``count`` 1920x1080 JPEGs from scikit-image's photos: a random crop (40-100% of each side) and flip of each."""
    import skimage.data

    paths = [folder / f"photo_{i:04d}.jpg" for i in range(count)]
    if all(p.is_file() for p in paths):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for name in PHOTOS:
        image = np.asarray(getattr(skimage.data, name)())
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        sources.append(np.ascontiguousarray(image[:, :, :3][:, :, ::-1]))  # RGB -> BGR, alpha dropped
    rng = np.random.default_rng(0)
    for i, path in enumerate(paths):
        source = sources[i % len(sources)]
        h, w = source.shape[:2]
        ch, cw = int(h * rng.uniform(0.4, 1.0)), int(w * rng.uniform(0.4, 1.0))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = source[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        frame = cv2.resize(np.ascontiguousarray(crop), (SIZE[1], SIZE[0]), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return paths


class KeepsItsThreads(OnnxRuntimeEngine):
    """ONNX Runtime with its own threads in a stream too (a subclass: Pipeline.stream leaves its threads as they are),
    which is how every stream ran before the stream split the cores."""


def call_ms(pipe, image, calls: int | None = None) -> float:
    """Median milliseconds of ``calls`` synchronous ``pipe(image)`` calls (after one untimed call)."""
    pipe(image)
    times = []
    for _ in range(calls or LATENCY_CALLS):
        started = time.perf_counter()
        pipe(image)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def synthetic_frames(count: int):
    """``count`` fresh 1920x1080 BGR frames (a copy of one of 8 textures, its index stamped in): nothing is shared."""
    rng = np.random.default_rng(1)
    textures = [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(8)]
    for index in range(count):
        frame = textures[index % len(textures)].copy()
        frame[0, :8, 0] = np.frombuffer(index.to_bytes(8, "little"), np.uint8)
        yield frame


def memory_run(pipe, frames: int, workers: int | None, batch: int) -> dict:
    samples = []
    started = time.perf_counter()
    with pipe.stream(synthetic_frames(frames), batch_size=batch, workers=workers) as stream:
        for taken, item in enumerate(stream, 1):
            if not item.ok:
                raise RuntimeError(f"synthetic frame {item.index} failed: {item.error}")
            if taken >= WARMUP_FRAMES and taken % SAMPLE_EVERY == 0:
                samples.append((taken, rss_mib()))
        in_flight = stream.in_flight
    seconds = time.perf_counter() - started
    values = [mib for _, mib in samples]
    return {"frames": frames, "seconds": seconds, "in_flight": in_flight, "first": samples[0], "last": samples[-1],
            "min": min(values), "max": max(values), "spread": (max(values) - min(values)) / min(values)}


def report(name: str, rounds: list, sequential: float, shared_cores: bool, quiet: bool) -> float:
    """The medians of one configuration's rounds, and the targets.

    ``shared_cores``: every stage alone used all the cores (ONNX Runtime's threads and ``cores`` workers), so the
    slowest stage alone is no bound for the stream, whose stages share them; its ratio is printed, not judged.
    """
    median = statistics.median
    stream = median([r.stream for r in rounds])
    stage_names = [s.stage for s in rounds[0].stages]
    rates = {n: median([r.stage(n).images_per_s for r in rounds]) for n in stage_names}
    workers_rate = median([r.workers_rate for r in rounds])
    bound = min(workers_rate, rates["infer"])
    bound_what = "the workers (read + preprocess + postprocess)" if workers_rate <= rates["infer"] else "the engine"
    slowest = min(stage_names, key=rates.get)
    print(f"\n{name}, medians of {len(rounds)} round(s):")
    for stage in stage_names:
        threads = rounds[0].stage(stage).threads
        print(f"  {stage + (f' (batch {rounds[0].batch_size})' if stage == 'infer' else ''):<28} {rates[stage]:9.1f} "
              f"images/s alone ({threads} {'inference thread' if stage == 'infer' else 'worker'}{'s' if threads != 1 else ''})")
    print(f"  {'read+preprocess+postprocess':<28} {workers_rate:9.1f} images/s (sharing the workers)")
    print(f"  {'Pipeline.stream':<28} {stream:9.1f} images/s")
    unjudged = "not judged (load average >= 1 before the run)"
    print(f"  stream / sequential loop: {stream / sequential:.2f}x (target >= 1.4x) -> "
          f"{('met' if stream / sequential >= 1.4 else 'NOT met') if quiet else unjudged}")
    judged = ("(not a bound here: each stage alone had every core, in the stream they share them)" if shared_cores
              else f"(target >= 0.85x) -> {('met' if stream / bound >= 0.85 else 'NOT met') if quiet else unjudged}")
    print(f"  stream / bound set by {bound_what} ({bound:.1f} images/s): {stream / bound:.2f}x {judged}; against the "
          f"slowest single stage alone ({slowest}, {rates[slowest]:.1f} images/s): {stream / rates[slowest]:.2f}x")
    return stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500, help="JPEG files (default 500)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every measurement (default 3)")
    parser.add_argument("--frames", type=int, default=5000, help="synthetic frames for the memory run (default 5000)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--work", help="work folder to reuse between runs (the export and the photos)")
    args = parser.parse_args()

    from trtpipe.pipeline.pipeline import Pipeline
    from trtpipe.pipeline.stream import plan_threads
    from trtpipe.pipeline.stream_bench import bench_pipeline
    from trtpipe.spec import PreprocessSpec, preprocess_path_for
    from trtpipe.zoo.export import export_model

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_stream."))
    model = work / "mobilenetv2.onnx"
    if not model.is_file():
        export_model("mobilenetv2", model, weights="random")
    paths = make_photos(work / "photos", args.images)
    cores = os.cpu_count() or 1
    engine_threads = max(1, cores // 2)
    split_workers = max(1, cores - engine_threads)
    load_before = os.getloadavg()
    print(f"{len(paths)} JPEG photos 1920x1080 in {work / 'photos'}; MobileNetV2 (RANDOM weights) on ONNX Runtime CPU; "
          f"batch {args.batch}; {cores} cores; load average {load_before[0]:.2f} (1 min), {load_before[1]:.2f} (5 min) "
          "before")

    cpu = ["CPUExecutionProvider"]  # the configuration, also where onnxruntime-gpu is installed
    spec = PreprocessSpec.load(preprocess_path_for(model))
    with Pipeline.from_onnx(model, providers=cpu) as default_pipe, \
            Pipeline(KeepsItsThreads(model, providers=cpu), spec) as old_pipe, \
            Pipeline.from_onnx(model, threads=engine_threads, providers=cpu) as split_pipe:
        chosen = plan_threads(default_pipe.engine)
        # Three configurations, all fixed before any measurement: what a user gets without options now (the split
        # Pipeline.stream chooses), the defaults before it (ONNX Runtime's own threads, workers = cores), and the
        # cores split by hand (an engine opened with T threads, W workers).
        configurations = {
            f"defaults ({chosen.text()})": (default_pipe, None, None),
            f"old defaults (engine: ONNX Runtime's threads, {cores} workers)": (old_pipe, cores, None),
            f"split by hand (engine: {engine_threads} thread(s), {split_workers} worker(s))": (split_pipe, split_workers, engine_threads),
        }
        rss_before = rss_mib()
        # Memory first, in a process that has not yet held the throughput runs' decoded samples.
        memory = memory_run(default_pipe, args.frames, None, args.batch)
        results = {name: [] for name in configurations}
        latency = {"before any stream": [], "after a stream": []}
        image = cv2.imread(str(paths[0]))
        for round_index in range(args.rounds):
            latency["before any stream" if round_index == 0 else "after a stream"].append(call_ms(default_pipe, image))
            for name, (pipe, workers, threads) in configurations.items():
                started = time.perf_counter()
                # The sequential loop always runs on the default Pipeline: pipe(cv2.imread(path)) as a user writes it.
                result = bench_pipeline(pipe, paths, batch_size=args.batch, workers=workers,
                                        sequential_pipe=default_pipe, engine_threads=threads)
                results[name].append(result)
                print(f"  round {round_index + 1}, {name.split(' (')[0]}: stream {result.stream:.1f} images/s, sequential "
                      f"{result.sequential:.1f}, bound {result.bound[1]:.1f} ({result.bound[0].split(' (')[0]}) in "
                      f"{time.perf_counter() - started:.0f} s")
            latency["after a stream"].append(call_ms(default_pipe, image))
    quiet = load_before[0] < 1.0
    # Every sequential loop of every round, whichever configuration's round it ran in: one baseline for all.
    sequential = statistics.median([r.sequential for rounds in results.values() for r in rounds])
    print(f"\nsequential loop (cv2.imread then pipe(img), default Pipeline): {sequential:.1f} images/s (median of "
          f"{sum(len(r) for r in results.values())})")
    streams = {}
    for name, rounds in results.items():
        streams[name] = report(name, rounds, sequential, shared_cores=name.startswith("old defaults"), quiet=quiet)
    defaults, best = next(iter(streams.values())), max(streams.values())
    verdict = (f"-> {'met' if defaults >= 0.9 * best else 'NOT met'}" if quiet
               else f"-> not judged: load average {load_before[0]:.2f} before the run is not a quiet machine (>= 1)")
    print(f"\ndefaults / best configuration measured: {defaults:.1f} / {best:.1f} = {defaults / best:.2f} "
          f"(target >= 0.90) {verdict}")
    before, after = (statistics.median(v) for v in latency.values())
    print(f"batch-1 pipe(img) on the default Pipeline: median {before:.2f} ms before any stream, {after:.2f} ms after "
          f"the streams (medians of {LATENCY_CALLS} calls per round; pipe(img) keeps its engine and threads)")
    load_after = os.getloadavg()
    (first_at, first), (last_at, last) = memory["first"], memory["last"]
    print(f"\nmemory: {memory['frames']} synthetic 1920x1080 frames through the defaults in {memory['seconds']:.0f} s "
          f"({memory['frames'] / memory['seconds']:.1f} frames/s, at most {memory['in_flight']} in flight); RSS "
          f"{rss_before:.0f} MiB before the stream, "
          f"{first:.0f} MiB at frame {first_at}, {last:.0f} MiB at frame {last_at}, min {memory['min']:.0f} / max "
          f"{memory['max']:.0f} MiB after the warm-up: spread {memory['spread'] * 100:.1f}% (target within 10%) -> "
          f"{'met' if memory['spread'] <= 0.10 else 'NOT met'}")
    print(f"load average {load_after[0]:.2f} (1 min), {load_after[1]:.2f} (5 min) after; {cores} cores")


if __name__ == "__main__":
    main()

"""Per-layer times of a TensorRT engine (``IProfiler``) and its layer information (``IEngineInspector``).

Profiling makes TensorRT time every layer and synchronize between them, which slows the whole
inference; so it runs in a separate execution context after the timing run, never during it. The
layer information is most detailed when the engine was built with ``ProfilingVerbosity.DETAILED``.
"""

from __future__ import annotations

import json
from collections import defaultdict

from trtpipe.errors import ConfigError


def profile_layers(target, batch: int, settings, iterations: int = 50) -> dict:
    """Runs the engine ``iterations`` times with a profiler attached; returns per-layer median times and layer info.

    Args:
        target: a BenchTarget on the tensorrt backend (a real GPU; the simulation has no profiler).
        batch: the batch size to profile.
        settings: unused beyond the warm-up count (one warm-up run is done).
        iterations: profiled runs. Defaults to 50.

    Returns:
        ``{"batch", "iterations", "layers": [{"name", "median_ms", "mean_ms", "share"}], "total_ms", "engine_information"}``.
    """
    import numpy as np

    engine = target.engine
    if not engine.backend.startswith("tensorrt") or engine.backend.endswith("-simulated"):
        raise ConfigError(
            f"--profile-layers needs TensorRT on a GPU; this run is on {engine.backend}",
            "drop --profile-layers, or bench an .engine on a GPU machine",
        )
    from trtpipe.bench.runner import make_feeds

    trt = engine.flavor.module
    engine.infer_timed(make_feeds(target, batch))  # stages inputs, sets shapes on the main context
    profiler = _make_profiler(trt)
    context = engine._engine.create_execution_context()
    try:
        for info in engine.inputs:
            context.set_input_shape(info.name, engine._shapes_set[info.name])
        for name, buffer in engine._device.items():
            context.set_tensor_address(name, buffer.ptr)
        context.profiler = profiler
        stream = engine._stream
        context.execute_async_v3(stream.ptr)  # warm-up, not recorded
        stream.synchronize()
        profiler.times.clear()
        for _ in range(iterations):
            context.execute_async_v3(stream.ptr)
            stream.synchronize()
        inspector = engine._engine.create_engine_inspector()
        inspector.execution_context = context
        information = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    finally:
        del context
    layers = [
        {"name": name, "median_ms": float(np.median(times)), "mean_ms": float(np.mean(times)), "count": len(times)}
        for name, times in profiler.times.items()
    ]
    total = sum(layer["median_ms"] for layer in layers) or 1.0
    for layer in layers:
        layer["share"] = layer["median_ms"] / total
    layers.sort(key=lambda layer: layer["median_ms"], reverse=True)
    try:
        information = json.loads(information)
    except (TypeError, ValueError):
        pass
    return {"batch": batch, "iterations": iterations, "total_ms": total, "layers": layers, "engine_information": information}


def _make_profiler(trt):
    class LayerProfiler(trt.IProfiler):
        """Collects ``report_layer_time`` callbacks: layer name -> list of milliseconds."""

        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.times: dict[str, list[float]] = defaultdict(list)

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.times[layer_name].append(ms)

    return LayerProfiler()

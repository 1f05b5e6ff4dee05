"""Per-layer times of a TensorRT engine (``IProfiler``) and its layer information (``IEngineInspector``).

The measuring is :meth:`TensorRTEngine.profile_layers` (a separate execution context, so the timing run
is undisturbed; run it after that run, never during it); this module turns its samples into the report's
per-layer table. The layer information is most detailed when the engine was built with
``ProfilingVerbosity.DETAILED``.
"""

from __future__ import annotations

import json

from trtpipe.errors import ConfigError


def profile_layers(target, batch: int, settings=None, iterations: int = 50) -> dict:
    """Profiles ``iterations`` runs at ``batch``; returns per-layer median times and the layer information.

    Args:
        target: a BenchTarget on a TensorRT engine (a GPU, or the simulation: then only the layer names
            and counts are kept, a functional check of the profiler's plumbing; its times are fake).
        batch: the batch size to profile.
        settings: unused (kept for the caller's symmetry with the timing run); one warm-up run is made.
        iterations: profiled runs. Defaults to 50.

    Returns:
        ``{"batch", "iterations", "simulated", "total_ms", "layers": [{"name", "median_ms", "mean_ms", "count",
        "share"}], "engine_information"}``, layers slowest first. Simulated: ``total_ms`` is None and layers
        have only ``name`` and ``count``, in the engine's order.
    """
    import numpy as np

    engine = target.engine
    if not engine.device_timed or not hasattr(engine, "profile_layers"):
        raise ConfigError(
            f"--profile-layers needs a TensorRT engine; this run is on {engine.backend}",
            "drop --profile-layers, or bench an .engine on a GPU machine",
        )
    from trtpipe.bench.runner import make_feeds

    measured = engine.profile_layers(make_feeds(target, batch), iterations=iterations)
    try:
        information = json.loads(measured.engine_information)
    except (TypeError, ValueError):
        information = measured.engine_information
    if engine.simulated:  # the simulation's layer times come from its fake clock: no figure survives
        layers = [{"name": name, "count": len(times)} for name, times in measured.times_ms.items()]
        return {"batch": batch, "iterations": measured.iterations, "simulated": True, "total_ms": None,
                "layers": layers, "engine_information": information}
    layers = [
        {"name": name, "median_ms": float(np.median(times)), "mean_ms": float(np.mean(times)), "count": len(times)}
        for name, times in measured.times_ms.items()
    ]
    total = sum(layer["median_ms"] for layer in layers) or 1.0
    for layer in layers:
        layer["share"] = layer["median_ms"] / total
    layers.sort(key=lambda layer: layer["median_ms"], reverse=True)
    return {"batch": batch, "iterations": measured.iterations, "simulated": engine.simulated, "total_ms": total,
            "layers": layers, "engine_information": information}

"""Helpers for the bench tests: a tiny classifier ONNX with its spec, fabricated reports from other machines."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trtpipe.bench.measure import MeasureSettings
from trtpipe.bench.report import BenchReport, BenchResult
from trtpipe.bench.stats import summarize
from trtpipe.spec import PreprocessSpec, preprocess_path_for

#: Short enough for 2 shared cores; long enough for a few hundred iterations of a tiny model.
QUICK = MeasureSettings(warmup_s=0.02, duration_s=0.2, iterations_min=5)


def make_classifier(path: Path, classes: int = 5, size: int = 16, seed: int = 0) -> Path:
    """(N, 3, size, size) -> Conv -> GlobalAveragePool -> Flatten -> Gemm -> (N, classes), opset 17, with a spec beside."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    init = [
        numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(size=(classes, 8)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.normal(size=(classes,)).astype(np.float32), "fc_b"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "conv_w"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("GlobalAveragePool", ["conv"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
        ],
        "classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    PreprocessSpec(model="tinynet", height=size, width=size, weights="random", source="test").save(preprocess_path_for(path))
    return path


def fabricated_environment(host: str, gpu: str | None, cpu: str = "Test CPU 9000") -> dict:
    gpus = [] if gpu is None else [{
        "index": 0, "name": gpu, "memory_total_mib": 81559.0, "driver": "550.54", "compute_capability": "9.0",
        "sm_clock_mhz": 1980.0, "sm_clock_max_mhz": 1980.0, "clock_event_reasons": "0x0000000000000002",
    }]
    return {
        "host": host, "date": "2026-01-01T00:00:00+00:00", "os": "Linux", "python": "3.11.7", "trtpipe": "0.1.0",
        "cpu": {"model": cpu, "arch": "x86_64", "logical_cores": 32, "usable_cores": 32},
        "gpus": gpus,
        "cuda": {"available": gpu is not None, "devices": 1, "driver_version": "12.4", "runtime_version": "12.4"} if gpu else None,
        "packages": {"onnxruntime": "1.18.0", **({"tensorrt": "10.9.0.34"} if gpu else {})},
        "warnings": [],
    }


def fabricated_report(
    *,
    host: str = "box-a",
    gpu: str | None = "NVIDIA H100 80GB HBM3",
    backend: str = "tensorrt",
    precision: str = "fp16",
    weights: str = "pretrained:IMAGENET1K_V2",
    model: str = "mobilenetv2",
    latency_ms: dict[int, list[float]] | None = None,
    simulated: bool = False,
) -> BenchReport:
    """A report whose latency samples are given (batch -> ms), as if measured on ``host``."""
    latency_ms = latency_ms or {1: [1.0, 1.1, 1.2, 0.9], 8: [4.0, 4.4, 4.2, 4.1]}
    device = "cpu" if gpu is None else "gpu"
    results = []
    for batch, samples in latency_ms.items():
        device_timed = device == "gpu"
        metrics = {
            "call": summarize([s * 1.1 for s in samples]),
            "host_latency": summarize(samples) if device_timed else None,
            "gpu_compute": summarize([s * 0.8 for s in samples]) if device_timed else None,
            "h2d": summarize([s * 0.1 for s in samples]) if device_timed else None,
            "d2h": summarize([s * 0.1 for s in samples]) if device_timed else None,
        }
        wall = sum(samples) / 1e3
        results.append(BenchResult(batch, "latency", len(samples), wall, metrics, throughput_source=None if device_timed else "synchronous"))
    return BenchReport(
        model={"name": model, "file": f"engines/{model}_{precision}.engine", "sha256": "0" * 64, "precision": precision,
               "precision_realised": precision, "weights": weights, "source": "torchvision"},
        backend={"name": backend, "device": device, "gpu": gpu, "simulated": simulated, "fallback": False,
                 "cuda_graph": False, "transfers": True},
        settings={"warmup_s": 0.2, "duration_s": 3.0, "iterations_min": 10, "in_flight": 2,
                  "batches": list(latency_ms), "end_to_end_image": [1080, 1920]},
        environment=fabricated_environment(host, gpu),
        results=results,
    )

"""Which layers INT8 hurts most: quantize one layer at a time and measure the output error (ONNX Runtime, CPU).

The error of a layer is ``1 - cosine similarity`` between the model's first output with only that
layer quantized and the FP32 output, averaged over the images. Keeping the worst few layers in
floating point (``--keep-fp`` / ``--auto-keep K``) is the cheapest way to recover accuracy.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from trtpipe.quant.qdq import INT8, QdqPlan, insert_qdq

log = logging.getLogger("trtpipe")


@dataclass(frozen=True)
class LayerSensitivity:
    name: str
    op_type: str
    error: float  # mean (1 - cosine) of the output against FP32, this layer alone quantized
    top1_agreement: float  # share of images whose top-1 class is unchanged (2-D outputs), else nan


def run_model(model, batches: Sequence) -> np.ndarray:
    """Runs ``model`` (ModelProto) on CPU over ``batches`` and returns its first output, concatenated.

    ``batches`` are image-input arrays (``ImageSet.batches``) or feed dictionaries.

    Raises:
        OnnxModelError: ONNX Runtime cannot load or run the model.
    """
    import onnxruntime as ort
    from trtpipe.runtime.onnxruntime_engine import QDQ_SESSION_OPTIONS

    from trtpipe.quant.feeds import as_feed, image_input_name, onnxruntime_errors

    name = image_input_name(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    with onnxruntime_errors(f"model {model.graph.name!r}", "run it", model):
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"],
                                       **QDQ_SESSION_OPTIONS)
        return np.concatenate([session.run(None, as_feed(batch, name))[0] for batch in batches])


def cosine_rows(reference: np.ndarray, output: np.ndarray) -> np.ndarray:
    """Cosine similarity per image (rows flattened).

    Rows that are both exactly zero agree (1.0); a row zero on one side only, or holding a NaN/inf on either
    side, gets 0.0: an output that collapsed never reads as a match. (``fidelity.compare`` also counts such
    images as failed and says so.)
    """
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    out = output.reshape(len(output), -1).astype(np.float64)
    finite = np.isfinite(ref).all(axis=1) & np.isfinite(out).all(axis=1)
    ref, out = np.where(finite[:, None], ref, 0.0), np.where(finite[:, None], out, 0.0)
    ref_norm, out_norm = np.linalg.norm(ref, axis=1), np.linalg.norm(out, axis=1)
    norms = ref_norm * out_norm
    dots = (ref * out).sum(axis=1)
    both_zero = (ref_norm == 0) & (out_norm == 0)
    cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))
    return np.where(finite, cosine, 0.0)


def rank_layers(
    model,
    plan: QdqPlan,
    ranges: Mapping[str, float],
    batches: Sequence[np.ndarray],
    progress: Callable[[int], None] | None = None,
    shifts=None,
    fmt=None,
) -> list[LayerSensitivity]:
    """Ranks the layers of ``plan`` by the error each causes alone, worst first.

    Args:
        model: FP32 onnx.ModelProto.
        plan: the Q/DQ plan (from :func:`trtpipe.quant.qdq.plan_qdq`).
        ranges: calibrated amax per activation.
        batches: preprocessed held-back images (a few dozen are enough to rank).
        progress: called with 1 after each layer.
        shifts: BiasShifts (``bias_correction.py``): rank each layer with its bias corrected, as it will be built.
        fmt: the QuantFormat layers are quantized to. Defaults to INT8.
    """
    from trtpipe.quant.bias_correction import apply_bias_shifts

    start = time.perf_counter()
    reference = run_model(model, batches)
    results = []
    for layer in plan.layers:
        alone = plan.only([layer.name])
        source = model if shifts is None else apply_bias_shifts(model, alone, shifts)
        output = run_model(insert_qdq(source, alone, ranges, fmt=fmt or INT8), batches)
        error = float(np.mean(1.0 - cosine_rows(reference, output)))
        agreement = (
            float(np.mean(output.argmax(1) == reference.argmax(1))) if reference.ndim == 2 else float("nan")
        )
        results.append(LayerSensitivity(layer.name, layer.op_type, error, agreement))
        if progress is not None:
            progress(1)
    log.debug("sensitivity of %d layers in %.1f s", len(results), time.perf_counter() - start)
    return sorted(results, key=lambda r: r.error, reverse=True)


def format_table(ranking: Sequence[LayerSensitivity], limit: int | None = None) -> str:
    """A readable table, worst layer first."""
    rows = ranking[:limit] if limit else ranking
    width = max([len(r.name) for r in rows] + [5])
    lines = [f"{'rank':>4}  {'layer':<{width}}  {'op':<13} {'1-cos':>10} {'top-1 same':>10}"]
    for index, r in enumerate(rows, 1):
        agree = "-" if np.isnan(r.top1_agreement) else f"{r.top1_agreement:.3f}"
        lines.append(f"{index:>4}  {r.name:<{width}}  {r.op_type:<13} {r.error:>10.2e} {agree:>10}")
    return "\n".join(lines)

"""Activation ranges for INT8: run the FP32 ONNX in ONNX Runtime on the CPU, histogram |x|, pick amax.

Methods (the amax each gives is the clipping threshold; scale = amax / 127):

- ``max``: the largest |x| seen.
- ``percentile``: the 99.99th percentile of |x| (pytorch-quantization's default).
- ``mse``: the threshold with the smallest expected squared error of INT8 quantization over the histogram
  (rounding inside, clipping outside), chosen per tensor as pytorch-quantization's and ModelOpt's ``mse``
  calibrators choose it: a tensor with long tails gets a tight clip, a compact one its max.
- ``entropy``: TensorRT's KL-divergence search (the IInt8EntropyCalibrator2 algorithm as NVIDIA's
  pytorch-quantization implements it): a 2048-bin histogram of |x|; for every candidate threshold from
  bin 128 to the last, the clipped distribution is merged into 128 quantized levels, and the
  threshold with the smallest KL divergence from the clipped reference wins.

Why this is not ``onnxruntime.quantization``'s calibrators (measured, see tests/perf/bench_calibration.py):
its EntropyCalibrater *can* be given ``num_bins``/``num_quantized_bins``, but it histograms signed
values, so 128 quantized bins over [-T, T] model 64 levels per side instead of INT8's 127 (which is
why 2048 bins clipped too hard on EfficientNet-Lite0); its KL search is a Python loop (about a
second per tensor at 2048 bins); and ``collect_data`` keeps every intermediate output of the whole
calibration set in memory before histogramming. Here the KL search is one vectorised expression per
tensor over all candidates (prefix sums make each candidate O(128)), and histograms are updated
batch by batch.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

log = logging.getLogger("trtpipe")

METHODS = ("entropy", "max", "mse", "percentile")
NUM_BINS = 2048
NUM_QUANTIZED_BINS = 128  # INT8: 127 positive levels plus zero
PERCENTILE = 99.99
# Histogram at most this many values per tensor and batch (an evenly strided sample; the max is exact).
# A few million samples per tensor over a calibration set fix a 2048-bin histogram's shape well, and
# it keeps MobileNetV2's calibration on 256 images within seconds on two cores.
SAMPLES_PER_BATCH = 1 << 18
# The most bins a histogram keeps while its range grows (1 MiB of counts); beyond, neighbouring bins merge.
MAX_BINS = 64 * NUM_BINS


class AbsHistogram:
    """Histogram of |x| over [0, width * bins), grown by whole bins of the same width when larger values arrive.

    The first batch fixes the bin width (its max / ``num_bins``), as TensorRT's and pytorch-quantization's
    histogram calibrators do; :meth:`finalize` merges a grown histogram back to about ``num_bins`` bins.
    Growth is bounded: when a later batch's max would need more than ``max_bins`` bins of the current width
    (a heavy-tailed activation, or a dark first batch, can ask for billions), neighbouring bins are merged in
    powers of two until it fits, so memory stays at ``max_bins`` counts whatever the range. Merging whole
    bins keeps every count exact; only resolution near zero is lost, and only as much as the range demands.
    """

    def __init__(self, num_bins: int = NUM_BINS, max_bins: int = MAX_BINS):
        self.num_bins = num_bins
        self.max_bins = max(max_bins, num_bins)
        self.counts: np.ndarray | None = None
        self.width = 0.0
        self.max = 0.0

    def add(self, values: np.ndarray) -> None:
        magnitudes = np.abs(np.asarray(values).ravel())
        batch_max = float(magnitudes.max(initial=0.0))
        if not np.isfinite(batch_max):
            magnitudes = magnitudes[np.isfinite(magnitudes)]
            batch_max = float(magnitudes.max(initial=0.0))
        self.max = max(self.max, batch_max)
        if self.counts is None or self.width == 0.0:
            if batch_max == 0.0:
                self.counts = np.zeros(self.num_bins, np.int64) if self.counts is None else self.counts
                self.counts[0] += magnitudes.size
                return
            previous_zeros = 0 if self.counts is None else int(self.counts[0])
            self.width = batch_max / self.num_bins
            self.counts = np.zeros(self.num_bins, np.int64)
            self.counts[0] += previous_zeros
        if batch_max > self.width * len(self.counts):
            self._grow(batch_max)
        if magnitudes.size > SAMPLES_PER_BATCH:
            stride = magnitudes.size // SAMPLES_PER_BATCH | 1  # odd, so it does not follow a power-of-two row length
            magnitudes = magnitudes[::stride]
        bins = len(self.counts)
        hist, _ = np.histogram(magnitudes, bins=bins, range=(0.0, self.width * bins))
        self.counts += hist

    def _grow(self, batch_max: float) -> None:
        """Extends the histogram to cover ``batch_max``, merging bins first when it would exceed ``max_bins``."""
        needed = math.ceil(batch_max / self.width) + 1  # Python floats and ints: no overflow at any ratio
        if needed > self.max_bins:
            factor = 2 ** math.ceil(math.log2(needed / self.max_bins))  # a Python int: may exceed int64
            if factor >= len(self.counts):
                self.counts = self.counts.sum(keepdims=True)  # everything so far fits in the new first bin
            else:
                counts = np.pad(self.counts, (0, (-len(self.counts)) % factor))
                self.counts = counts.reshape(-1, factor).sum(axis=1)
            self.width *= factor
            needed = math.ceil(batch_max / self.width) + 1  # at most max_bins + 1
        if needed > len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(needed - len(self.counts), np.int64)])

    def finalize(self) -> tuple[np.ndarray, np.ndarray]:
        """Returns (counts, bin edges) with about ``num_bins`` bins (grown histograms are merged)."""
        if self.counts is None:
            return np.zeros(self.num_bins, np.int64), np.linspace(0.0, 0.0, self.num_bins + 1)
        factor = max(1, int(np.ceil(len(self.counts) / self.num_bins)))
        counts = self.counts
        if factor > 1:
            counts = np.pad(counts, (0, (-len(counts)) % factor)).reshape(-1, factor).sum(axis=1)
        width = self.width * factor
        return counts, np.arange(len(counts) + 1) * width

    def amax(self, method: str) -> float:
        """The clipping threshold ``method`` chooses for this histogram."""
        if method == "max" or self.max == 0.0:
            return self.max
        counts, edges = self.finalize()
        if method == "percentile":
            return min(percentile_amax(counts, edges, PERCENTILE), self.max)
        if method == "entropy":
            return min(entropy_amax(counts, edges), self.max)
        if method == "mse":
            return min(mse_amax(counts, edges), self.max)
        raise ValueError(f"unknown calibration method {method!r}")


def percentile_amax(counts: np.ndarray, edges: np.ndarray, percentile: float = PERCENTILE) -> float:
    """The upper edge of the bin where the cumulative share of |x| reaches ``percentile`` %."""
    cumulative = np.cumsum(counts, dtype=np.float64)
    if cumulative[-1] == 0:
        return 0.0
    index = int(np.searchsorted(cumulative, cumulative[-1] * percentile / 100.0))
    return float(edges[min(index + 1, len(edges) - 1)])


def mse_amax(counts: np.ndarray, edges: np.ndarray, levels: int = NUM_QUANTIZED_BINS - 1, start_bin: int = 16) -> float:
    """The clipping threshold (a bin edge) with the least expected INT8 squared error over a histogram of |x|.

    For a threshold T the step is T / ``levels``; a value below T costs the rounding error of a uniform step
    (step^2 / 12), one above it the clipping error (|x| - T)^2, taken at its bin's centre. Evaluated for every
    edge from ``start_bin`` at once from suffix sums (O(bins)). Ties go to the largest threshold.
    """
    counts = np.asarray(counts, np.float64)
    if counts.sum() == 0 or len(counts) <= start_bin:
        return float(edges[-1])
    centres = 0.5 * (edges[:-1] + edges[1:])
    thresholds = edges[start_bin:]
    kept = np.concatenate([[0.0], np.cumsum(counts)])[start_bin:]  # counts below each threshold

    def suffix(values):  # sum over the bins at or above each threshold
        return np.concatenate([np.cumsum(values[::-1])[::-1], [0.0]])[start_bin:]

    above, above_x, above_x2 = suffix(counts), suffix(counts * centres), suffix(counts * centres**2)
    rounding = kept * (thresholds / levels) ** 2 / 12.0
    clipping = above_x2 - 2.0 * thresholds * above_x + thresholds**2 * above
    error = rounding + np.maximum(clipping, 0.0)
    best = len(error) - 1 - int(np.argmin(error[::-1]))
    return float(thresholds[best])


def entropy_amax(
    counts: np.ndarray, edges: np.ndarray, num_quantized_bins: int = NUM_QUANTIZED_BINS, start_bin: int = 128
) -> float:
    """TensorRT's KL-divergence threshold for a histogram of |x| (vectorised over every candidate).

    For a candidate ``i`` (bins ``[0, i)`` kept), the reference P is the histogram clipped at ``i`` with
    the outliers added to its last bin; Q merges ``[0, i)`` into ``num_quantized_bins`` levels and spreads
    each level's count evenly over its non-empty bins. KL(P || Q) is evaluated from prefix sums, so each
    candidate costs O(num_quantized_bins) rather than O(i). Ties go to the largest threshold.
    """
    bins = np.asarray(counts, np.float64).copy()
    if len(bins) > 1:
        bins[0] = bins[1]  # the spike of exact zeros (ReLU) says nothing about where to clip
    total = bins.sum()
    n = len(bins)
    if total == 0 or n <= start_bin:
        return float(edges[-1])
    candidates = np.arange(start_bin, n + 1)
    cum = np.concatenate([[0.0], np.cumsum(bins)])
    cum_nonzero = np.concatenate([[0.0], np.cumsum(bins > 0)])
    with np.errstate(divide="ignore", invalid="ignore"):
        b_log_b = np.where(bins > 0, bins * np.log(np.where(bins > 0, bins, 1.0)), 0.0)
    cum_b_log_b = np.concatenate([[0.0], np.cumsum(b_log_b)])

    levels = np.arange(num_quantized_bins + 1)
    # Level g of candidate i covers bins [ceil(g*i/L), ceil((g+1)*i/L)), as np.digitize over linspace(0, i, L+1).
    bounds = -((-levels[None, :] * candidates[:, None]) // num_quantized_bins)  # (C, L+1) integer ceil
    level_sum = cum[bounds[:, 1:]] - cum[bounds[:, :-1]]
    level_nonzero = cum_nonzero[bounds[:, 1:]] - cum_nonzero[bounds[:, :-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        q_value = np.where(level_nonzero > 0, level_sum / level_nonzero, 0.0)  # Q's value on each non-empty bin
        sum_p_log_q = np.where(level_sum > 0, level_sum * np.log(np.where(q_value > 0, q_value, 1.0)), 0.0).sum(axis=1)

    last = candidates - 1
    tail = total - cum[candidates]  # outliers folded into P's last bin
    last_bin = bins[last]
    last_p = last_bin + tail
    last_q = q_value[np.arange(len(candidates)), (last * num_quantized_bins) // candidates]
    with np.errstate(divide="ignore", invalid="ignore"):
        # sum p log p over [0, i), with the last bin replaced by bin + tail
        sum_p_log_p = cum_b_log_b[last] + np.where(last_p > 0, last_p * np.log(np.where(last_p > 0, last_p, 1.0)), 0.0)
        # Q's last-bin term already counts last_bin * log(q); the tail adds tail * log(q)
        sum_p_log_q = sum_p_log_q + np.where(tail > 0, tail * np.log(np.where(last_q > 0, last_q, 1.0)), 0.0)
        q_total = cum[candidates]  # Q redistributes exactly the kept counts
        kl = (sum_p_log_p - sum_p_log_q) / total - np.log(total) + np.log(q_total)
    kl = np.where((tail > 0) & (last_q == 0), np.inf, kl)  # outliers where Q has no mass
    best = len(kl) - 1 - int(np.argmin(kl[::-1]))
    return float(edges[candidates[best]])


# ----------------------------------------------------------------------------------------------
# Collecting histograms with ONNX Runtime
# ----------------------------------------------------------------------------------------------


@dataclass
class CalibrationResult:
    """Histograms of the calibrated tensors, and what the collection cost."""

    histograms: dict[str, AbsHistogram]
    images: int
    seconds: float

    def ranges(self, method: str) -> dict[str, float]:
        """amax per tensor for ``method`` (entropy | max | mse | percentile)."""
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r}")
        return {name: hist.amax(method) for name, hist in self.histograms.items()}


def augmented_session(model, tensors: Sequence[str], threads: int | None = None):
    """An ONNX Runtime CPU session over ``model`` that also outputs ``tensors``.

    Returns:
        (session, output names): the model's own outputs first, then ``tensors`` not already outputs.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    existing = {o.name for o in augmented.graph.output}
    types = _element_types(model) if any(name not in existing for name in tensors) else {}
    for name in tensors:
        if name not in existing:
            # declared with the tensor's own type: a bfloat16 or float16 activation declared FLOAT is a type error
            # ONNX Runtime blames on the node that makes it
            elem_type = types.get(name) or TensorProto.FLOAT
            augmented.graph.output.append(helper.make_tensor_value_info(name, elem_type, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(augmented.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session, [o.name for o in session.get_outputs()]


def _element_types(model) -> dict[str, int]:
    """Tensor name -> ONNX element type, from shape inference (empty where inference fails)."""
    import onnx

    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - the types only refine the declared outputs
        return {}
    return {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.output, *graph.input)
            if v.type.tensor_type.elem_type}


def collect_histograms(
    model,
    tensors: Sequence[str],
    batches: Iterable[np.ndarray],
    progress: Callable[[int], None] | None = None,
) -> CalibrationResult:
    """Runs ``batches`` through ``model`` in ONNX Runtime and histograms |x| of every tensor in ``tensors``.

    Args:
        model: onnx.ModelProto, FP32.
        tensors: activation names to calibrate (``QdqPlan.activations``).
        batches: preprocessed batches for the image input (``ImageSet.batches``), or feed dictionaries.
        progress: called with the number of images after each batch.

    Raises:
        OnnxModelError: ONNX Runtime cannot load or run the model.
    """
    from trtpipe.quant.feeds import as_feed, feed_size, image_input_name, onnxruntime_errors

    start = time.perf_counter()
    input_name = image_input_name(model)
    with onnxruntime_errors(f"model {model.graph.name!r}", "calibrate it", model):
        session, names = augmented_session(model, tensors)
        wanted = [(i, name) for i, name in enumerate(names) if name in set(tensors)]
        histograms = {name: AbsHistogram() for name in tensors}
        images = 0
        for batch in batches:
            outputs = session.run(None, as_feed(batch, input_name))
            for index, name in wanted:
                histograms[name].add(outputs[index])
            images += feed_size(batch)
            if progress is not None:
                progress(feed_size(batch))
    return CalibrationResult(histograms, images, time.perf_counter() - start)

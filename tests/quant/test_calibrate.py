"""Calibration methods: TensorRT's KL threshold, percentile, max, histogram growth, ONNX Runtime collection."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from trtpipe.quant.calibrate import AbsHistogram, collect_histograms, entropy_amax, percentile_amax
from trtpipe.quant.qdq import plan_qdq


def reference_entropy_amax(counts, edges, num_bits=8, start_bin=128):
    """pytorch-quantization's ``_compute_amax_entropy`` loop, kept verbatim in spirit as the oracle."""
    from scipy.stats import entropy

    bins = counts.astype(np.float64).copy()
    bins[0] = bins[1]
    nbins = 1 << (num_bits - 1)
    divergences, arguments = [], []
    for i in range(start_bin, len(bins) + 1):
        new_density_counts = np.zeros(nbins)
        space = np.linspace(0, i, num=nbins + 1)
        digitized = np.digitize(range(i), space) - 1
        digitized[bins[:i] == 0] = -1
        for index, level in enumerate(digitized):
            if level != -1:
                new_density_counts[level] += bins[index]
        counter = Counter(digitized)
        for key, value in counter.items():
            if key != -1:
                new_density_counts[key] /= value
        new_density = np.zeros(i)
        for index, level in enumerate(digitized):
            if level != -1:
                new_density[index] = new_density_counts[level]
        reference = bins[:i].copy()
        reference[-1] += bins[i:].sum()
        divergences.append(entropy(reference / reference.sum(), new_density / new_density.sum()))
        arguments.append(i)
    divergences = np.array(divergences)
    last_argmin = len(divergences) - 1 - np.argmin(divergences[::-1])
    return edges[arguments[last_argmin]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_entropy_matches_pytorch_quantization_loop(seed):
    pytest.importorskip("scipy")
    rng = np.random.default_rng(seed)
    values = np.abs(rng.standard_t(df=3 + seed, size=200_000))
    counts, edges = np.histogram(values, bins=400, range=(0, values.max()))
    counts[rng.integers(0, 400, 20)] = 0  # empty bins exercise the non-zero bookkeeping
    assert entropy_amax(counts, edges) == pytest.approx(reference_entropy_amax(counts, edges))


def test_entropy_clips_heavy_tails_and_max_does_not():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(500_000), [12.0]])
    histogram = AbsHistogram()
    histogram.add(values.astype(np.float32))
    assert histogram.amax("max") == pytest.approx(12.0)
    assert 2.0 < histogram.amax("entropy") < 8.0
    assert 3.0 < histogram.amax("percentile") < 5.0


def test_percentile_amax_on_uniform_histogram():
    counts = np.full(100, 10)
    edges = np.linspace(0, 1, 101)
    assert percentile_amax(counts, edges, 50.0) == pytest.approx(0.5, abs=0.011)


def test_histogram_grows_in_bins_of_the_same_width_and_keeps_counts():
    histogram = AbsHistogram(num_bins=64)
    histogram.add(np.linspace(-1, 1, 1001, dtype=np.float32))
    histogram.add(np.array([3.0, -2.5], np.float32))
    counts, edges = histogram.finalize()
    assert counts.sum() == 1003
    assert histogram.max == 3.0 and edges[-1] >= 3.0
    assert len(counts) <= 64 + 1


def test_all_zero_tensor_gets_zero_range():
    histogram = AbsHistogram()
    histogram.add(np.zeros((2, 3), np.float32))
    assert histogram.amax("entropy") == 0.0


def test_collect_histograms_covers_every_planned_activation(make_tiny_model):
    model = make_tiny_model()
    plan = plan_qdq(model)
    batches = [np.random.default_rng(i).standard_normal((4, 3, 32, 32)).astype(np.float32) for i in range(3)]
    seen = []
    result = collect_histograms(model, plan.activations, batches, progress=seen.append)
    assert result.images == 12 and seen == [4, 4, 4]
    for method in ("entropy", "max", "percentile"):
        ranges = result.ranges(method)
        assert set(ranges) == set(plan.activations)
        assert all(value > 0 for value in ranges.values())
    assert result.ranges("max")["input"] == pytest.approx(max(float(np.abs(b).max()) for b in batches))

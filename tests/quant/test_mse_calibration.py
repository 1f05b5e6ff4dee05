"""The mse calibration method: the clip with the least expected INT8 squared error, per tensor."""

from __future__ import annotations

import numpy as np
import pytest

from trtpipe.quant.calibrate import AbsHistogram, mse_amax
from trtpipe.spec import BuildConfig


def _histogram(values) -> AbsHistogram:
    histogram = AbsHistogram()
    histogram.add(np.asarray(values, np.float32))
    return histogram


def _int8_mse(values, amax) -> float:
    step = amax / 127
    return float(np.mean((np.clip(np.round(values / step), -127, 127) * step - values) ** 2))


def test_a_compact_tensor_keeps_its_max_and_a_long_tail_is_clipped():
    rng = np.random.default_rng(0)
    compact = rng.uniform(-1, 1, 200_000)
    assert _histogram(compact).amax("mse") == pytest.approx(1.0, rel=0.01)
    tailed = np.concatenate([rng.laplace(0, 1, 200_000), [80.0, -90.0]])
    histogram = _histogram(tailed)
    chosen = histogram.amax("mse")
    assert chosen < 0.7 * histogram.amax("max")  # two outliers still weigh: the squared error counts them
    # the threshold it picks quantizes better than the max and than the percentile clip
    assert _int8_mse(tailed, chosen) < _int8_mse(tailed, histogram.amax("max"))
    assert _int8_mse(tailed, chosen) <= _int8_mse(tailed, histogram.amax("percentile")) * 1.02


def test_an_empty_histogram_gives_its_range_and_mse_is_a_build_option():
    assert mse_amax(np.zeros(2048), np.linspace(0, 1, 2049)) == 1.0
    assert BuildConfig(precision="int8", calib_images="d", calib_method="mse").calib_method == "mse"

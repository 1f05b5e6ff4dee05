"""The PicoDet/NanoDet (GFL) head: per-stride scores and box distributions -> boxes, class-wise NMS."""

from __future__ import annotations

import numpy as np
import pytest

from trtpipe.errors import InputError
from trtpipe.pipeline.heads import create_head
from trtpipe.pipeline.preprocess import ResizeMeta

BINS = 8  # R + 1, as PicoDet's reg_max 7


def _distribution(left, top, right, bottom) -> np.ndarray:
    """Logits whose softmax puts (almost) all weight on the given bin of each side."""
    logits = np.full((4, BINS), -30.0, np.float32)
    for side, distance in enumerate((left, top, right, bottom)):
        logits[side, distance] = 30.0
    return logits.ravel()


def _outputs(height=32, width=24, classes=3):
    """Two strides (8: 4x3 anchors, 16: 2x2 anchors) of a height x width input, one confident anchor in each."""
    scores8, scores16 = np.zeros((1, 12, classes), np.float32), np.zeros((1, 4, classes), np.float32)
    boxes8, boxes16 = np.zeros((1, 12, 4 * BINS), np.float32), np.zeros((1, 4, 4 * BINS), np.float32)
    scores8[0, 4, 2] = 0.9  # stride 8, row 1, column 1: centre (12, 12)
    boxes8[0, 4] = _distribution(1, 1, 2, 3)  # distances in strides: 8, 8, 16, 24 pixels
    scores16[0, 3, 0] = 0.8  # stride 16, row 1, column 1: centre (24, 24)
    boxes16[0, 3] = _distribution(1, 0, 0, 1)
    return {"s8": scores8, "s16": scores16, "b8": boxes8, "b16": boxes16}


def test_gfl_outputs_decode_to_boxes_around_the_anchor_centres():
    head = create_head("picodet", input_size=(32, 24))
    meta = ResizeMeta(32, 24, 1.0, 1.0, 0.0, 0.0)
    (result,) = head(_outputs(), [meta], [None])
    assert result.class_ids.tolist() == [2, 0]
    assert result.scores.tolist() == pytest.approx([0.9, 0.8])
    # (12 - 8, 12 - 8, 12 + 16, 12 + 24) and (24 - 16, 24 - 0, 24 + 0, 24 + 16), clipped to the 24x32 image
    np.testing.assert_allclose(result.boxes, [[4, 4, 24, 32], [8, 24, 24, 32]], atol=1e-3)


def test_outputs_that_are_not_score_distribution_pairs_are_refused_with_a_hint():
    head = create_head("picodet", input_size=(32, 24))
    outputs = _outputs()
    outputs["b16"] = outputs["b16"][..., :30]  # not 4 x bins
    with pytest.raises(InputError, match="picodet head: outputs have shapes .*Hint:"):
        head(outputs, [ResizeMeta(32, 24, 1.0, 1.0, 0.0, 0.0)], [None])
    with pytest.raises(InputError, match="no stride of .* for a 64x64 input"):
        create_head("picodet", input_size=(64, 64))(_outputs(), [ResizeMeta(64, 64, 1.0, 1.0, 0.0, 0.0)], [None])

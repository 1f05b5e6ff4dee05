"""Classification: softmax (unless the network already outputs probabilities), top-k, class names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from trtpipe.pipeline.heads import RunInfo, check_label_count, register_head
from trtpipe.runtime.base import StageTimes


@dataclass(frozen=True)
class Classification(RunInfo):
    """Top-k classes of one image, best first."""

    indices: tuple[int, ...]
    labels: tuple[str, ...]
    scores: tuple[float, ...]  # probabilities
    backend: str = ""
    times: StageTimes | None = None  # this call's stage times (shared by the images of one batch)
    precision: str = ""  # what the network computed in: fp32 | fp16 | int8
    fallback: str | None = None  # why ONNX Runtime ran instead of TensorRT; None: no fallback

    @property
    def top1(self) -> int:
        return self.indices[0]

    def to_dict(self) -> dict:
        return {
            **self._run_dict(),
            "topk": [{"index": i, "label": l, "score": s} for i, l, s in zip(self.indices, self.labels, self.scores)],
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=-1, keepdims=True)
    return shifted


def top_classes(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best classes of each row of ``scores`` (N, C), best first, as (N, k) indices.

    Equal scores rank in class order (lowest index first), so the first j classes of top-k are top-j for every k
    (a random-weight model whose scores all tie gives 0, 1, 2 ...). NaN ranks last.
    """
    n, classes = scores.shape
    k = min(k, classes)
    out = np.empty((n, k), np.int64)
    # Where exactly k classes reach the k-th best score (no tie across the cut: the usual case) they are the top k;
    # np.nonzero finds them in class order and a stable sort of those k ranks them: 0.26-0.36 ms for 32 x 1000 where a
    # stable argsort of every row takes 1.6 ms (timeit, median of 7, on 2 shared CPU cores).
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
    reach = scores >= kth
    clean = np.count_nonzero(reach, axis=1) == k
    if clean.any():
        candidates = np.nonzero(reach[clean])[1].reshape(-1, k)
        order = np.argsort(-np.take_along_axis(scores[clean], candidates, axis=1), axis=1, kind="stable")
        out[clean] = np.take_along_axis(candidates, order, axis=1)
    if not clean.all():  # ties across the cut, or NaN: rank the whole row, stably
        out[~clean] = np.argsort(-scores[~clean], axis=1, kind="stable")[:, :k]
    return out


def _looks_like_probabilities(values: np.ndarray) -> bool:
    return bool(values.min() >= 0 and np.allclose(values.sum(axis=-1), 1.0, atol=1e-3))


@register_head("classification")
class ClassificationHead:
    """(N, C) logits or probabilities -> :class:`Classification` per image.

    Args:
        labels: class names, index i naming class i; a 1001-class output with 1000 names is taken to
            have a background class 0 (TensorFlow-style). Defaults to the class indices as names.
        topk: how many classes to keep. Defaults to 5. Equal scores rank lowest class first (:func:`top_classes`),
            so every k agrees with the others.
    """

    task = "classification"
    auto = False  # the task's default head

    def __init__(self, labels: Sequence[str] | None = None, topk: int = 5, **_ignored):
        self.labels = list(labels) if labels else None
        self.topk = topk

    @classmethod
    def fits(cls, outputs, input_size: tuple[int, int]) -> bool:
        """The first output is (N, C), or 4-D: (N, C, 1, 1) of a classifier ending in a convolution (and, as before
        heads were chosen by shape, a feature map, scored flattened). Sequences (N, T, C) are not classes."""
        shape = tuple(outputs[0].shape) if outputs else ()
        return len(shape) in (2, 4)

    def __call__(self, outputs: dict[str, np.ndarray], metas, images) -> list[Classification]:
        logits = next(iter(outputs.values()))
        logits = logits.reshape(logits.shape[0], -1).astype(np.float32, copy=False)
        probs = logits if _looks_like_probabilities(logits) else softmax(logits.copy())
        check_label_count("classification", self.labels, probs.shape[1], background_offset_ok=True)
        # Ranked by the network's own outputs: softmax is monotonic, but in float32 it rounds logits that differ by
        # less than ~1e-7 (a random-weight model's) to equal probabilities, and the ranking would be lost to ties.
        top = top_classes(logits, self.topk)
        offset = 1 if self.labels and probs.shape[1] == len(self.labels) + 1 else 0
        results = []
        for row, indices in zip(probs, top):
            names = tuple(self._name(int(i) - offset) for i in indices)
            results.append(Classification(tuple(int(i) for i in indices), names, tuple(float(row[i]) for i in indices)))
        return results

    def _name(self, index: int) -> str:
        if self.labels and 0 <= index < len(self.labels):
            return self.labels[index]
        return "background" if index < 0 else str(index)

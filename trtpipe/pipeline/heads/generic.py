"""The head for any output no task head knows: each image's named output arrays, with shapes and statistics.

Text-detection probability maps, recognition sequences, multi-level detector outputs (PicoDet), embeddings: a model
whose outputs fit no registered head still runs through ``Pipeline``, ``infer``, ``stream``, ``bench --pipeline``
and the Triton pipeline model, and the caller decodes the arrays. Nothing is interpreted, so nothing is invented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from trtpipe.pipeline.heads import RunInfo, register_head
from trtpipe.runtime.base import StageTimes


@dataclass(frozen=True)
class OutputStatistics:
    """Shape, dtype and value statistics of one output array of one image."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    min: float | None  # None for an empty array
    max: float | None
    mean: float | None
    std: float | None

    @classmethod
    def of(cls, name: str, array: np.ndarray) -> "OutputStatistics":
        values = array.astype(np.float64, copy=False) if array.size else None
        stats = (None,) * 4 if values is None else (
            float(values.min()), float(values.max()), float(values.mean()), float(values.std())
        )
        return cls(name, tuple(int(d) for d in array.shape), str(array.dtype), *stats)

    def summary(self) -> str:
        """ "x (1, 40, 6625) float32: min 0 max 0.98 mean 0.00015 std 0.0079" """
        shape = "x".join(str(d) for d in self.shape) or "scalar"
        if self.min is None:
            return f"{self.name} {shape} {self.dtype}: empty"
        return (f"{self.name} {shape} {self.dtype}: min {self.min:.4g} max {self.max:.4g} mean {self.mean:.4g} "
                f"std {self.std:.4g}")


@dataclass(frozen=True)
class Outputs(RunInfo):
    """One image's network outputs, by name, as the network returned them (batch axis removed)."""

    arrays: dict[str, np.ndarray]
    labels: tuple[str, ...] = ()  # class names from the ONNX metadata or --labels, for the caller's decoding
    backend: str = ""
    times: StageTimes | None = None
    precision: str = ""  # what the network computed in: fp32 | fp16 | int8
    fallback: str | None = None  # why ONNX Runtime ran instead of TensorRT; None: no fallback

    @property
    def statistics(self) -> tuple[OutputStatistics, ...]:
        return tuple(OutputStatistics.of(name, array) for name, array in self.arrays.items())

    def to_dict(self) -> dict:
        """Every output with its shape, dtype, statistics and values (nested lists)."""
        return {
            **self._run_dict(),
            "outputs": [
                {**{k: v for k, v in vars(stats).items()}, "shape": list(stats.shape), "values": self.arrays[stats.name].tolist()}
                for stats in self.statistics
            ],
        }


@register_head("generic")
class GenericHead:
    """Any outputs -> :class:`Outputs` per image (each output's row of the batch).

    Args:
        labels: class names, passed through for the caller. Defaults to none.
    """

    task = None  # fits every task: what the others leave
    auto = False

    def __init__(self, labels: Sequence[str] | None = None, **_ignored):
        self.labels = tuple(labels) if labels else ()

    @classmethod
    def fits(cls, outputs, input_size: tuple[int, int]) -> bool:
        return True

    def __call__(self, outputs: dict[str, np.ndarray], metas, images) -> list[Outputs]:
        batch = len(metas)
        for value in outputs.values():  # an output without the batch axis cannot be split per image
            if value.ndim == 0 or value.shape[0] != batch:
                return []  # run_head names the outputs and the batch
        return [Outputs({name: value[row] for name, value in outputs.items()}, self.labels) for row in range(batch)]

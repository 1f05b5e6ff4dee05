"""The Engine interface shared by every backend (TensorRT, ONNX Runtime), in Polygraphy's runner shape.

An Engine takes named numpy arrays and returns named numpy arrays. It owns whatever it allocates
(sessions, contexts, streams, buffers) and frees it in ``close()``; use it as a context manager.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from trtpipe.errors import TrtpipeError
from trtpipe.spec import TensorInfo


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds spent in each stage of one call; ``None`` where a backend has no such stage.

    Device stages (h2d, compute, d2h) are measured with CUDA events on the engine's stream;
    host stages and end_to_end with ``time.perf_counter`` around work that includes a synchronize.
    """

    preprocess: float | None = None
    h2d: float | None = None
    compute: float | None = None
    d2h: float | None = None
    postprocess: float | None = None
    end_to_end: float | None = None


class Engine(abc.ABC):
    """A loaded network that runs named numpy inputs to named numpy outputs."""

    #: Label that names the backend in every result and report, e.g. "tensorrt", "onnxruntime-cpu".
    backend: str = "abstract"

    @property
    @abc.abstractmethod
    def inputs(self) -> tuple[TensorInfo, ...]:
        """Input tensors, shapes with -1 for dynamic dimensions."""

    @property
    @abc.abstractmethod
    def outputs(self) -> tuple[TensorInfo, ...]:
        """Output tensors, shapes with -1 for dynamic dimensions."""

    @property
    def max_batch(self) -> int | None:
        """Largest batch the engine accepts (the profile's max); None when unbounded."""
        return None

    @abc.abstractmethod
    def infer_timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], StageTimes]:
        """Runs one inference; returns the outputs (host arrays, safe to keep) and stage times."""

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs one inference and returns the outputs."""
        return self.infer_timed(feeds)[0]

    @abc.abstractmethod
    def close(self) -> None:
        """Frees everything the engine allocated; calling it twice is harmless."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class ClosedError(TrtpipeError):
    """An engine or pipeline was used after close()."""

    def __init__(self, what: str):
        super().__init__(f"{what} was used after close()", f"create a new {what} or keep it open (use `with`)")

"""The Engine interface shared by every backend (TensorRT, ONNX Runtime), in Polygraphy's runner shape.

An Engine takes named numpy arrays and returns named numpy arrays. It owns whatever it allocates
(sessions, contexts, streams, buffers) and frees it in ``close()``; use it as a context manager.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from trtpipe.errors import InputError, TrtpipeError
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

    #: True when ``StageTimes.h2d/compute/d2h`` come from CUDA events on the engine's stream (TensorRT);
    #: False when the backend has no such device stages (ONNX Runtime, torch on the CPU), and then
    #: reports must not present its times as device times.
    device_timed: bool = False

    #: True when TensorRT and CUDA are simulated on the CPU (``trtpipe.runtime.simulation``): the device
    #: times are a fake clock, and every result must say so.
    simulated: bool = False

    # Set by each backend when it has loaded its model.
    _inputs: tuple[TensorInfo, ...] = ()
    _outputs: tuple[TensorInfo, ...] = ()

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        """Input tensors, shapes with -1 for dynamic dimensions."""
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        """Output tensors, shapes with -1 for dynamic dimensions."""
        return self._outputs

    @property
    def max_batch(self) -> int | None:
        """Largest batch the engine accepts (the profile's max); None when unbounded."""
        return None

    @property
    def input_limits(self) -> Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        """Input name -> (min shape, max shape) of the optimization profile the engine runs with; empty when the
        backend has none (an ONNX model on ONNX Runtime takes any size its dynamic axes allow)."""
        return {}

    @property
    def num_contexts(self) -> int:
        """How many inferences can run at once: TensorRT's execution contexts (``contexts=N``, trtexec's
        ``--infStreams``); 1 for backends that run one call at a time. ``infer``/``infer_timed`` are thread-safe
        on every backend; callers beyond this number wait for a free context."""
        return 1

    @abc.abstractmethod
    def infer_timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], StageTimes]:
        """Runs one inference; returns the outputs (host arrays, safe to keep) and stage times."""

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs one inference and returns the outputs."""
        return self.infer_timed(feeds)[0]

    def enqueue_ahead(self, feeds: Mapping[str, np.ndarray], *, transfers: bool = True):
        """A queue that launches inferences of ``feeds`` without waiting for each (the bench's throughput mode).

        Returns:
            An object with ``enqueue() -> handle``, ``wait(handle) -> {"h2d", "compute", "d2h"}`` (ms) and
            ``close()``; None (this default) where the backend has no asynchronous queue.
        """
        return None

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


class NotReadyError(TrtpipeError):
    """Results of asynchronous work were read before it was waited for (on a GPU: garbage, silently)."""


def validate_feeds(
    feeds: Mapping[str, np.ndarray],
    inputs: tuple[TensorInfo, ...],
    engine: str,
    limits: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
) -> None:
    """Checks names, dtypes and shapes of ``feeds`` against an engine's inputs, with messages that say how to fix them.

    Args:
        feeds: input name -> array.
        inputs: the engine's inputs (-1 for dynamic dimensions).
        engine: how to name the engine in messages (its file).
        limits: input name -> (min shape, max shape) of the optimization profile, when the backend has one.

    Raises:
        InputError: a missing or unknown input, a wrong dtype or rank, a fixed dimension that differs,
            or a dimension outside the profile (a batch above its max included).
    """
    if len(feeds) != len(inputs) or any(info.name not in feeds for info in inputs):
        raise InputError(
            f"{engine}: got inputs {sorted(feeds)}, expected {[i.name for i in inputs]}",
            "pass one array per engine input, keyed by its name",
        )
    for info in inputs:
        array = feeds[info.name]
        if not isinstance(array, np.ndarray):
            raise InputError(f"{engine}: input {info.name!r} is a {type(array).__name__}, expected a numpy array", "pass np.ndarray values")
        if array.dtype.name != info.dtype:
            raise InputError(
                f"{engine}: input {info.name!r} has dtype {array.dtype}, expected {info.dtype}",
                f"convert it with array.astype(np.{info.dtype}) (the Pipeline does this for you)",
            )
        if array.ndim != len(info.shape) or any(e not in (-1, a) for e, a in zip(info.shape, array.shape)):
            raise InputError(
                f"{engine}: input {info.name!r} has shape {array.shape}, expected {info.shape} (-1 = any)",
                "check the preprocess spec's size and layout against the model's input",
            )
        if limits and info.name in limits:
            low, high = limits[info.name]
            outside = [axis for axis, (lo, a, hi) in enumerate(zip(low, array.shape, high)) if not lo <= a <= hi]
            if outside:
                if outside == [0]:
                    fix = (f"keep the batch within {low[0]}..{high[0]} (Pipeline splits larger batches), "
                           "or rebuild with a larger profile: trtpipe build ... --batch MIN:OPT:MAX")
                else:  # an image size (or another non-batch axis) the profile does not take
                    fix = (f"axis {', '.join(str(a) for a in outside)} is outside the profile: feed sizes within it "
                           f"(the preprocess spec's height and width), or rebuild with a profile that takes them: "
                           f"trtpipe build ... --minShapes {info.name}:SHAPE --optShapes {info.name}:SHAPE "
                           f"--maxShapes {info.name}:SHAPE")
                raise InputError(
                    f"{engine}: input {info.name!r} has shape {array.shape}, outside the optimization profile "
                    f"{low}..{high}",
                    fix,
                )

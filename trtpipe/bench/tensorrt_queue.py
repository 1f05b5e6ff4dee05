"""Enqueue-ahead for a TensorRT engine: queue ``execute_async_v3`` (with or without copies) without synchronizing.

The runtime's ``TensorRTEngine.infer_timed`` synchronizes every call, which is right for deployment and for
the latency mode; trtexec's throughput mode keeps several inferences queued instead. This adapter reuses
the engine's context, stream and buffers (staged once by a normal call) and gives every queued inference
its own four CUDA events, so H2D / GPU compute / D2H are still measured per inference.

It relies on ``TensorRTEngine`` internals (``_context``, ``_stream``, ``_device``, ``_host``, ``_execute``);
see the note in the bench issue: a public ``enqueue`` on the engine would let this module shrink to nothing.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from trtpipe import cuda


class TensorRTQueue:
    """An AsyncTarget (bench.measure) over an open TensorRTEngine.

    Args:
        engine: the open engine (not closed by this object).
        feeds: the inputs; one synchronous call stages them on the device and sets the input shapes.
        transfers: queue H2D and D2H copies with each inference (False: GPU compute only, trtexec's
            --noDataTransfers). Defaults to True.
    """

    def __init__(self, engine, feeds: Mapping[str, np.ndarray], transfers: bool = True):
        self._engine = engine
        self._transfers = transfers
        engine.infer_timed(feeds)  # sets shapes and addresses, fills the pinned and device inputs
        self._input_bytes = {name: array.nbytes for name, array in feeds.items()}
        context = engine._context
        self._output_bytes = {
            info.name: int(np.prod(tuple(context.get_tensor_shape(info.name)), dtype=np.int64)) * np.dtype(info.dtype).itemsize
            for info in engine.outputs
        }
        self._free: list[list[cuda.Event]] = []
        self._all: list[list[cuda.Event]] = []

    def _slot(self) -> list[cuda.Event]:
        if self._free:
            return self._free.pop()
        slot = [cuda.Event() for _ in range(4)]
        self._all.append(slot)
        return slot

    def enqueue(self) -> list[cuda.Event]:
        engine = self._engine
        slot = self._slot()
        with engine._lock:
            stream = engine._stream
            slot[0].record(stream)
            if self._transfers:
                for name, nbytes in self._input_bytes.items():
                    cuda.copy_htod_async(engine._device[name], engine._host[name], nbytes, stream)
            slot[1].record(stream)
            engine._execute(False)
            slot[2].record(stream)
            if self._transfers:
                for name, nbytes in self._output_bytes.items():
                    cuda.copy_dtoh_async(engine._host[name], engine._device[name], nbytes, stream)
            slot[3].record(stream)
        return slot

    def wait(self, slot: list[cuda.Event]) -> dict[str, float | None]:
        cudart = cuda.runtime()
        if hasattr(cudart, "cudaEventSynchronize"):
            cuda.check(cudart.cudaEventSynchronize(slot[3].handle), "cudaEventSynchronize")
        else:  # a CUDA simulation without events to wait on: drain the stream instead
            self._engine._stream.synchronize()
        times = {
            "h2d": slot[0].elapsed_ms(slot[1]) if self._transfers else None,
            "compute": slot[1].elapsed_ms(slot[2]),
            "d2h": slot[2].elapsed_ms(slot[3]) if self._transfers else None,
        }
        self._free.append(slot)
        return times

    def close(self) -> None:
        for slot in self._all:
            for event in slot:
                event.close()
        self._all.clear()
        self._free.clear()

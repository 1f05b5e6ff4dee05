"""An ONNX Runtime session behind the Engine interface: the numerical reference and the CPU fallback.

Uses the CUDA execution provider when onnxruntime-gpu offers it, else the CPU; the backend label
("onnxruntime-cuda" / "onnxruntime-cpu") says which ran. ``InferenceSession.run`` is thread-safe,
so no lock is needed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from trtpipe.errors import DependencyError, InputError, OnnxModelError
from trtpipe.runtime.base import ClosedError, Engine, StageTimes, validate_feeds
from trtpipe.spec import TensorInfo

# ONNX Runtime's type strings -> numpy dtype names
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def _tensor_info(arg) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in arg.shape)
    return TensorInfo(arg.name, shape, _ORT_DTYPES.get(arg.type, arg.type))


class OnnxRuntimeEngine(Engine):
    """Runs an ONNX file with ONNX Runtime.

    Args:
        path: the ``.onnx`` file.
        providers: execution providers in order of preference. Defaults to CUDA when available, then CPU.
        threads: intra-op threads. Defaults to ONNX Runtime's choice (all cores).
    """

    def __init__(self, path: str | Path, *, providers: Sequence[str] | None = None, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise DependencyError("onnxruntime is not installed", "pip install onnxruntime (or onnxruntime-gpu)") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"ONNX model {self.path}: no such file", "check the path, or export it: trtpipe export NAME")
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=options, providers=list(providers))
        except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors for bad models
            raise OnnxModelError(
                f"ONNX Runtime cannot load {self.path}: {str(exc).splitlines()[0][:300]}",
                "check the file with trtpipe inspect; re-export it if it is truncated",
            ) from None
        used = self._session.get_providers()[0]
        self.backend = "onnxruntime-cuda" if used == "CUDAExecutionProvider" else "onnxruntime-cpu"
        self._inputs = tuple(_tensor_info(a) for a in self._session.get_inputs())
        self._outputs = tuple(_tensor_info(a) for a in self._session.get_outputs())
        self._output_names = [o.name for o in self._outputs]

    @property
    def max_batch(self) -> int | None:
        first = self._inputs[0].shape if self._inputs else ()
        return first[0] if first and first[0] > 0 else None

    def infer_timed(self, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], StageTimes]:
        session = self._session  # a local: close() from another thread must not pull it away mid-call
        if session is None:
            raise ClosedError("OnnxRuntimeEngine")
        start = time.perf_counter()
        validate_feeds(feeds, self._inputs, str(self.path))
        values = session.run(self._output_names, feeds)  # synchronous: the outputs are ready
        end = time.perf_counter()
        ms = (end - start) * 1e3
        return dict(zip(self._output_names, values)), StageTimes(compute=ms, end_to_end=ms)

    def close(self) -> None:
        self._session = None

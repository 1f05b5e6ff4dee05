"""Engines behind one interface: TensorRT (``TensorRTEngine``) and ONNX Runtime (``OnnxRuntimeEngine``).

``load_engine(path, backend=...)`` picks one; nothing heavy is imported until an engine is opened.
"""

from trtpipe.runtime.base import ClosedError, Engine, NotReadyError, StageTimes
from trtpipe.runtime.loader import load_engine

__all__ = ["ClosedError", "Engine", "NotReadyError", "StageTimes", "load_engine"]
